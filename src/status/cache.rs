//! The in-process cache of certificate status, shared by every connection.
//!
//! It owns freshness: when to read the store again, when a change announcement drops an
//! entry, when to stop trusting an old answer (fail closed). The decision itself is
//! [`decide`], applied on every lookup so expiry needs no invalidation. It must not block
//! the TLS handshake: [`StatusCache::known_revoked`] only looks at memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;

use super::{Audience, Refusal, StatusSource, Verdict, decide_for, decide_for_renewal};
use crate::clock::Clock;
use crate::store::{CertChange, CertStatus, CertStatusView};
pub use crate::telemetry::CacheOutcome;
use crate::telemetry::error_chain;

/// How long answers are trusted.
#[derive(Debug, Clone, Copy)]
pub struct StatusCacheSettings {
    /// Entries older than this are read again from the store.
    pub max_age: Duration,
    /// When the store cannot answer, entries up to this age are still used; older → refuse.
    pub fail_closed_after: Duration,
    /// Seconds a superseded certificate still passes after `superseded_at`.
    pub overlap_secs: i64,
}

/// How often entries too old to be used are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    view: Option<Arc<CertStatusView>>,
    fetched: Instant,
    first_use_sent: bool,
}

/// Serial → the store's view, with freshness rules. Cheap to share behind an `Arc`.
pub struct StatusCache {
    source: Arc<dyn StatusSource>,
    clock: Arc<dyn Clock>,
    settings: StatusCacheSettings,
    entries: Mutex<HashMap<String, Entry>>,
    // Drained before every lookup, so a change announced before a request started is
    // applied to that request even if the background task has not run yet.
    pending: Mutex<broadcast::Receiver<CertChange>>,
    // Bumped on every invalidation so a read that started before it is not stored after it.
    generation: AtomicU64,
}

