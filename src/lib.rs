//! binaryrepo: a binary artifact manager. Hosted, remote (pull-through cache) and virtual
//! repositories over one single-instance, content-addressed blob store.
//!
//! Layers point one way: `http → formats → repo → storage → model` (see ARCHITECTURE.md).

pub mod auth;
pub mod config;
pub mod formats;
pub mod http;
pub mod model;
pub mod repo;
pub mod storage;

use config::{BlobBackend, Config, KindSpec, RepoSpec};
use formats::oci::Addressing;
use repo::cluster::ClusterCtx;
use repo::{Remote, Repo, RepoKind, Repos, Stores};
use std::sync::Arc;
use storage::blob::fs::FsBlobStore;
use storage::blob::s3::S3BlobStore;
use storage::meta::cached::CachedMetaStore;
use storage::meta::postgres::{listen_invalidations, Invalidation, PostgresMetaStore};
use storage::meta::sqlite::SqliteMetaStore;

/// A built server: stores opened, repositories wired, listeners planned.
pub struct App {
    pub config: Config,
    pub repos: Arc<Repos>,
    specs: Vec<RepoSpec>,
    /// Held for the life of the process: see [`lock_data_dir`].
    _data_lock: std::fs::File,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let specs = config.validate()?;
        let data = &config.storage.path;
        std::fs::create_dir_all(data)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data.display()))?;
        let data_lock = lock_data_dir(data)?;
        let longest_fetch = specs
            .iter()
            .filter_map(|s| match &s.kind {
                KindSpec::Remote(r) => Some(r.fetch_timeout),
                _ => None,
            })
            .max()
            .unwrap_or_default();
        let blobs = open_blobs(&config, ABANDONED_AFTER.max(longest_fetch * 2)).await?;
        let (meta, postgres) = open_meta(&config).await?;
        let cluster = match (&config.cluster.advertise_url, &postgres) {
            (Some(url), Some(pg)) => Some(cluster_ctx(&config, url, pg.clone()).await?),
            _ => None,
        };
        let locks = postgres.clone().map(|pg| pg as Arc<dyn storage::lease::NamedLocks>);
        // Fetches in flight are tailed from local disk unless the blobs are on local disk anyway.
        let spool: Option<Arc<dyn storage::BlobStore>> = match (config.storage.blobs.backend, cluster.is_some()) {
            (BlobBackend::Fs, false) => None,
            _ => Some(Arc::new(FsBlobStore::open(&config.storage.path.join("spool")).await?)),
        };
        let stores = Arc::new(Stores::new(blobs, meta).with_cluster(cluster).with_locks(locks).with_spool(spool));
        let repos = build_repos(&specs, &stores)?;
        stores.clone().spawn_upload_purging(config.storage.upload_ttl);
        Ok(App { config, repos: Arc::new(repos), specs, _data_lock: data_lock })
    }

    /// The main listener plus one per repository `port`.
    pub fn listeners(&self) -> Vec<http::Listener> {
        let public_url = self.config.server.public_url.clone();
        let main = self.config.server.listen;
        let mut listeners = vec![http::Listener {
            addr: main,
            router: http::router(self.repos.clone(), public_url.clone(), Addressing::Shared),
            label: "all repositories".into(),
        }];
        for spec in &self.specs {
            if let Some(port) = spec.port {
                listeners.push(http::Listener {
                    addr: std::net::SocketAddr::new(main.ip(), port),
                    router: http::router(
                        self.repos.clone(),
                        public_url.clone(),
                        Addressing::Port(spec.name.to_string()),
                    ),
                    label: format!("repository {}", spec.name),
                });
            }
        }
        listeners
    }

    pub fn describe(&self) -> Vec<String> {
        self.specs
            .iter()
            .map(|spec| {
                let kind = match &spec.kind {
                    KindSpec::Hosted => "hosted".to_string(),
                    KindSpec::Remote(r) => format!("remote → {}", r.upstream),
                    KindSpec::Virtual { members, deploy_to } => {
                        let members: Vec<_> = members.iter().map(ToString::to_string).collect();
                        let deploy = deploy_to.as_ref().map(|d| format!(", deploy to {d}")).unwrap_or_default();
                        format!("virtual over [{}]{deploy}", members.join(", "))
                    }
                };
                format!("{} ({}, {kind})", spec.name, spec.format.as_str())
            })
            .collect()
    }

    pub async fn serve(self) -> anyhow::Result<()> {
        let tls = match (&self.config.server.tls_cert, &self.config.server.tls_key) {
            (Some(cert), Some(key)) => Some(http::TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        };
        http::serve(self.listeners(), tls).await
    }
}

/// One process per data directory: its caches (catalog entries, tags, misses) assume nobody
/// else writes the database, and its in-flight uploads and fetches live in `uploads/`. The
/// lock is an advisory `flock`, released by the kernel when the process ends however it ends.
fn lock_data_dir(data: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = data.join("binaryrepo.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow::anyhow!(
            "data directory {} is in use by another binaryrepo process (lock {}); \
             give each server its own storage.path",
            data.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::anyhow!("cannot lock {}: {e}", path.display())),
    }
}

