//! An RSASSA-PSS CA (issue 19): `init` with an RSA key and `[hsm] rsa_signature = "pss"`.
//! The CA certificate, a client certificate, a server certificate, the CRL and an OCSP
//! response each name id-RSASSA-PSS with SHA-256, MGF1-SHA-256 and salt 32 (as OpenSSL reads
//! them) and verify with OpenSSL against the CA certificate; the client logs in through the
//! gateway (rustls) with its PSS-signed certificate; an audit checkpoint signs and verifies;
//! pkilint finds nothing at WARNING; `hsm info` names the PSS mechanism. The same key then
//! opened with `rsa_signature = "pkcs1"` signs the next CRL with PKCS#1 v1.5, and the PSS
//! checkpoint still verifies.

use std::path::Path;
use std::process::Command;

use crate::fixture::{Db, Fixture, Running, call_app, curl};
use crate::status_agreement::run_ok;
use crate::support::token;

/// An installation whose CA key is RSA-2048 signing with PSS.
fn pss_fixture() -> Option<Fixture> {
    Fixture::with_config(Db::Sqlite, |text| {
        let mut hsm = "key_label = \"certgate-ca\"\nrsa_signature = \"pss\"".to_owned();
        // openCryptoki's fixture already asks for an RSA key.
        if !text.contains("key_algorithm") {
            hsm.push_str("\nkey_algorithm = \"rsa-2048\"");
        }
        *text = text.replace("key_label = \"certgate-ca\"", &hsm);
    })
}

/// Asserts that OpenSSL's text of an object shows RSASSA-PSS with certgate's parameters
/// `times` times (a certificate or CRL names its algorithm inside and outside the signed
/// part), and no PKCS#1 v1.5 signature.
fn assert_pss(what: &str, text: &str, times: usize) {
    assert_eq!(
        text.matches("Signature Algorithm: rsassaPss").count(),
        times,
        "{what}:\n{text}"
    );
    for line in [
        "Hash Algorithm: sha256",
        "Mask Algorithm: mgf1 with sha256",
        "Salt Length: 0x20",
        "Trailer Field: 0x01 (default)",
    ] {
        assert_eq!(text.matches(line).count(), times, "{what}: {line}\n{text}");
    }
    assert!(!text.contains("sha256WithRSAEncryption"), "{what}:\n{text}");
}

fn openssl(args: &[&str], files: &[&Path]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(args).args(files);
    let (ok, out) = run_ok(&mut cmd);
    assert!(ok, "openssl {args:?} {files:?}:\n{out}");
    out
}

fn fetch_crl(fx: &Fixture, run: &Running, name: &str) -> std::path::PathBuf {
    let der = fx.path(name);
    let (status, text) = curl(
        &run.ca,
        &["-o", der.to_str().unwrap(), &run.url("/crl/1.crl")],
    );
    assert_eq!(status, 200, "{text}");
    der
}

fn lint(tool: &str, args: &[&str], file: &Path) {
    let (ok, out) = run_ok(Command::new(tool).args(args).arg(file));
    assert!(
        ok && out.trim().is_empty(),
        "{tool} {}:\n{out}",
        file.display()
    );
}

