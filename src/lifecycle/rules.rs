//! The scheme's rules as pure functions: no I/O, exhaustively testable.

use crate::clock::{DAY, UnixTime};
use crate::store::{Role, User};

/// A rule said no. `message` is safe to show to the person who asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// Stable machine-readable code (e.g. `renewal_not_open`).
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// May `actor`, logged in with its certificate, re-issue `target`'s certificate?
/// Seed: the contract's admin re-issues approver and general IDs of that contract; an
/// admin's own re-issue goes through the bank.
pub fn may_admin_reissue(actor: &User, target: &User) -> Result<(), Refusal> {
    if actor.role != Role::Admin {
        return Err(Refusal::new(
            "not_admin",
            "only the contract's administrator may re-issue certificates",
        ));
    }
    if actor.login == target.login {
        return Err(Refusal::new(
            "self_reissue",
            "an administrator's own certificate is re-issued by the bank: please contact your branch",
        ));
    }
    if actor.contract_id != target.contract_id {
        return Err(Refusal::new(
            "other_contract",
            "that login ID is not in your contract",
        ));
    }
    if target.role == Role::Admin {
        return Err(Refusal::new(
            "target_admin",
            "an administrator's certificate is re-issued by the bank: please contact your branch",
        ));
    }
    if !actor.enabled || !target.enabled {
        return Err(Refusal::new("user_disabled", "that login ID is disabled"));
    }
    Ok(())
}

/// May the contract admin `actor` add a user with `role` to its contract?
pub fn may_admin_add_user(actor: &User, contract_id: &str, role: Role) -> Result<(), Refusal> {
    if actor.role != Role::Admin || !actor.enabled {
        return Err(Refusal::new(
            "not_admin",
            "only the contract's administrator may add login IDs",
        ));
    }
    if actor.contract_id != contract_id {
        return Err(Refusal::new(
            "other_contract",
            "you may add login IDs to your own contract only",
        ));
    }
    if role == Role::Admin {
        return Err(Refusal::new(
            "target_admin",
            "administrator IDs are registered by the bank",
        ));
    }
    Ok(())
}

/// Where a certificate stands with respect to renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalWindow {
    /// Too early; renewal opens at this time.
    NotYet { opens_at: UnixTime },
    /// Renewal is possible now.
    Open,
    /// Expired past the grace period: only a re-issue helps.
    Closed,
}

/// The renewal window of a certificate expiring at `not_after`.
pub fn renewal_window(
    not_after: UnixTime,
    now: UnixTime,
    window_days: u32,
    grace_days: u32,
) -> RenewalWindow {
    let opens_at = not_after - i64::from(window_days) * DAY;
    if now < opens_at {
        RenewalWindow::NotYet { opens_at }
    } else if now <= not_after + i64::from(grace_days) * DAY {
        RenewalWindow::Open
    } else {
        RenewalWindow::Closed
    }
}

/// Whether a renewal may certify `new_key` for a certificate holding `old_key` (both
/// SHA-256 of the SubjectPublicKeyInfo): a new key pair unless `[renewal] allow_same_key`.
pub fn renewal_key_allowed(
    old_key: &str,
    new_key: &str,
    allow_same_key: bool,
) -> Result<(), Refusal> {
    if old_key == new_key && !allow_same_key {
        return Err(Refusal::new("same_key", "a renewal needs a new key pair"));
    }
    Ok(())
}

/// The refusal of a key that [`crate::store::Store::key_conflict`] found elsewhere. The
/// caller holds the private key (the CSR proved it), so saying why tells them nothing new;
/// the other login ID is not named.
pub fn key_conflict_refusal(conflict: &crate::store::KeyConflict) -> Refusal {
    match conflict {
        crate::store::KeyConflict::Compromised { .. } => Refusal::new(
            "key_compromised",
            "this key pair was reported compromised; make a new key pair",
        ),
        crate::store::KeyConflict::OtherLogin { .. } => Refusal::new(
            "key_in_use",
            "this key pair is certified for another login ID; make a new key pair",
        ),
    }
}

/// Whether the customer should be told to renew (login screen, identity header).
pub fn renewal_due(not_after: UnixTime, now: UnixTime, window_days: u32) -> bool {
    now >= not_after - i64::from(window_days) * DAY
}

/// Checks a login ID or contract ID typed by staff or a customer: 1–64 characters of
/// letters, digits and `._-@`, so it is safe in a certificate subject, a header and a log.
pub fn check_identifier(kind: &str, s: &str) -> Result<(), Refusal> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            "bad_identifier",
            format!("{kind} must be 1 to 64 characters of letters, digits and . _ - @"),
        ))
    }
}

/// The audit subject of a request that named something no login ID can be.
pub const NOT_A_LOGIN_ID: &str = "(not a login ID)";

/// Whether `login` has the form of a customer's login ID or a staff member's
/// (`staff:<name>`).
pub fn could_be_login(login: &str) -> bool {
    let bare = crate::store::staff_name(login).unwrap_or(login);
    check_identifier("login ID", bare).is_ok()
}

/// `login` as an audit subject: itself when it could be a login ID, else
/// [`NOT_A_LOGIN_ID`]. A caller's text that no login ID can be is not a subject: no control
/// characters, bidi marks or 64 KiB strings from callers in the log.
pub fn login_subject(login: &str) -> &str {
    if could_be_login(login) {
        login
    } else {
        NOT_A_LOGIN_ID
    }
}

