//! Helpers shared by the SoftHSM2 tests.

pub mod token;
