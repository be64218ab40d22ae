//! `certgate ca ...`: the CA's certificates for the security team — listing, an
//! intermediate signed by an offline root (`csr`, `import`), rollover to a new key,
//! activation, and offline CRLs.
//!
//! Every CA ever used stays in the store: its certificates keep verifying and it keeps
//! signing CRLs and OCSP answers for them. Only the active one issues. This file must not
//! judge certificates itself (see [`crate::ca::intermediate`]).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, anyhow, bail};

use crate::audit::{self, Actor, Outcome};
use crate::ca::crl::CrlContents;
use crate::ca::rollover::{self, InstalledCa};
use crate::ca::{self, Authority, intermediate};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::{KeyRef, KeyStoreError};
use crate::store::{CaRecord, NewAudit, Store};

use super::args::{CaCmd, Format};
use super::context::open_key;
use super::views::{self, CaView};
use super::{context, staff};

pub async fn run(cfg: &Config, cmd: CaCmd) -> anyhow::Result<()> {
    match cmd {
        CaCmd::IssueServer {
            names,
            days,
            cert_out,
            key_out,
        } => super::server_cert::run(cfg.clone(), &names, days, &cert_out, &key_out).await,
        CaCmd::Cert { id: None, output } => staff::ca_cert(cfg, output.format).await,
        CaCmd::Cert {
            id: Some(id),
            output,
        } => {
            let store = context::open_store(cfg).await?;
            let ca = find(&store, id).await?;
            staff::print_ca(&ca, output.format)
        }
        CaCmd::List { output } => list(cfg, output.format).await,
        CaCmd::Csr {
            key_label,
            subject,
            out,
        } => csr(cfg, &key_label, subject, &out).await,
        CaCmd::Import {
            key_label,
            cert,
            chain,
            activate,
        } => import(cfg, &key_label, &cert, &chain, activate).await,
        CaCmd::Rollover {
            key_label,
            algorithm,
            subject,
            validity_days,
        } => rollover(cfg, &key_label, algorithm, subject, validity_days).await,
        CaCmd::Activate { id } => activate(cfg, id).await,
        CaCmd::Crl { id, out, hours } => crl(cfg, id, &out, hours).await,
    }
}

async fn find(store: &Store, id: i64) -> anyhow::Result<CaRecord> {
    store
        .cas()
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| anyhow!("no CA with id {id} (see `certgate ca list`)"))
}

/// Subject text and notAfter of a certificate.
fn describe(der: &[u8]) -> (String, String) {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => (c.subject().to_string(), c.validity().not_after.to_string()),
        Err(_) => ("(unparsable certificate)".into(), "?".into()),
    }
}

async fn list(cfg: &Config, format: Format) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    let cas = store.cas().await?;
    if format == Format::Json {
        let rows: Vec<CaView<'_>> = cas.iter().map(Into::into).collect();
        return views::print_json(&rows);
    }
    println!("ID\tACTIVE\tKEY_LABEL\tNOT_AFTER\tISSUED_BY\tSUBJECT");
    for c in cas {
        let (subject, not_after) = describe(&c.cert_der);
        let issued_by = if c.chain_pem.is_empty() {
            "self"
        } else {
            "chain"
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            c.id,
            if c.active { "active" } else { "retired" },
            c.key_label,
            not_after,
            issued_by,
            subject
        );
    }
    Ok(())
}

