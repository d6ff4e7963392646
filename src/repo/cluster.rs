//! Cluster-wide coalescing of upstream blob fetches. On each node the in-process flight
//! (`flights.rs`) already makes one fetch task per (repo, path); in a cluster that task first
//! asks PostgreSQL for the fetch lease of the key:
//! - the lease holder (leader) fetches from the upstream into the shared blob store, renewing
//!   the lease every `lease_ttl / 3`, and copies the bytes into its local spool;
//! - every other node (follower) streams the bytes from the leader's internal endpoint
//!   (`GET {advertise_url}/_cluster/v1/flight?repo=…&path=…`) into its own local spool.
//!
//! Readers on every node tail their node's spool while bytes arrive and read the published blob
//! from the shared store once the fetch is done. The leader ends its body only after the blob
//! is published and recorded. If the leader dies, its followers' streams break; they keep what
//! they have and, once the lease has expired, one of them becomes the leader and fetches again
//! (the bytes are verified against the same digest, so the spool continues where it stopped).

use super::flights::{self, FetchJob, Progress, Tail};
use super::RepoError;
use crate::model::{Algorithm, Entry};
use crate::storage::lease::{Lease, Leases};
use crate::storage::{BlobWriter, MetaStore};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Response header of the internal endpoint: the upstream's answer when the body is empty.
pub const OUTCOME_HEADER: &str = "x-binaryrepo-flight";
/// Response header of the internal endpoint: the blob's total size, when the upstream sent it.
pub const TOTAL_HEADER: &str = "x-binaryrepo-total";
/// Request header carrying the cluster's shared token to the internal endpoint.
pub const TOKEN_HEADER: &str = "x-binaryrepo-cluster-token";
/// Path of the internal endpoint.
pub const FLIGHT_PATH: &str = "/_cluster/v1/flight";

/// What a node needs to take part in cluster-wide coalescing.
pub struct ClusterCtx {
    /// Unique per process start.
    pub node_id: String,
    pub advertise_url: url::Url,
    pub lease_ttl: Duration,
    /// Shared by the nodes of the cluster (stored in PostgreSQL); required by the internal endpoint.
    pub token: String,
    pub leases: Arc<dyn Leases>,
    /// The database without this node's cache: "is it published yet?" must see other nodes.
    pub meta: Arc<dyn MetaStore>,
    pub http: reqwest::Client,
}

/// The fetch task of one node: lead or follow until the blob is published.
pub async fn run(job: &FetchJob, ctx: &ClusterCtx, id: &str, tx: &watch::Sender<Progress>) -> Result<Entry, RepoError> {
    // App::build gives every cluster node a spool: readers tail it under the fetch's upload id,
    // which the blob store itself uses for the leader's copy.
    let Some(store) = job.spool.clone() else {
        return Err(RepoError::Unreachable("cluster fetch without a local spool".into()));
    };
    let mut spool = store.create(id, Algorithm::Sha256).await?;
    let outcome = elect_and_fetch(job, ctx, id, tx, spool.as_mut()).await;
    spool.abort().await;
    outcome
}

async fn elect_and_fetch(
    job: &FetchJob,
    ctx: &ClusterCtx,
    id: &str,
    tx: &watch::Sender<Progress>,
    spool: &mut dyn BlobWriter,
) -> Result<Entry, RepoError> {
    let key = format!("{}\n{}", job.repo, job.path);
    let mut quick_retry = true;
    // Since when a live lease holder has been failing us (unreachable, wrong advertise_url).
    let mut failing_since: Option<Instant> = None;
    loop {
        if let Some(entry) = ctx.meta.get_entry(&job.repo, &job.path).await? {
            return Ok(entry);
        }
        match ctx.leases.acquire(&key, &ctx.node_id, ctx.advertise_url.as_str(), ctx.lease_ttl).await? {
            Lease::Mine => {
                // The previous holder may have published and released between our look above
                // and this acquire: look again before fetching a second time.
                if let Some(entry) = ctx.meta.get_entry(&job.repo, &job.path).await? {
                    if let Err(e) = ctx.leases.release(&key, &ctx.node_id).await {
                        tracing::warn!(key = %key, "releasing the fetch lease: {e}");
                    }
                    return Ok(entry);
                }
                return lead(job, ctx, &key, id, tx, spool).await;
            }
            Lease::Held { node_url, .. } => match follow(job, ctx, &node_url, tx, spool).await {
                Ok(Some(entry)) => return Ok(entry),
                // No such fetch there (just finished, or not started yet): look again once at once.
                Ok(None) if quick_retry => {
                    quick_retry = false;
                    continue;
                }
                Ok(None) => {}
                Err(e @ (RepoError::NotFound | RepoError::Upstream { .. })) => return Err(e),
                Err(e) => {
                    tracing::info!(repo = %job.repo, path = %job.path, "leader {node_url} failed: {e}");
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    // A holder that keeps renewing its lease but cannot be streamed from (a
                    // partition, a wrong advertise_url): fetch without it rather than wait forever.
                    if since.elapsed() > ctx.lease_ttl * 2 {
                        tracing::warn!(repo = %job.repo, path = %job.path, "leader {node_url} unreachable \
                            while its lease is live; fetching without the lease");
                        let skip = spool.written();
                        return flights::run(job, id, tx, Some(Tail { writer: spool, skip })).await;
                    }
                }
            },
        }
        // Wait for the leader to publish or for its lease to expire.
        tokio::time::sleep(ctx.lease_ttl / 4).await;
    }
}

