//! The remote-repository cache layer (issue 3) against `FakeUpstream`, asserting exact
//! upstream request counts: one upstream fetch per blob shared by every waiter and streamed
//! to each from the first byte, detached from the client that started it; failed fetches
//! abort every waiter and cache nothing; tag freshness (HEAD revalidation, `metadata_ttl`),
//! serve-stale, rate-limit back-off, the negative cache, `offline`, `Cache-Status`, several
//! remotes under one virtual repository and containerd's `?ns=` mirror mode.
//!
//! Ordering facts ("the client had bytes before the upstream finished") are made
//! deterministic with gates in the fake upstream, never with sleeps or timings; every wait
//! is bounded.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::images::{descriptors, sha256_digest};
use crate::oci::{noise, Fetched, OciClient, TestImage};
use crate::server::{docker_repos, TestServer, NO_UPSTREAM};
use crate::upstream::{FakeUpstream, Fault};

/// Bound for every wait in this module (a failure, never a measurement).
const BOUND: Duration = Duration::from_secs(120);
/// Bound for the first bytes or headers of a response to arrive: shorter than the server's
/// 60 s upstream read timeout, so a gate held while a test waits never makes the fetch fail.
const SIGNAL_BOUND: Duration = Duration::from_secs(30);
const MIB: usize = 1 << 20;
/// How many leading bytes of each streamed body are kept to compare.
const PREFIX: usize = 64 * 1024;

// ------------------------------------------------------------------ helpers

/// A `[[repository]]` table for a docker remote; `extra` holds more `key = value` lines.
fn remote(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "\n[[repository]]\nname = \"{name}\"\nformat = \"docker\"\nkind = \"remote\"\nupstream = \"{upstream}\"\n{extra}\n"
    )
}

fn virtual_repo(name: &str, members: &[&str]) -> String {
    let members: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "\n[[repository]]\nname = \"{name}\"\nformat = \"docker\"\nkind = \"virtual\"\nmembers = [{}]\n",
        members.join(", ")
    )
}

/// A client for long streaming reads (50 × 100 MiB through a debug build takes a while).
pub(crate) fn streaming_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(600)).build().expect("reqwest client")
}

/// What one streaming GET saw; the body is hashed, never kept (only its first bytes).
#[derive(Debug)]
pub(crate) struct BlobRead {
    status: StatusCode,
    cache_status: Option<String>,
    len: u64,
    digest: String,
    prefix: Vec<u8>,
    /// The body ended with an error (aborted by the server) instead of cleanly.
    error: Option<String>,
    /// We hung up on purpose after `stop_at` bytes.
    stopped: bool,
}

impl BlobRead {
    #[track_caller]
    pub(crate) fn assert_complete(&self, what: &str, len: usize, digest: &str, cache: &str) {
        assert_eq!(self.status, StatusCode::OK, "{what}: {self:?}");
        assert!(self.error.is_none(), "{what}: body aborted: {self:?}");
        assert_eq!(self.len, len as u64, "{what}: wrong length");
        assert_eq!(self.digest, digest, "{what}: wrong bytes");
        let status = self.cache_status.as_deref().unwrap_or("");
        assert!(status.contains(cache), "{what}: Cache-Status {status:?} should contain {cache:?}");
    }
}

