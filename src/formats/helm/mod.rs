//! Helm chart repositories: `/<repo>/index.yaml`, chart archives, and the ChartMuseum API
//! under `/api/<repo>/…`.

use crate::formats::Ctx;
use crate::repo::Repo;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// A request under `/<repo>/`, or under the API (`path` then starts with `api/`).
pub async fn serve(repo: &Arc<Repo>, ctx: &Ctx, path: &str, req: Request<Body>) -> Response {
    let _ = (repo, ctx, path, req);
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
