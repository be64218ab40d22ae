//! Bank staff switch a login ID or a whole contract off and on from the command line while
//! `certgate serve` runs: the gateway refuses the same certificates, then accepts them again,
//! without a restart and without re-issuing; each switch is in the audit log.

use crate::faults::eventually;
use crate::fixture::{Db, Fixture, Running, call_app};
use std::path::Path;

/// Waits (bounded) until the gateway answers `want` to `cert`: it learns of the change
/// from the store's change feed.
fn answers(run: &Running, cert: &Path, key: &Path, want: u16) {
    eventually(10, &format!("the gateway answers {want}"), || {
        call_app(run, cert, key).0 == want
    });
}

fn switches_take_effect_on_the_running_gateway(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (carol, carol_key) = fx.obtain("carol");
    let (dave, dave_key) = fx.obtain("dave");
    assert_eq!(call_app(&run, &carol, &carol_key).0, 200);
    assert_eq!(call_app(&run, &dave, &dave_key).0, 200);

    // One login ID off: its certificate is refused, the others are not.
    let out = fx.ok(&["user", "disable", "carol"]);
    assert!(out.contains("login ID carol disabled"), "{out}");
    answers(&run, &carol, &carol_key, 403);
    assert_eq!(call_app(&run, &dave, &dave_key).0, 200);
    let list = fx.ok(&["user", "list", "--contract", "corp1"]);
    assert!(list.contains("carol\tgeneral\tdisabled"), "{list}");
    let again = fx.ok(&["user", "disable", "carol"]);
    assert!(again.contains("was already disabled"), "{again}");
    // On again: the same certificate works, nothing was re-issued.
    fx.ok(&["user", "enable", "carol"]);
    answers(&run, &carol, &carol_key, 200);

    // A contract off: every login ID of it is refused, other contracts are not.
    let out = fx.ok(&["contract", "disable", "corp2"]);
    assert!(out.contains("contract corp2 disabled"), "{out}");
    answers(&run, &dave, &dave_key, 403);
    assert_eq!(call_app(&run, &carol, &carol_key).0, 200);
    assert!(fx.ok(&["contract", "list"]).contains("corp2\tdisabled"));
    fx.ok(&["contract", "enable", "corp2"]);
    answers(&run, &dave, &dave_key, 200);

    // Unknown names are an error that says which.
    assert!(fx.fails(&["user", "disable", "nobody"]).contains("nobody"));
    assert!(fx.fails(&["contract", "enable", "corp9"]).contains("corp9"));

    // Four switches in the audit log (the repeated disable changed nothing), chain intact.
    let log = fx.ok(&["audit", "export"]);
    let actions: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| r["action"].as_str().map(str::to_owned))
        .filter(|a| {
            a.starts_with("user.") && a != "user.add"
                || a.starts_with("contract.") && a != "contract.add"
        })
        .collect();
    assert_eq!(
        actions,
        [
            "user.disable",
            "user.enable",
            "contract.disable",
            "contract.enable"
        ]
    );
    fx.ok(&["audit", "verify"]);
}

#[test]
fn switches_sqlite() {
    switches_take_effect_on_the_running_gateway(Db::Sqlite);
}

#[test]
fn switches_postgres() {
    switches_take_effect_on_the_running_gateway(Db::Postgres);
}
