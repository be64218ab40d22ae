//! Finding the login field in a JSON login body, at any depth. Walked with serde's visitor
//! rather than read into a map, which would keep only the last of two equal keys and hide
//! the repetition an app might resolve the other way.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Found;

/// Reports every key naming the login field to `found`; `Err` when `body` is not one JSON
/// value.
pub(super) fn walk(body: &[u8], found: &mut Found<'_>) -> Result<(), ()> {
    let mut de = serde_json::Deserializer::from_slice(body);
    Walk { found }.deserialize(&mut de).map_err(|_| ())?;
    de.end().map_err(|_| ())
}

struct Walk<'w, 'f> {
    found: &'w mut Found<'f>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Walk {
                found: &mut *self.found,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if self.found.is_field(&key) {
                let value: serde_json::Value = map.next_value()?;
                self.found.saw(value.as_str());
            } else {
                map.next_value_seed(Walk {
                    found: &mut *self.found,
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> Result<(usize, bool), ()> {
        let mut f = Found::new("loginId", "alice");
        walk(body.as_bytes(), &mut f)?;
        Ok((f.count, f.other))
    }

    #[test]
    fn keys_are_found_at_any_depth_and_counted() {
        assert_eq!(run(r#"{"loginId":"alice","pw":"x"}"#), Ok((1, false)));
        assert_eq!(run(r#"{"user":{"LOGINID":"bob"}}"#), Ok((1, true)));
        assert_eq!(run(r#"[{"login\u0049d":"bob"}]"#), Ok((1, true)));
        assert_eq!(run(r#"{"loginId":"alice","loginId":"bob"}"#), Ok((2, true)));
        assert_eq!(run(r#"{"loginId":["alice"]}"#), Ok((1, true)));
        assert_eq!(run(r#"{"a":[1,2.5,null,true]}"#), Ok((0, false)));
        assert_eq!(run(r#"{"loginId":"alice"} {"loginId":"bob"}"#), Err(()));
        assert_eq!(run("{"), Err(()));
    }
}
