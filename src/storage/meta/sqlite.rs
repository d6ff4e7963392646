//! SQLite metadata store (the embedded default), WAL mode, migrations applied at open.

use super::{entries_from_rows, entry_from_row, prefix_end, upload_from_row, MetaError, MetaStore, UploadSession};
use crate::model::Entry;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteMetaStore {
    pool: SqlitePool,
}

const ENTRY_COLUMNS: &str =
    "repo, path, digest, blob, size, media_type, package, refers_to, attrs, created_at, checked_at, etag";

impl SqliteMetaStore {
    pub async fn open(file: &Path) -> Result<SqliteMetaStore, MetaError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteMetaStore { pool })
    }
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn get_entry(&self, repo: &str, path: &str) -> Result<Option<Entry>, MetaError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE repo = ? AND path = ?");
        let row = sqlx::query(&sql).bind(repo).bind(path).fetch_optional(&self.pool).await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn put_entry(&self, e: &Entry) -> Result<(), MetaError> {
        let sql = format!(
            "INSERT INTO entries ({ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (repo, path) DO UPDATE SET digest = excluded.digest, blob = excluded.blob,
               size = excluded.size, media_type = excluded.media_type, package = excluded.package,
               refers_to = excluded.refers_to, attrs = excluded.attrs, checked_at = excluded.checked_at,
               etag = excluded.etag,
               created_at = CASE WHEN entries.digest = excluded.digest THEN entries.created_at ELSE excluded.created_at END"
        );
        sqlx::query(&sql)
            .bind(&e.repo)
            .bind(&e.path)
            .bind(&e.digest)
            .bind(&e.blob)
            .bind(e.size as i64)
            .bind(&e.media_type)
            .bind(&e.package)
            .bind(&e.refers_to)
            .bind(e.attrs.to_string())
            .bind(e.created_at)
            .bind(e.checked_at)
            .bind(&e.etag)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_entry(&self, repo: &str, path: &str) -> Result<bool, MetaError> {
        let done = sqlx::query("DELETE FROM entries WHERE repo = ? AND path = ?")
            .bind(repo)
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_entries(
        &self,
        repo: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Entry>, MetaError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE repo = ? AND path >= ? AND path < ? AND path > ?
             ORDER BY path LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(repo)
            .bind(prefix)
            .bind(prefix_end(prefix))
            .bind(after.unwrap_or(""))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        entries_from_rows(&rows)
    }

    async fn list_referring(&self, repo: &str, path_prefix: &str, target: &str) -> Result<Vec<Entry>, MetaError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE repo = ? AND refers_to = ? AND path >= ? AND path < ?
             ORDER BY path"
        );
        let rows = sqlx::query(&sql)
            .bind(repo)
            .bind(target)
            .bind(path_prefix)
            .bind(prefix_end(path_prefix))
            .fetch_all(&self.pool)
            .await?;
        entries_from_rows(&rows)
    }

    async fn list_packages(&self, repo: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, MetaError> {
        let rows = sqlx::query(
            "SELECT DISTINCT package FROM entries WHERE repo = ? AND package IS NOT NULL AND package > ?
             ORDER BY package LIMIT ?",
        )
        .bind(repo)
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get("package").map_err(MetaError::from)).collect()
    }

    async fn touch_entry(&self, repo: &str, path: &str, checked_at: i64) -> Result<(), MetaError> {
        sqlx::query("UPDATE entries SET checked_at = ? WHERE repo = ? AND path = ?")
            .bind(checked_at)
            .bind(repo)
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_upload(&self, u: &UploadSession) -> Result<(), MetaError> {
        sqlx::query("INSERT INTO uploads (id, repo, package, created_at) VALUES (?, ?, ?, ?)")
            .bind(&u.id)
            .bind(&u.repo)
            .bind(&u.package)
            .bind(u.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, MetaError> {
        let row = sqlx::query("SELECT id, repo, package, created_at FROM uploads WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn list_uploads(&self, created_before: i64, limit: u32) -> Result<Vec<UploadSession>, MetaError> {
        let rows = sqlx::query(
            "SELECT id, repo, package, created_at FROM uploads WHERE created_at < ? ORDER BY created_at LIMIT ?",
        )
        .bind(created_before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn delete_upload(&self, id: &str) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM uploads WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, package: &str, refers_to: Option<&str>) -> Entry {
        Entry {
            repo: "r".into(),
            path: path.into(),
            digest: "sha256:aa".into(),
            blob: "aa".into(),
            size: 1,
            package: Some(package.into()),
            refers_to: refers_to.map(str::to_string),
            attrs: serde_json::json!({"k": 1}),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn catalog_queries() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetaStore::open(&dir.path().join("meta.db")).await.unwrap();
        for (p, pkg, r) in [
            ("a/tags/1", "a", None),
            ("a/tags/2", "a", None),
            ("a/manifests/x", "a", Some("sha256:s")),
            ("a%/tags/3", "a%", None),
            ("b/tags/1", "b", None),
        ] {
            store.put_entry(&entry(p, pkg, r)).await.unwrap();
        }
        let tags = store.list_entries("r", "a/tags/", None, 10).await.unwrap();
        assert_eq!(tags.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["a/tags/1", "a/tags/2"]);
        assert_eq!(tags[0].attrs["k"], 1);
        let page = store.list_entries("r", "a/tags/", Some("a/tags/1"), 10).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(store.list_packages("r", None, 10).await.unwrap(), ["a", "a%", "b"]);
        assert_eq!(store.list_packages("r", Some("a%"), 1).await.unwrap(), ["b"]);
        assert_eq!(store.list_referring("r", "a/manifests/", "sha256:s").await.unwrap().len(), 1);
        assert!(store.delete_entry("r", "a/tags/1").await.unwrap());
        assert!(!store.delete_entry("r", "a/tags/1").await.unwrap());
        assert!(store.get_entry("other", "a/tags/2").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn uploads() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetaStore::open(&dir.path().join("meta.db")).await.unwrap();
        let u = UploadSession { id: "u".into(), repo: "r".into(), package: "p".into(), created_at: 5 };
        store.create_upload(&u).await.unwrap();
        assert_eq!(store.get_upload("u").await.unwrap(), Some(u.clone()));
        assert_eq!(store.list_uploads(u.created_at + 1, 10).await.unwrap(), vec![u.clone()]);
        assert_eq!(store.list_uploads(u.created_at, 10).await.unwrap(), vec![]);
        store.delete_upload("u").await.unwrap();
        assert_eq!(store.get_upload("u").await.unwrap(), None);
    }
}
