//! The loyalty rules of DESIGN.md: accrual, redemption, tiers and refund reversals.
//!
//! The thresholds and multipliers are data ([`TierRules`], stored in the database and
//! editable); the arithmetic is here.

use crate::money::floor_to_kopeck;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a business sells; tiers count distinct categories visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Beauty,
    Wellness,
    Gastronomy,
    Health,
}

impl Category {
    pub const ALL: [Category; 4] = [Self::Beauty, Self::Wellness, Self::Gastronomy, Self::Health];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Beauty => "beauty",
            Self::Wellness => "wellness",
            Self::Gastronomy => "gastronomy",
            Self::Health => "health",
        }
    }
}

/// A name that is not one of the enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{0}`")]
pub struct UnknownName(pub String);

/// Member status tiers, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    Insider,
    #[serde(rename = "VIP")]
    Vip,
    Elite,
    /// Above Elite, by a superadmin's invitation only: no spend earns it, purchases and
    /// `tier_review` never move a member into or out of it, only a revocation does.
    InnerCircle,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Self::Insider, Self::Vip, Self::Elite, Self::InnerCircle];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insider => "Insider",
            Self::Vip => "VIP",
            Self::Elite => "Elite",
            Self::InnerCircle => "InnerCircle",
        }
    }

    /// Whether the tier is given by invitation rather than earned by spend.
    pub fn is_by_invitation(self) -> bool {
        self == Self::InnerCircle
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What it takes to hold a tier, and what the tier multiplies accruals by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRule {
    pub tier: Tier,
    /// Rolling 365-day spend, roubles.
    pub min_spend: Decimal,
    /// Distinct business categories visited in the same window.
    pub min_categories: u32,
    pub multiplier: Decimal,
}

/// The progress a member still needs for the next tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextTier {
    pub tier: Tier,
    pub spend_needed: Decimal,
    pub categories_needed: u32,
}

/// All tier rules, one per tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRules {
    rules: Vec<TierRule>,
}

impl Default for TierRules {
    /// DESIGN.md: Insider ×1.0; VIP ≥ 100 000 ₽ in ≥ 2 categories ×1.5; Elite ≥ 300 000 ₽ in
    /// ≥ 3 ×2.0; InnerCircle (by invitation, its thresholds unused) ×2.5.
    fn default() -> Self {
        Self::new(vec![
            TierRule {
                tier: Tier::Insider,
                min_spend: Decimal::ZERO,
                min_categories: 0,
                multiplier: Decimal::ONE,
            },
            TierRule {
                tier: Tier::Vip,
                min_spend: Decimal::from(100_000),
                min_categories: 2,
                multiplier: Decimal::new(15, 1),
            },
            TierRule {
                tier: Tier::Elite,
                min_spend: Decimal::from(300_000),
                min_categories: 3,
                multiplier: Decimal::from(2),
            },
            TierRule {
                tier: Tier::InnerCircle,
                min_spend: Decimal::ZERO,
                min_categories: 0,
                multiplier: Decimal::new(25, 1),
            },
        ])
    }
}

impl TierRules {
    /// Builds the rules from stored rows; a tier without a row falls back to the default.
    pub fn new(mut rules: Vec<TierRule>) -> Self {
        for tier in Tier::ALL {
            if !rules.iter().any(|r| r.tier == tier) {
                let fallback = Self::default().rule(tier).clone();
                rules.push(fallback);
            }
        }
        rules.sort_by_key(|r| r.tier);
        Self { rules }
    }

    pub fn rule(&self, tier: Tier) -> &TierRule {
        self.rules
            .iter()
            .find(|r| r.tier == tier)
            .expect("TierRules::new keeps one rule per tier")
    }

    pub fn multiplier(&self, tier: Tier) -> Decimal {
        self.rule(tier).multiplier
    }

    /// The tiers spend can earn, lowest first (never the Inner Circle, whatever its row says).
    fn earnable(&self) -> impl DoubleEndedIterator<Item = &TierRule> {
        self.rules.iter().filter(|r| !r.tier.is_by_invitation())
    }

    /// The highest tier whose thresholds the member meets.
    pub fn earned(&self, spend: Decimal, categories: u32) -> Tier {
        self.earnable()
            .rev()
            .find(|r| spend >= r.min_spend && categories >= r.min_categories)
            .map_or(Tier::Insider, |r| r.tier)
    }

    /// After a purchase: upgrades happen at once, downgrades never (only at `tier_review`).
    pub fn after_purchase(&self, current: Tier, spend: Decimal, categories: u32) -> Tier {
        current.max(self.earned(spend, categories))
    }

