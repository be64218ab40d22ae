//! Finding key objects in the token and reading them: the private key by label and class,
//! its attributes, and its public key as a DER SubjectPublicKeyInfo.
//!
//! What this module must not do: judge a key (see `attributes`), create objects (see
//! `keygen`), or retry (the pool does).

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::HsmError;
use super::asn1;
use super::attributes::KeyAttributes;
use super::ckr::call;
use super::pool::OpError;
use crate::keys::KeyAlgorithm;

/// A private key as read from the token.
#[derive(Debug)]
pub(crate) struct PrivateKey {
    pub(crate) handle: ObjectHandle,
    pub(crate) id: Vec<u8>,
    pub(crate) key_type: Option<KeyType>,
    pub(crate) attributes: KeyAttributes,
    ec_params: Option<Vec<u8>>,
    modulus: Option<Vec<u8>>,
    public_exponent: Option<Vec<u8>>,
}

/// The one object matching `template`, `None` if there is none.
fn find_one(
    session: &Session,
    template: &[Attribute],
    label: &str,
) -> Result<Option<ObjectHandle>, OpError> {
    let found = call("C_FindObjects", session.find_objects(template))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(HsmError::UnsupportedKey {
            label: label.to_owned(),
            reason: format!("{} objects of one class carry this label or id", many.len()),
        }
        .into()),
    }
}

/// Whether any object (key or other) carries `label`.
pub(crate) fn label_taken(session: &Session, label: &str) -> Result<bool, OpError> {
    let found = call(
        "C_FindObjects",
        session.find_objects(&[Attribute::Label(label.as_bytes().to_vec())]),
    )?;
    Ok(!found.is_empty())
}

/// The handle of the private key labelled `label` (and, if given, with this `CKA_ID`).
pub(crate) fn find_private_key(
    session: &Session,
    label: &str,
    id: Option<&[u8]>,
) -> Result<ObjectHandle, OpError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = id {
        template.push(Attribute::Id(id.to_vec()));
    }
    find_one(session, &template, label)?
        .ok_or_else(|| HsmError::KeyNotFound(label.to_owned()).into())
}

/// A private key as `hsm info` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedKey {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID` (empty when absent).
    pub id: Vec<u8>,
    /// `CKA_ALWAYS_AUTHENTICATE` (false when absent).
    pub always_authenticate: bool,
}

/// Every private key object's label, `CKA_ID` and `CKA_ALWAYS_AUTHENTICATE`.
pub(crate) fn list_private_keys(session: &Session) -> Result<Vec<ListedKey>, OpError> {
    let handles = call(
        "C_FindObjects",
        session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)]),
    )?;
    let mut keys = Vec::with_capacity(handles.len());
    for handle in handles {
        let attrs = call(
            "C_GetAttributeValue",
            session.get_attributes(
                handle,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::AlwaysAuthenticate,
                ],
            ),
        )?;
        let mut key = ListedKey {
            label: String::new(),
            id: Vec::new(),
            always_authenticate: false,
        };
        for attr in attrs {
            match attr {
                Attribute::Label(l) => key.label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(i) => key.id = i,
                Attribute::AlwaysAuthenticate(v) => key.always_authenticate = v,
                _ => {}
            }
        }
        keys.push(key);
    }
    keys.sort();
    Ok(keys)
}

