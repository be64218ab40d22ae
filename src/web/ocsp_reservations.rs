//! OCSP signatures are reserved in the store before they are made, a block at a time. The
//! in-memory tally (`ca::SignatureTally`) reaches the store only every minute, so a killed
//! process under-counts; the reservations, written first, bound from above what the key
//! signed, and `audit signatures` checks that no more were counted than reserved.

use std::collections::HashMap;

use crate::ca::SignatureKind;
use crate::store::{Store, StoreError};

/// Signatures reserved at once: one store write per this many OCSP responses signed. At most
/// this many per CA and process start are reserved and never made.
pub const RESERVATION_BLOCK: u64 = 1000;

/// Reservations made and not yet used, per CA.
#[derive(Debug, Default)]
pub struct Reservations {
    left: std::sync::Mutex<HashMap<i64, u64>>,
    /// One refill at a time, so concurrent signers do not each reserve a block.
    refill: tokio::sync::Mutex<()>,
}

impl Reservations {
    /// Takes one reserved OCSP signature of CA `ca_id`, reserving a block first when none is
    /// left. An error means nothing was reserved: do not sign.
    pub async fn take(&self, store: &Store, ca_id: i64) -> Result<(), StoreError> {
        loop {
            if self.take_left(ca_id) {
                return Ok(());
            }
            let _one = self.refill.lock().await;
            if self.take_left(ca_id) {
                return Ok(());
            }
            let kind = SignatureKind::Ocsp.reserved_name();
            store
                .add_signature_counts(&[(ca_id, kind.as_str(), RESERVATION_BLOCK)])
                .await?;
            if let Ok(mut left) = self.left.lock() {
                *left.entry(ca_id).or_default() += RESERVATION_BLOCK;
            }
        }
    }

    fn take_left(&self, ca_id: i64) -> bool {
        let Ok(mut left) = self.left.lock() else {
            return false;
        };
        match left.get_mut(&ca_id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}
