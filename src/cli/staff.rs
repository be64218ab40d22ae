//! Commands for bank staff on the host: customers' contracts, users, codes, certificates.
//! Staff members themselves are `staff_members`. Every change asks `host_changes` first.

use anyhow::{Context, bail};

use crate::audit::{self, Actor, Outcome};
use crate::ca::pem;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::lifecycle::{Authorization, Authorized, format_date, normalize_serial, rules};
use crate::store::{Audience, CertFilter, Contract, STAFF_CONTRACT, Store, User, staff_name};

use super::args::{CertCmd, ContractCmd, Format, IssueCmd, UserCmd};
use super::context;
use super::host_changes;
use super::views::{self, CaShowView, CaView, CertShowView, CertView, ContractView, UserView};

pub async fn contract(cfg: &Config, cmd: ContractCmd) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    match cmd {
        ContractCmd::Add { id, name } => {
            let actor = Actor::host()?;
            host_changes::allowed(cfg, &store, &actor, "contract.add", &id).await?;
            rules::check_identifier("a contract ID", &id)?;
            let now = SystemClock.now();
            let entry = audit::entry(
                now,
                &actor,
                "contract.add",
                &id,
                Outcome::Ok,
                serde_json::json!({"name": name}),
            );
            store
                .insert_contract_audited(
                    &Contract {
                        id: id.clone(),
                        name: name.clone(),
                        enabled: true,
                        created_at: now,
                    },
                    Some(&entry),
                )
                .await?;
            println!("contract {id} added");
        }
        ContractCmd::List { output } => {
            let contracts = store.contracts().await?;
            if output.format == Format::Json {
                let rows: Vec<ContractView<'_>> = contracts.iter().map(Into::into).collect();
                return views::print_json(&rows);
            }
            for c in contracts {
                println!(
                    "{}\t{}\t{}",
                    c.id,
                    if c.enabled { "enabled" } else { "disabled" },
                    c.name
                );
            }
        }
        ContractCmd::Disable { id } => switch(cfg, &store, Switch::Contract, &id, false).await?,
        ContractCmd::Enable { id } => switch(cfg, &store, Switch::Contract, &id, true).await?,
    }
    Ok(())
}

pub async fn user(cfg: &Config, cmd: UserCmd) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    match cmd {
        UserCmd::Add {
            login,
            contract,
            role,
            email,
        } => {
            let actor = Actor::host()?;
            host_changes::allowed(cfg, &store, &actor, "user.add", &login).await?;
            // The rules the pages and the staff console apply to a new login ID.
            rules::check_new_identifier("a login ID", &login)?;
            // The reserved staff contract cannot be named: ':' is outside the characters.
            rules::check_identifier("a contract ID", &contract)?;
            rules::check_email(&email)?;
            let now = SystemClock.now();
            let entry = audit::entry(
                now,
                &actor,
                "user.add",
                &login,
                Outcome::Ok,
                serde_json::json!({"contract": contract, "role": role.as_str()}),
            );
            store
                .insert_user_audited(
                    &User {
                        login: login.clone(),
                        contract_id: contract.clone(),
                        role,
                        email: email.clone(),
                        enabled: true,
                        created_at: now,
                    },
                    Some(&entry),
                )
                .await?;
            println!("user {login} ({role}) added to contract {contract}");
        }
        UserCmd::List { contract, output } => {
            let users = store.users_of_contract(&contract).await?;
            if output.format == Format::Json {
                let rows: Vec<UserView<'_>> = users.iter().map(Into::into).collect();
                return views::print_json(&rows);
            }
            for u in users {
                println!(
                    "{}\t{}\t{}\t{}",
                    u.login,
                    u.role,
                    if u.enabled { "enabled" } else { "disabled" },
                    u.email
                );
            }
        }
        UserCmd::Disable { login } => switch(cfg, &store, Switch::User, &login, false).await?,
        UserCmd::Enable { login } => switch(cfg, &store, Switch::User, &login, true).await?,
    }
    Ok(())
}