/// Parts of upstream fetches older than this (or twice the longest `fetch_timeout`) were left by
/// a crashed node: swept at start.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

async fn open_blobs(
    config: &Config,
    abandoned_after: std::time::Duration,
) -> anyhow::Result<Arc<dyn storage::BlobStore>> {
    Ok(match config.storage.blobs.backend {
        BlobBackend::Fs => Arc::new(FsBlobStore::open(&config.storage.path).await?),
        BlobBackend::S3 => {
            let store = S3BlobStore::open(&config.storage.blobs)?;
            store.check_access().await.map_err(|e| {
                let blobs = &config.storage.blobs;
                anyhow::anyhow!(
                    "S3 bucket {:?} at {} is not usable (bucket, credentials, region?): {e}",
                    blobs.bucket.as_deref().unwrap_or(""),
                    blobs.endpoint.as_deref().unwrap_or("the AWS endpoint")
                )
            })?;
            let sweeper = store.clone();
            tokio::spawn(async move {
                match sweeper.sweep_abandoned(abandoned_after).await {
                    Ok(n) if n > 0 => tracing::info!("removed {n} objects of abandoned fetches"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("sweeping abandoned fetches: {e}"),
                }
            });
            Arc::new(store)
        }
    })
}

type MetaStores = (Arc<dyn storage::MetaStore>, Option<Arc<PostgresMetaStore>>);

/// The metadata store behind the per-process entry cache (and the PostgreSQL store itself). With
/// PostgreSQL, a background task listens for the other nodes' writes and drops their keys from
/// this node's cache.
async fn open_meta(config: &Config) -> anyhow::Result<MetaStores> {
    let url = config.storage.database.url.as_deref().unwrap_or("");
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        let file = match url.strip_prefix("sqlite:") {
            Some(file) => std::path::PathBuf::from(file.trim_start_matches("//")),
            None if url.is_empty() => config.storage.path.join("metadata.db"),
            None => anyhow::bail!("storage.database.url must start with postgres:// or sqlite:"),
        };
        let meta = SqliteMetaStore::open(&file).await?;
        return Ok((Arc::new(CachedMetaStore::new(Arc::new(meta))), None));
    }
    let pg = PostgresMetaStore::open(url).await.map_err(|e| {
        let at = url::Url::parse(url).map(|u| format!("{}:{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(5432)));
        anyhow::anyhow!("cannot open the PostgreSQL metadata store at {}: {e}", at.unwrap_or_default())
    })?;
    let pg = Arc::new(pg);
    let pool = pg.pool().clone();
    let cached = Arc::new(CachedMetaStore::new(pg.clone()));
    let target = Arc::downgrade(&cached);
    tokio::spawn(listen_invalidations(pool, move |event| {
        if let Some(cache) = target.upgrade() {
            match event {
                Invalidation::Entry { repo, path } => cache.invalidate(&repo, &path),
                Invalidation::All => cache.clear(),
            }
        }
    }));
    Ok((cached, Some(pg)))
}

/// This node's part in cluster-wide coalescing: leases and the uncached catalog in PostgreSQL.
async fn cluster_ctx(config: &Config, url: &url::Url, pg: Arc<PostgresMetaStore>) -> anyhow::Result<Arc<ClusterCtx>> {
    let http = reqwest::Client::builder().no_proxy().connect_timeout(std::time::Duration::from_secs(5)).build()?;
    Ok(Arc::new(ClusterCtx {
        node_id: uuid::Uuid::new_v4().to_string(),
        advertise_url: url.clone(),
        lease_ttl: config.cluster.lease_ttl,
        token: pg.cluster_token().await?,
        leases: pg.clone(),
        meta: pg,
        http,
    }))
}

fn build_repos(specs: &[RepoSpec], stores: &Arc<Stores>) -> anyhow::Result<Repos> {
    let mut built: Vec<(Arc<Repo>, Vec<String>)> = Vec::new();
    // Hosted and remote first, so virtual repositories can hold their members.
    for spec in specs.iter().filter(|s| !matches!(s.kind, KindSpec::Virtual { .. })) {
        let kind = match &spec.kind {
            KindSpec::Remote(remote) => RepoKind::Remote(Box::new(Remote::new(remote.clone())?)),
            _ => RepoKind::Hosted,
        };
        let mut repo = Repo::new(spec.name.clone(), spec.format, kind, stores.clone());
        repo.allow_overwrite = spec.allow_overwrite;
        built.push((Arc::new(repo), spec.hosts.clone()));
    }
    for spec in specs {
        let KindSpec::Virtual { members, deploy_to } = &spec.kind else { continue };
        let find = |name: &model::RepoName| built.iter().find(|(r, _)| &r.name == name).map(|(r, _)| r.clone());
        let members = members.iter().filter_map(find).collect();
        let deploy_to = deploy_to.as_ref().and_then(find);
        let kind = RepoKind::Virtual { members, deploy_to };
        built.push((Arc::new(Repo::new(spec.name.clone(), spec.format, kind, stores.clone())), spec.hosts.clone()));
    }
    Ok(Repos::new(built))
}
