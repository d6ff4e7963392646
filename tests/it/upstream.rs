//! Upstreams for remote repositories, all on 127.0.0.1:
//!
//! * `DistributionRegistry`: the Debian `docker-registry` (CNCF distribution 2.8)
//!   with filesystem storage in a temp dir. Requests are counted from its access
//!   log; `stop()` / `start_again()` simulate an upstream outage (connections are
//!   refused while it is down).
//! * `FakeUpstream`: a scripted registry serving one `TestImage` as `busybox:latest`
//!   (or any `name:tag`; more tags and raw blobs can be added, tags moved) that can
//!   truncate, shorten or corrupt bodies or fail with a status, hold blob bodies or
//!   manifest requests at a `Gate` the test opens, add headers (rate limits) to every
//!   response, and counts every request before answering (so counts are exact once a
//!   client returns).

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response as HttpResponse;
use axum::http::{header, Method, StatusCode};

type Response = HttpResponse<Body>;
use bytes::Bytes;
use tempfile::TempDir;
use tokio::sync::watch;

use crate::oci::{TestImage, OCI_MANIFEST};
use crate::server::free_port;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

// ------------------------------------------------------------------ distribution

/// One access-log request line: `127.0.0.1 - - [date] "GET /v2/… HTTP/1.1" 200 …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLine {
    pub method: String,
    pub path: String,
    pub status: u16,
}

pub struct DistributionRegistry {
    dir: TempDir,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    barriers: u64,
}

impl DistributionRegistry {
    pub fn available() -> bool {
        std::path::Path::new(DOCKER_REGISTRY).exists()
    }

    pub async fn start() -> DistributionRegistry {
        let dir = tempfile::Builder::new().prefix("distribution-it-").tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        let yaml = format!(
            r#"version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: binaryrepo-integration-tests
"#,
            data = dir.path().join("data").display()
        );
        std::fs::write(&config, yaml).expect("write registry config");
        let log = dir.path().join("registry.log");
        let mut reg = DistributionRegistry { dir, port, config, log, child: None, barriers: 0 };
        reg.start_again().await;
        reg
    }

    /// (Re)starts the process on the same port and storage.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "registry already running");
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open log");
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env_remove("REGISTRY_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        self.child = Some(child);
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap();
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("docker-registry exited ({status}); log:\n{}", self.log());
            }
            if matches!(http.get(&url).send().await, Ok(r) if r.status() == StatusCode::OK) {
                return;
            }
            assert!(Instant::now() < deadline, "docker-registry not ready; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process: from now on connections to it are refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `127.0.0.1:PORT` (for `docker://` references when seeding it with skopeo).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` (the `upstream` of a remote repository).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Every request line in the access log so far.
    pub fn requests(&self) -> Vec<AccessLine> {
        self.log().lines().filter_map(parse_access_line).collect()
    }

    /// `GET …/blobs/…` requests so far (optionally only for one digest).
    pub fn blob_gets(&self, digest: Option<&str>) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/blobs/sha256:"))
            .filter(|r| digest.is_none_or(|d| r.path.ends_with(d)))
            .count()
    }

