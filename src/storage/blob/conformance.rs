//! The BlobStore conformance suite: one set of checks every engine must pass (fs, S3 on Garage).
//! Each check uses its own contents and upload ids, so all run against one store.

use super::{put_bytes, put_stream, BlobError, BlobStore, ByteStream};
use crate::model::{Algorithm, Digest};
use bytes::Bytes;
use futures::StreamExt;

async fn collect(s: ByteStream) -> Vec<u8> {
    s.map(|c| c.unwrap()).collect::<Vec<_>>().await.concat()
}

fn chunk(b: Vec<u8>) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(Bytes::from(b)) }))
}

/// `n` bytes that differ per `seed`.
fn data(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

pub async fn run_all(store: &dyn BlobStore, large: usize) {
    put_verifies_and_dedups(store).await;
    streamed_large_blob(store, large).await;
    resumable_upload_checks_offsets(store).await;
    resumable_multi_chunk(store, large).await;
    other_algorithms_and_empty(store).await;
    writer_readable_while_growing(store, large).await;
    finish_upload_in_one_pass_or_after_chunks(store, large).await;
}

/// The final PUT of an upload: monolithic (small and large), wrong digest, after chunks.
async fn finish_upload_in_one_pass_or_after_chunks(store: &dyn BlobStore, large: usize) {
    for (id, n) in [("conf-f-small", 1000), ("conf-f-large", large)] {
        let bytes = data(4, n);
        let want = Digest::sha256_of(&bytes);
        let chunks: Vec<_> = bytes.chunks(300_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let bad =
            store.finish_upload(id, 0, Box::pin(futures::stream::iter(chunks)), Some(&Digest::sha256_of(b"x"))).await;
        assert!(matches!(bad, Err(BlobError::DigestMismatch { .. })), "{id}");
        assert_eq!(store.stat(&want).await.unwrap(), None, "{id}: nothing published on mismatch");
        store.abort_upload(id).await.unwrap();
        let info = store.finish_upload(id, 0, chunk(bytes.clone()), Some(&want)).await.unwrap();
        assert_eq!((info.sha256.clone(), info.size), (want.clone(), n as u64));
        assert_eq!(collect(store.open(&want, None).await.unwrap()).await, bytes, "{id}");
        let again = store.finish_upload(&format!("{id}-2"), 0, chunk(bytes.clone()), Some(&want)).await.unwrap();
        assert_eq!(again.sha256, want, "{id}: an existing blob is verified, not rewritten");
    }
    let bytes = data(5, 5000);
    store.append_upload("conf-f-chunks", 0, chunk(bytes[..2000].to_vec()), None).await.unwrap();
    let want = Digest::sha256_of(&bytes);
    let info = store.finish_upload("conf-f-chunks", 2000, chunk(bytes[2000..].to_vec()), Some(&want)).await.unwrap();
    assert_eq!(info.size, 5000);
    assert_eq!(collect(store.open(&want, None).await.unwrap()).await, bytes);
}

async fn put_verifies_and_dedups(store: &dyn BlobStore) {
    let want = Digest::sha256_of(b"hello");
    let info = put_bytes(store, Bytes::from_static(b"hello"), Some(&want)).await.unwrap();
    assert_eq!((info.sha256.clone(), info.size), (want.clone(), 5));
    put_bytes(store, Bytes::from_static(b"hello"), None).await.unwrap();
    assert_eq!(collect(store.open(&want, None).await.unwrap()).await, b"hello");
    assert_eq!(collect(store.open(&want, Some((1, 3))).await.unwrap()).await, b"ell");
    assert_eq!(store.stat(&want).await.unwrap(), Some(5));
    let wrong = Digest::sha256_of(b"other");
    let err = put_bytes(store, Bytes::from_static(b"nope"), Some(&wrong)).await.unwrap_err();
    assert!(matches!(err, BlobError::DigestMismatch { .. }));
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert_eq!(store.stat(&Digest::sha256_of(b"nope")).await.unwrap(), None, "nothing published");
    assert!(matches!(store.open(&wrong, None).await, Err(BlobError::NotFound)));
    store.delete(&want).await.unwrap();
    store.delete(&want).await.unwrap();
    assert_eq!(store.stat(&want).await.unwrap(), None);
}

/// A blob larger than any buffer, written in small chunks, verified, and a wrong digest refused.
async fn streamed_large_blob(store: &dyn BlobStore, large: usize) {
    let bytes = data(1, large);
    let want = Digest::sha256_of(&bytes);
    let chunks: Vec<Bytes> = bytes.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
    let stream = |c: Vec<Bytes>| -> ByteStream { Box::pin(futures::stream::iter(c.into_iter().map(Ok))) };
    let body = stream(chunks.clone());
    let bad = Digest::sha256_of(b"not it");
    assert!(matches!(put_stream(store, body, Some(&bad), None).await, Err(BlobError::DigestMismatch { .. })));
    assert_eq!(store.stat(&bad).await.unwrap(), None);
    assert_eq!(store.stat(&want).await.unwrap(), None, "a refused blob is not published");
    let body = stream(chunks);
    assert_eq!(put_stream(store, body, Some(&want), None).await.unwrap().size, large as u64);
    assert_eq!(collect(store.open(&want, None).await.unwrap()).await, bytes);
    let (s, e) = (large as u64 / 2 - 3, large as u64 / 2 + 5);
    assert_eq!(collect(store.open(&want, Some((s, e))).await.unwrap()).await, &bytes[s as usize..=e as usize]);
}

async fn resumable_upload_checks_offsets(store: &dyn BlobStore) {
    assert_eq!(store.append_upload("conf-u1", 0, chunk(b"abc".to_vec()), None).await.unwrap(), 3);
    let err = store.append_upload("conf-u1", 5, chunk(b"x".to_vec()), None).await.unwrap_err();
    assert!(matches!(err, BlobError::OffsetMismatch { current: 3, requested: 5 }));
    let short = store.append_upload("conf-u1", 3, chunk(b"de".to_vec()), Some(3)).await.unwrap_err();
    assert!(matches!(short, BlobError::OffsetMismatch { .. }));
    assert_eq!(store.upload_size("conf-u1").await.unwrap(), 3, "a refused chunk is rolled back");
    assert_eq!(store.append_upload("conf-u1", 3, chunk(b"def".to_vec()), Some(3)).await.unwrap(), 6);
    assert_eq!(collect(store.open_upload("conf-u1", 2, 4).await.unwrap()).await, b"cd");
    let wrong = store.commit_upload("conf-u1", Some(&Digest::sha256_of(b"abcdeX"))).await;
    assert!(matches!(wrong, Err(BlobError::DigestMismatch { .. })));
    assert_eq!(store.stat(&Digest::sha256_of(b"abcdef")).await.unwrap(), None);
    let info = store.commit_upload("conf-u1", Some(&Digest::sha256_of(b"abcdef"))).await.unwrap();
    assert_eq!(info.size, 6);
    assert!(matches!(store.append_upload("../x", 0, chunk(vec![1]), None).await, Err(BlobError::UploadNotFound)));
    assert!(store.append_upload("conf-none", 4, chunk(vec![1]), None).await.is_err());
    store.append_upload("conf-gone", 0, chunk(b"zz".to_vec()), None).await.unwrap();
    store.abort_upload("conf-gone").await.unwrap();
    assert_eq!(store.upload_size("conf-gone").await.unwrap(), 0);
}

/// Many chunks, together larger than a part, committed with and without the digest up front.
async fn resumable_multi_chunk(store: &dyn BlobStore, large: usize) {
    let bytes = data(2, large);
    let want = Digest::sha256_of(&bytes);
    for (id, expected) in [("conf-m1", Some(&want)), ("conf-m2", None), ("conf-m3", Some(&Digest::sha256_of(b"x")))] {
        let mut offset = 0;
        for piece in bytes.chunks(large / 3 + 1) {
            offset = store.append_upload(id, offset, chunk(piece.to_vec()), Some(piece.len() as u64)).await.unwrap();
        }
        assert_eq!(store.upload_size(id).await.unwrap(), large as u64);
        let tail = collect(store.open_upload(id, large as u64 - 10, large as u64).await.unwrap()).await;
        assert_eq!(tail, &bytes[large - 10..]);
        match store.commit_upload(id, expected).await {
            Ok(info) => assert_eq!(info.sha256, want),
            Err(e) => assert!(matches!(e, BlobError::DigestMismatch { .. }) && id == "conf-m3", "{id}: {e}"),
        }
    }
    assert_eq!(collect(store.open(&want, None).await.unwrap()).await, bytes);
    assert_eq!(store.stat(&Digest::sha256_of(b"x")).await.unwrap(), None);
}

async fn other_algorithms_and_empty(store: &dyn BlobStore) {
    let want = Digest::of(Algorithm::Sha512, b"abc-512");
    let info = put_bytes(store, Bytes::from_static(b"abc-512"), Some(&want)).await.unwrap();
    assert_eq!(info.sha256, Digest::sha256_of(b"abc-512"));
    store.append_upload("conf-512", 0, chunk(b"up-512".to_vec()), None).await.unwrap();
    let info = store.commit_upload("conf-512", Some(&Digest::of(Algorithm::Sha512, b"up-512"))).await.unwrap();
    assert_eq!(info.sha256, Digest::sha256_of(b"up-512"));
    let empty = store.commit_upload("conf-empty", Some(&Digest::sha256_of(b""))).await.unwrap();
    assert_eq!(empty.size, 0);
    assert_eq!(store.stat(&Digest::sha256_of(b"")).await.unwrap(), Some(0));
}

/// What a writer has made readable can be read through `open_upload` before commit.
async fn writer_readable_while_growing(store: &dyn BlobStore, large: usize) {
    let bytes = data(3, large);
    let mut writer = store.create("fetch-conf-w", Algorithm::Sha256).await.unwrap();
    for piece in bytes.chunks(100_000) {
        writer.write(piece).await.unwrap();
    }
    let readable = writer.readable();
    assert!(readable > 0 && readable <= large as u64, "{readable}");
    let got = collect(store.open_upload("fetch-conf-w", 0, readable).await.unwrap()).await;
    assert_eq!(got, &bytes[..readable as usize]);
    let info = writer.commit(Some(&Digest::sha256_of(&bytes))).await.unwrap();
    assert_eq!(collect(store.open(&info.sha256, None).await.unwrap()).await, bytes);
    assert_eq!(store.upload_size("fetch-conf-w").await.unwrap(), 0, "parts are gone after commit");
}

mod engines {
    use super::run_all;
    use crate::config::{BlobBackend, BlobsConfig};
    use crate::storage::blob::fs::FsBlobStore;
    use crate::storage::blob::s3::{S3BlobStore, PART_SIZE};
    use crate::storage::testkit::{Garage, Moto};

    #[tokio::test]
    async fn fs_conforms() {
        let dir = tempfile::tempdir().unwrap();
        run_all(&FsBlobStore::open(dir.path()).await.unwrap(), 3 * 1024 * 1024).await;
    }

    pub fn s3_config(g: &Garage, prefix: &str) -> BlobsConfig {
        BlobsConfig {
            backend: BlobBackend::S3,
            endpoint: Some(g.endpoint.clone()),
            bucket: Some(g.bucket.clone()),
            region: Some(g.region.clone()),
            prefix: prefix.into(),
            access_key_id: Some(g.access_key_id.clone()),
            secret_access_key: Some(g.secret_access_key.clone()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn s3_on_garage_conforms() {
        let Some(garage) = Garage::start() else { return };
        let store = S3BlobStore::open(&s3_config(&garage, "conf/")).unwrap();
        run_all(&store, 2 * PART_SIZE + 12345).await;
    }

    /// A second S3 dialect: nothing may depend on Garage's particular behaviour.
    #[tokio::test]
    async fn s3_on_moto_conforms() {
        let Some(moto) = Moto::start() else { return };
        let config = BlobsConfig {
            backend: BlobBackend::S3,
            endpoint: Some(moto.endpoint.clone()),
            bucket: Some(moto.bucket.clone()),
            region: Some("us-east-1".into()),
            prefix: "conf/".into(),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            ..Default::default()
        };
        run_all(&S3BlobStore::open(&config).unwrap(), 2 * PART_SIZE + 12345).await;
    }
}
