//! Listing endpoints: tags (with `n`/`last` and `Link`), referrers (OCI 1.1, with the
//! `artifactType` filter) and the catalog. Virtual repositories list the union of members.

use super::error::{ErrorCode, OciError};
use super::manifest::OCI_INDEX;
use super::paths;
use super::pull::manifest_request;
use super::route::Page;
use super::route::Reference;
use super::upstream_request;
use crate::formats::Ctx;
use crate::model::Digest;
use crate::repo::{CacheStatus, Freshness, Lookup, Remote, Repo, RepoError, UpstreamRequest};
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const LIST_LIMIT: u32 = 10_000;
const DOCUMENT_LIMIT: u64 = 16 * 1024 * 1024;

fn json_response(body: serde_json::Value, extra: Vec<(&'static str, String)>) -> Result<Response, OciError> {
    let mut builder = Response::builder().status(StatusCode::OK);
    for (name, value) in extra {
        builder = builder.header(name, value);
    }
    builder
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .map_err(|e| OciError::new(ErrorCode::Unknown, e.to_string()))
}

/// Sort, skip past `last`, take `n`; returns the page and whether more follow.
fn paginate(all: BTreeSet<String>, page: &Page) -> (Vec<String>, bool) {
    let rest = all.into_iter().filter(|t| page.last.as_ref().is_none_or(|last| t > last));
    match page.n {
        Some(n) => {
            let mut items: Vec<String> = rest.take(n as usize + 1).collect();
            let more = items.len() > n as usize;
            items.truncate(n as usize);
            (items, more)
        }
        None => (rest.collect(), false),
    }
}

fn link(path: &str, page: &Page, items: &[String]) -> Option<(&'static str, String)> {
    let last = items.last()?;
    let n = page.n?;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("n", &n.to_string())
        .append_pair("last", last)
        .finish();
    Some(("Link", format!("<{path}?{query}>; rel=\"next\"")))
}

/// A member's tags, and for a remote member what its cache did to answer.
async fn member_tags(member: &Repo, name: &str) -> Result<Option<(BTreeSet<String>, Option<CacheStatus>)>, RepoError> {
    if member.remote().is_some() {
        let fetched = remote_tags(member, name).await;
        if let Ok(Some((tags, status))) = fetched {
            return Ok(Some((tags, Some(status))));
        }
        // Unknown or unreachable upstream: the tags already cached are still the answer.
        let cached = cached_tags(member, name).await?;
        let stale = CacheStatus::Stale("upstream tags list unavailable".into());
        return match fetched {
            _ if !cached.is_empty() => Ok(Some((cached, Some(stale)))),
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
    }
    let tags = cached_tags(member, name).await?;
    Ok((!tags.is_empty()).then_some((tags, None)))
}

async fn cached_tags(member: &Repo, name: &str) -> Result<BTreeSet<String>, RepoError> {
    let entries = member.list(&paths::tags(name), None, LIST_LIMIT).await?;
    Ok(entries.iter().filter_map(|e| paths::tag_of(&e.path)).map(str::to_string).collect())
}

async fn remote_tags(member: &Repo, name: &str) -> Result<Option<(BTreeSet<String>, CacheStatus)>, RepoError> {
    let request = |remote: &Remote| UpstreamRequest {
        accept: vec!["application/json".into()],
        document_limit: Some(DOCUMENT_LIMIT),
        ..upstream_request(remote, name, "tags/list", Freshness::Mutable)
    };
    let Some(found) = member.get(&Lookup { path: paths::upstream_tags(name), upstream: Some(&request) }).await? else {
        return Ok(None);
    };
    let bytes = member.read_entry(&found.entry, DOCUMENT_LIMIT).await?;
    #[derive(serde::Deserialize)]
    struct TagList {
        tags: Option<Vec<String>>,
    }
    let list: TagList =
        serde_json::from_slice(&bytes).map_err(|e| RepoError::Corrupt(format!("upstream tags list: {e}")))?;
    let status = found.cache_status().cloned().unwrap_or(CacheStatus::Hit);
    Ok(Some((list.tags.unwrap_or_default().into_iter().collect(), status)))
}

pub async fn tags(repo: &Repo, ctx: &Ctx, name: &str, page: &Page) -> Result<Response, OciError> {
    let mut all = BTreeSet::new();
    let mut known = false;
    let mut statuses = Vec::new();
    for member in repo.readable() {
        match member_tags(member, name).await {
            Ok(Some((tags, status))) => {
                known = true;
                all.extend(tags);
                statuses.extend(status.map(|s| s.header_value()));
            }
            Ok(None) => {}
            Err(e) if repo.is_virtual() => tracing::warn!(repo = %member.name, "tags of {name} unavailable: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    if !known {
        return Err(OciError::new(ErrorCode::NameUnknown, format!("repository name {name} is not known")));
    }
    let (items, more) = paginate(all, page);
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    if more {
        extra.extend(link(&format!("/v2/{}{name}/tags/list", ctx.prefix), page, &items));
    }
    if statuses.is_empty() && repo.is_virtual() {
        statuses.push(CacheStatus::Hit.header_value());
    }
    if !statuses.is_empty() {
        extra.push(("Cache-Status", statuses.join(", ")));
    }
    // The name as the client wrote it, repository key included under path addressing.
    json_response(serde_json::json!({ "name": format!("{}{name}", ctx.prefix), "tags": items }), extra)
}

pub async fn referrers(
    repo: &Repo,
    name: &str,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Response, OciError> {
    let mut descriptors: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for member in repo.readable() {
        let found = match member.remote() {
            Some(_) => remote_referrers(member, name, subject).await,
            None => local_referrers(member, name, subject).await,
        };
        match found {
            Ok(list) => {
                for d in list {
                    if let Some(digest) = d.get("digest").and_then(|v| v.as_str()) {
                        descriptors.entry(digest.to_string()).or_insert(d);
                    }
                }
            }
            Err(e) => tracing::warn!(repo = %member.name, "referrers of {subject} unavailable: {e}"),
        }
    }
    let manifests: Vec<serde_json::Value> = descriptors
        .into_values()
        .filter(|d| artifact_type.is_none_or(|t| d.get("artifactType").and_then(|v| v.as_str()) == Some(t)))
        .collect();
    let body = serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let extra = artifact_type.map(|_| ("OCI-Filters-Applied", "artifactType".to_string())).into_iter().collect();
    let mut response = json_response(body, extra)?;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(OCI_INDEX));
    Ok(response)
}

async fn local_referrers(member: &Repo, name: &str, subject: &Digest) -> Result<Vec<serde_json::Value>, RepoError> {
    let entries = member.list_referring(&paths::manifests(name), &subject.to_string()).await?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let mut d = serde_json::json!({ "mediaType": e.media_type, "digest": e.digest, "size": e.size });
            for key in ["artifactType", "annotations"] {
                if let Some(v) = e.attrs.get(key).filter(|v| !v.is_null()) {
                    d[key] = v.clone();
                }
            }
            d
        })
        .collect())
}

/// Referrers known upstream (OCI 1.1 referrers API, else the `sha256-<hex>` tag schema) plus
/// those recorded locally; the upstream documents are cached as mutable entries.
pub async fn remote_referrers(
    member: &Repo,
    name: &str,
    subject: &Digest,
) -> Result<Vec<serde_json::Value>, RepoError> {
    let mut all = local_referrers(member, name, subject).await?;
    let api = |remote: &Remote| UpstreamRequest {
        accept: vec![OCI_INDEX.into()],
        document_limit: Some(DOCUMENT_LIMIT),
        ..upstream_request(remote, name, &format!("referrers/{subject}"), Freshness::Mutable)
    };
    let mut found = member.get(&Lookup { path: paths::upstream_referrers(name, subject), upstream: Some(&api) }).await;
    if !matches!(found, Ok(Some(_))) {
        let tag = Reference::Tag(format!("{}-{}", subject.algorithm().as_str(), subject.hex()));
        let schema = |remote: &Remote| manifest_request(remote, name, &tag);
        let by_tag = member.get(&Lookup { path: paths::tag(name, &tag.to_string()), upstream: Some(&schema) }).await;
        // Either answer will do; an error only if both failed.
        if found.is_ok() || by_tag.is_ok() {
            found = Ok(by_tag.unwrap_or(None));
        }
    }
    let found = found?;
    if let Some(found) = found {
        let bytes = member.read_entry(&found.entry, DOCUMENT_LIMIT).await?;
        if let Ok(index) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            if let Some(list) = index.get("manifests").and_then(|m| m.as_array()) {
                all.extend(list.iter().cloned());
            }
        }
    }
    Ok(all)
}