/// GETs `url` and streams the body through SHA-256. Once `signal.0` bytes arrived (0: once
/// the response headers arrived), one message goes to `signal.1`; after `stop_at` bytes the
/// response is dropped (the connection is closed mid-body).
pub(crate) async fn read_blob(
    http: reqwest::Client,
    url: String,
    range: Option<String>,
    signal: Option<(u64, mpsc::UnboundedSender<()>)>,
    stop_at: Option<u64>,
) -> Result<BlobRead> {
    let mut request = http.get(&url);
    if let Some(range) = range {
        request = request.header(reqwest::header::RANGE, range);
    }
    let mut response = request.send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let cache_status = response.headers().get("cache-status").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut prefix = Vec::new();
    let mut signal = signal;
    if signal.as_ref().is_some_and(|(at, _)| *at == 0) {
        let (_, tx) = signal.take().expect("signal");
        let _ = tx.send(());
    }
    let mut error = None;
    let mut stopped = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if prefix.len() < PREFIX {
                    prefix.extend_from_slice(&chunk[..chunk.len().min(PREFIX - prefix.len())]);
                }
                hasher.update(&chunk);
                len += chunk.len() as u64;
                if signal.as_ref().is_some_and(|(at, _)| len >= *at) {
                    let (_, tx) = signal.take().expect("signal");
                    let _ = tx.send(());
                }
                if stop_at.is_some_and(|at| len >= at) {
                    stopped = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    drop(response);
    Ok(BlobRead {
        status,
        cache_status,
        len,
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        prefix,
        error,
        stopped,
    })
}

/// Receives `n` signals from readers (bounded); fails early if every reader ended first.
pub(crate) async fn signals(rx: &mut mpsc::UnboundedReceiver<()>, n: usize, what: &str) {
    for got in 0..n {
        match tokio::time::timeout(SIGNAL_BOUND, rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => panic!("{what}: readers ended after only {got} of {n} signals"),
            Err(_) => panic!("{what}: only {got} of {n} signals within {SIGNAL_BOUND:?}"),
        }
    }
}

/// Waits (bounded polling of the server log) until `n` background completions of cached
/// images (child manifests and referrers, which make upstream requests of their own) ended.
async fn wait_prefetch(srv: &TestServer, n: usize) {
    let deadline = Instant::now() + BOUND;
    while srv.log().matches("cached image completed").count() < n {
        assert!(Instant::now() < deadline, "prefetch {n} did not finish:\n{}", srv.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cache_status(r: &Fetched) -> &str {
    r.header("cache-status").unwrap_or("")
}

/// Served stale: says `stale`, and is not a revalidation (whose `fwd=stale` also says it).
fn is_stale(r: &Fetched) -> bool {
    let status = cache_status(r);
    status.contains("stale") && !status.contains("revalidated")
}

/// Pulls like a client: the manifest, then every blob it lists, checking every digest.
async fn pull(oci: &OciClient, name: &str, reference: &str) -> Result<Fetched> {
    let m = oci.get_manifest(name, reference).await?;
    ensure!(m.status == StatusCode::OK, "manifest {name}:{reference}: {} {}", m.status, m.text());
    for d in descriptors(&m.body) {
        let b = oci.get_blob(name, &d.digest).await?;
        ensure!(b.status == StatusCode::OK, "blob {}: {} {}", d.digest, b.status, b.text());
        ensure!(sha256_digest(&b.body) == d.digest, "blob {} has wrong bytes", d.digest);
    }
    Ok(m)
}

fn blob_file(srv: &TestServer, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    srv.data_dir().join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// Temporary files of upstream fetches left in `data/uploads`.
fn fetch_leftovers(srv: &TestServer) -> Vec<String> {
    std::fs::read_dir(srv.data_dir().join("uploads"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("fetch-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The `rate_limit` object of repository `name` in `GET /api/v1/repositories`.
async fn rate_limit(oci: &OciClient, name: &str) -> Result<Value> {
    let r = oci.get("/api/v1/repositories").await?;
    ensure!(r.status == StatusCode::OK, "/api/v1/repositories: {} {}", r.status, r.text());
    let all = r.json();
    let repo = all["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == name)
        .with_context(|| format!("{name} not in {all}"))?;
    Ok(repo["rate_limit"].clone())
}

// ------------------------------------------------------------------ 1. coalescing

/// 50 concurrent cold GETs of one 100 MiB blob make exactly one upstream GET and get 50
/// identical, correct bodies. The client that started the fetch hangs up at 10 % before
/// anyone else joined, and another one hangs up at 10 % while the 50 are reading: the
/// fetch runs on, detached from both. (That joiners are streamed bytes while the fetch
/// runs is checked by `blob_bytes_reach_clients_before_the_upstream_finishes`; here they
/// only need their response headers while the upstream is held.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_cold_pulls_of_a_100mib_blob_make_one_upstream_fetch() -> Result<()> {
    const SIZE: usize = 100 * MIB;
    let fake = FakeUpstream::start(TestImage::new(300, &[100])).await;
    let digest = fake.add_blob(Bytes::from(noise(301, SIZE)));
    // The upstream sends half the body, then holds the rest until every client is in.
    let gate = fake.gate_blob_bodies(SIZE / 2);
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let url = format!("{}/v2/docker-remote/busybox/blobs/{digest}", srv.base_url());
    let http = streaming_client();
    let tenth = (SIZE / 10) as u64;

    // The first client starts the fetch, reads 10 % and hangs up.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let starter = read_blob(http.clone(), url.clone(), None, Some((tenth, tx.clone())), Some(tenth)).await?;
    assert!(starter.stopped && starter.error.is_none(), "{starter:?}");
    assert!(starter.cache_status.as_deref().unwrap_or("").contains("fwd=uri-miss"), "{starter:?}");
    assert_eq!(fake.blob_gets(&digest), 1);
    signals(&mut rx, 1, "starter").await;

    // Fifty clients and one more quitter join the fetch, which is still held at half the body.
    let readers: Vec<_> = (0..50)
        .map(|_| tokio::spawn(read_blob(http.clone(), url.clone(), None, Some((0, tx.clone())), None)))
        .collect();
    let quitter = tokio::spawn(read_blob(http.clone(), url.clone(), None, Some((0, tx.clone())), Some(tenth)));
    drop(tx);
    signals(&mut rx, 51, "joined readers' response headers").await;
    assert_eq!(fake.blob_gets(&digest), 1, "joiners must not fetch again: {:?}", fake.all_hits());
    // The upstream sent its first half and is holding the rest.
    gate.wait_reached(1).await;
    assert!(!gate.is_open());

    gate.open();
    let quitter = quitter.await??;
    assert!(quitter.stopped && quitter.error.is_none() && quitter.len < SIZE as u64, "{quitter:?}");
    let mut collapsed = 0;
    for (i, reader) in join_all(readers).await.into_iter().enumerate() {
        let read = reader??;
        read.assert_complete(&format!("reader {i}"), SIZE, &digest, "fwd=uri-miss");
        collapsed += usize::from(read.cache_status.as_deref().is_some_and(|s| s.contains("collapsed")));
    }
    assert_eq!(collapsed, 50, "every joiner reports Cache-Status collapsed");
    assert_eq!(fake.blob_gets(&digest), 1, "exactly one upstream GET for 52 clients: {:?}", fake.all_hits());
    assert_eq!(fake.bodies_abandoned(), 0, "the upstream fetch was cancelled");

    // Published: the next client reads the store.
    let after = read_blob(http.clone(), url.clone(), None, None, None).await?;
    after.assert_complete("after publish", SIZE, &digest, "hit");
    assert!(blob_file(&srv, &digest).exists());
    assert_eq!(fake.blob_gets(&digest), 1);
    Ok(())
}

// ------------------------------------------------------------------ 2. streaming

/// The proxy streams: a client has its first MiB while the upstream still holds back the
/// second half; a latecomer arriving after the first half was sent reads from byte 0;
/// ranges are served during and after the fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_bytes_reach_clients_before_the_upstream_finishes() -> Result<()> {
    const SIZE: usize = 16 * MIB;
    let fake = FakeUpstream::start(TestImage::new(310, &[100])).await;
    let blob = Bytes::from(noise(311, SIZE));
    let digest = fake.add_blob(blob.clone());
    let gate = fake.gate_blob_bodies(SIZE / 2);
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let url = format!("{}/v2/docker-remote/busybox/blobs/{digest}", srv.base_url());
    let http = streaming_client();
    let (tx, mut rx) = mpsc::unbounded_channel();

    let first = tokio::spawn(read_blob(http.clone(), url.clone(), None, Some((MIB as u64, tx.clone())), None));
    signals(&mut rx, 1, "first client: no MiB arrived while the upstream held back the second half").await;
    gate.wait_reached(1).await;
    assert!(!gate.is_open(), "the first MiB arrived while the upstream was still holding its gate");

    // The first half has been sent upstream; a latecomer still gets the body from byte 0.
    let late = tokio::spawn(read_blob(http.clone(), url.clone(), None, Some((MIB as u64, tx.clone())), None));
    signals(&mut rx, 1, "latecomer (joined the running fetch): no MiB while the upstream held its gate").await;

    // A range inside the part already fetched is served during the fetch …
    let during = read_blob(http.clone(), url.clone(), Some(format!("bytes={MIB}-{}", 2 * MIB - 1)), None, None).await?;
    assert_eq!(during.status, StatusCode::PARTIAL_CONTENT, "{during:?}");
    assert!(during.error.is_none(), "{during:?}");
    assert_eq!(during.digest, sha256_digest(&blob[MIB..2 * MIB]), "range during the fetch");
    // … and one past it completes once the rest arrives.
    let tail = tokio::spawn(read_blob(http.clone(), url.clone(), Some("bytes=-1000".into()), None, None));
    drop(tx);
    assert_eq!(fake.blob_gets(&digest), 1);

    gate.open();
    let first = first.await??;
    first.assert_complete("first", SIZE, &digest, "fwd=uri-miss");
    assert_eq!(first.prefix, blob[..PREFIX]);
    let late = late.await??;
    late.assert_complete("latecomer", SIZE, &digest, "collapsed");
    assert_eq!(late.prefix, blob[..PREFIX], "the latecomer must get the body from byte 0");
    let tail = tail.await??;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT, "{tail:?}");
    assert!(tail.error.is_none(), "{tail:?}");
    assert_eq!(tail.digest, sha256_digest(&blob[SIZE - 1000..]), "suffix range during the fetch");

    let after = read_blob(http.clone(), url.clone(), Some(format!("bytes={MIB}-{}", 2 * MIB - 1)), None, None).await?;
    assert_eq!(after.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(after.digest, sha256_digest(&blob[MIB..2 * MIB]), "range after publish");
    assert_eq!(fake.blob_gets(&digest), 1, "{:?}", fake.all_hits());
    Ok(())
}

// ------------------------------------------------------------------ 3. failed shared fetch

/// A shared fetch whose upstream body goes bad while five clients stream it: every
/// response is aborted (never a clean 200), nothing is published or left behind, the next
/// request fetches again, and once the upstream is fixed the blob is fetched and cached.
async fn failed_shared_fetch_aborts_every_waiter(fault: Fault, seed: u64) -> Result<()> {
    const SIZE: usize = 8 * MIB;
    let fake = FakeUpstream::start(TestImage::new(seed, &[100])).await;
    let digest = fake.add_blob(Bytes::from(noise(seed + 1, SIZE)));
    fake.set_blob_fault(fault);
    let gate = fake.gate_blob_bodies(2 * MIB);
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let url = format!("{}/v2/docker-remote/busybox/blobs/{digest}", srv.base_url());
    let http = streaming_client();
    let (tx, mut rx) = mpsc::unbounded_channel();

    // Five waiters, all with their response headers while the upstream body is held.
    let readers: Vec<_> =
        (0..5).map(|_| tokio::spawn(read_blob(http.clone(), url.clone(), None, Some((0, tx.clone())), None))).collect();
    drop(tx);
    signals(&mut rx, 5, "waiters' response headers").await;
    assert_eq!(fake.blob_gets(&digest), 1);
    gate.open();
    for (i, reader) in join_all(readers).await.into_iter().enumerate() {
        let read = reader??;
        assert!(
            read.status != StatusCode::OK || read.error.is_some(),
            "{fault:?}: waiter {i} got a clean {} with {} of {SIZE} bytes (digest ok: {})",
            read.status,
            read.len,
            read.digest == digest
        );
        assert!(read.len < SIZE as u64 || read.digest != digest || read.error.is_some(), "{read:?}");
    }
    assert!(!blob_file(&srv, &digest).exists(), "{fault:?}: a bad body was published");
    let deadline = Instant::now() + BOUND;
    while !fetch_leftovers(&srv).is_empty() {
        assert!(Instant::now() < deadline, "temporary fetch files left: {:?}", fetch_leftovers(&srv));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Not cached: the next request goes upstream again (and fails again).
    fake.clear_blob_gate();
    let again = read_blob(http.clone(), url.clone(), None, None, None).await?;
    assert!(again.status != StatusCode::OK || again.error.is_some(), "{fault:?}: {again:?}");
    assert_eq!(fake.blob_gets(&digest), 2, "{fault:?}: the failed fetch must not be cached");

    fake.set_blob_fault(Fault::None);
    let fixed = read_blob(http.clone(), url.clone(), None, None, None).await?;
    fixed.assert_complete("after the fix", SIZE, &digest, "fwd=uri-miss");
    assert_eq!(fake.blob_gets(&digest), 3);
    let cached = read_blob(http.clone(), url.clone(), None, None, None).await?;
    cached.assert_complete("cached", SIZE, &digest, "hit");
    assert_eq!(fake.blob_gets(&digest), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_shared_fetch_aborts_every_waiter() -> Result<()> {
    failed_shared_fetch_aborts_every_waiter(Fault::Truncate, 320).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_shared_fetch_aborts_every_waiter() -> Result<()> {
    failed_shared_fetch_aborts_every_waiter(Fault::Corrupt, 322).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_shared_fetch_aborts_every_waiter() -> Result<()> {
    failed_shared_fetch_aborts_every_waiter(Fault::Short, 324).await
}

// ------------------------------------------------------------------ 4. freshness

/// `metadata_ttl = "0s"`: every tag pull is one upstream HEAD and no manifest GET while the
/// digest is unchanged; a moved tag is seen at the next pull. Manifests by digest and blobs
/// are never revalidated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_ttl_tags_revalidate_with_head_only_and_see_moved_tags() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(330, &[2000])).await;
    let image = fake.image().clone();
    let digest = image.digest();
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let name = "docker-remote/busybox";
    let tag_path = fake.manifest_path("latest");
    let counts = |fake: &FakeUpstream| (fake.hits("GET", &tag_path), fake.hits("HEAD", &tag_path));

    let first = pull(&oci, name, "latest").await?;
    assert_eq!(first.body.as_ref(), image.manifest.as_slice());
    assert!(cache_status(&first).contains("fwd=uri-miss"), "{:?}", first.headers);
    wait_prefetch(&srv, 1).await;
    assert_eq!(counts(&fake), (1, 0));

    for i in 1..=3 {
        let again = pull(&oci, name, "latest").await?;
        assert_eq!(again.header("docker-content-digest"), Some(digest.as_str()));
        assert!(cache_status(&again).contains("revalidated"), "pull {i}: {:?}", again.headers);
        assert_eq!(counts(&fake), (1, i), "pull {i}: a HEAD, no manifest GET: {:?}", fake.all_hits());
    }
    let head = oci.head_manifest(name, "latest").await?;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(counts(&fake), (1, 4));

    // By digest and blobs: never revalidated, never fetched twice.
    for _ in 0..3 {
        assert_eq!(pull(&oci, name, &digest).await?.body.as_ref(), image.manifest.as_slice());
        assert_eq!(oci.head_manifest(name, &digest).await?.status, StatusCode::OK);
    }
    let digest_path = fake.manifest_path(&digest);
    assert_eq!((fake.hits("GET", &digest_path), fake.hits("HEAD", &digest_path)), (0, 0), "{:?}", fake.all_hits());
    for blob in [image.config_digest(), image.layer_digest(0)] {
        assert_eq!(fake.blob_gets(&blob), 1, "{blob}");
        assert_eq!(fake.hits("HEAD", &fake.blob_path(&blob)), 0, "{blob}");
    }

    // The tag moves upstream: the next pull sees it, with one manifest GET.
    let newer = TestImage::new(331, &[3000]);
    fake.set_tag("latest", &newer);
    let moved = pull(&oci, name, "latest").await?;
    assert_eq!(moved.header("docker-content-digest"), Some(newer.digest().as_str()));
    assert_eq!(moved.body.as_ref(), newer.manifest.as_slice());
    assert!(cache_status(&moved).contains("fwd=uri-miss"), "{:?}", moved.headers);
    assert_eq!(counts(&fake), (2, 5));
    let settled = oci.get_manifest(name, "latest").await?;
    assert_eq!(settled.header("docker-content-digest"), Some(newer.digest().as_str()));
    assert_eq!(counts(&fake), (2, 6));
    // The old image stays available by digest, from the cache.
    let old = oci.get_manifest(name, &digest).await?;
    assert_eq!(old.body.as_ref(), image.manifest.as_slice());
    assert_eq!(fake.hits("GET", &digest_path), 0);
    Ok(())
}

/// `metadata_ttl = "1h"`: once pulled, repeated pulls make no upstream request at all, even
/// after the tag moved upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_within_metadata_ttl_make_no_upstream_request() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(335, &[2000])).await;
    let image = fake.image().clone();
    let srv = TestServer::start(&remote("docker-remote", &fake.url(), "metadata_ttl = \"1h\"")).await;
    let oci = OciClient::new(&srv.base_url());
    let name = "docker-remote/busybox";

    pull(&oci, name, "latest").await?;
    wait_prefetch(&srv, 1).await;
    let before = fake.total_hits();
    fake.set_tag("latest", &TestImage::new(336, &[3000]));
    for i in 0..3 {
        let m = pull(&oci, name, "latest").await?;
        assert_eq!(m.header("docker-content-digest"), Some(image.digest().as_str()), "pull {i}");
        assert!(cache_status(&m).contains("hit"), "pull {i}: {:?}", m.headers);
        assert_eq!(oci.head_manifest(name, "latest").await?.status, StatusCode::OK);
        pull(&oci, name, &image.digest()).await?;
    }
    assert_eq!(fake.total_hits(), before, "no upstream request within the ttl: {:?}", fake.all_hits());
    Ok(())
}

// ------------------------------------------------------------------ 5. serve stale

/// A cached tag is served (200, `Cache-Status: …stale…`) when the upstream answers 500,
/// 503 or 429 or hangs past `upstream_timeout`; with nothing cached the client gets the
/// error in OCI JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_tags_are_served_stale_when_the_upstream_fails() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(340, &[1000])).await;
    let image = fake.image().clone();
    let config = remote("docker-remote", &fake.url(), "metadata_ttl = \"0s\"\nupstream_timeout = \"1s\"");
    let cached_srv = TestServer::start(&config).await;
    let empty_srv = TestServer::start(&config).await;
    let cached = OciClient::new(&cached_srv.base_url());
    let empty = OciClient::new(&empty_srv.base_url());
    let name = "docker-remote/busybox";
    let tag_path = fake.manifest_path("latest");

    pull(&cached, name, "latest").await?;
    wait_prefetch(&cached_srv, 1).await;

    // 429 last: it makes both servers hold off the upstream for a while.
    for case in ["500", "503", "hang", "429"] {
        let gate = match case {
            "hang" => Some(fake.gate_manifests()),
            code => {
                fake.set_manifest_fault(Fault::Status(code.parse()?));
                None
            }
        };
        let asked = fake.hits("HEAD", &tag_path);
        let stale = cached.get_manifest(name, "latest").await?;
        assert_eq!(stale.status, StatusCode::OK, "{case}: {}", stale.text());
        assert_eq!(stale.body.as_ref(), image.manifest.as_slice(), "{case}");
        assert!(is_stale(&stale), "{case}: Cache-Status {:?}", stale.header("cache-status"));
        let head = cached.head_manifest(name, "latest").await?;
        assert_eq!(head.status, StatusCode::OK, "{case}");
        assert_eq!(head.header("docker-content-digest"), Some(image.digest().as_str()), "{case}");
        assert!(is_stale(&head), "{case}: HEAD Cache-Status {:?}", head.header("cache-status"));
        // After a timeout (or a 429) the upstream is left alone for a while: one wait, not two.
        let asked_now = fake.hits("HEAD", &tag_path) - asked;
        match case {
            "hang" | "429" => assert_eq!(asked_now, 1, "{case}: upstream HEADs"),
            _ => assert!(asked_now >= 1, "{case}: the upstream was not asked"),
        }

        let missing = empty.get_manifest(name, "latest").await?;
        match case {
            "429" => missing.assert_error(429, &["TOOMANYREQUESTS"]),
            _ => {
                assert!(
                    [502, 503].contains(&missing.status.as_u16()),
                    "{case}: nothing cached should be 502/503, got {} {}",
                    missing.status,
                    missing.text()
                );
                assert!(!missing.error_codes().is_empty(), "{case}: not an OCI error body: {}", missing.text());
            }
        }
        if let Some(gate) = gate {
            assert_eq!(gate.reached(), 2, "the hanging upstream held one request of each server");
            fake.clear_manifest_gate();
            gate.open();
            fake.set_manifest_fault(Fault::None);
            // Bounded: both servers ask the upstream again once their window has passed.
            let probe_path = fake.manifest_path("probe");
            for _ in 0..100 {
                let before = (fake.hits("HEAD", &tag_path), fake.hits("GET", &probe_path));
                cached.head_manifest(name, "latest").await?;
                empty.get_manifest(name, "probe").await?;
                if fake.hits("HEAD", &tag_path) > before.0 && fake.hits("GET", &probe_path) > before.1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        fake.set_manifest_fault(Fault::None);
    }

    // An upstream nobody listens on: 503 with an OCI code.
    let refused = TestServer::start(&remote("docker-remote", NO_UPSTREAM, "")).await;
    let r = OciClient::new(&refused.base_url()).get_manifest(name, "latest").await?;
    r.assert_error(503, &["UNAVAILABLE"]);
    Ok(())
}

// ------------------------------------------------------------------ 6. rate limit

/// After a 429 with `Retry-After: 30` nothing reaches the upstream within the window, cached
/// content is still served, and the budget (limit, remaining, blocked time) is visible in
/// `GET /api/v1/repositories`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_upstream_is_left_alone_and_its_budget_shown() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(350, &[1000])).await;
    let image = fake.image().clone();
    fake.set_headers(&[("RateLimit-Limit", "100;w=21600"), ("RateLimit-Remaining", "76;w=21600")]);
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let name = "docker-remote/busybox";

    pull(&oci, name, "latest").await?;
    wait_prefetch(&srv, 1).await;
    let budget = rate_limit(&oci, "docker-remote").await?;
    assert_eq!(budget["limit"], 100, "{budget}");
    assert_eq!(budget["remaining"], 76, "{budget}");
    assert_eq!(budget["blocked_for_secs"], 0, "{budget}");

    fake.set_headers(&[
        ("RateLimit-Limit", "100;w=21600"),
        ("RateLimit-Remaining", "76;w=21600"),
        ("Retry-After", "30"),
    ]);
    fake.set_manifest_fault(Fault::Status(429));
    fake.set_blob_fault(Fault::Status(429));
    let first = oci.get_manifest(name, "latest").await?;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert!(is_stale(&first), "{:?}", first.headers);
    let hits = fake.total_hits();

    for i in 0..5 {
        let m = pull(&oci, name, "latest").await?;
        assert_eq!(m.body.as_ref(), image.manifest.as_slice(), "pull {i}");
        assert!(is_stale(&m), "pull {i}: {:?}", m.headers);
        assert_eq!(oci.head_manifest(name, "latest").await?.status, StatusCode::OK);
    }
    let limited = oci.get_manifest(name, "other").await?;
    limited.assert_error(429, &["TOOMANYREQUESTS"]);
    let retry_after: u64 = limited.header("retry-after").unwrap_or("").parse().context("Retry-After on a 429")?;
    assert!(retry_after > 0 && retry_after <= 30, "Retry-After {retry_after}");
    assert!(limited.header("cache-status").is_some_and(|s| s.contains("TOOMANYREQUESTS")), "{:?}", limited.headers);
    let absent = sha256_digest(b"never fetched");
    let blob = oci.get_blob(name, &absent).await?;
    assert_eq!(fake.total_hits(), hits, "requests reached a rate-limited upstream: {:?}", fake.all_hits());

    let budget = rate_limit(&oci, "docker-remote").await?;
    let blocked = budget["blocked_for_secs"].as_u64().unwrap_or(0);
    assert!(blocked > 0 && blocked <= 30, "{budget}");
    assert_eq!(budget["limit"], 100, "{budget}");
    assert_eq!(budget["remaining"], 76, "{budget}");
    // An uncached blob while rate-limited: the client is told so, like for manifests.
    blob.assert_error(429, &["TOOMANYREQUESTS"]);
    Ok(())
}

// ------------------------------------------------------------------ 7. negative cache

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tags_are_asked_for_once_within_negative_ttl() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(360, &[1000])).await;
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let name = "docker-remote/busybox";
    let missing = fake.manifest_path("missing");

    // A storm of 20: the upstream answer is held until the first request reached it.
    let gate = fake.gate_manifests();
    let storm: Vec<_> = (0..20)
        .map(|_| {
            let oci = oci.clone();
            tokio::spawn(async move { oci.get_manifest("docker-remote/busybox", "missing").await })
        })
        .collect();
    gate.wait_reached(1).await;
    gate.open();
    for r in join_all(storm).await {
        r??.assert_error(404, &["MANIFEST_UNKNOWN"]);
    }
    assert_eq!(fake.hits("GET", &missing), 1, "{:?}", fake.all_hits());
    fake.clear_manifest_gate();

    for _ in 0..5 {
        let missed = oci.get_manifest(name, "missing").await?;
        missed.assert_error(404, &["MANIFEST_UNKNOWN"]);
        assert!(missed.header("cache-status").is_some_and(|s| s.starts_with("binaryrepo;")), "{:?}", missed.headers);
        assert_eq!(oci.head_manifest(name, "missing").await?.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(fake.hits("GET", &missing) + fake.hits("HEAD", &missing), 1, "{:?}", fake.all_hits());

    // Without a negative cache every request goes upstream.
    let fake0 = FakeUpstream::start(TestImage::new(361, &[1000])).await;
    let srv0 = TestServer::start(&remote("docker-remote", &fake0.url(), "negative_ttl = \"0s\"")).await;
    let oci0 = OciClient::new(&srv0.base_url());
    for i in 1..=3 {
        oci0.get_manifest(name, "missing").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
        assert_eq!(fake0.hits("GET", &missing), i);
    }
    Ok(())
}

// ------------------------------------------------------------------ 8. offline

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_remote_never_contacts_the_upstream() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(370, &[1000])).await;
    let image = fake.image().clone();
    let config = remote("docker-remote", &fake.url(), "offline = false");
    let mut srv = TestServer::start(&config).await;
    let oci = OciClient::new(&srv.base_url());
    let name = "docker-remote/busybox";
    pull(&oci, name, "latest").await?;
    wait_prefetch(&srv, 1).await;

    // Same data, now offline.
    let text = std::fs::read_to_string(srv.config_path())?;
    std::fs::write(srv.config_path(), text.replace("offline = false", "offline = true"))?;
    srv.restart().await;
    let before = fake.total_hits();
    fake.set_tag("latest", &TestImage::new(371, &[1000]));
    for _ in 0..2 {
        let m = pull(&oci, name, "latest").await?;
        assert_eq!(m.body.as_ref(), image.manifest.as_slice());
        assert_eq!(oci.head_manifest(name, "latest").await?.status, StatusCode::OK);
        pull(&oci, name, &image.digest()).await?;
    }
    oci.get_manifest(name, "other").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    oci.get_blob(name, &sha256_digest(b"not cached")).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    assert_eq!(fake.total_hits(), before, "an offline remote contacted its upstream: {:?}", fake.all_hits());

    // Offline from the start: nothing cached, nothing asked.
    let fake2 = FakeUpstream::start(TestImage::new(372, &[1000])).await;
    let srv2 = TestServer::start(&remote("docker-remote", &fake2.url(), "offline = true")).await;
    let oci2 = OciClient::new(&srv2.base_url());
    oci2.get_manifest(name, "latest").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    oci2.get_manifest(name, &fake2.image().digest()).await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    oci2.get_blob(name, &fake2.image().layer_digest(0)).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    assert_eq!(fake2.total_hits(), 0, "{:?}", fake2.all_hits());
    Ok(())
}

// ------------------------------------------------------------------ 9. Cache-Status

/// RFC 9211 `Cache-Status`: `hit`, `fwd=uri-miss` (fetched now), `collapsed` (joined a fetch
/// another request started), `revalidated`, `stale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_status_says_what_the_cache_did() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(380, &[4 * MIB])).await;
    let image = fake.image().clone();
    let layer = image.layer_digest(0);
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let name = "docker-remote/busybox";
    let url = format!("{}/v2/{name}/blobs/{layer}", srv.base_url());
    let http = streaming_client();

    // Blob: the first request fetches, a second one joins while the upstream is held.
    let gate = fake.gate_blob_bodies(MIB);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = tokio::spawn(read_blob(http.clone(), url.clone(), None, Some((1, tx.clone())), None));
    signals(&mut rx, 1, "first").await;
    let b = tokio::spawn(read_blob(http.clone(), url.clone(), None, Some((0, tx.clone())), None));
    signals(&mut rx, 1, "joiner's response headers").await;
    assert_eq!(fake.blob_gets(&layer), 1);
    drop(tx);
    gate.open();
    let (a, b) = (a.await??, b.await??);
    a.assert_complete("first", 4 * MIB, &layer, "fwd=uri-miss");
    assert!(!a.cache_status.as_deref().unwrap_or("").contains("collapsed"), "{a:?}");
    b.assert_complete("joiner", 4 * MIB, &layer, "collapsed");
    let c = read_blob(http.clone(), url.clone(), None, None, None).await?;
    c.assert_complete("cached", 4 * MIB, &layer, "hit");
    assert_eq!(fake.blob_gets(&layer), 1);
    let head = oci.head_blob(name, &layer).await?;
    assert!(cache_status(&head).contains("hit"), "{:?}", head.headers);
    for status in [&a, &b, &c].map(|r| r.cache_status.clone().unwrap_or_default()) {
        assert!(status.starts_with("binaryrepo;"), "RFC 9211: the cache's name first: {status:?}");
    }

    // Tag: fetched, then revalidated (ttl 0), then stale; by digest: hit.
    let first = oci.get_manifest(name, "latest").await?;
    assert!(cache_status(&first).contains("fwd=uri-miss"), "{:?}", first.headers);
    let again = oci.get_manifest(name, "latest").await?;
    assert!(cache_status(&again).contains("revalidated"), "{:?}", again.headers);
    fake.set_manifest_fault(Fault::Status(503));
    let stale = oci.get_manifest(name, "latest").await?;
    assert_eq!(stale.status, StatusCode::OK);
    assert!(is_stale(&stale), "{:?}", stale.headers);
    let by_digest = oci.get_manifest(name, &image.digest()).await?;
    assert!(cache_status(&by_digest).contains("hit"), "{:?}", by_digest.headers);
    assert!(!cache_status(&by_digest).contains("stale"), "{:?}", by_digest.headers);
    Ok(())
}

// ------------------------------------------------------------------ 10. virtual over remotes

/// Two upstreams with different images as two remotes under one virtual repository: both
/// images pull through the virtual one, its tags list is the union, and what was cached is
/// not fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_repository_over_two_remotes() -> Result<()> {
    let a = FakeUpstream::start_as("busybox", "a", TestImage::new(390, &[1500])).await;
    let b = FakeUpstream::start_as("busybox", "b", TestImage::new(391, &[2500])).await;
    let config = format!(
        "{}{}{}",
        remote("remote-a", &a.url(), "metadata_ttl = \"0s\""),
        remote("remote-b", &b.url(), "metadata_ttl = \"0s\""),
        virtual_repo("docker", &["remote-a", "remote-b"]),
    );
    let srv = TestServer::start(&config).await;
    let oci = OciClient::new(&srv.base_url());

    for _ in 0..2 {
        let ma = pull(&oci, "docker/busybox", "a").await?;
        assert_eq!(ma.body.as_ref(), a.image().manifest.as_slice());
        assert!(ma.header("cache-status").is_some(), "virtual responses carry Cache-Status: {:?}", ma.headers);
        let mb = pull(&oci, "docker/busybox", "b").await?;
        assert_eq!(mb.body.as_ref(), b.image().manifest.as_slice());
        assert!(mb.header("cache-status").is_some(), "{:?}", mb.headers);
    }
    // Each blob was fetched once from its upstream; B's blobs were asked of A (the first
    // member) once, and its 404 remembered.
    for blob in [a.image().config_digest(), a.image().layer_digest(0)] {
        assert_eq!(a.blob_gets(&blob), 1, "{blob}: {:?}", a.all_hits());
        assert_eq!(b.blob_gets(&blob), 0, "{blob}: {:?}", b.all_hits());
    }
    for blob in [b.image().config_digest(), b.image().layer_digest(0)] {
        assert_eq!(b.blob_gets(&blob), 1, "{blob}: {:?}", b.all_hits());
        assert_eq!(a.blob_gets(&blob), 1, "{blob}: {:?}", a.all_hits());
    }
    let blob = oci.get_blob("docker/busybox", &b.image().layer_digest(0)).await?;
    assert!(blob.header("cache-status").is_some_and(|s| s.contains("hit")), "{:?}", blob.headers);

    assert_eq!(oci.tag_names("docker/busybox").await?, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(oci.tag_names("remote-a/busybox").await?, vec!["a".to_string()]);
    assert_eq!(oci.tag_names("remote-b/busybox").await?, vec!["b".to_string()]);
    Ok(())
}

/// The issue asks for `Cache-Status` on every response of a remote or virtual repository;
/// tags lists are responses too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_lists_of_remote_and_virtual_repositories_carry_cache_status() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(395, &[1000])).await;
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());
    for name in ["docker-remote/busybox", "docker/busybox"] {
        let r = oci.tags(name, None, None).await?;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text());
        assert!(r.header("cache-status").is_some(), "{name}: tags list without Cache-Status: {:?}", r.headers);
    }
    Ok(())
}

// ------------------------------------------------------------------ 11. containerd mirror mode

/// containerd asks the mirror for `/v2/<name>/…?ns=<registry host>`: without a repository
/// key in the path, the remote whose upstream is that host answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_ns_parameter_routes_to_the_matching_remote() -> Result<()> {
    let a = FakeUpstream::start(TestImage::new(400, &[1200])).await;
    let b = FakeUpstream::start(TestImage::new(401, &[2200])).await;
    let config = format!("{}{}", remote("mirror-a", &a.url(), ""), remote("mirror-b", &b.url(), ""));
    let srv = TestServer::start(&config).await;
    let oci = OciClient::new(&srv.base_url());

    for fake in [&b, &a] {
        let ns = fake.authority();
        let m = oci.get(&format!("/v2/busybox/manifests/latest?ns={ns}")).await?;
        assert_eq!(m.status, StatusCode::OK, "ns={ns}: {}", m.text());
        assert_eq!(m.body.as_ref(), fake.image().manifest.as_slice(), "ns={ns} routed to the wrong remote");
        let head = oci.request(reqwest::Method::HEAD, &format!("/v2/busybox/manifests/latest?ns={ns}")).await?;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.header("docker-content-digest"), Some(fake.image().digest().as_str()));
        let layer = fake.image().layer_digest(0);
        let blob = oci.get(&format!("/v2/busybox/blobs/{layer}?ns={ns}")).await?;
        assert_eq!(blob.status, StatusCode::OK, "{}", blob.text());
        assert_eq!(sha256_digest(&blob.body), layer);
        assert_eq!(fake.blob_gets(&layer), 1);
    }
    // Each upstream was asked only for its own image.
    for (fake, other) in [(&a, &b), (&b, &a)] {
        let theirs = other.manifest_path(&other.image().digest());
        assert_eq!(fake.hits("GET", &theirs), 0, "{:?}", fake.all_hits());
        assert_eq!(fake.blob_gets(&other.image().layer_digest(0)), 0, "{:?}", fake.all_hits());
        assert_eq!(fake.hits("GET", &fake.manifest_path("latest")), 1, "{:?}", fake.all_hits());
    }
    // The same requests through the repository key are cache hits now.
    let keyed = oci.get_manifest("mirror-b/busybox", "latest").await?;
    assert_eq!(keyed.body.as_ref(), b.image().manifest.as_slice());
    // An unknown ns (and no repository key) is not guessed.
    let unknown = oci.get("/v2/busybox/manifests/latest?ns=registry.invalid").await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text());
    Ok(())
}

/// An upstream that accepts connections and never answers; counts them. Stops with the test.
struct SilentUpstream {
    url: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    holder: tokio::task::JoinHandle<()>,
}

impl SilentUpstream {
    async fn start() -> Result<SilentUpstream> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        Ok(SilentUpstream { url, accepted, holder })
    }

    fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentUpstream {
    fn drop(&mut self) {
        self.holder.abort();
    }
}

/// An upstream that accepts connections but never answers holds a blob fetch no longer than
/// `upstream_timeout` (not the hour-long `fetch_timeout`), so a virtual repository goes on to
/// its next member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_blob_fetch_gives_up_after_upstream_timeout() -> Result<()> {
    let silent = SilentUpstream::start().await?;
    let silent_url = silent.url.clone();
    let good = FakeUpstream::start(TestImage::new(41, &[64 * 1024])).await;
    let repos = remote("silent", &silent_url, "upstream_timeout = \"1s\"")
        + &remote("good", &good.url(), "")
        + &virtual_repo("both", &["silent", "good"]);
    let srv = TestServer::start(&repos).await;
    // Shorter than the server's 60 s upstream read timeout: only `upstream_timeout` can answer in time.
    let client = reqwest::Client::builder().no_proxy().timeout(SIGNAL_BOUND).build()?;
    let oci = OciClient::with_http(&srv.base_url(), client);
    let layer = good.image().layer_digest(0);

    let direct = oci.get_blob("silent/busybox", &layer).await.context("the silent remote must answer")?;
    direct.assert_error(503, &["UNAVAILABLE"]);
    let through = oci.get_blob("both/busybox", &layer).await.context("the virtual repository must answer")?;
    assert_eq!(through.status, StatusCode::OK, "{}", through.text());
    assert_eq!(sha256_digest(&through.body), layer);
    Ok(())
}

/// A push through a virtual repository HEADs each blob to skip uploads: that must not wait on
/// (or download from) a remote member's upstream. With a remote whose upstream never answers
/// (and the default 20 s `upstream_timeout`), skopeo pushes through the virtual repository
/// within a client bound shorter than one upstream wait, and the image lands in `deploy_to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_through_a_virtual_repository_does_not_wait_on_a_silent_upstream() -> Result<()> {
    let silent = SilentUpstream::start().await?;
    let silent_url = silent.url.clone();
    let repos = "\n[[repository]]\nname = \"local\"\nformat = \"docker\"\nkind = \"hosted\"\n".to_string()
        + &remote("silent", &silent_url, "")
        + "\n[[repository]]\nname = \"both\"\nformat = \"docker\"\nkind = \"virtual\"\n"
        + "members = [\"local\", \"silent\"]\ndeploy_to = \"local\"\n";
    let srv = TestServer::start(&repos).await;
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?;
    let oci = OciClient::with_http(&srv.base_url(), client);
    let image = TestImage::new(42, &[4096, 8192]);
    let head = oci.head_blob("both/app", &image.layer_digest(0)).await.context("HEAD must not wait on the upstream")?;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    image.push(&oci, "both/app", "1.0").await.context("push through the virtual repository")?;
    let head = oci.head_blob("both/app", &image.layer_digest(1)).await?;
    assert_eq!(head.status, StatusCode::OK, "a pushed blob is found through the virtual repository");
    // skopeo HEADs every blob before it uploads it.
    let img = crate::images::images();
    let dst = format!("docker://{}/both/busybox:1.0", srv.addr());
    let (skopeo, src) = (crate::clients::Skopeo::new(), img.oci("busybox", "1.0"));
    let copy = skopeo.copy(&src, &dst);
    tokio::time::timeout(Duration::from_secs(15), copy).await.context("skopeo waited on the upstream")??;
    let pulled = oci.get_manifest("local/busybox", "1.0").await?;
    assert_eq!(pulled.status, StatusCode::OK, "{}", pulled.text());
    Ok(())
}

