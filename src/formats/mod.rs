//! Format adapters. Each format lives in its own folder and implements [`Format`]; `mount`
//! runs every request through parse → authorize → serve, so no handler can forget access
//! control (DESIGN.md invariant 3).

pub mod go;
pub mod helm;
pub mod oci;

use crate::auth::{authorize, Denied, Principal};
use crate::model::{Action, FormatKind};
use crate::repo::{Repo, RepoError, Repos};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// What a request carries besides its route: who asks, and how URLs back to us are spelled.
pub struct Ctx {
    pub principal: Principal,
    /// Path prefix of the repository in URLs we hand out (e.g. `docker-local/`, or empty
    /// when the repository is addressed by port or Host header).
    pub prefix: String,
    /// Absolute base for Location headers, when configured.
    pub public_url: Option<url::Url>,
    pub repos: Arc<Repos>,
}

impl Ctx {
    /// An absolute-path (or absolute, with `public_url`) location for `path` (starting with `/`).
    pub fn location(&self, path: &str) -> String {
        match &self.public_url {
            Some(base) => format!("{}{}", base.as_str().trim_end_matches('/'), path),
            None => path.to_string(),
        }
    }
}

#[async_trait]
pub trait Format: Send + Sync + 'static {
    type Route: Send + std::fmt::Debug;
    type Error: IntoResponse + From<RepoError> + From<Denied> + Send;
    /// Pure: no I/O. Unknown paths are errors.
    fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Self::Route, Self::Error>;
    fn action(route: &Self::Route) -> Action;
    async fn serve(
        &self,
        repo: &Arc<Repo>,
        ctx: &Ctx,
        route: Self::Route,
        req: Request<Body>,
    ) -> Result<Response, Self::Error>;
}

/// Parse, authorize, then serve one request for `repo`.
pub async fn mount<F: Format>(format: &F, repo: &Arc<Repo>, ctx: &Ctx, path: &str, req: Request<Body>) -> Response {
    let route = match F::parse(req.method(), path, req.uri().query()) {
        Ok(route) => route,
        Err(e) => return e.into_response(),
    };
    if let Err(denied) = authorize(&ctx.principal, &repo.name, F::action(&route)) {
        return F::Error::from(denied).into_response();
    }
    match format.serve(repo, ctx, route, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// `Cache-Status` (RFC 9211): every read answer of a remote or virtual repository carries one.
pub const CACHE_STATUS: axum::http::HeaderName = axum::http::HeaderName::from_static("cache-status");

/// Give a read answer of a remote or virtual repository a `Cache-Status` when its handler set
/// none (one entry decides most answers; the handler sets it then): answers assembled from
/// several members and errors get `binaryrepo; detail="…"`.
pub fn with_cache_status<E: IntoResponse>(
    result: Result<Response, E>,
    error_detail: impl FnOnce(&E) -> String,
) -> Response {
    match result {
        Ok(response) => fill_cache_status(response, "assembled from members"),
        Err(e) => {
            let detail = error_detail(&e);
            fill_cache_status(e.into_response(), &detail)
        }
    }
}

/// `response` with `Cache-Status: binaryrepo; detail="<detail>"` unless it has one.
pub fn fill_cache_status(mut response: Response, detail: &str) -> Response {
    if !response.headers().contains_key(&CACHE_STATUS) {
        let detail = detail.replace(['"', '\\'], "");
        if let Ok(value) = axum::http::HeaderValue::from_str(&format!("binaryrepo; detail=\"{detail}\"")) {
            response.headers_mut().insert(CACHE_STATUS, value);
        }
    }
    response
}

/// Requests outside `/v2`: `/<repo>/…` for path-based formats (Helm, Go), `/api/<repo>/…` for
/// the ChartMuseum API and `/api/go/<repo>/…` for Go uploads. The format sees the path after
/// the repository key, with `api/` in front for API requests (`index.yaml`, `api/charts/x`).
pub async fn dispatch_repo_path(repos: Arc<Repos>, public_url: Option<url::Url>, req: Request<Body>) -> Response {
    let path = req.uri().path().to_string();
    let Some((format, key, inner)) = split_repo_path(&repos, &path) else {
        // No repository by that key: a chart repository path gets ChartMuseum's JSON error.
        if [".tgz", ".tgz.prov", "/index.yaml"].iter().any(|end| path.ends_with(end)) {
            let key = path.trim_start_matches('/').split('/').next().unwrap_or_default();
            return helm::error::HelmError::not_found(format!("no helm repository {key:?}")).into_response();
        }
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let Some(repo) = repos.get(key).cloned().filter(|r| r.format == format) else {
        let message = format!("no {} repository {key:?}", format.as_str());
        // Chart repository clients expect ChartMuseum's JSON error body; Go's are plain text.
        return match format {
            FormatKind::Helm => helm::error::HelmError::not_found(message).into_response(),
            _ => (StatusCode::NOT_FOUND, format!("{message}\n")).into_response(),
        };
    };
    let ctx = Ctx { principal: Principal::Anonymous, prefix: format!("{key}/"), public_url, repos };
    match format {
        FormatKind::Helm => helm::serve(&repo, &ctx, &inner, req).await,
        FormatKind::Go => go::serve(&repo, &ctx, &inner, req).await,
        FormatKind::Docker => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// (format, repository key, path after the key with `api/` in front for API requests) of a
/// request path outside `/v2`.
fn split_repo_path<'p>(repos: &Repos, path: &'p str) -> Option<(FormatKind, &'p str, String)> {
    let split = |s: &'p str| s.split_once('/').unwrap_or((s, ""));
    let path = path.trim_start_matches('/');
    if let Some(api) = path.strip_prefix("api/") {
        if let Some(go) = api.strip_prefix("go/") {
            // Go's upload API, also for keys that are no go repository (a plain-text 404 names
            // them), unless a Helm repository is called `go`.
            let (key, inner) = split(go);
            if !repos.get("go").is_some_and(|r| r.format == FormatKind::Helm) {
                return Some((FormatKind::Go, key, format!("api/{inner}")));
            }
        }
        let (key, inner) = split(api);
        return Some((FormatKind::Helm, key, format!("api/{inner}")));
    }
    let (key, inner) = split(path);
    let format = repos.get(key)?.format;
    Some((format, key, inner.to_string()))
}

/// `%XX` escapes of a URL path decoded (`+` stays `+`: a path, not a form; `%21` is `!`);
/// None for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
