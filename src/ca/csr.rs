//! PKCS#10 requests: parsed, proof of possession checked, key type policed.
//!
//! The only thing a CSR contributes to a certificate is its public key: the subject,
//! extensions and attributes a CSR asks for are ignored by design (the CA decides them).

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::der_parser::oid::Oid;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Largest CSR accepted, PEM or DER. An RSA-8192 request is about 2.5 KiB of PEM.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// The kinds of client key the CA certifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKeyKind {
    EcP256,
    EcP384,
    /// RSA with this many modulus bits (2048 or more).
    Rsa(usize),
}

impl std::fmt::Display for ClientKeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EcP256 => f.write_str("EC P-256"),
            Self::EcP384 => f.write_str("EC P-384"),
            Self::Rsa(bits) => write!(f, "RSA-{bits}"),
        }
    }
}

/// A request that passed every check: what remains of it is the public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCsr {
    /// DER SubjectPublicKeyInfo of the key to certify.
    pub spki_der: Vec<u8>,
    /// Lowercase hex SHA-256 of `spki_der`.
    pub spki_sha256: String,
    pub key_kind: ClientKeyKind,
}

/// Why a CSR was refused. Messages are safe to show to the customer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the certificate request is larger than {MAX_CSR_BYTES} bytes")]
    TooLarge,
    #[error("the certificate request is not valid PEM or DER: {0}")]
    Malformed(String),
    #[error("the certificate request's signature does not verify (proof of possession failed)")]
    BadSignature,
    #[error(
        "the certificate request uses an unsupported key type: {0}; use EC P-256, EC P-384 or RSA of at least 2048 bits"
    )]
    UnsupportedKey(String),
    #[error("the certificate request's RSA key has {0} bits; at least 2048 are required")]
    WeakKey(usize),
    #[error("the certificate request is signed with an unsupported algorithm ({0})")]
    UnsupportedSignatureAlgorithm(String),
    #[error(
        "the certificate request's RSA public exponent is {0}; it must be odd and at least 65537"
    )]
    RsaExponent(String),
}

const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_P384: &[u64] = &[1, 3, 132, 0, 34];
const OID_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const OID_ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
const OID_ECDSA_SHA384: &[u64] = &[1, 2, 840, 10045, 4, 3, 3];
const OID_RSA_SHA256: &[u64] = &[1, 2, 840, 113549, 1, 1, 11];
const OID_RSA_SHA384: &[u64] = &[1, 2, 840, 113549, 1, 1, 12];
const OID_RSA_SHA512: &[u64] = &[1, 2, 840, 113549, 1, 1, 13];

fn is(oid: &Oid<'_>, arcs: &[u64]) -> bool {
    oid.iter().is_some_and(|it| it.eq(arcs.iter().copied()))
}

/// Decodes PEM (`CERTIFICATE REQUEST` or `NEW CERTIFICATE REQUEST`) or raw DER.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, CsrError> {
    if input.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge);
    }
    let trimmed = input.trim_ascii_start();
    if !trimmed.starts_with(b"-----BEGIN") {
        return Ok(input.to_vec());
    }
    let text = std::str::from_utf8(trimmed)
        .map_err(|_| CsrError::Malformed("the PEM text is not UTF-8".into()))?;
    let block = pem_block(text)?;
    Ok(block)
}

fn pem_block(text: &str) -> Result<Vec<u8>, CsrError> {
    use base64::Engine;
    let mut lines = text.lines().map(str::trim);
    let begin = lines.next().unwrap_or_default();
    let label = begin
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| CsrError::Malformed("bad PEM header".into()))?;
    if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
        return Err(CsrError::Malformed(format!(
            "expected a CERTIFICATE REQUEST, found {label}"
        )));
    }
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    for line in lines.by_ref() {
        if line == end {
            // One request per body: a second block would be a second reading of the same
            // upload (another reader might take the last one).
            if lines.any(|l| !l.is_empty()) {
                return Err(CsrError::Malformed(
                    "text after the PEM block: send one certificate request".into(),
                ));
            }
            return base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|_| CsrError::Malformed("the PEM body is not base64".into()));
        }
        body.push_str(line);
    }
    Err(CsrError::Malformed("the PEM block has no END line".into()))
}

