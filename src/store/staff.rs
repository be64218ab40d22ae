//! Bank staff members: a `users` row under the reserved contract [`STAFF_CONTRACT`] (so
//! their certificates live, are checked, revoked, listed and renewed exactly like
//! customers') and a `staff` row with the staff role. Each change commits with its audit
//! entry; turning a member off goes through the same switch as a customer's login ID, so
//! every status cache hears of it at once.
//!
//! Who may add or change staff is decided in `lifecycle`, not here.

use crate::clock::UnixTime;

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head};
use super::backend::{WritePool, on_backend};
use super::error::on_violation;
use super::{NewAudit, Store, StoreError};

/// The reserved contract every staff member's `users` row belongs to. No customer contract
/// ID can spell it (':' is outside `lifecycle::rules::check_identifier`'s characters).
pub const STAFF_CONTRACT: &str = ":staff";

/// The prefix of a staff member's login ID.
const LOGIN_PREFIX: &str = "staff:";

/// The login ID (`users.login`) of the staff member `name`.
pub fn staff_login(name: &str) -> String {
    format!("{LOGIN_PREFIX}{name}")
}

/// The staff member's name in a staff login ID; `None` for a customer's login ID.
pub fn staff_name(login: &str) -> Option<&str> {
    login.strip_prefix(LOGIN_PREFIX)
}

/// Whom a way in serves: customers (the gateway's listeners, the pages, EST, the
/// administrator's API) or bank staff (the staff listener, `certgate staff`). A login ID
/// and its certificates belong to exactly one, by their contract: a certificate or login ID
/// of the other audience is refused as if unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    Customer,
    Staff,
}

impl Audience {
    /// The audience of a login ID (or certificate) of `contract_id`.
    pub fn of_contract(contract_id: &str) -> Self {
        if contract_id == STAFF_CONTRACT {
            Self::Staff
        } else {
            Self::Customer
        }
    }
}

/// What a staff member may do on the staff console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// Makes changes (registers, authorizes, asks for re-issue and revocation).
    Operator,
    /// Makes changes and approves other members' requests.
    Supervisor,
    /// Only reads, the audit log included.
    Auditor,
}

impl StaffRole {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Supervisor => "supervisor",
            Self::Auditor => "auditor",
        }
    }
}

impl std::fmt::Display for StaffRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StaffRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "operator" => Ok(Self::Operator),
            "supervisor" => Ok(Self::Supervisor),
            "auditor" => Ok(Self::Auditor),
            other => Err(format!(
                "unknown staff role {other:?}: expected operator, supervisor or auditor"
            )),
        }
    }
}

impl TryFrom<String> for StaffRole {
    type Error = String;
    /// Decoding a stored role (`#[sqlx(try_from = "String")]`).
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A staff member as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaffMember {
    pub name: String,
    pub role: StaffRole,
    pub email: String,
    pub enabled: bool,
    pub created_at: UnixTime,
}

/// The joined row a staff member is read from.
#[derive(sqlx::FromRow)]
struct StaffRow {
    login: String,
    #[sqlx(try_from = "String")]
    role: StaffRole,
    email: String,
    enabled: bool,
    created_at: UnixTime,
}

impl TryFrom<StaffRow> for StaffMember {
    type Error = StoreError;
    fn try_from(r: StaffRow) -> Result<Self, StoreError> {
        let name = staff_name(&r.login).ok_or_else(|| {
            StoreError::Corrupt(format!("staff row {:?} is no staff login", r.login))
        })?;
        Ok(Self {
            name: name.to_owned(),
            role: r.role,
            email: r.email,
            enabled: r.enabled,
            created_at: r.created_at,
        })
    }
}

/// Columns and join of [`StaffRow`]; the statements below only add a fixed tail.
macro_rules! select_staff {
    ($tail:literal) => {
        concat!(
            "SELECT s.login, s.role, u.email, u.enabled, s.created_at \
             FROM staff s JOIN users u ON u.login = s.login ",
            $tail
        )
    };
}

impl Store {
    /// The staff member `name`, if any.
    pub async fn staff_member(&self, name: &str) -> Result<Option<StaffMember>, StoreError> {
        let row = on_backend!(self, |pool, _PG| {
            Ok::<_, StoreError>(
                sqlx::query_as::<_, StaffRow>(select_staff!("WHERE s.login = $1"))
                    .bind(staff_login(name))
                    .fetch_optional(pool)
                    .await?,
            )
        })?;
        row.map(StaffMember::try_from).transpose()
    }

