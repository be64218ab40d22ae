//! Operations for the security team, through the real binary and a real SoftHSM2 token:
//! `hsm info`/`keygen`, refusal of unsafe keys, an intermediate CA signed by an offline
//! openssl root, rollover with CRLs for both generations, signed audit checkpoints against
//! a tampering attacker, the deploy files and the CI script.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixture::{Db, Fixture, PIN, last_line, missing, sh};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn pkcs11_tool(fx: &Fixture, args: &[&str]) -> String {
    sh(Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &fx.softhsm_conf)
        .args([
            "--module",
            MODULE,
            "--token-label",
            "certgate",
            "--login",
            "--pin",
            PIN,
        ])
        .args(args))
}

fn openssl(args: &[&str]) -> String {
    sh(Command::new("openssl").args(args))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Issues a certificate for `login` through `cert sign`; returns the PEM file and serial.
fn issue(fx: &Fixture, login: &str) -> (PathBuf, String) {
    let code = fx.authorize(login);
    let (_, csr) = fx.openssl_csr(login, "ec:P-256");
    let pem = fx.ok(&["cert", "sign", login, "--csr", s(&csr), "--code", &code]);
    let path = fx.path(&format!("{login}.pem"));
    std::fs::write(&path, pem).expect("write cert");
    let serial = openssl(&["x509", "-noout", "-serial", "-in", s(&path)]);
    let serial = serial.trim().trim_start_matches("serial=").to_lowercase();
    (path, serial)
}

// ---------------------------------------------------------------------------------------
// hsm info / keygen / unsafe keys

#[test]
fn hsm_info_describes_module_token_mechanisms_and_key() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    // Before init: the module and token are described, the key is absent.
    let before = fx.ok(&["hsm", "info"]);
    assert!(before.contains("SoftHSM"), "{before}");
    assert!(
        before.contains("label \"certgate\" (configured)"),
        "{before}"
    );
    assert!(before.contains("not in the token"), "{before}");
    fx.ok(&["init"]);
    let text = fx.ok(&["hsm", "info"]);
    for want in [
        "ec-p256      usable",
        "CKM_ECDSA ",
        "CKM_EC_KEY_PAIR_GEN",
        "CKM_SHA256_RSA_PKCS",
        "CA key \"certgate-ca\"",
        // The key's RFC 7512 URI, ready for [hsm] key.
        "key \"certgate-ca\": pkcs11:token=certgate;object=certgate-ca;id=%",
        "sensitive=true",
        "extractable=false",
        "safe as a CA key",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&fx.ok(&["hsm", "info", "--json"])).expect("hsm info --json");
    assert_eq!(json["key"]["safe"], true, "{json}");
    assert_eq!(
        json["key"]["attributes"]["never_extractable"], true,
        "{json}"
    );
    let token = json["module"]["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["label"] == "certgate")
        .expect("the configured token is listed")
        .clone();
    let p256 = token["algorithms"]
        .as_array()
        .expect("algorithms")
        .iter()
        .find(|a| a["algorithm"] == "ec-p256")
        .expect("ec-p256")
        .clone();
    assert_eq!(p256["usable"], true, "{p256}");
    assert!(!fx.transcript().contains(PIN), "the PIN leaked into output");
}

/// The EC algorithm of `hsm info --json`'s configured token.
fn algorithm_info(json: &serde_json::Value, algorithm: &str) -> serde_json::Value {
    json["module"]["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["label"] == "certgate")
        .and_then(|t| t["algorithms"].as_array())
        .and_then(|a| a.iter().find(|a| a["algorithm"] == algorithm))
        .cloned()
        .unwrap_or_else(|| panic!("no {algorithm} in {json}"))
}

#[test]
fn hsm_info_shows_the_ecdsa_mechanism_and_hashing_without_the_token_refuses_to_start() {
    // SoftHSM2 offers no CKM_ECDSA_SHA256/384 (`pkcs11-tool -M`): "auto" means raw ECDSA.
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.ok(&["init"]);
    let text = fx.ok(&["hsm", "info"]);
    assert!(
        text.contains(
            "ec-p256      usable\n      signs with CKM_ECDSA (hash computed in software)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "ec-p384      usable\n      signs with CKM_ECDSA (hash computed in software)"
        ),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&fx.ok(&["hsm", "info", "--format", "json"])).expect("json");
    let p256 = algorithm_info(&json, "ec-p256");
    assert_eq!(
        p256["signing"], "CKM_ECDSA (hash computed in software)",
        "{p256}"
    );
    assert_eq!(
        algorithm_info(&json, "rsa-2048")["signing"],
        "CKM_SHA256_RSA_PKCS (the token hashes)"
    );
    assert_eq!(
        algorithm_info(&json, "rsa-3072-pss")["signing"],
        "CKM_SHA256_RSA_PKCS_PSS (the token hashes)"
    );

    // "hashing" on this token: hsm info says why EC cannot sign, and init stops before it
    // generates a key.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |text| {
        *text = text.replace(
            "key_label = \"certgate-ca\"\n",
            "key_label = \"certgate-ca\"\necdsa_mechanism = \"hashing\"\n",
        );
    }) else {
        return;
    };
    let text = fx.ok(&["hsm", "info"]);
    assert!(text.contains("ec-p256      NOT usable"), "{text}");
    assert!(
        text.contains("signs with nothing: [hsm] ecdsa_mechanism = \"hashing\""),
        "{text}"
    );
    assert!(text.contains("rsa-2048     usable"), "{text}");
    let err = fx.fails(&["init"]);
    assert!(
        err.contains("ecdsa_mechanism = \"hashing\", but the token does not offer"),
        "{err}"
    );
    assert!(
        !pkcs11_tool(&fx, &["-O"]).contains("certgate-ca"),
        "no key was generated"
    );
}

