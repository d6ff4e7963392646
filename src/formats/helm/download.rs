//! Chart and provenance downloads (`GET <name>-<version>.tgz[.prov]`) from any kind of
//! repository: stored (hosted), cached or fetched (remote), or the first member of a virtual
//! repository that has it. A remote fetches from the URL the upstream index gives for that
//! version — relative to the index, absolute on the upstream host or on another host — and
//! verifies the archive against the index's `digest` before anything is cached.

use super::archive;
use super::chart::{ChartName, ChartVersionText};
use super::error::HelmError;
use super::route::ChartFile;
use super::{paths, views};
use crate::model::{Digest, Entry};
use crate::repo::{
    BlobValidator, CacheStatus, Found, Freshness, Lookup, Remote, Repo, RepoKind, Source, UpstreamRequest,
};
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures::StreamExt;
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
        let path = kind.path(name.as_str(), version.as_str());
        let Some(entry) = repo.get_local(&path).await? else { continue };
        let RepoKind::Remote(remote) = &repo.kind else {
            return Ok(Some(Found { entry, repo: repo.name.clone(), source: Source::Stored }));
        };
        if !outdated(repo, remote, name, version, kind, &entry).await? {
            return Ok(Some(Found { entry, repo: repo.name.clone(), source: Source::Cached(CacheStatus::Hit) }));
        }
        // The upstream republished this version with other bytes: what index.yaml lists (the
        // new digest) is what gets served, so the old copy and its provenance file go, and the
        // archive is fetched again below and verified against the new digest.
        tracing::info!(repo = %repo.name, chart = %name, %version, "upstream digest changed; fetching the chart again");
        repo.delete_entry(&paths::chart(name.as_str(), version.as_str())).await?;
        repo.delete_entry(&paths::prov(name.as_str(), version.as_str())).await?;
        break;
    }
    let RepoKind::Remote(_) = &repo.kind else { return Ok(None) };
    let sourced = views::view(repo).await?;
    for (name, version) in &candidates {
        let Some(listed) = sourced.view.find(name.as_str(), version.as_str()) else { continue };
        let Some(origin) = listed.origin.clone() else { continue };
        let (url, expected) = match kind {
            Kind::Chart => {
                (origin.to_string(), listed_digest(&listed.entry).and_then(|d| Digest::from_sha256_hex(d).ok()))
            }
            Kind::Prov => (format!("{origin}.prov"), None),
        };
        // Without a digest to verify, the archive must at least be this chart's archive.
        let validate_blob = match (kind, &expected) {
            (Kind::Chart, None) => Some(chart_check(name.as_str(), version.as_str())),
            _ => None,
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
            validate_blob: validate_blob.clone(),
        };
        let lookup = Lookup { path: kind.path(name.as_str(), version.as_str()), upstream: Some(&request) };
        return Ok(repo.get(&lookup).await?);
    }
    Ok(None)
}

/// The index entry's digest as hex (Helm writes bare hex; some repositories add `sha256:`).
fn listed_digest(entry: &super::index::IndexEntry) -> Option<&str> {
    entry.digest.as_deref().map(|d| d.strip_prefix("sha256:").unwrap_or(d)).filter(|d| !d.is_empty())
}

/// Whether a cached chart (or the chart a cached provenance file belongs to) is no longer
/// the archive the upstream index lists: its digest there differs from the cached bytes'.
async fn outdated(
    repo: &Repo,
    remote: &Remote,
    name: &ChartName,
    version: &ChartVersionText,
    kind: Kind,
    entry: &Entry,
) -> Result<bool, HelmError> {
    // Offline or excluded: the cache is all there is.
    if remote.spec.offline || remote.spec.excludes(name.as_str()) {
        return Ok(false);
    }
    let chart = match kind {
        Kind::Chart => Some(entry.clone()),
        Kind::Prov => repo.get_local(&paths::chart(name.as_str(), version.as_str())).await?,
    };
    let Some(chart) = chart else { return Ok(false) };
    // The index as it would be served now (an unavailable index leaves the cache as it is).
    let Ok(sourced) = views::view(repo).await else { return Ok(false) };
    let Some(listed) = sourced.view.find(name.as_str(), version.as_str()) else { return Ok(false) };
    Ok(listed_digest(&listed.entry).is_some_and(|d| !d.eq_ignore_ascii_case(&chart.blob)))
}

/// A fetched archive must be a gzip tar chart archive whose `<name>/Chart.yaml` names this
/// chart and version.
fn chart_check(name: &str, version: &str) -> BlobValidator {
    let (name, version) = (name.to_string(), version.to_string());
    BlobValidator::new(move |file| {
        let meta = archive::metadata_from(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
        match meta.name == name && meta.version == version {
            true => Ok(()),
            false => Err(format!("the archive holds chart {}, not {name}-{version}", meta.stem())),
        }
    })
}

/// Archives up to this size fetched now are read whole before the answer starts, so a
/// failed check is an error status rather than a 200 cut short.
const VERIFY_BEFORE_ANSWER: u64 = 16 * 1024 * 1024;

async fn respond(repo: &Repo, holder: &Repo, found: Found, kind: Kind, head: bool) -> Result<Response, HelmError> {
    let entry = found.entry.clone();
    let mut status = found.cache_status_header(repo);
    let verify_first = matches!(found.source, Source::Streaming(..)) && entry.size <= VERIFY_BEFORE_ANSWER;
    let body = match head {
        true => Body::empty(),
        false if verify_first => {
            let mut stream = holder.open(found, None).await?;
            let mut whole = Vec::with_capacity(entry.size as usize);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    tracing::warn!(repo = %holder.name, path = %entry.path, "upstream chart rejected: {e}");
                    HelmError::new(502, format!("the upstream sent a chart archive that failed verification: {e}"))
                })?;
                whole.extend_from_slice(&chunk);
            }
            // Complete and verified: it is in the cache now.
            status = status.map(|s| if s.ends_with("fwd=uri-miss") { format!("{s}; stored") } else { s });
            Body::from(whole)
        }
        false => Body::from_stream(holder.open(found, None).await?),
    };
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, kind.content_type())
        .header(header::CONTENT_LENGTH, entry.size);
    if !entry.digest.is_empty() {
        response = response.header(header::ETAG, format!("\"{}\"", entry.digest));
    }
    if let Some(status) = status {
        response = response.header("Cache-Status", status);
    }
    response.body(body).map_err(HelmError::internal)
}