/// [`check_identifier`] for an ID being created: it must also begin with a letter or digit,
/// so that `.`, `..` or `-x` never become IDs (a path segment `..` is resolved away before
/// routing, and a leading `-` reads as an option on a command line).
pub fn check_new_identifier(kind: &str, s: &str) -> Result<(), Refusal> {
    check_identifier(kind, s)?;
    // A path segment ending in `.` is refused at the edge (Windows servers drop the dot),
    // so such an ID could never be named in a URL of the API or the pages.
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if s.starts_with(alnum) && s.ends_with(alnum) {
        Ok(())
    } else {
        Err(Refusal::new(
            "bad_identifier",
            format!("{kind} must begin and end with a letter or digit"),
        ))
    }
}

/// Checks an e-mail address typed by staff or an administrator: one `@` with text on both
/// sides, no spaces or control characters, at most 254 characters (the mail relay has the
/// last word).
pub fn check_email(email: &str) -> Result<(), Refusal> {
    let ok = email.len() <= 254
        && email.matches('@').count() == 1
        && !email.starts_with('@')
        && !email.ends_with('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        // What the expiry notices will be sent to: an address the mail builder refuses
        // (`<script>@…`, format marks such as U+202E) would fail every notice.
        && email.is_ascii()
        && email.parse::<lettre::Address>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(Refusal::new("bad_email", "that is not an e-mail address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_needs_a_new_key_unless_the_same_key_is_allowed() {
        let refused = renewal_key_allowed("aa", "aa", false).unwrap_err();
        assert_eq!(refused.code, "same_key");
        assert!(renewal_key_allowed("aa", "aa", true).is_ok());
        assert!(renewal_key_allowed("aa", "bb", false).is_ok());
        assert!(renewal_key_allowed("aa", "bb", true).is_ok());
    }

    fn user(login: &str, contract: &str, role: Role) -> User {
        User {
            login: login.into(),
            contract_id: contract.into(),
            role,
            email: format!("{login}@example.com"),
            enabled: true,
            created_at: 0,
        }
    }

    #[test]
    fn reissue_matrix() {
        let roles = [Role::Admin, Role::Approver, Role::General];
        for actor_role in roles {
            for target_role in roles {
                for same_contract in [true, false] {
                    let actor = user("a", "c1", actor_role);
                    let target = user("t", if same_contract { "c1" } else { "c2" }, target_role);
                    let allowed =
                        actor_role == Role::Admin && same_contract && target_role != Role::Admin;
                    assert_eq!(
                        may_admin_reissue(&actor, &target).is_ok(),
                        allowed,
                        "{actor_role:?} -> {target_role:?} same={same_contract}"
                    );
                }
            }
        }
        let admin = user("a", "c1", Role::Admin);
        assert_eq!(
            may_admin_reissue(&admin, &admin).unwrap_err().code,
            "self_reissue"
        );
        let mut disabled = user("t", "c1", Role::General);
        disabled.enabled = false;
        assert!(may_admin_reissue(&admin, &disabled).is_err());
    }

    #[test]
    fn renewal_window_edges() {
        let exp = 1_000 * DAY;
        assert_eq!(
            renewal_window(exp, exp - 31 * DAY, 30, 0),
            RenewalWindow::NotYet {
                opens_at: exp - 30 * DAY
            }
        );
        assert_eq!(
            renewal_window(exp, exp - 30 * DAY, 30, 0),
            RenewalWindow::Open
        );
        assert_eq!(renewal_window(exp, exp, 30, 0), RenewalWindow::Open);
        assert_eq!(renewal_window(exp, exp + 1, 30, 0), RenewalWindow::Closed);
        assert_eq!(
            renewal_window(exp, exp + 2 * DAY, 30, 3),
            RenewalWindow::Open
        );
        assert!(!renewal_due(exp, exp - 31 * DAY, 30));
        assert!(renewal_due(exp, exp - 30 * DAY, 30));
    }

    #[test]
    fn emails() {
        assert!(check_email("hanako@bank.example").is_ok());
        assert!(check_email("hanako.yamada+ib@bank.example").is_ok());
        for bad in [
            "",
            "hanako",
            "a b@x",
            &format!("{}@x", "a".repeat(260)),
            "a@x.example\u{202e}",
            "<script>@x.example",
            "hanako@",
            "a@b@c.example",
            "山田@bank.example",
        ] {
            assert_eq!(check_email(bad).unwrap_err().code, "bad_email", "{bad:?}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(check_identifier("login ID", "corp-01.alice").is_ok());
        for bad in ["", "a b", "ä", "x\r\nX-Certgate-User: y", &"a".repeat(65)] {
            assert!(check_identifier("login ID", bad).is_err(), "{bad:?}");
        }
        // A new ID begins and ends with a letter or digit; existing ones are still read.
        for bad in [
            ".",
            "..",
            "-x",
            "_a",
            "@corp",
            "a.",
            "beta-admin.",
            "x-",
            "y@",
        ] {
            assert!(check_identifier("login ID", bad).is_ok(), "{bad:?}");
            assert!(check_new_identifier("login ID", bad).is_err(), "{bad:?}");
        }
        assert!(check_new_identifier("login ID", "0corp.alice").is_ok());
    }
}
