//! The ASN.1 shapes PKCS#11 values take in X.509, through the `der`, `spki` and `pkcs1` types:
//! the `ECDSA-Sig-Value` from the raw `r‖s` that `CKM_ECDSA` returns, the
//! SubjectPublicKeyInfo of a token key (EC point or RSA modulus and exponent), the point out of
//! `CKA_EC_POINT`'s OCTET STRING, and the named-curve OIDs `CKA_EC_PARAMS` holds.
//!
//! What this module must not do: parse certificates (that is `ca`'s work) or write DER by
//! hand.

use const_oid::db::rfc5912::{
    ID_EC_PUBLIC_KEY, ID_SHA_256, RSA_ENCRYPTION, SECP_256_R_1, SECP_384_R_1,
};
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use crate::keys::KeyAlgorithm;

/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279).
#[derive(der::Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// `DigestInfo ::= SEQUENCE { digestAlgorithm AlgorithmIdentifier, digest OCTET STRING }`
/// (RFC 8017 section 9.2): what `CKM_RSA_PKCS` signs for a PKCS#1 v1.5 signature when the
/// token cannot hash.
#[derive(der::Sequence)]
struct DigestInfo<'a> {
    digest_algorithm: AlgorithmIdentifierRef<'a>,
    digest: OctetStringRef<'a>,
}

/// The DER `DigestInfo` of a SHA-256 hash (parameters NULL, as RFC 8017 writes them).
pub(crate) fn sha256_digest_info(hash: &[u8]) -> der::Result<Vec<u8>> {
    DigestInfo {
        digest_algorithm: AlgorithmIdentifierRef {
            oid: ID_SHA_256,
            parameters: Some(AnyRef::NULL),
        },
        digest: OctetStringRef::new(hash)?,
    }
    .to_der()
}

/// The named curve of an EC algorithm.
fn named_curve(algorithm: KeyAlgorithm) -> Option<ObjectIdentifier> {
    match algorithm {
        KeyAlgorithm::EcP256 => Some(SECP_256_R_1),
        KeyAlgorithm::EcP384 => Some(SECP_384_R_1),
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa2048Pss
        | KeyAlgorithm::Rsa3072Pss => None,
    }
}

/// `CKA_EC_PARAMS` for an EC algorithm: the DER of its named-curve OID. `None` for RSA.
pub(crate) fn ec_params(algorithm: KeyAlgorithm) -> Option<Vec<u8>> {
    named_curve(algorithm)?.to_der().ok()
}

/// The EC algorithm whose named curve `CKA_EC_PARAMS` holds; `None` for other curves and for
/// explicit parameters.
pub(crate) fn curve_of(ec_params: &[u8]) -> Option<KeyAlgorithm> {
    match ObjectIdentifier::from_der(ec_params).ok()? {
        oid if oid == SECP_256_R_1 => Some(KeyAlgorithm::EcP256),
        oid if oid == SECP_384_R_1 => Some(KeyAlgorithm::EcP384),
        _ => None,
    }
}

/// Converts `CKM_ECDSA`'s raw `r‖s` (two halves of equal length) into the DER
/// `ECDSA-Sig-Value`. `None` on an empty or odd input.
pub(crate) fn ecdsa_signature_from_raw(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    EcdsaSigValue {
        r: UintRef::new(r).ok()?,
        s: UintRef::new(s).ok()?,
    }
    .to_der()
    .ok()
}

/// SubjectPublicKeyInfo of an EC key: `ec_params` is `CKA_EC_PARAMS` (the DER curve OID),
/// `point` the uncompressed point (already out of its OCTET STRING).
pub(crate) fn ec_spki(ec_params: &[u8], point: &[u8]) -> der::Result<Vec<u8>> {
    SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(AnyRef::from_der(ec_params)?),
        },
        subject_public_key: BitStringRef::from_bytes(point)?,
    }
    .to_der()
}