/// What `user`/`contract` `enable`/`disable` apply to.
#[derive(Debug, Clone, Copy)]
enum Switch {
    User,
    Contract,
}

/// Enables or disables a login ID or a contract, audited in the same transaction, and says
/// what changed. Unknown names are an error; a switch to the state it already has is not.
async fn switch(
    cfg: &Config,
    store: &Store,
    what: Switch,
    key: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    let (noun, action) = match (what, enabled) {
        (Switch::User, true) => ("login ID", "user.enable"),
        (Switch::User, false) => ("login ID", "user.disable"),
        (Switch::Contract, true) => ("contract", "contract.enable"),
        (Switch::Contract, false) => ("contract", "contract.disable"),
    };
    let actor = Actor::host()?;
    host_changes::allowed(cfg, store, &actor, action, key).await?;
    // Staff members are switched with `certgate staff disable|enable`, one at a time.
    if let Some(name) = staff_name(key).filter(|_| matches!(what, Switch::User)) {
        bail!("{key} is a staff member: use `certgate staff disable|enable {name}`");
    }
    if matches!(what, Switch::Contract) && key == STAFF_CONTRACT {
        bail!(
            "{STAFF_CONTRACT} is reserved for bank staff: use `certgate staff disable|enable NAME`"
        );
    }
    let entry = audit::entry(
        SystemClock.now(),
        &actor,
        action,
        key,
        Outcome::Ok,
        serde_json::json!({}),
    );
    let changed = match what {
        Switch::User => store.set_user_enabled_audited(key, enabled, &entry).await?,
        Switch::Contract => {
            store
                .set_contract_enabled_audited(key, enabled, &entry)
                .await?
        }
    };
    let state = if enabled { "enabled" } else { "disabled" };
    if !changed {
        println!("{noun} {key} was already {state}");
    } else if enabled {
        println!("{noun} {key} enabled: its certificates are accepted again");
    } else {
        println!("{noun} {key} disabled: its certificates are refused from the next request");
    }
    Ok(())
}

pub(super) fn print_code(a: &Authorized) {
    if let Some(serial) = &a.revoked_serial {
        println!("revoked the previous certificate {serial}");
    }
    println!(
        "one-time issuance code for {} (valid until {} UTC; shown only this once):",
        a.login,
        format_date(a.expires_at)
    );
    println!("{}", a.code.reveal());
}

pub async fn issue(cfg: Config, cmd: IssueCmd) -> anyhow::Result<()> {
    let actor = Actor::host()?;
    let (action, login) = match &cmd {
        IssueCmd::Authorize { login } => ("code.authorize", login),
        IssueCmd::Reissue { login, .. } => ("cert.reissue", login),
    };
    let store = context::open_store(&cfg).await?;
    host_changes::allowed(&cfg, &store, &actor, action, login).await?;
    let opened = context::open_all(cfg).await?;
    let authorized = match cmd {
        IssueCmd::Authorize { login } => opened.lifecycle.authorize(&actor, &login).await?,
        IssueCmd::Reissue { login, reason } => {
            opened
                .lifecycle
                .staff_reissue(&actor, &login, reason)
                .await?
        }
    };
    print_code(&authorized);
    Ok(())
}

