//! Domain values shared by every layer: digests, repository names, kinds and actions.
//! Pure data with parsing at the edge; no I/O (DESIGN.md invariant 9).

mod digest;
mod names;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use names::{NameError, RepoName};

use serde::{Deserialize, Serialize};

/// The package format a repository serves. One variant per adapter in `formats/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatKind {
    /// OCI distribution-spec / Docker Registry HTTP API v2.
    #[serde(alias = "oci")]
    Docker,
    /// Helm chart repository (index.yaml + chart archives, ChartMuseum upload API).
    Helm,
    /// Go module proxy (GOPROXY protocol).
    Go,
}

impl FormatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FormatKind::Docker => "docker",
            FormatKind::Helm => "helm",
            FormatKind::Go => "go",
        }
    }
}

/// What a request wants to do to a repository; access control decides on this alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Write,
    Delete,
    Admin,
}

/// A stored blob: its SHA-256 in the single-instance store and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub sha256: Digest,
    pub size: u64,
}

/// One catalog entry: a path in a repository that points at a blob.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub repo: String,
    pub path: String,
    /// The digest clients know this content by (may be sha512 for OCI).
    pub digest: String,
    /// SHA-256 hex of the stored blob (the single-instance key).
    pub blob: String,
    pub size: u64,
    pub media_type: Option<String>,
    pub package: Option<String>,
    /// A digest this entry refers to (OCI `subject`), for reverse lookups.
    pub refers_to: Option<String>,
    /// Format-specific attributes as JSON.
    pub attrs: serde_json::Value,
    pub created_at: i64,
    /// When a remote entry was last confirmed against its upstream (unix seconds).
    pub checked_at: i64,
    pub etag: Option<String>,
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