#[test]
fn keygen_makes_a_sign_only_key_and_never_reuses_a_label() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    let out = fx.ok(&[
        "hsm",
        "keygen",
        "--label",
        "ceremony-2027",
        "--algorithm",
        "rsa-2048",
    ]);
    assert!(
        out.contains("generated rsa-2048 key \"ceremony-2027\""),
        "{out}"
    );
    assert!(out.contains("safe as a CA key"), "{out}");
    assert!(out.contains("-----BEGIN PUBLIC KEY-----"), "{out}");
    // The token agrees.
    let objects = pkcs11_tool(&fx, &["-O"]);
    let private = objects
        .split("Private Key Object")
        .skip(1)
        .find(|o| o.contains("ceremony-2027"))
        .expect("the private key is in the token");
    assert!(
        private.contains("sensitive, always sensitive, never extractable, local"),
        "{objects}"
    );
    assert!(private.contains("Usage:      sign"), "{objects}");
    // The public key printed is the token's.
    let printed = out
        .split_once("-----BEGIN PUBLIC KEY-----")
        .map(|(_, b)| format!("-----BEGIN PUBLIC KEY-----{b}"))
        .expect("pem");
    let from_token = fx.path("token.der");
    pkcs11_tool(
        &fx,
        &[
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            "ceremony-2027",
            "-o",
            s(&from_token),
        ],
    );
    let printed_file = fx.path("printed.pem");
    std::fs::write(&printed_file, printed).expect("write");
    assert_eq!(
        openssl(&["pkey", "-pubin", "-in", s(&printed_file)]),
        openssl(&["pkey", "-pubin", "-inform", "DER", "-in", s(&from_token)])
    );
    let err = fx.fails(&[
        "hsm",
        "keygen",
        "--label",
        "ceremony-2027",
        "--algorithm",
        "ec-p256",
    ]);
    assert!(err.contains("already exists"), "{err}");
    // The key ceremony is audited.
    let log = fx.ok(&["audit", "export"]);
    assert!(
        log.contains("\"hsm.keygen\"") && log.contains("ceremony-2027"),
        "{log}"
    );
}

/// A CA key made outside certgate with `--extractable` is refused by `init`, by `hsm info`
/// and by every command that would sign with it.
#[test]
fn an_extractable_key_is_refused_everywhere() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    pkcs11_tool(
        &fx,
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "certgate-ca",
            "--id",
            "c0ffee",
            "--usage-sign",
            "--extractable",
            "--sensitive",
            "--private",
        ],
    );
    let err = fx.fails(&["init"]);
    assert!(
        err.contains("not safe as a CA key") && err.contains("CKA_EXTRACTABLE"),
        "{err}"
    );
    let err = fx.fails(&["hsm", "info"]);
    assert!(err.contains("CKA_EXTRACTABLE"), "{err}");
    let err = fx.fails(&[
        "ca",
        "csr",
        "--key-label",
        "certgate-ca",
        "--out",
        s(&fx.path("x.csr")),
    ]);
    assert!(err.contains("CKA_EXTRACTABLE"), "{err}");
    assert!(!fx.path("x.csr").exists());
}

