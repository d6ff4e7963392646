//! PostgreSQL metadata store, for several nodes over one database. Migrations run at open under
//! sqlx's migration advisory lock, so nodes starting at once apply them exactly once. Every
//! write to an entry also sends `NOTIFY binaryrepo_entries` (delivered at commit) so that the
//! entry caches of the other nodes drop the key (see [`listen_invalidations`]).

mod lease;

use super::{entries_from_rows, entry_from_row, prefix_end, upload_from_row, MetaError, MetaStore, UploadSession};
use crate::model::Entry;
use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use std::time::Duration;

/// The channel entry writes are announced on; the payload is `repo \n path`.
pub const CHANNEL: &str = "binaryrepo_entries";

pub struct PostgresMetaStore {
    pool: PgPool,
    /// Connections that wait for and hold named locks (see `postgres/lease.rs`).
    locks: PgPool,
}

const ENTRY_COLUMNS: &str =
    "repo, path, digest, blob, size, media_type, package, refers_to, attrs, created_at, checked_at, etag";

impl PostgresMetaStore {
    pub async fn open(url: &str) -> Result<PostgresMetaStore, MetaError> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(30)).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let locks = PgPoolOptions::new()
            .max_connections(8)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(60))
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        Ok(PostgresMetaStore { pool, locks })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The token the nodes of this database's cluster share, created once by whoever asks first.
    pub async fn cluster_token(&self) -> Result<String, MetaError> {
        let fresh = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        sqlx::query("INSERT INTO cluster_token (id, token) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(fresh)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT token FROM cluster_token WHERE id = 1").fetch_one(&self.pool).await?)
    }

    fn lock_pool(&self) -> &PgPool {
        &self.locks
    }

    async fn announce(tx: &mut Transaction<'_, Postgres>, repo: &str, path: &str) -> Result<(), MetaError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{repo}\n{path}"))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// What a node learns from the invalidation channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// One entry changed on some node.
    Entry { repo: String, path: String },
    /// The connection dropped: notifications may have been lost, forget everything.
    All,
}

/// Listen for entry writes of every node and hand each to `apply` until the pool closes.
/// `Invalidation::All` comes first, once subscribed.
pub async fn listen_invalidations<F>(pool: PgPool, apply: F) -> Result<(), MetaError>
where
    F: Fn(Invalidation) + Send + 'static,
{
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    // Writes before the subscription were never seen: start from an empty cache.
    apply(Invalidation::All);
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match n.payload().split_once('\n') {
                Some((repo, path)) => apply(Invalidation::Entry { repo: repo.into(), path: path.into() }),
                None => apply(Invalidation::All),
            },
            // Reconnected (or about to): anything sent meanwhile is lost.
            Ok(None) => apply(Invalidation::All),
            Err(sqlx::Error::PoolClosed) => return Ok(()),
            Err(e) => {
                tracing::warn!("invalidation listener: {e}");
                apply(Invalidation::All);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[async_trait]
impl MetaStore for PostgresMetaStore {
    async fn get_entry(&self, repo: &str, path: &str) -> Result<Option<Entry>, MetaError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE repo = $1 AND path = $2");
        let row = sqlx::query(&sql).bind(repo).bind(path).fetch_optional(&self.pool).await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn put_entry(&self, e: &Entry) -> Result<(), MetaError> {
        let sql = format!(
            "INSERT INTO entries ({ENTRY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (repo, path) DO UPDATE SET digest = excluded.digest, blob = excluded.blob,
               size = excluded.size, media_type = excluded.media_type, package = excluded.package,
               refers_to = excluded.refers_to, attrs = excluded.attrs, checked_at = excluded.checked_at,
               etag = excluded.etag,
               created_at = CASE WHEN entries.digest = excluded.digest THEN entries.created_at ELSE excluded.created_at END"
        );
        let mut tx = self.pool.begin().await?;
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
            .execute(&mut *tx)
            .await?;
        Self::announce(&mut tx, &e.repo, &e.path).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_entry(&self, repo: &str, path: &str) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM entries WHERE repo = $1 AND path = $2")
            .bind(repo)
            .bind(path)
            .execute(&mut *tx)
            .await?;
        Self::announce(&mut tx, repo, path).await?;
        tx.commit().await?;
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
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE repo = $1 AND path >= $2 AND path < $3 AND path > $4
             ORDER BY path LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(repo)
            .bind(prefix)
            .bind(prefix_end(prefix))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        entries_from_rows(&rows)
    }

    async fn list_referring(&self, repo: &str, path_prefix: &str, target: &str) -> Result<Vec<Entry>, MetaError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE repo = $1 AND refers_to = $2 AND path >= $3 AND path < $4
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
            "SELECT DISTINCT package FROM entries WHERE repo = $1 AND package IS NOT NULL AND package > $2
             ORDER BY package LIMIT $3",
        )
        .bind(repo)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get("package").map_err(MetaError::from)).collect()
    }

    async fn touch_entry(&self, repo: &str, path: &str, checked_at: i64) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE entries SET checked_at = $1 WHERE repo = $2 AND path = $3")
            .bind(checked_at)
            .bind(repo)
            .bind(path)
            .execute(&mut *tx)
            .await?;
        Self::announce(&mut tx, repo, path).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_upload(&self, u: &UploadSession) -> Result<(), MetaError> {
        sqlx::query("INSERT INTO uploads (id, repo, package, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&u.id)
            .bind(&u.repo)
            .bind(&u.package)
            .bind(u.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_upload(&self, id: &str) -> Result<Option<UploadSession>, MetaError> {
        let row = sqlx::query("SELECT id, repo, package, created_at FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn delete_upload(&self, id: &str) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn list_uploads(&self, created_before: i64, limit: u32) -> Result<Vec<UploadSession>, MetaError> {
        let rows = sqlx::query(
            "SELECT id, repo, package, created_at FROM uploads WHERE created_at < $1 ORDER BY created_at LIMIT $2",
        )
        .bind(created_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(upload_from_row).collect()
    }
}
