//! Go module proxy repositories: the GOPROXY protocol (Go modules reference, "GOPROXY
//! protocol", <https://go.dev/ref/mod#goproxy-protocol>) under `/<repo>/…`, uploads under
//! `/<repo>/…` (PUT) and `/api/go/<repo>/upload`, and a checksum database proxy under
//! `/<repo>/sumdb/…`. Hosted, remote and virtual behaviour comes from the shared repository
//! layer; this folder knows only Go's paths, rules and documents.
//!
//! Files: `route` (pure parser), `module` (paths, versions, ordering), `modzip` (zip rules),
//! `paths` (catalog layout), `download` and `lists` (reads), `publish` and `upload` (writes),
//! `sumdb`, `error`.

pub mod download;
pub mod error;
pub mod lists;
pub mod module;
pub mod modzip;
pub mod paths;
pub mod publish;
pub mod route;
pub mod sumdb;
pub mod upload;

use super::{mount, Ctx, Format};
use crate::model::Action;
use crate::repo::{Repo, RepoKind};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request};
use axum::response::Response;
use error::GoError;
use route::{FileKind, Route};
use std::sync::Arc;

pub struct Go;

#[async_trait]
impl Format for Go {
    type Route = Route;
    type Error = GoError;

    fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Route, GoError> {
        route::parse(method, path, query)
    }

    fn action(route: &Route) -> Action {
        route::action(route)
    }

    async fn serve(&self, repo: &Arc<Repo>, _ctx: &Ctx, route: Route, req: Request<Body>) -> Result<Response, GoError> {
        serve_route(repo, route, req).await
    }
}

async fn serve_route(repo: &Arc<Repo>, route: Route, req: Request<Body>) -> Result<Response, GoError> {
    match route {
        Route::GetList { module } => lists::get_list(repo, &module).await,
        Route::GetLatest { module } => lists::get_latest(repo, &module).await,
        Route::GetInfo { module, query } => download::get_file(repo, &module, &query, FileKind::Info).await,
        Route::GetMod { module, version } => download::get_file(repo, &module, version.as_str(), FileKind::Mod).await,
        Route::GetZip { module, version } => download::get_file(repo, &module, version.as_str(), FileKind::Zip).await,
        Route::Put { module, version, file } => upload::put(repo, module, version, file, req).await,
        Route::Upload => upload::upload(repo, req).await,
        Route::Sumdb { name, path, kind } => sumdb::get(repo, &name, &path, kind).await,
    }
}

/// A request under `/<repo>/`, or under `/api/go/<repo>/` (`path` then starts with `api/`).
/// Every read answer of a remote or virtual repository carries `Cache-Status`, also errors
/// refused before serving (a malformed path, a denied read): their detail is the status'
/// reason phrase (`Not Found`, `Bad Gateway`), a merged answer's "assembled from members".
pub async fn serve(repo: &Arc<Repo>, ctx: &Ctx, path: &str, req: Request<Body>) -> Response {
    let read = *req.method() == Method::GET || *req.method() == Method::HEAD;
    let response = mount(&Go, repo, ctx, path, req).await;
    if !read || matches!(repo.kind, RepoKind::Hosted) {
        return response;
    }
    let detail = match response.status() {
        status if status.is_success() => "assembled from members",
        status => status.canonical_reason().unwrap_or("error"),
    };
    super::fill_cache_status(response, detail)
}
