//! SMTP delivery: the relay URL, TLS mode, credentials, the e-mail as it goes on the wire
//! (built with lettre's message builder, with a Message-ID fixed per outbox row), one kept
//! session per pass, and the classification of every outcome as sent, temporary or permanent.
//!
//! Owns the conversation with the relay (the wire protocol itself is `session`'s). It must
//! not touch the store: the caller records the outcome. The password appears in no log or
//! error text.

use std::sync::Arc;
use std::time::Duration;

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::NotifyError;
use super::session::{Sent, Session, SessionConfig, SessionError, SessionTls};
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

/// The name given in EHLO: an address literal, as RFC 5321 allows for a client without an
/// obvious name (what lettre sent before, so relays see no change).
const HELLO: &str = "[127.0.0.1]";

/// The configured relay and sender.
#[derive(Clone)]
pub struct Mailer {
    session: Arc<SessionConfig>,
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

/// One e-mail of the outbox, as the mailer needs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Letter<'a> {
    /// The outbox row id: with the serial, it names the e-mail for good.
    pub id: i64,
    pub serial: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

impl Mailer {
    /// Builds the relay settings from `[notify]`; reads the password and the extra roots now.
    pub fn from_config(cfg: &Config, n: &NotifyConfig) -> Result<Self, NotifyError> {
        let relay = RelayUrl::parse(&n.smtp_url)?;
        let from: Mailbox = n.from.parse().map_err(|e| {
            NotifyError::Config(format!("from address {:?} cannot be used: {e}", n.from))
        })?;
        let tls = match relay.tls {
            TlsMode::None => SessionTls::None,
            mode => {
                let ca_file = n.ca_file.as_ref().map(|p| cfg.resolve(p));
                let config = tls_config(ca_file.as_deref())?;
                let name = ServerName::try_from(relay.host.clone()).map_err(|_| {
                    NotifyError::Config(format!(
                        "smtp_url: {:?} is not a TLS server name",
                        relay.host
                    ))
                })?;
                if mode == TlsMode::StartTls {
                    SessionTls::StartTls(config, name)
                } else {
                    SessionTls::Wrapper(config, name)
                }
            }
        };
        let credentials = match (&n.user, n.password_source().map_err(config)?) {
            (Some(user), Some(source)) => {
                if relay.tls == TlsMode::None {
                    return Err(NotifyError::Config(
                        "the SMTP password is only sent inside TLS: use smtps:// or ?tls=starttls"
                            .into(),
                    ));
                }
                let password = source.read("SMTP password").map_err(NotifyError::Secret)?;
                Some((user.clone(), password))
            }
            _ => None,
        };
        let session = SessionConfig {
            host: relay.host.clone(),
            port: relay.port,
            tls,
            credentials,
            timeout: Duration::from_secs(n.timeout_secs),
            hello: HELLO.to_owned(),
        };
        Ok(Self {
            session: Arc::new(session),
            from,
            relay,
        })
    }

    /// The relay this mailer talks to.
    pub fn relay(&self) -> &RelayUrl {
        &self.relay
    }

    /// A connection for one pass; nothing is opened before the first e-mail.
    pub(super) fn outgoing(&self) -> Outgoing<'_> {
        Outgoing {
            mailer: self,
            session: None,
        }
    }

    /// The e-mail as it goes on the wire: (sender, recipient, formatted message).
    fn build(&self, letter: &Letter<'_>) -> Result<(String, String, Vec<u8>), SendOutcome> {
        let to: Mailbox = letter
            .to
            .parse()
            .map_err(|e| SendOutcome::Permanent(format!("recipient address: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to.clone())
            .subject(letter.subject)
            .message_id(Some(message_id(
                letter.id,
                letter.serial,
                self.from.email.domain(),
            )))
            .header(ContentType::TEXT_PLAIN)
            .body(letter.body.to_owned())
            .map_err(|e| SendOutcome::Permanent(format!("cannot build the e-mail: {e}")))?;
        Ok((
            self.from.email.to_string(),
            to.email.to_string(),
            message.formatted(),
        ))
    }
}

/// The Message-ID of outbox row `id` (certificate `serial`): the same at every attempt, so
/// that a copy sent again after a crash is recognisable as the same e-mail.
pub fn message_id(id: i64, serial: &str, domain: &str) -> String {
    format!("<notice.{id}.{serial}@{domain}>")
}

/// The relay's TLS trust: the system's roots plus those of `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, NotifyError> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a system root certificate could not be read");
    }
    let (_added, _skipped) = roots.add_parsable_certificates(found.certs);
    if let Some(path) = ca_file {
        let name = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| NotifyError::Template(name.clone(), e))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NotifyError::Transport(format!("{name}: {e}")))?;
        if certs.is_empty() {
            return Err(NotifyError::Transport(format!("{name}: no certificate")));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| NotifyError::Transport(format!("{name}: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| NotifyError::Transport(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The relay connection of one pass: opened at the first e-mail, kept for the next ones,
/// opened again once when the relay closed it.
pub(super) struct Outgoing<'a> {
    mailer: &'a Mailer,
    session: Option<Session>,
}

impl Outgoing<'_> {
    /// Sends one e-mail and classifies the outcome.
    pub async fn send(&mut self, letter: &Letter<'_>) -> SendOutcome {
        let (from, to, data) = match self.mailer.build(letter) {
            Ok(parts) => parts,
            Err(outcome) => return outcome,
        };
        // A kept session may have been closed by the relay meanwhile (idle limit, messages
        // per connection): when that shows before the message was written, one new session
        // is tried at once.
        for fresh in [self.session.is_none(), true] {
            if fresh {
                self.session = None;
            }
            if self.session.is_none() {
                match Session::open(&self.mailer.session).await {
                    Ok(s) => {
                        tracing::debug!(pipelining = s.pipelining(), "SMTP session opened");
                        self.session = Some(s);
                    }
                    Err(e) => return unreachable(&e),
                }
            }
            let Some(session) = self.session.as_mut() else {
                continue;
            };
            match session.send(&from, &to, &data).await {
                Sent::Accepted => return SendOutcome::Sent,
                Sent::Refused(reply) => return classify_reply(reply.code, &reply.to_string()),
                Sent::Broken { error, before_data } => {
                    self.session = None;
                    if !before_data || fresh {
                        // Maybe accepted, maybe not: tried again later (a rare duplicate
                        // rather than a lost notice).
                        return SendOutcome::Unreachable(error.to_string());
                    }
                }
            }
        }
        SendOutcome::Unreachable("the relay closed the session".into())
    }

    /// Ends the session politely.
    pub async fn close(self) {
        if let Some(s) = self.session {
            s.quit().await;
        }
    }
}

fn config(e: crate::config::ConfigError) -> NotifyError {
    NotifyError::Config(e.to_string())
}

/// A session that could not be opened (refused, timeout, TLS, a refused AUTH): the relay's
/// or its configuration's fault, not this e-mail's, so fixing it loses nothing.
fn unreachable(e: &SessionError) -> SendOutcome {
    SendOutcome::Unreachable(e.to_string())
}

/// 5xx answers to an e-mail are permanent, 4xx may pass later; 53x (authentication) is
/// about the relay's configuration and waits like an unreachable relay.
fn classify_reply(code: u16, text: &str) -> SendOutcome {
    let text = format!("the relay answered {text}");
    match code {
        530..=539 => SendOutcome::Unreachable(text),
        500..=599 => SendOutcome::Permanent(text),
        400..=499 => SendOutcome::Deferred(text),
        _ => SendOutcome::Unreachable(text),
    }
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
