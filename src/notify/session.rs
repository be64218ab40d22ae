//! One SMTP conversation with the relay, kept open for many e-mails: TCP with Nagle off,
//! TLS (STARTTLS or from the first byte, rustls), AUTH PLAIN or LOGIN, and MAIL, RCPT and
//! DATA sent as one group when the relay offers PIPELINING (RFC 2920).
//!
//! Owns the wire protocol only. Which e-mails to send, and what an answer means for an
//! outbox row, is decided by `smtp` and `deliver`. The password goes onto the wire only,
//! and only inside TLS; it is never part of an error.
//!
//! Why not lettre's transport: it writes a message and its final `.` in two writes without
//! TCP_NODELAY, so every e-mail waited for a delayed ACK (about 40 ms on Linux, the 20
//! e-mails/s of issue 20), and it has no pipelining.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::ServerName;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;

use crate::config::Secret;

/// Longest reply line accepted (RFC 5321 says 512; some relays send longer texts).
const MAX_LINE: u64 = 4096;
/// Most lines of one (multi-line) reply.
const MAX_LINES: usize = 64;

/// How to reach and greet the relay.
pub(super) struct SessionConfig {
    pub host: String,
    pub port: u16,
    pub tls: SessionTls,
    /// User and password for AUTH; only used inside TLS.
    pub credentials: Option<(String, Secret)>,
    /// Limit of one connect, handshake or reply.
    pub timeout: Duration,
    /// The name given in EHLO.
    pub hello: String,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish_non_exhaustive()
    }
}

