//! The audit log: every security event, hash-chained in the store.