    /// At `tier_review`: the lower tier the member moves down to, if her year no longer holds
    /// up the one she has. `None` keeps her tier; the Inner Circle is always kept (only a
    /// superadmin revokes it).
    pub fn after_review(&self, current: Tier, spend: Decimal, categories: u32) -> Option<Tier> {
        if current.is_by_invitation() {
            return None;
        }
        let earned = self.earned(spend, categories);
        (earned < current).then_some(earned)
    }

    /// The tier above `current` and what is missing to reach it; `None` at the top of what
    /// spend can earn (Elite and the Inner Circle).
    pub fn next(&self, current: Tier, spend: Decimal, categories: u32) -> Option<NextTier> {
        let rule = self.earnable().find(|r| r.tier > current)?;
        Some(NextTier {
            tier: rule.tier,
            spend_needed: (rule.min_spend - spend).max(Decimal::ZERO).round_dp(2),
            categories_needed: rule.min_categories.saturating_sub(categories),
        })
    }
}

/// `floor_to_kopeck(paid_in_money × cashback_percent / 100 × tier_multiplier)`.
pub fn accrual(paid_in_money: Decimal, cashback_percent: Decimal, multiplier: Decimal) -> Decimal {
    if paid_in_money <= Decimal::ZERO {
        return floor_to_kopeck(Decimal::ZERO);
    }
    floor_to_kopeck(paid_in_money * cashback_percent / Decimal::ONE_HUNDRED * multiplier)
}

/// Why a redemption request cannot be honoured as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedemptionError {
    /// More bonuses asked than the member has (a negative balance has none to spend).
    #[error("insufficient bonus balance: {available} available")]
    InsufficientBalance { available: Decimal },
    /// More than the business lets a check be paid with bonuses.
    #[error("at most {cap} of this check can be paid with bonuses")]
    OverCap { cap: Decimal },
}

/// The terms a business sets for its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessTerms {
    pub cashback_percent: Decimal,
    pub max_redeem_percent: Decimal,
}

/// A purchase with every part of its price worked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricedPurchase {
    pub amount: Decimal,
    pub coupon_discount: Decimal,
    pub bonus_redeemed: Decimal,
    pub paid_in_money: Decimal,
    pub bonus_accrued: Decimal,
}

/// Prices a check: applies the coupon discount, then the requested redemption (capped by the
/// business's percentage and by the balance, and never more than what is left to pay), then
/// accrues on what was paid in money.
pub fn price_purchase(
    amount: Decimal,
    coupon_discount: Decimal,
    requested_redeem: Decimal,
    balance: Decimal,
    terms: BusinessTerms,
    multiplier: Decimal,
) -> Result<PricedPurchase, RedemptionError> {
    let coupon_discount = coupon_discount.clamp(Decimal::ZERO, amount);
    let payable = amount - coupon_discount;
    let bonus_redeemed = floor_to_kopeck(requested_redeem.max(Decimal::ZERO));
    if bonus_redeemed > Decimal::ZERO {
        if bonus_redeemed > balance {
            return Err(RedemptionError::InsufficientBalance {
                available: floor_to_kopeck(balance.max(Decimal::ZERO)),
            });
        }
        let cap = floor_to_kopeck(
            (amount * terms.max_redeem_percent / Decimal::ONE_HUNDRED).min(payable),
        );
        if bonus_redeemed > cap {
            return Err(RedemptionError::OverCap { cap });
        }
    }
    Ok(PricedPurchase::recorded(
        amount,
        coupon_discount,
        bonus_redeemed,
        terms.cashback_percent,
        multiplier,
    ))
}

impl PricedPurchase {
    /// A check whose discount and redemption were settled elsewhere (a partner's CRM
    /// reports them): accrues on what is left of `amount` after both.
    pub fn recorded(
        amount: Decimal,
        coupon_discount: Decimal,
        bonus_redeemed: Decimal,
        cashback_percent: Decimal,
        multiplier: Decimal,
    ) -> Self {
        let paid_in_money = amount - coupon_discount - bonus_redeemed;
        Self {
            amount: floor_to_kopeck(amount),
            coupon_discount: floor_to_kopeck(coupon_discount),
            bonus_redeemed: floor_to_kopeck(bonus_redeemed),
            paid_in_money: floor_to_kopeck(paid_in_money),
            bonus_accrued: accrual(paid_in_money, cashback_percent, multiplier),
        }
    }
}

/// Whether a transaction is a purchase or the refund of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionType {
    Purchase,
    Refund,
}

impl TransactionType {
    pub const ALL: [TransactionType; 2] = [Self::Purchase, Self::Refund];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Refund => "refund",
        }
    }
}