    /// Every staff member, by name.
    pub async fn staff_members(&self) -> Result<Vec<StaffMember>, StoreError> {
        let rows = on_backend!(self, |pool, _PG| {
            Ok::<_, StoreError>(
                sqlx::query_as::<_, StaffRow>(select_staff!("ORDER BY s.login"))
                    .fetch_all(pool)
                    .await?,
            )
        })?;
        rows.into_iter().map(StaffMember::try_from).collect()
    }

    /// Adds the staff member `m` (its `users` row under [`STAFF_CONTRACT`] and its `staff`
    /// row) with `entry`, all in one transaction. `Conflict` naming the member when the
    /// name is taken, in any case.
    pub async fn insert_staff_audited(
        &self,
        m: &StaffMember,
        entry: &NewAudit,
    ) -> Result<(), StoreError> {
        let audit = PreparedAudit::new(entry)?;
        let login = staff_login(&m.name);
        let taken = || format!("staff member {:?} already exists", m.name);
        let missing = || format!("contract {STAFF_CONTRACT:?} (run `certgate init`)");
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock first, as every appender takes it.
            let mut head = lock_chain_head!(PG, tx);
            // Names that differ only in case are one member, as login IDs are one.
            let folded: Option<String> =
                sqlx::query_scalar("SELECT login FROM users WHERE lower(login) = lower($1)")
                    .bind(login.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(existing) = folded {
                let existing = staff_name(&existing).unwrap_or(&existing);
                return Err(StoreError::Conflict(super::accounts::already_exists(
                    "staff member",
                    &m.name,
                    existing,
                )));
            }
            sqlx::query(
                "INSERT INTO users (login, contract_id, role, email, enabled, created_at) \
                 VALUES ($1, $2, 'general', $3, $4, $5)",
            )
            .bind(login.as_str())
            .bind(STAFF_CONTRACT)
            .bind(m.email.as_str())
            .bind(m.enabled)
            .bind(m.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| on_violation(e, taken, missing))?;
            sqlx::query("INSERT INTO staff (login, role, created_at) VALUES ($1, $2, $3)")
                .bind(login.as_str())
                .bind(m.role.as_str())
                .bind(m.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| on_violation(e, taken, missing))?;
            append_chained!(tx, &mut head, &audit);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Turns the staff member `name` on or off (its certificates pass or are refused from
    /// the next request, on every instance), with `entry` appended in the same transaction
    /// when the state changes. False when there is no such member.
    pub async fn set_staff_enabled_audited(
        &self,
        name: &str,
        enabled: bool,
        now: UnixTime,
        entry: &NewAudit,
    ) -> Result<bool, StoreError> {
        if self.staff_member(name).await?.is_none() {
            return Ok(false);
        }
        match self
            .switch_user(&staff_login(name), enabled, now, entry)
            .await
        {
            Ok(_) => Ok(true),
            // Removed meanwhile: staff rows are never removed, so only in theory.
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the staff member `name` the role `role`, with `entry` appended in the same
    /// transaction. False (nothing recorded) when there is no such member.
    pub async fn set_staff_role_audited(
        &self,
        name: &str,
        role: StaffRole,
        entry: &NewAudit,
    ) -> Result<bool, StoreError> {
        let audit = PreparedAudit::new(entry)?;
        let login = staff_login(name);
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock before the row lock, as every appender does.
            let mut head = lock_chain_head!(PG, tx);
            let done = sqlx::query("UPDATE staff SET role = $2 WHERE login = $1")
                .bind(login.as_str())
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            append_chained!(tx, &mut head, &audit);
            tx.commit().await?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_and_names_map_both_ways() {
        assert_eq!(staff_login("hanako"), "staff:hanako");
        assert_eq!(staff_name("staff:hanako"), Some("hanako"));
        assert_eq!(staff_name("hanako"), None);
    }

    #[test]
    fn the_audience_follows_the_contract() {
        assert_eq!(Audience::of_contract(STAFF_CONTRACT), Audience::Staff);
        assert_eq!(Audience::of_contract("corp1"), Audience::Customer);
        assert_eq!(Audience::of_contract("staff"), Audience::Customer);
    }

    #[test]
    fn roles_parse_and_name_the_allowed_ones() {
        for r in [
            StaffRole::Operator,
            StaffRole::Supervisor,
            StaffRole::Auditor,
        ] {
            assert_eq!(r.as_str().parse::<StaffRole>(), Ok(r));
        }
        let e = "admin".parse::<StaffRole>().unwrap_err();
        assert!(e.contains("operator, supervisor or auditor"), "{e}");
    }
}
