//! Pull endpoints: manifests by tag or digest and blobs with `Range`, from hosted storage,
//! the remote cache (streamed while fetched) or a virtual repository's members.

use super::error::{ErrorCode, OciError};
use super::manifest::{self, ACCEPTED, MAX_MANIFEST};
use super::paths;
use super::prefetch;
use super::route::Reference;
use super::upstream_request;
use crate::model::{unix_now, Digest, Entry};
use crate::repo::{CacheStatus, Found, Freshness, Lookup, Remote, Repo, UpstreamRequest};
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

pub const DIGEST_HEADER: &str = "Docker-Content-Digest";

pub fn manifest_request(remote: &Remote, name: &str, reference: &Reference) -> UpstreamRequest {
    let (freshness, expected) = match reference {
        Reference::Tag(_) => (Freshness::Mutable, None),
        Reference::Digest(d) => (Freshness::Immutable, Some(d.clone())),
    };
    UpstreamRequest {
        accept: ACCEPTED.iter().map(|s| s.to_string()).collect(),
        expected,
        package: Some(name.to_string()),
        document_limit: Some(MAX_MANIFEST),
        digest_header: Some(DIGEST_HEADER),
        validate: Some(crate::repo::Validator::new(|body, content_type| {
            manifest::parse(body, content_type).map(drop).map_err(|e| e.message)
        })),
        validate_blob: None,
        ..upstream_request(remote, name, &format!("manifests/{reference}"), freshness)
    }
}

pub(super) fn blob_request(remote: &Remote, name: &str, digest: &Digest) -> UpstreamRequest {
    UpstreamRequest {
        expected: Some(digest.clone()),
        ..upstream_request(remote, name, &format!("blobs/{digest}"), Freshness::Immutable)
    }
}

/// Find a manifest in `repo` (or its members, or upstream), recording fetched ones.
pub async fn find_manifest(
    repo: &Arc<Repo>,
    name: &str,
    reference: &Reference,
) -> Result<(Found, bytes::Bytes), OciError> {
    let path = match reference {
        Reference::Tag(tag) => paths::tag(name, tag),
        Reference::Digest(digest) => paths::manifest(name, digest),
    };
    let upstream = |remote: &Remote| manifest_request(remote, name, reference);
    let lookup = Lookup { path, upstream: Some(&upstream) };
    let unknown = || OciError::new(ErrorCode::ManifestUnknown, format!("manifest {name}:{reference} is unknown"));
    let found =
        repo.get(&lookup).await.map_err(|e| OciError::from_repo(e, ErrorCode::ManifestUnknown))?.ok_or_else(unknown)?;
    let holder = repo.member(&found.repo);
    let bytes = holder.read_entry(&found.entry, MAX_MANIFEST).await?;
    if matches!(found.cache_status(), Some(CacheStatus::Miss { .. })) {
        record_manifest(&holder, name, &found.entry, &bytes).await?;
        prefetch::spawn(holder, name.to_string(), found.entry.clone(), bytes.clone());
    }
    Ok((found, bytes))
}

/// Keep a manifest fetched from upstream under its digest too, with its subject, so later
/// pulls by digest and referrer queries are served from the cache.
async fn record_manifest(holder: &Repo, name: &str, fetched: &Entry, bytes: &[u8]) -> Result<(), OciError> {
    let Ok(parsed) = manifest::parse(bytes, fetched.media_type.as_deref()) else {
        return Ok(());
    };
    let Ok(digest) = fetched.digest.parse::<Digest>() else { return Ok(()) };
    let entry = manifest_entry(name, &digest, fetched.blob.clone(), bytes.len() as u64, &parsed, fetched.checked_at);
    holder.put_entry(&entry).await?;
    Ok(())
}

pub fn manifest_entry(
    name: &str,
    digest: &Digest,
    blob: String,
    size: u64,
    parsed: &manifest::Manifest,
    now: i64,
) -> Entry {
    Entry {
        repo: String::new(),
        path: paths::manifest(name, digest),
        digest: digest.to_string(),
        blob,
        size,
        media_type: Some(parsed.media_type.clone()),
        package: Some(name.to_string()),
        refers_to: parsed.subject.as_ref().map(ToString::to_string),
        attrs: serde_json::json!({ "artifactType": parsed.artifact_type, "annotations": parsed.annotations }),
        created_at: now.max(unix_now()),
        checked_at: now,
        etag: None,
    }
}

pub async fn get_manifest(
    repo: &Arc<Repo>,
    name: &str,
    reference: &Reference,
    head: bool,
) -> Result<Response, OciError> {
    let (found, bytes) = find_manifest(repo, name, reference).await?;
    let media_type = found.entry.media_type.clone().unwrap_or_else(|| manifest::OCI_MANIFEST.to_string());
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CONTENT_LENGTH, bytes.len())
        .header(DIGEST_HEADER, &found.entry.digest)
        .header(header::ETAG, format!("\"{}\"", found.entry.digest));
    if let Some(status) = found.cache_status_header(repo) {
        response = response.header("Cache-Status", status);
    }
    let body = if head { Body::empty() } else { Body::from(bytes) };
    response.body(body).map_err(|e| OciError::new(ErrorCode::Unknown, e.to_string()))
}

