//! The pool of logged-in sessions on one token, and the recovery policy around each use.
//!
//! Sessions are opened one after another, never in parallel. Each operation borrows one
//! ([`Pool::run`]) and is retried at most once, after replacing what the failure code says
//! is broken (see [`super::ckr::classify`]): a lost session gives up every session of its
//! generation and a new one is opened and logged in; a session that lost its login is closed
//! and replaced; a stale object handle keeps the session and the key is looked up again. When
//! no session can be opened, the library is re-initialised (with backoff, see
//! [`super::context`]) and the caller hears `Unavailable` meanwhile.
//!
//! Given-up sessions are abandoned, not closed: after a device reset their handle numbers
//! may already name newer sessions. If only one session of a generation had died, the others
//! leak; that is rare and far cheaper than closing a stranger's session.
//!
//! A refused PIN is latched: no later call logs in again (a real HSM locks after a few tries).
//!
//! `size` is the most sessions the pool ever has open, the read-write session of key
//! generation included: some devices allow few (YubiHSM 2: 16 for every application).
//! [`Pool::keep_alive`] touches idle sessions for devices that drop them when idle; one
//! found dead goes the way of any lost session, and the pool is filled up again at once.
//!
//! What this module must not do: know about keys or signatures, or log the PIN.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use cryptoki::error::RvError;
use cryptoki::mechanism::MechanismType;
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;

use super::HsmError;
use super::ckr::{CallError, Disposition, call};
use super::context::{Context, Live};
use super::session::{self, HsmSession, LoginError};
use super::token::{self, ReadError, TokenMatch};
use crate::config::Secret;
use crate::keys::SessionUse;

/// What went wrong inside an operation run on a pooled session.
#[derive(Debug)]
pub(crate) enum OpError {
    /// A PKCS#11 call failed; the pool decides on retries from its code.
    Call(CallError),
    /// A failure that is already final (key missing, key unsafe, PIN refused).
    Hsm(HsmError),
}

impl From<CallError> for OpError {
    fn from(e: CallError) -> Self {
        Self::Call(e)
    }
}

impl From<HsmError> for OpError {
    fn from(e: HsmError) -> Self {
        Self::Hsm(e)
    }
}

impl From<OpError> for HsmError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Call(e) => e.into(),
            OpError::Hsm(e) => e,
        }
    }
}

/// What an operation learns about the session it was given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    /// Set when this is a retry: object handles cached before must be looked up again.
    pub(crate) retry: bool,
    /// The context epoch: object handles are valid only within one.
    pub(crate) epoch: u64,
}

const PIN_OK: u8 = 0;
const PIN_INCORRECT: u8 = 1;
const PIN_LOCKED: u8 = 2;

/// Logged-in sessions on the token `token` names.
pub(crate) struct Pool {
    ctx: Arc<Context>,
    token: TokenMatch,
    pin: Secret,
    size: usize,
    state: Mutex<State>,
    returned: Condvar,
    pin_refused: AtomicU8,
    /// Operations retried after a failure, and library re-initialisations (for metrics).
    recoveries: AtomicU64,
    /// Context-specific logins made (tests count them).
    context_logins: AtomicU64,
}

struct State {
    idle: Vec<HsmSession>,
    /// Sessions of this pool in existence (idle or borrowed, the read-write one included).
    owned: usize,
    /// The most sessions in existence at once since the pool was opened.
    peak: usize,
    /// Sessions opened since the pool was opened.
    opened: u64,
    /// Bumped when sessions were found lost: older ones are abandoned.
    generation: u64,
    /// The token's slot, found by label, with the epoch it was found in.
    slot: Option<(u64, Slot)>,
}

