//! S3-compatible blob store (AWS S3, Garage, MinIO, …) through the `object_store` crate.
//! Key layout under the configured prefix:
//!   blobs/sha256/<first two hex>/<hex>   published, immutable blobs
//!   uploads/<upload id>/<offset, 20 digits>   the parts of an upload in progress
//!   tmp/<uuid>                            a blob being assembled before its digest is known
//!
//! Visibility: a published key appears only with its whole, verified content. An upload lives
//! as separate part objects (readable while it grows, by any node); at commit the parts are
//! hashed and then (1) one part is copied server-side to the final key, or (2) several parts
//! are streamed into a multipart upload — straight to the final key when the expected SHA-256
//! is known (the multipart is aborted on mismatch, never completed), else to `tmp/` followed
//! by a server-side copy. A blob written in one go whose bytes fit one part is verified in
//! memory and PUT to its final key. Memory per transfer is bounded by a few parts.
//! No conditional PUT is used: two nodes publishing one digest write the same bytes.

mod upload;

use super::{BlobError, BlobStore, BlobWriter, ByteStream};
use crate::config::BlobsConfig;
use crate::model::{Algorithm, BlobInfo, Digest};
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use std::sync::Arc;
use std::time::Duration;
use upload::{Parts, S3Writer};

/// Size of an upload part object and of multipart parts (S3 needs ≥ 5 MiB but the last).
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    prefix: String,
    /// `redirect = true`: blob GETs are answered with a presigned URL valid this long.
    redirect: Option<Duration>,
}

/// How long a presigned blob URL stays valid (long enough for a slow client to start).
const REDIRECT_TTL: Duration = Duration::from_secs(15 * 60);

