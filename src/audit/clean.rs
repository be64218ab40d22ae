//! What an audit entry may hold as text: every entry's actor, subject and detail strings
//! pass through [`clean`] when the entry is built ([`super::entry`]), so the stored text and
//! the hash chained over it never carry a control character, a bidirectional or invisible
//! format mark, or unbounded input.
//!
//! Such characters are escaped visibly (`\u{202e}`), not dropped: an auditor reading the
//! log sees that someone tried. Text longer than its cap is cut at a character boundary
//! and marked with the length it had.
//!
//! What this module must not do: clean records already stored (their hashes cover what
//! was written then, and old chains must keep verifying).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Most characters kept of an actor or a subject.
pub const MAX_SUBJECT_CHARS: usize = 256;

/// Most characters kept of one string inside an entry's detail (a key or a value).
pub const MAX_DETAIL_CHARS: usize = 1024;

/// Whether `c` must not be stored as it is: C0 and C1 controls (NUL, CR, LF, ESC …), DEL,
/// and the format marks that reorder or hide text (bidi embeddings, overrides and isolates,
/// LRM/RLM/ALM, zero-width characters, line and paragraph separators, BOM, annotations).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// `s` with every unsafe character escaped as `\u{…}` and cut to `max` characters (escapes
/// included), with a visible `…[cut: N chars]` marker when cut. Borrows when `s` is clean.
pub fn clean(s: &str, max: usize) -> Cow<'_, str> {
    let chars = s.chars().count();
    if chars <= max && !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max * 4) + 24);
    let mut kept = 0;
    let mut cut = false;
    for c in s.chars() {
        let piece = if is_unsafe(c) {
            format!("\\u{{{:x}}}", u32::from(c))
        } else {
            c.to_string()
        };
        // An escape is kept whole or not at all: half of one would read as something else.
        let len = piece.chars().count();
        if kept + len > max {
            cut = true;
            break;
        }
        out.push_str(&piece);
        kept += len;
    }
    if cut {
        // Writing to a String cannot fail.
        let _ = write!(out, "…[cut: {chars} chars]");
    }
    Cow::Owned(out)
}

/// `value` with every string in it (object keys included) [`clean`]ed to
/// [`MAX_DETAIL_CHARS`].
pub fn clean_detail(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(owned(&s, MAX_DETAIL_CHARS).unwrap_or(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_detail).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (owned(&k, MAX_DETAIL_CHARS).unwrap_or(k), clean_detail(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The cleaned text when it differs from `s`.
fn owned(s: &str, max: usize) -> Option<String> {
    match clean(s, max) {
        Cow::Borrowed(_) => None,
        Cow::Owned(o) => Some(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_kept_as_it_is() {
        assert!(matches!(clean("user-1@example.jp", 256), Cow::Borrowed(_)));
        assert!(matches!(clean("山田 太郎", 256), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_and_bidi_marks_are_escaped_visibly() {
        let hostile = "LIM\r\n\u{1b}[31m'\"\0x\u{7f}\u{85}\u{202e}gpj.exe\u{2066}\u{200f}\u{61c}";
        let got = clean(hostile, 256);
        assert_eq!(
            got,
            "LIM\\u{d}\\u{a}\\u{1b}[31m'\"\\u{0}x\\u{7f}\\u{85}\\u{202e}gpj.exe\\u{2066}\\u{200f}\
             \\u{61c}"
        );
        assert!(!got.chars().any(is_unsafe));
    }

    #[test]
    fn long_text_is_cut_with_a_marker() {
        let long = "a".repeat(60_000);
        let got = clean(&long, MAX_SUBJECT_CHARS);
        assert!(got.starts_with(&"a".repeat(256)));
        assert!(got.ends_with("…[cut: 60000 chars]"), "{got}");
        assert!(got.chars().count() < 300);
        // An escape is never split by the cut.
        let nul_at_end = format!("{}\0", "a".repeat(254));
        assert_eq!(
            clean(&nul_at_end, 256),
            format!("{}…[cut: 255 chars]", "a".repeat(254))
        );
    }

    #[test]
    fn detail_strings_and_keys_are_cleaned() {
        let detail = serde_json::json!({
            "reason": "login \0 refused",
            "list": ["\u{202e}", 3],
            "k\u{1b}": true,
            "n": 1,
        });
        let got = clean_detail(detail);
        assert_eq!(got["reason"], "login \\u{0} refused");
        assert_eq!(got["list"][0], "\\u{202e}");
        assert_eq!(got["list"][1], 3);
        assert_eq!(got["k\\u{1b}"], true);
        assert_eq!(got["n"], 1);
        let long = clean_detail(serde_json::json!({"x": "b".repeat(5000)}));
        assert!(long["x"].as_str().unwrap().chars().count() < MAX_DETAIL_CHARS + 30);
    }
}
