//! Upstreams for remote repositories, all on 127.0.0.1:
//!
//! * `DistributionRegistry`: the Debian `docker-registry` (CNCF distribution 2.8)
//!   with filesystem storage in a temp dir. Requests are counted from its access
//!   log; `stop()` / `start_again()` simulate an upstream outage (connections are
//!   refused while it is down).
//! * `FakeUpstream`: a scripted registry serving one `TestImage` as `busybox:latest`
//!   that can truncate, shorten or corrupt bodies or fail with a status, and counts
//!   every request before answering (so counts are exact once a client returns).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response as HttpResponse;
use axum::http::{header, Method, StatusCode};

type Response = HttpResponse<Body>;
use bytes::Bytes;
use tempfile::TempDir;

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

struct FakeState {
    name: String,
    tag: String,
    image: TestImage,
    blob_fault: Mutex<Fault>,
    manifest_fault: Mutex<Fault>,
    hits: Mutex<HashMap<(String, String), usize>>,
}

pub struct FakeUpstream {
    addr: SocketAddr,
    state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    /// Serves `image` as `busybox:latest` (and by digest).
    pub async fn start(image: TestImage) -> FakeUpstream {
        let state = Arc::new(FakeState {
            name: "busybox".into(),
            tag: "latest".into(),
            image,
            blob_fault: Mutex::new(Fault::None),
            manifest_fault: Mutex::new(Fault::None),
            hits: Mutex::new(HashMap::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake upstream");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeUpstream { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn image(&self) -> &TestImage {
        &self.state.image
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn tag(&self) -> &str {
        &self.state.tag
    }

    pub fn set_blob_fault(&self, fault: Fault) {
        *self.state.blob_fault.lock().unwrap() = fault;
    }

    pub fn set_manifest_fault(&self, fault: Fault) {
        *self.state.manifest_fault.lock().unwrap() = fault;
    }

    /// Requests seen for exactly this method and path.
    pub fn hits(&self, method: &str, path: &str) -> usize {
        let hits = self.state.hits.lock().unwrap();
        hits.get(&(method.to_string(), path.to_string())).copied().unwrap_or(0)
    }

    /// GETs of one blob.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.hits("GET", &format!("/v2/{}/blobs/{digest}", self.state.name))
    }

    /// GETs of the manifest, by tag plus by digest.
    pub fn manifest_gets(&self) -> usize {
        let base = format!("/v2/{}/manifests/", self.state.name);
        self.hits("GET", &format!("{base}{}", self.state.tag))
            + self.hits("GET", &format!("{base}{}", self.state.image.digest()))
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(st): State<Arc<FakeState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    *st.hits.lock().unwrap().entry((method.as_str().to_string(), path.clone())).or_insert(0) += 1;

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
    if let Some(reference) = rest.strip_prefix("manifests/") {
        let digest = st.image.digest();
        if reference != st.tag && reference != digest {
            return oci_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
        }
        let fault = *st.manifest_fault.lock().unwrap();
        return respond(&method, &st.image.manifest, OCI_MANIFEST, &digest, fault);
    }
    if let Some(digest) = rest.strip_prefix("blobs/") {
        let Some(blob) = st.image.blob(digest) else {
            return oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
        };
        let fault = *st.blob_fault.lock().unwrap();
        return respond(&method, blob, "application/octet-stream", digest, fault);
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

fn respond(method: &Method, body: &[u8], content_type: &str, digest: &str, fault: Fault) -> Response {
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
    match fault {
        Fault::None | Fault::Status(_) => {
            ok.header(header::CONTENT_LENGTH, body.len()).body(Body::from(body.to_vec())).unwrap()
        }
        Fault::Short => ok.header(header::CONTENT_LENGTH, half).body(Body::from(body[..half].to_vec())).unwrap(),
        Fault::Corrupt => {
            let mut bad = body.to_vec();
            bad[half] ^= 0xff;
            ok.header(header::CONTENT_LENGTH, bad.len()).body(Body::from(bad)).unwrap()
        }
        Fault::Truncate => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::copy_from_slice(&body[..half])),
                Err(std::io::Error::other("FakeUpstream truncates this body")),
            ];
            ok.header(header::CONTENT_LENGTH, body.len())
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap()
        }
    }
}