/// Writes `data` to a file that must not exist yet (a ceremony never overwrites).
fn write_new(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A staff `ok` audit entry, for an operation that appends it in its own transaction.
fn staff_entry(actor: &Actor, action: &str, subject: &str, detail: serde_json::Value) -> NewAudit {
    audit::entry(
        SystemClock.now(),
        actor,
        action,
        subject,
        Outcome::Ok,
        detail,
    )
}

async fn csr(cfg: &Config, label: &str, subject: Option<String>, out: &Path) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    let keys = context::open_key_store(cfg).await?;
    let key = open_key(&keys, label).await?;
    let subject = subject.unwrap_or_else(|| cfg.ca.subject.clone());
    let name = ca::CaName::parse(&subject).context("the CA subject")?;
    let pem = tokio::task::spawn_blocking(move || intermediate::request_pem(key, &name))
        .await?
        .context("cannot make the certificate request")?;
    write_new(out, pem.as_bytes())?;
    // Nothing else is stored: the request went to a file.
    store
        .append_audit(&staff_entry(
            &Actor::host()?,
            "ca.csr",
            label,
            serde_json::json!({"subject": subject}),
        ))
        .await?;
    println!(
        "certificate request for key {label:?} ({subject}) written to {}",
        out.display()
    );
    Ok(())
}

async fn import(
    cfg: &Config,
    label: &str,
    cert: &Path,
    chain: &Path,
    activate: bool,
) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    let cert_text =
        std::fs::read_to_string(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let chain_text = std::fs::read_to_string(chain)
        .with_context(|| format!("cannot read {}", chain.display()))?;
    let cert_der = intermediate::pem_certificates(&cert_text)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{} holds no PEM certificate", cert.display()))?;
    if store.cas().await?.iter().any(|c| c.cert_der == cert_der) {
        bail!("this CA certificate is already installed (see `certgate ca list`)");
    }
    let keys = context::open_key_store(cfg).await?;
    let key = open_key(&keys, label).await?;
    let now = SystemClock.now();
    let checked = intermediate::check_import(&cert_der, &chain_text, key.as_ref(), label, now)
        .context("the CA certificate was refused")?;
    // rcgen must be able to issue under it, exactly as `serve` will.
    Authority::new(0, checked.der.clone(), key, context::issuance_policy(cfg))
        .context("the CA certificate cannot be used for issuing")?;
    let detail =
        serde_json::json!({"key_label": label, "subject": checked.subject, "active": activate});
    let actor = Actor::host()?;
    let record = store
        .insert_ca_audited(
            label,
            &checked.der,
            &checked.chain_pem,
            activate,
            now,
            Some(|id: i64| staff_entry(&actor, "ca.import", &id.to_string(), detail)),
        )
        .await?;
    println!(
        "CA {} installed ({}, key {label:?}, valid until {}){}",
        record.id,
        checked.subject,
        crate::lifecycle::format_date(checked.not_after),
        if activate {
            "; it now issues new certificates"
        } else {
            "; inactive: `certgate ca activate ID` to issue with it"
        }
    );
    Ok(())
}

async fn rollover(
    cfg: &Config,
    label: &str,
    algorithm: Option<ca::KeyAlgorithm>,
    subject: Option<String>,
    validity_days: Option<u32>,
) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    let cas = store.cas().await?;
    let installed: Vec<InstalledCa<'_>> = cas
        .iter()
        .map(|c| InstalledCa {
            id: c.id,
            key_label: &c.key_label,
            cert_der: &c.cert_der,
        })
        .collect();
    let name = rollover::rollover_subject(&installed, label, subject.as_deref(), &cfg.ca.subject)?;
    let subject = name.to_string();
    let old = cas.iter().find(|c| c.active);
    let keys = context::open_key_store(cfg).await?;
    let algorithm = algorithm.unwrap_or(cfg.hsm.key_algorithm);
    let key_ref = KeyRef::label(label);
    let r = key_ref.clone();
    let key = match context::with_keys(&keys, move |k| k.open(&r)).await? {
        Ok(k) => {
            println!("using the existing key {label:?} ({})", k.algorithm());
            k
        }
        Err(KeyStoreError::NotFound(_)) => {
            let k = context::with_keys(&keys, move |k| {
                context::generate_key(k, &key_ref, algorithm)
            })
            .await?
            .with_context(|| format!("cannot generate the key {label:?}"))?;
            println!(
                "generated {algorithm} key {label:?} in token {:?}",
                cfg.hsm.token_label
            );
            k
        }
        Err(e) => return Err(e).context(format!("cannot open the key {label:?}")),
    };
    let now = SystemClock.now();
    let validity = validity_days.unwrap_or(cfg.ca.ca_validity_days);
    let signer = key.clone();
    let der = tokio::task::spawn_blocking(move || ca::self_signed_ca(signer, &name, now, validity))
        .await?
        .context("cannot make the new CA certificate")?;
    Authority::new(0, der.clone(), key, context::issuance_policy(cfg))
        .context("the new CA certificate cannot be used for issuing")?;
    let detail = serde_json::json!({"key_label": label, "subject": subject,
        "previous": old.as_ref().map(|c| c.id)});
    let actor = Actor::host()?;
    let record = store
        .insert_ca_audited(
            label,
            &der,
            "",
            true,
            now,
            Some(|id: i64| staff_entry(&actor, "ca.rollover", &id.to_string(), detail)),
        )
        .await?;
    println!(
        "CA {} created and active: {subject} (key {label:?})",
        record.id
    );
    if let Some(o) = old {
        println!(
            "CA {} (key {:?}) is retired: its certificates stay valid until they expire, and it \
             keeps signing their CRLs and OCSP answers",
            o.id, o.key_label
        );
    }
    println!(
        "distribute the new CA certificate (`certgate ca cert --id {}`) to every relying party",
        record.id
    );
    Ok(())
}

