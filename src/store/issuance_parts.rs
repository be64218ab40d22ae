//! The pieces the issuance paths share: inserting a login's current certificate, replacing
//! a login's code, and comparing hashes in constant time.
//!
//! It sits below `certs`, `codes` and `issue_writer`, which all use it; it must import none
//! of them (the `store_imports_run_one_way` test checks), so the code that issues each
//! certificate exactly once reads in one direction.

/// Inserts `cert` as the login's current certificate, naming the thing on a violation.
macro_rules! insert_current {
    ($ex:expr, $cert:expr) => {{
        let cert: &$crate::store::CertRecord = $cert;
        sqlx::query(concat!(
            "INSERT INTO certificates (",
            $crate::store::rows::cert_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'current', NULL, NULL, NULL, NULL, $10)"
        ))
        .bind(cert.serial.as_str())
        .bind(cert.login.as_str())
        .bind(cert.contract_id.as_str())
        .bind(cert.ca_id)
        .bind(cert.der.as_slice())
        .bind(cert.sha256.as_str())
        .bind(cert.spki_sha256.as_str())
        .bind(cert.not_before)
        .bind(cert.not_after)
        .bind(cert.created_at)
        .execute($ex)
        .await
        .map_err(|e| {
            $crate::store::error::on_violation(
                e,
                || {
                    format!(
                        "certificate {} (or one with the same SHA-256, or another current \
                         certificate of login ID {:?}) already exists",
                        cert.serial, cert.login
                    )
                },
                || {
                    format!(
                        "login ID {:?}, contract {:?} or CA {} of certificate {}",
                        cert.login, cert.contract_id, cert.ca_id, cert.serial
                    )
                },
            )
        })
    }};
}
pub(crate) use insert_current;

/// Replaces any earlier code of the login by a fresh one.
macro_rules! upsert_code {
    ($ex:expr, $login:expr, $hash:expr, $now:expr, $expires:expr) => {
        sqlx::query(
            "INSERT INTO issuance_codes (login, code_hash, created_at, expires_at, \
             failed_attempts, locked, used_at, used_serial, claim_spki_sha256) \
             VALUES ($1, $2, $3, $4, 0, FALSE, NULL, NULL, NULL) \
             ON CONFLICT (login) DO UPDATE SET code_hash = excluded.code_hash, \
             created_at = excluded.created_at, expires_at = excluded.expires_at, \
             failed_attempts = 0, locked = FALSE, used_at = NULL, used_serial = NULL, \
             claim_spki_sha256 = NULL",
        )
        .bind($login)
        .bind($hash)
        .bind($now)
        .bind($expires)
        .execute($ex)
        .await
        .map_err(|e| {
            $crate::store::error::on_violation(
                e,
                || "the issuance code changed meanwhile".to_owned(),
                || format!("login ID {:?}", $login),
            )
        })
    };
}
pub(crate) use upsert_code;

/// Compares two hashes in time independent of where they differ.
pub(crate) fn hash_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let len_diff = (a.len() ^ b.len()) as u64;
    // Walk the longer input whole so the time depends only on the lengths.
    let n = a.len().max(b.len());
    let mut diff = 0u8;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    len_diff == 0 && diff == 0
}

#[cfg(test)]
mod tests {
    use super::hash_eq;

    #[test]
    fn hash_eq_compares_whole_strings() {
        assert!(hash_eq("abcd", "abcd"));
        assert!(!hash_eq("abcd", "abce"));
        assert!(!hash_eq("abcd", "abc"));
        assert!(!hash_eq("", "a"));
        assert!(hash_eq("", ""));
    }
}
