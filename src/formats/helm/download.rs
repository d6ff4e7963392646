//! Chart and provenance downloads (`GET <name>-<version>.tgz[.prov]`) from any kind of
//! repository: stored (hosted), cached or fetched (remote), or the first member of a virtual
//! repository that has it. A remote fetches from the URL the upstream index gives for that
//! version — relative to the index, absolute on the upstream host or on another host — and
//! verifies the archive against the index's `digest` before anything is cached.

use super::error::HelmError;
use super::route::ChartFile;
use super::{paths, views};
use crate::model::Digest;
use crate::repo::{CacheStatus, Found, Freshness, Lookup, Remote, Repo, RepoKind, Source, UpstreamRequest};
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chart,
    Prov,
}

impl Kind {
    fn path(self, name: &str, version: &str) -> String {
        match self {
            Kind::Chart => paths::chart(name, version),
            Kind::Prov => paths::prov(name, version),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Chart => "application/gzip",
            Kind::Prov => "application/pgp-signature",
        }
    }
}

pub async fn get(repo: &Arc<Repo>, file: &ChartFile, kind: Kind, head: bool) -> Result<Response, HelmError> {
    let members = repo.readable();
    let (mut failure, mut failures) = (None, 0);
    for member in &members {
        match find(member, file, kind).await {
            Ok(Some(found)) => return respond(repo, member, found, kind, head).await,
            Ok(None) => {}
            Err(e) => {
                let stem = file.stem();
                tracing::warn!(repo = %repo.name, member = %member.name, file = stem, "lookup failed: {}", e.message);
                failure = Some(e);
                failures += 1;
            }
        }
    }
    // One member failing does not hide a clean miss in the others; if all failed, say why.
    match failure {
        Some(e) if failures == members.len() => Err(e),
        _ => Err(HelmError::not_found(format!("{} not found", file.stem()))),
    }
}

async fn find(repo: &Repo, file: &ChartFile, kind: Kind) -> Result<Option<Found>, HelmError> {
    let candidates = file.candidates();
    for (name, version) in &candidates {
        if let Some(entry) = repo.get_local(&kind.path(name.as_str(), version.as_str())).await? {
            let source = match repo.kind {
                RepoKind::Remote(_) => Source::Cached(CacheStatus::Hit),
                _ => Source::Stored,
            };
            return Ok(Some(Found { entry, repo: repo.name.clone(), source }));
        }
    }
    let RepoKind::Remote(_) = &repo.kind else { return Ok(None) };
    let sourced = views::view(repo).await?;
    for (name, version) in &candidates {
        let Some(listed) = sourced.view.find(name.as_str(), version.as_str()) else { continue };
        let Some(origin) = listed.origin.clone() else { continue };
        let (url, expected) = match kind {
            Kind::Chart => {
                (origin.to_string(), listed.entry.digest.as_deref().and_then(|d| Digest::from_sha256_hex(d).ok()))
            }
            Kind::Prov => (format!("{origin}.prov"), None),
        };
        let request = |_: &Remote| UpstreamRequest {
            path: url.clone(),
            accept: Vec::new(),
            freshness: Freshness::Immutable,
            expected: expected.clone(),
            package: Some(name.to_string()),
            auth_scope: None,
            document_limit: None,
            digest_header: None,
            validate: None,
            validate_blob: None,
        };
        let lookup = Lookup { path: kind.path(name.as_str(), version.as_str()), upstream: Some(&request) };
        return Ok(repo.get(&lookup).await?);
    }
    Ok(None)
}

async fn respond(repo: &Repo, holder: &Repo, found: Found, kind: Kind, head: bool) -> Result<Response, HelmError> {
    let entry = &found.entry;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, kind.content_type())
        .header(header::CONTENT_LENGTH, entry.size);
    if !entry.digest.is_empty() {
        response = response.header(header::ETAG, format!("\"{}\"", entry.digest));
    }
    let status = match found.cache_status() {
        Some(status) => Some(status.header_value()),
        None if repo.is_virtual() => {
            Some(format!("{}; detail=\"member {}\"", CacheStatus::Hit.header_value(), found.repo))
        }
        None => None,
    };
    if let Some(status) = status {
        response = response.header("Cache-Status", status);
    }
    let body = match head {
        true => Body::empty(),
        false => Body::from_stream(holder.open(found, None).await?),
    };
    response.body(body).map_err(HelmError::internal)
}
