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
    tokio::spawn(complete(holder, name, fetched, bytes));
}

// Boxed with an explicit `Send` bound: this future and `find_manifest` refer to each other.
fn complete(
    holder: Arc<Repo>,
    name: String,
    fetched: Entry,
    bytes: bytes::Bytes,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let Ok(parsed) = manifest::parse(&bytes, fetched.media_type.as_deref()) else { return };
        for child in parsed.children {
            if let Err(e) = find_manifest(&holder, &name, &Reference::Digest(child.clone())).await {
                tracing::debug!(repo = %holder.name, "prefetch of {name}@{child} failed: {}", e.message);
            }
        }
        // Referrers only for what was asked by tag: an index's children would cost one upstream
        // request each, and registries attach signatures and SBOMs to the top-level digest.
        if paths::tag_of(&fetched.path).is_none() {
            return;
        }
        let Ok(digest) = fetched.digest.parse::<Digest>() else { return };
        if let Err(e) = super::lists::remote_referrers(&holder, &name, &digest).await {
            tracing::debug!(repo = %holder.name, "prefetch of referrers of {name}@{digest} failed: {e}");
        }
    })
}