/// `exclude` on a docker remote: names matching a pattern never reach the upstream (no
/// manifest, tag list or blob request carries them), other names pull as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_image_names_never_reach_the_upstream() -> Result<()> {
    let fake = FakeUpstream::start_as("corp/app", "1.0", TestImage::new(43, &[2048])).await;
    let repos = remote("hub", &fake.url(), "exclude = [\"corp/*\"]");
    let srv = TestServer::start(&repos).await;
    let oci = OciClient::new(&srv.base_url());
    oci.get_manifest("hub/corp/app", "1.0").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    oci.get_blob("hub/corp/app", &fake.image().layer_digest(0)).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    let tags = oci.tags("hub/corp/app", None, None).await?;
    assert_eq!(tags.status, StatusCode::NOT_FOUND, "{}", tags.text());
    assert_eq!(fake.total_hits(), 0, "excluded names reached the upstream: {:?}", fake.all_hits());
    Ok(())
}

/// A manifest the upstream sends corrupted (its bytes do not hash to the digest it claims) is
/// not cached, and the client is told what went wrong: 502 naming the verification, not a
/// 503 saying the upstream is unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_upstream_manifest_is_a_502_that_says_so() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(44, &[1000])).await;
    fake.set_manifest_fault(Fault::Corrupt);
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let bad = oci.get_manifest("docker-remote/busybox", "latest").await?;
    assert_eq!(bad.status, StatusCode::BAD_GATEWAY, "{}", bad.text());
    assert!(bad.text().contains("failed verification"), "{}", bad.text());
    fake.set_manifest_fault(Fault::None);
    let good = oci.get_manifest("docker-remote/busybox", "latest").await?;
    assert_eq!(good.status, StatusCode::OK, "nothing bad was cached: {}", good.text());
    assert_eq!(good.body.as_ref(), fake.image().manifest.as_slice());
    Ok(())
}

/// A remote whose upstream let a request time out is left alone for `upstream_timeout`: the
/// next requests through a virtual repository over it do not wait on it again (one wait per
/// window, not one per request), and still get their answer from the next member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_upstream_is_not_waited_on_again_within_upstream_timeout() -> Result<()> {
    let silent = SilentUpstream::start().await?;
    let silent_url = silent.url.clone();
    let good = FakeUpstream::start(TestImage::new(45, &[4096, 8192])).await;
    let repos = remote("silent", &silent_url, "upstream_timeout = \"1s\"")
        + &remote("good", &good.url(), "")
        + &virtual_repo("both", &["silent", "good"]);
    let srv = TestServer::start(&repos).await;
    let oci = OciClient::new(&srv.base_url());
    let image = good.image().clone();
    let manifest = oci.get_manifest("both/busybox", "latest").await?;
    assert_eq!(manifest.status, StatusCode::OK, "{}", manifest.text());
    for i in 0..2 {
        let blob = oci.get_blob("both/busybox", &image.layer_digest(i)).await?;
        assert_eq!(sha256_digest(&blob.body), image.layer_digest(i));
    }
    assert_eq!(silent.connections(), 1, "the silent upstream was asked again");
    Ok(())
}
