//! The single-instance blob store: every blob keyed by its SHA-256, written to a temporary
//! object while hashed, and published atomically only after the digest matches
//! (DESIGN.md invariant 4). Readers see either nothing or the whole verified blob.

#[cfg(test)]
mod conformance;
pub mod fs;
pub mod s3;

use crate::model::{Algorithm, BlobInfo, Digest, Hasher};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::pin::Pin;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("upload is at offset {current}, chunk starts at {requested}")]
    OffsetMismatch { current: u64, requested: u64 },
    #[error("upload not found")]
    UploadNotFound,
    #[error("blob is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A blob being written. Bytes go to a temporary object; `commit` publishes it.
#[async_trait]
pub trait BlobWriter: Send {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError>;
    /// Bytes accepted so far.
    fn written(&self) -> u64;
    /// Bytes already in the temporary object, readable through `open_upload`.
    fn readable(&self) -> u64;
    /// Verify against `expected` (any supported algorithm) and publish under the SHA-256.
    async fn commit(self: Box<Self>, expected: Option<&Digest>) -> Result<BlobInfo, BlobError>;
    async fn abort(self: Box<Self>);
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Start writing a blob into the upload area under `upload_id` (readable with `open_upload`).
    /// `algorithm` is the one the expected digest will use at commit (SHA-256 is always computed).
    async fn create(&self, upload_id: &str, algorithm: Algorithm) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Open a published blob, optionally a byte range `[start, end]` (inclusive, already validated).
    async fn open(&self, sha256: &Digest, range: Option<(u64, u64)>) -> Result<ByteStream, BlobError>;
    /// Size of a published blob, or None.
    async fn stat(&self, sha256: &Digest) -> Result<Option<u64>, BlobError>;
    async fn delete(&self, sha256: &Digest) -> Result<(), BlobError>;

    /// Append a chunk to a resumable upload (created empty if absent and `offset` is 0). With
    /// `length`, a chunk of any other length is rolled back and refused with `OffsetMismatch`.
    async fn append_upload(
        &self,
        upload_id: &str,
        offset: u64,
        body: ByteStream,
        length: Option<u64>,
    ) -> Result<u64, BlobError>;
    /// Bytes written so far into an upload.
    async fn upload_size(&self, upload_id: &str) -> Result<u64, BlobError>;
    /// Read an upload that may still be growing, from `offset` up to `end` (exclusive).
    async fn open_upload(&self, upload_id: &str, offset: u64, end: u64) -> Result<ByteStream, BlobError>;
    /// Hash a finished resumable upload, verify and publish it.
    async fn commit_upload(&self, upload_id: &str, expected: Option<&Digest>) -> Result<BlobInfo, BlobError>;
    async fn abort_upload(&self, upload_id: &str) -> Result<(), BlobError>;
    /// Append the last chunk `body` at `offset` and commit: what a client's final PUT does.
    /// Backends may do it in one pass (S3: a monolithic upload goes straight to its final key).
    async fn finish_upload(
        &self,
        upload_id: &str,
        offset: u64,
        body: ByteStream,
        expected: Option<&Digest>,
    ) -> Result<BlobInfo, BlobError> {
        self.append_upload(upload_id, offset, body, None).await?;
        self.commit_upload(upload_id, expected).await
    }
    /// A URL clients may fetch the published blob from directly (a presigned S3 GET), when the
    /// store is configured to redirect; None: serve the bytes through this process.
    async fn redirect_url(&self, _sha256: &Digest) -> Result<Option<url::Url>, BlobError> {
        Ok(None)
    }
}

/// Stream `body` into the store and publish it if it matches `expected`.
pub async fn put_stream(
    store: &dyn BlobStore,
    mut body: ByteStream,
    expected: Option<&Digest>,
    limit: Option<u64>,
) -> Result<BlobInfo, BlobError> {
    let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
    let mut writer = store.create(&uuid::Uuid::new_v4().to_string(), algorithm).await?;
    while let Some(chunk) = body.next().await {
        let step = match chunk {
            Ok(bytes) if limit.is_some_and(|l| writer.written() + bytes.len() as u64 > l) => {
                Err(BlobError::TooLarge(limit.unwrap_or(0)))
            }
            Ok(bytes) => writer.write(&bytes).await,
            Err(e) => Err(BlobError::Io(e)),
        };
        if let Err(e) = step {
            writer.abort().await;
            return Err(e);
        }
    }
    writer.commit(expected).await
}

pub async fn put_bytes(store: &dyn BlobStore, bytes: Bytes, expected: Option<&Digest>) -> Result<BlobInfo, BlobError> {
    let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
    put_stream(store, body, expected, None).await
}

/// Hashes for publishing: always SHA-256 (the store key), plus the client's algorithm if different.
pub struct DualHasher {
    sha256: Hasher,
    other: Option<Hasher>,
}

impl DualHasher {
    pub fn new(expected: Option<Algorithm>) -> DualHasher {
        let other = expected.filter(|a| *a != Algorithm::Sha256).map(Hasher::new);
        DualHasher { sha256: Hasher::new(Algorithm::Sha256), other }
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(h) = &mut self.other {
            h.update(bytes);
        }
    }
    /// The SHA-256, after checking `expected` against the matching hash.
    pub fn verify(self, expected: Option<&Digest>) -> Result<Digest, BlobError> {
        let sha256 = self.sha256.finish();
        let actual = match self.other {
            Some(h) => h.finish(),
            None => sha256.clone(),
        };
        match expected {
            Some(want) if *want != actual => {
                Err(BlobError::DigestMismatch { expected: want.to_string(), actual: actual.to_string() })
            }
            _ => Ok(sha256),
        }
    }
}