// By name, as a plain string rather than a serde enum variant: ClickHouse's row format (a
// `transaction_facts` row carries it) refuses enum variants.
impl Serialize for TransactionType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TransactionType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Kinds of ledger entries (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Cashback on a purchase (counts into `lifetime_earned`).
    Accrual,
    /// Bonuses spent on a check (negative; counts into `lifetime_spent`).
    Redemption,
    /// Cashback taken back for a refund (negative).
    Reversal,
    /// Bonuses that ran out (negative).
    Expiry,
    /// Anything else: a bonus coupon, an operator's correction.
    Adjustment,
    /// A referral reward, to the inviter or the invitee (funded by the operator).
    Referral,
}

impl EntryKind {
    pub const ALL: [EntryKind; 6] = [
        Self::Accrual,
        Self::Redemption,
        Self::Reversal,
        Self::Expiry,
        Self::Adjustment,
        Self::Referral,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accrual => "accrual",
            Self::Redemption => "redemption",
            Self::Reversal => "reversal",
            Self::Expiry => "expiry",
            Self::Adjustment => "adjustment",
            Self::Referral => "referral",
        }
    }
}

/// What a coupon gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscountType {
    /// `value` % off the check.
    Percent,
    /// `value` roubles off the check (never more than the check).
    Fixed,
    /// `value` bonuses credited when the coupon is used; the check is not reduced.
    Bonus,
}

impl DiscountType {
    pub const ALL: [DiscountType; 3] = [Self::Percent, Self::Fixed, Self::Bonus];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Percent => "percent",
            Self::Fixed => "fixed",
            Self::Bonus => "bonus",
        }
    }
}

/// `FromStr` by the names `as_str` gives each of `ALL`, so that each name is written once;
/// any other name is an [`UnknownName`]. Exported for the states `storage` keeps (an
/// integration's status, a payment's) as well as the domain's own.
#[macro_export]
macro_rules! parse_by_name {
    ($($name:ty),*) => {$(
        impl ::std::str::FromStr for $name {
            type Err = $crate::loyalty::UnknownName;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|value| value.as_str() == s)
                    .ok_or_else(|| $crate::loyalty::UnknownName(s.to_owned()))
            }
        }
    )*};
}

crate::parse_by_name!(Category, Tier, TransactionType, EntryKind, DiscountType);

/// The roubles a coupon takes off a check of `amount`, floored to the kopeck.
pub fn coupon_discount(kind: DiscountType, value: Decimal, amount: Decimal) -> Decimal {
    floor_to_kopeck(match kind {
        DiscountType::Percent => amount * value.min(Decimal::ONE_HUNDRED) / Decimal::ONE_HUNDRED,
        DiscountType::Fixed => value.min(amount),
        DiscountType::Bonus => Decimal::ZERO,
    })
}

/// How a member reads a coupon's value: `15 %`, `500 ₽`, `300 бонусов`.
pub fn discount_label(kind: DiscountType, value: Decimal) -> String {
    let value = value.normalize();
    match kind {
        DiscountType::Percent => format!("{value} %"),
        DiscountType::Fixed => format!("{value} ₽"),
        DiscountType::Bonus => format!("{value} бонусов"),
    }
}

