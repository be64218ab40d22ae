//! The syntax of a distinguished name in the configuration (`[ca] subject`, `ca rollover
//! --subject`): `KEY=VALUE` pairs separated by commas, read into rcgen's form. The CA uses
//! the same parser (`ca` re-exports it), so a subject the configuration accepts is one the
//! CA can issue under.
//!
//! What this module must not do: decide any other field of a certificate.

/// Parses `CN=...,O=...` into rcgen's form.
pub fn parse_distinguished_name(s: &str) -> Result<rcgen::DistinguishedName, String> {
    let mut dn = rcgen::DistinguishedName::new();
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => rcgen::DnType::CommonName,
            "O" => rcgen::DnType::OrganizationName,
            "OU" => rcgen::DnType::OrganizationalUnitName,
            "C" => rcgen::DnType::CountryName,
            "L" => rcgen::DnType::LocalityName,
            "ST" => rcgen::DnType::StateOrProvinceName,
            other => {
                return Err(format!(
                    "unsupported attribute {other:?} (use CN, O, OU, C, L, ST)"
                ));
            }
        };
        let v = v.trim();
        if v.is_empty() {
            return Err(format!("{k} has an empty value"));
        }
        dn.push(ty, v);
    }
    if dn.get(&rcgen::DnType::CommonName).is_none() {
        return Err("a CN is required".into());
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_read_and_a_bad_one_named() {
        let dn = parse_distinguished_name("CN=certgate CA, O=Example Bank,C=JP").unwrap();
        assert!(dn.get(&rcgen::DnType::CommonName).is_some());
        assert!(dn.get(&rcgen::DnType::CountryName).is_some());
        for (bad, why) in [
            ("O=Example Bank", "a CN is required"),
            ("CN=x,E=a@b", "unsupported attribute"),
            ("CN=x,O", "is not KEY=VALUE"),
            ("CN= ", "empty value"),
        ] {
            let err = parse_distinguished_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
