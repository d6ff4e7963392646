//! The fetch-through cache shared by every remote repository. Each path has a freshness class
//! declared by its format: `Immutable` (by digest: cached forever) or `Mutable` (tags, indexes:
//! revalidated after `metadata_ttl` with a HEAD and a digest/ETag compare). The cached copy is
//! served when the upstream fails; upstream misses are remembered for `negative_ttl`.

use super::flights::{FetchJob, Flights};
use super::upstream::Upstream;
use super::{Found, Repo, RepoError, Source};
use crate::config::RemoteSpec;
use crate::model::{unix_now, BlobInfo, Digest, Entry};
use crate::storage::blob::put_bytes;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Addressed by content (digest, version): never revalidated.
    Immutable,
    /// May change upstream (tags, indexes): revalidated after the repository's `metadata_ttl`.
    Mutable,
}

/// What the cache did, reported in an RFC 9211 `Cache-Status` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    /// Fetched from the upstream now; `collapsed` when it joined another request's fetch.
    Miss {
        collapsed: bool,
    },
    /// Checked against the upstream and unchanged.
    Revalidated,
    /// The upstream failed; the cached copy was served.
    Stale(String),
}

impl CacheStatus {
    pub fn header_value(&self) -> String {
        match self {
            CacheStatus::Hit => "binaryrepo; hit".into(),
            CacheStatus::Miss { collapsed: false } => "binaryrepo; fwd=uri-miss; stored".into(),
            CacheStatus::Miss { collapsed: true } => "binaryrepo; fwd=uri-miss; collapsed".into(),
            CacheStatus::Revalidated => "binaryrepo; fwd=stale; fwd-status=200; detail=revalidated".into(),
            CacheStatus::Stale(why) => format!("binaryrepo; hit; detail=\"stale: {}\"", why.replace(['"', '\\'], "'")),
        }
    }
}

/// How to ask the upstream for one catalog path; built by the format for each remote.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Path (and query) relative to the upstream base URL.
    pub path: String,
    pub accept: Vec<String>,
    pub freshness: Freshness,
    /// Verify the body against this digest before publishing it.
    pub expected: Option<Digest>,
    pub package: Option<String>,
    /// Token scope to ask for when the upstream challenges (e.g. `repository:library/redis:pull`).
    pub auth_scope: Option<String>,
    /// `Some(limit)`: a small document read whole; `None`: a blob streamed through a flight.
    pub document_limit: Option<u64>,
    /// Response header that carries the content digest, compared on revalidation (else ETag).
    pub digest_header: Option<&'static str>,
}

pub struct Remote {
    pub spec: RemoteSpec,
    upstream: Arc<Upstream>,
    flights: Arc<Flights>,
    misses: Mutex<HashMap<String, Instant>>,
}

enum Check {
    Unchanged,
    Changed,
}

impl Remote {
    pub fn new(spec: RemoteSpec) -> Result<Remote, RepoError> {
        let upstream = Upstream::new(spec.upstream.clone(), spec.username.clone(), spec.password.clone())?;
        Ok(Remote { spec, upstream: Arc::new(upstream), flights: Arc::default(), misses: Mutex::default() })
    }

    pub fn budget(&self) -> super::budget::BudgetStatus {
        self.upstream.budget()
    }

    pub fn upstream_host(&self) -> &str {
        self.upstream.host()
    }

    pub fn upstream_authority(&self) -> String {
        self.upstream.authority()
    }

    pub async fn get(&self, repo: &Repo, path: &str, request: UpstreamRequest) -> Result<Option<Found>, RepoError> {
        let found = |entry: Entry, status: CacheStatus| Found {
            entry,
            repo: repo.name.clone(),
            source: Source::Cached(status),
        };
        let cached = repo.get_local(path).await?;
        if let Some(entry) = cached {
            if self.spec.offline || self.is_fresh(&entry, request.freshness) {
                return Ok(Some(found(entry, CacheStatus::Hit)));
            }
            match self.check(&entry, &request).await {
                Ok(Check::Unchanged) => {
                    repo.meta().touch_entry(repo.name.as_str(), path, unix_now()).await?;
                    return Ok(Some(found(entry, CacheStatus::Revalidated)));
                }
                Ok(Check::Changed) => match self.fetch(repo, path, &request).await {
                    Ok(Some(fresh)) => return Ok(Some(fresh)),
                    Ok(None) => return Ok(Some(found(entry, CacheStatus::Stale("gone upstream".into())))),
                    Err(e) => return Ok(Some(self.stale(entry, repo, path, e))),
                },
                Err(e) => return Ok(Some(self.stale(entry, repo, path, e))),
            }
        }
        if self.spec.offline || self.recently_missed(path) {
            return Ok(None);
        }
        self.fetch(repo, path, &request).await
    }

