//! Downloads: `.info`, `.mod` and `.zip` from hosted storage, a remote's cache or upstream
//! (zips streamed while they arrive), or a virtual repository's members. A module path held
//! by a hosted member of a virtual repository shadows the remote members (a guard against
//! dependency confusion: remotes are never asked for it).

use super::error::GoError;
use super::module::{ModulePath, Version};
use super::paths;
use super::route::FileKind;
use crate::model::Entry;
use crate::repo::{
    BlobValidator, Found, Freshness, Lookup, Remote, Repo, RepoError, RepoKind, UpstreamRequest, Validator,
};
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
        validate_blob: None,
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
    // A canonical version's .info must name exactly that version (the go command refuses
    // anything else); a query's (`master`) names whatever it resolved to.
    let wanted = Version::parse(query).map(|v| v.as_str().to_string());
    match kind {
        FileKind::Info => {
            request.validate = Some(Validator::new(move |body, _| validate_info(body, wanted.as_deref())));
        }
        FileKind::Mod => {
            request.validate =
                Some(Validator::new(|body, _| std::str::from_utf8(body).map(drop).map_err(|e| e.to_string())));
        }
        FileKind::Zip => {
            let (module, version) = (module.clone(), Version::parse(query));
            request.validate_blob = Some(BlobValidator::new(move |file| {
                let Some(version) = &version else { return Err("not a canonical version".into()) };
                super::modzip::check(file, &module, version).map(drop).map_err(|e| e.0)
            }));
        }
    }
    request
}

/// An `.info` (or `@latest`) document: JSON with a `Version` (equal to `wanted` when given)
/// and, when present, a `Time` in RFC 3339 (the go command refuses anything else).
pub fn validate_info(body: &[u8], wanted: Option<&str>) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("is not JSON: {e}"))?;
    match wanted {
        Some(wanted) => check_info(&value, wanted),
        // A query's answer (`master`, `@latest`) names a canonical version, whichever it is.
        None => match value.get("Version").and_then(|v| v.as_str()) {
            Some(v) if Version::parse(v).is_some() => check_time(&value),
            Some(v) => Err(format!("names {v:?}, which is not a canonical version")),
            None => Err(no_version()),
        },
    }
}

fn no_version() -> String {
    "has no Version field".into()
}

fn check_time(value: &serde_json::Value) -> Result<(), String> {
    match value.get("Time") {
        None => Ok(()),
        Some(serde_json::Value::String(t)) if super::module::is_rfc3339(t) => Ok(()),
        Some(t) => Err(format!("has a Time that is not an RFC 3339 date-time: {t}")),
    }
}

/// `.info` for `version`: its `Version` is exactly `version`, its `Time` (if any) RFC 3339.
pub fn check_info(value: &serde_json::Value, version: &str) -> Result<(), String> {
    match value.get("Version").and_then(|v| v.as_str()) {
        Some(v) if v == version => check_time(value),
        Some(v) => Err(format!("names version {v}, not {version}")),
        None => Err(no_version()),
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

#[cfg(test)]
mod tests {
    use super::validate_info;

    #[test]
    fn upstream_info_documents() {
        let ok = br#"{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}"#;
        assert!(validate_info(ok, Some("v1.0.0")).is_ok());
        assert!(validate_info(ok, None).is_ok());
        assert!(validate_info(br#"{"Version":"v1.0.0"}"#, Some("v1.0.0")).is_ok(), "Time is optional upstream");
        let cases: [(&[u8], Option<&str>, &str); 5] = [
            (ok, Some("v1.0.1"), "not v1.0.1"),
            (br#"{"Version":"v1.0.0","Time":"soon"}"#, Some("v1.0.0"), "RFC 3339"),
            (br#"{"Version":"master","Time":"2024-01-02T03:04:05Z"}"#, None, "not a canonical version"),
            (br#"{"Time":"2024-01-02T03:04:05Z"}"#, None, "no Version"),
            (b"<html>", None, "not JSON"),
        ];
        for (body, wanted, why) in cases {
            let err = validate_info(body, wanted).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }
}
