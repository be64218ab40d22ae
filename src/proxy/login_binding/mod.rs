//! Login-ID binding: on a route that asks for it, every request to the login path or under
//! it (any method, on the canonical path) may name only the certificate's login ID. The field is
//! looked for, ignoring ASCII case, in the query and in the body (urlencoded, multipart or
//! JSON, at any depth); values are compared decoded. A field named twice, a body of another
//! type, an encoded (compressed) body, one over the limit or malformed is refused: the app
//! might read it differently. The body is read up to a bound, then forwarded unchanged.

mod json;
mod multipart;

use bytes::Bytes;
use http::{HeaderMap, Request, header};

use super::refusal::Problem;
use crate::config::LoginBindingConfig;
use crate::http_common::body::{ProxyBody, collect_limited, full};

/// Checks `req`, whose canonical path is `path`, against `binding` for the certificate's
/// `login`; returns the request to forward (with its body buffered when it was read).
pub async fn check(
    binding: &LoginBindingConfig,
    login: &str,
    path: &str,
    req: Request<ProxyBody>,
) -> Result<Request<ProxyBody>, Problem> {
    if !same_path(path, &binding.path) {
        return Ok(req);
    }
    let mut found = Found::new(&binding.field, login);
    if let Some(q) = req.uri().query() {
        urlencoded(q.as_bytes(), &mut found);
    }
    let kind = body_kind(req.headers());
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match collect_limited(body, binding.max_form_bytes).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(refused(
                Problem::BodyTooLarge,
                "login request body too large",
            ));
        }
        Err(_) => {
            return Err(refused(
                Problem::LoginFormUnreadable,
                "login body unreadable",
            ));
        }
    };
    if !bytes.is_empty() {
        let read = match kind {
            Some(Kind::Form) => {
                urlencoded(&bytes, &mut found);
                Ok(())
            }
            Some(Kind::Json) => json::walk(&bytes, &mut found),
            Some(Kind::Multipart(boundary)) => multipart::walk(&bytes, &boundary, &mut found),
            None => Err(()),
        };
        if read.is_err() {
            return Err(refused(
                Problem::LoginFormUnreadable,
                "login body unreadable",
            ));
        }
    }
    match found.verdict() {
        Verdict::Pass => Ok(Request::from_parts(parts, full(bytes))),
        Verdict::Repeated => Err(refused(Problem::LoginMismatch, "login ID field repeated")),
        Verdict::Other => Err(refused(Problem::LoginMismatch, "another login ID named")),
    }
}

fn refused(p: Problem, what: &'static str) -> Problem {
    tracing::warn!(target: "certgate::security", reason = p.code(), "{what}");
    p
}

/// `path` is the binding's, ignoring ASCII case and a trailing `/`, or lies under it: a
/// servlet mapped to `/login/*` answers `/login/x` too, and Spring's suffix patterns answer
/// `/login.do`.
fn same_path(path: &str, binding: &str) -> bool {
    let (path, binding) = (path.as_bytes(), binding.trim_end_matches('/').as_bytes());
    path.len() >= binding.len()
        && path[..binding.len()].eq_ignore_ascii_case(binding)
        && matches!(path.get(binding.len()), None | Some(b'/' | b'.'))
}

/// `name` without the whitespace (as Python's `str.strip` sees it) and byte order marks
/// around it.
fn trimmed(name: &str) -> &str {
    name.trim_matches(|c: char| {
        c.is_whitespace() || ('\x1c'..='\x1f').contains(&c) || c == '\u{feff}'
    })
}

