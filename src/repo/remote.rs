//! The fetch-through cache shared by every remote repository. Each path has a freshness class
//! declared by its format: `Immutable` (by digest: cached forever) or `Mutable` (tags, indexes:
//! revalidated after `metadata_ttl` with a HEAD and a digest, ETag or Last-Modified compare).
//! The cached copy is served when the upstream fails; upstream misses are remembered for
//! `negative_ttl`.

use super::flights::{Coalescer, FetchJob, Flights};
use super::refresh::{Refresh, Refreshed};
use super::upstream::Upstream;
use super::{Found, Repo, RepoError, Source};
use crate::config::RemoteSpec;
use crate::model::{unix_now, Digest, Entry};
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
    /// Fetched from the upstream now; `collapsed` when it joined another request's fetch;
    /// `stored` when the copy was verified and cached before the answer started (documents),
    /// false while a blob is still streaming through (its checks are still to come).
    Miss {
        collapsed: bool,
        stored: bool,
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
            CacheStatus::Miss { collapsed: false, stored: true } => "binaryrepo; fwd=uri-miss; stored".into(),
            CacheStatus::Miss { collapsed: false, stored: false } => "binaryrepo; fwd=uri-miss".into(),
            CacheStatus::Miss { collapsed: true, .. } => "binaryrepo; fwd=uri-miss; collapsed".into(),
            CacheStatus::Revalidated => "binaryrepo; fwd=stale; fwd-status=200; detail=revalidated".into(),
            CacheStatus::Stale(why) => format!("binaryrepo; hit; detail=\"stale: {}\"", header_safe(why)),
        }
    }
}

/// `text` fit for a quoted header parameter: no quotes, backslashes or control characters
/// (an upstream's message may span lines; a header value that cannot be built would lose the
/// whole `Cache-Status`).
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// Checks a fetched document's body against its Content-Type; `Err` says why it is invalid.
/// A closure, so a check can depend on what was asked for (a version, a name).
#[derive(Clone)]
pub struct Validator(Arc<DocumentCheck>);

type DocumentCheck = dyn Fn(&[u8], Option<&str>) -> Result<(), String> + Send + Sync;
type BlobCheck = dyn Fn(&mut std::fs::File) -> Result<(), String> + Send + Sync;

impl Validator {
    pub fn new(check: impl Fn(&[u8], Option<&str>) -> Result<(), String> + Send + Sync + 'static) -> Validator {
        Validator(Arc::new(check))
    }

    pub fn check(&self, body: &[u8], content_type: Option<&str>) -> Result<(), String> {
        (self.0)(body, content_type)
    }
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Validator")
    }
}

/// Checks a fetched blob before it is published: called off the async runtime with a
/// temporary file holding the complete body (rewound); `Err` says why it is invalid, and the
/// blob is then neither published nor cached (readers' streams end with an error).
#[derive(Clone)]
pub struct BlobValidator(Arc<BlobCheck>);

impl BlobValidator {
    pub fn new(check: impl Fn(&mut std::fs::File) -> Result<(), String> + Send + Sync + 'static) -> BlobValidator {
        BlobValidator(Arc::new(check))
    }

    pub fn check(&self, file: &mut std::fs::File) -> Result<(), String> {
        (self.0)(file)
    }
}

impl std::fmt::Debug for BlobValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobValidator")
    }
}

/// How to ask the upstream for one catalog path; built by the format for each remote.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Path (and query) relative to the upstream base URL, or an absolute URL (fetched
    /// without the upstream's credentials when it is on another origin).
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
    /// Response header that carries the content digest, compared on revalidation (else the
    /// ETag, else Last-Modified).
    pub digest_header: Option<&'static str>,
    /// The format's check of a fetched document (body, Content-Type); failures are not cached.
    pub validate: Option<Validator>,
    /// The format's check of a fetched blob (streamed through a flight), run on the complete
    /// body before it is published; failures are not cached.
    pub validate_blob: Option<BlobValidator>,
}

pub struct Remote {
    pub spec: RemoteSpec,
    upstream: Arc<Upstream>,
    flights: Arc<Flights>,
    refreshes: Arc<Coalescer<Refreshed>>,
    misses: Arc<Misses>,
}

/// Upstream 404s remembered for `negative_ttl`, separately from cached entries.
pub(super) struct Misses {
    ttl: Duration,
    seen: Mutex<HashMap<String, Instant>>,
}

impl Misses {
    fn recent(&self, key: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(key) {
            Some(at) if at.elapsed() < self.ttl => true,
            Some(_) => {
                seen.remove(key);
                false
            }
            None => false,
        }
    }

    pub(super) fn remember(&self, key: &str) {
        if self.ttl > Duration::ZERO {
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), Instant::now());
        }
    }
}

