//! The internal endpoint other nodes of a cluster stream a running upstream fetch from
//! (`repo/cluster.rs`). It only joins a fetch already running in this process — it never
//! starts one and never reads anything a client could not fetch through the remote repository,
//! and it answers only requests carrying the cluster's shared token (404 otherwise).

use crate::repo::cluster::{OUTCOME_HEADER, TOKEN_HEADER, TOTAL_HEADER};
use crate::repo::{RepoError, Repos};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

#[derive(serde::Deserialize)]
pub(super) struct FlightQuery {
    repo: String,
    path: String,
}

pub(super) async fn flight(
    State(repos): State<Arc<Repos>>,
    headers: HeaderMap,
    Query(q): Query<FlightQuery>,
) -> Response {
    let Some(repo) = repos.get(&q.repo) else { return StatusCode::NOT_FOUND.into_response() };
    let presented = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    let token = repo.stores().cluster.as_ref().map(|c| c.token.as_str());
    let (Some(presented), Some(token), Some(remote)) = (presented, token, repo.remote()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(mut reader) = remote.join_running(&q.repo, &q.path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match reader.started().await {
        Ok((total, media_type)) => {
            let mut response = Response::builder().status(StatusCode::OK);
            if let Some(total) = total {
                response = response.header(TOTAL_HEADER, total);
            }
            if let Some(media_type) = media_type {
                response = response.header(header::CONTENT_TYPE, media_type);
            }
            let body = Body::from_stream(reader.into_stream(None));
            response.body(body).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Err(RepoError::NotFound) => {
            (StatusCode::NOT_FOUND, [(OUTCOME_HEADER, "not-found".to_string())]).into_response()
        }
        // The upstream's own answer: the other nodes report it too instead of asking again.
        Err(RepoError::Upstream { status, message }) => {
            (StatusCode::BAD_GATEWAY, [(OUTCOME_HEADER, format!("upstream-{status}"))], message).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
