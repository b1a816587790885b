//! What makes a purchase look suspicious enough to show operators.

use rust_decimal::Decimal;

/// A purchase is an outlier at or over `percent` % of its business's largest allowed check:
/// near the ceiling a superadmin set, it is worth a human look (an inflated check, a
/// typo with an extra zero, a staff member and a friend).
pub fn is_outlier(amount: Decimal, max_check_amount: Decimal, percent: Decimal) -> bool {
    amount * Decimal::ONE_HUNDRED >= max_check_amount * percent
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn outliers_start_at_the_share_of_the_largest_check() {
        let max = dec!(500000.00);
        assert!(!is_outlier(dec!(249999.99), max, dec!(50)));
        assert!(is_outlier(dec!(250000.00), max, dec!(50)));
        assert!(is_outlier(dec!(500000.00), max, dec!(50)));
        assert!(is_outlier(dec!(1000), dec!(10000), dec!(10)));
    }
}
