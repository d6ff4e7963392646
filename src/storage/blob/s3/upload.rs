//! Uploads on S3: an upload is a run of part objects `uploads/<id>/<offset>`, so any node can
//! append to it, measure it and read it while it grows. `S3Writer` is the streaming writer.

use super::{backend, S3BlobStore, PART_SIZE};
use crate::model::{Algorithm, BlobInfo, Digest};
use crate::storage::blob::{BlobError, BlobWriter, ByteStream, DualHasher};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};
use std::sync::Arc;

/// Concurrent part uploads of one multipart upload (memory: this many parts).
const MULTIPART_CONCURRENCY: usize = 2;

pub(crate) struct Part {
    pub key: Path,
    pub offset: u64,
    pub size: u64,
}

pub(crate) struct Parts {
    store: Arc<AmazonS3>,
    dir: Path,
}

impl Parts {
    pub fn new(store: Arc<AmazonS3>, dir: Path) -> Parts {
        Parts { store, dir }
    }

    fn part_key(&self, offset: u64) -> Path {
        self.dir.child(format!("{offset:020}"))
    }

    async fn list_all(&self) -> Result<Vec<Part>, BlobError> {
        let metas: Vec<_> = self.store.list(Some(&self.dir)).try_collect().await.map_err(backend)?;
        let mut parts: Vec<Part> = metas
            .into_iter()
            .filter_map(|m| {
                let offset = m.location.filename()?.parse().ok()?;
                Some(Part { key: m.location, offset, size: m.size })
            })
            .collect();
        parts.sort_by_key(|p| p.offset);
        Ok(parts)
    }

    /// The parts that continue each other from offset 0 (a stray part past a gap is ignored).
    pub async fn list(&self) -> Result<Vec<Part>, BlobError> {
        let mut chain = Vec::new();
        let mut next = 0;
        for part in self.list_all().await? {
            if part.offset == next && (part.size > 0 || chain.is_empty()) {
                next += part.size;
                chain.push(part);
            }
        }
        Ok(chain)
    }

    pub async fn size(&self) -> Result<u64, BlobError> {
        Ok(self.list().await?.last().map_or(0, |p| p.offset + p.size))
    }

    pub async fn delete_all(&self) -> Result<(), BlobError> {
        for part in self.list_all().await? {
            match self.store.delete(&part.key).await {
                Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => return Err(backend(e)),
                _ => {}
            }
        }
        Ok(())
    }

    async fn put(&self, offset: u64, bytes: Bytes) -> Result<(), BlobError> {
        self.store.put(&self.part_key(offset), PutPayload::from_bytes(bytes)).await.map_err(backend)?;
        Ok(())
    }

    /// Append a chunk at `offset`: all of it, or (on error or wrong `length`) none of it.
    pub async fn append(&self, offset: u64, mut body: ByteStream, length: Option<u64>) -> Result<u64, BlobError> {
        let list = self.list().await?;
        let current = list.last().map_or(0, |p| p.offset + p.size);
        if list.is_empty() && offset > 0 {
            return Err(BlobError::UploadNotFound);
        }
        if current != offset {
            return Err(BlobError::OffsetMismatch { current, requested: offset });
        }
        let mismatch = BlobError::OffsetMismatch { current, requested: offset };
        let mut buf = BytesMut::new();
        let mut pos = current;
        let mut written = Vec::new();
        let outcome: Result<(), BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if length.is_some_and(|l| pos - current + (buf.len() + chunk.len()) as u64 > l) {
                    return Err(BlobError::OffsetMismatch { current, requested: offset });
                }
                buf.extend_from_slice(&chunk);
                if buf.len() >= PART_SIZE {
                    let part = buf.split().freeze();
                    written.push(pos);
                    self.put(pos, part.clone()).await?;
                    pos += part.len() as u64;
                }
            }
            Ok(())
        }
        .await;
        let outcome = outcome.and_then(|()| match length {
            Some(l) if pos - current + buf.len() as u64 != l => Err(mismatch),
            _ => Ok(()),
        });
        let outcome = match outcome {
            Ok(()) if !buf.is_empty() || (pos == 0 && list.is_empty()) => {
                written.push(pos);
                let last = buf.freeze();
                let n = last.len() as u64;
                self.put(pos, last).await.map(|()| pos += n)
            }
            other => other,
        };
        if let Err(e) = outcome {
            for offset in written {
                let _ = self.store.delete(&self.part_key(offset)).await;
            }
            return Err(e);
        }
        Ok(pos)
    }

    /// Bytes `[offset, end)` of the upload as far as it exists now.
    pub async fn read(&self, offset: u64, end: u64) -> Result<ByteStream, BlobError> {
        let spans: Vec<(Path, u64, u64)> = self
            .list()
            .await?
            .into_iter()
            .filter(|p| p.offset + p.size > offset && p.offset < end && p.size > 0)
            .map(|p| {
                let from = offset.max(p.offset) - p.offset;
                let to = end.min(p.offset + p.size) - p.offset;
                (p.key, from, to)
            })
            .collect();
        let store = self.store.clone();
        let stream = futures::stream::iter(spans)
            .then(move |(key, from, to)| {
                let store = store.clone();
                async move {
                    let options = GetOptions { range: Some(GetRange::Bounded(from..to)), ..Default::default() };
                    let got = store.get_opts(&key, options).await.map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(got.into_stream().map_err(std::io::Error::other))
                }
            })
            .try_flatten();
        Ok(Box::pin(stream))
    }

    /// Hash the whole upload.
    pub async fn hash(&self, list: &[Part], expected: Option<&Digest>) -> Result<DualHasher, BlobError> {
        let mut hasher = DualHasher::new(expected.map(Digest::algorithm));
        for part in list {
            let mut s = self.store.get(&part.key).await.map_err(backend)?.into_stream();
            while let Some(chunk) = s.next().await {
                hasher.update(&chunk.map_err(backend)?);
            }
        }
        Ok(hasher)
    }
}

