//! Codes people read off a screen or type in: QR fallbacks and coupon codes.

use rand::Rng;

/// Upper-case letters and digits without the look-alikes 0/O, 1/I/L.
pub const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A random code of `len` characters from [`ALPHABET`].
pub fn human_code(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// True when `code` has the right length and only characters of [`ALPHABET`].
pub fn is_human_code(code: &str, len: usize) -> bool {
    code.len() == len && code.bytes().all(|b| ALPHABET.contains(&b))
}

/// A six-digit one-time password.
pub fn otp_code(rng: &mut impl Rng) -> String {
    format!("{:06}", rng.random_range(0..1_000_000u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_codes_avoid_ambiguous_characters() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let code = human_code(&mut rng, 10);
            assert!(is_human_code(&code, 10), "{code}");
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']), "{code}");
        }
        assert!(!is_human_code("ABCDEFGHJ0", 10));
        assert!(!is_human_code("ABC", 10));
    }

    #[test]
    fn otp_codes_are_six_digits() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let code = otp_code(&mut rng);
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
