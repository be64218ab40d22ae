//! An in-memory [`StatusSource`] for tests and demos: certificates, trust anchors and change
//! announcements kept in a map, with a switch that makes it answer "unavailable" like a
//! database that went away. It must not be used in production.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;
use rustls_pki_types::CertificateDer;
use tokio::sync::broadcast;

use super::StatusSource;
use crate::clock::UnixTime;
use crate::store::{CertChange, CertStatus, CertStatusView, StoreError};

/// Certificates and anchors in memory.
#[derive(Debug)]
pub struct MemorySource {
    certs: Mutex<HashMap<String, CertStatusView>>,
    anchors: Mutex<Vec<CertificateDer<'static>>>,
    changes: broadcast::Sender<CertChange>,
    down: AtomicBool,
}

impl Default for MemorySource {
    fn default() -> Self {
        Self {
            certs: Mutex::default(),
            anchors: Mutex::default(),
            changes: broadcast::channel(256).0,
            down: AtomicBool::new(false),
        }
    }
}

impl MemorySource {
    /// Adds or replaces a certificate and announces the change.
    pub fn put(&self, view: CertStatusView) {
        let serial = view.cert.serial.clone();
        self.lock_certs().insert(serial.clone(), view);
        let _ = self.changes.send(CertChange { serial });
    }

    /// Revokes a certificate and announces it, as the store does.
    pub fn revoke(&self, serial: &str, now: UnixTime) {
        if let Some(v) = self.lock_certs().get_mut(serial) {
            v.cert.status = CertStatus::Revoked;
            v.cert.revoked_at = Some(now);
            v.cert.revocation_reason = Some("keyCompromise".into());
        }
        let _ = self.changes.send(CertChange {
            serial: serial.into(),
        });
    }

    /// The stored view of a certificate.
    pub fn get(&self, serial: &str) -> Option<CertStatusView> {
        self.lock_certs().get(serial).cloned()
    }

    /// Replaces the trust anchors.
    pub fn set_anchors(&self, anchors: Vec<CertificateDer<'static>>) {
        *self.anchors.lock().unwrap_or_else(|p| p.into_inner()) = anchors;
    }

    /// Makes every call fail as if the database were unreachable (`true`) or back (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check_up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
        } else {
            Ok(())
        }
    }

    fn lock_certs(&self) -> std::sync::MutexGuard<'_, HashMap<String, CertStatusView>> {
        self.certs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StatusSource for MemorySource {
    fn status<'a>(
        &'a self,
        serial: &'a str,
    ) -> BoxFuture<'a, Result<Option<CertStatusView>, StoreError>> {
        Box::pin(async move {
            self.check_up()?;
            Ok(self.get(serial))
        })
    }
    fn changes(&self) -> broadcast::Receiver<CertChange> {
        self.changes.subscribe()
    }
    fn trust_anchors(&self) -> BoxFuture<'_, Result<Vec<CertificateDer<'static>>, StoreError>> {
        Box::pin(async move {
            self.check_up()?;
            Ok(self
                .anchors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone())
        })
    }
    fn mark_first_used<'a>(
        &'a self,
        serial: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.check_up()?;
            let mut certs = self.lock_certs();
            match certs.get_mut(serial) {
                Some(v) if v.cert.first_used_at.is_none() => {
                    v.cert.first_used_at = Some(now);
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.check_up() })
    }
}