    fn stale(&self, entry: Entry, repo: &Repo, path: &str, error: RepoError) -> Found {
        tracing::warn!(repo = %repo.name, path, "upstream check failed, serving cached copy: {error}");
        Found { entry, repo: repo.name.clone(), source: Source::Cached(CacheStatus::Stale(error.to_string())) }
    }

    fn is_fresh(&self, entry: &Entry, freshness: Freshness) -> bool {
        match freshness {
            Freshness::Immutable => true,
            Freshness::Mutable => {
                let age = unix_now().saturating_sub(entry.checked_at);
                let ttl = self.spec.metadata_ttl.as_secs() as i64;
                ttl > 0 && age < ttl
            }
        }
    }

    fn recently_missed(&self, path: &str) -> bool {
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        match misses.get(path) {
            Some(at) if at.elapsed() < self.spec.negative_ttl => true,
            Some(_) => {
                misses.remove(path);
                false
            }
            None => false,
        }
    }

    fn remember_miss(&self, path: &str) {
        if self.spec.negative_ttl > Duration::ZERO {
            self.misses.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_string(), Instant::now());
        }
    }

    /// HEAD the upstream and compare its digest (or ETag) with the cached entry's.
    async fn check(&self, entry: &Entry, request: &UpstreamRequest) -> Result<Check, RepoError> {
        let response =
            self.upstream.send(Method::HEAD, &request.path, &request.accept, request.auth_scope.as_deref()).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(Check::Changed);
        }
        if !status.is_success() {
            return Err(RepoError::Upstream { status: status.as_u16(), message: format!("HEAD {}", request.path) });
        }
        let header = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"').to_string())
        };
        let upstream_digest = request.digest_header.and_then(header);
        let same = match (upstream_digest, header("etag")) {
            (Some(digest), _) => digest == entry.digest,
            (None, Some(etag)) => entry.etag.as_deref().map(|e| e.trim_matches('"')) == Some(etag.as_str()),
            (None, None) => false,
        };
        Ok(if same { Check::Unchanged } else { Check::Changed })
    }

    async fn fetch(&self, repo: &Repo, path: &str, request: &UpstreamRequest) -> Result<Option<Found>, RepoError> {
        let result = match request.document_limit {
            Some(limit) => self.fetch_document(repo, path, request, limit).await,
            None => self.fetch_blob(repo, path, request).await,
        };
        match result {
            Err(RepoError::NotFound) => {
                self.remember_miss(path);
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    async fn fetch_document(
        &self,
        repo: &Repo,
        path: &str,
        request: &UpstreamRequest,
        limit: u64,
    ) -> Result<Found, RepoError> {
        let response =
            self.upstream.send(Method::GET, &request.path, &request.accept, request.auth_scope.as_deref()).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(RepoError::NotFound),
            status => {
                return Err(RepoError::Upstream { status: status.as_u16(), message: format!("GET {}", request.path) })
            }
        }
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let media_type = header("content-type");
        let etag = header("etag");
        let claimed = request.digest_header.and_then(header);
        let body = read_limited(response, limit).await?;
        let digest = match &request.expected {
            Some(expected) => expected.clone(),
            None => Digest::sha256_of(&body),
        };
        if let Some(claimed) = claimed.as_deref().and_then(|c| c.parse::<Digest>().ok()) {
            if claimed.algorithm() == digest.algorithm() && Digest::of(claimed.algorithm(), &body) != claimed {
                return Err(RepoError::Corrupt(format!("upstream body does not match its digest {claimed}")));
            }
        }
        let info = put_bytes(repo.blobs(), body, Some(&digest)).await.map_err(|e| RepoError::Corrupt(e.to_string()))?;
        let entry = cached_entry(repo.name.as_str(), path, &digest, &info, media_type, request, etag);
        repo.put_entry(&entry).await?;
        Ok(Found { entry, repo: repo.name.clone(), source: Source::Cached(CacheStatus::Miss { collapsed: false }) })
    }

    async fn fetch_blob(&self, repo: &Repo, path: &str, request: &UpstreamRequest) -> Result<Found, RepoError> {
        let job = FetchJob {
            upstream: self.upstream.clone(),
            blobs: repo.stores().blobs.clone(),
            meta: repo.stores().meta.clone(),
            repo: repo.name.to_string(),
            path: path.to_string(),
            request: request.clone(),
            timeout: self.spec.fetch_timeout,
        };
        let mut reader = self.flights.join_or_start(job);
        let (total, media_type) = reader.started().await?;
        let entry = Entry {
            repo: repo.name.to_string(),
            path: path.to_string(),
            digest: request.expected.as_ref().map(ToString::to_string).unwrap_or_default(),
            size: total.unwrap_or(0),
            media_type,
            package: request.package.clone(),
            attrs: serde_json::json!({}),
            ..Default::default()
        };
        let status = CacheStatus::Miss { collapsed: reader.collapsed };
        Ok(Found { entry, repo: repo.name.clone(), source: Source::Streaming(reader, status) })
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
