//! `ChartServer`: a static chart-repository host on 127.0.0.1 (an ephemeral port each, so
//! two of them are two different origins). It serves files put into it with an `ETag` or
//! only a `Last-Modified` validator, answers conditional requests, can demand Basic auth,
//! counts every request and records the `Authorization` headers it saw before answering
//! (counts are exact once a client returns), and can be stopped (every request then fails).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, Response, StatusCode};
use bytes::Bytes;

use crate::helm_fixtures::sha256_hex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validator {
    ETag,
    LastModified,
}

#[derive(Default)]
struct Files {
    /// path → (body, version counter for Last-Modified)
    by_path: HashMap<String, (Bytes, u64)>,
    hits: HashMap<(String, String), usize>,
    authorizations: Vec<String>,
    clock: u64,
}

struct Shared {
    files: Mutex<Files>,
    validator: Validator,
    down: AtomicBool,
    demand_auth: AtomicBool,
}

pub struct ChartServer {
    pub addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ChartServer {
    pub async fn start(validator: Validator) -> ChartServer {
        let shared = Arc::new(Shared {
            files: Mutex::default(),
            validator,
            down: AtomicBool::new(false),
            demand_auth: AtomicBool::new(false),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind chart server");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(serve).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ChartServer { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Publish (or replace) `path` with `body`; Last-Modified moves forward on every put.
    pub fn put(&self, path: &str, body: impl Into<Bytes>) {
        let mut files = self.shared.files.lock().unwrap();
        files.clock += 1;
        let clock = files.clock;
        files.by_path.insert(path.to_string(), (body.into(), clock));
    }

    pub fn hits(&self, method: &str, path: &str) -> usize {
        let files = self.shared.files.lock().unwrap();
        files.hits.get(&(method.to_string(), path.to_string())).copied().unwrap_or(0)
    }

    pub fn authorizations(&self) -> Vec<String> {
        self.shared.files.lock().unwrap().authorizations.clone()
    }

    /// Answer 401 with a Basic challenge to every request.
    pub fn demand_auth(&self) {
        self.shared.demand_auth.store(true, Ordering::SeqCst);
    }

    /// Stop answering: the listener closes and requests on open connections get 503.
    pub fn stop(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

impl Drop for ChartServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(shared): State<Arc<Shared>>, req: Request) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let found = {
        let mut files = shared.files.lock().unwrap();
        *files.hits.entry((method.to_string(), path.clone())).or_default() += 1;
        if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
            files.authorizations.push(auth.to_str().unwrap_or("?").to_string());
        }
        files.by_path.get(&path).cloned()
    };
    let reply = |status: StatusCode| Response::builder().status(status).body(Body::empty()).unwrap();
    if shared.down.load(Ordering::SeqCst) {
        return reply(StatusCode::SERVICE_UNAVAILABLE);
    }
    if shared.demand_auth.load(Ordering::SeqCst) {
        let mut r = reply(StatusCode::UNAUTHORIZED);
        r.headers_mut().insert(header::WWW_AUTHENTICATE, "Basic realm=\"charts\"".parse().unwrap());
        return r;
    }
    let Some((body, clock)) = found else { return reply(StatusCode::NOT_FOUND) };
    let etag = format!("\"{}\"", &sha256_hex(&body)[..16]);
    let modified =
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + clock));
    let (name, value, condition) = match shared.validator {
        Validator::ETag => (header::ETAG, etag, header::IF_NONE_MATCH),
        Validator::LastModified => (header::LAST_MODIFIED, modified, header::IF_MODIFIED_SINCE),
    };
    let unchanged = req.headers().get(&condition).and_then(|v| v.to_str().ok()) == Some(value.as_str());
    let builder = Response::builder().header(name, value);
    if unchanged {
        return builder.status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap();
    }
    let builder = builder.status(StatusCode::OK).header(header::CONTENT_LENGTH, body.len());
    match method {
        Method::HEAD => builder.body(Body::empty()).unwrap(),
        _ => builder.body(Body::from(body)).unwrap(),
    }
}