pub async fn get_blob(
    repo: &Arc<Repo>,
    name: &str,
    digest: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, OciError> {
    let upstream = |remote: &Remote| blob_request(remote, name, digest);
    // Pushing clients HEAD every blob through the virtual repository they push to, to skip the
    // upload of what is there: that answers from what the members hold (stored or cached),
    // never by downloading from, or waiting on, a remote member's upstream.
    let from_upstream = !(head && repo.is_virtual());
    let lookup = Lookup { path: paths::blob(digest), upstream: from_upstream.then_some(&upstream as _) };
    let unknown = || OciError::new(ErrorCode::BlobUnknown, format!("blob {digest} is unknown to this repository"));
    let found =
        repo.get(&lookup).await.map_err(|e| OciError::from_repo(e, ErrorCode::BlobUnknown))?.ok_or_else(unknown)?;
    let size = found.entry.size;
    // RFC 9110: a Range header we cannot parse (or multiple ranges) is ignored; a valid one
    // outside the blob is 416.
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|r| is_single_byte_range(r)) {
        Some(raw) => Some(parse_range(raw, size).ok_or_else(|| {
            OciError::new(ErrorCode::RangeInvalid, format!("range {raw} is not satisfiable for {size} bytes"))
                .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
        })?),
        None => None,
    };
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(DIGEST_HEADER, digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""));
    if let Some(status) = found.cache_status_header(repo) {
        response = response.header("Cache-Status", status);
    }
    response = match range {
        Some((start, end)) => response
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
            .header(header::CONTENT_LENGTH, end - start + 1),
        None => response.status(StatusCode::OK).header(header::CONTENT_LENGTH, size),
    };
    if head {
        return response.body(Body::empty()).map_err(|e| OciError::new(ErrorCode::Unknown, e.to_string()));
    }
    if let Some(location) = redirect(repo, &found, range).await? {
        return Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, location.as_str())
            .header(DIGEST_HEADER, digest.to_string())
            .body(Body::empty())
            .map_err(|e| OciError::new(ErrorCode::Unknown, e.to_string()));
    }
    let stream = repo.member(&found.repo).open(found, range).await?;
    response.body(Body::from_stream(stream)).map_err(|e| OciError::new(ErrorCode::Unknown, e.to_string()))
}

/// `storage.blobs.redirect`: a whole stored blob is fetched from the object store directly
/// (307 to a presigned URL). Ranges and blobs still arriving from an upstream stream through.
async fn redirect(repo: &Repo, found: &Found, range: Option<(u64, u64)>) -> Result<Option<url::Url>, OciError> {
    if range.is_some() || matches!(found.source, crate::repo::Source::Streaming(..)) {
        return Ok(None);
    }
    let Ok(sha256) = Digest::from_sha256_hex(&found.entry.blob) else { return Ok(None) };
    let url = repo.blobs().redirect_url(&sha256).await;
    url.map_err(|e| OciError::from_repo(e.into(), ErrorCode::BlobUnknown))
}

fn is_single_byte_range(raw: &str) -> bool {
    let Some((a, b)) = raw.trim().strip_prefix("bytes=").and_then(|spec| spec.split_once('-')) else { return false };
    let number = |s: &str| s.trim().is_empty() || s.trim().bytes().all(|c| c.is_ascii_digit());
    // RFC 9110 §14.1.1: a last position below the first makes the range spec invalid (ignored).
    let reversed = matches!((a.trim().parse::<u64>(), b.trim().parse::<u64>()), (Ok(first), Ok(last)) if last < first);
    !(a.trim().is_empty() && b.trim().is_empty()) && number(a) && number(b) && !reversed
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive `(start, end)` within `size`.
pub fn parse_range(raw: &str, size: u64) -> Option<(u64, u64)> {
    let spec = raw.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            if n == 0 {
                return None;
            }
            (size.saturating_sub(n), size - 1)
        }
        (start, "") => (start.parse().ok()?, size - 1),
        (start, end) => (start.parse().ok()?, end.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), Some((0, 4)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=8-100", 10), Some((8, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=5-2", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
        assert!(super::is_single_byte_range("bytes=0-4"));
        assert!(!super::is_single_byte_range("bytes=abc"));
        assert!(!super::is_single_byte_range("bytes=0-1,3-4"));
        assert!(!super::is_single_byte_range("bytes=5-2"), "reversed ranges are ignored, not 416");
        assert!(super::is_single_byte_range("bytes=20-30"), "unsatisfiable but valid: 416");
    }
}