/// A key that is not sensitive (its value can be read) is refused. pkcs11-tool cannot make
/// one on SoftHSM2 (it always sets CKA_SENSITIVE), so the test creates it through PKCS#11.
#[test]
fn a_readable_key_is_refused() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    // SAFETY: nextest runs each test in its own process; no thread has started yet.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &fx.softhsm_conf) };
    let p = Pkcs11::new(MODULE).expect("load module");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("initialize");
    let slot = p
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            p.get_token_info(*s)
                .map(|t| t.label() == "certgate")
                .unwrap_or(false)
        })
        .expect("token");
    let session = p.open_rw_session(slot).expect("session");
    session
        .login(UserType::User, Some(&AuthPin::new(PIN.into())))
        .expect("login");
    let label = b"readable".to_vec();
    let public = [
        Attribute::Token(true),
        Attribute::Label(label.clone()),
        Attribute::Id(vec![7]),
        Attribute::Verify(true),
        Attribute::EcParams(vec![
            0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(label),
        Attribute::Id(vec![7]),
        Attribute::Sign(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(false),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    session
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
        .expect("generate");
    drop(session);
    p.finalize().expect("finalize");

    let err = fx.fails(&["hsm", "info", "--key-label", "readable"]);
    assert!(err.contains("CKA_SENSITIVE"), "{err}");
    let err = fx.fails(&["ca", "rollover", "--key-label", "readable"]);
    assert!(
        err.contains("not safe as a CA key") && err.contains("CKA_SENSITIVE"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// intermediate CA under an offline root

/// An offline root made with openssl: key and self-signed certificate.
fn offline_root(fx: &Fixture, name: &str) -> (PathBuf, PathBuf) {
    let key = fx.path(&format!("{name}.key"));
    let cert = fx.path(&format!("{name}.pem"));
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-keyout",
        s(&key),
        "-out",
        s(&cert),
        "-days",
        "7300",
        "-subj",
        &format!("/CN=Example Bank {name}/O=Example Bank"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
    ]);
    (key, cert)
}

/// The offline root signs `csr` with the given extensions; returns the certificate path.
fn root_signs(
    fx: &Fixture,
    root: &(PathBuf, PathBuf),
    csr: &Path,
    out: &str,
    ext: &str,
) -> PathBuf {
    let extfile = fx.path(&format!("{out}.ext"));
    std::fs::write(&extfile, format!("[v3]\n{ext}\n")).expect("extfile");
    let cert = fx.path(&format!("{out}.pem"));
    openssl(&[
        "x509",
        "-req",
        "-in",
        s(csr),
        "-CA",
        s(&root.1),
        "-CAkey",
        s(&root.0),
        "-set_serial",
        "0x1234567890abcdef",
        "-days",
        "1825",
        "-sha384",
        "-extfile",
        s(&extfile),
        "-extensions",
        "v3",
        "-out",
        s(&cert),
    ]);
    cert
}

const INTERMEDIATE_EXT: &str = "basicConstraints=critical,CA:TRUE,pathlen:0\n\
    keyUsage=critical,digitalSignature,keyCertSign,cRLSign\n\
    subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always";

fn intermediate_under_an_offline_root(db: Db) {
    let Some(fx) = Fixture::new(db) else { return };
    fx.init_with_users();
    let root = offline_root(&fx, "root");
    fx.ok(&[
        "hsm",
        "keygen",
        "--label",
        "issuing-1",
        "--algorithm",
        "ec-p256",
    ]);
    let csr = fx.path("issuing-1.csr");
    fx.ok(&[
        "ca",
        "csr",
        "--key-label",
        "issuing-1",
        "--subject",
        "CN=certgate Issuing CA 1,O=Example Bank",
        "--out",
        s(&csr),
    ]);
    // The request is well signed and asks for what certgate needs.
    let text = openssl(&["req", "-verify", "-noout", "-text", "-in", s(&csr)]);
    assert!(text.contains("CN = certgate Issuing CA 1"), "{text}");
    assert!(text.contains("CA:TRUE"), "{text}");
    let verified = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-in", s(&csr)])
        .output()
        .expect("openssl");
    let said = String::from_utf8_lossy(&verified.stderr).to_string()
        + &String::from_utf8_lossy(&verified.stdout);
    assert!(said.contains("verify OK"), "{said}");
    // The request never overwrites a file.
    let err = fx.fails(&["ca", "csr", "--key-label", "issuing-1", "--out", s(&csr)]);
    assert!(err.contains("must not exist"), "{err}");

    // Refusals first: a certificate for another key, one that is no CA, a foreign chain.
    let other_root = offline_root(&fx, "other-root");
    let (_, foreign_csr) = fx.openssl_csr("foreign", "ec:P-256");
    let foreign = root_signs(&fx, &root, &foreign_csr, "foreign-ca", INTERMEDIATE_EXT);
    let err = fx.fails(&[
        "ca",
        "import",
        "--key-label",
        "issuing-1",
        "--cert",
        s(&foreign),
        "--chain",
        s(&root.1),
    ]);
    assert!(err.contains("does not certify the HSM key"), "{err}");
    let not_ca = root_signs(
        &fx,
        &root,
        &csr,
        "not-ca",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash",
    );
    let err = fx.fails(&[
        "ca",
        "import",
        "--key-label",
        "issuing-1",
        "--cert",
        s(&not_ca),
        "--chain",
        s(&root.1),
    ]);
    assert!(err.contains("CA:FALSE"), "{err}");
    let inter = root_signs(&fx, &root, &csr, "issuing-1", INTERMEDIATE_EXT);
    let err = fx.fails(&[
        "ca",
        "import",
        "--key-label",
        "issuing-1",
        "--cert",
        s(&inter),
        "--chain",
        s(&other_root.1),
    ]);
    assert!(err.contains("chain does not verify"), "{err}");

    let out = fx.ok(&[
        "ca",
        "import",
        "--key-label",
        "issuing-1",
        "--cert",
        s(&inter),
        "--chain",
        s(&root.1),
        "--activate",
    ]);
    assert!(out.contains("now issues new certificates"), "{out}");
    let list = fx.ok(&["ca", "list"]);
    assert!(list.contains("\tretired\tcertgate-ca\t"), "{list}");
    assert!(list.contains("\tactive\tissuing-1\t"), "{list}");
    assert!(list.contains("\tchain\t"), "{list}");
    // `ca cert` gives the intermediate followed by its chain.
    let chain_out = fx.ok(&["ca", "cert"]);
    assert_eq!(
        chain_out.matches("BEGIN CERTIFICATE").count(),
        2,
        "{chain_out}"
    );

    // Issue through the intermediate; the certificate verifies up to the offline root.
    let (carol, _) = issue(&fx, "carol");
    let verify = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        s(&root.1),
        "-untrusted",
        s(&inter),
        s(&carol),
    ]);
    assert!(verify.contains(": OK"), "{verify}");
    let issuer = openssl(&["x509", "-noout", "-issuer", "-in", s(&carol)]);
    assert!(issuer.contains("certgate Issuing CA 1"), "{issuer}");
    // Its CRL verifies against the intermediate.
    let crl = fx.path("issuing-1.crl");
    fx.ok(&["ca", "crl", "--out", s(&crl)]);
    let crl_check = Command::new("openssl")
        .args([
            "crl",
            "-inform",
            "DER",
            "-noout",
            "-in",
            s(&crl),
            "-CAfile",
            s(&inter),
        ])
        .output()
        .expect("openssl crl");
    let said = String::from_utf8_lossy(&crl_check.stderr);
    assert!(said.contains("verify OK"), "{said}");
    assert!(!fx.transcript().contains(PIN), "the PIN leaked into output");
}

#[test]
fn intermediate_sqlite() {
    intermediate_under_an_offline_root(Db::Sqlite);
}

#[test]
fn intermediate_postgres() {
    intermediate_under_an_offline_root(Db::Postgres);
}

// ---------------------------------------------------------------------------------------
// rollover

fn crl_verifies(fx: &Fixture, ca_id: &str, ca_pem: &Path, name: &str) -> String {
    let crl = fx.path(name);
    fx.ok(&["ca", "crl", "--id", ca_id, "--out", s(&crl)]);
    let out = Command::new("openssl")
        .args([
            "crl",
            "-inform",
            "DER",
            "-noout",
            "-text",
            "-in",
            s(&crl),
            "-CAfile",
            s(ca_pem),
        ])
        .output()
        .expect("openssl crl");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("verify OK"), "{said}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rollover_keeps_both_generations(db: Db) {
    let Some(fx) = Fixture::new(db) else { return };
    fx.init_with_users();
    let (carol, carol_serial) = issue(&fx, "carol");
    let old_ca = fx.path("ca1.pem");
    std::fs::write(&old_ca, fx.ok(&["ca", "cert", "--id", "1"])).expect("write");

    let out = fx.ok(&[
        "ca",
        "rollover",
        "--key-label",
        "certgate-ca-2",
        "--algorithm",
        "ec-p384",
    ]);
    assert!(out.contains("CA 2 created and active"), "{out}");
    assert!(
        out.contains("CA 1 (key \"certgate-ca\") is retired"),
        "{out}"
    );
    // The same label again is refused; so is the old CA's subject.
    let err = fx.fails(&["ca", "rollover", "--key-label", "certgate-ca-2"]);
    assert!(err.contains("already belongs to a CA"), "{err}");
    let err = fx.fails(&[
        "ca",
        "rollover",
        "--key-label",
        "certgate-ca-3",
        "--subject",
        "CN=certgate Test Customer CA,O=Example Bank",
    ]);
    assert!(err.contains("already has the subject"), "{err}");
    // init still accepts the installation (it follows the active CA's key).
    let again = fx.ok(&["init"]);
    assert!(again.contains("matches"), "{again}");

    let new_ca = fx.path("ca2.pem");
    std::fs::write(&new_ca, fx.ok(&["ca", "cert", "--id", "2"])).expect("write");
    assert_eq!(fx.ok(&["ca", "cert"]), fx.ok(&["ca", "cert", "--id", "2"]));
    let text = openssl(&["x509", "-noout", "-text", "-in", s(&new_ca)]);
    assert!(
        text.contains("certgate-ca-2") && text.contains("P-384"),
        "{text}"
    );

    // New issuance uses the new CA; the old certificate still verifies against the old CA.
    let (bob, bob_serial) = issue(&fx, "bob");
    let v = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        s(&new_ca),
        s(&bob),
    ]);
    assert!(v.contains(": OK"), "{v}");
    let v = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        s(&old_ca),
        s(&carol),
    ]);
    assert!(v.contains(": OK"), "{v}");
    let cross = Command::new("openssl")
        .args(["verify", "-CAfile", s(&new_ca), s(&carol)])
        .output()
        .expect("openssl");
    assert!(
        !cross.status.success(),
        "the old certificate must not chain to the new CA"
    );
    let list = fx.ok(&["ca", "list"]);
    assert!(list.contains("1\tretired\tcertgate-ca\t"), "{list}");
    assert!(list.contains("2\tactive\tcertgate-ca-2\t"), "{list}");
    let certs = fx.ok(&["cert", "list"]);
    assert!(
        certs.contains(&carol_serial) && certs.contains(&bob_serial),
        "{certs}"
    );

    // Both CAs still sign CRLs: the old one lists its revoked certificate.
    fx.ok(&["cert", "revoke", &carol_serial, "--reason", "keyCompromise"]);
    let old_crl = crl_verifies(&fx, "1", &old_ca, "ca1.crl");
    assert!(old_crl.to_lowercase().contains(&carol_serial), "{old_crl}");
    let new_crl = crl_verifies(&fx, "2", &new_ca, "ca2.crl");
    assert!(!new_crl.to_lowercase().contains(&carol_serial), "{new_crl}");

    // Going back is possible: activate the old CA again, issue, verify under it.
    fx.ok(&["ca", "activate", "1"]);
    let (dave, _) = issue(&fx, "dave");
    let v = openssl(&["verify", "-CAfile", s(&old_ca), s(&dave)]);
    assert!(v.contains(": OK"), "{v}");
    let log = fx.ok(&["audit", "export"]);
    assert!(
        log.contains("\"ca.rollover\"") && log.contains("\"ca.activate\""),
        "{log}"
    );
}

