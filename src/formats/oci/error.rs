//! OCI error bodies: `{"errors":[{"code","message","detail"}]}` with the spec's codes and
//! statuses (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes>).
//! Internal causes are logged here once and never sent to clients.

use crate::auth::Denied;
use crate::repo::RepoError;
use crate::storage::BlobError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    PaginationNumberInvalid,
    RangeInvalid,
    NotFound,
    Unavailable,
    Unknown,
}

impl ErrorCode {
    /// The wire code and its default status, in one table.
    pub fn as_str(self) -> &'static str {
        self.wire().0
    }

    fn wire(self) -> (&'static str, u16) {
        match self {
            ErrorCode::BlobUnknown => ("BLOB_UNKNOWN", 404),
            ErrorCode::BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", 400),
            ErrorCode::BlobUploadUnknown => ("BLOB_UPLOAD_UNKNOWN", 404),
            ErrorCode::DigestInvalid => ("DIGEST_INVALID", 400),
            ErrorCode::ManifestBlobUnknown => ("MANIFEST_BLOB_UNKNOWN", 400),
            ErrorCode::ManifestInvalid => ("MANIFEST_INVALID", 400),
            ErrorCode::ManifestUnknown => ("MANIFEST_UNKNOWN", 404),
            ErrorCode::NameInvalid => ("NAME_INVALID", 400),
            ErrorCode::NameUnknown => ("NAME_UNKNOWN", 404),
            ErrorCode::SizeInvalid => ("SIZE_INVALID", 400),
            ErrorCode::Unauthorized => ("UNAUTHORIZED", 401),
            ErrorCode::Denied => ("DENIED", 403),
            ErrorCode::Unsupported => ("UNSUPPORTED", 405),
            ErrorCode::TooManyRequests => ("TOOMANYREQUESTS", 429),
            ErrorCode::PaginationNumberInvalid => ("PAGINATION_NUMBER_INVALID", 400),
            ErrorCode::RangeInvalid => ("RANGE_INVALID", 416),
            ErrorCode::NotFound => ("NOT_FOUND", 404),
            ErrorCode::Unavailable => ("UNAVAILABLE", 503),
            ErrorCode::Unknown => ("UNKNOWN", 500),
        }
    }
}

#[derive(Debug)]
pub struct OciError {
    pub code: ErrorCode,
    pub message: String,
    pub status: u16,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(header::HeaderName, String)>,
}

impl OciError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> OciError {
        OciError { code, message: message.into(), status: code.wire().1, detail: None, headers: Vec::new() }
    }
    pub fn with_status(mut self, status: u16) -> OciError {
        self.status = status;
        self
    }
    pub fn with_detail(mut self, detail: serde_json::Value) -> OciError {
        self.detail = Some(detail);
        self
    }
    pub fn with_header(mut self, name: header::HeaderName, value: String) -> OciError {
        self.headers.push((name, value));
        self
    }
    /// A repository error in the context of a manifest or blob lookup.
    /// A 429 says when to come back: the longest wait among the remotes behind `repo`.
    pub fn with_retry_after(self, repo: &crate::repo::Repo) -> OciError {
        if self.code != ErrorCode::TooManyRequests {
            return self;
        }
        let remotes = repo.readable().into_iter().filter_map(|r| r.remote());
        match remotes.map(|r| r.budget().blocked_for_secs).max() {
            Some(wait) if wait > 0 => self.with_header(header::RETRY_AFTER, wait.to_string()),
            _ => self,
        }
    }

    pub fn from_repo(e: RepoError, missing: ErrorCode) -> OciError {
        match e {
            RepoError::NotFound => OciError::new(missing, "not found"),
            other => other.into(),
        }
    }
}

