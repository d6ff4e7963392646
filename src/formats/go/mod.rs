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
use axum::http::{Method, Request, StatusCode};
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
        let read = route::action(&route) == Action::Read;
        let result = serve_route(repo, route, req).await;
        match read && !matches!(repo.kind, RepoKind::Hosted) {
            true => Ok(super::with_cache_status(result, |e| error_detail(e.status()))),
            false => result,
        }
    }
}

/// A `Cache-Status` detail for an error answer: its reason phrase (`Not Found`, `Bad Gateway`).
fn error_detail(status: u16) -> String {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    status.canonical_reason().unwrap_or("error").to_string()
}

async fn serve_route(repo: &Arc<Repo>, route: Route, req: Request<Body>) -> Result<Response, GoError> {
    {
        match route {
            Route::GetList { module } => lists::get_list(repo, &module).await,
            Route::GetLatest { module } => lists::get_latest(repo, &module).await,
            Route::GetInfo { module, query } => download::get_file(repo, &module, &query, FileKind::Info).await,
            Route::GetMod { module, version } => {
                download::get_file(repo, &module, version.as_str(), FileKind::Mod).await
            }
            Route::GetZip { module, version } => {
                download::get_file(repo, &module, version.as_str(), FileKind::Zip).await
            }
            Route::Put { module, version, file } => upload::put(repo, module, version, file, req).await,
            Route::Upload => upload::upload(repo, req).await,
            Route::Sumdb { name, path, kind } => sumdb::get(repo, &name, &path, kind).await,
        }
    }
}

/// A request under `/<repo>/`, or under `/api/go/<repo>/` (`path` then starts with `api/`).
pub async fn serve(repo: &Arc<Repo>, ctx: &Ctx, path: &str, req: Request<Body>) -> Response {
    mount(&Go, repo, ctx, path, req).await
}
