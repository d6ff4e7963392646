//! Go proxy errors: plain text bodies with the status the go command acts on (404 and 410
//! mean "not here, try the next proxy"; anything else stops it). Internal causes are logged
//! here once and never sent to clients.

use crate::auth::Denied;
use crate::repo::RepoError;
use crate::storage::BlobError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Denied(#[from] Denied),
}

impl GoError {
    pub fn status(&self) -> u16 {
        self.wire().0
    }

    /// (status, message) in one table.
    fn wire(&self) -> (u16, String) {
        match self {
            GoError::NotFound(m) => (404, m.clone()),
            GoError::BadRequest(m) => (400, m.clone()),
            GoError::Conflict(m) => (409, m.clone()),
            GoError::MethodNotAllowed(m) => (405, m.clone()),
            GoError::Denied(d) => (403, d.to_string()),
            GoError::Repo(e) => repo_wire(e),
        }
    }
}

fn repo_wire(e: &RepoError) -> (u16, String) {
    match e {
        RepoError::NotFound => (404, "not found".into()),
        RepoError::ReadOnly(repo) => (405, format!("repository {repo} is a read-only remote repository")),
        RepoError::NoDeployTarget(repo) => {
            (405, format!("virtual repository {repo} has no deploy_to repository; upload to a hosted repository"))
        }
        RepoError::Upstream { status, message } => {
            tracing::warn!("upstream answered {status}: {message}");
            (502, format!("the upstream proxy answered {status} and nothing is cached"))
        }
        RepoError::Unreachable(why) => {
            tracing::warn!("upstream unreachable: {why}");
            (502, "the upstream proxy is unreachable and nothing is cached".into())
        }
        RepoError::Corrupt(why) => {
            tracing::warn!("upstream content rejected: {why}");
            (502, format!("the upstream proxy sent content that failed verification: {why}"))
        }
        RepoError::Busy(what) => (409, format!("another request is writing to {what}; retry")),
        RepoError::Blob(BlobError::TooLarge(limit)) => (413, format!("content exceeds the limit of {limit} bytes")),
        RepoError::Blob(BlobError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
            tracing::error!("storage full: {e}");
            (507, "the repository's storage is full; nothing was stored".into())
        }
        RepoError::Blob(BlobError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
            (400, "the request body ended before it was complete".into())
        }
        internal => {
            tracing::error!("internal error: {internal}");
            (500, "internal server error".into())
        }
    }
}

impl From<BlobError> for GoError {
    fn from(e: BlobError) -> GoError {
        GoError::Repo(RepoError::Blob(e))
    }
}

impl IntoResponse for GoError {
    fn into_response(self) -> Response {
        let (status, message) = self.wire();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
    }
}
