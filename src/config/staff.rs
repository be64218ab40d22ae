//! `[staff]`: how bank staff work with certgate. Today: whether the command line on the
//! host may still change customer data and staff (off once the staff console is in use).

use serde::Deserialize;

/// `[staff]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffConfig {
    /// Whether the commands that change contracts, login IDs, issuance codes, certificates'
    /// revocation and staff members run on the host. When false they refuse (audited);
    /// reading, the key ceremony, rollover, CRLs and checkpoints keep working.
    #[serde(default = "default_cli_changes")]
    pub cli_changes: bool,
}

impl Default for StaffConfig {
    fn default() -> Self {
        Self {
            cli_changes: default_cli_changes(),
        }
    }
}

fn default_cli_changes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_on_unless_turned_off_and_unknown_keys_are_refused() {
        let on: StaffConfig = toml::from_str("").unwrap();
        assert!(on.cli_changes);
        let off: StaffConfig = toml::from_str("cli_changes = false").unwrap();
        assert!(!off.cli_changes);
        assert!(toml::from_str::<StaffConfig>("cli_change = false").is_err());
    }
}
