//! The checks a rollover to a new CA key passes before anything is generated or signed:
//! the key label is new, and the new CA's name is its own (CRLs and OCSP answers are
//! matched to CAs by name). Also the name a rollover gives by default.
//!
//! Pure: the caller reads the installed CAs and does the key work; nothing here touches
//! the HSM or the store.

use super::name::{CaName, NameError};

/// A CA already installed, as a rollover checks against it.
#[derive(Debug, Clone, Copy)]
pub struct InstalledCa<'a> {
    pub id: i64,
    pub key_label: &'a str,
    pub cert_der: &'a [u8],
}

/// Why a rollover was refused. Nothing was made.
#[derive(Debug, thiserror::Error)]
pub enum RolloverError {
    /// The key label already belongs to a CA.
    #[error("the key {0:?} already belongs to a CA; a rollover needs a new key label")]
    LabelTaken(String),
    /// The name is not a CA name certgate can write.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Another CA already has this name.
    #[error(
        "CA {id} already has the subject {subject:?}; give the new CA its own --subject \
         (CRLs are matched to CAs by name)"
    )]
    SubjectTaken { id: i64, subject: String },
}

/// The subject of the CA a rollover to the key `label` makes: `subject` when given,
/// otherwise `configured` (`[ca] subject`) with the label added to its CN, so two
/// generations differ by name. Refused when `label` already belongs to one of `installed`,
/// or when one of them already has that name.
pub fn rollover_subject(
    installed: &[InstalledCa<'_>],
    label: &str,
    subject: Option<&str>,
    configured: &str,
) -> Result<CaName, RolloverError> {
    if installed.iter().any(|ca| ca.key_label == label) {
        return Err(RolloverError::LabelTaken(label.to_owned()));
    }
    let name = match subject {
        Some(text) => CaName::parse(text)?,
        None => CaName::parse(configured)?.with_cn_suffix(label)?,
    };
    if let Some(ca) = installed
        .iter()
        .find(|ca| name.same_as_der(&subject_of(ca.cert_der)))
    {
        return Err(RolloverError::SubjectTaken {
            id: ca.id,
            subject: subject.map_or_else(|| name.to_string(), str::to_owned),
        });
    }
    Ok(name)
}

/// The subject DER of a certificate; empty (matching no name) when it cannot be parsed.
fn subject_of(cert_der: &[u8]) -> Vec<u8> {
    match x509_parser::parse_x509_certificate(cert_der) {
        Ok((_, cert)) => cert.subject().as_raw().to_vec(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIGURED: &str = "CN=certgate Customer CA,O=Example Bank";

    /// A first CA named `[ca] subject`, key `certgate-ca`.
    fn first_ca() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = CaName::parse(CONFIGURED).unwrap().to_rcgen().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn installed(cert_der: &[u8]) -> [InstalledCa<'_>; 1] {
        [InstalledCa {
            id: 1,
            key_label: "certgate-ca",
            cert_der,
        }]
    }

    #[test]
    fn a_new_label_gets_the_configured_name_with_the_label() {
        let first = first_ca();
        let installed = installed(&first);
        let name = rollover_subject(&installed, "ca-2", None, CONFIGURED).unwrap();
        assert_eq!(
            name.to_string(),
            "CN=certgate Customer CA ca-2,O=Example Bank"
        );
        let given = rollover_subject(&installed, "ca-2", Some("CN=Next,O=Bank"), CONFIGURED);
        assert_eq!(given.unwrap().to_string(), "CN=Next,O=Bank");
    }

    #[test]
    fn a_used_label_or_name_is_refused() {
        let first = first_ca();
        let installed = installed(&first);
        let err = rollover_subject(&installed, "certgate-ca", None, CONFIGURED).unwrap_err();
        assert!(err.to_string().contains("already belongs to a CA"), "{err}");
        // The same name, even spelt in another case, would confuse CRL matching.
        let same = "CN=certgate customer CA,O=Example Bank";
        let err = rollover_subject(&installed, "ca-3", Some(same), CONFIGURED).unwrap_err();
        assert!(
            matches!(&err, RolloverError::SubjectTaken { id: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("already has the subject"), "{err}");
        let err = rollover_subject(&installed, "ca-3", Some("O=x"), CONFIGURED).unwrap_err();
        assert_eq!(err.to_string(), "a CN is required");
    }
}