impl std::fmt::Debug for StatusCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusCache")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl StatusCache {
    /// A cache over `source`. Call [`StatusCache::spawn_invalidator`] to follow changes.
    pub fn new(
        source: Arc<dyn StatusSource>,
        clock: Arc<dyn Clock>,
        settings: StatusCacheSettings,
    ) -> Arc<Self> {
        let pending = Mutex::new(source.changes());
        Arc::new(Self {
            pending,
            source,
            clock,
            settings,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// Seconds a superseded certificate still passes (the rule's `overlap_secs`).
    pub fn overlap_secs(&self) -> i64 {
        self.settings.overlap_secs
    }

    /// The clock the decisions are made by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The store view behind this cache.
    pub fn source(&self) -> &Arc<dyn StatusSource> {
        &self.source
    }

    /// Decides on `serial` now for a way in that serves customers: [`Self::check_for`]
    /// with [`Audience::Customer`].
    pub async fn check(
        self: &Arc<Self>,
        serial: &str,
    ) -> (Verdict, Option<Arc<CertStatusView>>, CacheOutcome) {
        self.check_for(Audience::Customer, serial).await
    }

    /// Decides on `serial` now for a way in that serves `audience` ([`decide_for`]): from
    /// memory when fresh, else from the store. Returns the verdict, the view it rests on
    /// (when known) and where the answer came from.
    pub async fn check_for(
        self: &Arc<Self>,
        audience: Audience,
        serial: &str,
    ) -> (Verdict, Option<Arc<CertStatusView>>, CacheOutcome) {
        let (view, outcome) = match self.lookup(serial).await {
            Ok(found) => found,
            Err(outcome) => return (Verdict::Refuse(Refusal::StatusUnavailable), None, outcome),
        };
        let verdict = decide_for(
            audience,
            view.as_deref(),
            self.clock.now(),
            self.settings.overlap_secs,
        );
        if verdict == Verdict::Allow {
            self.note_first_use(serial, view.as_deref());
        }
        (verdict, view, outcome)
    }

    /// As [`Self::check_for`], for the renewal paths only: a certificate expired less than
    /// `grace_secs` ago passes when still current ([`decide_for_renewal`]). Its use is not
    /// recorded as a first use.
    pub async fn decide_for_renewal(
        self: &Arc<Self>,
        audience: Audience,
        serial: &str,
        grace_secs: i64,
    ) -> (Verdict, Option<Arc<CertStatusView>>, CacheOutcome) {
        let (view, outcome) = match self.lookup(serial).await {
            Ok(found) => found,
            Err(outcome) => return (Verdict::Refuse(Refusal::StatusUnavailable), None, outcome),
        };
        let verdict = decide_for_renewal(
            audience,
            view.as_deref(),
            self.clock.now(),
            self.settings.overlap_secs,
            grace_secs,
        );
        (verdict, view, outcome)
    }

    /// The store's view of `serial`: from memory when fresh, else from the store, else (the
    /// store down) a cached one still young enough; `Err` when none may be used.
    async fn lookup(
        &self,
        serial: &str,
    ) -> Result<(Option<Arc<CertStatusView>>, CacheOutcome), CacheOutcome> {
        self.apply_pending();
        let fresh = {
            let entries = self.lock();
            entries
                .get(serial)
                .filter(|e| e.fetched.elapsed() < self.settings.max_age)
                .map(|e| e.view.clone())
        };
        let (view, outcome) = match fresh {
            Some(view) => (view, CacheOutcome::Hit),
            None => match self.fetch(serial).await {
                Ok(view) => (view, CacheOutcome::Miss),
                Err(()) => {
                    let usable = {
                        let entries = self.lock();
                        entries
                            .get(serial)
                            .filter(|e| e.fetched.elapsed() < self.settings.fail_closed_after)
                            .map(|e| e.view.clone())
                    };
                    match usable {
                        Some(view) => (view, CacheOutcome::Stale),
                        None => return Err(CacheOutcome::Stale),
                    }
                }
            },
        };
        Ok((view, outcome))
    }

    /// Whether the cache knows `serial` to be revoked. Memory only: called inside the TLS
    /// handshake, which must not wait for the store. A revocation is final, so any age counts.
    pub fn known_revoked(&self, serial: &str) -> bool {
        self.apply_pending();
        self.lock().get(serial).is_some_and(|e| {
            e.view
                .as_ref()
                .is_some_and(|v| v.cert.status == CertStatus::Revoked)
        })
    }

    /// Applies the change announcements received since the last call (memory only).
    fn apply_pending(&self) {
        let mut rx = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match rx.try_recv() {
                Ok(change) => self.invalidate(&change.serial),
                Err(TryRecvError::Lagged(_)) => self.invalidate(CertChange::RESYNC),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    /// Drops one entry (or all, for `"*"`).
    pub fn invalidate(&self, serial: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut entries = self.lock();
        if serial == CertChange::RESYNC {
            entries.clear();
        } else {
            entries.remove(serial);
        }
    }

    /// Drops the entries fetched `fail_closed_after` or longer before `now`: no lookup can
    /// use them any more, not even while the store is down. Without this the cache would
    /// hold every certificate ever presented since start. Returns how many were dropped.
    ///
    /// A dropped revoked entry only means the handshake no longer refuses that certificate
    /// early; the per-request check reads the store and still refuses it.
    pub fn prune(&self, now: Instant) -> usize {
        let max = self.settings.fail_closed_after;
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| now.saturating_duration_since(e.fetched) < max);
        let dropped = before - entries.len();
        if entries.capacity() > 2 * entries.len().max(64) {
            // A burst of distinct certificates has passed: give its memory back.
            entries.shrink_to_fit();
        }
        dropped
    }

    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Follows the store's change announcements until the channel closes: each change drops
    /// the entry at once, then reads it again so the handshake learns of a revocation.
    /// Every [`PRUNE_EVERY`] it also drops entries too old to be used ([`Self::prune`]).
    pub fn spawn_invalidator(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let cache = Arc::clone(self);
        let mut rx = self.source.changes();
        tokio::spawn(async move {
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Pruning goes on after the announcements end.
            let mut following = true;
            loop {
                let received = tokio::select! {
                    r = rx.recv(), if following => r,
                    _ = prune.tick() => {
                        let dropped = cache.prune(Instant::now());
                        if dropped > 0 {
                            tracing::debug!(dropped, "old certificate status entries dropped");
                        }
                        continue;
                    }
                };
                match received {
                    Ok(change) => {
                        tracing::debug!(serial = %change.serial, "certificate status changed");
                        cache.invalidate(&change.serial);
                        if !change.is_resync() {
                            let c = Arc::clone(&cache);
                            tokio::spawn(async move {
                                let _ = c.fetch(&change.serial).await;
                            });
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "missed status changes; dropping the cache");
                        cache.invalidate(CertChange::RESYNC);
                    }
                    Err(RecvError::Closed) => {
                        tracing::warn!("status change announcements ended; relying on max age");
                        following = false;
                    }
                }
            }
        })
    }

    async fn fetch(&self, serial: &str) -> Result<Option<Arc<CertStatusView>>, ()> {
        let generation = self.generation.load(Ordering::SeqCst);
        match self.source.status(serial).await {
            Ok(view) => {
                let view = view.map(Arc::new);
                let mut entries = self.lock();
                if self.generation.load(Ordering::SeqCst) == generation {
                    let first_use_sent = entries.get(serial).is_some_and(|e| e.first_use_sent);
                    entries.insert(
                        serial.to_string(),
                        Entry {
                            view: view.clone(),
                            fetched: Instant::now(),
                            first_use_sent,
                        },
                    );
                }
                Ok(view)
            }
            Err(e) => {
                tracing::warn!(serial, error = %error_chain(&e), "certificate status unavailable");
                Err(())
            }
        }
    }

    fn note_first_use(self: &Arc<Self>, serial: &str, view: Option<&CertStatusView>) {
        if view.is_none_or(|v| v.cert.first_used_at.is_some()) {
            return;
        }
        {
            let mut entries = self.lock();
            match entries.get_mut(serial) {
                Some(e) if !e.first_use_sent => e.first_use_sent = true,
                _ => return,
            }
        }
        let cache = Arc::clone(self);
        let serial = serial.to_string();
        tokio::spawn(async move {
            let now = cache.clock.now();
            if let Err(e) = cache.source.mark_first_used(&serial, now).await {
                tracing::warn!(serial, error = %error_chain(&e), "cannot record first use");
                if let Some(e) = cache.lock().get_mut(&serial) {
                    e.first_use_sent = false;
                }
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock cannot leave a half-written entry: use the map.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::status::MemorySource;

    fn view(serial: &str, status: CertStatus) -> CertStatusView {
        crate::status::test_view(serial, status)
    }

    fn cache_over(source: &Arc<MemorySource>) -> Arc<StatusCache> {
        StatusCache::new(
            Arc::clone(source) as Arc<dyn StatusSource>,
            ManualClock::new(500),
            StatusCacheSettings {
                max_age: Duration::from_secs(30),
                fail_closed_after: Duration::from_secs(300),
                overlap_secs: 0,
            },
        )
    }

    #[tokio::test]
    async fn prune_drops_only_entries_no_lookup_could_use() {
        let source = Arc::new(MemorySource::default());
        for serial in ["01", "02", "03"] {
            source.put(view(serial, CertStatus::Current));
        }
        source.put(view("04", CertStatus::Revoked));
        let cache = cache_over(&source);
        for serial in ["01", "02", "03", "04"] {
            cache.check(serial).await;
        }
        assert_eq!(cache.len(), 4);
        assert!(cache.known_revoked("04"));

        let mid = Instant::now();
        // Younger than fail_closed_after: still usable while the store is down.
        assert_eq!(cache.prune(mid + Duration::from_secs(299)), 0);
        assert_eq!(cache.len(), 4);

        // "02" is read again after `mid`, so it is younger than the others.
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.invalidate("02");
        cache.check("02").await;
        let dropped = cache.prune(mid + Duration::from_secs(300));
        assert_eq!(dropped, 3, "01, 03 and 04 are too old to be used");
        assert_eq!(cache.len(), 1);
        assert!(!cache.known_revoked("04"));

        // A pruned certificate is simply read again, with the same verdict.
        let (verdict, _, outcome) = cache.check("04").await;
        assert_eq!(verdict, Verdict::Refuse(Refusal::Revoked));
        assert_eq!(outcome, CacheOutcome::Miss);
        assert!(cache.known_revoked("04"));
    }
}