/// SubjectPublicKeyInfo of an RSA key: rsaEncryption/NULL around a PKCS#1 RSAPublicKey.
/// An empty modulus or exponent is refused (it would encode as an empty INTEGER).
pub(crate) fn rsa_spki(modulus: &[u8], public_exponent: &[u8]) -> der::Result<Vec<u8>> {
    let key = pkcs1::RsaPublicKey {
        modulus: positive_integer(modulus)?,
        public_exponent: positive_integer(public_exponent)?,
    }
    .to_der()?;
    SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: RSA_ENCRYPTION,
            parameters: Some(AnyRef::NULL),
        },
        subject_public_key: BitStringRef::from_bytes(&key)?,
    }
    .to_der()
}

/// An INTEGER from big-endian magnitude bytes; refuses none at all, which `UintRef` would
/// write as an INTEGER without content.
fn positive_integer(magnitude: &[u8]) -> der::Result<UintRef<'_>> {
    if magnitude.is_empty() {
        return Err(der::Tag::Integer.value_error());
    }
    UintRef::new(magnitude)
}

/// The content of a DER OCTET STRING that spans all of `der`, or `None` if `der` is not
/// exactly one OCTET STRING.
pub(crate) fn octet_string_content(der: &[u8]) -> Option<&[u8]> {
    OctetStringRef::from_der(der).ok().map(|o| o.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha256_digest_info_has_rfc_8017s_prefix() {
        // RFC 8017 section 9.2, note 1: the SHA-256 DigestInfo prefix.
        let prefix = hex::decode("3031300d060960864801650304020105000420").unwrap();
        let hash = [0xab; 32];
        let info = sha256_digest_info(&hash).unwrap();
        assert_eq!(info[..prefix.len()], prefix[..]);
        assert_eq!(info[prefix.len()..], hash[..]);
    }

    /// `raw` is `r‖s`; the expected DER of the two INTEGER contents, each as DER writes it.
    fn sig(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut raw = r.to_vec();
        raw.extend_from_slice(s);
        ecdsa_signature_from_raw(&raw).expect("even, non-empty input")
    }

    #[test]
    fn integers_lose_their_leading_zeros() {
        assert_eq!(
            sig(&[0, 0, 0x12, 0x34], &[0, 0, 0x12, 0x34]),
            [0x30, 0x08, 0x02, 0x02, 0x12, 0x34, 0x02, 0x02, 0x12, 0x34]
        );
    }

    #[test]
    fn integers_get_a_zero_prefix_when_the_high_bit_is_set() {
        assert_eq!(
            sig(&[0x80, 0x01], &[0x00, 0xff]),
            [
                0x30, 0x09, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x02, 0x00, 0xff
            ]
        );
        // Zeros stripped down to a byte with the high bit: the prefix comes back once.
        assert_eq!(
            sig(&[0x00, 0x00, 0x00, 0x9a], &[0x00, 0x00, 0x00, 0x9a]),
            [0x30, 0x08, 0x02, 0x02, 0x00, 0x9a, 0x02, 0x02, 0x00, 0x9a]
        );
    }

    #[test]
    fn an_integer_of_zeros_is_one_zero_byte() {
        assert_eq!(
            sig(&[0, 0, 0], &[0, 0, 0]),
            [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]
        );
    }

    #[test]
    fn ecdsa_signature_with_high_bit_r_and_leading_zero_s() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r: high bit set → 0x00 prefix, 33 content bytes
        raw[31] = 0x01;
        raw[32] = 0x00; // s: two leading zeros → stripped
        raw[33] = 0x00;
        raw[34] = 0x7f;
        raw[63] = 0x05;
        let der = ecdsa_signature_from_raw(&raw).unwrap();
        let mut expected_r = vec![0x02, 33, 0x00, 0x80];
        expected_r.extend_from_slice(&[0; 30]);
        expected_r.push(0x01);
        let mut expected_s = vec![0x02, 30, 0x7f];
        expected_s.extend_from_slice(&[0; 28]);
        expected_s.push(0x05);
        let mut expected = vec![0x30, (expected_r.len() + expected_s.len()) as u8];
        expected.extend_from_slice(&expected_r);
        expected.extend_from_slice(&expected_s);
        assert_eq!(der, expected);
    }

    #[test]
    fn p384_signature_with_both_high_bits_and_a_zero_led_one() {
        // r and s both have the high bit: 49 content bytes each, 102 in the SEQUENCE.
        let der = sig(&[0xff; 48], &[0x80; 48]);
        assert_eq!(&der[..5], [0x30, 0x66, 0x02, 0x31, 0x00]);
        assert_eq!(&der[5..53], [0xff; 48]);
        assert_eq!(&der[53..56], [0x02, 0x31, 0x00]);
        assert_eq!(&der[56..], [0x80; 48]);
        // r led by a zero byte whose successor has the high bit: the zero stays, alone
        // (48 content bytes); s without either, 48 bytes as they are.
        let mut r = [0x11u8; 48];
        r[0] = 0x00;
        r[1] = 0xc0;
        let der = sig(&r, &[0x01; 48]);
        assert_eq!(&der[..6], [0x30, 0x64, 0x02, 0x30, 0x00, 0xc0]);
        assert_eq!(&der[52..54], [0x02, 0x30]);
        assert_eq!(der.len(), 2 + 0x64);
    }

    #[test]
    fn a_long_signature_takes_the_long_length_form() {
        // 66-byte halves (P-521 sized) with the high bit: 2 × (2 + 67) = 138 > 127.
        let der = sig(&[0x81; 66], &[0x81; 66]);
        assert_eq!(&der[..6], [0x30, 0x81, 0x8a, 0x02, 0x43, 0x00]);
        assert_eq!(der.len(), 3 + 138);
    }

    #[test]
    fn ecdsa_signature_refuses_odd_or_empty_input() {
        assert!(ecdsa_signature_from_raw(&[]).is_none());
        assert!(ecdsa_signature_from_raw(&[1, 2, 3]).is_none());
    }

    /// Real signatures from aws-lc-rs in fixed (r‖s) form, converted here, must verify as
    /// ASN.1 signatures, including r/s with the high bit set and with leading zero bytes.
    #[test]
    fn converted_fixed_signatures_verify_as_asn1() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
        let cases = [
            (
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &signature::ECDSA_P256_SHA256_ASN1,
            ),
            (
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                &signature::ECDSA_P384_SHA384_ASN1,
            ),
        ];
        let rng = SystemRandom::new();
        for (signing, verifying) in cases {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).unwrap();
            let public = signature::UnparsedPublicKey::new(verifying, pair.public_key().as_ref());
            let (mut high_bit, mut short) = (0, 0);
            // Sign until both edge cases were met a few times (a zero first byte comes about
            // once in 128 signatures); the cap only guards against a broken generator.
            for i in 0u32..20_000 {
                if high_bit >= 3 && short >= 3 {
                    break;
                }
                let msg = i.to_be_bytes();
                let raw = pair.sign(&rng, &msg).unwrap();
                let raw = raw.as_ref();
                let half = raw.len() / 2;
                high_bit += usize::from(raw[0] & 0x80 != 0 || raw[half] & 0x80 != 0);
                short += usize::from(raw[0] == 0 || raw[half] == 0);
                let der = ecdsa_signature_from_raw(raw).unwrap();
                public.verify(&msg, &der).unwrap();
            }
            assert!(
                high_bit >= 3 && short >= 3,
                "the sample covered both edge cases"
            );
        }
    }

    #[test]
    fn octet_string_is_unwrapped_exactly() {
        let point = [0x04u8; 65];
        let wrapped = OctetStringRef::new(&point).unwrap().to_der().unwrap();
        assert_eq!(&wrapped[..2], [0x04, 65]);
        assert_eq!(octet_string_content(&wrapped), Some(&point[..]));
        // Lengths at the edges of the short and long forms.
        for (len, header) in [
            (127usize, &[0x04, 0x7f][..]),
            (128, &[0x04, 0x81, 0x80]),
            (0x1234, &[0x04, 0x82, 0x12, 0x34]),
        ] {
            let mut der = header.to_vec();
            der.extend(std::iter::repeat_n(0xab, len));
            assert_eq!(octet_string_content(&der).map(<[u8]>::len), Some(len));
        }
        // Trailing bytes, a wrong tag, or a short body are refused.
        let mut trailing = wrapped.clone();
        trailing.push(0);
        assert!(octet_string_content(&trailing).is_none());
        assert!(octet_string_content(&point).is_none());
        assert!(octet_string_content(&wrapped[..10]).is_none());
        assert!(octet_string_content(&[]).is_none());
    }

    #[test]
    fn ec_spki_matches_aws_lc_rs_on_both_curves() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
        };
        for (signing, algorithm) in [
            (&ECDSA_P256_SHA256_ASN1_SIGNING, KeyAlgorithm::EcP256),
            (&ECDSA_P384_SHA384_ASN1_SIGNING, KeyAlgorithm::EcP384),
        ] {
            let pair = EcdsaKeyPair::generate(signing).unwrap();
            let point = pair.public_key().as_ref();
            let expected = pair.public_key().as_der().unwrap();
            let params = ec_params(algorithm).unwrap();
            assert_eq!(ec_spki(&params, point).unwrap(), expected.as_ref());
        }
    }

    #[test]
    fn curves_are_named_by_their_oids() {
        // The DER `CKA_EC_PARAMS` holds for each curve.
        let p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let p384 = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        assert_eq!(ec_params(KeyAlgorithm::EcP256).unwrap(), p256);
        assert_eq!(ec_params(KeyAlgorithm::EcP384).unwrap(), p384);
        assert_eq!(ec_params(KeyAlgorithm::Rsa2048), None);
        assert_eq!(curve_of(&p256), Some(KeyAlgorithm::EcP256));
        assert_eq!(curve_of(&p384), Some(KeyAlgorithm::EcP384));
        // secp256k1, explicit parameters (a SEQUENCE), a truncated OID, trailing bytes.
        assert_eq!(curve_of(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]), None);
        assert_eq!(curve_of(&[0x30, 0x03, 0x02, 0x01, 0x01]), None);
        assert_eq!(curve_of(&p256[..6]), None);
        assert_eq!(curve_of(&[&p256[..], &[0][..]].concat()), None);
    }

    #[test]
    fn rsa_spki_has_the_known_shape_and_parses_with_the_right_key() {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let mut modulus = vec![0xc5u8; 256];
        modulus[255] = 0x01;
        let der = rsa_spki(&modulus, &[0x01, 0x00, 0x01]).unwrap();
        // The SubjectPublicKeyInfo of every RSA-2048 key with e = 65537 starts and ends so.
        let head = [
            0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
            0x01, 0x01, 0x01, 0x05, 0x00, 0x03, 0x82, 0x01, 0x0f, 0x00, 0x30, 0x82, 0x01, 0x0a,
            0x02, 0x82, 0x01, 0x01, 0x00,
        ];
        assert_eq!(&der[..head.len()], head);
        assert_eq!(&der[der.len() - 5..], [0x02, 0x03, 0x01, 0x00, 0x01]);
        let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            spki.algorithm.algorithm.to_id_string(),
            "1.2.840.113549.1.1.1"
        );
        match spki.parsed().unwrap() {
            PublicKey::RSA(rsa) => {
                assert_eq!(rsa.key_size(), 2048);
                assert_eq!(rsa.try_exponent().unwrap(), 65537);
            }
            other => panic!("not RSA: {other:?}"),
        }
    }

    #[test]
    fn rsa_spki_drops_leading_zeros_and_refuses_empty_numbers() {
        // A token may pad the modulus with a zero byte; the key is the same.
        let mut modulus = vec![0x00u8];
        modulus.extend_from_slice(&[0xd3; 384]);
        let padded = rsa_spki(&modulus, &[0x00, 0x01, 0x00, 0x01]).unwrap();
        assert_eq!(
            padded,
            rsa_spki(&modulus[1..], &[0x01, 0x00, 0x01]).unwrap()
        );
        assert!(rsa_spki(&[], &[0x01, 0x00, 0x01]).is_err());
        assert!(rsa_spki(&modulus, &[]).is_err());
    }
}