/// The TLS of a session.
pub(super) enum SessionTls {
    None,
    StartTls(Arc<rustls::ClientConfig>, ServerName<'static>),
    Wrapper(Arc<rustls::ClientConfig>, ServerName<'static>),
}

/// One reply of the relay: its code and its text (lines joined by spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// Why a session could not be opened or used further.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("{0}")]
    Io(String),
    #[error("no answer from the relay within {0:?} ({1})")]
    Timeout(Duration, &'static str),
    #[error("TLS with the relay failed: {0}")]
    Tls(String),
    /// The relay answered a command of the conversation (greeting, EHLO, STARTTLS, AUTH)
    /// with something else than expected.
    #[error("the relay answered {step} with {reply}")]
    Refused { step: &'static str, reply: Reply },
    #[error("the relay broke the protocol: {0}")]
    Protocol(String),
}

/// What happened to one e-mail in an open session.
#[derive(Debug)]
pub(super) enum Sent {
    /// The relay took responsibility for it (250 after the data).
    Accepted,
    /// The relay refused it (a 4xx or 5xx reply); the session stays usable.
    Refused(Reply),
    /// The session broke. `before_data`: the message itself was not yet written, so the
    /// relay cannot have accepted it.
    Broken {
        error: SessionError,
        before_data: bool,
    },
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the relay offered in its EHLO reply.
#[derive(Debug, Default, Clone, Copy)]
struct Offers {
    pipelining: bool,
    starttls: bool,
    eight_bit: bool,
    smtputf8: bool,
    auth_plain: bool,
    auth_login: bool,
}

/// An open, greeted (and, when configured, encrypted and authenticated) session.
pub(super) struct Session {
    io: BufReader<Box<dyn Io>>,
    offers: Offers,
    timeout: Duration,
}

impl Session {
    /// Connects, reads the greeting, says EHLO, does STARTTLS and AUTH as configured.
    pub async fn open(c: &SessionConfig) -> Result<Self, SessionError> {
        let t = c.timeout;
        let tcp = within(t, "connect", async {
            TcpStream::connect((c.host.as_str(), c.port))
                .await
                .map_err(|e| {
                    SessionError::Io(format!("cannot connect to {}:{}: {e}", c.host, c.port))
                })
        })
        .await?;
        // Commands and data go out at once, not after the previous segment's ACK.
        tcp.set_nodelay(true).map_err(io)?;
        let (io, offers) = match &c.tls {
            SessionTls::None => {
                let mut s = BufReader::new(Box::new(tcp) as Box<dyn Io>);
                let offers = greet(&mut s, t, &c.hello).await?;
                (s, offers)
            }
            SessionTls::Wrapper(cfg, name) => {
                let tls = handshake(cfg, name, tcp, t).await?;
                let mut s = BufReader::new(Box::new(tls) as Box<dyn Io>);
                let offers = greet(&mut s, t, &c.hello).await?;
                (s, offers)
            }
            SessionTls::StartTls(cfg, name) => {
                let mut plain = BufReader::new(tcp);
                let offers = greet(&mut plain, t, &c.hello).await?;
                if !offers.starttls {
                    return Err(SessionError::Protocol(
                        "the relay does not offer STARTTLS, which the configuration requires"
                            .into(),
                    ));
                }
                let reply = command(&mut plain, t, b"STARTTLS\r\n").await?;
                if reply.code != 220 {
                    return Err(SessionError::Refused {
                        step: "STARTTLS",
                        reply,
                    });
                }
                // Bytes sent before the handshake would be taken as if protected.
                if !plain.buffer().is_empty() {
                    return Err(SessionError::Protocol(
                        "data after the STARTTLS reply".into(),
                    ));
                }
                let tls = handshake(cfg, name, plain.into_inner(), t).await?;
                let mut s = BufReader::new(Box::new(tls) as Box<dyn Io>);
                // The offers before TLS are forgotten (RFC 3207).
                let reply = command(&mut s, t, ehlo(&c.hello).as_bytes()).await?;
                if !reply.ok() {
                    return Err(SessionError::Refused {
                        step: "EHLO",
                        reply,
                    });
                }
                let offers = parse_offers(&reply);
                (s, offers)
            }
        };
        let mut session = Self {
            io,
            offers,
            timeout: t,
        };
        if let Some((user, password)) = &c.credentials {
            if matches!(c.tls, SessionTls::None) {
                return Err(SessionError::Protocol(
                    "the SMTP password is only sent inside TLS".into(),
                ));
            }
            session.auth(user, password).await?;
        }
        Ok(session)
    }

    /// Whether the relay offered PIPELINING.
    pub fn pipelining(&self) -> bool {
        self.offers.pipelining
    }

    async fn auth(&mut self, user: &str, password: &Secret) -> Result<(), SessionError> {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let t = self.timeout;
        if self.offers.auth_plain {
            let mut token = Vec::with_capacity(user.len() + password.expose().len() + 2);
            token.push(0);
            token.extend_from_slice(user.as_bytes());
            token.push(0);
            token.extend_from_slice(password.expose().as_bytes());
            let line = zeroize::Zeroizing::new(format!("AUTH PLAIN {}\r\n", b64(&token)));
            zeroize::Zeroize::zeroize(&mut token);
            let reply = command(&mut self.io, t, line.as_bytes()).await?;
            return expect(reply, 235, "AUTH");
        }
        if self.offers.auth_login {
            let reply = command(&mut self.io, t, b"AUTH LOGIN\r\n").await?;
            expect(reply, 334, "AUTH")?;
            let reply = command(
                &mut self.io,
                t,
                format!("{}\r\n", b64(user.as_bytes())).as_bytes(),
            )
            .await?;
            expect(reply, 334, "AUTH")?;
            let line =
                zeroize::Zeroizing::new(format!("{}\r\n", b64(password.expose().as_bytes())));
            let reply = command(&mut self.io, t, line.as_bytes()).await?;
            return expect(reply, 235, "AUTH");
        }
        Err(SessionError::Protocol(
            "the relay offers neither AUTH PLAIN nor AUTH LOGIN".into(),
        ))
    }

    /// Sends one message (`data`: the formatted e-mail, CRLF lines) from `from` to `to`.
    /// With PIPELINING, MAIL, RCPT and DATA go out in one write; the message and its final
    /// `.` always go out in one write.
    pub async fn send(&mut self, from: &str, to: &str, data: &[u8]) -> Sent {
        let mut params = String::new();
        if !data.is_ascii() {
            if !self.offers.eight_bit {
                return Sent::Refused(Reply {
                    code: 554,
                    text: "the relay does not offer 8BITMIME, which the e-mail needs".into(),
                });
            }
            params.push_str(" BODY=8BITMIME");
        }
        if !from.is_ascii() || !to.is_ascii() {
            if !self.offers.smtputf8 {
                return Sent::Refused(Reply {
                    code: 553,
                    text: "the relay does not offer SMTPUTF8, which the address needs".into(),
                });
            }
            params.push_str(" SMTPUTF8");
        }
        let mail = format!("MAIL FROM:<{from}>{params}\r\n");
        let rcpt = format!("RCPT TO:<{to}>\r\n");
        match self.envelope(&mail, &rcpt).await {
            Ok(Some(refused)) => return Sent::Refused(refused),
            Ok(None) => (),
            Err(error) => {
                return Sent::Broken {
                    error,
                    before_data: true,
                };
            }
        }
        let body = stuffed(data);
        let t = self.timeout;
        match command(&mut self.io, t, &body).await {
            Ok(reply) if reply.ok() => Sent::Accepted,
            Ok(reply) => Sent::Refused(reply),
            Err(error) => Sent::Broken {
                error,
                before_data: false,
            },
        }
    }

    /// MAIL, RCPT, DATA. `Some(reply)`: the relay refused one of them, and the transaction
    /// was reset; `None`: the relay waits for the data (354).
    async fn envelope(&mut self, mail: &str, rcpt: &str) -> Result<Option<Reply>, SessionError> {
        let t = self.timeout;
        if self.offers.pipelining {
            let group = format!("{mail}{rcpt}DATA\r\n");
            write(&mut self.io, t, group.as_bytes()).await?;
            let m = read_reply(&mut self.io, t).await?;
            let r = read_reply(&mut self.io, t).await?;
            let d = read_reply(&mut self.io, t).await?;
            let refused = [&m, &r].into_iter().find(|x| !x.ok()).cloned();
            match (refused, d.code == 354) {
                (None, true) => Ok(None),
                (Some(first), true) => {
                    // DATA was accepted though the envelope was not: send an empty message
                    // the relay has no recipient for, then start over.
                    let _ = command(&mut self.io, t, b".\r\n").await?;
                    self.rset().await?;
                    Ok(Some(first))
                }
                (refused, false) => {
                    self.rset().await?;
                    Ok(Some(refused.unwrap_or(d)))
                }
            }
        } else {
            for step in [mail.as_bytes(), rcpt.as_bytes()] {
                let reply = command(&mut self.io, t, step).await?;
                if !reply.ok() {
                    self.rset().await?;
                    return Ok(Some(reply));
                }
            }
            let reply = command(&mut self.io, t, b"DATA\r\n").await?;
            if reply.code != 354 {
                self.rset().await?;
                return Ok(Some(reply));
            }
            Ok(None)
        }
    }

    async fn rset(&mut self) -> Result<(), SessionError> {
        let reply = command(&mut self.io, self.timeout, b"RSET\r\n").await?;
        expect(reply, 250, "RSET")
    }

    /// Says QUIT and closes, without waiting long: everything was recorded already.
    pub async fn quit(mut self) {
        let t = self.timeout.min(Duration::from_secs(2));
        let _ = command(&mut self.io, t, b"QUIT\r\n").await;
        let _ = self.io.get_mut().shutdown().await;
    }
}

fn io(e: std::io::Error) -> SessionError {
    SessionError::Io(format!("connection to the relay: {e}"))
}

async fn within<T>(
    t: Duration,
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    tokio::time::timeout(t, f)
        .await
        .map_err(|_| SessionError::Timeout(t, what))?
}

async fn handshake(
    cfg: &Arc<rustls::ClientConfig>,
    name: &ServerName<'static>,
    tcp: TcpStream,
    t: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SessionError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(cfg));
    within(t, "TLS handshake", async {
        connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| SessionError::Tls(error_text(&e)))
    })
    .await
}

/// The error with its causes on one line (rustls puts the useful part in the source).
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
    text
}

fn ehlo(hello: &str) -> String {
    format!("EHLO {hello}\r\n")
}

/// Reads the greeting (220) and says EHLO; returns what the relay offers.
async fn greet<S: AsyncBufRead + AsyncWrite + Unpin>(
    s: &mut S,
    t: Duration,
    hello: &str,
) -> Result<Offers, SessionError> {
    let greeting = read_reply(s, t).await?;
    if greeting.code != 220 {
        return Err(SessionError::Refused {
            step: "the connection",
            reply: greeting,
        });
    }
    let reply = command(s, t, ehlo(hello).as_bytes()).await?;
    if !reply.ok() {
        return Err(SessionError::Refused {
            step: "EHLO",
            reply,
        });
    }
    Ok(parse_offers(&reply))
}

fn parse_offers(reply: &Reply) -> Offers {
    let mut o = Offers::default();
    // The text holds the lines joined by '\n'; the first is the relay's name.
    for line in reply.text.split('\n').skip(1) {
        let mut words = line.split_ascii_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        match keyword.to_ascii_uppercase().as_str() {
            "PIPELINING" => o.pipelining = true,
            "STARTTLS" => o.starttls = true,
            "8BITMIME" => o.eight_bit = true,
            "SMTPUTF8" => o.smtputf8 = true,
            "AUTH" => {
                for m in words {
                    match m.to_ascii_uppercase().as_str() {
                        "PLAIN" => o.auth_plain = true,
                        "LOGIN" => o.auth_login = true,
                        _ => (),
                    }
                }
            }
            _ => (),
        }
    }
    o
}

fn expect(reply: Reply, code: u16, step: &'static str) -> Result<(), SessionError> {
    if reply.code == code {
        Ok(())
    } else {
        Err(SessionError::Refused { step, reply })
    }
}

async fn write<S: AsyncWrite + Unpin>(
    s: &mut S,
    t: Duration,
    bytes: &[u8],
) -> Result<(), SessionError> {
    within(t, "write", async {
        s.write_all(bytes).await.map_err(io)?;
        s.flush().await.map_err(io)
    })
    .await
}

async fn command<S: AsyncBufRead + AsyncWrite + Unpin>(
    s: &mut S,
    t: Duration,
    bytes: &[u8],
) -> Result<Reply, SessionError> {
    write(s, t, bytes).await?;
    read_reply(s, t).await
}

/// Reads one reply, single or multi-line (`250-…` lines, then `250 …`).
async fn read_reply<S: AsyncBufRead + Unpin>(
    s: &mut S,
    t: Duration,
) -> Result<Reply, SessionError> {
    within(t, "reply", async {
        let mut code = None;
        let mut lines: Vec<String> = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = (&mut *s)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await
                .map_err(io)?;
            if n == 0 {
                return Err(SessionError::Io("the relay closed the connection".into()));
            }
            let (this, last, text) = parse_line(&line)?;
            if code.is_some_and(|c| c != this) {
                return Err(SessionError::Protocol(
                    "reply lines with different codes".into(),
                ));
            }
            code = Some(this);
            lines.push(text);
            if last {
                return Ok(Reply {
                    code: this,
                    text: lines.join("\n"),
                });
            }
            if lines.len() >= MAX_LINES {
                return Err(SessionError::Protocol("reply too long".into()));
            }
        }
    })
    .await
}