pub(crate) fn backend(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => BlobError::Io(std::io::Error::other(e)),
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3BlobStore {
    /// Open the bucket described by `[storage.blobs]`; credentials and region fall back to the
    /// usual AWS_* environment variables. Path-style requests unless configured otherwise.
    pub fn open(config: &BlobsConfig) -> Result<S3BlobStore, BlobError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(config.bucket.clone().unwrap_or_default())
            .with_virtual_hosted_style_request(config.virtual_hosted_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(backend)?;
        let redirect = config.redirect.then_some(REDIRECT_TTL);
        Ok(S3BlobStore { store: Arc::new(store), prefix: config.prefix.clone(), redirect })
    }

    fn key(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.prefix))
    }

    fn blob_key(&self, sha256: &Digest) -> Path {
        let hex = sha256.hex();
        self.key(&format!("blobs/sha256/{}/{hex}", &hex[..2]))
    }

    fn parts(&self, upload_id: &str) -> Result<Parts, BlobError> {
        let safe = !upload_id.is_empty() && upload_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !safe {
            return Err(BlobError::UploadNotFound);
        }
        Ok(Parts::new(self.store.clone(), self.key(&format!("uploads/{upload_id}/"))))
    }

    /// A presigned GET of a published blob, valid for `ttl`.
    pub async fn presigned_get(&self, sha256: &Digest, ttl: Duration) -> Result<url::Url, BlobError> {
        self.store.signed_url(http::Method::GET, &self.blob_key(sha256), ttl).await.map_err(backend)
    }

    /// Delete what crashed nodes left behind: parts of upstream fetches (`uploads/fetch-*`,
    /// never resumed by anyone) and `tmp/` objects last written more than `older_than` ago.
    /// Client uploads stay (a client may resume them). Returns how many objects went.
    /// Write and delete a probe object: a missing bucket or wrong credentials fail here, at
    /// start, instead of as "blob unknown" answers for content that exists.
    pub async fn check_access(&self) -> Result<(), BlobError> {
        let probe = self.key(&format!("tmp/probe-{}", uuid::Uuid::new_v4().simple()));
        self.store.put(&probe, PutPayload::from_static(b"binaryrepo")).await.map_err(backend)?;
        self.store.delete(&probe).await.map_err(backend)
    }

    pub async fn sweep_abandoned(&self, older_than: Duration) -> Result<usize, BlobError> {
        let older = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
        let cutoff = crate::model::unix_now().saturating_sub(older);
        let mut removed = 0;
        for dir in ["uploads", "tmp"] {
            let prefix = self.key(dir);
            let listed: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(backend)?;
            for meta in listed {
                let rest = meta.location.as_ref().strip_prefix(prefix.as_ref()).unwrap_or("");
                let abandoned = dir == "tmp" || rest.trim_start_matches('/').starts_with("fetch-");
                if abandoned && meta.last_modified.timestamp() <= cutoff {
                    match self.store.delete(&meta.location).await {
                        Err(e) if !is_not_found(&e) => return Err(backend(e)),
                        _ => removed += 1,
                    }
                }
            }
        }
        Ok(removed)
    }

    async fn exists(&self, key: &Path) -> Result<bool, BlobError> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    /// Publish a finished upload's parts (already verified as `sha256`), then drop the parts.
    /// Several parts are concatenated (and hashed again on the way: the copy is checked too).
    async fn publish_parts(&self, parts: &Parts, sha256: &Digest) -> Result<(), BlobError> {
        let target = self.blob_key(sha256);
        if !self.exists(&target).await? {
            let list = parts.list().await?;
            match list.as_slice() {
                [] => self.store.put(&target, PutPayload::default()).await.map(drop).map_err(backend)?,
                [one] => self.store.copy(&one.key, &target).await.map_err(backend)?,
                _ => upload::concat(&self.store, &list, &target, Some(sha256)).await.map(drop)?,
            }
        }
        parts.delete_all().await
    }

    /// Publish bytes already verified as `sha256`, in one PUT.
    async fn publish_bytes(&self, bytes: bytes::Bytes, sha256: &Digest) -> Result<(), BlobError> {
        let target = self.blob_key(sha256);
        if !self.exists(&target).await? {
            self.store.put(&target, PutPayload::from_bytes(bytes)).await.map_err(backend)?;
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn create(&self, upload_id: &str, algorithm: Algorithm) -> Result<Box<dyn BlobWriter>, BlobError> {
        let parts = self.parts(upload_id)?;
        Ok(Box::new(S3Writer::new(parts, algorithm, self.clone())))
    }

    async fn open(&self, sha256: &Digest, range: Option<(u64, u64)>) -> Result<ByteStream, BlobError> {
        let options = GetOptions { range: range.map(|(s, e)| GetRange::Bounded(s..e + 1)), ..Default::default() };
        let got = self.store.get_opts(&self.blob_key(sha256), options).await.map_err(backend)?;
        Ok(Box::pin(got.into_stream().map_err(std::io::Error::other)))
    }

    async fn stat(&self, sha256: &Digest) -> Result<Option<u64>, BlobError> {
        match self.store.head(&self.blob_key(sha256)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete(&self, sha256: &Digest) -> Result<(), BlobError> {
        match self.store.delete(&self.blob_key(sha256)).await {
            Err(e) if !is_not_found(&e) => Err(backend(e)),
            _ => Ok(()),
        }
    }

    async fn append_upload(
        &self,
        upload_id: &str,
        offset: u64,
        body: ByteStream,
        length: Option<u64>,
    ) -> Result<u64, BlobError> {
        self.parts(upload_id)?.append(offset, body, length).await
    }

    async fn upload_size(&self, upload_id: &str) -> Result<u64, BlobError> {
        Ok(self.parts(upload_id)?.size().await?)
    }

    async fn open_upload(&self, upload_id: &str, offset: u64, end: u64) -> Result<ByteStream, BlobError> {
        self.parts(upload_id)?.read(offset, end).await
    }

    async fn commit_upload(&self, upload_id: &str, expected: Option<&Digest>) -> Result<BlobInfo, BlobError> {
        let parts = self.parts(upload_id)?;
        let list = parts.list().await?;
        let size = list.iter().map(|p| p.size).sum();
        if list.len() <= 1 {
            let hasher = parts.hash(&list, expected).await?;
            let sha256 = hasher.verify(expected)?;
            self.publish_parts(&parts, &sha256).await?;
            return Ok(BlobInfo { sha256, size });
        }
        // Several parts: hash while concatenating, into the final key when it is known.
        let direct = expected.filter(|d| d.algorithm() == Algorithm::Sha256).map(|d| self.blob_key(d));
        if let Some(target) = &direct {
            if self.exists(target).await? {
                let sha256 = parts.hash(&list, expected).await?.verify(expected)?;
                parts.delete_all().await?;
                return Ok(BlobInfo { sha256, size });
            }
        }
        let target = direct.clone().unwrap_or_else(|| self.key(&format!("tmp/{}", uuid::Uuid::new_v4())));
        let sha256 = upload::concat(&self.store, &list, &target, expected).await?;
        if direct.is_none() {
            let published = self.blob_key(&sha256);
            let copied = self.store.copy(&target, &published).await.map_err(backend);
            let _ = self.store.delete(&target).await;
            copied?;
        }
        parts.delete_all().await?;
        Ok(BlobInfo { sha256, size })
    }

    async fn abort_upload(&self, upload_id: &str) -> Result<(), BlobError> {
        self.parts(upload_id)?.delete_all().await
    }

    /// A monolithic upload (no parts yet) with a SHA-256 known up front goes in one pass to its
    /// final key: one PUT when small, else a multipart upload completed only if the digest matches.
    async fn finish_upload(
        &self,
        upload_id: &str,
        offset: u64,
        body: ByteStream,
        expected: Option<&Digest>,
    ) -> Result<BlobInfo, BlobError> {
        let parts = self.parts(upload_id)?;
        match expected.filter(|d| d.algorithm() == Algorithm::Sha256) {
            Some(sha256) if offset == 0 && parts.list().await?.is_empty() => {
                let target = self.blob_key(sha256);
                let exists = self.exists(&target).await?;
                upload::put_verified(&self.store, body, sha256, (!exists).then_some(&target)).await
            }
            _ => {
                self.append_upload(upload_id, offset, body, None).await?;
                self.commit_upload(upload_id, expected).await
            }
        }
    }

    async fn redirect_url(&self, sha256: &Digest) -> Result<Option<url::Url>, BlobError> {
        match self.redirect {
            Some(ttl) => self.presigned_get(sha256, ttl).await.map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testkit::Garage;

    #[tokio::test]
    async fn sweep_removes_abandoned_fetches_and_keeps_client_uploads() {
        let Some(garage) = Garage::start() else { return };
        let config = BlobsConfig {
            endpoint: Some(garage.endpoint.clone()),
            bucket: Some(garage.bucket.clone()),
            region: Some(garage.region.clone()),
            access_key_id: Some(garage.access_key_id.clone()),
            secret_access_key: Some(garage.secret_access_key.clone()),
            prefix: "sweep/".into(),
            ..Default::default()
        };
        let store = S3BlobStore::open(&config).unwrap();
        let body = |b: &'static [u8]| -> ByteStream {
            Box::pin(futures::stream::once(async move { Ok(bytes::Bytes::from_static(b)) }))
        };
        store.append_upload("fetch-abc", 0, body(b"partial"), None).await.unwrap();
        store.append_upload("client-1", 0, body(b"resumable"), None).await.unwrap();
        assert_eq!(store.sweep_abandoned(Duration::from_secs(3600)).await.unwrap(), 0, "too young");
        assert_eq!(store.sweep_abandoned(Duration::ZERO).await.unwrap(), 1);
        assert_eq!(store.upload_size("fetch-abc").await.unwrap(), 0);
        assert_eq!(store.upload_size("client-1").await.unwrap(), 9);
    }
}
