//! Secrets at rest: AES-256-GCM for CRM credentials (and OTP codes in job payloads),
//! keyed hashes for OTP codes and refresh tokens.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng},
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Seals and opens small secrets with AES-256-GCM. The nonce is random and stored in front of
/// the ciphertext.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// A secret that cannot be opened with our key.
#[derive(Debug, thiserror::Error)]
#[error("the sealed value is corrupt or was sealed with another key")]
pub struct OpenError;

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(&key.into()),
            key,
        }
    }

    /// Parses the 64-hex-digit key of `KRUG_SECRET_KEY`.
    pub fn from_hex(hex_key: &str) -> Result<Self, String> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| "is not hex".to_owned())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 32 bytes (64 hex digits)".to_owned())?;
        Ok(Self::new(key))
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher
                .encrypt(&nonce, plaintext)
                .expect("AES-GCM encryption of an in-memory buffer cannot fail"),
        );
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < 12 {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| OpenError)?;
        self.cipher
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| OpenError)
    }

    /// HMAC-SHA256 under the same key, hex: how OTP codes are stored. A six-digit code hashed
    /// without a key would fall to a million guesses; with the key it needs the key.
    pub fn mac_hex(&self, parts: &[&str]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key size");
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(b"\x1f");
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

/// SHA-256, hex: refresh tokens are 256 random bits, so a plain hash is enough to make a
/// database leak useless.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_same_key_only() {
        let sealed = SecretBox::new([7; 32]).seal(b"partner-token");
        assert_eq!(
            SecretBox::new([7; 32]).open(&sealed).unwrap(),
            b"partner-token"
        );
        assert!(SecretBox::new([8; 32]).open(&sealed).is_err());
        assert!(SecretBox::new([7; 32]).open(&sealed[..5]).is_err());
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let secrets = SecretBox::new([1; 32]);
        assert_ne!(secrets.seal(b"x"), secrets.seal(b"x"));
    }

    #[test]
    fn keys_parse_from_64_hex_digits() {
        assert!(SecretBox::from_hex(&"ab".repeat(32)).is_ok());
        assert!(SecretBox::from_hex("abcd").is_err());
        assert!(SecretBox::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn macs_depend_on_key_and_every_part() {
        let a = SecretBox::new([1; 32]);
        let b = SecretBox::new([2; 32]);
        assert_eq!(
            a.mac_hex(&["+79991234567", "123456"]),
            a.mac_hex(&["+79991234567", "123456"])
        );
        assert_ne!(
            a.mac_hex(&["+79991234567", "123456"]),
            b.mac_hex(&["+79991234567", "123456"])
        );
        assert_ne!(
            a.mac_hex(&["+7999123456", "7123456"]),
            a.mac_hex(&["+79991234567", "123456"])
        );
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
    }
}
