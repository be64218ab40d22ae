//! Expiry notices from the running gateway: `serve` runs the scheduler, the SMTP sink (a
//! real process) receives the 30-day notice once, `/metrics` counts it, and the login
//! screen shows the renewal notice to a browser presenting the certificate.

use crate::fixture::{Db, Fixture, curl};

use crate::sink;

fn metrics(admin: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("admin listener");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_sends_the_30_day_notice_once_and_the_login_screen_shows_it() {
    let smtp = sink::Sink::start();
    // 30-day certificates are inside the 30-day notice window from the moment they exist.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
        t.push_str(&format!(
            "\n[notify]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"certgate@bank.example\"\ninterval_secs = 1\n",
            smtp.port
        ));
    }) else {
        return;
    };
    fx.init_with_users();
    let (cert, key) = fx.obtain("carol");
    let run = fx.serve_with("renewal_interstitial = true");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while smtp.messages().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no notice arrived:\n{}",
            run.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Several more passes run meanwhile (every second): still exactly one mail.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].rcpt_to, vec!["carol@example.com".to_owned()]);
    assert!(mails[0].body.contains("carol"), "{}", mails[0].body);
    let m = metrics(run.admin);
    assert!(
        m.contains(r#"certgate_notices_total{event="sent"} 1"#),
        "{m}"
    );
    // One metric per question, the outcome as a label.
    for line in [
        r#"certgate_notices_total{event="scheduled"} "#,
        r#"certgate_notices_total{event="cancelled"} 0"#,
        r#"certgate_notice_outbox{state="failed"} 0"#,
        r#"certgate_notice_outbox{state="pending"} "#,
    ] {
        assert!(m.contains(line), "{line} in {m}");
    }

    // The login screen, opened with the certificate, tells the customer to renew.
    let (status, page) = curl(
        &run.ca,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            &run.url("/certgate/?lang=en"),
        ],
    );
    assert_eq!(status, 200);
    assert!(
        page.contains("The certificate of login ID carol expires on"),
        "{page}"
    );
    let (_, page_ja) = curl(
        &run.ca,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            &run.url("/certgate/"),
        ],
    );
    assert!(page_ja.contains("有効期限が近づいています"), "{page_ja}");
    // Without a certificate there is nothing to announce.
    let (_, anonymous) = curl(&run.ca, &[&run.url("/certgate/?lang=en")]);
    assert!(
        !anonymous.contains("The certificate of login ID"),
        "{anonymous}"
    );
}

/// The app's HTML pages are preceded by a "renew now / later" page while renewal is due;
/// "later" is remembered for a day; API calls (JSON) are never interrupted.
#[test]
fn the_renewal_interstitial_asks_once_a_day() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
    }) else {
        return;
    };
    fx.init_with_users();
    let (cert, key) = fx.obtain("carol");
    let run = fx.serve_with("renewal_interstitial = true");
    let jar = fx.path("cookies.txt");
    let with_cert = |extra: &[&str]| {
        let mut args = vec![
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-b",
            jar.to_str().unwrap(),
            "-c",
            jar.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        curl(&run.ca, &args)
    };
    let page_url = run.url("/ib/home?tab=1");
    let (status, page) = with_cert(&["-H", "Accept: text/html", &page_url]);
    assert_eq!(status, 200);
    assert!(
        page.contains("id=\"renew-now\"") && !page.contains("Sample corporate banking app"),
        "{page}"
    );
    let (_, json) = with_cert(&["-H", "Accept: application/json", &page_url]);
    assert!(json.contains("\"x-certgate-user\":\"carol\""), "{json}");

    let later = run.url("/certgate/renew-later?next=%2Fib%2Fhome%3Ftab%3D1");
    let (status, _) = with_cert(&["-o", "/dev/null", &later]);
    assert_eq!(status, 303);
    let (status, page) = with_cert(&["-H", "Accept: text/html", &page_url]);
    assert_eq!(status, 200);
    assert!(
        page.contains("Sample corporate banking app") && page.contains("/ib/home"),
        "{page}"
    );
}