/// Reads the private key labelled `label` (and, if given, with this `CKA_ID`).
pub(crate) fn read_private_key(
    session: &Session,
    label: &str,
    id: Option<&[u8]>,
) -> Result<PrivateKey, OpError> {
    let handle = find_private_key(session, label, id)?;
    let wanted = [
        AttributeType::KeyType,
        AttributeType::Id,
        AttributeType::Token,
        AttributeType::Private,
        AttributeType::Sensitive,
        AttributeType::AlwaysSensitive,
        AttributeType::Extractable,
        AttributeType::NeverExtractable,
        AttributeType::Local,
        AttributeType::Decrypt,
        AttributeType::Unwrap,
        AttributeType::Derive,
        AttributeType::AlwaysAuthenticate,
        AttributeType::EcParams,
        AttributeType::Modulus,
        AttributeType::PublicExponent,
    ];
    let attrs = call(
        "C_GetAttributeValue",
        session.get_attributes(handle, &wanted),
    )?;
    // Absent attributes keep their unsafe value (see `attributes`).
    let mut key = PrivateKey {
        handle,
        id: Vec::new(),
        key_type: None,
        attributes: KeyAttributes {
            label: label.to_owned(),
            id_hex: String::new(),
            algorithm: None,
            token: false,
            private: false,
            sensitive: false,
            always_sensitive: false,
            extractable: true,
            never_extractable: false,
            local: false,
            decrypt: true,
            unwrap: true,
            derive: true,
            always_authenticate: false,
        },
        ec_params: None,
        modulus: None,
        public_exponent: None,
    };
    for attr in attrs {
        let a = &mut key.attributes;
        match attr {
            Attribute::KeyType(t) => key.key_type = Some(t),
            Attribute::Id(id) => key.id = id,
            Attribute::Token(v) => a.token = v,
            Attribute::Private(v) => a.private = v,
            Attribute::Sensitive(v) => a.sensitive = v,
            Attribute::AlwaysSensitive(v) => a.always_sensitive = v,
            Attribute::Extractable(v) => a.extractable = v,
            Attribute::NeverExtractable(v) => a.never_extractable = v,
            Attribute::Local(v) => a.local = v,
            Attribute::Decrypt(v) => a.decrypt = v,
            Attribute::Unwrap(v) => a.unwrap = v,
            Attribute::Derive(v) => a.derive = v,
            Attribute::AlwaysAuthenticate(v) => a.always_authenticate = v,
            Attribute::EcParams(v) => key.ec_params = Some(v),
            Attribute::Modulus(v) => key.modulus = Some(v),
            Attribute::PublicExponent(v) => key.public_exponent = Some(v),
            _ => {}
        }
    }
    key.attributes.id_hex = hex::encode(&key.id);
    key.attributes.algorithm = algorithm_of(
        key.key_type,
        key.ec_params.as_deref(),
        key.modulus.as_deref(),
    );
    Ok(key)
}

