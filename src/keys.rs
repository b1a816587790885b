//! The process's keys: the RS256 pair that signs access tokens and the AES key that seals
//! CRM credentials. In development they are generated once under `KRUG_KEY_DIR` (`.krug/`)
//! and reused by every process; in production they must be given.

use crate::config::{Config, Environment};
use anyhow::{Context, bail};
use aws_lc_rs::{
    encoding::AsDer,
    rsa::{KeyPair, KeySize},
    signature::KeyPair as _,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use secrecy::ExposeSecret;
use std::{fs, io::Write, path::Path};

/// Key material as read or generated.
pub struct Keys {
    pub jwt_private_pem: Vec<u8>,
    pub jwt_public_pem: Vec<u8>,
    pub secret_key_hex: String,
}

pub fn load(config: &Config) -> anyhow::Result<Keys> {
    let (jwt_private_pem, jwt_public_pem) = match (&config.jwt_private_key, &config.jwt_public_key)
    {
        (Some(private), Some(public)) => (
            fs::read(private).with_context(|| {
                format!("Failed to read KRUG_JWT_PRIVATE_KEY {}", private.display())
            })?,
            fs::read(public).with_context(|| {
                format!("Failed to read KRUG_JWT_PUBLIC_KEY {}", public.display())
            })?,
        ),
        (None, None) if config.environment == Environment::Development => {
            dev_jwt_pair(&config.key_dir)?
        }
        (None, None) => {
            bail!(
                "KRUG_ENV={} needs KRUG_JWT_PRIVATE_KEY and KRUG_JWT_PUBLIC_KEY (keys are generated in development only)",
                config.environment.as_str()
            )
        }
        _ => bail!("set both KRUG_JWT_PRIVATE_KEY and KRUG_JWT_PUBLIC_KEY, or neither"),
    };
    let secret_key_hex = match &config.secret_key {
        Some(hex) => hex.expose_secret().to_owned(),
        None if config.environment == Environment::Development => dev_secret_key(&config.key_dir)?,
        None => bail!(
            "KRUG_ENV={} needs KRUG_SECRET_KEY (64 hex digits; generated in development only)",
            config.environment.as_str()
        ),
    };
    Ok(Keys {
        jwt_private_pem,
        jwt_public_pem,
        secret_key_hex,
    })
}

/// The development key pair, generated on first use. Several processes (or the threads of
/// one: a test binary's tests) may start at once: each writes its own pair to a temporary
/// directory of its own and moves it into place; the loser of that race throws its pair
/// away and reads the winner's.
fn dev_jwt_pair(dir: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let pair_dir = dir.join("jwt");
    if !pair_dir.join("public.pem").exists() {
        fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
        let tmp = dir.join(format!("jwt.tmp-{}", unique_suffix()));
        fs::create_dir_all(&tmp)?;
        let (private_pem, public_pem) = generate_rsa_pair()?;
        write_private(&tmp.join("private.pem"), private_pem.as_bytes())?;
        fs::write(tmp.join("public.pem"), public_pem)?;
        if fs::rename(&tmp, &pair_dir).is_err() {
            let _ = fs::remove_dir_all(&tmp);
        } else {
            tracing::info!(dir = %pair_dir.display(), "generated a development JWT key pair");
        }
    }
    Ok((
        fs::read(pair_dir.join("private.pem"))?,
        fs::read(pair_dir.join("public.pem"))?,
    ))
}

/// A new RSA-2048 pair as PEM: PKCS#8 private key, SubjectPublicKeyInfo public key.
pub fn generate_rsa_pair() -> anyhow::Result<(String, String)> {
    let pair = KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("Failed to generate an RSA key"))?;
    let private = pair
        .as_der()
        .map_err(|_| anyhow::anyhow!("Failed to encode the RSA private key"))?;
    let public = pair
        .public_key()
        .as_der()
        .map_err(|_| anyhow::anyhow!("Failed to encode the RSA public key"))?;
    Ok((
        pem("PRIVATE KEY", private.as_ref()),
        pem("PUBLIC KEY", public.as_ref()),
    ))
}

/// RFC 7468 text encoding: base64 in lines of 64 between the label's lines.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn dev_secret_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("secret_key.hex");
    if !path.exists() {
        fs::create_dir_all(dir)?;
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut key);
        let tmp = dir.join(format!("secret_key.tmp-{}", unique_suffix()));
        write_private(&tmp, hex::encode(key).as_bytes())?;
        // hard_link fails if another process got there first; then theirs is the key.
        if fs::hard_link(&tmp, &path).is_ok() {
            tracing::info!(path = %path.display(), "generated a development secret key");
        }
        let _ = fs::remove_file(&tmp);
    }
    Ok(fs::read_to_string(&path)?.trim().to_owned())
}

/// A name no other process or thread writing the same key uses (the process id alone was
/// shared by the tests of one binary, which then failed on each other's temporary file).
fn unique_suffix() -> String {
    format!("{}-{:016x}", std::process::id(), rand::random::<u64>())
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated pair is what the API loads: a token it signs verifies with the public half.
    #[test]
    fn a_generated_pair_signs_and_verifies_access_tokens() {
        let (private, public) = generate_rsa_pair().unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let keys = api::jwt::JwtKeys::from_pem(private.as_bytes(), public.as_bytes()).unwrap();
        let user = uuid::Uuid::new_v4();
        let token = keys.issue(user, vec![], uuid::Uuid::new_v4());
        assert_eq!(keys.verify(&token).unwrap().sub, user);
        let (other, _) = generate_rsa_pair().unwrap();
        let other = api::jwt::JwtKeys::from_pem(other.as_bytes(), public.as_bytes()).unwrap();
        assert!(
            keys.verify(&other.issue(user, vec![], uuid::Uuid::new_v4()))
                .is_err()
        );
    }

    /// The tests of one binary start together on a fresh machine: each thread gets the keys,
    /// and all get the same ones.
    #[test]
    fn threads_of_one_process_generating_the_keys_at_once_all_get_the_same() {
        let dir = std::env::temp_dir().join(format!("krug-keys-race-{}", uuid::Uuid::new_v4()));
        let keys: Vec<_> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| (dev_jwt_pair(&dir).unwrap(), dev_secret_key(&dir).unwrap()))
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "only the pair and the key remain: {left:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
