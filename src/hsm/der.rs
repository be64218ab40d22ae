//! The little DER the PKCS#11 layer writes itself: the ECDSA-Sig-Value X.509 wants from the raw
//! `r‖s` that `CKM_ECDSA` returns, the SubjectPublicKeyInfo of a token key, and the unwrapping
//! of `CKA_EC_POINT`'s OCTET STRING.
//!
//! What this module must not do: parse certificates or anything else (that is `ca`'s work
//! with x509-parser); it only writes the few fixed shapes above.

/// DER of the OID id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER of the OID rsaEncryption (1.2.840.113549.1.1.1).
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// DER NULL, the parameters of rsaEncryption.
const NULL: &[u8] = &[0x05, 0x00];

/// DER of the named curve OID prime256v1 (1.2.840.10045.3.1.7), as `CKA_EC_PARAMS` holds it.
pub(crate) const EC_PARAMS_P256: &[u8] =
    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the named curve OID secp384r1 (1.3.132.0.34).
pub(crate) const EC_PARAMS_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_SEQUENCE: u8 = 0x30;

/// Appends a DER length (short form below 128, long form above).
fn push_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = &bytes[skip..];
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// One tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_length(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from big-endian magnitude bytes: leading zeros dropped, a 0x00
/// prefix added when the high bit is set (else it would read as negative).
fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let trimmed = &magnitude[skip..];
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    match trimmed.first() {
        None => content.push(0),
        Some(first) if first & 0x80 != 0 => {
            content.push(0);
            content.extend_from_slice(trimmed);
        }
        Some(_) => content.extend_from_slice(trimmed),
    }
    tlv(TAG_INTEGER, &content)
}

/// Converts `CKM_ECDSA`'s raw `r‖s` (two halves of equal length) into the DER
/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`. `None` on an empty or odd input.
pub(crate) fn ecdsa_signature_from_raw(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = unsigned_integer(r);
    body.extend_from_slice(&unsigned_integer(s));
    Some(tlv(TAG_SEQUENCE, &body))
}

/// SubjectPublicKeyInfo of an EC key: `ec_params` is the DER curve OID (`CKA_EC_PARAMS`),
/// `point` the uncompressed point (already out of its OCTET STRING).
pub(crate) fn ec_spki(ec_params: &[u8], point: &[u8]) -> Vec<u8> {
    let mut algorithm = OID_EC_PUBLIC_KEY.to_vec();
    algorithm.extend_from_slice(ec_params);
    spki(&tlv(TAG_SEQUENCE, &algorithm), point)
}

/// SubjectPublicKeyInfo of an RSA key: rsaEncryption/NULL around a PKCS#1 RSAPublicKey.
pub(crate) fn rsa_spki(modulus: &[u8], public_exponent: &[u8]) -> Vec<u8> {
    let mut key = unsigned_integer(modulus);
    key.extend_from_slice(&unsigned_integer(public_exponent));
    let mut algorithm = OID_RSA_ENCRYPTION.to_vec();
    algorithm.extend_from_slice(NULL);
    spki(&tlv(TAG_SEQUENCE, &algorithm), &tlv(TAG_SEQUENCE, &key))
}

fn spki(algorithm_identifier: &[u8], key_bits: &[u8]) -> Vec<u8> {
    // A BIT STRING of whole bytes: the first content byte counts the unused bits (none).
    let mut bits = Vec::with_capacity(key_bits.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key_bits);
    let mut body = algorithm_identifier.to_vec();
    body.extend_from_slice(&tlv(TAG_BIT_STRING, &bits));
    tlv(TAG_SEQUENCE, &body)
}

/// The content of a DER OCTET STRING that spans all of `der`, or `None` if `der` is not
/// exactly one OCTET STRING.
pub(crate) fn octet_string_content(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    if tag != TAG_OCTET_STRING {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > std::mem::size_of::<usize>() || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    (rest.len() == len).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_strips_leading_zeros() {
        assert_eq!(
            unsigned_integer(&[0, 0, 0x12, 0x34]),
            vec![0x02, 0x02, 0x12, 0x34]
        );
    }

    #[test]
    fn integer_gets_zero_prefix_when_high_bit_set() {
        assert_eq!(
            unsigned_integer(&[0x80, 0x01]),
            vec![0x02, 0x03, 0x00, 0x80, 0x01]
        );
        // A leading zero that was already there and is needed stays single.
        assert_eq!(
            unsigned_integer(&[0x00, 0xff]),
            vec![0x02, 0x02, 0x00, 0xff]
        );
        // Zeros stripped down to a byte with the high bit: the prefix comes back once.
        assert_eq!(
            unsigned_integer(&[0x00, 0x00, 0x00, 0x9a]),
            vec![0x02, 0x02, 0x00, 0x9a]
        );
    }

    #[test]
    fn integer_zero_is_one_zero_byte() {
        assert_eq!(unsigned_integer(&[0, 0, 0]), vec![0x02, 0x01, 0x00]);
        assert_eq!(unsigned_integer(&[]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn long_lengths_use_the_long_form() {
        let mut out = Vec::new();
        push_length(127, &mut out);
        assert_eq!(out, [0x7f]);
        out.clear();
        push_length(128, &mut out);
        assert_eq!(out, [0x81, 0x80]);
        out.clear();
        push_length(0x1234, &mut out);
        assert_eq!(out, [0x82, 0x12, 0x34]);
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
        let wrapped = tlv(TAG_OCTET_STRING, &point);
        assert_eq!(octet_string_content(&wrapped), Some(&point[..]));
        let long = [0xabu8; 200];
        assert_eq!(
            octet_string_content(&tlv(TAG_OCTET_STRING, &long)),
            Some(&long[..])
        );
        // Trailing bytes, a wrong tag, or a short body are refused.
        let mut trailing = wrapped.clone();
        trailing.push(0);
        assert!(octet_string_content(&trailing).is_none());
        assert!(octet_string_content(&point).is_none());
        assert!(octet_string_content(&wrapped[..10]).is_none());
    }

    #[test]
    fn ec_spki_matches_aws_lc_rs() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let point = pair.public_key().as_ref();
        let expected = pair.public_key().as_der().unwrap();
        assert_eq!(ec_spki(EC_PARAMS_P256, point), expected.as_ref());
    }

    #[test]
    fn rsa_spki_parses_with_the_right_key() {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let mut modulus = vec![0xc5u8; 256];
        modulus[255] = 0x01;
        let der = rsa_spki(&modulus, &[0x01, 0x00, 0x01]);
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
}