#[test]
fn rollover_sqlite() {
    rollover_keeps_both_generations(Db::Sqlite);
}

#[test]
fn rollover_postgres() {
    rollover_keeps_both_generations(Db::Postgres);
}

// ---------------------------------------------------------------------------------------
// tamper-evident audit log

/// The database URL written into the fixture's configuration.
pub(crate) fn db_url(fx: &Fixture) -> String {
    let text = std::fs::read_to_string(&fx.config).expect("config");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("url = "))
        .expect("url line");
    line.split('"').nth(1).expect("quoted url").to_owned()
}

/// Runs SQL as an attacker with database access would (triggers can be dropped).
pub(crate) fn attacker_sql(fx: &Fixture, sql: &str) {
    let url = db_url(fx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let q = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
        if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            q.execute(&mut c).await.expect("attacker SQL");
        } else {
            let mut c = sqlx::PgConnection::connect(&url).await.expect("postgres");
            q.execute(&mut c).await.expect("attacker SQL");
        }
    });
}

/// Reads the audit log (seq, all fields) through the export command.
pub(crate) fn exported(fx: &Fixture) -> Vec<certgate::store::AuditRecord> {
    fx.ok(&["audit", "export"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            certgate::store::AuditRecord {
                seq: v["seq"].as_i64().expect("seq"),
                at: v["at"].as_i64().expect("at"),
                actor: v["actor"].as_str().expect("actor").into(),
                action: v["action"].as_str().expect("action").into(),
                subject: v["subject"].as_str().expect("subject").into(),
                outcome: v["outcome"].as_str().expect("outcome").into(),
                detail: v["detail"].as_str().expect("detail").into(),
                prev_hash: v["prev_hash"].as_str().expect("prev").into(),
                hash: v["hash"].as_str().expect("hash").into(),
            }
        })
        .collect()
}

