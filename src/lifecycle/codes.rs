//! One-time issuance codes: made here, shown once, stored only as a hash.

use crate::ca::csr::sha256_hex;

/// Crockford's base32 alphabet: no I, L, O or U, so a code read aloud or typed survives.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 20 characters × 5 bits = 100 bits of randomness.
const CODE_CHARS: usize = 20;

/// A freshly made code, to be shown once.
pub struct IssuanceCode(String);

impl IssuanceCode {
    /// A new random code, formatted `XXXX-XXXX-XXXX-XXXX-XXXX`.
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut raw = [0u8; CODE_CHARS];
        aws_lc_rs::rand::fill(&mut raw)?;
        let mut out = String::with_capacity(CODE_CHARS + 4);
        for (i, b) in raw.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(char::from(ALPHABET[usize::from(b & 0x1f)]));
        }
        Ok(Self(out))
    }

    /// The code, for the one place that shows it.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// The hash the store keeps.
    pub fn hash(&self) -> String {
        hash_code(&self.0)
    }
}

impl std::fmt::Debug for IssuanceCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuanceCode(<redacted>)")
    }
}

/// Normalizes a typed code (case, separators, look-alike letters) and hashes it. The code
/// carries 100 random bits, so a plain SHA-256 cannot be reversed by guessing; a slow
/// password hash would add nothing but latency.
pub fn hash_code(typed: &str) -> String {
    let normalized: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    sha256_hex(normalized.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_long_random_and_normalize() {
        let a = IssuanceCode::generate().unwrap();
        let b = IssuanceCode::generate().unwrap();
        assert_ne!(a.reveal(), b.reveal());
        assert_eq!(a.reveal().len(), 24);
        let typed = a.reveal().to_lowercase().replace('-', " ");
        assert_eq!(hash_code(&typed), a.hash());
        assert!(!format!("{a:?}").contains(a.reveal()));
    }
}
