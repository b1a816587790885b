//! Money: roubles as `Decimal` with at most two decimal places (kopecks), never a float.

use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;

/// The largest single check we accept: ten million roubles. Anything above is a typo or an attack.
pub const MAX_CHECK: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 2);

/// A non-negative amount of roubles with at most two decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

/// Why a decimal is not a valid amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// Less than zero.
    #[error("an amount cannot be negative")]
    Negative,
    /// Fractions of a kopeck.
    #[error("an amount has at most two decimal places (kopecks)")]
    TooPrecise,
    /// Above [`MAX_CHECK`].
    #[error("an amount cannot exceed 10 000 000.00")]
    TooLarge,
}

impl Money {
    /// Zero roubles.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Validates an amount: not negative, whole kopecks, at most [`MAX_CHECK`].
    pub fn parse(value: Decimal) -> Result<Self, MoneyError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(MoneyError::Negative);
        }
        if value.normalize().scale() > 2 {
            return Err(MoneyError::TooPrecise);
        }
        if value > MAX_CHECK {
            return Err(MoneyError::TooLarge);
        }
        Ok(Self(value.round_dp(2)))
    }

    /// The amount as a decimal with exactly two places.
    pub fn amount(self) -> Decimal {
        let mut value = self.0;
        value.rescale(2);
        value
    }

    /// True for zero roubles.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.amount())
    }
}

/// Rounds towards zero to whole kopecks: bonuses are never rounded up in the member's favour
/// or against them by more than a kopeck, and a reversal never exceeds its accrual.
pub fn floor_to_kopeck(value: Decimal) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(2, RoundingStrategy::ToZero);
    rounded.rescale(2);
    rounded
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn floor_to_kopeck_truncates_fractions_of_a_kopeck() {
        let cases = [
            (dec!(12.349), dec!(12.34)),
            (dec!(12.3), dec!(12.30)),
            (dec!(0.009), dec!(0.00)),
            (dec!(-1.239), dec!(-1.23)),
            (dec!(100), dec!(100.00)),
        ];
        for (input, expected) in cases {
            let out = floor_to_kopeck(input);
            assert_eq!(out, expected, "input {input}");
            assert_eq!(out.scale(), 2, "input {input} keeps two places");
        }
    }

    #[test]
    fn money_accepts_whole_kopecks_and_rejects_the_rest() {
        assert_eq!(Money::parse(dec!(1250.5)).unwrap().to_string(), "1250.50");
        assert_eq!(Money::parse(dec!(0)).unwrap(), Money::ZERO);
        assert_eq!(Money::parse(dec!(1.0000)).unwrap().to_string(), "1.00");
        assert_eq!(Money::parse(dec!(-0.01)), Err(MoneyError::Negative));
        assert_eq!(Money::parse(dec!(1.001)), Err(MoneyError::TooPrecise));
        assert_eq!(Money::parse(dec!(10000000.01)), Err(MoneyError::TooLarge));
        assert!(Money::parse(MAX_CHECK).is_ok());
    }
}