    /// Makes the access log current: the registry logs a request after answering
    /// it, so send a uniquely named request and wait until its line appears. Any
    /// request answered before this call returned is in the log afterwards.
    pub async fn sync_log(&mut self) {
        self.barriers += 1;
        let path = format!("/v2/barrier-{}/tags/list", self.barriers);
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
        let _ = http.get(format!("{}{path}", self.url())).send().await.expect("barrier request");
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.requests().iter().any(|r| r.path == path) {
            assert!(Instant::now() < deadline, "barrier {path} never logged");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until at least `n` blob GETs have been logged.
    pub async fn wait_blob_gets(&self, n: usize) -> usize {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let got = self.blob_gets(None);
            if got >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for DistributionRegistry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().filter(|l| parse_access_line(l).is_some()).collect();
            eprintln!("---- docker-registry access log ({} requests) ----", lines.len());
            for l in lines.iter().rev().take(100).rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn parse_access_line(line: &str) -> Option<AccessLine> {
    // 127.0.0.1 - - [03/Dec/2026:18:37:35 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
    let start = line.find("] \"")? + 3;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let mut req = rest[..end].split(' ');
    let method = req.next()?.to_string();
    let path = req.next()?.to_string();
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    Some(AccessLine { method, path, status })
}

// ------------------------------------------------------------------ fake upstream

/// How the fake answers a GET (HEAD is only affected by `Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Full Content-Length, half the body, then the connection is aborted.
    Truncate,
    /// Consistent headers for half the body: only the digest check can tell.
    Short,
    /// Right length, one byte flipped in the middle.
    Corrupt,
    /// Answer with this status and an OCI error body.
    Status(u16),
}

/// A switch held by a test: requests (or bodies) that reach it wait until it is opened.
/// It opens when dropped, so nothing the fake holds outlives the test.
pub struct Gate {
    open: watch::Sender<bool>,
    waiting: Arc<watch::Sender<usize>>,
}

/// The fake's side of a [`Gate`].
#[derive(Clone)]
struct GateWait {
    open: watch::Receiver<bool>,
    waiting: Arc<watch::Sender<usize>>,
}

impl Gate {
    fn new() -> (Gate, GateWait) {
        let (open, rx) = watch::channel(false);
        let waiting = Arc::new(watch::channel(0).0);
        (Gate { open, waiting: waiting.clone() }, GateWait { open: rx, waiting })
    }

    /// Lets everything waiting (and everything that arrives later) through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// How many requests or bodies have reached the gate so far (while it was closed).
    pub fn reached(&self) -> usize {
        *self.waiting.borrow()
    }

    /// Waits (bounded) until `n` requests or bodies have reached the closed gate.
    pub async fn wait_reached(&self, n: usize) {
        let mut rx = self.waiting.subscribe();
        let reached = matches!(tokio::time::timeout(READY_TIMEOUT, rx.wait_for(|r| *r >= n)).await, Ok(Ok(_)));
        assert!(reached, "only {} of {n} requests reached the fake upstream's gate", self.reached());
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open.send_replace(true);
    }
}

impl GateWait {
    async fn pass(&self) {
        if *self.open.borrow() {
            return;
        }
        self.waiting.send_modify(|n| *n += 1);
        // An error means the Gate was dropped: open as well.
        let _ = self.open.clone().wait_for(|open| *open).await;
    }
}

struct FakeState {
    name: String,
    tag: String,
    image: TestImage,
    /// tag → manifest digest
    tags: Mutex<BTreeMap<String, String>>,
    /// digest → manifest bytes (all OCI image manifests)
    manifests: Mutex<HashMap<String, Bytes>>,
    /// digest → blob bytes (configs and layers)
    blobs: Mutex<HashMap<String, Bytes>>,
    blob_fault: Mutex<Fault>,
    manifest_fault: Mutex<Fault>,
    /// Blob GET bodies send this many bytes, then wait at the gate.
    blob_gate: Mutex<Option<(usize, GateWait)>>,
    /// Manifest requests (HEAD and GET, any reference) wait at the gate before answering.
    manifest_gate: Mutex<Option<GateWait>>,
    /// Added to every response.
    headers: Mutex<Vec<(String, String)>>,
    hits: Mutex<HashMap<(String, String), usize>>,
    /// Total requests so far, for waiting on hits without sleeping.
    hit_count: watch::Sender<usize>,
    /// Blob bodies dropped by the peer before they were completely sent.
    bodies_abandoned: Arc<AtomicUsize>,
}

pub struct FakeUpstream {
    addr: SocketAddr,
    state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    /// Serves `image` as `busybox:latest` (and by digest).
    pub async fn start(image: TestImage) -> FakeUpstream {
        FakeUpstream::start_as("busybox", "latest", image).await
    }

    /// Serves `image` as `name:tag` (and by digest); `tags/list` lists the tags.
    pub async fn start_as(name: &str, tag: &str, image: TestImage) -> FakeUpstream {
        let state = Arc::new(FakeState {
            name: name.into(),
            tag: tag.into(),
            image: image.clone(),
            tags: Mutex::default(),
            manifests: Mutex::default(),
            blobs: Mutex::default(),
            blob_fault: Mutex::new(Fault::None),
            manifest_fault: Mutex::new(Fault::None),
            blob_gate: Mutex::new(None),
            manifest_gate: Mutex::new(None),
            headers: Mutex::default(),
            hits: Mutex::new(HashMap::new()),
            hit_count: watch::channel(0).0,
            bodies_abandoned: Arc::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake upstream");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let fake = FakeUpstream { addr, state, task };
        fake.set_tag(tag, &image);
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, the registry host as containerd names it in `?ns=`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// The image the fake was started with.
    pub fn image(&self) -> &TestImage {
        &self.state.image
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn tag(&self) -> &str {
        &self.state.tag
    }

    /// Points `tag` at `image` (adding or moving the tag); its manifest and blobs are served
    /// by digest from now on (earlier images stay available by digest).
    pub fn set_tag(&self, tag: &str, image: &TestImage) {
        let digest = image.digest();
        for blob in std::iter::once(&image.config).chain(image.layers.iter()) {
            self.add_blob(Bytes::copy_from_slice(blob));
        }
        self.state.manifests.lock().unwrap().insert(digest.clone(), Bytes::copy_from_slice(&image.manifest));
        self.state.tags.lock().unwrap().insert(tag.to_string(), digest);
    }

    /// Serves `blob` by its digest (no manifest needed); returns the digest.
    pub fn add_blob(&self, blob: Bytes) -> String {
        let digest = crate::images::sha256_digest(&blob);
        self.state.blobs.lock().unwrap().insert(digest.clone(), blob);
        digest
    }

    pub fn set_blob_fault(&self, fault: Fault) {
        *self.state.blob_fault.lock().unwrap() = fault;
    }

    pub fn set_manifest_fault(&self, fault: Fault) {
        *self.state.manifest_fault.lock().unwrap() = fault;
    }

    /// From now on every blob GET body sends its first `after` bytes, then waits at the
    /// returned gate before sending the rest (faults still apply).
    pub fn gate_blob_bodies(&self, after: usize) -> Gate {
        let (gate, wait) = Gate::new();
        *self.state.blob_gate.lock().unwrap() = Some((after, wait));
        gate
    }

    pub fn clear_blob_gate(&self) {
        *self.state.blob_gate.lock().unwrap() = None;
    }

    /// From now on every manifest request (HEAD or GET, any reference, counted in `hits`
    /// first) waits at the returned gate before it is answered: a hanging upstream.
    pub fn gate_manifests(&self) -> Gate {
        let (gate, wait) = Gate::new();
        *self.state.manifest_gate.lock().unwrap() = Some(wait);
        gate
    }

    pub fn clear_manifest_gate(&self) {
        *self.state.manifest_gate.lock().unwrap() = None;
    }

    /// Headers added to every response from now on (replacing earlier ones), e.g.
    /// `RateLimit-Remaining` or `Retry-After`.
    pub fn set_headers(&self, headers: &[(&str, &str)]) {
        *self.state.headers.lock().unwrap() = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// Requests seen for exactly this method and path.
    pub fn hits(&self, method: &str, path: &str) -> usize {
        let hits = self.state.hits.lock().unwrap();
        hits.get(&(method.to_string(), path.to_string())).copied().unwrap_or(0)
    }

    /// Waits (bounded) until at least `n` requests for this method and path were seen.
    pub async fn wait_hits(&self, method: &str, path: &str, n: usize) -> usize {
        let mut rx = self.state.hit_count.subscribe();
        let _ = tokio::time::timeout(READY_TIMEOUT, rx.wait_for(|_| self.hits(method, path) >= n)).await;
        self.hits(method, path)
    }

    /// GETs of one blob.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.hits("GET", &self.blob_path(digest))
    }

    /// `/v2/<name>/blobs/<digest>`
    pub fn blob_path(&self, digest: &str) -> String {
        format!("/v2/{}/blobs/{digest}", self.state.name)
    }

    /// `/v2/<name>/manifests/<reference>`
    pub fn manifest_path(&self, reference: &str) -> String {
        format!("/v2/{}/manifests/{reference}", self.state.name)
    }

    /// GETs of the manifest, by tag plus by digest.
    pub fn manifest_gets(&self) -> usize {
        self.hits("GET", &self.manifest_path(&self.state.tag))
            + self.hits("GET", &self.manifest_path(&self.state.image.digest()))
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    /// Every request seen so far: ((method, path), count), sorted (for failure messages).
    pub fn all_hits(&self) -> Vec<((String, String), usize)> {
        let mut all: Vec<_> = self.state.hits.lock().unwrap().iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        all
    }

    /// Blob bodies whose receiver went away before the fake finished sending them.
    pub fn bodies_abandoned(&self) -> usize {
        self.state.bodies_abandoned.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(st): State<Arc<FakeState>>, req: Request) -> Response {
    let mut response = answer(&st, req).await;
    let headers = st.headers.lock().unwrap().clone();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (header::HeaderName::from_bytes(name.as_bytes()), header::HeaderValue::from_str(&value))
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn answer(st: &FakeState, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    *st.hits.lock().unwrap().entry((method.as_str().to_string(), path.clone())).or_insert(0) += 1;
    st.hit_count.send_modify(|n| *n += 1);

    if path == "/v2/" || path == "/v2" {
        return HttpResponse::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .body(Body::from("{}"))
            .unwrap();
    }
    let Some(rest) = path.strip_prefix(&format!("/v2/{}/", st.name)) else {
        return oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    };
    if rest == "tags/list" {
        let tags: Vec<String> = st.tags.lock().unwrap().keys().cloned().collect();
        let body = serde_json::json!({ "name": st.name, "tags": tags }).to_string();
        return HttpResponse::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
    }
    if let Some(reference) = rest.strip_prefix("manifests/") {
        let gate = st.manifest_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.pass().await;
        }
        let digest = match st.tags.lock().unwrap().get(reference) {
            Some(digest) => digest.clone(),
            None => reference.to_string(),
        };
        let Some(manifest) = st.manifests.lock().unwrap().get(&digest).cloned() else {
            return oci_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
        };
        let fault = *st.manifest_fault.lock().unwrap();
        return respond(&method, manifest, OCI_MANIFEST, &digest, fault, None);
    }
    if let Some(digest) = rest.strip_prefix("blobs/") {
        let Some(blob) = st.blobs.lock().unwrap().get(digest).cloned() else {
            return oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
        };
        let fault = *st.blob_fault.lock().unwrap();
        let streaming =
            Streaming { gate: st.blob_gate.lock().unwrap().clone(), abandoned: st.bodies_abandoned.clone() };
        return respond(&method, blob, "application/octet-stream", digest, fault, Some(streaming));
    }
    oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN")
}

fn oci_error(status: StatusCode, code: &str) -> Response {
    let body = format!(r#"{{"errors":[{{"code":"{code}","message":"fake upstream says {code}"}}]}}"#);
    HttpResponse::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// How a blob body is sent: in 1 MiB chunks, optionally stopping at a gate, with a count of
/// bodies the receiver abandoned.
struct Streaming {
    gate: Option<(usize, GateWait)>,
    abandoned: Arc<AtomicUsize>,
}

/// Counts the body as abandoned if it is dropped before its last chunk was taken.
struct BodyGuard {
    abandoned: Arc<AtomicUsize>,
    done: bool,
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        if !self.done {
            self.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

const CHUNK: usize = 1 << 20;

fn streamed(data: Bytes, fail_at_end: bool, streaming: Streaming) -> Body {
    let Streaming { gate, abandoned } = streaming;
    let stream = async_stream::stream! {
        let mut guard = BodyGuard { abandoned, done: false };
        let split = gate.as_ref().map_or(data.len(), |(after, _)| (*after).min(data.len()));
        let mut pos = 0;
        while pos < split {
            let end = (pos + CHUNK).min(split);
            guard.done = end == data.len();
            yield Ok::<Bytes, std::io::Error>(data.slice(pos..end));
            pos = end;
        }
        if let Some((_, gate)) = &gate {
            gate.pass().await;
        }
        // hyper stops polling once Content-Length bytes were taken: done before the last.
        while pos < data.len() {
            let end = (pos + CHUNK).min(data.len());
            guard.done = end == data.len();
            yield Ok(data.slice(pos..end));
            pos = end;
        }
        guard.done = true;
        if fail_at_end {
            yield Err(std::io::Error::other("FakeUpstream truncates this body"));
        }
    };
    Body::from_stream(stream)
}

fn respond(
    method: &Method,
    body: Bytes,
    content_type: &str,
    digest: &str,
    fault: Fault,
    streaming: Option<Streaming>,
) -> Response {
    if let Fault::Status(code) = fault {
        let status = StatusCode::from_u16(code).expect("status code");
        return oci_error(status, if code == 429 { "TOOMANYREQUESTS" } else { "UNKNOWN" });
    }
    let ok = HttpResponse::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header("Docker-Content-Digest", digest)
        .header(header::ETAG, format!("\"{digest}\""));
    if method == Method::HEAD {
        return ok.header(header::CONTENT_LENGTH, body.len()).body(Body::empty()).unwrap();
    }
    let half = body.len() / 2;
    // (bytes sent, Content-Length, abort after sending)
    let (data, length, fail) = match fault {
        Fault::None | Fault::Status(_) => (body.clone(), body.len(), false),
        Fault::Short => (body.slice(..half), half, false),
        Fault::Corrupt => {
            let mut bad = body.to_vec();
            bad[half] ^= 0xff;
            (Bytes::from(bad), body.len(), false)
        }
        Fault::Truncate => (body.slice(..half), body.len(), true),
    };
    let ok = ok.header(header::CONTENT_LENGTH, length);
    match streaming {
        Some(streaming) => ok.body(streamed(data, fail, streaming)).unwrap(),
        None if fail => {
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(data), Err(std::io::Error::other("FakeUpstream truncates this body"))];
            ok.body(Body::from_stream(futures::stream::iter(chunks))).unwrap()
        }
        None => ok.body(Body::from(data)).unwrap(),
    }
}
