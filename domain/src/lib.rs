#![doc = include_str!("../README.md")]

pub mod clock;
pub mod codes;
pub mod crm;
pub mod fraud;
pub mod local_time;
pub mod lots;
pub mod loyalty;
pub mod media;
pub mod messages;
pub mod money;
pub mod onboarding;
pub mod phone;
pub mod referral;
pub mod rfm;
pub mod roles;
pub mod settlement;
pub mod statement_csv;

pub use loyalty::{Category, Tier, TierRule, TierRules};
pub use money::Money;
pub use phone::PhoneNumber;
