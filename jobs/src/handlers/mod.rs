//! One module per job type.

pub mod analytics;
pub mod bonus;
pub mod crm;
pub mod email;
pub mod events;
pub mod expire;
pub mod media;
pub mod notify;
pub mod notify_job;
pub mod otp;
pub mod payments;
pub mod promo;
pub mod reconcile;
pub mod referral;
pub mod retention;
pub mod scan;
pub mod settlement;
pub mod tiers;
