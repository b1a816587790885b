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
