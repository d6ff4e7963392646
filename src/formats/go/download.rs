//! Downloads: `.info`, `.mod` and `.zip` from hosted storage, a remote's cache or upstream
//! (zips streamed while they arrive), or a virtual repository's members. A module path held
//! by a hosted member of a virtual repository shadows the remote members (a guard against
//! dependency confusion: remotes are never asked for it).

use super::error::GoError;
use super::module::{ModulePath, Version};
use super::paths;
use super::route::FileKind;
use crate::model::Entry;
use crate::repo::{Found, Freshness, Lookup, Remote, Repo, RepoError, RepoKind, UpstreamRequest};
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// Documents (.info, .mod, list, @latest) above this size are refused from upstreams.
pub const MAX_DOCUMENT: u64 = 16 << 20;

pub fn content_type(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Info => "application/json",
        FileKind::Mod => "text/plain; charset=utf-8",
        FileKind::Zip => "application/zip",
    }
}

/// An upstream request for `path` (already escaped, relative to the upstream base URL).
pub fn upstream(path: String, freshness: Freshness, package: &ModulePath, document: bool) -> UpstreamRequest {
    UpstreamRequest {
        path,
        accept: Vec::new(),
        freshness,
        expected: None,
        package: Some(package.to_string()),
        auth_scope: None,
        document_limit: document.then_some(MAX_DOCUMENT),
        digest_header: None,
        validate: None,
    }
}

/// How a remote asks its upstream for `<module>/@v/<query>.<kind>`.
fn file_request(module: &ModulePath, query: &str, kind: FileKind) -> UpstreamRequest {
    let freshness = match Version::parse(query) {
        Some(_) => Freshness::Immutable,
        None => Freshness::Mutable,
    };
    let path = format!("{}/@v/{}.{}", module.escaped(), super::module::escape(query), kind.extension());
    let mut request = upstream(path, freshness, module, kind != FileKind::Zip);
    request.validate = match kind {
        FileKind::Info => Some(|body, _| validate_info(body)),
        FileKind::Mod => Some(|body, _| std::str::from_utf8(body).map(drop).map_err(|e| e.to_string())),
        FileKind::Zip => None,
    };
    request
}

/// An `.info` (or `@latest`) document: JSON with a `Version`.
pub fn validate_info(body: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("Version").and_then(|v| v.as_str()) {
        Some(_) => Ok(()),
        None => Err("no Version field".into()),
    }
}

/// The repositories to ask for `module`, in order: itself, or a virtual repository's members,
/// restricted to the hosted ones when one of them holds the module.
pub async fn members_for(repo: &Arc<Repo>, module: &ModulePath) -> Result<Vec<Arc<Repo>>, GoError> {
    let RepoKind::Virtual { members, .. } = &repo.kind else { return Ok(vec![repo.clone()]) };
    let mut hosted = Vec::new();
    for member in members.iter().filter(|m| matches!(m.kind, RepoKind::Hosted)) {
        if !member.list(&paths::versions(module), None, 1).await?.is_empty() {
            hosted.push(member.clone());
        }
    }
    Ok(if hosted.is_empty() { members.clone() } else { hosted })
}

/// The first of `members` that has `path`; a failing member does not hide another's answer.
pub async fn find(
    members: &[Arc<Repo>],
    path: &str,
    upstream: &(dyn Fn(&Remote) -> UpstreamRequest + Sync),
) -> Result<Option<(Found, Arc<Repo>)>, GoError> {
    let lookup = Lookup { path: path.to_string(), upstream: Some(upstream) };
    let mut failures = Vec::new();
    for member in members {
        match member.get(&lookup).await {
            Ok(Some(found)) => return Ok(Some((found, member.clone()))),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(member = %member.name, path, "member failed: {e}");
                failures.push(e);
            }
        }
    }
    // Only when every member failed is the failure the answer (not "not found").
    match failures.len() == members.len() {
        true => failures.pop().map_or(Ok(None), |e| Err(e.into())),
        false => Ok(None),
    }
}

/// GET `<module>/@v/<query>.<kind>`.
pub async fn get_file(repo: &Arc<Repo>, module: &ModulePath, query: &str, kind: FileKind) -> Result<Response, GoError> {
    let members = members_for(repo, module).await?;
    let upstream = |_: &Remote| file_request(module, query, kind);
    let path = paths::file(module, query, kind);
    let Some((found, holder)) = find(&members, &path, &upstream).await? else {
        return Err(GoError::NotFound(format!("{module}@{query}: no .{} in this repository", kind.extension())));
    };
    respond(repo, found, &holder, content_type(kind)).await
}

/// Stream what was found, with its length and `Cache-Status`.
pub async fn respond(repo: &Repo, found: Found, holder: &Repo, content_type: &str) -> Result<Response, GoError> {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, found.entry.size);
    // Content-addressed: lets a binaryrepo downstream revalidate lists and @latest by HEAD.
    if !found.entry.digest.is_empty() {
        response = response.header(header::ETAG, format!("\"{}\"", found.entry.digest));
    }
    if let Some(status) = found.cache_status_header(repo) {
        response = response.header("Cache-Status", status);
    }
    let stream = holder.open(found, None).await?;
    response.body(Body::from_stream(stream)).map_err(|e| GoError::Repo(RepoError::Corrupt(e.to_string())))
}

/// A small document's bytes (lists, .info), wherever it was found.
pub async fn read(holder: &Repo, entry: &Entry) -> Result<bytes::Bytes, GoError> {
    Ok(holder.read_entry(entry, MAX_DOCUMENT).await?)
}