#[test]
fn a_pss_ca_signs_everything_with_pss_and_clients_accept_it() {
    let Some(fx) = pss_fixture() else {
        return;
    };
    fx.init_with_users();
    let info = fx.ok(&["hsm", "info"]);
    assert!(
        info.contains("signs with CKM_SHA256_RSA_PKCS_PSS (the token hashes)"),
        "{info}"
    );

    // The CA certificate: an ordinary RSA key, signed by itself with PSS.
    let ca = fx.ca_pem();
    let ca_text = openssl(&["x509", "-noout", "-text", "-in"], &[&ca]);
    assert!(
        ca_text.contains("Public Key Algorithm: rsaEncryption"),
        "{ca_text}"
    );
    assert_pss("CA certificate", &ca_text, 2);
    let ca_arg = ca.to_str().unwrap();
    openssl(&["verify", "-check_ss_sig", "-CAfile", ca_arg], &[&ca]);

    // A client certificate from `cert sign`.
    let (cert, key) = fx.obtain("carol");
    let cert_text = openssl(&["x509", "-noout", "-text", "-in"], &[&cert]);
    assert_pss("client certificate", &cert_text, 2);
    let verified = openssl(&["verify", "-CAfile", ca_arg], &[&cert]);
    assert!(verified.contains(": OK"), "{verified}");

    // The gateway (rustls with webpki's verifier) takes the PSS chain: the app is reached.
    let run = fx.serve();
    let server_text = openssl(
        &["x509", "-noout", "-text", "-in"],
        &[&fx.path("server.pem")],
    );
    assert_pss("server certificate", &server_text, 2);
    let (status, body) = call_app(&run, &cert, &key);
    assert_eq!(status, 200, "{body}\n{}", run.log());
    assert!(body.contains(r#""x-certgate-user":"carol""#), "{body}");

    // The CRL and an OCSP answer: PSS, and they verify against the CA certificate.
    let crl = fetch_crl(&fx, &run, "pss.crl");
    let crl_text = openssl(
        &[
            "crl", "-inform", "DER", "-noout", "-text", "-CAfile", ca_arg, "-in",
        ],
        &[&crl],
    );
    assert!(crl_text.contains("verify OK"), "{crl_text}");
    assert_pss("CRL", &crl_text, 2);
    let resp = fx.path("pss-ocsp.der");
    let (ok, ocsp) = run_ok(
        Command::new("openssl")
            .args(["ocsp", "-issuer", ca_arg, "-cert"])
            .arg(&cert)
            .args(["-url", &run.url("/ocsp"), "-CAfile", ca_arg, "-resp_text"])
            .arg("-respout")
            .arg(&resp),
    );
    assert!(ok && ocsp.contains("Response verify OK"), "{ocsp}");
    assert!(ocsp.contains(": good"), "{ocsp}");
    assert_pss("OCSP response", &ocsp, 1);

    // The PKCS#10 for an offline root (`ca csr`) is PSS-signed too.
    let csr = fx.path("pss-ca.csr");
    fx.ok(&[
        "ca",
        "csr",
        "--key-label",
        "certgate-ca",
        "--out",
        csr.to_str().unwrap(),
    ]);
    let csr_text = openssl(&["req", "-noout", "-text", "-verify", "-in"], &[&csr]);
    // OpenSSL 3.0 exits 0 on a bad request signature: the text says which.
    assert!(csr_text.contains("verify OK"), "{csr_text}");
    assert!(!csr_text.contains("verify failure"), "{csr_text}");
    assert_pss("CA request", &csr_text, 1);

    // An audit checkpoint signed by the CA key verifies.
    fx.ok(&["audit", "checkpoint"]);
    fx.ok(&["audit", "verify"]);

    if Command::new("lint_pkix_cert")
        .arg("--help")
        .output()
        .is_err()
    {
        crate::fixture::missing("pkilint (lint_pkix_cert) is not installed");
    } else {
        lint("lint_pkix_cert", &["lint", "-s", "WARNING"], &ca);
        lint("lint_pkix_cert", &["lint", "-s", "WARNING"], &cert);
        lint(
            "lint_crl",
            &["lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING"],
            &crl,
        );
        lint("lint_ocsp_response", &["lint", "-s", "WARNING"], &resp);
    }
    drop(run);

    // The padding is a setting: the same key under "pkcs1" signs the next CRL with PKCS#1
    // v1.5 (verified against the PSS-signed CA certificate), and the PSS checkpoint still
    // verifies as what it says it is.
    // (`serve` appends its listener sections: the next one writes its own.)
    let text = std::fs::read_to_string(&fx.config).unwrap();
    let base = text.split("\n[[listener]]").next().unwrap_or_default();
    std::fs::write(
        &fx.config,
        base.replace("rsa_signature = \"pss\"", "rsa_signature = \"pkcs1\""),
    )
    .unwrap();
    fx.ok(&["audit", "verify"]);
    let run = fx.serve();
    let crl = fetch_crl(&fx, &run, "pkcs1.crl");
    let crl_text = openssl(
        &[
            "crl", "-inform", "DER", "-noout", "-text", "-CAfile", ca_arg, "-in",
        ],
        &[&crl],
    );
    assert!(crl_text.contains("verify OK"), "{crl_text}");
    assert!(
        crl_text.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{crl_text}"
    );
    assert!(!crl_text.contains("rsassaPss"), "{crl_text}");
    let (status, body) = call_app(&run, &cert, &key);
    assert_eq!(status, 200, "{body}");
}

/// A `-pss` name in `key_algorithm` is refused with the spelling that works.
#[test]
fn a_pss_key_algorithm_is_refused_with_the_working_spelling() {
    if token::kind() == token::Kind::OpenCryptoki {
        return;
    }
    let Some(fx) = Fixture::with_config(Db::Sqlite, |text| {
        *text = text.replace(
            "key_label = \"certgate-ca\"",
            "key_label = \"certgate-ca\"\nkey_algorithm = \"rsa-3072-pss\"",
        );
    }) else {
        return;
    };
    let err = fx.fails(&["config", "check"]);
    assert!(
        err.contains("write key_algorithm = \"rsa-3072\" and rsa_signature = \"pss\""),
        "{err}"
    );
    let Some(fx) = Fixture::with_config(Db::Sqlite, |text| {
        *text = text.replace(
            "key_label = \"certgate-ca\"",
            "key_label = \"certgate-ca\"\nrsa_signature = \"pss-sha256\"",
        );
    }) else {
        return;
    };
    let err = fx.fails(&["config", "check"]);
    assert!(err.contains("rsa_signature"), "{err}");
    assert!(err.contains("expected `pkcs1` or `pss`"), "{err}");
}
