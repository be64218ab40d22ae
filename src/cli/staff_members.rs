//! `certgate staff`: bank staff members and their certificates, from the host. Changes go
//! through the lifecycle (the same rules and audit entries as on the staff console), after
//! `host_changes` allowed them; `staff list` only reads.

use crate::audit::Actor;
use crate::config::Config;
use crate::store::{Audience, staff_login};

use super::args::{Format, StaffCertCmd, StaffCmd};
use super::staff::{print_code, sign_with_code};
use super::{context, host_changes, views};

pub async fn run(cfg: Config, cmd: StaffCmd) -> anyhow::Result<()> {
    match cmd {
        StaffCmd::List { output } => list(&cfg, output.format).await,
        StaffCmd::Cert(StaffCertCmd::Sign {
            name,
            csr,
            code,
            code_file,
        }) => {
            let login = staff_login(&name);
            sign_with_code(cfg, Audience::Staff, &login, &csr, code, code_file).await
        }
        change => run_change(cfg, change).await,
    }
}

async fn list(cfg: &Config, format: Format) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    let members = store.staff_members().await?;
    if format == Format::Json {
        let rows: Vec<views::StaffView<'_>> = members.iter().map(Into::into).collect();
        return views::print_json(&rows);
    }
    for m in members {
        println!(
            "{}\t{}\t{}\t{}",
            m.name,
            m.role,
            if m.enabled { "enabled" } else { "disabled" },
            m.email
        );
    }
    Ok(())
}

/// The commands that change a staff member (or authorize its code).
async fn run_change(cfg: Config, cmd: StaffCmd) -> anyhow::Result<()> {
    let actor = Actor::host()?;
    let (action, name) = match &cmd {
        StaffCmd::Add { name, .. } => ("staff.add", name),
        StaffCmd::Disable { name } => ("staff.disable", name),
        StaffCmd::Enable { name } => ("staff.enable", name),
        StaffCmd::Role { name, .. } => ("staff.role", name),
        StaffCmd::Authorize { name } => ("code.authorize", name),
        StaffCmd::List { .. } | StaffCmd::Cert(_) => return Ok(()),
    };
    let store = context::open_store(&cfg).await?;
    host_changes::allowed(&cfg, &store, &actor, action, &staff_login(name)).await?;
    let before = store.staff_member(name).await?;
    let lifecycle = context::open_all(cfg).await?.lifecycle;
    match cmd {
        StaffCmd::Add { name, role, email } => {
            let m = lifecycle.staff_add(&actor, &name, role, &email).await?;
            println!("staff member {} ({}) added", m.name, m.role);
        }
        StaffCmd::Disable { name } | StaffCmd::Enable { name } => {
            let enabled = action == "staff.enable";
            lifecycle.staff_set_enabled(&actor, &name, enabled).await?;
            let state = if enabled { "enabled" } else { "disabled" };
            if before.is_some_and(|m| m.enabled == enabled) {
                println!("staff member {name} was already {state}");
            } else if enabled {
                println!("staff member {name} enabled: their certificate is accepted again");
            } else {
                println!(
                    "staff member {name} disabled: their certificate is refused from the next request"
                );
            }
        }
        StaffCmd::Role { name, role } => {
            lifecycle.staff_set_role(&actor, &name, role).await?;
            println!("staff member {name} is now {role}");
        }
        StaffCmd::Authorize { name } => {
            print_code(&lifecycle.staff_authorize(&actor, &name).await?);
        }
        StaffCmd::List { .. } | StaffCmd::Cert(_) => {}
    }
    Ok(())
}
