//! `[staff]`: how bank staff work with certgate: the staff console's listener, the four-eyes
//! rules, and whether the command line on the host may still change customer data and staff.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The kinds a policy may name.
pub const APPROVAL_KINDS: &[&str] = &[
    "contract.add",
    "contract.disable",
    "contract.enable",
    "user.add",
    "user.disable",
    "user.enable",
    "code.authorize",
    "cert.reissue",
    "cert.reissue.admin",
    "cert.reissue.user",
    "cert.revoke",
    "staff.add",
    "staff.change",
];

/// The default set: a staff-made re-issue or issuance code for any login ID (an
/// administrator's, and an approver's or general user's, which are the contract
/// administrator's to make), every revocation (and so every re-issue, which revokes),
/// disabling or enabling a contract or a login ID (one person alone could otherwise undo
/// an approved disabling, or disable every login ID of a contract instead), adding or
/// changing staff.
pub const DEFAULT_APPROVAL_KINDS: &[&str] = &[
    "cert.reissue.admin",
    "cert.reissue.user",
    "cert.revoke",
    "contract.disable",
    "contract.enable",
    "user.disable",
    "user.enable",
    "staff.add",
    "staff.change",
];

/// `[staff]`. Without `addr` there is no staff console (the command line still works).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffConfig {
    /// Where the staff console listens (TLS; a staff certificate is required at the
    /// handshake). Keep it on the bank's internal network.
    #[serde(default)]
    pub addr: Option<SocketAddr>,
    /// Where staff obtain their first certificate in the browser with a one-time code (TLS
    /// without a client certificate; serves only the obtain page and its call). Optional.
    #[serde(default)]
    pub obtain_addr: Option<SocketAddr>,
    /// Server certificate chain and key of the console (PEM), relative to the config file.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The console's host name as staff browsers reach it (the origin its cross-site checks
    /// expect); default: the address.
    #[serde(default)]
    pub host: Option<String>,
    /// Actions that wait for a second staff member's approval (see `APPROVAL_KINDS`).
    #[serde(default = "default_four_eyes")]
    pub four_eyes: Vec<String>,
    /// Hours a request waits for a decision before it expires (default 24).
    #[serde(default = "default_request_ttl_hours")]
    pub request_ttl_hours: u32,
    /// Whether the commands that change contracts, login IDs, issuance codes, certificates'
    /// revocation and staff members run on the host. When false they refuse (audited);
    /// reading, the key ceremony, rollover, CRLs and checkpoints keep working.
    #[serde(default = "default_cli_changes")]
    pub cli_changes: bool,
    /// Connections open at once from one address on each staff listener (default 64; an
    /// IPv6 /64 counts as one): one host cannot hold every slot with idle or unfinished
    /// handshakes. A terminal server with many staff on one address may need more; 0: no
    /// limit.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
}

impl Default for StaffConfig {
    fn default() -> Self {
        Self {
            addr: None,
            obtain_addr: None,
            cert: None,
            key: None,
            host: None,
            four_eyes: default_four_eyes(),
            request_ttl_hours: default_request_ttl_hours(),
            cli_changes: default_cli_changes(),
            max_connections_per_address: default_max_connections_per_address(),
        }
    }
}

fn default_max_connections_per_address() -> usize {
    64
}

fn default_four_eyes() -> Vec<String> {
    DEFAULT_APPROVAL_KINDS
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn default_request_ttl_hours() -> u32 {
    24
}

fn default_cli_changes() -> bool {
    true
}

impl StaffConfig {
    /// Every mistake in the section, explained.
    pub fn problem(&self) -> Option<String> {
        if self.addr.is_some() && (self.cert.is_none() || self.key.is_none()) {
            return Some("[staff] addr needs cert and key (the console's TLS identity)".into());
        }
        if self.obtain_addr.is_some() && self.addr.is_none() {
            return Some("[staff] obtain_addr needs addr (the console it obtains for)".into());
        }
        if self.addr.is_none() && (self.cert.is_some() || self.key.is_some()) {
            return Some("[staff] cert and key are set but addr is not".into());
        }
        if self.addr.is_some() && self.addr == self.obtain_addr {
            return Some("[staff] addr and obtain_addr must differ".into());
        }
        if self.request_ttl_hours == 0 || self.request_ttl_hours > 24 * 14 {
            return Some("[staff] request_ttl_hours must be between 1 and 336".into());
        }
        if let Some(h) = &self.host
            && (h.is_empty() || h.contains(['/', ' ', '@']))
        {
            return Some(format!("[staff] host must be a host name, not {h:?}"));
        }
        for k in &self.four_eyes {
            if !APPROVAL_KINDS.contains(&k.as_str()) {
                return Some(format!(
                    "[staff] four_eyes: unknown action {k:?}; use some of {}",
                    APPROVAL_KINDS.join(", ")
                ));
            }
        }
        None
    }

    /// The set of actions that need approval.
    pub fn approval_kinds(&self) -> BTreeSet<String> {
        self.four_eyes.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> StaffConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn changes_are_on_unless_turned_off_and_unknown_keys_are_refused() {
        let on: StaffConfig = toml::from_str("").unwrap();
        assert!(on.cli_changes);
        let off: StaffConfig = toml::from_str("cli_changes = false").unwrap();
        assert!(!off.cli_changes);
        assert!(toml::from_str::<StaffConfig>("cli_change = false").is_err());
    }

    #[test]
    fn every_wrong_combination_is_explained() {
        assert_eq!(StaffConfig::default().problem(), None);
        let no_key = parsed("addr = \"127.0.0.1:9443\"\ncert = \"c.pem\"");
        assert!(no_key.problem().unwrap().contains("needs cert and key"));
        let no_addr = parsed("cert = \"c.pem\"\nkey = \"k.pem\"");
        assert!(no_addr.problem().unwrap().contains("addr is not"));
        let ttl = parsed("request_ttl_hours = 0");
        assert!(ttl.problem().unwrap().contains("request_ttl_hours"));
        let kind = parsed("four_eyes = [\"cert.revoke\", \"ca.rollover\"]");
        assert!(kind.problem().unwrap().contains("\"ca.rollover\""));
        let lone = parsed("obtain_addr = \"127.0.0.1:9444\"");
        assert!(lone.problem().unwrap().contains("obtain_addr needs addr"));
        let same = parsed(
            "addr = \"127.0.0.1:9443\"\nobtain_addr = \"127.0.0.1:9443\"\ncert = \"c\"\nkey = \"k\"",
        );
        assert!(same.problem().unwrap().contains("must differ"));
        let host = parsed("host = \"a/b\"");
        assert!(host.problem().unwrap().contains("host"));
        let fine =
            parsed("addr = \"127.0.0.1:9443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\nfour_eyes = []");
        assert_eq!(fine.problem(), None);
        assert!(fine.approval_kinds().is_empty());
        assert!(toml::from_str::<StaffConfig>("adr = \"x\"").is_err());
    }
}
