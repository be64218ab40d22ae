//! Bank staff members: adding them, turning them off and on, changing their role, and
//! authorizing their certificate. Whoever calls (the host's command line, the staff
//! console) is `actor`; each change commits with its audit entry, each refusal is audited.
//! Who may call which is decided by the caller (roles, four-eyes), not here.

use serde_json::json;

use crate::audit::Actor;
use crate::store::{Audience, StaffMember, StaffRole, StoreError, staff_login};

use super::error::LifecycleError;
use super::rules::{self, Refusal};
use super::service::{Authorized, Lifecycle};

impl Lifecycle {
    /// Adds the staff member `name` (enabled) with `role` and `email`.
    pub async fn staff_add(
        &self,
        actor: &Actor,
        name: &str,
        role: StaffRole,
        email: &str,
    ) -> Result<StaffMember, LifecycleError> {
        let login = staff_login(name);
        let result = async {
            rules::check_new_identifier("a staff member's name", name)?;
            rules::check_email(email)?;
            let member = StaffMember {
                name: name.to_owned(),
                role,
                email: email.to_owned(),
                enabled: true,
                created_at: self.now(),
            };
            let entry = self.ok_entry(actor, "staff.add", &login, json!({"role": role.as_str()}));
            match self.store().insert_staff_audited(&member, &entry).await {
                Ok(()) => Ok(member),
                Err(StoreError::Conflict(m)) => Err(Refusal::new("staff_exists", m).into()),
                Err(e) => Err(e.into()),
            }
        }
        .await;
        match result {
            Err(e) => self.refuse(actor, "staff.add", &login, e).await,
            added => added,
        }
    }

    /// Turns the staff member `name` on or off. Off, their certificates are refused from
    /// the next request on every instance (they stay issued). Nothing is recorded when it
    /// already was so.
    pub async fn staff_set_enabled(
        &self,
        actor: &Actor,
        name: &str,
        enabled: bool,
    ) -> Result<(), LifecycleError> {
        let login = staff_login(name);
        let action = if enabled {
            "staff.enable"
        } else {
            "staff.disable"
        };
        let entry = self.ok_entry(actor, action, &login, json!({}));
        let found = self
            .store()
            .set_staff_enabled_audited(name, enabled, self.now(), &entry)
            .await;
        match found {
            Ok(true) => Ok(()),
            Ok(false) => self.refuse(actor, action, &login, unknown(name)).await,
            Err(e) => self.refuse(actor, action, &login, e.into()).await,
        }
    }

    /// Gives the staff member `name` the role `role`.
    pub async fn staff_set_role(
        &self,
        actor: &Actor,
        name: &str,
        role: StaffRole,
    ) -> Result<(), LifecycleError> {
        let login = staff_login(name);
        let entry = self.ok_entry(actor, "staff.role", &login, json!({"role": role.as_str()}));
        match self
            .store()
            .set_staff_role_audited(name, role, &entry)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.refuse(actor, "staff.role", &login, unknown(name))
                    .await
            }
            Err(e) => self.refuse(actor, "staff.role", &login, e.into()).await,
        }
    }

    /// Authorizes the staff member `name`'s first certificate (or the next, once the
    /// current one is revoked): a new one-time code, as for a customer's login ID. The
    /// certificate is then obtained through a staff way in ([`Lifecycle::enroll_for`] with
    /// [`Audience::Staff`]).
    pub async fn staff_authorize(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<Authorized, LifecycleError> {
        let login = staff_login(name);
        match self.store().staff_member(name).await {
            Ok(Some(_)) => self.authorize_for(Audience::Staff, actor, &login).await,
            Ok(None) => {
                self.refuse(actor, "code.authorize", &login, unknown(name))
                    .await
            }
            Err(e) => self.refuse(actor, "code.authorize", &login, e.into()).await,
        }
    }
}

fn unknown(name: &str) -> LifecycleError {
    LifecycleError::NotFound(format!("staff member {name:?}"))
}
