//! Leases elect one node for a piece of work across the cluster (one upstream fetch per key).
//! A lease lives in the database with an expiry on the database's clock; its holder renews it
//! while working, and any node may take it over once it has expired (its holder died).
//! `NamedLocks` serialize check-then-write sequences across nodes (held until dropped).

use super::MetaError;
use async_trait::async_trait;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This node holds the lease now.
    Mine,
    /// Another node holds a live lease; it serves the work's progress at `node_url`.
    Held { owner: String, node_url: String },
}

#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Take `key` for `ttl` unless another owner holds a live lease on it.
    async fn acquire(&self, key: &str, owner: &str, node_url: &str, ttl: Duration) -> Result<Lease, MetaError>;
    /// Extend our lease; false if it is no longer ours.
    async fn renew(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, MetaError>;
    async fn release(&self, key: &str, owner: &str) -> Result<(), MetaError>;
}

/// Held while locked; dropping it unlocks.
pub type LockGuard = Box<dyn Send + Sync>;

#[async_trait]
pub trait NamedLocks: Send + Sync + 'static {
    /// Wait for the cluster-wide lock `name`.
    async fn lock(&self, name: &str) -> Result<LockGuard, MetaError>;
}
