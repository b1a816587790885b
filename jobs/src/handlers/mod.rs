//! One module per job type.

pub mod bonus;
pub mod crm;
pub mod otp;
pub mod reconcile;
pub mod scan;