async fn activate(cfg: &Config, id: i64) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    let record = find(&store, id).await?;
    // Refuse a CA whose key is missing, unsafe or does not match before it issues anything.
    let keys = context::open_key_store(cfg).await?;
    let key = open_key(&keys, &record.key_label).await?;
    Authority::new(
        record.id,
        record.cert_der.clone(),
        key,
        context::issuance_policy(cfg),
    )
    .with_context(|| format!("CA {id} cannot issue with the key {:?}", record.key_label))?;
    let entry = staff_entry(
        &Actor::host()?,
        "ca.activate",
        &id.to_string(),
        serde_json::json!({"key_label": record.key_label}),
    );
    store.activate_ca_audited(id, Some(&entry)).await?;
    println!(
        "CA {id} (key {:?}) now issues new certificates",
        record.key_label
    );
    Ok(())
}

async fn crl(cfg: &Config, id: Option<i64>, out: &Path, hours: Option<u32>) -> anyhow::Result<()> {
    let hours = hours.unwrap_or(cfg.revocation.crl_validity_hours);
    let store = context::open_store(cfg).await?;
    let record = match id {
        Some(id) => find(&store, id).await?,
        None => store
            .active_ca()
            .await?
            .ok_or_else(|| anyhow!("no CA yet: run `certgate init` first"))?,
    };
    let keys = context::open_key_store(cfg).await?;
    let key = open_key(&keys, &record.key_label).await?;
    let authority = Authority::new(
        record.id,
        record.cert_der.clone(),
        key,
        context::issuance_policy(cfg),
    )
    .with_context(|| {
        format!(
            "CA {} does not match its key {:?}",
            record.id, record.key_label
        )
    })?;
    let now = SystemClock.now();
    // The same rule and candidates as the distribution point `serve` runs.
    let facts = store.facts_for_crl(record.id, now).await?;
    let overlap = i64::from(cfg.renewal.overlap_days) * crate::clock::DAY;
    let revoked = crate::status::crl_entries(&facts, now, overlap);
    let number = store.next_crl_number(record.id).await?;
    let contents = CrlContents::complete(number, now, i64::from(hours.max(1)) * 3600, revoked);
    let count = contents.revoked.len();
    let authority = std::sync::Arc::new(authority);
    let signer = authority.clone();
    let der = tokio::task::spawn_blocking(move || signer.sign_crl(&contents))
        .await?
        .context("cannot sign the CRL")?;
    crate::app::tally_flush::flush_tally(&store, &authority).await;
    write_new(out, &der)?;
    println!(
        "CRL {number} of CA {} ({count} revoked) written to {}",
        record.id,
        out.display()
    );
    Ok(())
}
