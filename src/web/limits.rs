//! Token-bucket limits on certgate's public surface: first issuance with a code, renewal,
//! OCSP requests with a nonce and failed code attempts, each per client address and, where
//! the request names one, per login ID. A refused request gets 429 with `Retry-After`.
//!
//! Memory is bounded: at most `max_keys` buckets are kept; past it the longest unused are
//! forgotten (a forgotten key starts again with a full bucket, which only favours a client
//! that went quiet). The audit log is bounded too: per key and window the first refusal is
//! audited (`limit.refused`), the rest are counted and written as one
//! `limit.refused_summary` when the window ends.
//!
//! Decides and counts only; which requests pass through which surface is the routes' job.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode, header};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;

use crate::audit::{Actor, Audit, Outcome};
use crate::clock::Clock;
use crate::config::{LimitsConfig, RateConfig};
use crate::lifecycle::rules::login_subject;

use super::respond::{WebResponse, json_error, text};

/// Share of the tracked keys forgotten at once when the table is full, so that a flood of
/// new keys pays for one scan per many insertions rather than one each.
const EVICT_FRACTION: usize = 10;

/// A limited part of the public surface (also the metric's `surface` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surface {
    Obtain,
    Reenroll,
    AdminChanges,
    OcspNonce,
    FailedCodes,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Obtain => "obtain",
            Self::Reenroll => "reenroll",
            Self::AdminChanges => "admin_changes",
            Self::OcspNonce => "ocsp_nonce",
            Self::FailedCodes => "failed_codes",
        }
    }

    fn rate(self, c: &LimitsConfig) -> RateConfig {
        match self {
            Self::Obtain => c.obtain,
            Self::Reenroll => c.reenroll,
            Self::AdminChanges => c.admin_changes,
            Self::OcspNonce => c.ocsp_nonce,
            Self::FailedCodes => c.failed_codes,
        }
    }
}

/// Who a request counts against: its client address and, when it names one, a login ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKeys {
    address: String,
    login: Option<String>,
    /// The caller's own address as the audit log writes it: who a refusal's entry names.
    caller: String,
}

impl ClientKeys {
    /// `remote` is the client's address as the audit log writes it. An IPv6 client counts
    /// by its /64: one host usually holds the whole prefix.
    pub fn new(remote: &str, login: Option<&str>) -> Self {
        let address = match remote.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Ok(IpAddr::V6(v6)) => format!("ip:{}", v6.to_canonical()),
            _ => format!("ip:{remote}"),
        };
        // Text no login ID can be counts under one placeholder key: the key, which an
        // audit entry names, is never the caller's raw text (and its size is bounded).
        let login = login
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("login:{}", login_subject(l)));
        Self {
            address,
            login,
            caller: remote.to_owned(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.address.as_str()).chain(self.login.as_deref())
    }
}

/// A refusal: how long until the client may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub surface: Surface,
    pub retry_after_secs: u64,
}

/// How the caller reads errors: the pages' and the API's callers read JSON (`error`,
/// `message`), EST and OCSP clients plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorBody {
    Json,
    Text,
}

impl Refused {
    /// 429 with `Retry-After`, in the body the caller reads.
    pub fn response(self, body: ErrorBody) -> WebResponse {
        const MESSAGE: &str = "too many requests; please try again later";
        let mut r = match body {
            ErrorBody::Json => json_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", MESSAGE),
            ErrorBody::Text => text(StatusCode::TOO_MANY_REQUESTS, MESSAGE),
        };
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs),
        );
        r
    }
}

/// One key's bucket and the refusals counted in its current audit window.
#[derive(Debug)]
struct Entry {
    tokens: f64,
    updated: Instant,
    window: Option<Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    /// Refusals after the audited first one.
    more: u64,
}

/// An audit entry decided under the lock and written after it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Note {
    Refused {
        surface: Surface,
        key: String,
        /// The refused caller's address.
        caller: String,
    },
    Summary {
        surface: Surface,
        key: String,
        more: u64,
    },
}

