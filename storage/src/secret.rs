//! Secrets at rest: AES-256-GCM for CRM credentials (and OTP codes in job payloads),
//! keyed hashes for OTP codes and refresh tokens.
//!
//! `KRUG_SECRET_KEY` is never used as a key itself: HKDF-SHA256 derives one key for
//! AES-GCM and another for the OTP HMAC, so that neither use can weaken the other.
//!
//! A sealed value is `[key version][12-byte nonce][ciphertext]`. The version names the key
//! it was sealed with (today 1: the derived key), so that a key rotation can tell old values
//! from new. Version 0 is what was stored before versions existed (the raw key, no
//! associated data): it opens only through [`SecretBox::open_versioned`], for rewriting.
//! Associated data binds a value to its owner (a CRM integration's id): credentials copied
//! onto another row do not open there.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The version of the key new values are sealed with.
pub const KEY_VERSION: u8 = 1;
/// Values sealed before versions existed: the raw key, no associated data.
const LEGACY_VERSION: u8 = 0;
const NONCE_LEN: usize = 12;

/// Seals and opens small secrets with AES-256-GCM (random nonce, stored with the value) and
/// computes the OTP HMAC, each with its own key derived from the master key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    /// The raw master key, only to open version-0 values.
    legacy_cipher: Aes256Gcm,
    mac_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// A secret that cannot be opened with our key.
#[derive(Debug, thiserror::Error)]
#[error("the sealed value is corrupt, belongs to another owner or was sealed with another key")]
pub struct OpenError;

/// What [`SecretBox::open_versioned`] found.
#[derive(Debug)]
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// Sealed with an older key version: seal it again.
    pub stale: bool,
}

impl SecretBox {
    pub fn new(master: [u8; 32]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(b"svoy-krug secret box"), &master);
        let derive = |info: &[u8]| {
            let mut key = [0u8; 32];
            hkdf.expand(info, &mut key)
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            key
        };
        Self {
            cipher: Aes256Gcm::new(&derive(b"aes-256-gcm key v1").into()),
            legacy_cipher: Aes256Gcm::new(&master.into()),
            mac_key: derive(b"otp hmac key v1"),
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

    /// Seals a value that belongs to no one in particular (an OTP code in a job payload).
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        self.seal_for(plaintext, b"")
    }

    /// Seals a value that opens only with the same `owner` (associated data).
    pub fn seal_for(&self, plaintext: &[u8], owner: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut out = vec![KEY_VERSION];
        out.extend_from_slice(&nonce);
        out.extend(
            self.cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: plaintext,
                        aad: owner,
                    },
                )
                .expect("AES-GCM encryption of an in-memory buffer cannot fail"),
        );
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        self.open_for(sealed, b"")
    }

    /// Opens a value sealed with [`Self::seal_for`] and the same `owner`.
    pub fn open_for(&self, sealed: &[u8], owner: &[u8]) -> Result<Vec<u8>, OpenError> {
        match sealed.split_first() {
            Some((&KEY_VERSION, rest)) => Self::decrypt(&self.cipher, rest, owner),
            _ => Err(OpenError),
        }
    }

    /// Opens a value of the current or an older version; an older one is `stale` and should
    /// be sealed again (with [`Self::seal_for`]) by whoever stores it.
    pub fn open_versioned(&self, sealed: &[u8], owner: &[u8]) -> Result<Opened, OpenError> {
        match sealed.split_first() {
            Some((&KEY_VERSION, rest)) => Ok(Opened {
                plaintext: Self::decrypt(&self.cipher, rest, owner)?,
                stale: false,
            }),
            Some((&LEGACY_VERSION, rest)) => Ok(Opened {
                plaintext: Self::decrypt(&self.legacy_cipher, rest, b"")?,
                stale: true,
            }),
            _ => Err(OpenError),
        }
    }

    fn decrypt(cipher: &Aes256Gcm, rest: &[u8], aad: &[u8]) -> Result<Vec<u8>, OpenError> {
        if rest.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, msg) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError)?;
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg, aad })
            .map_err(|_| OpenError)
    }

    /// HMAC-SHA256 under the derived OTP key, hex: how OTP codes are stored. A six-digit code
    /// hashed without a key would fall to a million guesses; with the key it needs the key.
    pub fn mac_hex(&self, parts: &[&str]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key).expect("HMAC takes any key size");
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
    fn values_sealed_for_an_owner_open_for_that_owner_only() {
        let secrets = SecretBox::new([7; 32]);
        let sealed = secrets.seal_for(b"api-key", b"integration-a");
        assert_eq!(sealed[0], KEY_VERSION);
        assert_eq!(
            secrets.open_for(&sealed, b"integration-a").unwrap(),
            b"api-key"
        );
        assert!(secrets.open_for(&sealed, b"integration-b").is_err());
        assert!(secrets.open(&sealed).is_err());
    }

    /// Values stored before key versions (nonce + ciphertext under the raw key) still open
    /// through `open_versioned`, marked stale, and never through `open_for`.
    #[test]
    fn legacy_values_open_as_stale_for_rewriting() {
        let master = [9u8; 32];
        let raw = Aes256Gcm::new(&master.into());
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut legacy = vec![LEGACY_VERSION];
        legacy.extend_from_slice(&nonce);
        legacy.extend(raw.encrypt(&nonce, b"old-token".as_slice()).unwrap());
        let secrets = SecretBox::new(master);

        let opened = secrets.open_versioned(&legacy, b"anyone").unwrap();

        assert_eq!(opened.plaintext, b"old-token");
        assert!(opened.stale);
        assert!(secrets.open_for(&legacy, b"anyone").is_err());
        let fresh = secrets.seal_for(b"x", b"o");
        assert!(!secrets.open_versioned(&fresh, b"o").unwrap().stale);
    }

    /// The AES key and the HMAC key are derived apart: neither is the master key.
    #[test]
    fn the_cipher_and_the_mac_use_keys_derived_from_the_master_key() {
        let master = [3u8; 32];
        let secrets = SecretBox::new(master);
        let with_master = <Hmac<Sha256> as Mac>::new_from_slice(&master)
            .unwrap()
            .chain_update(b"x");
        assert_ne!(secrets.mac_key, master);
        assert_ne!(
            secrets.mac_hex(&["x"]),
            hex::encode(with_master.finalize().into_bytes())
        );
        let sealed = secrets.seal(b"secret");
        let raw = Aes256Gcm::new(&master.into());
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().unwrap();
        assert!(
            raw.decrypt(&Nonce::from(nonce), &sealed[1 + NONCE_LEN..])
                .is_err()
        );
    }

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
