//! The HTTP edge: the router (health, `/v2` for OCI), the main listener and one extra
//! listener per repository `port`, optional native TLS, and request logging.

mod cluster;
mod linger;
mod tls;

use crate::formats::oci::{self, Addressing, API_VERSION_HEADER};
use crate::repo::{RepoKind, Repos};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
struct Shared {
    repos: Arc<Repos>,
    public_url: Option<url::Url>,
    addressing: Addressing,
}

pub fn router(repos: Arc<Repos>, public_url: Option<url::Url>, addressing: Addressing) -> Router {
    let internal =
        Router::new().route(crate::repo::cluster::FLIGHT_PATH, get(cluster::flight)).with_state(repos.clone());
    let shared = Shared { repos, public_url, addressing };
    Router::new()
        .merge(internal)
        .route("/healthz", get(healthz))
        .route("/api/v1/repositories", get(list_repositories))
        .route("/v2", axum::routing::any(serve_oci))
        .route("/v2/", axum::routing::any(serve_oci))
        .route("/v2/{*rest}", axum::routing::any(serve_oci))
        .fallback(serve_repo_path)
        .with_state(shared)
        .layer(middleware::from_fn(linger::linger_on_unread_bodies))
        .layer(middleware::from_fn(log_request))
}

/// `ok` when the metadata store answers within 3 s, else 503: a load balancer then stops
/// sending requests to a node whose database is gone (they would wait and fail).
async fn healthz(State(shared): State<Shared>) -> Response {
    let Some(repo) = shared.repos.all().next() else { return "ok".into_response() };
    let probe = repo.meta().get_upload("healthz-probe");
    match tokio::time::timeout(std::time::Duration::from_secs(3), probe).await {
        Ok(Ok(_)) => "ok".into_response(),
        Ok(Err(e)) => unhealthy(format!("metadata store failed: {e}")),
        Err(_) => unhealthy("metadata store did not answer within 3 s".into()),
    }
}

fn unhealthy(why: String) -> Response {
    tracing::warn!("health check: {why}");
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

async fn serve_oci(State(shared): State<Shared>, req: Request<Body>) -> Response {
    let mut response = oci::dispatch(shared.repos, shared.public_url, &shared.addressing, req).await;
    response.headers_mut().insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

async fn serve_repo_path(State(shared): State<Shared>, req: Request<Body>) -> Response {
    crate::formats::dispatch_repo_path(shared.repos, shared.public_url, req).await
}

/// Configured repositories, with each remote's upstream and its rate-limit budget.
async fn list_repositories(State(shared): State<Shared>) -> axum::Json<serde_json::Value> {
    let repos: Vec<serde_json::Value> = shared
        .repos
        .all()
        .map(|repo| {
            let mut item = serde_json::json!({ "name": repo.name.as_str(), "format": repo.format.as_str() });
            match &repo.kind {
                RepoKind::Hosted => item["kind"] = "hosted".into(),
                RepoKind::Remote(remote) => {
                    item["kind"] = "remote".into();
                    item["upstream"] = remote.spec.upstream.as_str().into();
                    item["offline"] = remote.spec.offline.into();
                    item["rate_limit"] = serde_json::to_value(remote.budget()).unwrap_or_default();
                }
                RepoKind::Virtual { members, deploy_to } => {
                    item["kind"] = "virtual".into();
                    item["members"] = members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().into();
                    item["deploy_to"] = deploy_to.as_ref().map(|d| d.name.as_str()).into();
                }
            }
            item
        })
        .collect();
    axum::Json(serde_json::json!({ "repositories": repos }))
}

async fn log_request(req: Request<Body>, next: Next) -> impl IntoResponse {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let response = next.run(req).await;
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(%method, %uri, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    } else {
        tracing::info!(%method, %uri, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    }
    response
}

/// One listener: an address, the router it serves, and whether it speaks TLS.
pub struct Listener {
    pub addr: SocketAddr,
    pub router: Router,
    pub label: String,
}

/// Bind every listener first (so configuration errors surface before serving), then serve.
pub async fn serve(listeners: Vec<Listener>, tls: Option<tls::TlsFiles>) -> anyhow::Result<()> {
    let acceptor = tls.map(|files| tls::acceptor(&files)).transpose()?;
    let mut bound = Vec::new();
    for listener in listeners {
        let socket = tokio::net::TcpListener::bind(listener.addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", listener.addr))?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{} ({})", socket.local_addr()?, listener.label);
        bound.push((socket, listener.router));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (socket, router) in bound {
        match acceptor.clone() {
            Some(acceptor) => tasks.spawn(tls::serve(socket, router, acceptor)),
            None => tasks.spawn(async move {
                // Without TCP_NODELAY, small responses on keep-alive connections wait for delayed ACKs.
                let socket = socket.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(socket, router).await.map_err(anyhow::Error::from)
            }),
        };
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

pub use tls::TlsFiles;
