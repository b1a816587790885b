//! The object store for media (business logos and photos, event covers, the onboarding
//! video): any S3-compatible service — Yandex Object Storage in production, the local
//! `s3s-fs` server that `scripts/services.sh` installs in development and tests.
//!
//! Clients never send files through the API: they `PUT` straight to a presigned URL
//! (AWS Signature V4 in the query string, valid a few minutes), and the API then reads the
//! object back to check it (`storage` knows nothing of S3; `api` and `jobs` hold this).

use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
    signer::Signer,
};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// Where the object store is (`S3_*` variables).
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `http://127.0.0.1:9100` (development) or `https://storage.yandexcloud.net`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

/// What went wrong with the object store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The configuration cannot make a client (a bad endpoint).
    #[error("object store configuration: {0}")]
    Config(String),
    /// The store did not answer or failed (worth trying again).
    #[error("object store unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(e: object_store::Error) -> ObjectError {
    ObjectError::Unavailable(e.to_string())
}

/// A bucket of the object store.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    store: AmazonS3,
}

impl ObjectStorage {
    pub fn new(config: &S3Config) -> Result<Self, ObjectError> {
        crate::install_tls_provider();
        let store = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose_secret())
            // Development runs the store on plain HTTP on loopback.
            .with_allow_http(config.endpoint.starts_with("http://"))
            .build()
            .map_err(|e| ObjectError::Config(e.to_string()))?;
        Ok(Self { store })
    }

    /// A URL that lets whoever holds it `PUT` the object at `key` for `ttl`.
    pub async fn presign_put(&self, key: &str, ttl: Duration) -> Result<String, ObjectError> {
        self.sign(reqwest::Method::PUT, key, ttl).await
    }

    /// A URL that lets whoever holds it `GET` the object at `key` for `ttl`.
    pub async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, ObjectError> {
        self.sign(reqwest::Method::GET, key, ttl).await
    }

    async fn sign(
        &self,
        method: reqwest::Method,
        key: &str,
        ttl: Duration,
    ) -> Result<String, ObjectError> {
        self.store
            .signed_url(method, &Path::from(key), ttl)
            .await
            .map(|url| url.to_string())
            .map_err(unavailable)
    }

    /// The object's size in bytes; `None` if there is no such object.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        match self.store.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The first `len` bytes of the object (fewer if it is shorter).
    pub async fn read_head(&self, key: &str, len: u64) -> Result<Vec<u8>, ObjectError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(0..len)),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&Path::from(key), options)
            .await
            .map_err(unavailable)?;
        Ok(result.bytes().await.map_err(unavailable)?.to_vec())
    }

    /// The whole object.
    pub async fn read(&self, key: &str) -> Result<Vec<u8>, ObjectError> {
        let result = self
            .store
            .get(&Path::from(key))
            .await
            .map_err(unavailable)?;
        Ok(result.bytes().await.map_err(unavailable)?.to_vec())
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ObjectError> {
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Deletes the object; deleting what is not there is fine.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

// Presigning is checked end to end against the real S3-compatible server (tests/system).