/// The buckets of every surface, bounded in size.
pub struct Limits {
    config: LimitsConfig,
    table: Mutex<HashMap<(Surface, String), Entry>>,
    audit: Option<(Audit, Arc<dyn Clock>)>,
    refused: Family<Vec<(&'static str, &'static str)>, Counter>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Limits that count and refuse but write no audit entries (see [`Self::with_audit`]).
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            config,
            table: Mutex::new(HashMap::new()),
            audit: None,
            refused: Family::default(),
        }
    }

    /// Refusals are audited (first per key and window, then summarised).
    pub fn with_audit(mut self, audit: Audit, clock: Arc<dyn Clock>) -> Self {
        self.audit = Some((audit, clock));
        self
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.config.body_read_timeout_secs)
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.config.summary_window_secs)
    }

    /// Takes one token from each key's bucket, or refuses (taking none) when any is empty.
    pub async fn admit(&self, surface: Surface, keys: &ClientKeys) -> Result<(), Refused> {
        self.gate(surface, keys, true).await
    }

    /// Refuses when any key's bucket is empty, without taking a token (failed codes: only
    /// a failure costs, see [`Self::charge`]).
    pub async fn check(&self, surface: Surface, keys: &ClientKeys) -> Result<(), Refused> {
        self.gate(surface, keys, false).await
    }

    /// Takes one token from each key's bucket, down to empty, without refusing.
    pub fn charge(&self, surface: Surface, keys: &ClientKeys) {
        let now = Instant::now();
        let rate = surface.rate(&self.config);
        let mut evicted = Vec::new();
        if let Ok(mut table) = self.table.lock() {
            for key in keys.iter() {
                let e = self.entry(&mut table, surface, key, now, rate, &mut evicted);
                e.tokens = (e.tokens - 1.0).max(0.0);
            }
        }
        self.spawn_notes(evicted);
    }

    /// A first issuance with a code, for the customers' pages and EST and for the staff
    /// obtain listener alike: limited as `obtain`, refused while the caller's failed codes
    /// are used up, and a refused code (the one 401 the issuance calls answer for a wrong,
    /// used, expired or locked code or an unknown login ID) costs a failed-code token.
    pub async fn code_attempt(
        &self,
        keys: ClientKeys,
        body: ErrorBody,
        attempt: impl std::future::Future<Output = WebResponse>,
    ) -> WebResponse {
        if let Err(refused) = self.check(Surface::FailedCodes, &keys).await {
            return refused.response(body);
        }
        if let Err(refused) = self.admit(Surface::Obtain, &keys).await {
            return refused.response(body);
        }
        let response = attempt.await;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.charge(Surface::FailedCodes, &keys);
        }
        response
    }

    async fn gate(&self, surface: Surface, keys: &ClientKeys, take: bool) -> Result<(), Refused> {
        let now = Instant::now();
        let rate = surface.rate(&self.config);
        let mut notes = Vec::new();
        let verdict = {
            let Ok(mut table) = self.table.lock() else {
                // A panic elsewhere poisoned the table: let requests through rather than
                // refusing every client.
                return Ok(());
            };
            let mut wait = 0.0f64;
            let mut empty = Vec::new();
            for key in keys.iter() {
                let e = self.entry(&mut table, surface, key, now, rate, &mut notes);
                if e.tokens < 1.0 {
                    wait = wait.max((1.0 - e.tokens) * 60.0 / f64::from(rate.per_minute));
                    empty.push(key);
                }
            }
            if empty.is_empty() {
                if take {
                    for key in keys.iter() {
                        if let Some(e) = table.get_mut(&(surface, key.to_owned())) {
                            e.tokens -= 1.0;
                        }
                    }
                }
                Ok(())
            } else {
                for key in empty {
                    if let Some(e) = table.get_mut(&(surface, key.to_owned())) {
                        notes.extend(self.note_refusal(e, surface, key, &keys.caller, now));
                    }
                }
                Err(Refused {
                    surface,
                    // Whole seconds, rounded up: a client retrying then finds a token.
                    retry_after_secs: wait.ceil().max(1.0) as u64,
                })
            }
        };
        if verdict.is_err() {
            self.refused
                .get_or_create(&vec![("surface", surface.as_str())])
                .inc();
        }
        self.write_notes(notes).await;
        verdict
    }

    /// The key's entry, refilled to `now`; created full when new (forgetting the longest
    /// unused keys first when the table is full).
    fn entry<'t>(
        &self,
        table: &'t mut HashMap<(Surface, String), Entry>,
        surface: Surface,
        key: &str,
        now: Instant,
        rate: RateConfig,
        notes: &mut Vec<Note>,
    ) -> &'t mut Entry {
        let id = (surface, key.to_owned());
        if !table.contains_key(&id) && table.len() >= self.config.max_keys {
            notes.extend(evict(table, self.config.max_keys));
        }
        let e = table.entry(id).or_insert(Entry {
            tokens: f64::from(rate.burst),
            updated: now,
            window: None,
        });
        let elapsed = now.saturating_duration_since(e.updated).as_secs_f64();
        e.tokens =
            (e.tokens + elapsed * f64::from(rate.per_minute) / 60.0).min(f64::from(rate.burst));
        e.updated = now;
        e
    }

    /// The audit entries one refusal causes: the first in a window is written, the rest
    /// counted; a window that ended with counted refusals gets its summary first.
    fn note_refusal(
        &self,
        e: &mut Entry,
        surface: Surface,
        key: &str,
        caller: &str,
        now: Instant,
    ) -> Vec<Note> {
        let mut notes = Vec::new();
        match &mut e.window {
            Some(w) if now.saturating_duration_since(w.started) < self.window() => {
                w.more += 1;
                return notes;
            }
            Some(w) if w.more > 0 => notes.push(Note::Summary {
                surface,
                key: key.to_owned(),
                more: w.more,
            }),
            _ => {}
        }
        e.window = Some(Window {
            started: now,
            more: 0,
        });
        notes.push(Note::Refused {
            surface,
            key: key.to_owned(),
            caller: caller.to_owned(),
        });
        notes
    }

    /// Summaries of the windows that have ended, which are closed. Called on a timer.
    fn due_summaries(&self, now: Instant) -> Vec<Note> {
        let window = self.window();
        let Ok(mut table) = self.table.lock() else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        for ((surface, key), e) in table.iter_mut() {
            let Some(w) = e.window else { continue };
            if now.saturating_duration_since(w.started) < window {
                continue;
            }
            e.window = None;
            if w.more > 0 {
                notes.push(Note::Summary {
                    surface: *surface,
                    key: key.clone(),
                    more: w.more,
                });
            }
        }
        notes
    }

    /// Writes the summaries of ended windows until the process ends.
    pub async fn summarise_forever(self: Arc<Self>) {
        // A quarter window: a summary is written at most a quarter window late.
        let every = (self.window() / 4).max(Duration::from_millis(250));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let notes = self.due_summaries(Instant::now());
            self.write_notes(notes).await;
        }
    }

    fn spawn_notes(&self, notes: Vec<Note>) {
        if notes.is_empty() {
            return;
        }
        // `charge` runs outside the handler's await points: the entries are written aside.
        if let Some((audit, clock)) = self.audit.clone() {
            let window = self.config.summary_window_secs;
            tokio::spawn(async move {
                for note in notes {
                    write_note(&audit, clock.as_ref(), window, note).await;
                }
            });
        }
    }

    async fn write_notes(&self, notes: Vec<Note>) {
        let Some((audit, clock)) = &self.audit else {
            return;
        };
        for note in notes {
            write_note(audit, clock.as_ref(), self.config.summary_window_secs, note).await;
        }
    }

    /// `certgate_rate_limited_total{surface}` for the gateway's `/metrics`.
    pub fn collector(self: &Arc<Self>) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(LimitsCollector(Arc::clone(self)))
    }

    /// Refusals so far on `surface` (for tests and the collector).
    pub fn refused_total(&self, surface: Surface) -> u64 {
        self.refused
            .get_or_create(&vec![("surface", surface.as_str())])
            .get()
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }
}

