//! Filesystem blob store. Layout under the root:
//!   blobs/sha256/<first two hex>/<hex>   published, immutable blobs
//!   uploads/<upload id>                  temporary objects (resumable uploads, fetches in flight)
//! Publishing is fsync(file) + rename + fsync(dir), so a crash leaves either the old state or
//! the whole verified blob, never a partial one.

use super::{BlobError, BlobStore, BlobWriter, ByteStream, DualHasher};
use crate::model::{Algorithm, BlobInfo, Digest};
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

const READ_CHUNK: usize = 256 * 1024;

pub struct FsBlobStore {
    root: PathBuf,
    /// SHA-256 state of resumable uploads, so the final PUT need not read the file again.
    /// Missing (another process appended, or after a restart) means: hash the file at commit.
    upload_hashes: Mutex<HashMap<String, HashSlot>>,
}

enum HashSlot {
    Idle(Box<RunningHash>),
    Busy,
    Poisoned,
}

/// The hash of an upload's first `hashed` bytes.
struct RunningHash {
    hashed: u64,
    hasher: DualHasher,
}

impl FsBlobStore {
    pub async fn open(root: &Path) -> Result<FsBlobStore, BlobError> {
        fs::create_dir_all(root.join("blobs/sha256")).await?;
        fs::create_dir_all(root.join("uploads")).await?;
        remove_abandoned_fetches(&root.join("uploads")).await?;
        Ok(FsBlobStore { root: root.to_path_buf(), upload_hashes: Mutex::default() })
    }

    fn hashes(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSlot>> {
        self.upload_hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running hash of an upload at `offset`, for an append to continue. Two appends at
    /// once poison the slot: the file's bytes then decide at commit.
    fn start_append(&self, upload_id: &str, offset: u64) -> Option<RunningHash> {
        let mut hashes = self.hashes();
        let slot = hashes.remove(upload_id);
        let (next, running) = match slot {
            Some(HashSlot::Idle(r)) if r.hashed == offset => (HashSlot::Busy, Some(*r)),
            None if offset == 0 => (HashSlot::Busy, Some(RunningHash { hashed: 0, hasher: DualHasher::new(None) })),
            None => return None,
            _ => (HashSlot::Poisoned, None),
        };
        hashes.insert(upload_id.to_string(), next);
        running
    }

    fn end_append(&self, upload_id: &str, running: Option<RunningHash>) {
        let mut hashes = self.hashes();
        if let Some(HashSlot::Busy) = hashes.get(upload_id) {
            match running {
                Some(r) => hashes.insert(upload_id.to_string(), HashSlot::Idle(Box::new(r))),
                None => hashes.remove(upload_id),
            };
        }
    }

    /// The hash of a whole upload of `size` bytes, if every byte went through one append at a time.
    fn finish_hash(&self, upload_id: &str, size: u64) -> Option<DualHasher> {
        match self.hashes().remove(upload_id) {
            Some(HashSlot::Idle(r)) if r.hashed == size => Some(r.hasher),
            _ => None,
        }
    }

    async fn hash_file(file: &mut File, expected: Option<&Digest>) -> Result<DualHasher, BlobError> {
        let mut hasher = DualHasher::new(expected.map(Digest::algorithm));
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(hasher);
            }
            hasher.update(&buf[..n]);
        }
    }