const DROP_TRIGGERS_SQLITE: &str = "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; \
     DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;";
const DROP_TRIGGERS_PG: &str = "DROP TRIGGER audit_log_no_change ON audit_log; \
     DROP TRIGGER audit_checkpoints_no_change ON audit_checkpoints;";

pub(crate) fn drop_triggers(fx: &Fixture, db: Db) {
    attacker_sql(
        fx,
        match db {
            Db::Sqlite => DROP_TRIGGERS_SQLITE,
            Db::Postgres => DROP_TRIGGERS_PG,
        },
    );
}

/// A fixture with some history and two checkpoints: one after record 4, one at the end.
fn audited(db: Db) -> Option<(Fixture, i64, i64)> {
    let fx = Fixture::new(db)?;
    fx.init_with_users(); // records 1-6: two contracts, four users
    let first = fx.ok(&["audit", "checkpoint"]);
    let first: serde_json::Value = serde_json::from_str(first.trim()).expect("checkpoint json");
    let first_seq = first["seq"].as_i64().expect("seq");
    issue(&fx, "carol");
    issue(&fx, "bob");
    let second: serde_json::Value =
        serde_json::from_str(fx.ok(&["audit", "checkpoint"]).trim()).expect("checkpoint json");
    let second_seq = second["seq"].as_i64().expect("seq");
    assert!(second_seq > first_seq + 2, "{first} {second}");
    let ok = fx.ok(&["audit", "verify"]);
    assert!(ok.contains("audit chain intact"), "{ok}");
    assert!(ok.contains("2 signed checkpoint(s) verified"), "{ok}");
    Some((fx, first_seq, second_seq))
}

