//! RS256 access tokens (JWTs): what they say, the key pair that signs and verifies them, and
//! how long they and the refresh tokens that renew them live.
//!
//! Tokens are verified with the public key and RS256 only: a token signed with `alg: none`,
//! with HS256 (for example keyed with our public key), or with another RSA key is rejected,
//! and so is one of another issuer or audience. RSA runs on AWS-LC (jsonwebtoken's
//! `aws_lc_rs` backend), not on RustCrypto's `rsa` crate (RUSTSEC-2023-0071, a timing side
//! channel).

use crate::error::ApiError;
use domain::roles::PlatformRole;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Who signs our access tokens (`iss`) and who they are for (`aud`): a token of any other
/// issuer or audience signed with the same key — another service sharing it, a test
/// environment's — is refused.
pub const ISSUER: &str = "krug";
pub const AUDIENCE: &str = "krug-api";

/// Access tokens live 15 minutes; the refresh token renews them.
pub const ACCESS_TTL_S: i64 = 15 * 60;
/// Clock skew allowed on `exp`.
const LEEWAY_S: u64 = 5;
/// Refresh tokens live 30 days unless used (rotated) or revoked.
pub const REFRESH_TTL_S: i64 = 30 * 24 * 3600;

/// What an access token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    pub exp: i64,
    pub iat: i64,
    /// Always [`ISSUER`].
    pub iss: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// The session (the refresh-token family): ending it revokes this token at once.
    pub sid: Uuid,
    /// Platform roles (`superadmin`, `moderator`) at issue time.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Always `access`: a refresh token is not a JWT and cannot be confused with one.
    pub typ: String,
}

impl Claims {
    pub fn user_id(&self) -> Uuid {
        self.sub
    }

    /// Holds a platform role (a role name this build does not know grants nothing).
    pub fn is_operator(&self) -> bool {
        self.roles.iter().any(|r| r.parse::<PlatformRole>().is_ok())
    }

    pub fn is_superadmin(&self) -> bool {
        self.roles
            .iter()
            .any(|r| r == PlatformRole::Superadmin.as_str())
    }
}

/// The key pair that signs and verifies access tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    verified: Arc<Mutex<HashMap<[u8; 32], Claims>>>,
}

/// Tokens whose signature was checked, by SHA-256 of the token: an RS256 check costs more
/// than the rest of a balance request. A checked token stays checked until it expires
/// (checked on each use); whether its session has ended is asked on every use too
/// (`crate::auth`'s bearer check).
const VERIFIED_CAPACITY: usize = 100_000;

impl JwtKeys {
    pub fn from_pem(private_pem: &[u8], public_pem: &[u8]) -> anyhow::Result<Self> {
        Ok(Self {
            encoding: EncodingKey::from_rsa_pem(private_pem)?,
            decoding: DecodingKey::from_rsa_pem(public_pem)?,
            verified: Default::default(),
        })
    }

    /// An access token of session `sid` for `user_id`.
    pub fn issue(&self, user_id: Uuid, roles: Vec<String>, sid: Uuid) -> String {
        self.issue_with_lifetime(user_id, roles, sid, ACCESS_TTL_S)
    }

    /// A token valid `lifetime_s` seconds from now (negative: already expired, for tests).
    pub fn issue_with_lifetime(
        &self,
        user_id: Uuid,
        roles: Vec<String>,
        sid: Uuid,
        lifetime_s: i64,
    ) -> String {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: user_id,
            exp: now + lifetime_s,
            iat: now,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sid,
            roles,
            typ: "access".to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.encoding)
            .expect("RS256 signing with a valid key does not fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        {
            let mut verified = self.verified.lock().expect("verified tokens lock");
            match verified.get(&key) {
                Some(claims) if claims.exp + LEEWAY_S as i64 >= now => return Ok(claims.clone()),
                Some(_) => {
                    verified.remove(&key);
                }
                None => {}
            }
        }
        let claims = self.verify_signature(token)?;
        let mut verified = self.verified.lock().expect("verified tokens lock");
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, c| c.exp + LEEWAY_S as i64 >= now);
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(key, claims.clone());
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_S;
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::unauthorized(
                    "token_expired",
                    "The access token has expired; refresh it.",
                ),
                _ => ApiError::unauthorized("invalid_token", "The access token is not valid."),
            },
        )?;
        if data.claims.typ != "access" {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "The access token is not valid.",
            ));
        }
        Ok(data.claims)
    }
}