/// Forgets the longest unused tenth of the table; their counted refusals are summarised.
fn evict(table: &mut HashMap<(Surface, String), Entry>, max_keys: usize) -> Vec<Note> {
    let forget = (max_keys / EVICT_FRACTION).max(1);
    let mut ages: Vec<Instant> = table.values().map(|e| e.updated).collect();
    let nth = forget.min(ages.len()).saturating_sub(1);
    let (_, cutoff, _) = ages.select_nth_unstable(nth);
    let cutoff = *cutoff;
    let mut notes = Vec::new();
    let mut left = forget;
    table.retain(|(surface, key), e| {
        if left == 0 || e.updated > cutoff {
            return true;
        }
        left -= 1;
        if let Some(w) = e.window.filter(|w| w.more > 0) {
            notes.push(Note::Summary {
                surface: *surface,
                key: key.clone(),
                more: w.more,
            });
        }
        false
    });
    notes
}

async fn write_note(audit: &Audit, clock: &dyn Clock, window_secs: u64, note: Note) {
    // A refusal names its caller (unauthenticated here); a summary counts many callers.
    let (actor, action, key, detail) = match note {
        Note::Refused {
            surface,
            key,
            caller,
        } => (
            Actor::Anonymous(caller),
            "limit.refused",
            key,
            json!({ "surface": surface.as_str(), "window_secs": window_secs }),
        ),
        Note::Summary { surface, key, more } => (
            Actor::System,
            "limit.refused_summary",
            key,
            json!({ "surface": surface.as_str(), "window_secs": window_secs, "refused": more }),
        ),
    };
    // A failure is logged by `record`; the refusal stands either way.
    let _ = audit
        .record(clock.now(), &actor, action, &key, Outcome::Refused, detail)
        .await;
}

