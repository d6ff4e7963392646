//! `FakeGoProxy`: a GOPROXY tree served from memory on 127.0.0.1 that counts every request
//! by path before answering, sends `Last-Modified` (no ETag, like a static file server),
//! answers scripted statuses (404, 410) and can hold one path's
//! body half-way at a gate the test opens (to prove concurrent downloads share one fetch).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::watch;

#[derive(Default)]
struct Tree {
    /// Body and `Last-Modified` (a fake clock that ticks once per file written).
    files: Mutex<HashMap<String, (Bytes, String)>>,
    clock: std::sync::atomic::AtomicU64,
    statuses: Mutex<HashMap<String, u16>>,
    hits: Mutex<HashMap<String, usize>>,
    gated: Mutex<Option<String>>,
}

pub struct FakeGoProxy {
    tree: Arc<Tree>,
    gate: watch::Sender<bool>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGoProxy {
    pub async fn start() -> FakeGoProxy {
        let tree = Arc::new(Tree::default());
        let (gate, _) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = (tree.clone(), gate.clone());
        let app = axum::Router::new().fallback(answer).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGoProxy { tree, gate, url, task }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serve `body` at `/path` (absolute URL path, already escaped).
    pub fn file(&self, path: &str, body: impl Into<Bytes>) {
        let tick = self.tree.clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + tick);
        self.tree.files.lock().unwrap().insert(path.to_string(), (body.into(), httpdate::fmt_http_date(at)));
    }

    /// Serve a module version: `.info`, `.mod` and `.zip` under `/<escaped module>/@v/`.
    pub fn version(&self, escaped: &str, version: &str, go_mod: &str, zip: Vec<u8>) {
        let info = format!("{{\"Version\":\"{version}\",\"Time\":\"2024-01-02T03:04:05Z\"}}");
        self.file(&format!("/{escaped}/@v/{version}.info"), info);
        self.file(&format!("/{escaped}/@v/{version}.mod"), go_mod.to_string());
        self.file(&format!("/{escaped}/@v/{version}.zip"), zip);
    }

    /// Answer `status` (with a short text) at `path`.
    pub fn status(&self, path: &str, status: u16) {
        self.tree.statuses.lock().unwrap().insert(path.to_string(), status);
    }

    /// Hold the second half of `path`'s body until [`FakeGoProxy::open_gate`].
    pub fn gate(&self, path: &str) {
        *self.tree.gated.lock().unwrap() = Some(path.to_string());
    }

    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.tree.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Requests whose path contains `needle`.
    pub fn hits_containing(&self, needle: &str) -> usize {
        self.tree
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with('/') && p.contains(needle))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for FakeGoProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State((tree, gate)): State<(Arc<Tree>, watch::Sender<bool>)>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    *tree.hits.lock().unwrap().entry(format!("{} {path}", req.method())).or_default() += 1;
    *tree.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    if let Some(status) = tree.statuses.lock().unwrap().get(&path).copied() {
        let status = StatusCode::from_u16(status).unwrap();
        return (status, format!("{status}: scripted\n")).into_response();
    }
    let Some((body, modified)) = tree.files.lock().unwrap().get(&path).cloned() else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let held = tree.gated.lock().unwrap().as_deref() == Some(path.as_str());
    let length = body.len();
    let body = if held {
        let mut open = gate.subscribe();
        let (first, rest) = (body.slice(..length / 2), body.slice(length / 2..));
        Body::from_stream(async_stream::stream! {
            yield Ok::<Bytes, std::io::Error>(first);
            let _ = open.wait_for(|o| *o).await;
            yield Ok(rest);
        })
    } else {
        Body::from(body)
    };
    Response::builder()
        .header(header::CONTENT_LENGTH, length)
        .header(header::LAST_MODIFIED, modified)
        .body(body)
        .unwrap()
}
