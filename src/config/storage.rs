//! `[storage]`: where blobs and metadata live. Defaults are the embedded engines under
//! `storage.path` (filesystem blobs, SQLite); `[storage.database] url = "postgres://…"` and
//! `[storage.blobs] backend = "s3"` select the scale-out engines.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Filesystem blobs and the SQLite metadata database live under this directory.
    #[serde(default = "default_data")]
    pub path: PathBuf,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub blobs: BlobsConfig,
    /// Upload sessions older than this are removed with their bytes.
    #[serde(default = "default_upload_ttl", with = "humantime_serde")]
    pub upload_ttl: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_data(),
            database: DatabaseConfig::default(),
            blobs: BlobsConfig::default(),
            upload_ttl: default_upload_ttl(),
        }
    }
}

fn default_upload_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_data() -> PathBuf {
    PathBuf::from("./data")
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/db` or `sqlite:<file>`; default: SQLite under `storage.path`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    #[default]
    Fs,
    S3,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobsConfig {
    #[serde(default)]
    pub backend: BlobBackend,
    /// S3 endpoint URL (scheme://host:port); default: the AWS endpoint of `region`.
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    /// Signing region (Garage: its `s3_region`); default from AWS_REGION, else `us-east-1`.
    pub region: Option<String>,
    /// Key prefix inside the bucket, e.g. `binaryrepo/`.
    #[serde(default)]
    pub prefix: String,
    /// Credentials; default from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Virtual-hosted-style addressing (bucket in the host name); default path-style.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Blob GETs answer 307 to a presigned URL of the object instead of streaming it.
    #[serde(default)]
    pub redirect: bool,
}

impl BlobsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.backend == BlobBackend::S3 && self.bucket.as_deref().unwrap_or("").is_empty() {
            return Err("storage.blobs.bucket is required with backend = \"s3\"".into());
        }
        if !self.prefix.is_empty() && !self.prefix.ends_with('/') {
            return Err("storage.blobs.prefix must end with '/'".into());
        }
        Ok(())
    }
}