/// Exposes the refusal counters at each scrape.
#[derive(Debug)]
struct LimitsCollector(Arc<Limits>);

impl prometheus_client::collector::Collector for LimitsCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let family = &self.0.refused;
        family.encode(encoder.encode_descriptor(
            "rate_limited",
            "Requests refused by a [limits] token bucket",
            None,
            family.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32, max_keys: usize) -> Limits {
        let rate = RateConfig {
            per_minute: 1,
            burst,
        };
        Limits::new(LimitsConfig {
            obtain: rate,
            reenroll: rate,
            admin_changes: rate,
            ocsp_nonce: rate,
            failed_codes: rate,
            max_keys,
            summary_window_secs: 300,
            body_read_timeout_secs: 10,
        })
    }

    #[tokio::test]
    async fn a_bucket_refuses_past_its_burst_with_a_retry_after() {
        let l = limits(2, 100);
        let k = ClientKeys::new("192.0.2.1", None);
        assert!(l.admit(Surface::Obtain, &k).await.is_ok());
        assert!(l.admit(Surface::Obtain, &k).await.is_ok());
        let refused = l.admit(Surface::Obtain, &k).await.unwrap_err();
        // One token per minute: about a minute to wait.
        assert!((55..=60).contains(&refused.retry_after_secs), "{refused:?}");
        let r = refused.response(ErrorBody::Text);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let r = refused.response(ErrorBody::Json);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["error"], "rate_limited");
        // Another address and another surface have their own buckets.
        assert!(
            l.admit(Surface::Obtain, &ClientKeys::new("192.0.2.2", None))
                .await
                .is_ok()
        );
        assert!(l.admit(Surface::Reenroll, &k).await.is_ok());
        assert_eq!(l.refused_total(Surface::Obtain), 1);
    }

    #[tokio::test]
    async fn a_login_id_is_limited_across_addresses() {
        let l = limits(1, 100);
        let a = ClientKeys::new("192.0.2.1", Some("bob"));
        let b = ClientKeys::new("198.51.100.7", Some(" bob "));
        assert!(l.admit(Surface::Obtain, &a).await.is_ok());
        assert!(l.admit(Surface::Obtain, &b).await.is_err());
        // The refusal took nothing from the new address's bucket.
        assert!(
            l.admit(Surface::Obtain, &ClientKeys::new("198.51.100.7", None))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn check_costs_nothing_and_charge_empties() {
        let l = limits(2, 100);
        let k = ClientKeys::new("192.0.2.1", Some("bob"));
        for _ in 0..5 {
            assert!(l.check(Surface::FailedCodes, &k).await.is_ok());
        }
        l.charge(Surface::FailedCodes, &k);
        l.charge(Surface::FailedCodes, &k);
        l.charge(Surface::FailedCodes, &k);
        assert!(l.check(Surface::FailedCodes, &k).await.is_err());
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_v4_as_v4() {
        let key = |remote| ClientKeys::new(remote, None).address;
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
    }

    #[test]
    fn a_login_key_is_never_the_callers_raw_text() {
        let key = |login: &str| ClientKeys::new("192.0.2.1", Some(login)).login.unwrap();
        assert_eq!(key(" bob "), "login:bob");
        assert_eq!(key("staff:ito"), "login:staff:ito");
        let long = "é".repeat(200);
        for hostile in ["LIM\r\n\u{1b}[2J'\0x\u{202e}", "a b", long.as_str()] {
            assert_eq!(key(hostile), "login:(not a login ID)", "{hostile:?}");
        }
    }

    /// EST Basic logins full of control characters and bidi marks from 12 addresses: the
    /// audit entries name a placeholder key and the caller's address, nothing raw.
    #[tokio::test]
    async fn refusals_are_audited_by_caller_without_the_callers_text() {
        let store = crate::store::Store::connect("sqlite::memory:")
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let l = limits(1, 100).with_audit(Audit::new(store.clone()), clock);
        let hostile = "LIM\r\n\u{1b}[2J\"'\0\u{202e}gpj";
        for i in 1..=12 {
            let k = ClientKeys::new(&format!("192.0.2.{i}"), Some(hostile));
            let _ = l.admit(Surface::Obtain, &k).await;
        }
        let records = store.audit_records(1, 100).await.unwrap();
        let refused: Vec<_> = records
            .iter()
            .filter(|r| r.action == "limit.refused")
            .collect();
        assert_eq!(refused.len(), 1, "{records:?}");
        assert_eq!(refused[0].subject, "login:(not a login ID)");
        assert_eq!(refused[0].actor, "anonymous:192.0.2.2");
        for r in &records {
            let text = format!("{}{}{}", r.actor, r.subject, r.detail);
            assert!(
                !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{r:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_table_stays_bounded_under_a_flood_of_addresses() {
        let l = limits(5, 50);
        for i in 0..1000u32 {
            let k = ClientKeys::new(&std::net::Ipv4Addr::from(i).to_string(), None);
            let _ = l.admit(Surface::OcspNonce, &k).await;
        }
        assert!(l.tracked() <= 50, "{}", l.tracked());
    }

    #[test]
    fn refusals_are_noted_once_per_window_then_summarised() {
        let l = limits(1, 100);
        let start = Instant::now();
        let mut e = Entry {
            tokens: 0.0,
            updated: start,
            window: None,
        };
        let first = l.note_refusal(&mut e, Surface::Obtain, "ip:x", "x", start);
        assert_eq!(first.len(), 1);
        for _ in 0..100 {
            assert!(
                l.note_refusal(&mut e, Surface::Obtain, "ip:x", "x", start)
                    .is_empty()
            );
        }
        assert!(l.due_summaries(start).is_empty());
        let later = start + l.window();
        l.table
            .lock()
            .unwrap()
            .insert((Surface::Obtain, "ip:x".into()), e);
        let due = l.due_summaries(later);
        assert_eq!(
            due,
            vec![Note::Summary {
                surface: Surface::Obtain,
                key: "ip:x".into(),
                more: 100
            }]
        );
        // Written once: the window is closed.
        assert!(l.due_summaries(later).is_empty());
    }
}
