//! SMTP delivery through lettre (tokio, rustls on aws-lc-rs): the relay URL, TLS mode,
//! credentials, and the classification of every outcome as sent, temporary or permanent.
//!
//! Owns the conversation with the relay. It must not touch the store: the caller records
//! the outcome. The password is handed to lettre and appears in no log or error text.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncTransport, Message, Tokio1Executor};

use super::NotifyError;
use crate::config::{Config, NotifyConfig};

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP: only for a relay on a trusted local network.
    None,
    /// Plain connection upgraded with STARTTLS; refused when the relay does not offer it.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Wrapper,
}

/// A parsed `smtp_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
}

impl RelayUrl {
    /// Parses `smtp://host[:port][?tls=starttls|none]` or `smtps://host[:port]`. Credentials
    /// in the URL are refused: the user belongs in the config, the password in a secret.
    pub fn parse(url: &str) -> Result<Self, NotifyError> {
        // The URL itself is not echoed: it might hold a password by mistake.
        let bad = |why: &str| NotifyError::Config(format!("smtp_url: {why}"));
        let (wrapper, rest) = if let Some(r) = url.strip_prefix("smtps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("smtp://") {
            (false, r)
        } else {
            return Err(bad("must start with smtp:// or smtps://"));
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        if authority.contains('@') {
            return Err(bad(
                "must not hold credentials; set user and password_env or password_file",
            ));
        }
        let mut tls = if wrapper {
            TlsMode::Wrapper
        } else {
            TlsMode::None
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("tls", "starttls" | "required")) if !wrapper => tls = TlsMode::StartTls,
                Some(("tls", "none")) if !wrapper => tls = TlsMode::None,
                _ => {
                    return Err(bad(
                        "the only option is tls=starttls (or tls=none) on smtp://",
                    ));
                }
            }
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        let port = port.unwrap_or(match tls {
            TlsMode::None => 25,
            TlsMode::StartTls => 587,
            TlsMode::Wrapper => 465,
        });
        Ok(Self { host, port, tls })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host.to_owned(), port))
}

/// What happened to one e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The relay accepted it.
    Sent,
    /// The relay answered 4xx for this e-mail: try it again later.
    Deferred(String),
    /// The relay could not be talked to (refused, timeout, TLS failure): try again later,
    /// and do not try the other e-mails of this pass either.
    Unreachable(String),
    /// Trying again will not help: 5xx, an address that cannot be used.
    Permanent(String),
}

/// The configured relay and sender.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    relay: RelayUrl,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("relay", &self.relay)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Builds the transport from `[notify]`; reads the password and the extra roots now.
    pub fn from_config(cfg: &Config, n: &NotifyConfig) -> Result<Self, NotifyError> {
        let relay = RelayUrl::parse(&n.smtp_url)?;
        let from: Mailbox = n.from.parse().map_err(|e| {
            NotifyError::Config(format!("from address {:?} cannot be used: {e}", n.from))
        })?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(relay.host.as_str())
            .port(relay.port)
            .timeout(Some(Duration::from_secs(n.timeout_secs)));
        if relay.tls != TlsMode::None {
            let mut params = TlsParameters::builder(relay.host.clone());
            if let Some(path) = &n.ca_file {
                let path = cfg.resolve(path);
                let pem = std::fs::read(&path)
                    .map_err(|e| NotifyError::Template(path.display().to_string(), e))?;
                let roots = Certificate::from_pem(&pem)
                    .map_err(|e| NotifyError::Transport(format!("{}: {e}", path.display())))?;
                params = params.add_root_certificate(roots);
            }
            let params = params
                .build_rustls()
                .map_err(|e| NotifyError::Transport(e.to_string()))?;
            b = b.tls(match relay.tls {
                TlsMode::StartTls => Tls::Required(params),
                _ => Tls::Wrapper(params),
            });
        }
        if let (Some(user), Some(source)) = (&n.user, n.password_source().map_err(config)?) {
            let password = source.read("SMTP password").map_err(NotifyError::Secret)?;
            b = b.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Self {
            transport: b.build(),
            from,
            relay,
        })
    }

    /// The relay this mailer talks to.
    pub fn relay(&self) -> &RelayUrl {
        &self.relay
    }

    /// Sends one plain-text e-mail and classifies the outcome.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> SendOutcome {
        let to: Mailbox = match to.parse() {
            Ok(m) => m,
            Err(e) => return SendOutcome::Permanent(format!("recipient address: {e}")),
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned());
        let message = match message {
            Ok(m) => m,
            Err(e) => return SendOutcome::Permanent(format!("cannot build the e-mail: {e}")),
        };
        match self.transport.send(message).await {
            Ok(_) => SendOutcome::Sent,
            Err(e) => classify(&e),
        }
    }
}

fn config(e: crate::config::ConfigError) -> NotifyError {
    NotifyError::Config(e.to_string())
}

/// 5xx answers are permanent; 4xx answers and failures to talk at all may pass later.
/// Authentication answers (53x) concern the relay's configuration, not this e-mail: they
/// are treated like an unreachable relay, so that fixing the password loses nothing.
fn classify(e: &lettre::transport::smtp::Error) -> SendOutcome {
    let text = error_text(e);
    let code = e.status().map(u16::from);
    if code.is_some_and(|c| (530..540).contains(&c)) {
        SendOutcome::Unreachable(text)
    } else if e.is_permanent() {
        SendOutcome::Permanent(text)
    } else if e.is_transient() {
        SendOutcome::Deferred(text)
    } else {
        SendOutcome::Unreachable(text)
    }
}

/// The error with its causes, on one line.
fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls() {
        let u = RelayUrl::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("127.0.0.1", 2525, TlsMode::None)
        );
        let u = RelayUrl::parse("smtp://mail.bank.example?tls=starttls").unwrap();
        assert_eq!((u.port, u.tls), (587, TlsMode::StartTls));
        let u = RelayUrl::parse("smtps://mail.bank.example").unwrap();
        assert_eq!((u.port, u.tls), (465, TlsMode::Wrapper));
        let u = RelayUrl::parse("smtp://[::1]:25/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 25));
    }

    #[test]
    fn relay_urls_refused() {
        for bad in [
            "http://x",
            "smtp://user:pw@x:25",
            "smtp://x:notaport",
            "smtp://x:0",
            "smtps://x?tls=none",
            "smtp://x?foo=bar",
            "smtp://",
        ] {
            let err = RelayUrl::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("pw"), "{err}");
            assert!(err.contains("smtp_url"), "{bad}: {err}");
        }
    }
}
