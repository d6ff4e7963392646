//! Go module proxy repositories (the GOPROXY protocol) under `/<repo>/…`, and the upload API
//! under `/api/go/<repo>/…`.

use crate::formats::Ctx;
use crate::repo::Repo;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// A request under `/<repo>/` (`api` false) or `/api/go/<repo>/` (`api` true); `path` is the rest.
pub async fn serve(repo: &Arc<Repo>, ctx: &Ctx, path: &str, req: Request<Body>) -> Response {
    let _ = (repo, ctx, path, req);
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
