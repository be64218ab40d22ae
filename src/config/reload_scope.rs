//! Which settings a reload (SIGHUP or a change of the file) puts in force and which need a
//! restart. The reload's log line and `config example` say the same, from here.

use std::path::PathBuf;

use super::Config;

/// What an accepted reload puts in force.
pub const APPLIED_ON_RELOAD: &str = "[[listener]] cert, key, client_auth, timeouts, proxy_protocol and \
    trusted_proxies (new connections); [[route]]; [issuance]; [renewal]; [ca] organization; \
    [gateway] enroll_host; [branding]; [staff] cert, key, four_eyes and request_ttl_hours; the trust anchors";

/// What is read once at start.
pub const NEEDS_RESTART: &str = "[database]; [hsm]; [ca] (but organization); [admin]; \
    [gateway] (but enroll_host); [log]; [trace]; [notify]; [revocation]; [limits]; [[listener]] addr, max_connections and max_connections_per_address; [staff] addr, obtain_addr, host and max_connections_per_address; \
    [renewal] overlap_days for certificates already in the status cache";

/// The settings read once at start that differ between `old` and `new`: they were changed
/// in the file but stay as they were until a restart.
pub fn changed_needing_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    // Sections compared by their Debug form: every section type derives Debug, and a
    // difference there is a difference in a field.
    fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let mut changed = Vec::new();
    let mut old_ca = old.ca.clone();
    old_ca.organization.clone_from(&new.ca.organization);
    // Routing reads enroll_host per request from the running configuration.
    let mut old_gateway = old.gateway.clone();
    old_gateway.enroll_host.clone_from(&new.gateway.enroll_host);
    let sections: [(&'static str, bool); 10] = [
        ("[database]", differs(&old.database, &new.database)),
        ("[hsm]", differs(&old.hsm, &new.hsm)),
        ("[ca]", differs(&old_ca, &new.ca)),
        ("[admin]", differs(&old.admin, &new.admin)),
        ("[gateway]", differs(&old_gateway, &new.gateway)),
        ("[log]", differs(&old.log, &new.log)),
        ("[trace]", differs(&old.trace, &new.trace)),
        ("[notify]", differs(&old.notify, &new.notify)),
        ("[revocation]", differs(&old.revocation, &new.revocation)),
        ("[limits]", differs(&old.limits, &new.limits)),
    ];
    changed.extend(sections.iter().filter(|(_, d)| *d).map(|(name, _)| *name));
    let limits = |c: &Config| -> Vec<_> {
        c.listeners
            .iter()
            .map(|l| (l.addr, l.max_connections, l.max_connections_per_address))
            .collect()
    };
    if limits(old) != limits(new) {
        changed.push("[[listener]] addr, max_connections or max_connections_per_address");
    }
    let console = |c: &Config| {
        let s = &c.staff;
        format!(
            "{:?}",
            (
                s.addr,
                s.obtain_addr,
                &s.host,
                s.max_connections_per_address
            )
        )
    };
    if console(old) != console(new) {
        changed.push("[staff] addr, obtain_addr, host or max_connections_per_address");
    }
    if old.renewal.overlap_days != new.renewal.overlap_days {
        changed.push("[renewal] overlap_days (status cache)");
    }
    changed
}

/// A file a reload reads besides the configuration: its resolved path, and whether it holds
/// a private key (named in the audit log, never fingerprinted there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFile {
    pub path: PathBuf,
    pub private_key: bool,
}

/// The certificate, key and trust-anchor files a reload reads again: the listeners', the
/// HTTPS upstreams' and the staff console's. The reloader watches them for changes and the
/// audit log names the ones that changed.
pub fn watched_files(config: &Config) -> Vec<WatchedFile> {
    let file = |path: &PathBuf, private_key: bool| WatchedFile {
        path: config.resolve(path),
        private_key,
    };
    let mut files = Vec::new();
    for l in &config.listeners {
        files.push(file(&l.cert, false));
        files.push(file(&l.key, true));
    }
    for t in config.routes.iter().filter_map(|r| r.upstream_tls.as_ref()) {
        files.extend(t.ca_file.iter().map(|p| file(p, false)));
        files.extend(t.client_cert.iter().map(|p| file(p, false)));
        files.extend(t.client_key.iter().map(|p| file(p, true)));
    }
    files.extend(config.staff.cert.iter().map(|p| file(p, false)));
    files.extend(config.staff.key.iter().map(|p| file(p, true)));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        Config::parse(
            super::super::EXAMPLE,
            "example",
            std::path::Path::new("/etc/certgate"),
        )
        .expect("the example is valid")
    }

    #[test]
    fn changes_a_reload_applies_are_not_reported_as_needing_a_restart() {
        let old = example();
        let mut new = old.clone();
        new.renewal.window_days += 5;
        new.renewal.allow_same_key = !new.renewal.allow_same_key;
        new.issuance.max_attempts += 1;
        new.ca.organization.push_str(" (renamed)");
        new.gateway.enroll_host = Some("enroll.bank.example".into());
        new.staff.cert = Some("staff-renewed.pem".into());
        new.staff.key = Some("staff-renewed.key".into());
        assert!(changed_needing_restart(&old, &new).is_empty());
    }

    #[test]
    fn changes_read_only_at_start_are_named() {
        let old = example();
        let mut new = old.clone();
        new.database.url = "sqlite://other.db".into();
        new.gateway.drain_secs += 1;
        new.renewal.overlap_days += 1;
        assert_eq!(
            changed_needing_restart(&old, &new),
            vec![
                "[database]",
                "[gateway]",
                "[renewal] overlap_days (status cache)"
            ]
        );
    }

    /// `config example` tells, above every section, whether a reload applies it.
    #[test]
    fn the_example_names_reload_or_restart_for_every_section() {
        let lines: Vec<&str> = super::super::EXAMPLE.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let header = line.trim();
            if !(header.starts_with('[') && header.ends_with(']')) {
                continue;
            }
            // The comment lines right after the header.
            let comment: String = lines[i + 1..]
                .iter()
                .take_while(|l| l.starts_with('#'))
                .copied()
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                comment.contains("reload") || comment.contains("restart"),
                "section {header} of the example does not say whether a reload applies it"
            );
        }
    }
}
