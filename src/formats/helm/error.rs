//! Errors as ChartMuseum sends them: `{"error": "<message>"}` with an HTTP status
//! (<https://github.com/helm/chartmuseum#api>). Internal causes are logged here once and
//! never sent to clients.

use super::chart::ChartError;
use crate::auth::Denied;
use crate::repo::RepoError;
use crate::storage::BlobError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct HelmError {
    pub status: u16,
    pub message: String,
}

impl HelmError {
    pub fn new(status: u16, message: impl Into<String>) -> HelmError {
        HelmError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> HelmError {
        HelmError::new(400, message)
    }

    pub fn not_found(message: impl Into<String>) -> HelmError {
        HelmError::new(404, message)
    }

    pub fn conflict(message: impl Into<String>) -> HelmError {
        HelmError::new(409, message)
    }

    pub fn internal(cause: impl std::fmt::Display) -> HelmError {
        tracing::error!("internal error: {cause}");
        HelmError::new(500, "internal server error")
    }
}

impl From<ChartError> for HelmError {
    fn from(e: ChartError) -> HelmError {
        match e {
            ChartError::Storage(cause) => HelmError::internal(cause),
            invalid => HelmError::bad_request(invalid.to_string()),
        }
    }
}

impl From<RepoError> for HelmError {
    fn from(e: RepoError) -> HelmError {
        match e {
            RepoError::NotFound => HelmError::not_found("not found"),
            RepoError::ReadOnly(repo) => {
                HelmError::new(405, format!("repository {repo} is a read-only remote repository"))
            }
            RepoError::NoDeployTarget(repo) => HelmError::new(
                405,
                format!("virtual repository {repo} has no deploy_to repository; upload to a hosted repository"),
            ),
            RepoError::Upstream { status: 429, .. } => HelmError::new(429, "the upstream rate-limits this request"),
            RepoError::Upstream { status, message } => {
                tracing::warn!("upstream answered {status}: {message}");
                HelmError::new(502, format!("the upstream chart repository answered {status}"))
            }
            RepoError::Unreachable(why) => {
                tracing::warn!("upstream unreachable: {why}");
                HelmError::new(503, "the upstream chart repository is unreachable and nothing is cached")
            }
            RepoError::Corrupt(why) => {
                tracing::warn!("upstream content rejected: {why}");
                HelmError::new(502, format!("the upstream sent content that failed verification: {why}"))
            }
            RepoError::Busy(what) => HelmError::new(409, format!("another request is writing to {what}; retry")),
            RepoError::Blob(BlobError::TooLarge(limit)) => {
                HelmError::new(413, format!("the upload exceeds the limit of {limit} bytes"))
            }
            RepoError::Blob(BlobError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
                HelmError::bad_request(format!("the request body ended before it was complete: {e}"))
            }
            internal => HelmError::internal(internal),
        }
    }
}

impl From<BlobError> for HelmError {
    fn from(e: BlobError) -> HelmError {
        RepoError::Blob(e).into()
    }
}

impl From<Denied> for HelmError {
    fn from(d: Denied) -> HelmError {
        HelmError::new(403, d.to_string())
    }
}

impl IntoResponse for HelmError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({ "error": self.message }).to_string();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}
