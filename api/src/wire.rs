//! Types as they travel in JSON, stricter than poem-openapi's own:
//!
//! - `Amount`: money is a decimal *string* with two places (`"1250.50"`), as DESIGN.md fixes;
//!   poem-openapi's `Decimal` trims trailing zeros (`"1250.5"`) and reads floats.
//! - `Text`: a string is a JSON string; poem-openapi's `String` also takes `123` and `true`,
//!   which the spec (and the fuzzer) calls a schema violation.
//! - `CategoryName`, `CrmType`, `StaffRole`, `Platform`: string enums whose values are the domain (or
//!   storage) enums' own names, so that each name is written once, not again in an
//!   `#[oai(rename)]`.

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef, Registry},
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
            pattern: Some(r"^-?[0-9]+(\.[0-9]+)?$".to_owned()),
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

/// What `Amount` reads: digits, optionally a sign and a fraction (how many places is the
/// business rules' call, which answer with a clear 422).
fn is_decimal_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

impl ParseFromJSON for Amount {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) if is_decimal_text(&s) => s
                .parse::<Decimal>()
                .map(Self)
                .map_err(|_| ParseError::custom("the amount is too large")),
            Value::String(_) => Err(ParseError::custom(
                "an amount is a decimal string such as \"1250.50\"",
            )),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for Amount {
    fn to_json(&self) -> Option<Value> {
        let mut value = self.0.round_dp(2);
        value.rescale(2);
        Some(Value::String(value.to_string()))
    }
}

/// A JSON string (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
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

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => Ok(Self(s)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// A domain enum on the wire: `$wire(domain value)`, a string enum in the spec named
/// `$wire` (with `$description`) whose values are `ALL`'s `as_str` names, as poem-openapi's
/// `Enum` derive would describe it.
macro_rules! wire_enum {
    ($wire:ident($domain:ty), $description:expr) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $wire(pub $domain);

        impl Type for $wire {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> Cow<'static, str> {
                stringify!($wire).into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Reference(Self::name().into_owned())
            }

            fn register(registry: &mut Registry) {
                registry.create_schema::<Self, _>(Self::name().into_owned(), |_| MetaSchema {
                    description: $description,
                    enum_items: <$domain>::ALL
                        .iter()
                        .map(|value| Value::String(value.as_str().to_owned()))
                        .collect(),
                    ..MetaSchema::new("string")
                });
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

        impl ParseFromJSON for $wire {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                let value = value.unwrap_or_default();
                match value.as_str().map(str::parse) {
                    Some(Ok(parsed)) => Ok(Self(parsed)),
                    _ => Err(ParseError::expected_type(value)),
                }
            }
        }

        impl ToJSON for $wire {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.as_str().to_owned()))
            }
        }
    };
}

wire_enum!(CategoryName(domain::Category), None);
wire_enum!(CrmType(domain::crm::CrmType), None);
wire_enum!(Platform(storage::devices::Platform), None);
wire_enum!(
    StaffRole(domain::roles::StaffRole),
    Some("A role at a business, as operators (`/admin/…`) and owners (`/business/staff`) give it.")
);

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn wire_enums_read_and_write_the_domain_names_and_nothing_else() {
        for crm in domain::crm::CrmType::ALL {
            let json = CrmType(crm).to_json();
            assert_eq!(json, Some(Value::String(crm.as_str().into())));
            assert_eq!(CrmType::parse_from_json(json).ok(), Some(CrmType(crm)));
        }
        for role in domain::roles::StaffRole::ALL {
            let json = StaffRole(role).to_json();
            assert_eq!(StaffRole::parse_from_json(json).ok(), Some(StaffRole(role)));
        }
        for wrong in [
            Value::from("1C"),
            Value::from("Owner"),
            Value::from(1),
            Value::Null,
        ] {
            assert!(
                CrmType::parse_from_json(Some(wrong.clone())).is_err(),
                "{wrong}"
            );
            assert!(
                StaffRole::parse_from_json(Some(wrong.clone())).is_err(),
                "{wrong}"
            );
        }
    }

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
    fn amounts_are_read_from_decimal_strings_only() {
        let parse = |v: Value| Amount::parse_from_json(Some(v)).map(|a| a.0).ok();
        assert_eq!(parse(Value::String("1250.50".into())), Some(dec!(1250.50)));
        assert_eq!(parse(Value::String("-1".into())), Some(dec!(-1)));
        assert_eq!(
            parse(Value::String("1.001".into())),
            Some(dec!(1.001)),
            "the rules refuse it, with a reason"
        );
        for bad in ["abc", " 5", "5.", ".5", "1e3", "", "+5"] {
            assert_eq!(parse(Value::String(bad.into())), None, "{bad:?}");
        }
        assert_eq!(
            parse(serde_json::json!(4500)),
            None,
            "numbers are not money strings"
        );
        assert_eq!(parse(Value::Bool(true)), None);
    }

    #[test]
    fn text_is_a_json_string_and_nothing_else() {
        assert_eq!(
            Text::parse_from_json(Some(Value::String("+7999".into()))).ok(),
            Some(Text("+7999".into()))
        );
        assert!(Text::parse_from_json(Some(serde_json::json!(12345))).is_err());
        assert!(Text::parse_from_json(Some(Value::Bool(true))).is_err());
        assert!(Text::parse_from_json(Some(Value::Null)).is_err());
    }
}