/// Parses `input` (PEM or DER), checks its signature and key, and keeps only the key.
pub fn check(input: &[u8]) -> Result<CheckedCsr, CsrError> {
    let der = decode(input)?;
    // The parser's own error names its internals (`NomError(Eof)`): logged, not answered.
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|e| {
        tracing::debug!(error = %e, "the certificate request does not parse");
        CsrError::Malformed("it is not a PKCS#10 certification request".into())
    })?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(
            "trailing bytes after the request".into(),
        ));
    }
    let info = &csr.certification_request_info;
    // RFC 2986 4.1: version 0 is the only one defined.
    if info.version.0 != 0 {
        return Err(CsrError::Malformed(format!(
            "version {} (only version 1, encoded 0, is defined)",
            info.version.0
        )));
    }
    let spki = &info.subject_pki;
    let key_kind = key_kind(spki)?;
    let algorithm = verification_algorithm(&csr.signature_algorithm.algorithm, key_kind)?;
    UnparsedPublicKey::new(algorithm, spki.subject_public_key.data.as_ref())
        .verify(info.raw, csr.signature_value.data.as_ref())
        .map_err(|_| CsrError::BadSignature)?;
    let spki_der = canonical_spki(spki, key_kind)?;
    Ok(CheckedCsr {
        spki_sha256: sha256_hex(&spki_der),
        spki_der,
        key_kind,
    })
}

/// The key re-encoded in DER, whatever length forms the request wrote it with (a parser
/// reads `30 81 59` as `30 59`): the one-holder rule compares these bytes, and the
/// certificate carries them, so one key is one byte string everywhere.
fn canonical_spki(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    kind: ClientKeyKind,
) -> Result<Vec<u8>, CsrError> {
    use der::Encode;
    use der::asn1::{BitString, Null, ObjectIdentifier};
    let unencodable =
        |e: der::Error| CsrError::Malformed(format!("the public key cannot be encoded: {e}"));
    let oid = |arcs: &str| ObjectIdentifier::new(arcs).map_err(|e| unencodable(e.into()));
    let (algorithm, key) = match kind {
        ClientKeyKind::EcP256 | ClientKeyKind::EcP384 => {
            let curve = oid(if kind == ClientKeyKind::EcP256 {
                "1.2.840.10045.3.1.7"
            } else {
                "1.3.132.0.34"
            })?;
            let algorithm = spki::AlgorithmIdentifierOwned {
                oid: oid("1.2.840.10045.2.1")?,
                parameters: Some(der::Any::encode_from(&curve).map_err(unencodable)?),
            };
            (algorithm, spki.subject_public_key.data.to_vec())
        }
        ClientKeyKind::Rsa(_) => {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err(CsrError::Malformed(
                    "the RSA public key cannot be parsed".into(),
                ));
            };
            let inner = pkcs1::RsaPublicKey {
                modulus: pkcs1::UintRef::new(rsa.modulus).map_err(unencodable)?,
                public_exponent: pkcs1::UintRef::new(rsa.exponent).map_err(unencodable)?,
            }
            .to_der()
            .map_err(unencodable)?;
            let algorithm = spki::AlgorithmIdentifierOwned {
                oid: oid("1.2.840.113549.1.1.1")?,
                parameters: Some(Null.into()),
            };
            (algorithm, inner)
        }
    };
    spki::SubjectPublicKeyInfoOwned {
        algorithm,
        subject_public_key: BitString::from_bytes(&key).map_err(unencodable)?,
    }
    .to_der()
    .map_err(unencodable)
}

