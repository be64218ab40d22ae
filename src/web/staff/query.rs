//! Query parameters of the console's searches, percent-decoded strictly.

use http::StatusCode;

use crate::web::request::WebRequest;
use crate::web::respond::{WebResponse, json_error};

/// The decoded value of `key`, `None` when absent or empty; a 400 when it is not valid
/// percent-encoded UTF-8.
pub fn text(req: &WebRequest, key: &str) -> Result<Option<String>, WebResponse> {
    let Some(raw) = req.query_param(key) else {
        return Ok(None);
    };
    let decoded = decode(raw).ok_or_else(|| {
        json_error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            &format!("the query parameter {key} is not valid percent-encoded UTF-8"),
        )
    })?;
    Ok((!decoded.is_empty()).then_some(decoded))
}

/// An integer parameter.
pub fn number(req: &WebRequest, key: &str) -> Result<Option<i64>, WebResponse> {
    text(req, key)?
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    &format!("the query parameter {key} must be a whole number"),
                )
            })
        })
        .transpose()
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space).
fn decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = char::from(*bytes.get(i + 1)?).to_digit(16)?;
                let lo = char::from(*bytes.get(i + 2)?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.chars().any(char::is_control)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_strictly() {
        assert_eq!(decode("a%40b+c").as_deref(), Some("a@b c"));
        assert_eq!(decode("%E5%A4%AA").as_deref(), Some("太"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%FF"), None);
        assert_eq!(decode("a%0Ab"), None);
    }
}
