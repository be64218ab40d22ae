//! The bank's register of customers: contracts and their login IDs, added and switched on
//! and off by staff, each change audited in its own transaction. The staff console and the
//! command line both come here, so the checks (identifier spelling, e-mail, the reserved
//! staff namespace) are the same through either door.

use serde_json::json;

use crate::audit::Actor;
use crate::store::{Contract, Role, User};

use super::error::LifecycleError;
use super::rules::{self, Refusal};
use super::service::Lifecycle;

impl Lifecycle {
    /// Registers a contract.
    pub async fn add_contract(
        &self,
        actor: &Actor,
        id: &str,
        name: &str,
    ) -> Result<Contract, LifecycleError> {
        let result = async {
            rules::check_new_identifier("a contract ID", id)?;
            check_name(name)?;
            let contract = Contract {
                id: id.into(),
                name: name.into(),
                enabled: true,
                created_at: self.now(),
            };
            let entry = self.ok_entry(actor, "contract.add", id, json!({"name": name}));
            self.store()
                .insert_contract_audited(&contract, Some(&entry))
                .await
                .map_err(|e| duplicate_as(e, "contract_exists", "that contract ID exists"))?;
            Ok(contract)
        }
        .await;
        match result {
            Err(e) => self.refuse(actor, "contract.add", id, e).await,
            ok => ok,
        }
    }

    /// Registers a login ID in a contract.
    pub async fn add_user(
        &self,
        actor: &Actor,
        user: &NewUser<'_>,
    ) -> Result<User, LifecycleError> {
        let result = async {
            rules::check_new_identifier("a login ID", user.login)?;
            rules::check_identifier("a contract ID", user.contract)?;
            rules::check_email(user.email)?;
            let row = User {
                login: user.login.into(),
                contract_id: user.contract.into(),
                role: user.role,
                email: user.email.into(),
                enabled: true,
                created_at: self.now(),
            };
            let entry = self.ok_entry(
                actor,
                "user.add",
                user.login,
                json!({"contract": user.contract, "role": user.role.as_str()}),
            );
            self.store()
                .insert_user_audited(&row, Some(&entry))
                .await
                .map_err(|e| duplicate_as(e, "login_exists", "that login ID exists"))?;
            Ok(row)
        }
        .await;
        match result {
            Err(e) => self.refuse(actor, "user.add", user.login, e).await,
            ok => ok,
        }
    }

    /// Turns a contract off or on. Returns false when it already was so.
    pub async fn set_contract_enabled(
        &self,
        actor: &Actor,
        id: &str,
        enabled: bool,
    ) -> Result<bool, LifecycleError> {
        let action = if enabled {
            "contract.enable"
        } else {
            "contract.disable"
        };
        let result = async {
            rules::check_identifier("a contract ID", id)?;
            let entry = self.ok_entry(actor, action, id, json!({}));
            Ok(self
                .store()
                .set_contract_enabled_audited(id, enabled, &entry)
                .await?)
        }
        .await;
        match result {
            Err(e) => self.refuse(actor, action, id, e).await,
            ok => ok,
        }
    }

    /// Turns a login ID off or on. Returns false when it already was so.
    pub async fn set_user_enabled(
        &self,
        actor: &Actor,
        login: &str,
        enabled: bool,
    ) -> Result<bool, LifecycleError> {
        let action = if enabled {
            "user.enable"
        } else {
            "user.disable"
        };
        let result = async {
            rules::check_identifier("a login ID", login)?;
            let entry = self.ok_entry(actor, action, login, json!({}));
            Ok(self
                .store()
                .set_user_enabled_audited(login, enabled, &entry)
                .await?)
        }
        .await;
        match result {
            Err(e) => self.refuse(actor, action, login, e).await,
            ok => ok,
        }
    }
}

/// A login ID to register.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub login: &'a str,
    pub contract: &'a str,
    pub role: Role,
    pub email: &'a str,
}

/// A contract's display name: printable, at most 200 characters.
pub(super) fn check_name(name: &str) -> Result<(), Refusal> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Refusal::new(
            "bad_name",
            "a contract name must be 1 to 200 printable characters",
        ));
    }
    Ok(())
}

/// A duplicate key as a refusal with a stable code; other store errors as they are.
fn duplicate_as(e: crate::store::StoreError, code: &'static str, message: &str) -> LifecycleError {
    match e {
        crate::store::StoreError::Conflict(_) => Refusal::new(code, message).into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_and_name_checks_refuse_what_notices_cannot_use() {
        assert!(rules::check_email("a@b.example").is_ok());
        for bad in ["", "ab", "@b", "a@", "a@@b", "a b@c", "a@b\n"] {
            assert_eq!(
                rules::check_email(bad).unwrap_err().code,
                "bad_email",
                "{bad:?}"
            );
        }
        assert!(check_name("株式会社テスト").is_ok());
        assert!(check_name(" ").is_err());
        assert!(check_name("a\u{7}").is_err());
        assert!(check_name(&"x".repeat(201)).is_err());
    }
}
