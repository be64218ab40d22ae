//! A key whose signatures are watched: how long each took and whether it failed, told to a
//! [`SignObserver`] (the gateway's metrics). Everything else passes through unchanged.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::{KeyAlgorithm, KeyBackend, SignError};

/// Told about every signature an [`ObservedKey`] makes or fails to make.
pub trait SignObserver: Send + Sync {
    /// One signature: how long the backend took, and whether it gave one.
    fn signed(&self, seconds: f64, ok: bool);
}

/// `inner`, with each signature reported to `observer`.
pub struct ObservedKey {
    inner: Arc<dyn KeyBackend>,
    observer: Arc<dyn SignObserver>,
}

impl ObservedKey {
    pub fn new(inner: Arc<dyn KeyBackend>, observer: Arc<dyn SignObserver>) -> Self {
        Self { inner, observer }
    }
}

impl fmt::Debug for ObservedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservedKey")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl KeyBackend for ObservedKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.inner.algorithm()
    }

    fn public_key_der(&self) -> &[u8] {
        self.inner.public_key_der()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let start = Instant::now();
        let out = self.inner.sign(message);
        self.observer
            .signed(start.elapsed().as_secs_f64(), out.is_ok());
        out
    }

    fn health(&self) -> Result<(), SignError> {
        self.inner.health()
    }

    fn sessions(&self) -> Option<super::SessionUse> {
        self.inner.sessions()
    }
}
