//! One `#[OpenApi]` struct per area of DESIGN.md.

pub mod admin;
pub mod admin_users;
pub mod analytics;
pub mod audit;
pub mod auth;
pub mod business;
pub mod events;
pub mod loyalty;
pub mod media;
pub mod operations;
pub mod partner;
pub mod payments;
pub mod referral;
pub mod search;
pub mod settlement;
pub mod support;
pub mod users;

use crate::error::ApiError;
use domain::Money;
use rust_decimal::Decimal;
use storage::page::Cursor;

/// Parses an optional cursor query parameter.
pub(crate) fn parse_cursor(cursor: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    cursor
        .filter(|c| !c.is_empty())
        .map(|c| {
            Cursor::decode(c).map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))
        })
        .transpose()
}

/// Page sizes: 20 by default, at most 100.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<usize, ApiError> {
    match limit.unwrap_or(20) {
        n @ 1..=100 => Ok(n as usize),
        _ => Err(ApiError::unprocessable(
            "invalid_limit",
            "limit must be between 1 and 100",
        )),
    }
}

/// Parses an amount of money that may be zero.
pub(crate) fn non_negative_money(value: Decimal, field: &str) -> Result<Decimal, ApiError> {
    Money::parse(value)
        .map(Money::amount)
        .map_err(|e| ApiError::unprocessable("invalid_amount", format!("{field}: {e}")))
}

/// Parses an amount of money that must be more than zero.
pub(crate) fn positive_money(value: Decimal, field: &str) -> Result<Money, ApiError> {
    let money = Money::parse(value)
        .map_err(|e| ApiError::unprocessable("invalid_amount", format!("{field}: {e}")))?;
    if money.is_zero() {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            format!("{field} must be more than zero"),
        ));
    }
    Ok(money)
}