/// Names equal ignoring ASCII case, with `.` and ` ` read as `_`.
fn same_name(a: &str, b: &str) -> bool {
    let fold = |c: u8| match c {
        b'.' | b' ' => b'_',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// The occurrences of the login field seen so far.
pub(super) struct Found<'a> {
    field: &'a str,
    login: &'a str,
    count: usize,
    other: bool,
}

enum Verdict {
    Pass,
    Repeated,
    Other,
}

impl<'a> Found<'a> {
    fn new(field: &'a str, login: &'a str) -> Self {
        Self {
            field,
            login,
            count: 0,
            other: false,
        }
    }

    /// Whether `name` may name the login field to some app: ignoring ASCII case, and any of
    /// its bracket segments as PHP-, Rails- and qs-style parsers read them (`loginId[]`,
    /// `user[loginId]`, and `[loginId]`, which Express's qs reads as `loginId`), or of its
    /// dotted parts (`user.loginId`, qs with `allowDots`). Whitespace and byte order marks
    /// around a name or a part are not part of it (body-parser drops a body's leading mark,
    /// Django trims multipart names), and `.` or a space match `_` in the whole name (PHP
    /// turns both into `_`).
    pub(super) fn is_field(&self, name: &str) -> bool {
        let name = trimmed(name);
        let (root, rest) = name.split_once('[').unwrap_or((name, ""));
        let brackets = rest
            .split('[')
            .filter_map(|s| s.split_once(']').map(|(inner, _)| inner));
        same_name(trimmed(root), self.field)
            || root
                .split('.')
                .chain(brackets)
                .any(|s| same_name(trimmed(s), self.field))
    }

    /// One occurrence of the field, with its decoded value (`None`: not a string).
    pub(super) fn saw(&mut self, value: Option<&str>) {
        self.count += 1;
        if value != Some(self.login) {
            self.other = true;
        }
    }

    fn verdict(&self) -> Verdict {
        match (self.count, self.other) {
            (2.., _) => Verdict::Repeated,
            (_, true) => Verdict::Other,
            _ => Verdict::Pass,
        }
    }
}

fn urlencoded(form: &[u8], found: &mut Found<'_>) {
    for (k, v) in form_urlencoded::parse(form) {
        if found.is_field(&k) {
            found.saw(Some(&v));
        }
    }
}

/// The body types read.
enum Kind {
    Form,
    Json,
    /// With its boundary.
    Multipart(String),
}

/// The readable body type of a request, if any: UTF-8 (or no charset), no content coding.
fn body_kind(h: &HeaderMap) -> Option<Kind> {
    let encoded = h
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let mut types = h.get_all(header::CONTENT_TYPE).iter();
    let ct = types.next()?.to_str().ok()?;
    if encoded || types.next().is_some() {
        return None;
    }
    let mut params = multipart::params(ct)?;
    let (media, _) = params.next()?;
    let mut boundary = None;
    for (name, value) in params {
        match name.to_ascii_lowercase().as_str() {
            "charset"
                if value.eq_ignore_ascii_case("utf-8")
                    || value.eq_ignore_ascii_case("us-ascii") => {}
            "boundary" if boundary.is_none() => boundary = Some(value),
            _ => return None,
        }
    }
    match media.to_ascii_lowercase().as_str() {
        "application/x-www-form-urlencoded" if boundary.is_none() => Some(Kind::Form),
        "application/json" if boundary.is_none() => Some(Kind::Json),
        "multipart/form-data" => boundary
            .filter(|b| (1..=70).contains(&b.len()))
            .map(Kind::Multipart),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(query: Option<&str>, form: &str) -> &'static str {
        let mut f = Found::new("loginId", "alice");
        if let Some(q) = query {
            urlencoded(q.as_bytes(), &mut f);
        }
        urlencoded(form.as_bytes(), &mut f);
        match f.verdict() {
            Verdict::Pass => "pass",
            Verdict::Repeated => "repeated",
            Verdict::Other => "other",
        }
    }

    #[test]
    fn every_spelling_of_the_field_is_checked() {
        assert_eq!(verdict(None, "loginId=alice&pw=x"), "pass");
        assert_eq!(verdict(None, "pw=x"), "pass");
        assert_eq!(verdict(None, "loginId=al%69ce"), "pass");
        assert_eq!(verdict(None, "loginId=bob"), "other");
        assert_eq!(verdict(None, "LOGINID=bob"), "other");
        assert_eq!(verdict(None, "loginid=bob"), "other");
        assert_eq!(verdict(None, "loginId[]=bob"), "other");
        assert_eq!(verdict(None, "loginId=alice;loginId=bob"), "other");
        assert_eq!(verdict(Some("loginId=bob"), "pw=x"), "other");
        assert_eq!(verdict(None, "loginId=alice&loginId=alice"), "repeated");
        assert_eq!(verdict(Some("loginId=alice"), "loginId=alice"), "repeated");
        assert_eq!(verdict(None, "loginIdx=bob"), "pass");
        // How other parsers read names: qs's leading bracket, nested fields, a byte order
        // mark before the first name (raw or encoded).
        assert_eq!(verdict(None, "[loginId]=bob"), "other");
        assert_eq!(verdict(Some("%5BloginId%5D=bob"), "pw=x"), "other");
        assert_eq!(verdict(None, "user[loginId]=bob"), "other");
        assert_eq!(verdict(None, "user[loginId]=alice"), "pass");
        assert_eq!(verdict(None, "a[b][LOGINID][]=bob"), "other");
        assert_eq!(verdict(None, "\u{feff}loginId=bob"), "other");
        assert_eq!(verdict(None, "%EF%BB%BFloginId=bob"), "other");
        assert_eq!(
            verdict(None, "\u{feff}loginId=bob&loginId=alice"),
            "repeated"
        );
        assert_eq!(verdict(None, "[loginId]=alice&loginId=alice"), "repeated");
        assert_eq!(verdict(None, "x[loginIdx]=bob&loginI[d]=bob"), "pass");
        // Whitespace around a name (Django trims multipart names), qs's allowDots.
        assert_eq!(verdict(None, "loginId%20=bob"), "other");
        assert_eq!(verdict(None, "%09loginId%0B=bob"), "other");
        assert_eq!(verdict(None, "user.loginId=bob"), "other");
        assert_eq!(verdict(None, "a.b[%20loginId%20]=bob"), "other");
        assert_eq!(verdict(None, "user.loginIdx=bob&xloginId=bob"), "pass");
        let mut f = Found::new("login_id", "alice");
        urlencoded(b"login.id=bob", &mut f);
        assert!(matches!(f.verdict(), Verdict::Other));
        let mut f = Found::new("login_id", "alice");
        urlencoded(b"login+id=bob", &mut f);
        assert!(matches!(f.verdict(), Verdict::Other));
    }

    #[test]
    fn the_binding_covers_its_path_and_what_lies_under_it() {
        for path in [
            "/ib/login",
            "/ib/login/",
            "/IB/Login",
            "/ib/login/x",
            "/ib/login.do",
        ] {
            assert!(same_path(path, "/ib/login"), "{path}");
            assert!(same_path(path, "/ib/login/"), "{path}");
        }
        for path in ["/ib/logins", "/ib/log", "/ib", "/ib/loginx/y"] {
            assert!(!same_path(path, "/ib/login"), "{path}");
        }
    }

    fn kind(ct: &[&str], encoding: Option<&str>) -> Option<&'static str> {
        let mut h = HeaderMap::new();
        for c in ct {
            h.append(header::CONTENT_TYPE, c.parse().unwrap());
        }
        if let Some(e) = encoding {
            h.insert(header::CONTENT_ENCODING, e.parse().unwrap());
        }
        body_kind(&h).map(|k| match k {
            Kind::Form => "form",
            Kind::Json => "json",
            Kind::Multipart(_) => "multipart",
        })
    }

    #[test]
    fn only_plain_utf8_bodies_of_the_three_types_are_read() {
        assert_eq!(
            kind(&["application/x-www-form-urlencoded"], None),
            Some("form")
        );
        assert_eq!(
            kind(&["Application/JSON; charset=UTF-8"], None),
            Some("json")
        );
        assert_eq!(
            kind(&["multipart/form-data; boundary=\"a b\""], None),
            Some("multipart")
        );
        assert_eq!(kind(&["multipart/form-data"], None), None);
        assert_eq!(kind(&["application/json; charset=utf-16"], None), None);
        assert_eq!(
            kind(&["application/x-www-form-urlencoded"], Some("gzip")),
            None
        );
        assert_eq!(kind(&["text/plain"], None), None);
        assert_eq!(kind(&["application/json", "text/plain"], None), None);
        assert_eq!(kind(&[], None), None);
    }
}