impl Pool {
    /// Finds the token, opens `size` sessions one after another and logs in.
    pub(crate) fn open(
        ctx: Arc<Context>,
        token: TokenMatch,
        pin: Secret,
        size: usize,
    ) -> Result<Self, HsmError> {
        let pool = Self {
            ctx,
            token,
            pin,
            size: size.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                owned: 0,
                peak: 0,
                opened: 0,
                generation: 0,
                slot: None,
            }),
            returned: Condvar::new(),
            pin_refused: AtomicU8::new(PIN_OK),
            recoveries: AtomicU64::new(0),
            context_logins: AtomicU64::new(0),
        };
        let filled = {
            let live = pool.ctx.read();
            let mut st = pool.lock();
            let mut filled = Ok(());
            for _ in 0..pool.size {
                match pool.open_session(&live, &mut st, false) {
                    Ok(s) => {
                        st.opened();
                        st.idle.push(s);
                    }
                    Err(e) => {
                        filled = Err(e);
                        break;
                    }
                }
            }
            filled
            // `st` and `live` end here, before `pool` may be dropped (its Drop reads `live`).
        };
        filled?;
        Ok(pool)
    }

    /// Runs `op` on a borrowed session, with the recovery described in the module docs.
    pub(crate) fn run<T>(
        &self,
        mut op: impl FnMut(&Session, Attempt) -> Result<T, OpError>,
    ) -> Result<T, HsmError> {
        let mut retried = false;
        let mut reinitialised = false;
        loop {
            self.check_pin()?;
            let live = self.ctx.read();
            let session = match self.checkout(&live) {
                Ok(s) => s,
                Err(OpError::Call(e))
                    if !reinitialised && e.disposition() == Disposition::NewSession =>
                {
                    tracing::warn!(function = e.function, code = %e.code(),
                        "cannot open a session; re-initialising the PKCS#11 library");
                    let epoch = live.epoch;
                    drop(live);
                    reinitialised = true;
                    self.recoveries.fetch_add(1, Ordering::Relaxed);
                    self.ctx.reinitialize(epoch)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let attempt = Attempt {
                retry: retried || reinitialised,
                epoch: live.epoch,
            };
            match op(session.get(), attempt) {
                Ok(value) => {
                    self.checkin(&live, session);
                    return Ok(value);
                }
                Err(OpError::Call(e)) => match e.disposition() {
                    Disposition::Unavailable | Disposition::Permanent => {
                        tracing::warn!(function = e.function, code = %e.code(), "PKCS#11 call failed");
                        self.checkin(&live, session);
                        return Err(e.into());
                    }
                    retry => {
                        match retry {
                            Disposition::Relookup => self.checkin(&live, session),
                            Disposition::Relogin => self.close(session),
                            _ => self.give_up_generation(session),
                        }
                        if retried {
                            tracing::error!(function = e.function, code = %e.code(),
                                "PKCS#11 call failed again after a retry");
                            return Err(HsmError::Unavailable(e.to_string()));
                        }
                        tracing::warn!(function = e.function, code = %e.code(), disposition = ?retry,
                            "PKCS#11 call failed; retrying once");
                        retried = true;
                        self.recoveries.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Err(OpError::Hsm(e)) => {
                    self.checkin(&live, session);
                    return Err(e);
                }
            }
        }
    }

    /// How the pool's sessions are used right now, and its recoveries since start.
    pub(crate) fn usage(&self) -> SessionUse {
        let st = self.lock();
        SessionUse {
            size: self.size,
            open: st.owned,
            idle: st.idle.len(),
            recoveries: self.recoveries.load(Ordering::Relaxed),
        }
    }

    /// Runs `op` on a fresh read-write session (key generation), closed afterwards. No retry:
    /// the operator runs the command again. It counts against `size`: an idle session is
    /// closed to make room (reopened when needed), or the call waits for one to return.
    pub(crate) fn with_rw_session<T>(
        &self,
        op: impl FnOnce(&Session) -> Result<T, OpError>,
    ) -> Result<T, HsmError> {
        self.check_pin()?;
        let live = self.ctx.read();
        let session = {
            let mut st = self.lock();
            while st.owned >= self.size {
                match st.idle.pop() {
                    Some(idle) => {
                        st.owned -= 1;
                        if idle.epoch == live.epoch && idle.generation == st.generation {
                            drop(idle);
                        } else {
                            idle.abandon();
                        }
                    }
                    None => {
                        st = self
                            .returned
                            .wait(st)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                }
            }
            let session = self.open_session(&live, &mut st, true)?;
            st.opened();
            session
        };
        let result = op(session.get());
        self.close(session);
        Ok(result?)
    }

    /// Whether the token offers `mechanism` for signing (`C_GetMechanismInfo` answers for
    /// exactly the mechanisms `C_GetMechanismList` lists). No session needed.
    pub(crate) fn offers_for_signing(&self, mechanism: MechanismType) -> Result<bool, HsmError> {
        let live = self.ctx.read();
        let slot = {
            let mut st = self.lock();
            self.slot(&live, &mut st)?
        };
        match call(
            "C_GetMechanismInfo",
            live.pkcs11.get_mechanism_info(slot, mechanism),
        ) {
            Ok(info) => Ok(info.sign()),
            Err(e) if e.rv() == Some(RvError::MechanismInvalid) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Touches each idle session once (`C_GetSessionInfo`, least recently used first, one
    /// at a time so signing is never kept waiting for more than one call). A session found
    /// dead or logged out is handled as in [`Pool::run`] and counted as a recovery; then the
    /// pool is filled up to `size` again, so the sessions a device dropped (or key
    /// generation closed) are back before the next signature needs one. Returns how many
    /// were found dead.
    pub(crate) fn keep_alive(&self) -> usize {
        if self.check_pin().is_err() {
            return 0;
        }
        let live = self.ctx.read();
        let idle = self.lock().idle.len();
        let mut dead = 0;
        for _ in 0..idle {
            let session = {
                let mut st = self.lock();
                if st.idle.is_empty() {
                    break;
                }
                st.idle.remove(0)
            };
            match touch(session.get()) {
                Ok(()) => self.checkin(&live, session),
                Err(e) => match e.disposition() {
                    Disposition::Unavailable | Disposition::Permanent => {
                        // The device itself is failing: keep the session, the next use
                        // (or touch) finds out more.
                        tracing::warn!(function = e.function, code = %e.code(),
                            "keep-alive: the HSM did not answer");
                        self.checkin(&live, session);
                        break;
                    }
                    disposition => {
                        tracing::warn!(function = e.function, code = %e.code(),
                            "keep-alive: an idle session was lost; replacing it");
                        dead += 1;
                        self.recoveries.fetch_add(1, Ordering::Relaxed);
                        match disposition {
                            Disposition::Relogin | Disposition::Relookup => self.close(session),
                            _ => self.give_up_generation(session),
                        }
                    }
                },
            }
        }
        self.fill(&live);
        dead
    }

    /// Opens sessions until the pool has `size`, stopping at the first failure (the next
    /// use or keep-alive tries again).
    fn fill(&self, live: &Live) {
        let mut st = self.lock();
        while st.owned < self.size {
            match self.open_session(live, &mut st, false) {
                Ok(s) => {
                    st.opened();
                    st.idle.push(s);
                }
                Err(e) => {
                    let e = HsmError::from(e);
                    tracing::warn!(error = %e, "keep-alive: cannot open a session yet");
                    break;
                }
            }
        }
        drop(st);
        self.returned.notify_all();
    }

    /// `C_Login(CKU_CONTEXT_SPECIFIC)` with the pool's PIN on `session`, in the middle of a
    /// signing operation started on it (see `signer`). A refused PIN is latched like the
    /// user login's: most tokens count it against the same PIN, so nothing logs in again.
    pub(crate) fn context_login(&self, session: &Session) -> Result<(), OpError> {
        self.check_pin()?;
        self.context_logins.fetch_add(1, Ordering::Relaxed);
        match session::context_login(session, &self.pin) {
            Ok(()) => Ok(()),
            Err(LoginError::Pin(e)) => {
                self.latch_pin_refusal(&e);
                Err(e.into())
            }
            Err(LoginError::Call(e)) => Err(e.into()),
        }
    }

    /// Context-specific logins made since the pool was opened.
    pub(crate) fn context_logins(&self) -> u64 {
        self.context_logins.load(Ordering::Relaxed)
    }

    /// The module's path (for the calls cryptoki does not offer, see `signer`).
    pub(crate) fn module(&self) -> &std::path::Path {
        self.ctx.module()
    }

    /// The most sessions open at once so far, and how many were opened (tests check the
    /// cap and the keep-alive with them).
    pub(crate) fn counts(&self) -> (usize, u64) {
        let st = self.lock();
        (st.peak, st.opened)
    }

    /// Finalises and re-initialises the library (subject to its backoff), e.g. because the
    /// token or key vanished: a token put back is only seen after `C_Initialize`.
    pub(crate) fn reinitialize(&self) -> Result<(), HsmError> {
        let epoch = self.ctx.read().epoch;
        self.ctx.reinitialize(epoch)
    }

    /// Test support: kills every session of the library behind the pool's back.
    pub(crate) fn kill_sessions_for_tests(&self) {
        self.ctx.kill_sessions_for_tests();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_pin(&self) -> Result<(), HsmError> {
        match self.pin_refused.load(Ordering::Acquire) {
            PIN_OK => Ok(()),
            PIN_LOCKED => Err(HsmError::PinLocked),
            _ => Err(HsmError::PinIncorrect),
        }
    }

    /// From now on every use fails with `e` without logging in.
    fn latch_pin_refusal(&self, e: &HsmError) {
        let latch = if matches!(e, HsmError::PinLocked) {
            PIN_LOCKED
        } else {
            PIN_INCORRECT
        };
        self.pin_refused.store(latch, Ordering::Release);
    }

    fn checkout(&self, live: &Live) -> Result<HsmSession, OpError> {
        let mut st = self.lock();
        loop {
            while let Some(s) = st.idle.pop() {
                if s.epoch == live.epoch && s.generation == st.generation {
                    return Ok(s);
                }
                st.owned -= 1;
                s.abandon();
            }
            if st.owned < self.size {
                let s = self.open_session(live, &mut st, false)?;
                st.opened();
                return Ok(s);
            }
            st = self
                .returned
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn checkin(&self, live: &Live, session: HsmSession) {
        let mut st = self.lock();
        if session.epoch == live.epoch && session.generation == st.generation {
            st.idle.push(session);
        } else {
            st.owned -= 1;
            session.abandon();
        }
        drop(st);
        self.returned.notify_one();
    }

    /// Closes a session whose handle is still valid (it only lost its login).
    fn close(&self, session: HsmSession) {
        let mut st = self.lock();
        st.owned -= 1;
        drop(session);
        drop(st);
        self.returned.notify_one();
    }

    /// `session` was found lost: give it and every other session of its generation up.
    fn give_up_generation(&self, session: HsmSession) {
        let mut st = self.lock();
        // Only the first thread to notice moves the generation; later ones only drop theirs,
        // or they would also give up the sessions opened in recovery.
        if session.generation == st.generation {
            st.generation += 1;
            let stale: Vec<_> = st.idle.drain(..).collect();
            st.owned -= stale.len();
            stale.into_iter().for_each(HsmSession::abandon);
        }
        st.owned -= 1;
        session.abandon();
        drop(st);
        self.returned.notify_all();
    }

    /// Opens and logs in one session. Called with the state lock held, so sessions are
    /// opened strictly one at a time.
    fn open_session(
        &self,
        live: &Live,
        st: &mut State,
        read_write: bool,
    ) -> Result<HsmSession, OpError> {
        let slot = self.slot(live, st)?;
        let session = HsmSession::open(live, slot, read_write, st.generation)?;
        match session.login(&self.pin) {
            Ok(()) => {}
            Err(LoginError::Pin(e)) => {
                self.latch_pin_refusal(&e);
                return Err(e.into());
            }
            Err(LoginError::Call(e)) => return Err(e.into()),
        }
        self.ctx.note_healthy();
        Ok(session)
    }

    /// The token's slot, looked up by label once per epoch (slot ids change when tokens are
    /// initialised or the library restarts).
    fn slot(&self, live: &Live, st: &mut State) -> Result<Slot, OpError> {
        if let Some((epoch, slot)) = st.slot
            && epoch == live.epoch
        {
            return Ok(slot);
        }
        // A slot whose token cannot be read is passed over (it may be someone else's); its
        // failure is reported only if no slot carries the label.
        let mut unreadable = None;
        for slot in call("C_GetSlotList", live.pkcs11.get_slots_with_token())? {
            match token::read(self.ctx.module(), slot.id()) {
                Ok(facts) if self.token.matches(&facts) => {
                    st.slot = Some((live.epoch, slot));
                    return Ok(slot);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        slot = slot.id(),
                        "cannot read the token information of a slot"
                    );
                    unreadable.get_or_insert(e);
                }
            }
        }
        Err(match unreadable {
            Some(ReadError::Call(e)) => OpError::Call(e),
            Some(ReadError::Hsm(e)) => OpError::Hsm(e),
            None => HsmError::TokenNotFound(self.token.label.clone()).into(),
        })
    }
}

impl State {
    /// Counts a session just opened.
    fn opened(&mut self) {
        self.opened += 1;
        self.owned += 1;
        self.peak = self.peak.max(self.owned);
    }
}

/// Asks the token about `session`: alive and logged in, or the reason it is not (a session
/// that lost its login reads as `CKR_USER_NOT_LOGGED_IN`, which the pool knows how to mend).
pub(crate) fn touch(session: &Session) -> Result<(), CallError> {
    let info = call("C_GetSessionInfo", session.get_session_info())?;
    match info.session_state() {
        SessionState::RoUser | SessionState::RwUser => Ok(()),
        _ => Err(CallError::synthetic(
            "C_GetSessionInfo",
            RvError::UserNotLoggedIn,
            cryptoki::context::Function::GetSessionInfo,
        )),
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let live = self.ctx.read();
        let mut st = self.lock();
        let generation = st.generation;
        for s in st.idle.drain(..) {
            if s.epoch == live.epoch && s.generation == generation {
                drop(s);
            } else {
                s.abandon();
            }
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("token", &self.token.label)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}