/// `/v2/_catalog`: image names the caller may read. With path addressing, names carry their
/// repository key so that they can be pulled as listed.
pub async fn catalog(repos: &[Arc<Repo>], with_key: bool, page: &Page) -> Result<Response, OciError> {
    let mut all = BTreeSet::new();
    for repo in repos {
        for member in repo.readable() {
            for package in member.list_packages(None, LIST_LIMIT).await? {
                all.insert(if with_key { format!("{}/{package}", repo.name) } else { package });
            }
        }
    }
    let (items, more) = paginate(all, page);
    let extra = if more { link("/v2/_catalog", page, &items).into_iter().collect() } else { vec![] };
    json_response(serde_json::json!({ "repositories": items }), extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination() {
        let all: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let page = Page { n: Some(2), last: None };
        assert_eq!(paginate(all.clone(), &page), (vec!["a".into(), "b".into()], true));
        let page2 = Page { n: Some(2), last: Some("b".into()) };
        assert_eq!(paginate(all.clone(), &page2), (vec!["c".into()], false));
        assert_eq!(paginate(all.clone(), &Page { n: Some(0), last: None }), (vec![], true));
        assert_eq!(
            link("/v2/x/tags/list", &page, &["b".into()]).unwrap().1,
            "</v2/x/tags/list?n=2&last=b>; rel=\"next\""
        );
    }
}
