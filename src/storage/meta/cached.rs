//! A read-through cache of single catalog entries in front of any [`MetaStore`]. Hot paths
//! (a tag or manifest by path, a blob link) skip the database; every write through this store
//! updates or drops the cached key, so one process always sees its own writes.
//! Several nodes over one PostgreSQL database: every node listens for the others' writes
//! (`LISTEN binaryrepo_entries`, see `meta/postgres.rs`) and calls [`CachedMetaStore::invalidate`]
//! or [`CachedMetaStore::clear`]; a notification arrives once the writer's transaction commits.

use super::{MetaError, MetaStore, UploadSession};
use crate::model::Entry;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Past this many cached keys the cache starts over (cheap and bounded; hot keys come back).
const MAX_KEYS: usize = 100_000;

pub struct CachedMetaStore {
    inner: Arc<dyn MetaStore>,
    entries: Mutex<HashMap<(String, String), Option<Entry>>>,
    /// Bumped after every write: a read that raced a write is not cached (it may be older).
    writes: AtomicU64,
}

impl CachedMetaStore {
    pub fn new(inner: Arc<dyn MetaStore>) -> CachedMetaStore {
        CachedMetaStore { inner, entries: Mutex::new(HashMap::new()), writes: AtomicU64::new(0) }
    }

    fn cached(&self, repo: &str, path: &str) -> Option<Option<Entry>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&(repo.to_string(), path.to_string())).cloned()
    }

    fn remember(&self, repo: &str, path: &str, entry: Option<Entry>, read_at: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.writes.load(Ordering::SeqCst) != read_at {
            return;
        }
        if entries.len() >= MAX_KEYS {
            entries.clear();
        }
        entries.insert((repo.to_string(), path.to_string()), entry);
    }

    /// After a write: drop the key and make concurrent reads uncacheable. Under the lock, so a
    /// read that checked the counter before this cannot insert after it.
    fn written(&self, repo: &str, path: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.writes.fetch_add(1, Ordering::SeqCst);
        entries.remove(&(repo.to_string(), path.to_string()));
    }
}

impl CachedMetaStore {
    /// Another node wrote (repo, path): drop the key, and keep reads in flight from caching.
    pub fn invalidate(&self, repo: &str, path: &str) {
        self.written(repo, path);
    }

    /// Forget everything (the invalidation channel lost messages).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.writes.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}

#[async_trait]
impl MetaStore for CachedMetaStore {
    async fn get_entry(&self, repo: &str, path: &str) -> Result<Option<Entry>, MetaError> {
        if let Some(hit) = self.cached(repo, path) {
            return Ok(hit);
        }
        let read_at = self.writes.load(Ordering::SeqCst);
        let entry = self.inner.get_entry(repo, path).await?;
        self.remember(repo, path, entry.clone(), read_at);
        Ok(entry)
    }

    async fn put_entry(&self, entry: &Entry) -> Result<(), MetaError> {
        let result = self.inner.put_entry(entry).await;
        self.written(&entry.repo, &entry.path);
        result
    }

    async fn delete_entry(&self, repo: &str, path: &str) -> Result<bool, MetaError> {
        let removed = self.inner.delete_entry(repo, path).await;
        self.written(repo, path);
        removed
    }

    async fn list_entries(
        &self,
        repo: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, MetaError> {
        self.inner.list_entries(repo, prefix, after, limit).await
    }

    async fn list_referring(&self, repo: &str, path_prefix: &str, target: &str) -> Result<Vec<Entry>, MetaError> {
        self.inner.list_referring(repo, path_prefix, target).await
    }

    async fn list_packages(&self, repo: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, MetaError> {
        self.inner.list_packages(repo, after, limit).await
    }

    async fn touch_entry(&self, repo: &str, path: &str, checked_at: i64) -> Result<(), MetaError> {
        let result = self.inner.touch_entry(repo, path, checked_at).await;
        self.written(repo, path);
        result
    }

    async fn create_upload(&self, upload: &UploadSession) -> Result<(), MetaError> {
        self.inner.create_upload(upload).await
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, MetaError> {
        self.inner.get_upload(id).await
    }

    async fn delete_upload(&self, id: &str) -> Result<(), MetaError> {
        self.inner.delete_upload(id).await
    }

    async fn list_uploads(&self, created_before: i64, limit: u32) -> Result<Vec<UploadSession>, MetaError> {
        self.inner.list_uploads(created_before, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::meta::sqlite::SqliteMetaStore;

    #[tokio::test]
    async fn writes_through_the_cache_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn MetaStore> = Arc::new(SqliteMetaStore::open(&dir.path().join("m.db")).await.unwrap());
        let store = CachedMetaStore::new(inner);
        assert!(store.get_entry("r", "p").await.unwrap().is_none());
        let entry = Entry {
            repo: "r".into(),
            path: "p".into(),
            digest: "d1".into(),
            attrs: serde_json::json!({}),
            ..Default::default()
        };
        store.put_entry(&entry).await.unwrap();
        assert_eq!(store.get_entry("r", "p").await.unwrap().unwrap().digest, "d1");
        store.put_entry(&Entry { digest: "d2".into(), ..entry.clone() }).await.unwrap();
        assert_eq!(store.get_entry("r", "p").await.unwrap().unwrap().digest, "d2");
        store.touch_entry("r", "p", 42).await.unwrap();
        assert_eq!(store.get_entry("r", "p").await.unwrap().unwrap().checked_at, 42);
        assert!(store.delete_entry("r", "p").await.unwrap());
        assert!(store.get_entry("r", "p").await.unwrap().is_none());
    }
}
