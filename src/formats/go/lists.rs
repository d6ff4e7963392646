//! `@v/list` and `@latest`. Hosted repositories answer from catalog queries (the `.zip`
//! entries of a module); remotes cache the upstream's answers as mutable documents
//! (revalidated after `metadata_ttl`, served stale when the upstream fails); virtual
//! repositories merge their members' lists and compute `@latest` over the merged list.

use super::download::{self, find, members_for, read, respond};
use super::error::GoError;
use super::module::{self, ModulePath, Version};
use super::paths;
use super::route::FileKind;
use crate::repo::{Freshness, Remote, Repo, RepoKind, UpstreamRequest, Validator};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const PAGE: u32 = 1000;

/// Versions stored in a hosted repository (pseudo-versions included).
pub async fn stored_versions(repo: &Repo, module: &ModulePath) -> Result<Vec<Version>, GoError> {
    let prefix = paths::versions(module);
    let mut versions = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = repo.list(&prefix, after.as_deref(), PAGE).await?;
        versions.extend(page.iter().filter_map(|e| paths::zip_version(module, &e.path)).filter_map(Version::parse));
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.path.clone()),
            _ => return Ok(versions),
        }
    }
}

fn list_request(module: &ModulePath) -> UpstreamRequest {
    let path = format!("{}/@v/list", module.escaped());
    let mut request = download::upstream(path, Freshness::Mutable, module, true);
    request.validate = Some(Validator::new(|body, _| std::str::from_utf8(body).map(drop).map_err(|e| e.to_string())));
    request
}

fn latest_request(module: &ModulePath) -> UpstreamRequest {
    let path = format!("{}/@latest", module.escaped());
    let mut request = download::upstream(path, Freshness::Mutable, module, true);
    request.validate = Some(Validator::new(|body, _| download::validate_info(body, None)));
    request
}

/// One member's versions: stored (hosted) or from the upstream list (remote); None when the
/// member does not know the module. Remote answers carry their `Cache-Status`.
async fn member_versions(member: &Arc<Repo>, module: &ModulePath) -> Result<Option<Listed>, GoError> {
    if matches!(member.kind, RepoKind::Hosted) {
        let versions = stored_versions(member, module).await?;
        return Ok((!versions.is_empty()).then_some((versions, None)));
    }
    let upstream = |_: &Remote| list_request(module);
    let Some((found, holder)) = find(std::slice::from_ref(member), &paths::list(module), &upstream).await? else {
        return Ok(None);
    };
    let status = found.cache_status().map(|s| s.header_value());
    let body = read(&holder, &found.entry).await?;
    let text = String::from_utf8_lossy(&body);
    Ok(Some((text.split_whitespace().filter_map(Version::parse).collect(), status)))
}

type Listed = (Vec<Version>, Option<String>);

/// The union of the members' versions (None when no member knows the module), with the
/// remote members' `Cache-Status` values.
async fn merged_versions(
    repo: &Arc<Repo>,
    module: &ModulePath,
) -> Result<(Option<Vec<Version>>, Vec<String>), GoError> {
    let mut merged: Option<Vec<Version>> = None;
    let mut statuses = Vec::new();
    let mut failure = None;
    let members = members_for(repo, module).await?;
    for member in &members {
        match member_versions(member, module).await {
            Ok(Some((versions, status))) => {
                merged.get_or_insert_with(Vec::new).extend(versions);
                statuses.extend(status);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(member = %member.name, %module, "member list failed: {e}");
                failure = Some(e);
            }
        }
    }
    match (merged, failure) {
        (None, Some(e)) if members.len() == 1 => Err(e),
        (merged, _) => Ok((merged, statuses)),
    }
}

pub async fn get_list(repo: &Arc<Repo>, module: &ModulePath) -> Result<Response, GoError> {
    let (Some(versions), statuses) = merged_versions(repo, module).await? else {
        return Err(GoError::NotFound(format!("unknown module {module}")));
    };
    let body = module::list_body(&versions);
    let etag = format!("\"{}\"", crate::model::Digest::sha256_of(body.as_bytes()));
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()), (header::ETAG, etag)];
    let mut response = (headers, body).into_response();
    if let Ok(value) = HeaderValue::from_str(&statuses.join(", ")) {
        if !statuses.is_empty() {
            response.headers_mut().insert("cache-status", value);
        }
    }
    Ok(response)
}

/// `@latest`: a remote alone passes its upstream's answer through; otherwise the `.info` of
/// the best version over the (merged) stored and listed versions, falling back to the
/// members' own `@latest` when only pseudo-versions exist.
pub async fn get_latest(repo: &Arc<Repo>, module: &ModulePath) -> Result<Response, GoError> {
    if repo.remote().is_some() {
        return remote_latest(repo, module).await;
    }
    let members = members_for(repo, module).await?;
    let mut candidates = merged_versions(repo, module).await?.0.unwrap_or_default();
    candidates.retain(|v| !v.is_pseudo());
    if candidates.is_empty() {
        for member in &members {
            if matches!(member.kind, RepoKind::Hosted) {
                candidates.extend(stored_versions(member, module).await?);
            }
        }
    }
    if let Some(best) = module::latest(&candidates) {
        return download::get_file(repo, module, best.as_str(), FileKind::Info).await;
    }
    for member in members.iter().filter(|m| m.remote().is_some()) {
        match remote_latest(member, module).await {
            Err(GoError::NotFound(_)) => {}
            answer => return answer,
        }
    }
    Err(GoError::NotFound(format!("unknown module {module}")))
}

async fn remote_latest(repo: &Arc<Repo>, module: &ModulePath) -> Result<Response, GoError> {
    let upstream = |_: &Remote| latest_request(module);
    let Some((found, holder)) = find(std::slice::from_ref(repo), &paths::latest(module), &upstream).await? else {
        return Err(GoError::NotFound(format!("unknown module {module}")));
    };
    respond(repo, found, &holder, "application/json").await
}
