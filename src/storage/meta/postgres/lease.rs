//! Leases in PostgreSQL (`fetch_leases`): one upsert that only replaces an expired lease, so
//! two nodes racing for a key get exactly one `Mine`. Named locks: transaction-scoped advisory
//! locks on a separate pool (a waiter holds a connection; the main pool stays free for the
//! holder's own writes), released by rolling the transaction back when the guard drops.

use super::PostgresMetaStore;
use crate::storage::lease::{Lease, Leases, LockGuard, NamedLocks};
use crate::storage::MetaError;
use async_trait::async_trait;
use sqlx::{Postgres, Row, Transaction};
use std::time::Duration;

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Leases for PostgresMetaStore {
    async fn acquire(&self, key: &str, owner: &str, node_url: &str, ttl: Duration) -> Result<Lease, MetaError> {
        let taken = sqlx::query(
            "INSERT INTO fetch_leases (key, owner, node_url, expires_at)
             VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
             ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, node_url = excluded.node_url,
               expires_at = excluded.expires_at
             WHERE fetch_leases.expires_at < now() OR fetch_leases.owner = excluded.owner
             RETURNING owner",
        )
        .bind(key)
        .bind(owner)
        .bind(node_url)
        .bind(millis(ttl))
        .fetch_optional(self.pool())
        .await?;
        if taken.is_some() {
            return Ok(Lease::Mine);
        }
        let row = sqlx::query("SELECT owner, node_url FROM fetch_leases WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => Ok(Lease::Held { owner: r.try_get("owner")?, node_url: r.try_get("node_url")? }),
            // Released between our two statements: try again.
            None => Box::pin(self.acquire(key, owner, node_url, ttl)).await,
        }
    }

    async fn renew(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, MetaError> {
        let done = sqlx::query(
            "UPDATE fetch_leases SET expires_at = now() + $3 * interval '1 millisecond'
             WHERE key = $1 AND owner = $2",
        )
        .bind(key)
        .bind(owner)
        .bind(millis(ttl))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM fetch_leases WHERE key = $1 AND owner = $2")
            .bind(key)
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

struct AdvisoryLock {
    tx: Option<Transaction<'static, Postgres>>,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        // Ending the transaction releases the lock; so does closing its connection (what dropping
        // it does outside a runtime).
        if let (Some(tx), Ok(runtime)) = (self.tx.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move {
                let _ = tx.rollback().await;
            });
        }
    }
}

#[async_trait]
impl NamedLocks for PostgresMetaStore {
    async fn lock(&self, name: &str) -> Result<LockGuard, MetaError> {
        let mut tx = self.lock_pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(name).execute(&mut *tx).await?;
        Ok(Box::new(AdvisoryLock { tx: Some(tx) }))
    }
}
