//! Helpers shared by the SoftHSM2 tests.

pub mod est_strict;
pub mod token;
