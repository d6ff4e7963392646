//! The metadata store: the catalog of entries (every format's artifacts, tags and links) and
//! resumable upload sessions. Narrow on purpose: formats build their indexes from these queries.

pub mod cached;
#[cfg(test)]
mod conformance;
pub mod postgres;
pub mod sqlite;

use crate::model::Entry;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored attributes are not valid JSON: {0}")]
    Attrs(#[from] serde_json::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub id: String,
    pub repo: String,
    pub package: String,
    pub created_at: i64,
}

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn get_entry(&self, repo: &str, path: &str) -> Result<Option<Entry>, MetaError>;
    /// Insert or replace the entry at (repo, path).
    async fn put_entry(&self, entry: &Entry) -> Result<(), MetaError>;
    /// Returns whether an entry was removed.
    async fn delete_entry(&self, repo: &str, path: &str) -> Result<bool, MetaError>;
    /// Entries whose path starts with `prefix`, in path order, strictly after `after`.
    async fn list_entries(
        &self,
        repo: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, MetaError>;
    /// Entries with `path_prefix` that refer to `target` (e.g. OCI referrers of a subject).
    async fn list_referring(&self, repo: &str, path_prefix: &str, target: &str) -> Result<Vec<Entry>, MetaError>;
    /// Distinct package names in a repository, in order, strictly after `after`.
    async fn list_packages(&self, repo: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, MetaError>;
    /// Record that a remote entry was confirmed fresh at `checked_at`.
    async fn touch_entry(&self, repo: &str, path: &str, checked_at: i64) -> Result<(), MetaError>;

    async fn create_upload(&self, upload: &UploadSession) -> Result<(), MetaError>;
    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, MetaError>;
    async fn delete_upload(&self, id: &str) -> Result<(), MetaError>;
    /// Upload sessions created before `created_before` (unix seconds), oldest first.
    async fn list_uploads(&self, created_before: i64, limit: u32) -> Result<Vec<UploadSession>, MetaError>;
}

/// The smallest string greater than every string starting with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// One catalog entry from a row of either SQL backend (the same columns in both schemas).
pub(crate) fn entry_from_row<R: sqlx::Row>(row: &R) -> Result<Entry, MetaError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let attrs: String = row.try_get("attrs")?;
    Ok(Entry {
        repo: row.try_get("repo")?,
        path: row.try_get("path")?,
        digest: row.try_get("digest")?,
        blob: row.try_get("blob")?,
        size: row.try_get::<i64, _>("size")? as u64,
        media_type: row.try_get("media_type")?,
        package: row.try_get("package")?,
        refers_to: row.try_get("refers_to")?,
        attrs: serde_json::from_str(&attrs)?,
        created_at: row.try_get("created_at")?,
        checked_at: row.try_get("checked_at")?,
        etag: row.try_get("etag")?,
    })
}

pub(crate) fn entries_from_rows<R: sqlx::Row>(rows: &[R]) -> Result<Vec<Entry>, MetaError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter().map(entry_from_row).collect()
}

pub(crate) fn upload_from_row<R: sqlx::Row>(row: &R) -> Result<UploadSession, MetaError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(UploadSession {
        id: row.try_get("id")?,
        repo: row.try_get("repo")?,
        package: row.try_get("package")?,
        created_at: row.try_get("created_at")?,
    })
}
