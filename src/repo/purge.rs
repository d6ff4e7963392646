//! Upload sessions a client started and never finished are removed after `storage.upload_ttl`
//! (the CNCF registry's upload purging does the same, after a week by default), so abandoned
//! pushes do not fill the disk. A session a request is working on right now is left alone.

use super::{RepoError, Stores};
use crate::model::unix_now;
use std::time::Duration;

const PAGE: u32 = 500;

impl Stores {
    /// Remove every upload session older than `ttl` with its bytes; returns how many went.
    pub async fn purge_uploads(&self, ttl: Duration) -> Result<usize, RepoError> {
        let before = unix_now().saturating_sub(ttl.as_secs() as i64);
        let mut purged = 0;
        loop {
            let page = self.meta.list_uploads(before, PAGE).await?;
            let mut progress = false;
            for session in &page {
                let Ok(_claim) = self.uploads.claim(&session.id) else { continue };
                self.blobs.abort_upload(&session.id).await?;
                self.meta.delete_upload(&session.id).await?;
                tracing::info!(repo = %session.repo, upload = %session.id, "abandoned upload removed");
                purged += 1;
                progress = true;
            }
            if page.len() < PAGE as usize || !progress {
                return Ok(purged);
            }
        }
    }

    /// Purge now, then every `min(ttl, 1 h)`, for the life of the process.
    pub fn spawn_upload_purging(self: std::sync::Arc<Self>, ttl: Duration) {
        let every = ttl.clamp(Duration::from_secs(1), Duration::from_secs(3600));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = self.purge_uploads(ttl).await {
                    tracing::warn!("purging abandoned uploads failed: {e}");
                }
            }
        });
    }
}
