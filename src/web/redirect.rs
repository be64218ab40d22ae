//! Redirect targets taken from a request (`?next=`): only a path on this origin is followed.
//!
//! Browsers drop tabs and newlines from URLs and read `\` as `/`, so `/<TAB>/evil.example`
//! and `/\evil.example` are `//evil.example`, another site. The target is therefore judged
//! as the browser will read it: whitespace and control characters removed, `\` turned into
//! `/`; then anything that is not an absolute path (a scheme, `//`) is replaced.

/// Where a refused target goes instead.
pub const FALLBACK: &str = "/certgate/";

/// The same-origin path to redirect to for `next` (already percent-decoded once), written
/// as a valid `Location` value; [`FALLBACK`] when `next` would leave the origin.
pub fn same_origin_path(next: &str) -> String {
    let cleaned: String = next
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    if !cleaned.starts_with('/') || cleaned.starts_with("//") {
        return FALLBACK.to_owned();
    }
    // Non-ASCII percent-encoded, so the header value is plain ASCII and read the same by
    // every browser.
    let mut out = String::with_capacity(cleaned.len());
    for b in cleaned.bytes() {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_on_this_origin_are_kept() {
        assert_eq!(same_origin_path("/ib/home?a=1"), "/ib/home?a=1");
        assert_eq!(same_origin_path("/ib/%2F%2Fx"), "/ib/%2F%2Fx");
        assert_eq!(same_origin_path("/ib/\u{3042}"), "/ib/%E3%81%82");
        assert_eq!(same_origin_path("/ib/a b"), "/ib/ab");
        // Not whitespace to browsers either: an encoded path segment on this origin.
        assert_eq!(
            same_origin_path("/\u{200b}/evil.example"),
            "/%E2%80%8B/evil.example"
        );
    }

    #[test]
    fn anything_that_leaves_the_origin_is_replaced() {
        for hostile in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "//evil.example",
            " //evil.example",
            "/\u{3000}/evil.example",
            "/\u{0}/evil.example",
            "https://evil.example",
            "https:evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
        ] {
            assert_eq!(same_origin_path(hostile), FALLBACK, "{hostile:?}");
        }
    }
}