/// The bonuses a refund of `refunded` out of a purchase of `original_amount` moves back: of the
/// purchase's accrual (taken back) or of its redemption (given back), `original_bonus`, of
/// which `already_moved` moved back with the `already_refunded` part refunded before.
/// Proportional and floored; a refund of the whole remainder moves exactly what is left, so
/// the refunds of a purchase never move more than its accrual or its redemption.
pub fn refund_share(
    original_amount: Decimal,
    original_bonus: Decimal,
    already_refunded: Decimal,
    already_moved: Decimal,
    refunded: Decimal,
) -> Decimal {
    let remaining = (original_bonus - already_moved).max(Decimal::ZERO);
    if original_amount <= Decimal::ZERO || refunded <= Decimal::ZERO {
        return floor_to_kopeck(Decimal::ZERO);
    }
    if already_refunded + refunded >= original_amount {
        return floor_to_kopeck(remaining);
    }
    floor_to_kopeck((original_bonus * refunded / original_amount).min(remaining))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn terms(cashback: Decimal) -> BusinessTerms {
        BusinessTerms {
            cashback_percent: cashback,
            max_redeem_percent: dec!(30),
        }
    }

    #[test]
    fn accrual_floors_to_the_kopeck_and_applies_the_tier_multiplier() {
        let cases = [
            // paid, cashback %, multiplier, expected
            (dec!(1000), dec!(5), dec!(1.0), dec!(50.00)),
            (dec!(1000), dec!(5), dec!(1.5), dec!(75.00)),
            (dec!(1000), dec!(5), dec!(2.0), dec!(100.00)),
            (dec!(1000), dec!(5), dec!(2.5), dec!(125.00)),
            (dec!(999.99), dec!(3), dec!(1.0), dec!(29.99)), // 29.9997
            (dec!(0.33), dec!(10), dec!(1.5), dec!(0.04)),   // 0.0495
            (dec!(0), dec!(10), dec!(2), dec!(0.00)),
        ];
        for (paid, pct, mult, expected) in cases {
            assert_eq!(
                accrual(paid, pct, mult),
                expected,
                "{paid} at {pct}% ×{mult}"
            );
        }
    }

    #[test]
    fn a_purchase_accrues_only_on_what_was_paid_in_money() {
        let priced = price_purchase(
            dec!(1000),
            dec!(100),
            dec!(200),
            dec!(500),
            terms(dec!(10)),
            dec!(1),
        )
        .unwrap();
        assert_eq!(priced.paid_in_money, dec!(700.00));
        assert_eq!(priced.bonus_accrued, dec!(70.00));
        assert_eq!(priced.bonus_redeemed, dec!(200));
        assert_eq!(priced.coupon_discount, dec!(100.00));
    }

    #[test]
    fn redemption_is_capped_by_the_business_percentage() {
        let err = price_purchase(
            dec!(1000),
            dec!(0),
            dec!(300.01),
            dec!(5000),
            terms(dec!(5)),
            dec!(1),
        )
        .unwrap_err();
        assert_eq!(err, RedemptionError::OverCap { cap: dec!(300.00) });
        assert!(
            price_purchase(
                dec!(1000),
                dec!(0),
                dec!(300),
                dec!(5000),
                terms(dec!(5)),
                dec!(1)
            )
            .is_ok()
        );
    }

    #[test]
    fn redemption_never_exceeds_the_balance_and_a_negative_balance_blocks_it() {
        let err = price_purchase(
            dec!(1000),
            dec!(0),
            dec!(100),
            dec!(99.99),
            terms(dec!(5)),
            dec!(1),
        )
        .unwrap_err();
        assert_eq!(
            err,
            RedemptionError::InsufficientBalance {
                available: dec!(99.99)
            }
        );
        let err = price_purchase(
            dec!(1000),
            dec!(0),
            dec!(1),
            dec!(-5),
            terms(dec!(5)),
            dec!(1),
        )
        .unwrap_err();
        assert_eq!(
            err,
            RedemptionError::InsufficientBalance {
                available: dec!(0.00)
            }
        );
        // Not redeeming is always allowed, even with a negative balance.
        assert!(
            price_purchase(
                dec!(1000),
                dec!(0),
                dec!(0),
                dec!(-5),
                terms(dec!(5)),
                dec!(1)
            )
            .is_ok()
        );
    }

    #[test]
    fn redemption_cannot_exceed_what_is_left_after_a_coupon() {
        let err = price_purchase(
            dec!(100),
            dec!(90),
            dec!(20),
            dec!(500),
            terms(dec!(5)),
            dec!(1),
        )
        .unwrap_err();
        assert_eq!(err, RedemptionError::OverCap { cap: dec!(10.00) });
    }

    #[test]
    fn tiers_need_both_spend_and_categories() {
        let rules = TierRules::default();
        let cases = [
            (dec!(99999.99), 3, Tier::Insider),
            (dec!(100000), 1, Tier::Insider),
            (dec!(100000), 2, Tier::Vip),
            (dec!(300000), 2, Tier::Vip),
            (dec!(300000), 3, Tier::Elite),
        ];
        for (spend, cats, expected) in cases {
            assert_eq!(rules.earned(spend, cats), expected, "{spend} in {cats}");
        }
    }

    #[test]
    fn purchases_upgrade_but_never_downgrade() {
        let rules = TierRules::default();
        assert_eq!(
            rules.after_purchase(Tier::Insider, dec!(150000), 2),
            Tier::Vip
        );
        assert_eq!(rules.after_purchase(Tier::Elite, dec!(10), 1), Tier::Elite);
        assert_eq!(rules.multiplier(Tier::Vip), dec!(1.5));
    }

    #[test]
    fn next_tier_says_what_is_missing() {
        let rules = TierRules::default();
        let next = rules.next(Tier::Insider, dec!(40000), 1).unwrap();
        assert_eq!(
            next,
            NextTier {
                tier: Tier::Vip,
                spend_needed: dec!(60000),
                categories_needed: 1
            }
        );
        let next = rules.next(Tier::Vip, dec!(350000), 4).unwrap();
        assert_eq!(
            next,
            NextTier {
                tier: Tier::Elite,
                spend_needed: dec!(0),
                categories_needed: 0
            }
        );
        assert_eq!(rules.next(Tier::Elite, dec!(0), 0), None);
        assert_eq!(
            rules.next(Tier::Vip, dec!(10_000_000), 4).map(|n| n.tier),
            Some(Tier::Elite),
            "nothing leads to the Inner Circle"
        );
        assert_eq!(rules.next(Tier::InnerCircle, dec!(0), 0), None);
    }

    #[test]
    fn the_inner_circle_is_never_earned_and_never_reviewed_away() {
        let rules = TierRules::default();
        assert_eq!(rules.multiplier(Tier::InnerCircle), dec!(2.5));
        assert_eq!(rules.earned(dec!(100_000_000), 4), Tier::Elite);
        assert_eq!(
            rules.after_purchase(Tier::Elite, dec!(100_000_000), 4),
            Tier::Elite
        );
        assert_eq!(
            rules.after_purchase(Tier::InnerCircle, dec!(0), 0),
            Tier::InnerCircle
        );
        assert_eq!(rules.after_review(Tier::InnerCircle, dec!(0), 0), None);
        assert_eq!(
            rules.after_review(Tier::Elite, dec!(150_000), 2),
            Some(Tier::Vip)
        );
        assert_eq!(rules.after_review(Tier::Vip, dec!(150_000), 2), None);
        // A stored row with thresholds for the Inner Circle changes nothing of that.
        let stored = TierRules::new(vec![TierRule {
            tier: Tier::InnerCircle,
            min_spend: dec!(1),
            min_categories: 0,
            multiplier: dec!(3),
        }]);
        assert_eq!(stored.earned(dec!(500_000), 4), Tier::Elite);
        assert_eq!(stored.multiplier(Tier::InnerCircle), dec!(3));
    }

    #[test]
    fn refunds_move_bonuses_proportionally_and_never_more_than_the_purchase_had() {
        // 1000 ₽ accrued 33.33; three refunds of 1/3 each.
        let first = refund_share(dec!(1000), dec!(33.33), dec!(0), dec!(0), dec!(333.33));
        assert_eq!(first, dec!(11.10)); // 11.1099…
        let second = refund_share(dec!(1000), dec!(33.33), dec!(333.33), first, dec!(333.33));
        assert_eq!(second, dec!(11.10));
        let last = refund_share(
            dec!(1000),
            dec!(33.33),
            dec!(666.66),
            first + second,
            dec!(333.34),
        );
        assert_eq!(first + second + last, dec!(33.33));
        // A refund larger than the purchase takes back only what is left.
        assert_eq!(
            refund_share(dec!(100), dec!(5), dec!(0), dec!(0), dec!(500)),
            dec!(5.00)
        );
    }

    #[test]
    fn coupons_discount_by_their_type_and_never_beyond_the_check() {
        assert_eq!(
            coupon_discount(DiscountType::Percent, dec!(15), dec!(999.99)),
            dec!(149.99)
        );
        assert_eq!(
            coupon_discount(DiscountType::Fixed, dec!(500), dec!(1200)),
            dec!(500.00)
        );
        assert_eq!(
            coupon_discount(DiscountType::Fixed, dec!(500), dec!(300)),
            dec!(300.00)
        );
        assert_eq!(
            coupon_discount(DiscountType::Bonus, dec!(300), dec!(1200)),
            dec!(0.00)
        );
        assert_eq!(
            coupon_discount(DiscountType::Percent, dec!(150), dec!(100)),
            dec!(100.00)
        );
        assert_eq!(discount_label(DiscountType::Percent, dec!(15.00)), "15 %");
        assert_eq!(
            discount_label(DiscountType::Bonus, dec!(300)),
            "300 бонусов"
        );
    }

    #[test]
    fn names_round_trip() {
        for tier in Tier::ALL {
            assert_eq!(tier.as_str().parse::<Tier>().unwrap(), tier);
        }
        for cat in Category::ALL {
            assert_eq!(cat.as_str().parse::<Category>().unwrap(), cat);
        }
        for kind in TransactionType::ALL {
            assert_eq!(kind.as_str().parse::<TransactionType>().unwrap(), kind);
        }
        assert!("vip".parse::<Tier>().is_err());
        for kind in EntryKind::ALL {
            assert_eq!(kind.as_str().parse::<EntryKind>().unwrap(), kind);
        }
        assert!("Refund".parse::<TransactionType>().is_err());
    }
}