fn edited_row_is_named(db: Db) {
    let Some((fx, first, _)) = audited(db) else {
        return;
    };
    let target = first + 2;
    // The application itself cannot change a row: the append-only trigger refuses.
    let url = db_url(&fx);
    let blocked = std::panic::catch_unwind(|| {
        attacker_sql(
            &fx,
            &format!("UPDATE audit_log SET outcome = 'refused' WHERE seq = {target}"),
        )
    });
    assert!(
        blocked.is_err(),
        "the trigger must refuse an update ({url})"
    );
    drop_triggers(&fx, db);
    attacker_sql(
        &fx,
        &format!("UPDATE audit_log SET outcome = 'refused' WHERE seq = {target}"),
    );
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains(&format!("audit record {target} is broken")),
        "{err}"
    );
}

#[test]
fn edited_row_sqlite() {
    edited_row_is_named(Db::Sqlite);
}

#[test]
fn edited_row_postgres() {
    edited_row_is_named(Db::Postgres);
}

/// The attacker edits a record and recomputes every hash after it, so the chain alone
/// verifies; the signed checkpoint does not match and names the rewritten span.
#[test]
fn rewritten_chain_is_caught_by_a_checkpoint() {
    let Some((fx, first, second)) = audited(Db::Sqlite) else {
        return;
    };
    let mut records = exported(&fx);
    let target = first + 2;
    drop_triggers(&fx, Db::Sqlite);
    let mut prev = records[(target - 2) as usize].hash.clone();
    let mut sql = String::new();
    for r in records.iter_mut().filter(|r| r.seq >= target) {
        if r.seq == target {
            r.outcome = "refused".into();
        }
        r.prev_hash = prev.clone();
        r.hash = certgate::store::audit_hash(&prev, r);
        prev = r.hash.clone();
        // Unique hashes: park the row's hashes first, then write the new ones.
        sql.push_str(&format!(
            "UPDATE audit_log SET prev_hash = 'x{0}', hash = 'y{0}' WHERE seq = {0};",
            r.seq
        ));
    }
    for r in records.iter().filter(|r| r.seq >= target) {
        sql.push_str(&format!(
            "UPDATE audit_log SET outcome = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {};",
            r.outcome, r.prev_hash, r.hash, r.seq
        ));
    }
    attacker_sql(&fx, &sql);
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains(&format!("audit record {second} is broken"))
            && err.contains(&format!("records {} to {second} were rewritten", first + 1)),
        "{err}"
    );

    // Forging the checkpoint too does not help: its signature no longer verifies.
    let forged = &records[(second - 1) as usize].hash;
    attacker_sql(
        &fx,
        &format!("UPDATE audit_checkpoints SET hash = '{forged}' WHERE seq = {second}"),
    );
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains(&format!("(record {second}) is not valid"))
            && err.contains("signature does not verify"),
        "{err}"
    );
}