pub(crate) fn key_kind(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<ClientKeyKind, CsrError> {
    let alg = &spki.algorithm.algorithm;
    if is(alg, OID_EC_PUBLIC_KEY) {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CsrError::UnsupportedKey("EC key without a named curve".into()))?;
        let (kind, coordinate_bytes) = if is(&curve, OID_P256) {
            (ClientKeyKind::EcP256, 32)
        } else if is(&curve, OID_P384) {
            (ClientKeyKind::EcP384, 48)
        } else {
            return Err(CsrError::UnsupportedKey(format!("EC curve {curve}")));
        };
        // Only the uncompressed point (RFC 5480 2.2): one key has one encoding, so the key
        // is the same bytes on every certificate that holds it (the one-holder rule compares
        // them), and a compressed `02 || X` cannot pass for a new key.
        let point = spki.subject_public_key.data.as_ref();
        if point.len() != 1 + 2 * coordinate_bytes || point.first() != Some(&0x04) {
            return Err(CsrError::UnsupportedKey(
                "an EC point not in uncompressed form".into(),
            ));
        }
        return Ok(kind);
    }
    if is(alg, OID_RSA) {
        // RFC 3279 2.3.1: the parameters are NULL. One encoding per key (see the EC point).
        let null = spki.algorithm.parameters.as_ref().is_some_and(|p| {
            p.tag() == x509_parser::der_parser::asn1_rs::Tag::Null && p.data.is_empty()
        });
        if !null {
            return Err(CsrError::Malformed(
                "the RSA key's algorithm parameters must be NULL".into(),
            ));
        }
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(CsrError::Malformed(
                "the RSA public key cannot be parsed".into(),
            ));
        };
        let bits = rsa.key_size();
        if bits < 2048 {
            return Err(CsrError::WeakKey(bits));
        }
        if bits > 8192 {
            return Err(CsrError::UnsupportedKey(format!(
                "RSA-{bits} (at most 8192 bits)"
            )));
        }
        check_rsa_exponent(rsa.exponent)?;
        return Ok(ClientKeyKind::Rsa(bits));
    }
    Err(CsrError::UnsupportedKey(format!("algorithm {alg}")))
}

/// An RSA public exponent (big-endian) must be odd and between 65537 and 2^256 - 1 (NIST SP
/// 800-89 5.3.3, FIPS 186-5 A.1.1): small ones such as 3 have let forged signatures through
/// careless verifiers.
fn check_rsa_exponent(e: &[u8]) -> Result<(), CsrError> {
    let e = &e[e.iter().take_while(|b| **b == 0).count()..];
    let shown = || {
        if e.len() <= 8 {
            e.iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
                .to_string()
        } else {
            format!("0x{}", hex::encode(e))
        }
    };
    let small = e.len() < 3 || (e.len() == 3 && e < [0x01, 0x00, 0x01].as_slice());
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    if small || !odd || e.len() > 32 {
        return Err(CsrError::RsaExponent(shown()));
    }
    Ok(())
}

