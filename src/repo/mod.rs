//! Repositories over the shared stores: hosted (accepts writes), remote (fetch-through cache)
//! and virtual (members in order). Formats ask a [`Repo`] for catalog paths and never know
//! whether bytes came from disk, from the upstream, or from a fetch another request started
//! (DESIGN.md invariants 6–8).

pub mod budget;
mod claims;
pub mod cluster;
mod documents;
pub mod flights;
mod purge;
mod refresh;
pub mod remote;
pub mod upstream;

use crate::model::{BlobInfo, Digest, Entry, FormatKind, RepoName};
use crate::storage::blob::{put_stream, ByteStream};
use crate::storage::lease::{LockGuard, NamedLocks};
use crate::storage::{BlobError, BlobStore, MetaError, MetaStore};
pub use remote::{BlobValidator, CacheStatus, Freshness, Remote, UpstreamRequest, Validator};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("not found")]
    NotFound,
    #[error("repository {0} is read-only")]
    ReadOnly(String),
    #[error("virtual repository {0} has no deploy_to repository for writes")]
    NoDeployTarget(String),
    #[error("upstream answered {status}: {message}")]
    Upstream { status: u16, message: String },
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream content failed verification: {0}")]
    Corrupt(String),
    #[error("another request is working on {0}")]
    Busy(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// The two shared stores every repository uses.
pub struct Stores {
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn MetaStore>,
    documents: documents::DocumentCache,
    uploads: claims::Claims,
    /// Set when this process is one node of a cluster (cluster-wide fetch coalescing).
    pub cluster: Option<Arc<cluster::ClusterCtx>>,
    /// Database locks that serialize check-then-write sequences across processes (PostgreSQL).
    pub locks: Option<Arc<dyn NamedLocks>>,
    /// Local scratch for upstream fetches in flight (see `FetchJob::spool`).
    pub spool: Option<Arc<dyn BlobStore>>,
}

impl Stores {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetaStore>) -> Stores {
        Stores {
            blobs,
            meta,
            documents: Default::default(),
            uploads: Default::default(),
            cluster: None,
            locks: None,
            spool: None,
        }
    }

    pub fn with_locks(self, locks: Option<Arc<dyn NamedLocks>>) -> Stores {
        Stores { locks, ..self }
    }

    pub fn with_spool(self, spool: Option<Arc<dyn BlobStore>>) -> Stores {
        Stores { spool, ..self }
    }

    pub fn with_cluster(self, cluster: Option<Arc<cluster::ClusterCtx>>) -> Stores {
        Stores { cluster, ..self }
    }
}

/// Held while a repository's check-then-write sequence runs (see [`Repo::lock_writes`]).
/// Fields drop in order: the database lock first, then the process mutex.
pub struct WriteGuard<'a> {
    _db: Option<LockGuard>,
    _local: tokio::sync::MutexGuard<'a, ()>,
}

pub enum RepoKind {
    Hosted,
    Remote(Box<Remote>),
    Virtual { members: Vec<Arc<Repo>>, deploy_to: Option<Arc<Repo>> },
}

pub struct Repo {
    pub name: RepoName,
    pub format: FormatKind,
    pub kind: RepoKind,
    /// Hosted: a new upload may replace an existing version with different bytes.
    pub allow_overwrite: bool,
    /// Serializes check-then-write sequences (a manifest push checking its blobs against a
    /// blob delete checking its users) within this process.
    writes: tokio::sync::Mutex<()>,
    /// In-process state a format keeps per repository (rendered indexes and the like).
    format_state: std::sync::OnceLock<Arc<dyn std::any::Any + Send + Sync>>,
    stores: Arc<Stores>,
}

/// How an entry was found, for serving and for the `Cache-Status` header.
pub enum Source {
    Stored,
    Cached(CacheStatus),
    /// Bytes still arriving from the upstream; served while they arrive.
    Streaming(flights::FlightReader, CacheStatus),
}

pub struct Found {
    pub entry: Entry,
    /// The repository that holds the entry (a member, for virtual repositories).
    pub repo: RepoName,
    pub source: Source,
}

impl Found {
    pub fn cache_status(&self) -> Option<&CacheStatus> {
        match &self.source {
            Source::Stored => None,
            Source::Cached(s) | Source::Streaming(_, s) => Some(s),
        }
    }

    /// The RFC 9211 `Cache-Status` value for an answer of `asked`: what the remote cache did,
    /// or, for a virtual repository serving a hosted member's copy, a hit on that member.
    pub fn cache_status_header(&self, asked: &Repo) -> Option<String> {
        match self.cache_status() {
            Some(status) => Some(status.header_value()),
            None if asked.is_virtual() => {
                Some(format!("{}; detail=\"member {}\"", CacheStatus::Hit.header_value(), self.repo))
            }
            None => None,
        }
    }
}

