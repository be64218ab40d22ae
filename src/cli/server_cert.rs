//! `certgate ca issue-server`: a TLS server certificate for the gateway's listener, signed
//! by the active CA in the HSM, with a software key written next to it. For the demo, tests
//! and closed networks; a bank's public login host usually has its server certificate from
//! a public CA.
//!
//! What it signs is stored (with its audit record, in one transaction) before the files are
//! written, so OCSP and the CRL answer for it and `cert revoke` can revoke it; a certificate
//! the store did not take is never written out.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use rcgen::PublicKeyData;

use crate::app::tally_flush::flush_tally;
use crate::audit::{Actor, Outcome};
use crate::ca::SignatureKind;
use crate::ca::pem;
use crate::ca::server_name::{self, ServerName};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::lifecycle::intents::{self, DiscardReason, IntentFor};
use crate::store::{CertStatus, ServerCertRecord};

use super::context;

pub async fn run(
    cfg: Config,
    names: &[String],
    days: u32,
    cert_out: &Path,
    key_out: &Path,
) -> anyhow::Result<()> {
    // Names are checked before the HSM is opened: a refused name changes nothing.
    for name in names {
        if server_name::check(name)? == ServerName::SingleLabel {
            eprintln!(
                "warning: {name:?} is a single-label name: fine for the demo and local tests, \
                 but pkilint reports it (pkix.invalid_domain_name_syntax) and public clients \
                 reject it; use the server's full DNS name in production"
            );
        }
    }
    let store = context::open_store(&cfg).await?;
    let keys = context::open_key_store(&cfg).await?;
    let authority = context::open_authority(&cfg, &store, &keys).await?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("cannot generate the server key")?;
    let spki = key.subject_public_key_info();
    let names = names.to_vec();
    let names_text = names.join(",");
    let now = SystemClock.now();
    let actor = Actor::host()?;
    let spki_sha256 = crate::ca::csr::sha256_hex(&spki);
    let intent = IntentFor {
        kind: SignatureKind::Server,
        subject: &names_text,
        spki_sha256: &spki_sha256,
        not_after: now + i64::from(days) * crate::clock::DAY,
    };
    let planned = intents::open_intent(&store, &authority, &actor, intent, now)
        .await
        .context("cannot record the signature intent (nothing was signed)")?;
    let serial = planned.hex.clone();
    let signer = authority.clone();
    let signed =
        tokio::task::spawn_blocking(move || signer.issue_server(planned, &spki, &names, now, days))
            .await
            .map_err(anyhow::Error::new)
            .and_then(|signed| signed.map_err(anyhow::Error::new));
    let issued = match signed {
        Ok(issued) => issued,
        Err(e) => {
            let reason = DiscardReason::SigningFailed;
            intents::discard_logged(&store, &actor, &serial, reason, None, now).await;
            return Err(e.context("cannot sign the server certificate"));
        }
    };
    let record = ServerCertRecord {
        serial: issued.serial.clone(),
        ca_id: authority.ca_id(),
        names: names_text,
        der: issued.der.clone(),
        sha256: issued.sha256.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        status: CertStatus::Current,
        revoked_at: None,
        revocation_reason: None,
        created_at: now,
    };
    let audit = crate::audit::entry(
        now,
        &actor,
        "server_cert.issue",
        &record.serial,
        Outcome::Ok,
        serde_json::json!({
            "names": record.names,
            "ca_id": record.ca_id,
            "sha256": record.sha256,
            "not_after": record.not_after,
        }),
    );
    if let Err(e) = store
        .insert_server_certificate_audited(&record, &audit)
        .await
    {
        let validity = Some((record.not_before, record.not_after));
        let reason = DiscardReason::StoreFailed;
        intents::discard_logged(&store, &actor, &record.serial, reason, validity, now).await;
        flush_tally(&store, &authority).await;
        return Err(anyhow::Error::new(e)
            .context("cannot store the server certificate (nothing was written)"));
    }
    intents::complete_intent(&store, &record.serial, now).await;
    flush_tally(&store, &authority).await;
    let chain = format!(
        "{}{}",
        pem::certificate(&issued.der),
        pem::certificate(authority.ca_der())
    );
    std::fs::write(cert_out, chain)
        .with_context(|| format!("cannot write {}", cert_out.display()))?;
    write_private(key_out, key.serialize_pem().as_bytes())
        .with_context(|| format!("cannot write {}", key_out.display()))?;
    println!(
        "server certificate {} written to {} (key: {})",
        issued.serial,
        cert_out.display(),
        key_out.display()
    );
    Ok(())
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