impl From<RepoError> for OciError {
    fn from(e: RepoError) -> OciError {
        match e {
            RepoError::NotFound => OciError::new(ErrorCode::NotFound, "not found"),
            RepoError::ReadOnly(repo) => {
                OciError::new(ErrorCode::Unsupported, format!("repository {repo} is a read-only remote repository"))
            }
            RepoError::NoDeployTarget(repo) => OciError::new(
                ErrorCode::Unsupported,
                format!("virtual repository {repo} has no deploy_to repository; push to a hosted repository"),
            ),
            RepoError::Upstream { status: 429, .. } => {
                OciError::new(ErrorCode::TooManyRequests, "the upstream registry rate-limits this request")
            }
            RepoError::Upstream { status, message } if (400..500).contains(&status) => {
                tracing::warn!("upstream refused: {status} {message}");
                OciError::new(ErrorCode::Denied, format!("the upstream registry answered {status}")).with_status(502)
            }
            RepoError::Upstream { status, message } => {
                tracing::warn!("upstream failed: {status} {message}");
                OciError::new(ErrorCode::Unavailable, format!("the upstream registry answered {status}"))
            }
            RepoError::Unreachable(why) => {
                tracing::warn!("upstream unreachable: {why}");
                OciError::new(ErrorCode::Unavailable, "the upstream registry is unreachable and nothing is cached")
            }
            RepoError::Corrupt(why) => {
                tracing::warn!("upstream content rejected: {why}");
                OciError::new(
                    ErrorCode::Unavailable,
                    format!("the upstream registry sent content that failed verification: {why}"),
                )
                .with_status(502)
            }
            RepoError::Blob(BlobError::DigestMismatch { expected, actual }) => {
                OciError::new(ErrorCode::DigestInvalid, format!("content hashes to {actual}, not {expected}"))
            }
            RepoError::Blob(BlobError::TooLarge(limit)) => {
                OciError::new(ErrorCode::SizeInvalid, format!("content exceeds the limit of {limit} bytes"))
                    .with_status(413)
            }
            RepoError::Blob(BlobError::NotFound) => OciError::new(ErrorCode::BlobUnknown, "blob unknown to registry"),
            RepoError::Blob(BlobError::UploadNotFound) => {
                OciError::new(ErrorCode::BlobUploadUnknown, "upload unknown to registry")
            }
            RepoError::Busy(what) => OciError::new(
                ErrorCode::RangeInvalid,
                format!("another request is writing to upload {what}; send the next chunk after it ended"),
            )
            .with_status(416),
            RepoError::Blob(BlobError::OffsetMismatch { current, requested }) => OciError::new(
                ErrorCode::RangeInvalid,
                format!("chunk starts at {requested} but the upload has {current} bytes"),
            ),
            RepoError::Blob(BlobError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
                tracing::info!("request body ended early: {e}");
                OciError::new(ErrorCode::BlobUploadInvalid, "the request body ended before it was complete")
            }
            RepoError::Blob(BlobError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                tracing::error!("storage full: {e}");
                OciError::new(ErrorCode::Unknown, "the registry's storage is full; nothing was stored").with_status(507)
            }
            internal @ (RepoError::Blob(BlobError::Io(_)) | RepoError::Meta(_)) => {
                tracing::error!("internal error: {internal}");
                OciError::new(ErrorCode::Unknown, "internal server error")
            }
        }
    }
}

impl From<Denied> for OciError {
    fn from(d: Denied) -> OciError {
        OciError::new(ErrorCode::Denied, d.to_string())
    }
}

impl From<BlobError> for OciError {
    fn from(e: BlobError) -> OciError {
        RepoError::Blob(e).into()
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let (code, _) = self.code.wire();
        let body = serde_json::json!({
            "errors": [{ "code": code, "message": self.message, "detail": self.detail.unwrap_or(serde_json::Value::Null) }]
        });
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_causes_map_to_statuses_without_leaking_details() {
        let io = |kind| RepoError::Blob(BlobError::Io(std::io::Error::from(kind)));
        let full = OciError::from(io(std::io::ErrorKind::StorageFull));
        assert_eq!((full.status, full.code), (507, ErrorCode::Unknown));
        let other = OciError::from(io(std::io::ErrorKind::PermissionDenied));
        assert_eq!((other.status, other.message.as_str()), (500, "internal server error"));
        let busy = OciError::from(RepoError::Busy("u1".into()));
        assert_eq!((busy.status, busy.code), (416, ErrorCode::RangeInvalid));
    }
}
