//! Helpers shared by the SoftHSM2 tests.

pub mod est_strict;
pub mod private_pg;
pub mod slot_daemon;
pub mod token;