/// `250-text` / `250 text` / `250` → (code, is the last line, text).
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), SessionError> {
    let bad = || {
        SessionError::Protocol(format!(
            "not a reply line: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(40)])
        ))
    };
    let line = line.strip_suffix(b"\n").ok_or_else(bad)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.get(..3).ok_or_else(bad)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(bad());
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(bad()),
    };
    // The relay's text goes into logs and `notify list`: printable, one line.
    let text = String::from_utf8_lossy(text).replace(|c: char| c.is_control(), " ");
    Ok((code, last, text))
}

/// The message as DATA carries it: lines starting with `.` doubled, CRLF at the end, then
/// the final `.` line.
fn stuffed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 8);
    let mut at_line_start = true;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_line(b"250-PIPELINING\r\n").unwrap(),
            (250, false, "PIPELINING".into())
        );
        assert_eq!(parse_line(b"354 go\r\n").unwrap(), (354, true, "go".into()));
        assert_eq!(parse_line(b"250\r\n").unwrap(), (250, true, String::new()));
        for bad in [
            &b"25\r\n"[..],
            b"abc ok\r\n",
            b"250xok\r\n",
            b"250 no newline",
            b"650 x\r\n",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn offers_from_ehlo() {
        let o = parse_offers(&Reply {
            code: 250,
            text: "relay greets\nPIPELINING\nauth login Plain\n8BITMIME".into(),
        });
        assert!(o.pipelining && o.auth_plain && o.auth_login && o.eight_bit);
        assert!(!o.starttls && !o.smtputf8);
        // The greeting line is not an offer.
        let o = parse_offers(&Reply {
            code: 250,
            text: "PIPELINING".into(),
        });
        assert!(!o.pipelining);
    }

    #[test]
    fn data_is_dot_stuffed_and_ended() {
        assert_eq!(
            stuffed(b"a\r\n.b\r\n..\r\n"),
            b"a\r\n..b\r\n...\r\n.\r\n".to_vec()
        );
        assert_eq!(stuffed(b".x"), b"..x\r\n.\r\n".to_vec());
        assert_eq!(stuffed(b""), b"\r\n.\r\n".to_vec());
    }
}
