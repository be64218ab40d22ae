//! A strict reader of `multipart/form-data` (RFC 7578) login bodies, only to find the login
//! field. Strict on purpose: whatever this reader accepts must mean the same to the app's
//! parser, so a delimiter that is not exactly where RFC 2046 puts it, an `name*=` parameter,
//! a duplicated header or parameter, or a content transfer encoding is refused rather than
//! guessed at.

use super::Found;

/// The parts of `body` (delimited by `boundary`) that name the login field are reported to
/// `found`; `Err` when the body is not a well-formed form.
pub(super) fn walk(body: &[u8], boundary: &str, found: &mut Found<'_>) -> Result<(), ()> {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    // Every occurrence of the delimiter, wherever it is: one inside a part's content would
    // be read as a boundary by a lenient parser (LF endings) and hide a part from this one.
    let at: Vec<usize> = find_all(body, delim);
    let (&first, rest) = at.split_first().ok_or(())?;
    if first != 0 {
        // A preamble: allowed by RFC 2046 but a classic source of parser disagreement.
        return Err(());
    }
    let mut closed = false;
    let mut starts = std::iter::once(first)
        .chain(rest.iter().copied())
        .peekable();
    while let Some(start) = starts.next() {
        if closed {
            return Err(());
        }
        let after = &body[start + delim.len()..];
        let Some(next) = starts.peek().copied() else {
            // The last delimiter must close the body: `--boundary--` and an optional CRLF.
            if after == b"--" || after == b"--\r\n" {
                closed = true;
                continue;
            }
            return Err(());
        };
        let part = after.strip_prefix(b"\r\n").ok_or(())?;
        // The part runs up to the CRLF before the next delimiter.
        let end = next.checked_sub(start + delim.len() + 2 + 2).ok_or(())?;
        let (part, crlf) = part.split_at_checked(end).ok_or(())?;
        if !crlf.starts_with(b"\r\n") {
            return Err(());
        }
        read_part(part, found)?;
    }
    if closed { Ok(()) } else { Err(()) }
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = hay
        .get(from..)
        .and_then(|h| h.windows(needle.len()).position(|w| w == needle))
    {
        out.push(from + i);
        from += i + needle.len();
    }
    out
}

/// One part: headers, an empty line, the content.
fn read_part(part: &[u8], found: &mut Found<'_>) -> Result<(), ()> {
    let split = part
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (&part[..i], &part[i + 4..]))
        .or_else(|| part.strip_prefix(b"\r\n").map(|c| (&b""[..], c)))
        .ok_or(())?;
    let (head, content) = split;
    let head = std::str::from_utf8(head).map_err(|_| ())?;
    let mut name = None;
    let mut disposition_seen = false;
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let (h, v) = line.split_once(':').ok_or(())?;
        if h.starts_with([' ', '\t']) || h.trim() != h {
            // Folded or padded header names are read differently by different parsers.
            return Err(());
        }
        match h.to_ascii_lowercase().as_str() {
            "content-disposition" if !disposition_seen => {
                disposition_seen = true;
                let mut p = params(v).ok_or(())?;
                let (kind, _) = p.next().ok_or(())?;
                if !kind.eq_ignore_ascii_case("form-data") {
                    return Err(());
                }
                for (k, v) in p {
                    match k.to_ascii_lowercase().as_str() {
                        "name" if name.is_none() => name = Some(v),
                        "filename" => {}
                        _ => return Err(()),
                    }
                }
            }
            "content-type" => {
                let mut p = params(v).ok_or(())?;
                p.next().ok_or(())?;
                for (k, v) in p {
                    if !k.eq_ignore_ascii_case("charset") || !v.eq_ignore_ascii_case("utf-8") {
                        return Err(());
                    }
                }
            }
            _ => return Err(()),
        }
    }
    let name = name.ok_or(())?;
    if found.is_field(&name) {
        found.saw(std::str::from_utf8(content).ok());
    }
    Ok(())
}