impl Remote {
    pub fn new(spec: RemoteSpec) -> Result<Remote, RepoError> {
        let upstream =
            Upstream::new(spec.upstream.clone(), spec.username.clone(), spec.password.clone(), spec.upstream_timeout)?;
        let misses = Misses { ttl: spec.negative_ttl, seen: Mutex::default() };
        Ok(Remote {
            spec,
            upstream: Arc::new(upstream),
            flights: Arc::default(),
            refreshes: Arc::default(),
            misses: Arc::new(misses),
        })
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
        let cached = repo.get_local(path).await?;
        // Excluded packages (private names) never reach the upstream: the cache only.
        let local_only = self.spec.offline || request.package.as_deref().is_some_and(|p| self.spec.excludes(p));
        if let Some(entry) = &cached {
            if local_only || self.is_fresh(entry, request.freshness) {
                return Ok(Some(found(repo, entry.clone(), CacheStatus::Hit)));
            }
        } else if local_only || self.misses.recent(path) {
            return Ok(None);
        }
        match request.document_limit {
            Some(_) => self.refresh_document(repo, path, request, cached).await,
            None => self.fetch_blob(repo, path, &request).await,
        }
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

    /// Revalidate or fetch a document, one detached refresh per path shared by every waiter.
    async fn refresh_document(
        &self,
        repo: &Repo,
        path: &str,
        request: UpstreamRequest,
        cached: Option<Entry>,
    ) -> Result<Option<Found>, RepoError> {
        let job = Refresh {
            upstream: self.upstream.clone(),
            stores: repo.stores_arc(),
            misses: self.misses.clone(),
            repo: repo.name.to_string(),
            path: path.to_string(),
            request,
            cached,
        };
        let key = format!("{}\n{path}", repo.name);
        let Some((outcome, collapsed)) = self.refreshes.run(key, move || job.run()).await else {
            return Err(RepoError::Unreachable("the upstream refresh task failed".into()));
        };
        match outcome {
            Refreshed::Found(entry, CacheStatus::Miss { .. }) => {
                Ok(Some(found(repo, *entry, CacheStatus::Miss { collapsed, stored: true })))
            }
            Refreshed::Found(entry, status) => Ok(Some(found(repo, *entry, status))),
            Refreshed::Missing => Ok(None),
            Refreshed::Failed { status: Some(status), message } => Err(RepoError::Upstream { status, message }),
            Refreshed::Failed { status: None, message } => Err(RepoError::Unreachable(message)),
            Refreshed::Rejected(why) => Err(RepoError::Corrupt(why)),
        }
    }

    async fn fetch_blob(&self, repo: &Repo, path: &str, request: &UpstreamRequest) -> Result<Option<Found>, RepoError> {
        let job = FetchJob {
            upstream: self.upstream.clone(),
            blobs: repo.stores().blobs.clone(),
            meta: repo.stores().meta.clone(),
            repo: repo.name.to_string(),
            path: path.to_string(),
            request: request.clone(),
            timeout: self.spec.fetch_timeout,
            cluster: repo.stores().cluster.clone(),
            spool: repo.stores().spool.clone(),
        };
        let mut reader = self.flights.join_or_start(job);
        let (total, media_type) = match reader.started().await {
            Ok(started) => started,
            Err(RepoError::NotFound) => {
                self.misses.remember(path);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
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
        // Not `stored` yet: the body is still arriving, and is checked once complete.
        let status = CacheStatus::Miss { collapsed: reader.collapsed, stored: false };
        Ok(Some(Found { entry, repo: repo.name.clone(), source: Source::Streaming(reader, status) }))
    }
}

impl Remote {
    /// The fetch of `path` running in this process, for another node to stream.
    pub fn join_running(&self, repo: &str, path: &str) -> Option<super::flights::FlightReader> {
        self.flights.join_running(repo, path)
    }
}

fn found(repo: &Repo, entry: Entry, status: CacheStatus) -> Found {
    Found { entry, repo: repo.name.clone(), source: Source::Cached(status) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_values_are_valid_headers() {
        let stale = CacheStatus::Stale("upstream document exceeds 10 bytes:\r\n\"x\"\tline".into());
        for status in [
            stale,
            CacheStatus::Hit,
            CacheStatus::Revalidated,
            CacheStatus::Miss { collapsed: false, stored: true },
            CacheStatus::Miss { collapsed: false, stored: false },
            CacheStatus::Miss { collapsed: true, stored: false },
        ] {
            let value = status.header_value();
            assert!(axum::http::HeaderValue::from_str(&value).is_ok(), "{value:?}");
        }
        assert_eq!(CacheStatus::Miss { collapsed: false, stored: false }.header_value(), "binaryrepo; fwd=uri-miss");
    }
}
