//! Russian phone numbers, accepted in any common written form and kept as E.164.

use std::fmt;

/// A Russian phone number in E.164 form (`+79991234567`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

/// Why a string is not a Russian phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// Letters or other symbols that never appear in a written phone number.
    #[error("a phone number may contain only digits, spaces, brackets, dashes and a leading +")]
    InvalidCharacters,
    /// Not 10 national digits after the country code 7 (or the trunk prefix 8).
    #[error("a Russian phone number has 10 digits after +7 or 8")]
    WrongLength,
    /// The national number starts with a digit no Russian area or mobile code uses.
    #[error("not a Russian number: the code after +7 must start with 3, 4, 8 or 9")]
    NotRussian,
}

impl PhoneNumber {
    /// Parses `+7 (999) 123-45-67`, `8 999 123 45 67`, `79991234567` or `9991234567`.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        let mut digits = String::with_capacity(12);
        for (i, c) in trimmed.char_indices() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '(' | ')' | '.' | '\u{a0}' => {}
                _ => return Err(PhoneError::InvalidCharacters),
            }
        }
        let explicit_plus = trimmed.starts_with('+');
        let national = match digits.len() {
            11 if digits.starts_with('7') => &digits[1..],
            // `8` is the domestic trunk prefix; `+8…` is another country.
            11 if digits.starts_with('8') && !explicit_plus => &digits[1..],
            10 if !explicit_plus => &digits[..],
            _ => return Err(PhoneError::WrongLength),
        };
        if !matches!(national.as_bytes()[0], b'3' | b'4' | b'8' | b'9') {
            return Err(PhoneError::NotRussian);
        }
        Ok(Self(format!("+7{national}")))
    }

    /// Wraps a value already stored in E.164 form (read back from our own database).
    pub fn from_e164_unchecked(value: String) -> Self {
        Self(value)
    }

    /// A mobile number (`+79…`): the Russian plan gives mobile networks the codes 9xx and
    /// landlines the codes 3xx, 4xx and 8xx. Login codes go to mobiles only: an SMS to a
    /// landline range is money spent on a message nobody reads (or an SMS-pumping scheme).
    pub fn is_mobile(&self) -> bool {
        self.0.starts_with("+79")
    }

    /// Digits without the plus, as SMS gateways want them (`79991234567`).
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// The number with its middle hidden, for logs and operator screens: `+7999***4567`.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

/// Masks the middle of anything that looks like a phone: keeps the first five and last four characters.
pub fn mask_phone(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 10 {
        return "***".to_owned();
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_russian_forms_normalize_to_e164() {
        let cases = [
            "+7 (999) 123-45-67",
            "+79991234567",
            "89991234567",
            "8 999 123 45 67",
            "7 999 123 45 67",
            "9991234567",
            " 8(999)123-45-67 ",
            "+7.999.123.45.67",
        ];
        for case in cases {
            assert_eq!(
                PhoneNumber::parse(case).map(|p| p.to_string()),
                Ok("+79991234567".to_owned()),
                "input {case:?}"
            );
        }
    }

    #[test]
    fn anything_else_is_rejected_with_a_reason() {
        let cases = [
            ("", PhoneError::WrongLength),
            ("12345", PhoneError::WrongLength),
            ("+1 202 555 0143", PhoneError::WrongLength),
            ("+89991234567", PhoneError::WrongLength),
            ("899912345678", PhoneError::WrongLength),
            ("+7 999 123 45 6x", PhoneError::InvalidCharacters),
            ("phone", PhoneError::InvalidCharacters),
            ("+7 199 123 45 67", PhoneError::NotRussian),
            ("9+991234567", PhoneError::InvalidCharacters),
        ];
        for (case, expected) in cases {
            assert_eq!(PhoneNumber::parse(case), Err(expected), "input {case:?}");
        }
    }

    #[test]
    fn masking_keeps_country_code_prefix_and_last_four_digits() {
        let phone = PhoneNumber::parse("89991234567").unwrap();
        assert_eq!(phone.masked(), "+7999***4567");
        assert_eq!(phone.digits(), "79991234567");
        assert_eq!(mask_phone("short"), "***");
    }

    #[test]
    fn only_nine_codes_are_mobile() {
        assert!(PhoneNumber::parse("+7 999 123-45-67").unwrap().is_mobile());
        assert!(PhoneNumber::parse("8 (916) 000-00-00").unwrap().is_mobile());
        for landline in ["+7 495 123-45-67", "+7 812 123-45-67", "+7 343 123-45-67"] {
            assert!(
                !PhoneNumber::parse(landline).unwrap().is_mobile(),
                "{landline}"
            );
        }
    }
}
