//! Completing a cached image in the background. When a remote repository caches a manifest
//! from its upstream, its child manifests (multi-arch indexes) and its referrers (signatures,
//! SBOMs) are fetched and cached too, so later pulls by digest and referrer queries are served
//! from the cache even once the upstream is gone. Best effort: failures are only logged.

use super::manifest;
use super::paths;
use super::pull::find_manifest;
use super::route::Reference;
use crate::model::{Digest, Entry};
use crate::repo::Repo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Start completing `fetched` (just cached under `name` in `holder`).
pub fn spawn(holder: Arc<Repo>, name: String, fetched: Entry, bytes: bytes::Bytes) {
    if holder.remote().is_none() {
        return;
    }
    let Ok(parsed) = manifest::parse(&bytes, fetched.media_type.as_deref()) else { return };
    // Referrers only for what was asked by tag: an index's children would cost one upstream
    // request each, and registries attach signatures and SBOMs to the top-level digest.
    let by_tag = paths::tag_of(&fetched.path).is_some();
    if by_tag || !parsed.children.is_empty() {
        tokio::spawn(complete(holder, name, fetched, parsed.children, by_tag));
    }
}

// Boxed with an explicit `Send` bound: this future and `find_manifest` refer to each other.
fn complete(
    holder: Arc<Repo>,
    name: String,
    fetched: Entry,
    children: Vec<(Digest, u64)>,
    with_referrers: bool,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let mut cached_children = 0;
        for (child, _) in &children {
            match find_manifest(&holder, &name, &Reference::Digest(child.clone())).await {
                Ok(_) => cached_children += 1,
                Err(e) => tracing::warn!(repo = %holder.name, "prefetch of {name}@{child} failed: {}", e.message),
            }
        }
        let mut referrers = 0;
        if let (true, Ok(digest)) = (with_referrers, fetched.digest.parse::<Digest>()) {
            match super::lists::remote_referrers(&holder, &name, &digest).await {
                Ok(found) => referrers = cache_referrers(&holder, &name, &found).await,
                Err(e) => tracing::warn!(repo = %holder.name, "referrers of {name}@{digest} unavailable: {e}"),
            }
        }
        tracing::info!(
            repo = %holder.name,
            "cached image completed: {name}@{} ({cached_children} child manifests, {referrers} referrers)",
            fetched.digest
        );
    })
}

/// Cache every referrer (signatures, SBOMs) with its blobs, so it pulls from the cache too;
/// returns how many were cached completely.
async fn cache_referrers(holder: &Arc<Repo>, name: &str, descriptors: &[serde_json::Value]) -> usize {
    let mut cached = 0;
    for descriptor in descriptors {
        let Some(digest) = descriptor.get("digest").and_then(|d| d.as_str()).and_then(|d| d.parse::<Digest>().ok())
        else {
            continue;
        };
        let outcome = match find_manifest(holder, name, &Reference::Digest(digest.clone())).await {
            Ok((_, bytes)) => cache_blobs(holder, name, &bytes).await,
            Err(e) => Err(e.message),
        };
        match outcome {
            Ok(()) => cached += 1,
            Err(why) => tracing::warn!(repo = %holder.name, "prefetch of referrer {name}@{digest} failed: {why}"),
        }
    }
    cached
}

/// Referrers are small (signatures, attestations): their blobs are read through whole, which
/// caches them; anything larger than this is left for the first pull.
const REFERRER_BLOB_LIMIT: u64 = 16 << 20;

async fn cache_blobs(holder: &Arc<Repo>, name: &str, manifest_bytes: &[u8]) -> Result<(), String> {
    use futures::StreamExt;
    let parsed = manifest::parse(manifest_bytes, None).map_err(|e| e.message)?;
    for (digest, size) in parsed.blobs.iter().filter(|(_, size)| *size <= REFERRER_BLOB_LIMIT) {
        let upstream = |remote: &crate::repo::Remote| super::pull::blob_request(remote, name, digest);
        let lookup = crate::repo::Lookup { path: paths::blob(digest), upstream: Some(&upstream) };
        let found = holder.get(&lookup).await.map_err(|e| e.to_string())?;
        let found = found.ok_or_else(|| format!("blob {digest} ({size} bytes) is missing upstream"))?;
        let mut stream = holder.open(found, None).await.map_err(|e| e.to_string())?;
        while let Some(chunk) = stream.next().await {
            chunk.map_err(|e| format!("blob {digest}: {e}"))?;
        }
    }
    Ok(())
}