/// The CA algorithm of a key, if it is one the CA supports.
fn algorithm_of(
    key_type: Option<KeyType>,
    ec_params: Option<&[u8]>,
    modulus: Option<&[u8]>,
) -> Option<KeyAlgorithm> {
    match key_type? {
        t if t == KeyType::EC => asn1::curve_of(ec_params?),
        t if t == KeyType::RSA => match modulus_bits(modulus?) {
            2048 => Some(KeyAlgorithm::Rsa2048),
            3072 => Some(KeyAlgorithm::Rsa3072),
            _ => None,
        },
        _ => None,
    }
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let skip = modulus.iter().take_while(|b| **b == 0).count();
    match modulus.get(skip) {
        Some(first) => (modulus.len() - skip) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// The DER SubjectPublicKeyInfo of `key`, from its public key object (same `CKA_ID`, else
/// same label). An RSA private key carries modulus and exponent itself, used when there is no
/// public object.
pub(crate) fn public_key_der(
    session: &Session,
    key: &PrivateKey,
    algorithm: KeyAlgorithm,
) -> Result<Vec<u8>, OpError> {
    let label = &key.attributes.label;
    let by_id = [
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Id(key.id.clone()),
    ];
    let by_label = [
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let public = match find_one(session, &by_id, label)? {
        Some(h) => Some(h),
        None => find_one(session, &by_label, label)?,
    };
    let unsupported = |reason: String| -> OpError {
        HsmError::UnsupportedKey {
            label: label.clone(),
            reason,
        }
        .into()
    };
    match algorithm {
        KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => {
            let handle = public.ok_or_else(|| {
                unsupported("no public key object with its CKA_ID or label".into())
            })?;
            let attrs = call(
                "C_GetAttributeValue",
                session.get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint]),
            )?;
            let (mut params, mut point) = (None, None);
            for a in attrs {
                match a {
                    Attribute::EcParams(v) => params = Some(v),
                    Attribute::EcPoint(v) => point = Some(v),
                    _ => {}
                }
            }
            let params =
                params.ok_or_else(|| unsupported("the public key has no CKA_EC_PARAMS".into()))?;
            if Some(params.as_slice()) != key.ec_params.as_deref() {
                return Err(unsupported("the public key is on another curve".into()));
            }
            let point =
                point.ok_or_else(|| unsupported("the public key has no CKA_EC_POINT".into()))?;
            let point = uncompressed_point(&point, algorithm)
                .ok_or_else(|| unsupported("CKA_EC_POINT is not an uncompressed point".into()))?;
            asn1::ec_spki(&params, point)
                .map_err(|e| unsupported(format!("its public key cannot be encoded: {e}")))
        }
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa2048Pss
        | KeyAlgorithm::Rsa3072Pss => {
            let (modulus, exponent) = match public {
                Some(handle) => {
                    let attrs = call(
                        "C_GetAttributeValue",
                        session.get_attributes(
                            handle,
                            &[AttributeType::Modulus, AttributeType::PublicExponent],
                        ),
                    )?;
                    let (mut n, mut e) = (None, None);
                    for a in attrs {
                        match a {
                            Attribute::Modulus(v) => n = Some(v),
                            Attribute::PublicExponent(v) => e = Some(v),
                            _ => {}
                        }
                    }
                    (n, e)
                }
                None => (key.modulus.clone(), key.public_exponent.clone()),
            };
            let modulus = modulus.ok_or_else(|| unsupported("no RSA modulus".into()))?;
            let exponent = exponent.ok_or_else(|| unsupported("no RSA public exponent".into()))?;
            if Some(modulus.as_slice()) != key.modulus.as_deref() {
                return Err(unsupported(
                    "the public key's modulus differs from the private key's".into(),
                ));
            }
            asn1::rsa_spki(&modulus, &exponent)
                .map_err(|e| unsupported(format!("its public key cannot be encoded: {e}")))
        }
    }
}

/// The uncompressed point of `CKA_EC_POINT`: PKCS#11 says it is wrapped in a DER OCTET
/// STRING (SoftHSM does that); some modules give it bare. The expected length tells which.
fn uncompressed_point(value: &[u8], algorithm: KeyAlgorithm) -> Option<&[u8]> {
    let len = match algorithm {
        KeyAlgorithm::EcP256 => 65,
        KeyAlgorithm::EcP384 => 97,
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa2048Pss
        | KeyAlgorithm::Rsa3072Pss => return None,
    };
    let point = if value.len() == len {
        value
    } else {
        asn1::octet_string_content(value)?
    };
    (point.len() == len && point.first() == Some(&0x04)).then_some(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_ignores_leading_zero_bytes() {
        let mut m = vec![0u8; 257];
        m[1] = 0x80;
        assert_eq!(modulus_bits(&m), 2048);
        m[1] = 0x40; // a 2047-bit modulus is not a 2048-bit key
        assert_eq!(modulus_bits(&m), 2047);
        assert_eq!(modulus_bits(&[]), 0);
    }

    #[test]
    fn point_is_taken_wrapped_or_bare() {
        let mut bare = vec![0x04u8];
        bare.extend_from_slice(&[7u8; 64]);
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&bare);
        assert_eq!(
            uncompressed_point(&wrapped, KeyAlgorithm::EcP256),
            Some(&bare[..])
        );
        assert_eq!(
            uncompressed_point(&bare, KeyAlgorithm::EcP256),
            Some(&bare[..])
        );
        assert_eq!(uncompressed_point(&wrapped, KeyAlgorithm::EcP384), None);
    }

    #[test]
    fn algorithms_are_recognised_by_curve_and_size() {
        assert_eq!(
            algorithm_of(
                Some(KeyType::EC),
                asn1::ec_params(KeyAlgorithm::EcP384).as_deref(),
                None
            ),
            Some(KeyAlgorithm::EcP384)
        );
        assert_eq!(
            algorithm_of(Some(KeyType::EC), Some(&[0x06, 0x01, 0x00]), None),
            None
        );
        let mut m = vec![0xffu8; 384];
        assert_eq!(
            algorithm_of(Some(KeyType::RSA), None, Some(&m)),
            Some(KeyAlgorithm::Rsa3072)
        );
        m.truncate(128);
        assert_eq!(algorithm_of(Some(KeyType::RSA), None, Some(&m)), None);
    }
}
