//! The PKCS#11 library of the process: loaded and initialised once per module path (a second
//! `C_Initialize` misbehaves), kept in a process-wide map, and re-initialised (finalize +
//! initialize) with a capped backoff when no session can be opened any more.
//!
//! Every use of the library holds a read guard ([`Context::read`]); re-initialisation takes
//! the write guard, so it never runs under a call in flight. Each re-initialisation bumps an
//! epoch: sessions and object handles of an older epoch are dead (and their numbers may be
//! reused), so they are forgotten rather than closed.
//!
//! What this module must not do: hold sessions, know the PIN, or decide when to retry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use super::HsmError;
use super::ckr::call;

/// First wait after a re-initialisation, doubled after each one up to [`BACKOFF_CAP`].
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The library as it is now.
pub(crate) struct Live {
    pub(crate) pkcs11: Pkcs11,
    /// Bumped by each re-initialisation.
    pub(crate) epoch: u64,
}

/// One loaded PKCS#11 module.
pub(crate) struct Context {
    module: PathBuf,
    live: RwLock<Live>,
    backoff: Mutex<Backoff>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Arc<Context>>>> = OnceLock::new();

impl Context {
    /// The process's context for `module`, loading and initialising it on first use.
    pub(crate) fn get(module: &Path) -> Result<Arc<Self>, HsmError> {
        // Two spellings of one file must share one initialisation.
        let key = std::fs::canonicalize(module).unwrap_or_else(|_| module.to_path_buf());
        let mut map = CONTEXTS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ctx) = map.get(&key) {
            return Ok(Arc::clone(ctx));
        }
        let module_error = |detail: String| HsmError::Module {
            module: key.display().to_string(),
            detail,
        };
        let pkcs11 = call("C_GetFunctionList", Pkcs11::new(&key))
            .map_err(|e| module_error(e.to_string()))?;
        initialize(&pkcs11).map_err(|e| module_error(format!("{e}{}", initialize_hint(&key))))?;
        tracing::info!(module = %key.display(), "PKCS#11 module loaded and initialised");
        let ctx = Arc::new(Self {
            module: key.clone(),
            live: RwLock::new(Live { pkcs11, epoch: 0 }),
            backoff: Mutex::new(Backoff::default()),
        });
        map.insert(key, Arc::clone(&ctx));
        Ok(ctx)
    }

    /// The module's path (canonical when it could be resolved).
    pub(crate) fn module(&self) -> &Path {
        &self.module
    }

    /// Shared access to the library for the length of one operation. Never take it twice on
    /// one thread: a waiting re-initialisation would deadlock the second take.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Live> {
        self.live.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finalises and re-initialises the library because no session could be opened in
    /// `seen_epoch`. Does nothing if another thread already did it; refuses (`Unavailable`)
    /// while the backoff from the previous attempt runs, so a dead token is not hammered.
    pub(crate) fn reinitialize(&self, seen_epoch: u64) -> Result<(), HsmError> {
        {
            let mut backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if let Some(wait) = backoff.remaining(now) {
                // The last failure is repeated: each caller meanwhile learns the cause.
                let recently = match &backoff.failed {
                    Some(why) => format!("could not be re-initialised ({why})"),
                    None => "was re-initialised recently".to_owned(),
                };
                return Err(HsmError::Unavailable(format!(
                    "the PKCS#11 library {recently}; next attempt in {} ms",
                    wait.as_millis()
                )));
            }
            backoff.attempted(now);
        }
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        if live.epoch != seen_epoch {
            return Ok(());
        }
        tracing::warn!(module = %self.module.display(), "re-initialising the PKCS#11 library");
        if let Err(e) = call("C_Finalize", live.pkcs11.clone().finalize()) {
            tracing::warn!(code = %e.code(), "C_Finalize failed; initialising anyway");
        }
        // The epoch moves even if initialising fails: every old session is gone either way.
        live.epoch += 1;
        let failed = initialize(&live.pkcs11)
            .err()
            .map(|e| format!("{e}{}", initialize_hint(&self.module)));
        self.backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed
            .clone_from(&failed);
        match failed {
            None => Ok(()),
            // Until an attempt succeeds, every call answers CKR_CRYPTOKI_NOT_INITIALIZED and
            // the next use (after the backoff) tries again.
            Some(why) => {
                tracing::error!(module = %self.module.display(), error = %why,
                    "re-initialising the PKCS#11 library failed; signing is unavailable until it works");
                Err(HsmError::Unavailable(format!(
                    "cannot re-initialise the PKCS#11 library: {why}"
                )))
            }
        }
    }

    /// A session opened: the library works, so the next trouble starts a fresh backoff.
    pub(crate) fn note_healthy(&self) {
        self.backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reset();
    }

    /// Test support: finalize and initialise without telling anyone (the epoch stays), so
    /// that every open session dies behind its owner's back, as on a device reset.
    pub(crate) fn kill_sessions_for_tests(&self) {
        let live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        let _ = call("C_Finalize", live.pkcs11.clone().finalize());
        if let Err(e) = initialize(&live.pkcs11) {
            tracing::error!(error = %e, "re-initialising after the test reset failed");
        }
    }
}

/// `C_Initialize` with OS locking. "Already initialised" (by other code in the process)
/// is fine: the library is usable.
fn initialize(pkcs11: &Pkcs11) -> Result<(), super::ckr::CallError> {
    let args = CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK);
    match call("C_Initialize", pkcs11.initialize(args)) {
        Err(e)
            if matches!(
                e.error,
                CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// What to check when `C_Initialize` fails, for modules known to depend on a service:
/// openCryptoki's library asks its slot daemon for the slot table in `C_Initialize` (and only
/// there: sessions of an initialised library keep working while the daemon is down).
fn initialize_hint(module: &Path) -> &'static str {
    let name = module
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.contains("opencryptoki") {
        "; openCryptoki needs its slot daemon: is pkcsslotd running?"
    } else {
        ""
    }
}

/// When the next re-initialisation may run.
#[derive(Debug, Default)]
struct Backoff {
    not_before: Option<Instant>,
    delay: Duration,
    /// Why the last re-initialisation failed, if it did (no PIN or argument in it).
    failed: Option<String>,
}

impl Backoff {
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.not_before
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn attempted(&mut self, now: Instant) {
        self.delay = if self.delay.is_zero() {
            BACKOFF_FIRST
        } else {
            (self.delay * 2).min(BACKOFF_CAP)
        };
        self.not_before = Some(now + self.delay);
    }

    fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_initialisation_of_open_cryptoki_points_at_its_daemon() {
        let ock = Path::new("/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so");
        assert!(initialize_hint(ock).contains("pkcsslotd"));
        assert_eq!(
            initialize_hint(Path::new("/usr/lib/softhsm/libsofthsm2.so")),
            ""
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.remaining(t0).is_none());
        b.attempted(t0);
        assert_eq!(b.delay, BACKOFF_FIRST);
        assert!(b.remaining(t0).is_some());
        assert!(b.remaining(t0 + BACKOFF_FIRST).is_none());
        for _ in 0..20 {
            b.attempted(t0);
        }
        assert_eq!(b.delay, BACKOFF_CAP);
        b.reset();
        assert!(b.remaining(t0).is_none());
        b.attempted(t0);
        assert_eq!(b.delay, BACKOFF_FIRST);
    }
}