    fn blob_path(&self, sha256: &Digest) -> PathBuf {
        let hex = sha256.hex();
        self.root.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    fn upload_path(&self, upload_id: &str) -> Result<PathBuf, BlobError> {
        let safe = !upload_id.is_empty() && upload_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !safe {
            return Err(BlobError::UploadNotFound);
        }
        Ok(self.root.join("uploads").join(upload_id))
    }

    async fn publish(&self, temp: &Path, sha256: &Digest) -> Result<(), BlobError> {
        let target = self.blob_path(sha256);
        let dir = target.parent().ok_or(BlobError::NotFound)?;
        fs::create_dir_all(dir).await?;
        let stored = match fs::metadata(&target).await {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if stored.is_some() && stored == Some(fs::metadata(temp).await?.len()) {
            // Same content already stored: single instance, drop the temporary copy.
            fs::remove_file(temp).await?;
            return Ok(());
        }
        if let Some(size) = stored {
            // A stored copy of another size cannot hash to its name: the verified bytes replace it.
            tracing::warn!("blob {sha256} on disk has {size} bytes, not its verified size: replaced");
        }
        fs::rename(temp, &target).await?;
        File::open(dir).await?.sync_all().await?;
        Ok(())
    }
}

/// Bytes are gathered into large writes: each file write is a hand-off to a blocking thread.
const WRITE_BATCH: usize = 512 * 1024;

struct FsWriter {
    file: File,
    path: PathBuf,
    batch: Vec<u8>,
    in_file: u64,
    hasher: DualHasher,
    store_root: PathBuf,
}

impl FsWriter {
    async fn write_batch(&mut self) -> Result<(), BlobError> {
        self.file.write_all(&self.batch).await?;
        self.in_file += self.batch.len() as u64;
        self.batch.clear();
        Ok(())
    }
}

#[async_trait]
impl BlobWriter for FsWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.hasher.update(chunk);
        self.batch.extend_from_slice(chunk);
        if self.batch.len() >= WRITE_BATCH {
            self.write_batch().await?;
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.in_file + self.batch.len() as u64
    }

    fn readable(&self) -> u64 {
        self.in_file
    }

    async fn commit(mut self: Box<Self>, expected: Option<&Digest>) -> Result<BlobInfo, BlobError> {
        self.write_batch().await?;
        self.file.flush().await?;
        self.file.sync_all().await?;
        let FsWriter { path, in_file: written, hasher, store_root, .. } = *self;
        let sha256 = match hasher.verify(expected) {
            Ok(d) => d,
            Err(e) => {
                let _ = fs::remove_file(&path).await;
                return Err(e);
            }
        };
        let store = FsBlobStore { root: store_root, upload_hashes: Mutex::default() };
        store.publish(&path, &sha256).await?;
        Ok(BlobInfo { sha256, size: written })
    }

    async fn abort(self: Box<Self>) {
        let _ = fs::remove_file(&self.path).await;
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn create(&self, upload_id: &str, algorithm: Algorithm) -> Result<Box<dyn BlobWriter>, BlobError> {
        let path = self.upload_path(upload_id)?;
        let file = File::create(&path).await?;
        Ok(Box::new(FsWriter {
            file,
            path,
            batch: Vec::with_capacity(WRITE_BATCH),
            in_file: 0,
            hasher: DualHasher::new(Some(algorithm)),
            store_root: self.root.clone(),
        }))
    }

    async fn open(&self, sha256: &Digest, range: Option<(u64, u64)>) -> Result<ByteStream, BlobError> {
        let file = match File::open(self.blob_path(sha256)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        match range {
            None => Ok(Box::pin(ReaderStream::with_capacity(file, READ_CHUNK))),
            Some((start, end)) => read_span(file, start, end + 1).await,
        }
    }

    async fn stat(&self, sha256: &Digest) -> Result<Option<u64>, BlobError> {
        match fs::metadata(self.blob_path(sha256)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, sha256: &Digest) -> Result<(), BlobError> {
        match fs::remove_file(self.blob_path(sha256)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn append_upload(
        &self,
        upload_id: &str,
        offset: u64,
        mut body: ByteStream,
        length: Option<u64>,
    ) -> Result<u64, BlobError> {
        let path = self.upload_path(upload_id)?;
        let file =
            OpenOptions::new().create(offset == 0).append(true).open(&path).await.map_err(not_found_as_upload)?;
        let current = file.metadata().await?.len();
        if current != offset {
            return Err(BlobError::OffsetMismatch { current, requested: offset });
        }
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BATCH, file);
        let mut running = self.start_append(upload_id, current);
        let mut size = current;
        let mut outcome = Ok(());
        while let Some(chunk) = body.next().await {
            let written = match chunk {
                Ok(chunk) => {
                    if let Some(r) = running.as_mut() {
                        r.hasher.update(&chunk);
                    }
                    file.write_all(&chunk).await.map(|()| chunk.len() as u64)
                }
                Err(e) => Err(e),
            };
            match written {
                Ok(n) if length.is_some_and(|l| size + n - current > l) => {
                    outcome = Err(BlobError::OffsetMismatch { current, requested: offset });
                    break;
                }
                Ok(n) => size += n,
                Err(e) => {
                    outcome = Err(e.into());
                    break;
                }
            }
        }
        if outcome.is_ok() && length.is_some_and(|l| size - current != l) {
            outcome = Err(BlobError::OffsetMismatch { current, requested: offset });
        }
        if let Err(e) = file.flush().await {
            self.end_append(upload_id, None);
            return Err(e.into());
        }
        if let Err(e) = outcome {
            // A chunk is all or nothing: roll the upload back to where it was.
            self.end_append(upload_id, None);
            file.get_ref().set_len(current).await?;
            return Err(e);
        }
        self.end_append(upload_id, running.map(|r| RunningHash { hashed: size, hasher: r.hasher }));
        Ok(size)
    }

    async fn upload_size(&self, upload_id: &str) -> Result<u64, BlobError> {
        let path = self.upload_path(upload_id)?;
        match fs::metadata(&path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    async fn open_upload(&self, upload_id: &str, offset: u64, end: u64) -> Result<ByteStream, BlobError> {
        let file = File::open(self.upload_path(upload_id)?).await.map_err(not_found_as_upload)?;
        read_span(file, offset, end).await
    }

    async fn commit_upload(&self, upload_id: &str, expected: Option<&Digest>) -> Result<BlobInfo, BlobError> {
        let path = self.upload_path(upload_id)?;
        let mut file = match File::open(&path).await {
            Ok(f) => f,
            // A chunkless upload (POST then PUT with an empty body) has no file yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                File::create(&path).await?;
                File::open(&path).await?
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        let sha256_expected = expected.is_none_or(|d| d.algorithm() == Algorithm::Sha256);
        let hasher = match self.finish_hash(upload_id, size) {
            Some(hasher) if sha256_expected => hasher,
            _ => Self::hash_file(&mut file, expected).await?,
        };
        file.sync_all().await?;
        let sha256 = hasher.verify(expected)?;
        self.publish(&path, &sha256).await?;
        Ok(BlobInfo { sha256, size })
    }

    async fn abort_upload(&self, upload_id: &str) -> Result<(), BlobError> {
        self.hashes().remove(upload_id);
        match fs::remove_file(self.upload_path(upload_id)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Upstream fetches run inside one process: temp files of fetches a crash interrupted can never
/// complete, so they go at start. (Client uploads stay: a client may resume them.)
async fn remove_abandoned_fetches(uploads: &Path) -> Result<(), BlobError> {
    let mut entries = fs::read_dir(uploads).await?;
    while let Some(entry) = entries.next_entry().await? {
        if entry.file_name().to_string_lossy().starts_with("fetch-") {
            fs::remove_file(entry.path()).await?;
        }
    }
    Ok(())
}

fn not_found_as_upload(e: std::io::Error) -> BlobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobError::UploadNotFound
    } else {
        e.into()
    }
}

async fn read_span(mut file: File, start: u64, end: u64) -> Result<ByteStream, BlobError> {
    file.seek(SeekFrom::Start(start)).await?;
    let limited = file.take(end.saturating_sub(start));
    Ok(Box::pin(ReaderStream::with_capacity(limited, READ_CHUNK)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::blob::{put_bytes, put_stream};
    use bytes::Bytes;

    async fn collect(s: ByteStream) -> Vec<u8> {
        s.map(|c| c.unwrap()).collect::<Vec<_>>().await.concat()
    }

    #[tokio::test]
    async fn put_verifies_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let want = Digest::sha256_of(b"hello");
        let info = put_bytes(&store, Bytes::from_static(b"hello"), Some(&want)).await.unwrap();
        assert_eq!(info.sha256, want);
        assert_eq!(info.size, 5);
        put_bytes(&store, Bytes::from_static(b"hello"), None).await.unwrap();
        assert_eq!(collect(store.open(&want, None).await.unwrap()).await, b"hello");
        assert_eq!(collect(store.open(&want, Some((1, 3))).await.unwrap()).await, b"ell");

        let wrong = Digest::sha256_of(b"other");
        let err = put_bytes(&store, Bytes::from_static(b"nope"), Some(&wrong)).await.unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }));
        assert_eq!(store.stat(&wrong).await.unwrap(), None);
        let mut leftovers = fs::read_dir(dir.path().join("uploads")).await.unwrap();
        assert!(leftovers.next_entry().await.unwrap().is_none(), "failed put left a temp file");
    }

    #[tokio::test]
    async fn a_stored_copy_of_the_wrong_size_is_replaced_by_verified_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let digest = Digest::sha256_of(b"hello");
        put_bytes(&store, Bytes::from_static(b"hello"), Some(&digest)).await.unwrap();
        std::fs::write(store.blob_path(&digest), b"").unwrap();
        put_bytes(&store, Bytes::from_static(b"hello"), Some(&digest)).await.unwrap();
        assert_eq!(collect(store.open(&digest, None).await.unwrap()).await, b"hello");
    }

    #[tokio::test]
    async fn sha512_expected_is_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let want = Digest::of(Algorithm::Sha512, b"abc");
        let info = put_bytes(&store, Bytes::from_static(b"abc"), Some(&want)).await.unwrap();
        assert_eq!(info.sha256, Digest::sha256_of(b"abc"));
    }

    #[tokio::test]
    async fn resumable_upload_checks_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let chunk = |b: &'static [u8]| -> ByteStream {
            Box::pin(futures::stream::once(async move { Ok(Bytes::from_static(b)) }))
        };
        assert_eq!(store.append_upload("u1", 0, chunk(b"abc"), None).await.unwrap(), 3);
        let err = store.append_upload("u1", 5, chunk(b"x"), None).await.unwrap_err();
        assert!(matches!(err, BlobError::OffsetMismatch { current: 3, requested: 5 }));
        let short = store.append_upload("u1", 3, chunk(b"de"), Some(3)).await.unwrap_err();
        assert!(matches!(short, BlobError::OffsetMismatch { .. }));
        assert_eq!(store.upload_size("u1").await.unwrap(), 3, "a refused chunk is rolled back");
        assert_eq!(store.append_upload("u1", 3, chunk(b"def"), Some(3)).await.unwrap(), 6);
        assert_eq!(collect(store.open_upload("u1", 2, 4).await.unwrap()).await, b"cd");
        let info = store.commit_upload("u1", Some(&Digest::sha256_of(b"abcdef"))).await.unwrap();
        assert_eq!(info.size, 6);
        assert!(store.upload_path("../x").is_err());
    }

    #[tokio::test]
    async fn commit_uses_the_running_hash_or_rehashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let chunk = |b: &'static [u8]| -> ByteStream {
            Box::pin(futures::stream::once(async move { Ok(Bytes::from_static(b)) }))
        };
        for id in ["fast", "wrong", "restart", "sha512"] {
            store.append_upload(id, 0, chunk(b"abc"), None).await.unwrap();
            store.append_upload(id, 3, chunk(b"def"), None).await.unwrap();
        }
        let want = Digest::sha256_of(b"abcdef");
        assert!(matches!(store.hashes().get("fast"), Some(HashSlot::Idle(r)) if r.hashed == 6));
        assert_eq!(store.commit_upload("fast", Some(&want)).await.unwrap().sha256, want);
        let wrong = store.commit_upload("wrong", Some(&Digest::sha256_of(b"abcdeX"))).await;
        assert!(matches!(wrong, Err(BlobError::DigestMismatch { .. })));
        let restarted = FsBlobStore::open(dir.path()).await.unwrap();
        assert_eq!(restarted.commit_upload("restart", None).await.unwrap().sha256, want);
        let sha512: Digest = format!("sha512:{}", hex_sha512(b"abcdef")).parse().unwrap();
        assert_eq!(store.commit_upload("sha512", Some(&sha512)).await.unwrap().sha256, want);
    }

    fn hex_sha512(bytes: &[u8]) -> String {
        use sha2::Digest as _;
        sha2::Sha512::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[tokio::test]
    async fn stream_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let body: ByteStream = Box::pin(futures::stream::once(async { Ok(Bytes::from_static(b"0123456789")) }));
        assert!(matches!(put_stream(&store, body, None, Some(4)).await, Err(BlobError::TooLarge(4))));
    }
}