pub async fn cert(cfg: Config, cmd: CertCmd) -> anyhow::Result<()> {
    match cmd {
        CertCmd::Sign {
            login,
            csr,
            code,
            code_file,
        } => sign_with_code(cfg, Audience::Customer, &login, &csr, code, code_file).await?,
        CertCmd::List {
            login,
            status,
            output,
        } => {
            let store = context::open_store(&cfg).await?;
            let status = status
                .map(|s| s.parse())
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let certs = store.certificates(&CertFilter { login, status }).await?;
            if output.format == Format::Json {
                let rows: Vec<CertView<'_>> = certs.iter().map(Into::into).collect();
                return views::print_json(&rows);
            }
            println!("SERIAL\tLOGIN\tCONTRACT\tSTATUS\tNOT_AFTER");
            for c in certs {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.serial,
                    c.login,
                    c.contract_id,
                    c.status.as_str(),
                    format_date(c.not_after)
                );
            }
        }
        CertCmd::Show { serial, output } => {
            let store = context::open_store(&cfg).await?;
            let serial = normalize_serial(&serial);
            let c = store
                .certificate(&serial)
                .await?
                .with_context(|| format!("no certificate with serial {serial}"))?;
            match output.format {
                Format::Text => print!("{}", pem::certificate(&c.der)),
                Format::Json => views::print_json(&CertShowView {
                    cert: CertView::from(&c),
                    subject: x509_parser::parse_x509_certificate(&c.der)
                        .ok()
                        .map(|(_, x)| x.subject().to_string()),
                    pem: pem::certificate(&c.der),
                })?,
            }
        }
        CertCmd::Revoke { serial, reason } => {
            let actor = Actor::host()?;
            let store = context::open_store(&cfg).await?;
            let subject = normalize_serial(&serial);
            host_changes::allowed(&cfg, &store, &actor, "cert.revoke", &subject).await?;
            let opened = context::open_all(cfg).await?;
            let lifecycle = &opened.lifecycle;
            // A server certificate (`ca issue-server`) is revoked the same way.
            let server = lifecycle
                .store()
                .server_certificate(&normalize_serial(&serial))
                .await?;
            if server.is_some() {
                let c = lifecycle.revoke_server(&actor, &serial, reason).await?;
                println!(
                    "revoked server certificate {} ({}) with reason {}",
                    c.serial, c.names, reason
                );
            } else {
                let c = lifecycle.revoke(&actor, &serial, reason).await?;
                println!("revoked {} ({}) with reason {}", c.serial, c.login, reason);
            }
        }
    }
    Ok(())
}

/// `cert sign` and `staff cert sign`: enrolls the CSR in `csr` for `login` with its issuance
/// code on a way in serving `audience`, and prints the certificate PEM.
pub(super) async fn sign_with_code(
    cfg: Config,
    audience: Audience,
    login: &str,
    csr: &std::path::Path,
    code: Option<String>,
    code_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let code = match (code, code_file) {
        (Some(c), None) => c,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the code file {}", path.display()))?
            .trim()
            .to_owned(),
        _ => bail!("give the issuance code with --code, --code-file or CERTGATE_CODE"),
    };
    let csr_bytes = std::fs::read(csr)
        .with_context(|| format!("cannot read the CSR file {}", csr.display()))?;
    let opened = context::open_all(cfg).await?;
    let staff = Actor::host()?;
    let authorization = Authorization::IssuanceCode {
        login,
        code: &code,
        requester: &staff,
    };
    let lifecycle = &opened.lifecycle;
    let enrolled = lifecycle
        .enroll_for(audience, authorization, &csr_bytes)
        .await;
    // The key's signatures are counted for `audit signatures`, signed or refused.
    crate::app::tally_flush::flush_tally(lifecycle.store(), lifecycle.authority()).await;
    let cert = enrolled?;
    print!("{}", pem::certificate(&cert.der));
    Ok(())
}

pub async fn ca_cert(cfg: &Config, format: Format) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    let ca = store
        .active_ca()
        .await?
        .context("no CA certificate yet: run `certgate init` first")?;
    print_ca(&ca, format)
}

/// A CA's certificate and the chain above it: PEM, or JSON with its listed fields.
pub fn print_ca(ca: &crate::store::CaRecord, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Text => {
            print!("{}", pem::certificate(&ca.cert_der));
            print!("{}", ca.chain_pem);
            Ok(())
        }
        Format::Json => views::print_json(&CaShowView {
            ca: CaView::from(ca),
            pem: pem::certificate(&ca.cert_der),
            chain_pem: &ca.chain_pem,
        }),
    }
}
