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
                Ok(found) => referrers = found.len(),
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