/// Stream `list` into a multipart upload at `target`, hashing on the way; complete it only if
/// the content matches `expected`, abort it otherwise. Returns the SHA-256.
pub(crate) async fn concat(
    store: &Arc<AmazonS3>,
    list: &[Part],
    target: &Path,
    expected: Option<&Digest>,
) -> Result<Digest, BlobError> {
    let upload = store.put_multipart(target).await.map_err(backend)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut hasher = DualHasher::new(expected.map(Digest::algorithm));
    let copied: Result<(), BlobError> = async {
        for part in list {
            let mut s = store.get(&part.key).await.map_err(backend)?.into_stream();
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(backend)?;
                hasher.update(&chunk);
                writer.wait_for_capacity(MULTIPART_CONCURRENCY).await.map_err(backend)?;
                writer.put(chunk);
            }
        }
        Ok(())
    }
    .await;
    match copied.and_then(|()| hasher.verify(expected)) {
        Ok(sha256) => {
            writer.finish().await.map_err(backend)?;
            Ok(sha256)
        }
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

/// Stream `body` to `target` (None: already stored, only verify) as it arrives, verifying it
/// is `sha256`: one PUT if it fits a part, else a multipart upload aborted on mismatch.
pub(crate) async fn put_verified(
    store: &Arc<AmazonS3>,
    mut body: ByteStream,
    sha256: &Digest,
    target: Option<&Path>,
) -> Result<BlobInfo, BlobError> {
    let mut hasher = DualHasher::new(None);
    let mut first = BytesMut::new();
    let mut multipart: Option<WriteMultipart> = None;
    let mut size = 0u64;
    let streamed: Result<(), BlobError> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            let Some(target) = target else { continue };
            match multipart.as_mut() {
                Some(writer) => {
                    writer.wait_for_capacity(MULTIPART_CONCURRENCY).await.map_err(backend)?;
                    writer.put(chunk);
                }
                None => {
                    first.extend_from_slice(&chunk);
                    if first.len() >= PART_SIZE {
                        let upload = store.put_multipart(target).await.map_err(backend)?;
                        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                        writer.put(first.split().freeze());
                        multipart = Some(writer);
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    let verified = streamed.and_then(|()| hasher.verify(Some(sha256)));
    match (verified, multipart, target) {
        (Err(e), Some(writer), _) => {
            let _ = writer.abort().await;
            Err(e)
        }
        (Err(e), None, _) => Err(e),
        (Ok(_), Some(writer), _) => writer.finish().await.map(drop).map_err(backend),
        (Ok(_), None, Some(target)) => {
            let bytes = first.freeze();
            store.put(target, PutPayload::from_bytes(bytes)).await.map(drop).map_err(backend)
        }
        (Ok(_), None, None) => Ok(()),
    }?;
    Ok(BlobInfo { sha256: sha256.clone(), size })
}

/// Streaming writer: bytes go to part objects of `PART_SIZE`; a blob that never filled a part
/// is verified in memory and PUT once to its final key.
pub(crate) struct S3Writer {
    parts: Parts,
    buf: BytesMut,
    in_parts: u64,
    hasher: DualHasher,
    store: S3BlobStore,
}

impl S3Writer {
    pub fn new(parts: Parts, algorithm: Algorithm, store: S3BlobStore) -> S3Writer {
        S3Writer { parts, buf: BytesMut::new(), in_parts: 0, hasher: DualHasher::new(Some(algorithm)), store }
    }

    async fn flush(&mut self) -> Result<(), BlobError> {
        let part = self.buf.split().freeze();
        let n = part.len() as u64;
        self.parts.put(self.in_parts, part).await?;
        self.in_parts += n;
        Ok(())
    }
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.hasher.update(chunk);
        self.buf.extend_from_slice(chunk);
        if self.buf.len() >= PART_SIZE {
            self.flush().await?;
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.in_parts + self.buf.len() as u64
    }

    fn readable(&self) -> u64 {
        self.in_parts
    }

    async fn commit(mut self: Box<Self>, expected: Option<&Digest>) -> Result<BlobInfo, BlobError> {
        let size = self.written();
        let hasher = std::mem::replace(&mut self.hasher, DualHasher::new(None));
        let sha256 = match hasher.verify(expected) {
            Ok(d) => d,
            Err(e) => {
                let _ = self.parts.delete_all().await;
                return Err(e);
            }
        };
        if self.in_parts == 0 {
            let bytes = self.buf.split().freeze();
            self.store.publish_bytes(bytes, &sha256).await?;
        } else {
            if !self.buf.is_empty() {
                self.flush().await?;
            }
            self.store.publish_parts(&self.parts, &sha256).await?;
        }
        Ok(BlobInfo { sha256, size })
    }

    async fn abort(self: Box<Self>) {
        let _ = self.parts.delete_all().await;
    }
}
