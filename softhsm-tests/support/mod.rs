//! Helpers shared by the SoftHSM2 tests.

pub mod private_pg;
pub mod token;
