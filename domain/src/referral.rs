//! Referral rules (DESIGN.md): a code per member, taken at sign-up or within
//! `window_days` of it; inviter and invitee each get `bonus` once the invitee's first
//! purchase of at least `min_purchase` is past its hold window; at most `yearly_limit`
//! rewarded invitations per inviter a year; never for inviting oneself.

use crate::codes::{human_code, is_human_code};
use rand::Rng;
use rust_decimal::Decimal;
use time::{Duration, OffsetDateTime};

/// Characters of a referral code (from [`crate::codes::ALPHABET`]: no look-alikes).
pub const CODE_LEN: usize = 8;

/// A member's referral code, as typed or read from a link: trimmed, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferralCode(String);

/// Not a referral code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a referral code is {CODE_LEN} letters and digits")]
pub struct InvalidReferralCode;

impl ReferralCode {
    pub fn parse(raw: &str) -> Result<Self, InvalidReferralCode> {
        let code = raw.trim().to_ascii_uppercase();
        if is_human_code(&code, CODE_LEN) {
            Ok(Self(code))
        } else {
            Err(InvalidReferralCode)
        }
    }

    pub fn generate(rng: &mut impl Rng) -> Self {
        Self(human_code(rng, CODE_LEN))
    }
}

impl AsRef<str> for ReferralCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The referral rules as stored (DESIGN.md defaults unless edited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralRules {
    /// Bonuses each side gets.
    pub bonus: Decimal,
    /// The smallest purchase that qualifies, roubles.
    pub min_purchase: Decimal,
    /// Rewarded invitations per inviter within 365 days.
    pub yearly_limit: u32,
    /// Days after sign-up during which a code may still be taken.
    pub window_days: u32,
}

impl Default for ReferralRules {
    fn default() -> Self {
        Self {
            bonus: Decimal::from(300),
            min_purchase: Decimal::from(1000),
            yearly_limit: 20,
            window_days: 7,
        }
    }
}

impl ReferralRules {
    /// Whether a member who signed up at `signed_up_at` may still name who invited her.
    pub fn may_take(&self, signed_up_at: OffsetDateTime, now: OffsetDateTime) -> bool {
        now - signed_up_at <= Duration::days(self.window_days.into())
    }

    /// How an invitation whose invitee made her qualifying purchase is settled.
    pub fn settle(&self, same_device: bool, inviter_rewarded_this_year: u32) -> Settlement {
        if same_device {
            Settlement::Refused(Refusal::SameDevice)
        } else if inviter_rewarded_this_year >= self.yearly_limit {
            Settlement::Refused(Refusal::YearlyLimit)
        } else {
            Settlement::Reward(self.bonus)
        }
    }
}

/// What an invitation comes to once its invitee made a qualifying purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Each side gets this many bonuses.
    Reward(Decimal),
    Refused(Refusal),
}

/// Why an invitation is not rewarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Inviter and invitee used the same device: one person with two numbers.
    SameDevice,
    /// The inviter already had `yearly_limit` invitations rewarded within 365 days.
    YearlyLimit,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SameDevice => "same_device",
            Self::YearlyLimit => "yearly_limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn codes_are_read_as_typed_and_refused_otherwise() {
        let code = ReferralCode::generate(&mut rand::rng());
        assert_eq!(ReferralCode::parse(code.as_ref()), Ok(code.clone()));
        assert_eq!(
            ReferralCode::parse(&format!(" {} ", code.as_ref().to_lowercase())),
            Ok(code)
        );
        for bad in ["", "ABC", "ABCDEFG0", "ABCDEFGHJ", "ABCD EFG"] {
            assert_eq!(
                ReferralCode::parse(bad),
                Err(InvalidReferralCode),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_code_is_taken_within_seven_days_of_sign_up() {
        let rules = ReferralRules::default();
        let signed_up = OffsetDateTime::now_utc();
        assert!(rules.may_take(signed_up, signed_up));
        assert!(rules.may_take(signed_up, signed_up + Duration::days(7)));
        assert!(!rules.may_take(
            signed_up,
            signed_up + Duration::days(7) + Duration::seconds(1)
        ));
    }

    #[test]
    fn rewards_stop_at_the_yearly_limit_and_never_go_to_one_device() {
        let rules = ReferralRules::default();
        assert_eq!(rules.settle(false, 0), Settlement::Reward(dec!(300)));
        assert_eq!(rules.settle(false, 19), Settlement::Reward(dec!(300)));
        assert_eq!(
            rules.settle(false, 20),
            Settlement::Refused(Refusal::YearlyLimit)
        );
        assert_eq!(
            rules.settle(true, 0),
            Settlement::Refused(Refusal::SameDevice)
        );
    }
}