async fn lead(
    job: &FetchJob,
    ctx: &ClusterCtx,
    key: &str,
    id: &str,
    tx: &watch::Sender<Progress>,
    spool: &mut dyn BlobWriter,
) -> Result<Entry, RepoError> {
    let renewals = {
        let (leases, key, owner, ttl) = (ctx.leases.clone(), key.to_string(), ctx.node_id.clone(), ctx.lease_ttl);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if !matches!(leases.renew(&key, &owner, ttl).await, Ok(true)) {
                    tracing::warn!(key = %key, "lost the fetch lease; another node may fetch too");
                }
            }
        })
    };
    let skip = spool.written();
    let result = flights::run(job, id, tx, Some(Tail { writer: spool, skip })).await;
    renewals.abort();
    if let Err(e) = ctx.leases.release(key, &ctx.node_id).await {
        tracing::warn!(key = %key, "releasing the fetch lease: {e}");
    }
    result
}

/// Stream the leader's bytes into the spool. `Ok(None)`: the leader has no such fetch.
async fn follow(
    job: &FetchJob,
    ctx: &ClusterCtx,
    node_url: &str,
    tx: &watch::Sender<Progress>,
    spool: &mut dyn BlobWriter,
) -> Result<Option<Entry>, RepoError> {
    let url = format!("{}{FLIGHT_PATH}", node_url.trim_end_matches('/'));
    let query = [("repo", job.repo.as_str()), ("path", job.path.as_str())];
    let peer = |e: reqwest::Error| RepoError::Unreachable(format!("cluster peer {node_url}: {e}"));
    let request = ctx.http.get(&url).query(&query).header(TOKEN_HEADER, &ctx.token);
    // A leader that stops without dying (frozen, partitioned without a reset) must not hold its
    // followers: silence past twice the lease TTL ends the stream, and the caller looks at the
    // lease again (expired: take over; still renewed: follow again or fetch without it).
    let idle = ctx.lease_ttl * 2;
    let silent = || RepoError::Unreachable(format!("cluster peer {node_url} sent nothing for {idle:?}"));
    let response = tokio::time::timeout(idle, request.send()).await.map_err(|_| silent())?.map_err(peer)?;
    let outcome = response.headers().get(OUTCOME_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let upstream_status = outcome.as_deref().and_then(|o| o.strip_prefix("upstream-")).and_then(|s| s.parse().ok());
    match (response.status().as_u16(), upstream_status) {
        (200, _) => {}
        (404, _) if outcome.as_deref() == Some("not-found") => return Err(RepoError::NotFound),
        (404, _) => return Ok(None),
        (502, Some(status)) => {
            let message = response.text().await.unwrap_or_default();
            return Err(RepoError::Upstream { status, message });
        }
        (status, _) => return Err(RepoError::Unreachable(format!("cluster peer {node_url} answered {status}"))),
    }
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let total = header(TOTAL_HEADER).and_then(|t| t.parse().ok());
    let media_type = header(reqwest::header::CONTENT_TYPE.as_str());
    tx.send_replace(Progress::Running { written: spool.readable(), total, media_type });
    // The spool may hold a prefix from an earlier leader: skip what we have.
    let mut skip = spool.written();
    let mut body = response.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(idle, body.next()).await.map_err(|_| silent())? {
        let chunk = chunk.map_err(peer)?;
        let len = chunk.len() as u64;
        if skip >= len {
            skip -= len;
            continue;
        }
        let from = usize::try_from(skip).unwrap_or(0);
        skip = 0;
        spool.write(&chunk[from..]).await?;
        let written = spool.readable();
        tx.send_modify(|p| {
            if let Progress::Running { written: w, .. } = p {
                *w = written;
            }
        });
    }
    // The leader ends its body only once the blob is published and recorded.
    Ok(ctx.meta.get_entry(&job.repo, &job.path).await?)
}