/// A header value of the form `token *( ";" name "=" (token / quoted-string) )`: the
/// leading token as `(token, "")`, then the parameters. `None` when malformed.
pub(super) fn params(v: &str) -> Option<std::vec::IntoIter<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = v.trim_start();
    let end = rest.find(';').unwrap_or(rest.len());
    let lead = rest[..end].trim();
    if lead.is_empty() || !lead.bytes().all(is_token_or_slash) {
        return None;
    }
    out.push((lead.to_owned(), String::new()));
    rest = &rest[end..];
    while let Some(r) = rest.strip_prefix(';') {
        let r = r.trim_start();
        if r.is_empty() {
            break;
        }
        let (k, r) = r.split_once('=')?;
        let k = k.trim_end();
        if k.is_empty() || !k.bytes().all(is_token) {
            return None;
        }
        let (value, r) = if let Some(q) = r.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    '\\' => value.push(chars.next()?.1),
                    c => value.push(c),
                }
            }
            (value, &q[close? + 1..])
        } else {
            let end = r.find(';').unwrap_or(r.len());
            let t = r[..end].trim_end();
            if t.is_empty() || !t.bytes().all(is_token) {
                return None;
            }
            (t.to_owned(), &r[end..])
        };
        out.push((k.to_owned(), value));
        rest = r.trim_start();
        if !rest.is_empty() && !rest.starts_with(';') {
            return None;
        }
    }
    Some(out.into_iter())
}

/// RFC 9110 `tchar`.
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token_or_slash(c: u8) -> bool {
    is_token(c) || c == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> Result<(usize, bool), ()> {
        let mut f = Found::new("loginId", "alice");
        walk(body.as_bytes(), "XyZ", &mut f)?;
        Ok((f.count, f.other))
    }

    fn part(name: &str, value: &str) -> String {
        format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    }

    #[test]
    fn the_login_field_is_found_in_a_well_formed_form() {
        let body = format!("{}{}--XyZ--\r\n", part("pw", "x"), part("LOGINID", "bob"));
        assert_eq!(run(&body), Ok((1, true)));
        let body = format!("{}--XyZ--", part("loginId", "alice"));
        assert_eq!(run(&body), Ok((1, false)));
        let body = "--XyZ\r\nContent-Disposition: form-data; name=loginId\r\n\
                    Content-Type: text/plain; charset=UTF-8\r\n\r\nbob\r\n--XyZ--";
        assert_eq!(run(body), Ok((1, true)));
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        for body in [
            // Not closed.
            part("loginId", "alice"),
            // A preamble.
            format!("junk\r\n{}--XyZ--", part("pw", "x")),
            // A delimiter inside content, with LF endings a lenient parser honours.
            format!(
                "{}--XyZ--",
                part(
                    "pw",
                    "x\n--XyZ\nContent-Disposition: form-data; name=loginId\n\nbob"
                )
            ),
            // RFC 2231 names, duplicated names, unknown headers, transfer encodings.
            "--XyZ\r\nContent-Disposition: form-data; name*=UTF-8''loginId\r\n\r\nbob\r\n--XyZ--"
                .into(),
            "--XyZ\r\nContent-Disposition: form-data; name=pw; name=loginId\r\n\r\nbob\r\n--XyZ--"
                .into(),
            "--XyZ\r\nContent-Disposition: form-data; name=x\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nYm9i\r\n--XyZ--"
                .into(),
            // Content after the closing delimiter.
            format!("{}--XyZ--\r\n{}", part("pw", "x"), part("loginId", "bob")),
            String::new(),
        ] {
            assert_eq!(run(&body), Err(()), "{body:?}");
        }
    }

    #[test]
    fn header_parameters_are_parsed_with_quotes() {
        let p: Vec<_> = params("form-data; name=\"a;\\\"b\"; filename=x.txt")
            .unwrap()
            .collect();
        assert_eq!(p[0].0, "form-data");
        assert_eq!(p[1], ("name".into(), "a;\"b".into()));
        assert_eq!(p[2], ("filename".into(), "x.txt".into()));
        assert!(params("form-data; name=\"open").is_none());
        assert!(params("form-data; =x").is_none());
    }
}
