//! States stored as text (a tier, a coupon's discount type, a ledger entry's kind…) are read
//! back strictly: a value the code does not know is an error that names the row, never a
//! silent default.

use std::{fmt::Display, str::FromStr};

/// A state column held a value this build does not know (a hand edit, or a newer release
/// wrote it).
#[derive(Debug, thiserror::Error)]
#[error("{table} {row}: unknown {column} `{value}`")]
pub struct UnknownState {
    pub table: &'static str,
    /// The row's key.
    pub row: String,
    pub column: &'static str,
    pub value: String,
}

/// Parses `value`, read from `table`.`column` of the row keyed `row`.
pub(crate) fn parse<T: FromStr>(
    table: &'static str,
    row: impl Display,
    column: &'static str,
    value: &str,
) -> sqlx::Result<T> {
    value.parse().map_err(|_| {
        sqlx::Error::Decode(Box::new(UnknownState {
            table,
            row: row.to_string(),
            column,
            value: value.to_owned(),
        }))
    })
}

/// Reads the text column `column` of `row`, a row of `table` keyed `key`, strictly: for the
/// hand-written `FromRow` impls of rows that carry a state.
pub(crate) fn column<T: FromStr>(
    row: &sqlx::postgres::PgRow,
    table: &'static str,
    key: impl Display,
    column: &'static str,
) -> sqlx::Result<T> {
    use sqlx::Row;
    let value: String = row.try_get(column)?;
    parse(table, key, column, &value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{
        Tier,
        loyalty::{DiscountType, EntryKind, TransactionType},
    };

    #[test]
    fn an_unknown_state_is_an_error_naming_table_row_column_and_value() {
        let errors = [
            parse::<Tier>("users", "u-1", "status_tier", "Platinum").map(drop),
            parse::<DiscountType>("coupons", "u-1", "discount_type", "Percent").map(drop),
            parse::<TransactionType>("transactions", "u-1", "transaction_type", "exchange")
                .map(drop),
            parse::<EntryKind>("bonus_ledger", "u-1", "kind", "gift").map(drop),
        ];
        for (error, (table, column, value)) in errors.into_iter().zip([
            ("users", "status_tier", "Platinum"),
            ("coupons", "discount_type", "Percent"),
            ("transactions", "transaction_type", "exchange"),
            ("bonus_ledger", "kind", "gift"),
        ]) {
            let message = error.expect_err(value).to_string();
            for part in [table, "u-1", column, value] {
                assert!(message.contains(part), "`{part}` missing from `{message}`");
            }
        }
    }

    #[test]
    fn a_known_state_parses() {
        assert_eq!(
            parse::<Tier>("users", 1, "status_tier", "VIP").unwrap(),
            Tier::Vip
        );
        assert_eq!(
            parse::<DiscountType>("coupons", 1, "discount_type", "bonus").unwrap(),
            DiscountType::Bonus
        );
        assert_eq!(
            parse::<TransactionType>("transactions", 1, "transaction_type", "refund").unwrap(),
            TransactionType::Refund
        );
        assert_eq!(
            parse::<EntryKind>("bonus_ledger", 1, "kind", "referral").unwrap(),
            EntryKind::Referral
        );
    }
}
