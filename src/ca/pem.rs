//! PEM text for DER objects (RFC 7468).

use base64::Engine;

/// Encodes `der` as a PEM block with `label` (e.g. `CERTIFICATE`), 64 columns, final newline.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PEM of a certificate.
pub fn certificate(der: &[u8]) -> String {
    encode("CERTIFICATE", der)
}
