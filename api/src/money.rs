//! Money on the wire: a decimal string with exactly two places (`"1250.50"`), as DESIGN.md
//! fixes. poem-openapi's own `Decimal` trims trailing zeros (`"1250.5"`), hence this type.

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use rust_decimal::Decimal;
use serde_json::Value;
use std::borrow::Cow;

/// Roubles, bonuses or a percentage: read from a string or a number, written as a string
/// with two places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(pub Decimal);

impl Amount {
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl From<Decimal> for Amount {
    fn from(value: Decimal) -> Self {
        Self(value)
    }
}

impl Type for Amount {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "decimal2".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "A decimal string with two places: roubles, bonuses or a percentage, e.g. \"1250.50\"",
            ),
            pattern: Some(r"^-?[0-9]+(\.[0-9]{1,2})?$".to_owned()),
            ..MetaSchema::new_with_format("string", "decimal")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for Amount {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let decimal = match value.unwrap_or_default() {
            Value::String(s) => s
                .trim()
                .parse::<Decimal>()
                .map_err(|_| ParseError::custom("not a decimal number"))?,
            // Numbers are parsed from their JSON text, never through a float.
            Value::Number(n) => n
                .to_string()
                .parse::<Decimal>()
                .map_err(|_| ParseError::custom("not a decimal number"))?,
            other => return Err(ParseError::expected_type(other)),
        };
        Ok(Self(decimal))
    }
}

impl ToJSON for Amount {
    fn to_json(&self) -> Option<Value> {
        let mut value = self.0.round_dp(2);
        value.rescale(2);
        Some(Value::String(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn amounts_are_written_with_two_places() {
        assert_eq!(
            Amount(dec!(225)).to_json(),
            Some(Value::String("225.00".into()))
        );
        assert_eq!(
            Amount(dec!(68.4)).to_json(),
            Some(Value::String("68.40".into()))
        );
        assert_eq!(
            Amount(dec!(-0.5)).to_json(),
            Some(Value::String("-0.50".into()))
        );
    }

    #[test]
    fn amounts_are_read_from_strings_and_numbers_without_floats() {
        let parse = |v: Value| Amount::parse_from_json(Some(v)).map(|a| a.0).ok();
        assert_eq!(parse(Value::String("1250.50".into())), Some(dec!(1250.50)));
        assert_eq!(parse(serde_json::json!(0.1)), Some(dec!(0.1)));
        assert_eq!(parse(serde_json::json!(4500)), Some(dec!(4500)));
        assert_eq!(parse(Value::String("abc".into())), None);
        assert_eq!(parse(Value::Bool(true)), None);
    }
}
