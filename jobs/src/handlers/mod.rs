//! One module per job type.

pub mod otp;
pub mod reconcile;
pub mod scan;