pub(crate) fn verification_algorithm(
    sig_alg: &Oid<'_>,
    key: ClientKeyKind,
) -> Result<&'static dyn VerificationAlgorithm, CsrError> {
    let alg: &'static dyn VerificationAlgorithm = match key {
        ClientKeyKind::EcP256 if is(sig_alg, OID_ECDSA_SHA256) => {
            &signature::ECDSA_P256_SHA256_ASN1
        }
        ClientKeyKind::EcP256 if is(sig_alg, OID_ECDSA_SHA384) => {
            &signature::ECDSA_P256_SHA384_ASN1
        }
        ClientKeyKind::EcP384 if is(sig_alg, OID_ECDSA_SHA256) => {
            &signature::ECDSA_P384_SHA256_ASN1
        }
        ClientKeyKind::EcP384 if is(sig_alg, OID_ECDSA_SHA384) => {
            &signature::ECDSA_P384_SHA384_ASN1
        }
        ClientKeyKind::Rsa(_) if is(sig_alg, OID_RSA_SHA256) => {
            &signature::RSA_PKCS1_2048_8192_SHA256
        }
        ClientKeyKind::Rsa(_) if is(sig_alg, OID_RSA_SHA384) => {
            &signature::RSA_PKCS1_2048_8192_SHA384
        }
        ClientKeyKind::Rsa(_) if is(sig_alg, OID_RSA_SHA512) => {
            &signature::RSA_PKCS1_2048_8192_SHA512
        }
        _ => {
            return Err(CsrError::UnsupportedSignatureAlgorithm(
                sig_alg.to_id_string(),
            ));
        }
    };
    Ok(alg)
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pem_block_and_no_parser_internals() {
        let (_, pem) = csr_for(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(check(format!("{pem}\n\n").as_bytes()).is_ok());
        let twice = format!("{pem}{pem}");
        let err = check(twice.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("one certificate request"), "{err}");
        let err = check(b"\x30\x03\x02\x01").unwrap_err().to_string();
        assert!(err.contains("PKCS#10") && !err.contains("Nom"), "{err}");
    }
    use rcgen::PublicKeyData;

    /// openssl run in a folder of its own, removed when dropped.
    struct Openssl(tempfile::TempDir);

    impl Openssl {
        fn new() -> Self {
            Self(tempfile::tempdir().unwrap())
        }

        /// A file of the folder, as an argument.
        fn file(&self, name: &str) -> String {
            self.0.path().join(name).to_str().unwrap().to_owned()
        }

        /// Runs `openssl args`; its standard output.
        fn run(&self, args: &[&str]) -> Vec<u8> {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{said}");
            out.stdout
        }

        /// A new RSA-2048 key with public exponent `e`, in the file `name`.
        fn rsa_key(&self, name: &str, e: u32) -> String {
            let key = self.file(name);
            let e = format!("rsa_keygen_pubexp:{e}");
            self.run(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-pkeyopt",
                &e,
                "-out",
                &key,
            ]);
            key
        }

        /// A DER CSR for the key in `key`.
        fn csr(&self, key: &str) -> Vec<u8> {
            self.run(&[
                "req", "-new", "-key", key, "-subj", "/CN=x", "-outform", "DER",
            ])
        }
    }

    #[test]
    fn rsa_exponents_below_65537_or_even_are_refused() {
        for ok in [
            &[1u8, 0, 1][..],
            &[0, 1, 0, 1],
            &[1, 0, 3],
            &[0x80, 0, 0, 1],
        ] {
            assert_eq!(check_rsa_exponent(ok), Ok(()), "{ok:?}");
        }
        for (bad, shown) in [
            (&[3u8][..], "3"),
            (&[0, 3], "3"),
            (&[1, 0, 0], "65536"),
            (&[0, 0xff, 0xff], "65535"),
            (&[1, 0, 2], "65538"),
            (&[], "0"),
        ] {
            assert_eq!(
                check_rsa_exponent(bad),
                Err(CsrError::RsaExponent(shown.into())),
                "{bad:?}"
            );
        }
        assert!(check_rsa_exponent(&[1; 33]).is_err());
    }

    #[test]
    fn a_request_of_another_version_than_0_is_refused() {
        let (_, pem) = csr_for(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mut der = decode(pem.as_bytes()).unwrap();
        // The first INTEGER of CertificationRequestInfo is the version: 02 01 00.
        let at = der.windows(3).position(|w| w == [2, 1, 0]).unwrap();
        der[at + 2] = 5;
        let err = check(&der).unwrap_err().to_string();
        assert!(err.contains("version 5"), "{err}");
    }

    /// The key as `canonical_spki` makes it from `der`, an SPKI in any length form.
    fn canonical_of(der: &[u8]) -> Vec<u8> {
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der).unwrap();
        let kind = key_kind(&spki).unwrap();
        canonical_spki(&spki, kind).unwrap()
    }

    #[test]
    fn one_key_is_one_byte_string_whatever_lengths_the_request_wrote() {
        // P-256: 30 59 30 13 06 07 ... 06 08 ... 03 42 00 04 ...
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = key.subject_public_key_info();
        assert_eq!(&der[..4], &[0x30, 0x59, 0x30, 0x13]);
        assert_eq!(canonical_of(&der), der);
        // The outer length long-form, then the algorithm's too.
        let mut outer = vec![0x30, 0x81, 0x59];
        outer.extend_from_slice(&der[2..]);
        assert_eq!(canonical_of(&outer), der);
        let mut both = vec![0x30, 0x81, 0x5a, 0x30, 0x81, 0x13];
        both.extend_from_slice(&der[4..]);
        assert_eq!(canonical_of(&both), der);

        // RSA from openssl, its NULL written `05 81 00`.
        let openssl = Openssl::new();
        let key = openssl.rsa_key("rsa.key", 65537);
        let der = openssl.run(&["pkey", "-in", &key, "-pubout", "-outform", "DER"]);
        assert_eq!(canonical_of(&der), der);
        let null = der.windows(2).position(|w| w == [0x05, 0x00]).unwrap();
        // 30 82 01 22 | 30 0d ... 05 00 | 03 82 01 0f ...: one byte more in the outer and
        // algorithm lengths.
        let mut long_null = der.clone();
        long_null.splice(null..null + 2, [0x05, 0x81, 0x00]);
        long_null[3] += 1;
        long_null[5] += 1;
        assert_eq!(canonical_of(&long_null), der);
    }

    #[test]
    fn an_ec_key_in_compressed_form_is_refused() {
        let openssl = Openssl::new();
        let (plain, compressed) = (openssl.file("plain.pem"), openssl.file("compressed.pem"));
        openssl.run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &plain,
        ]);
        openssl.run(&[
            "ec",
            "-in",
            &plain,
            "-conv_form",
            "compressed",
            "-out",
            &compressed,
        ]);
        let (uncompressed_der, compressed_der) = (openssl.csr(&plain), openssl.csr(&compressed));
        // The same key: accepted as 04 || X || Y, refused as 02/03 || X.
        assert!(check(&uncompressed_der).is_ok());
        assert_eq!(
            check(&compressed_der),
            Err(CsrError::UnsupportedKey(
                "an EC point not in uncompressed form".into()
            ))
        );
    }

    #[test]
    fn an_rsa_key_with_exponent_3_is_refused_end_to_end() {
        let openssl = Openssl::new();
        let key = openssl.rsa_key("e3.key", 3);
        let der = openssl.csr(&key);
        assert_eq!(check(&der), Err(CsrError::RsaExponent("3".into())));
    }

    fn csr_for(alg: &'static rcgen::SignatureAlgorithm) -> (rcgen::KeyPair, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["evil.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "someone-else");
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        (key, pem)
    }

    #[test]
    fn accepts_p256_p384_and_rsa2048() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let (key, pem) = csr_for(alg);
            let checked = check(pem.as_bytes()).unwrap();
            assert_eq!(checked.spki_der, key.subject_public_key_info());
        }
    }

    #[test]
    fn refuses_ed25519() {
        let (_, pem) = csr_for(&rcgen::PKCS_ED25519);
        assert!(matches!(
            check(pem.as_bytes()),
            Err(CsrError::UnsupportedKey(_))
        ));
    }

    #[test]
    fn refuses_a_broken_signature() {
        let (_, pem) = csr_for(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mut der = decode(pem.as_bytes()).unwrap();
        let last = der.len() - 3;
        der[last] ^= 0x01;
        assert_eq!(check(&der), Err(CsrError::BadSignature));
    }

    #[test]
    fn refuses_garbage_and_oversize() {
        assert!(matches!(check(b"hello"), Err(CsrError::Malformed(_))));
        assert!(matches!(
            check(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(CsrError::Malformed(_))
        ));
        assert_eq!(
            check(&vec![0u8; MAX_CSR_BYTES + 1]),
            Err(CsrError::TooLarge)
        );
    }
}
