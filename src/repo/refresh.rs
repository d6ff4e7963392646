//! One refresh of a cached document (tag, index, list), owned so it runs detached from the
//! request that started it: a HEAD revalidation (digest header, ETag or Last-Modified
//! compare), a GET when the document changed or was never cached, and serve-stale when the
//! upstream fails.

use super::remote::{CacheStatus, Misses, UpstreamRequest};
use super::upstream::Upstream;
use super::{RepoError, Stores};
use crate::model::{unix_now, BlobInfo, Digest, Entry};
use crate::storage::blob::put_bytes;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use std::sync::Arc;

/// Where a cached document's upstream `Last-Modified` is kept (in the entry's attrs).
const LAST_MODIFIED: &str = "upstream_last_modified";

/// What every waiter of a refresh gets (cloned to each).
#[derive(Debug, Clone)]
pub enum Refreshed {
    Found(Box<Entry>, CacheStatus),
    Missing,
    Failed {
        status: Option<u16>,
        message: String,
    },
    /// The upstream answered with content that failed verification (digest, size, format).
    Rejected(String),
}

pub struct Refresh {
    pub upstream: Arc<Upstream>,
    pub stores: Arc<Stores>,
    pub misses: Arc<Misses>,
    pub repo: String,
    pub path: String,
    pub request: UpstreamRequest,
    pub cached: Option<Entry>,
}

enum Check {
    Unchanged,
    Changed,
}

impl Refresh {
    pub async fn run(self) -> Refreshed {
        let Some(cached) = self.cached.clone() else {
            return match self.fetch().await {
                Ok(entry) => Refreshed::Found(Box::new(entry), CacheStatus::Miss { collapsed: false, stored: true }),
                Err(RepoError::NotFound) => {
                    self.misses.remember(&self.path);
                    Refreshed::Missing
                }
                Err(RepoError::Upstream { status, message }) => Refreshed::Failed { status: Some(status), message },
                Err(RepoError::Corrupt(why)) => Refreshed::Rejected(why),
                Err(e) => Refreshed::Failed { status: None, message: e.to_string() },
            };
        };
        let outcome = match self.check(&cached).await {
            Ok(Check::Unchanged) => match self.stores.meta.touch_entry(&self.repo, &self.path, unix_now()).await {
                Ok(()) => return Refreshed::Found(Box::new(cached), CacheStatus::Revalidated),
                Err(e) => Err(RepoError::from(e)),
            },
            Ok(Check::Changed) => self.fetch().await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(entry) => Refreshed::Found(Box::new(entry), CacheStatus::Miss { collapsed: false, stored: true }),
            Err(RepoError::NotFound) => Refreshed::Found(Box::new(cached), CacheStatus::Stale("gone upstream".into())),
            Err(e) => {
                tracing::warn!(repo = %self.repo, path = %self.path, "upstream check failed, serving cached copy: {e}");
                Refreshed::Found(Box::new(cached), CacheStatus::Stale(e.to_string()))
            }
        }
    }

    /// HEAD the upstream and compare its digest (or ETag) with the cached entry's.
    async fn check(&self, entry: &Entry) -> Result<Check, RepoError> {
        let request = &self.request;
        let response = self.upstream.send(Method::HEAD, request).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(Check::Changed);
        }
        if matches!(status, StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED) {
            // Some endpoints take no HEAD (the CNCF registry's tags list): compare by GET.
            return Ok(Check::Changed);
        }
        if !status.is_success() {
            return Err(RepoError::Upstream { status: status.as_u16(), message: format!("HEAD {}", request.path) });
        }
        let header = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"').to_string())
        };
        let upstream_digest = request.digest_header.and_then(header);
        let cached_etag = entry.etag.as_deref().map(|e| e.trim_matches('"'));
        let same = match (upstream_digest, header("etag")) {
            (Some(digest), _) => digest == entry.digest,
            (None, Some(etag)) if cached_etag.is_some() => cached_etag == Some(etag.as_str()),
            // Static file hosts often send only Last-Modified (recorded at fetch).
            _ => header("last-modified").is_some_and(|lm| entry.attrs.get(LAST_MODIFIED) == Some(&lm.into())),
        };
        Ok(if same { Check::Unchanged } else { Check::Changed })
    }

    /// GET the document, verify it, store it and record its entry.
    async fn fetch(&self) -> Result<Entry, RepoError> {
        let request = &self.request;
        let limit = request.document_limit.unwrap_or(0);
        let response = self.upstream.get(request).await?;
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let media_type = header("content-type");
        let etag = header("etag");
        let last_modified = header("last-modified");
        let claimed = request.digest_header.and_then(header);
        let body = read_limited(response, limit).await?;
        if let Some(validate) = &request.validate {
            validate.check(&body, media_type.as_deref()).map_err(|why| {
                RepoError::Corrupt(format!("upstream sent an invalid document for {}: {why}", request.path))
            })?;
        }
        let digest = match &request.expected {
            Some(expected) => expected.clone(),
            None => Digest::sha256_of(&body),
        };
        if let Some(claimed) = claimed.as_deref().and_then(|c| c.parse::<Digest>().ok()) {
            if claimed.algorithm() == digest.algorithm() && Digest::of(claimed.algorithm(), &body) != claimed {
                return Err(RepoError::Corrupt(format!("upstream body does not match its digest {claimed}")));
            }
        }
        let info = put_bytes(self.stores.blobs.as_ref(), body, Some(&digest))
            .await
            .map_err(|e| RepoError::Corrupt(e.to_string()))?;
        let mut entry = cached_entry(&self.repo, &self.path, &digest, &info, media_type, request, etag);
        if let Some(last_modified) = last_modified {
            entry.attrs = serde_json::json!({ LAST_MODIFIED: last_modified });
        }
        self.stores.meta.put_entry(&entry).await?;
        Ok(entry)
    }
}

/// The catalog entry for something just fetched from the upstream and stored.
pub(super) fn cached_entry(
    repo: &str,
    path: &str,
    digest: &Digest,
    info: &BlobInfo,
    media_type: Option<String>,
    request: &UpstreamRequest,
    etag: Option<String>,
) -> Entry {
    let now = unix_now();
    Entry {
        repo: repo.to_string(),
        path: path.to_string(),
        digest: digest.to_string(),
        blob: info.sha256.hex().to_string(),
        size: info.size,
        media_type,
        package: request.package.clone(),
        refers_to: None,
        attrs: serde_json::json!({}),
        created_at: now,
        checked_at: now,
        etag,
    }
}

async fn read_limited(response: reqwest::Response, limit: u64) -> Result<bytes::Bytes, RepoError> {
    if response.content_length().is_some_and(|l| l > limit) {
        return Err(RepoError::Corrupt(format!("upstream document exceeds {limit} bytes")));
    }
    let mut body = response.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RepoError::Unreachable(format!("upstream body failed: {e}")))?;
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(RepoError::Corrupt(format!("upstream document exceeds {limit} bytes")));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}