/// Cutting off the tail leaves a consistent chain; the checkpoint shows what is missing.
#[test]
fn truncated_tail_is_caught_by_a_checkpoint() {
    let Some((fx, first, second)) = audited(Db::Sqlite) else {
        return;
    };
    drop_triggers(&fx, Db::Sqlite);
    attacker_sql(
        &fx,
        &format!("DELETE FROM audit_log WHERE seq > {}", first + 1),
    );
    let err = fx.fails(&["audit", "verify"]);
    assert!(
        err.contains(&format!("audit record {} is missing", first + 2))
            && err.contains(&format!("covers record {second}")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// deploy files

#[test]
fn systemd_unit_verifies() {
    let unit = repo("deploy/systemd/certgate.service");
    let text = std::fs::read_to_string(&unit).expect("the unit exists");
    for want in [
        "User=certgate",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "LoadCredential=hsm-pin:",
    ] {
        assert!(text.contains(want), "the unit lacks {want:?}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        missing("systemd-analyze is not installed (Debian package systemd)");
        return;
    }
    // Verify a copy whose ExecStart names the binary just built (verify checks it exists).
    let dir = tempfile::tempdir().expect("tmp");
    let copy = dir.path().join("certgate.service");
    let bin = env!("CARGO_BIN_EXE_certgate");
    std::fs::write(&copy, text.replace("/usr/local/bin/certgate", bin)).expect("copy");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // Only complaints about this unit count (the host's own units may be imperfect).
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("certgate.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

#[test]
fn production_config_parses_and_matches_the_deploy_files() {
    let path = repo("deploy/config/certgate.toml");
    let text = std::fs::read_to_string(&path).expect("the example production config exists");
    let cfg = certgate::config::Config::parse(
        &text,
        "deploy/config/certgate.toml",
        Path::new("/etc/certgate"),
    )
    .expect("the production example parses and checks");
    assert!(
        cfg.database.url.starts_with("postgres://"),
        "{}",
        cfg.database.url
    );
    assert_eq!(
        cfg.hsm.pin_file.as_deref(),
        Some(Path::new("/run/credentials/certgate.service/hsm-pin"))
    );
    assert!(cfg.hsm.pin_env.is_none());
    assert!(cfg.admin.is_some(), "probes need the admin listener");
    // The Kubernetes manifests probe the admin listener's health endpoints.
    let k8s = std::fs::read_to_string(repo("deploy/kubernetes/deployment.yaml")).expect("k8s");
    for want in [
        "replicas: 2",
        "/healthz",
        "/readyz",
        "secretName: certgate-hsm-pin",
        "runAsNonRoot: true",
    ] {
        assert!(k8s.contains(want), "deployment.yaml lacks {want:?}");
    }
    let k8s_cfg = std::fs::read_to_string(repo("deploy/kubernetes/configmap.yaml")).expect("cm");
    let toml_part = k8s_cfg
        .split_once("certgate.toml: |\n")
        .map(|(_, t)| {
            t.lines()
                .map(|l| l.strip_prefix("    ").unwrap_or(l))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .expect("configmap holds certgate.toml");
    certgate::config::Config::parse(&toml_part, "configmap", Path::new("/etc/certgate"))
        .expect("the Kubernetes config parses and checks");
}

// ---------------------------------------------------------------------------------------
// CI script for app teams

#[test]
fn ci_gateway_script_issues_verifiable_certificates() {
    if Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .is_err()
    {
        missing("softhsm2-util is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new("bash")
        .arg(repo("softhsm-tests/ci-gateway.sh"))
        .args(["--dir"])
        .arg(dir.path())
        .args(["--no-serve", "alice:admin", "bob:approver", "carol:general"])
        .env("CERTGATE_BIN", env!("CARGO_BIN_EXE_certgate"))
        .output()
        .expect("run ci-gateway.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ci-gateway.sh failed:\n{stdout}\n{stderr}"
    );
    let var = |name: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not printed:\n{stdout}"))
            .to_owned()
    };
    let ca = var("CERTGATE_CA");
    for login in ["alice", "bob", "carol"] {
        let up = login.to_uppercase();
        let cert = var(&format!("CERTGATE_CERT_{up}"));
        let key = var(&format!("CERTGATE_KEY_{up}"));
        let v = openssl(&["verify", "-purpose", "sslclient", "-CAfile", &ca, &cert]);
        assert!(v.contains(": OK"), "{v}");
        let subject = openssl(&["x509", "-noout", "-subject", "-in", &cert]);
        assert!(subject.contains(&format!("CN = {login}")), "{subject}");
        // The key belongs to the certificate.
        assert_eq!(
            openssl(&["x509", "-noout", "-pubkey", "-in", &cert]),
            openssl(&["pkey", "-pubout", "-in", &key])
        );
        let p12 = var(&format!("CERTGATE_P12_{up}"));
        assert!(Path::new(&p12).exists(), "{p12}");
    }
    let config = var("CERTGATE_CONFIG");
    let users = sh(Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(["--config", &config, "user", "list", "--contract", "ci"])
        .env("SOFTHSM2_CONF", var("SOFTHSM2_CONF")));
    assert!(users.contains("bob\tapprover"), "{users}");
    assert!(last_line(&stdout).starts_with("CERTGATE_"), "{stdout}");
}

/// Without `--no-serve` the script starts the gateway in front of the app under test and
/// prints its URL and PID; a certificate it issued gets through, and the PID stops it.
#[test]
fn ci_gateway_script_serves() {
    if Command::new("softhsm2-util")
        .arg("--version")
        .output()
        .is_err()
    {
        missing("softhsm2-util is not installed");
        return;
    }
    let free = || crate::fixture::free_port();
    let (https, admin, app) = (free(), free(), free());
    let mut upstream = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(["demo-upstream", "--addr", &format!("127.0.0.1:{app}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sample app");
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new("bash")
        .arg(repo("softhsm-tests/ci-gateway.sh"))
        .arg("--dir")
        .arg(dir.path())
        .arg("alice:general")
        .env("CERTGATE_BIN", env!("CARGO_BIN_EXE_certgate"))
        .env("CERTGATE_LISTEN", format!("127.0.0.1:{https}"))
        .env("CERTGATE_ADMIN", format!("127.0.0.1:{admin}"))
        .env("CERTGATE_UPSTREAM", format!("http://127.0.0.1:{app}"))
        .output()
        .expect("run ci-gateway.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let var = |name: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| {
                panic!(
                    "{name} not printed:\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_owned()
    };
    let pid: u32 = var("CERTGATE_PID").parse().expect("a PID");
    let (status, body) = crate::fixture::curl(
        Path::new(&var("CERTGATE_CA")),
        &[
            "--cert",
            &var("CERTGATE_CERT_ALICE"),
            "--key",
            &var("CERTGATE_KEY_ALICE"),
            "-H",
            "Accept: application/json",
            &format!("{}/", var("CERTGATE_URL")),
        ],
    );
    // Stop what was started, by PID, before asserting.
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = upstream.kill();
    let _ = upstream.wait();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"x-certgate-user\":\"alice\""), "{body}");
}

#[test]
fn hsm_examples_parse() {
    for name in ["yubihsm2", "thales-luna", "aws-cloudhsm", "utimaco"] {
        let path = repo(&format!("hsm-config/examples/{name}.toml"));
        let hsm = std::fs::read_to_string(&path).expect("example exists");
        let text = format!(
            "{hsm}\n[ca]\nsubject = \"CN=x,O=y\"\npublic_url = \"https://127.0.0.1:8443\"\n"
        );
        let cfg = certgate::config::Config::parse(&text, name, Path::new("/etc/certgate"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            cfg.hsm.pin_file.is_some(),
            "{name}: the PIN comes from a file"
        );
    }
}
