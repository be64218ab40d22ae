//! Key pair generation inside the token, for the operator's key ceremony.
//!
//! The private key is a token object behind the login, sensitive and never extractable, and
//! allowed to sign only: decrypt, unwrap and derive are set false explicitly because tokens
//! default them to true. Both halves share the label and a random `CKA_ID`. When asked, the
//! private key also gets `CKA_ALWAYS_AUTHENTICATE` (a context-specific login per signature).
//!
//! What this module must not do: overwrite or reuse an existing label, or run on the online
//! signing path.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::Session;

use super::HsmError;
use super::asn1;
use super::ckr::call;
use super::objects::label_taken;
use super::pool::OpError;
use crate::keys::KeyAlgorithm;

/// Length of the random `CKA_ID`.
const ID_LEN: usize = 16;

/// Generates the pair labelled `label`, with the `CKA_ID` given (from a key URI) or a random
/// one, and `CKA_ALWAYS_AUTHENTICATE` when `always_authenticate`. `KeyExists` if any object
/// carries the label.
pub(crate) fn generate(
    session: &Session,
    label: &str,
    algorithm: KeyAlgorithm,
    id: Option<&[u8]>,
    always_authenticate: bool,
) -> Result<(), OpError> {
    if label_taken(session, label)? {
        return Err(HsmError::KeyExists(label.to_owned()).into());
    }
    let id = match id {
        Some(id) => id.to_vec(),
        None => {
            let mut id = vec![0u8; ID_LEN];
            aws_lc_rs::rand::fill(&mut id).map_err(|_| HsmError::Pkcs11 {
                function: "random",
                detail: "the system random generator failed".into(),
            })?;
            id
        }
    };
    let (mechanism, public, mut private) = templates(label, &id, algorithm)?;
    // Only when asked: a module that does not know the attribute refuses the template.
    if always_authenticate {
        private.push(Attribute::AlwaysAuthenticate(true));
    }
    call(
        "C_GenerateKeyPair",
        session.generate_key_pair(&mechanism, &public, &private),
    )?;
    tracing::info!(label, algorithm = %algorithm, id = %hex::encode(id), always_authenticate,
        "generated a key pair in the token");
    Ok(())
}

/// The mechanism and the public and private templates for `algorithm`.
fn templates(
    label: &str,
    id: &[u8],
    algorithm: KeyAlgorithm,
) -> Result<(Mechanism<'static>, Vec<Attribute>, Vec<Attribute>), HsmError> {
    let common = |attrs: &mut Vec<Attribute>| {
        attrs.push(Attribute::Token(true));
        attrs.push(Attribute::Label(label.as_bytes().to_vec()));
        attrs.push(Attribute::Id(id.to_vec()));
    };
    let mut public = Vec::new();
    common(&mut public);
    public.extend([
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
    ]);
    let mut private = Vec::new();
    common(&mut private);
    private.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ]);
    let mechanism = match algorithm {
        KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => {
            let params = asn1::ec_params(algorithm).ok_or_else(|| HsmError::UnsupportedKey {
                label: label.to_owned(),
                reason: format!("no named curve for {algorithm}"),
            })?;
            public.push(Attribute::EcParams(params));
            Mechanism::EccKeyPairGen
        }
        // The padding is not the key's: a PSS key is generated like any RSA key.
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa2048Pss
        | KeyAlgorithm::Rsa3072Pss => {
            let bits: u64 = if algorithm.key_type() == KeyAlgorithm::Rsa2048 {
                2048
            } else {
                3072
            };
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    Ok((mechanism, public, private))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_template_forbids_every_other_use() {
        for alg in [KeyAlgorithm::EcP256, KeyAlgorithm::Rsa3072] {
            let (_, _, private) = templates("ca", &[1, 2], alg).unwrap();
            for must in [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
                Attribute::Id(vec![1, 2]),
                Attribute::Label(b"ca".to_vec()),
            ] {
                assert!(private.contains(&must), "{alg}: {must:?} missing");
            }
        }
    }

    #[test]
    fn ec_public_templates_name_their_curve() {
        let (_, public, _) = templates("ca", &[1], KeyAlgorithm::EcP384).unwrap();
        assert!(public.contains(&Attribute::EcParams(vec![
            0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22
        ])));
    }
}