/// A catalog lookup; `upstream` says how a remote repository would fetch it on a miss.
pub struct Lookup<'a> {
    pub path: String,
    pub upstream: Option<&'a (dyn Fn(&Remote) -> UpstreamRequest + Sync)>,
}

impl Repo {
    pub fn new(name: RepoName, format: FormatKind, kind: RepoKind, stores: Arc<Stores>) -> Repo {
        Repo {
            name,
            format,
            kind,
            allow_overwrite: false,
            writes: tokio::sync::Mutex::new(()),
            format_state: std::sync::OnceLock::new(),
            stores,
        }
    }

    /// Hold while checking what the catalog holds and writing on the strength of it, so that
    /// two such sequences in one repository cannot interleave: in this process (a mutex), and
    /// across the nodes of a cluster (a database lock per repository, taken after the mutex so
    /// that each node has at most one waiter per repository).
    pub async fn lock_writes(&self) -> Result<WriteGuard<'_>, RepoError> {
        let local = self.writes.lock().await;
        let db = match &self.stores.locks {
            Some(locks) => Some(locks.lock(&format!("writes\n{}", self.name)).await?),
            None => None,
        };
        Ok(WriteGuard { _db: db, _local: local })
    }

    /// Claim upload session `id` for this request (see [`claims`]): `Busy` while another
    /// request holds it.
    pub fn claim_upload(&self, id: &str) -> Result<claims::Claim, RepoError> {
        self.stores.uploads.claim(id)
    }

    /// The state of type `T` this repository's format keeps in this process, created on first
    /// use. One type per repository (a repository has one format); it lives as long as the
    /// repository, so two servers in one process never share it.
    pub fn format_state<T: Default + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.format_state.get_or_init(|| Arc::new(T::default())).clone().downcast::<T>().ok()
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    pub fn stores_arc(&self) -> Arc<Stores> {
        self.stores.clone()
    }

    pub fn meta(&self) -> &dyn MetaStore {
        self.stores.meta.as_ref()
    }

    pub fn blobs(&self) -> &dyn BlobStore {
        self.stores.blobs.as_ref()
    }

    pub fn is_virtual(&self) -> bool {
        matches!(self.kind, RepoKind::Virtual { .. })
    }

    /// The repositories to read from, in order: itself, or a virtual repository's members.
    pub fn readable(&self) -> Vec<&Repo> {
        match &self.kind {
            RepoKind::Virtual { members, .. } => members.iter().map(|m| m.as_ref()).collect(),
            _ => vec![self],
        }
    }

    /// The repository called `name` among this one and its members (itself if none matches).
    pub fn member(self: &Arc<Self>, name: &RepoName) -> Arc<Repo> {
        match &self.kind {
            RepoKind::Virtual { members, .. } => {
                members.iter().find(|m| &m.name == name).cloned().unwrap_or_else(|| self.clone())
            }
            _ => self.clone(),
        }
    }

    /// The hosted repository that receives writes sent to this one.
    pub fn write_target(&self) -> Result<&Repo, RepoError> {
        match &self.kind {
            RepoKind::Hosted => Ok(self),
            RepoKind::Remote(_) => Err(RepoError::ReadOnly(self.name.to_string())),
            RepoKind::Virtual { deploy_to: Some(target), .. } => Ok(target),
            RepoKind::Virtual { deploy_to: None, .. } => Err(RepoError::NoDeployTarget(self.name.to_string())),
        }
    }

    /// Find `lookup.path`: stored (hosted), cached or fetched (remote), or in the first member that has it.
    pub async fn get(&self, lookup: &Lookup<'_>) -> Result<Option<Found>, RepoError> {
        match &self.kind {
            RepoKind::Hosted => Ok(self.meta().get_entry(self.name.as_str(), &lookup.path).await?.map(|entry| Found {
                entry,
                repo: self.name.clone(),
                source: Source::Stored,
            })),
            RepoKind::Remote(remote) => match lookup.upstream {
                Some(request) => remote.get(self, &lookup.path, request(remote)).await,
                None => Ok(self.meta().get_entry(self.name.as_str(), &lookup.path).await?.map(|entry| Found {
                    entry,
                    repo: self.name.clone(),
                    source: Source::Cached(CacheStatus::Hit),
                })),
            },
            RepoKind::Virtual { members, .. } => {
                let mut errors = Vec::new();
                for member in members {
                    match Box::pin(member.get(lookup)).await {
                        Ok(Some(found)) => return Ok(Some(found)),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(repo = %self.name, member = %member.name, path = %lookup.path, "member failed: {e}");
                            errors.push(e);
                        }
                    }
                }
                // A failing member does not hide a clean "not here" from the others; only when
                // every member failed is the failure the answer.
                match errors.len() == members.len() {
                    true => Err(errors.pop().unwrap_or(RepoError::NotFound)),
                    false => Ok(None),
                }
            }
        }
    }

    /// The stored entry at `path` in this repository only (no upstream, no members).
    pub async fn get_local(&self, path: &str) -> Result<Option<Entry>, RepoError> {
        Ok(self.meta().get_entry(self.name.as_str(), path).await?)
    }

    /// Open the bytes of something found, optionally a validated inclusive byte range.
    pub async fn open(&self, found: Found, range: Option<(u64, u64)>) -> Result<ByteStream, RepoError> {
        match found.source {
            Source::Streaming(reader, _) => Ok(reader.into_stream(range)),
            _ => self.open_entry(&found.entry, range).await,
        }
    }

    pub async fn open_entry(&self, entry: &Entry, range: Option<(u64, u64)>) -> Result<ByteStream, RepoError> {
        let digest = Digest::from_sha256_hex(&entry.blob).map_err(|e| RepoError::Corrupt(e.to_string()))?;
        Ok(self.blobs().open(&digest, range).await?)
    }

    /// Read a small stored document whole (manifests, indexes), with a size limit.
    pub async fn read_entry(&self, entry: &Entry, limit: u64) -> Result<bytes::Bytes, RepoError> {
        use futures::StreamExt;
        if entry.size > limit {
            return Err(RepoError::Corrupt(format!("document of {} bytes exceeds {limit}", entry.size)));
        }
        if let Some(bytes) = self.stores.documents.get(&entry.blob) {
            return Ok(bytes);
        }
        let mut stream = self.open_entry(entry, None).await?;
        let mut buf = Vec::with_capacity(entry.size as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(BlobError::Io)?);
        }
        let bytes = bytes::Bytes::from(buf);
        self.stores.documents.put(&entry.blob, bytes.clone());
        Ok(bytes)
    }

    /// Stream bytes into the single-instance store (verified against `expected`).
    pub async fn put_blob(
        &self,
        body: ByteStream,
        expected: Option<&Digest>,
        limit: Option<u64>,
    ) -> Result<BlobInfo, RepoError> {
        Ok(put_stream(self.blobs(), body, expected, limit).await?)
    }

    /// Record an entry in this repository's catalog (the blob must already be stored).
    pub async fn put_entry(&self, entry: &Entry) -> Result<(), RepoError> {
        let mut entry = entry.clone();
        entry.repo = self.name.to_string();
        Ok(self.meta().put_entry(&entry).await?)
    }

    pub async fn delete_entry(&self, path: &str) -> Result<bool, RepoError> {
        Ok(self.meta().delete_entry(self.name.as_str(), path).await?)
    }

    pub async fn list(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<Entry>, RepoError> {
        Ok(self.meta().list_entries(self.name.as_str(), prefix, after, limit).await?)
    }

    pub async fn list_referring(&self, prefix: &str, target: &str) -> Result<Vec<Entry>, RepoError> {
        Ok(self.meta().list_referring(self.name.as_str(), prefix, target).await?)
    }

    pub async fn list_packages(&self, after: Option<&str>, limit: u32) -> Result<Vec<String>, RepoError> {
        Ok(self.meta().list_packages(self.name.as_str(), after, limit).await?)
    }

    pub fn remote(&self) -> Option<&Remote> {
        match &self.kind {
            RepoKind::Remote(r) => Some(r),
            _ => None,
        }
    }
}

/// Every configured repository, by name, with the Host-header map.
pub struct Repos {
    by_name: std::collections::BTreeMap<RepoName, Arc<Repo>>,
    by_host: std::collections::HashMap<String, RepoName>,
}

impl Repos {
    pub fn new(repos: Vec<(Arc<Repo>, Vec<String>)>) -> Repos {
        let mut by_name = std::collections::BTreeMap::new();
        let mut by_host = std::collections::HashMap::new();
        for (repo, hosts) in repos {
            for host in hosts {
                by_host.insert(host.to_ascii_lowercase(), repo.name.clone());
            }
            by_name.insert(repo.name.clone(), repo);
        }
        Repos { by_name, by_host }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Repo>> {
        let name: RepoName = name.parse().ok()?;
        self.by_name.get(&name)
    }

    /// The repository a `Host` header (with or without port) maps to.
    pub fn by_host(&self, host: &str) -> Option<&Arc<Repo>> {
        let host = host.to_ascii_lowercase();
        let bare = host
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host.as_str(), |(h, _)| h);
        self.by_host.get(&host).or_else(|| self.by_host.get(bare)).and_then(|n| self.by_name.get(n))
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Repo>> {
        self.by_name.values()
    }
}
