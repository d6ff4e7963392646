//! Where a repository's charts come from, and the per-process caches that keep index.yaml
//! cheap, kept in the repository's `format_state` (ARCHITECTURE.md invariant 8: caches are
//! per process):
//!
//! * hosted: loaded once from the catalog (entry attrs, never the archives), then changed in
//!   place by every upload and delete, which run under the repository's write lock;
//! * remote: the upstream's index.yaml through `Repo::get` (mutable: `metadata_ttl`,
//!   revalidation, serve-stale), parsed once per fetched body, chart URLs resolved against
//!   the index URL so downloads can go back to where the upstream keeps each archive;
//! * virtual: the members' views merged, first member wins.
//!
//! Every view comes with a key that changes whenever the view does; the rendered index.yaml
//! (and its gzip) is cached under that key.

use super::chart::{ChartName, ChartVersionText, Metadata};
use super::error::HelmError;
use super::index::{ChartVersion, IndexEntry, View};
use super::paths;
use crate::model::Entry;
use crate::repo::{CacheStatus, Freshness, Lookup, Remote, Repo, RepoError, RepoKind, UpstreamRequest};
use bytes::Bytes;
use futures::StreamExt;
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Upstream index.yaml files of large public repositories reach tens of MiB.
pub const MAX_INDEX: u64 = 128 * 1024 * 1024;
const PAGE: u32 = 1000;

#[derive(Default)]
struct State {
    hosted: Option<Arc<View>>,
    /// The catalog's `_stamp` the hosted view was built at (or last changed to).
    stamp: Option<String>,
    generation: u64,
    /// Remote: the view of the upstream index stored as this blob.
    upstream: Option<(String, Arc<View>)>,
    /// Virtual: the merge of the members' views under this key.
    merged: Option<(String, Arc<View>)>,
    rendered: Option<(String, Arc<Rendered>)>,
}

fn with_state<T>(repo: &Repo, f: impl FnOnce(&mut State) -> T) -> T {
    match repo.format_state::<Mutex<State>>() {
        Some(state) => f(&mut state.lock().unwrap_or_else(|e| e.into_inner())),
        // Another format's state on a helm repository cannot happen; work uncached.
        None => f(&mut State::default()),
    }
}

/// A view and the key that names this state of it.
pub struct Sourced {
    pub view: Arc<View>,
    pub key: String,
    /// Remote repositories: what the cache did for the upstream index.
    pub cache: Option<CacheStatus>,
}

/// The rendered index.yaml of one view state.
pub struct Rendered {
    /// The document in pieces (shared with the view's per-chart cache), and its length.
    pub pieces: Vec<Bytes>,
    pub length: usize,
    pub etag: String,
    gzip: OnceLock<Bytes>,
}

impl Rendered {
    pub fn gzip(&self) -> Bytes {
        self.gzip
            .get_or_init(|| {
                use std::io::Write;
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                // Writing to a Vec cannot fail.
                for piece in &self.pieces {
                    let _ = encoder.write_all(piece);
                }
                encoder.finish().map(Bytes::from).unwrap_or_default()
            })
            .clone()
    }
}

/// The charts of `repo`, whatever its kind.
pub async fn view(repo: &Repo) -> Result<Sourced, HelmError> {
    match &repo.kind {
        RepoKind::Hosted => hosted(repo).await,
        RepoKind::Remote(remote) => upstream(repo, remote).await,
        RepoKind::Virtual { members, .. } => merged(repo, members).await,
    }
}

/// index.yaml of `repo` with chart URLs under `base`, rendered once per view state.
pub async fn index(repo: &Repo, base: &str) -> Result<(Arc<Rendered>, Option<CacheStatus>), HelmError> {
    let started = std::time::Instant::now();
    let sourced = view(repo).await?;
    let key = format!("{}|{base}", sourced.key);
    let name = repo.name.as_str();
    if let Some(hit) = with_state(repo, |s| s.rendered.as_ref().filter(|(k, _)| *k == key).map(|(_, r)| r.clone())) {
        return Ok((hit, sourced.cache));
    }
    let viewed = started.elapsed();
    // Rendering a large upstream index the first time takes a while: keep it off the runtime.
    // `generated` is the newest `created` listed and the ETag hashes the document, so both
    // depend on the charts only: a restart (or another process) renders the same index.
    let (view, url_base) = (sourced.view.clone(), base.to_string());
    let (pieces, etag) = tokio::task::spawn_blocking(move || {
        let pieces = view.render(&url_base, &last_change(&view))?;
        let mut hasher = sha2::Sha256::new();
        hasher.update(url_base.as_bytes());
        hasher.update(b"\n");
        pieces.iter().for_each(|piece| hasher.update(piece));
        Ok::<_, serde_yaml::Error>((pieces, hex::encode(&hasher.finalize()[..16])))
    })
    .await
    .map_err(HelmError::internal)?
    .map_err(HelmError::internal)?;
    let length = pieces.iter().map(Bytes::len).sum::<usize>();
    tracing::info!(
        repo = name,
        versions = sourced.view.len(),
        bytes = length,
        view_ms = viewed.as_secs_f64() * 1000.0,
        render_ms = (started.elapsed() - viewed).as_secs_f64() * 1000.0,
        "index.yaml rendered"
    );
    let rendered = Arc::new(Rendered { pieces, length, etag, gzip: OnceLock::new() });
    with_state(repo, |s| s.rendered = Some((key, rendered.clone())));
    Ok((rendered, sourced.cache))
}

/// When the charts last changed, as far as the index can tell: the newest `created` among the
/// listed versions (RFC 3339, to the second), or the Unix epoch for an empty index. A delete
/// does not move it (the catalog keeps no time of deletes); the ETag still changes then.
fn last_change(view: &View) -> String {
    let newest = view
        .charts
        .values()
        .flat_map(|bucket| bucket.versions.iter())
        .filter_map(|v| v.entry.created.as_deref())
        .filter_map(|created| humantime::parse_rfc3339_weak(created).ok())
        .max()
        .unwrap_or(std::time::UNIX_EPOCH);
    humantime::format_rfc3339_seconds(newest).to_string()
}

/// Record a change to a hosted repository's charts. Call while holding its write lock,
/// after the catalog was written: the view is changed in place and a new `_stamp` tells the
/// other nodes over the same database to reload theirs.
pub async fn changed(repo: &Repo, change: impl FnOnce(&View) -> View) -> Result<(), HelmError> {
    let stamp = uuid::Uuid::new_v4().simple().to_string();
    let now = crate::model::unix_now();
    let entry = Entry {
        path: paths::STAMP.to_string(),
        digest: stamp.clone(),
        attrs: serde_json::json!({}),
        created_at: now,
        checked_at: now,
        ..Default::default()
    };
    repo.put_entry(&entry).await?;
    with_state(repo, |s| {
        s.generation += 1;
        s.stamp = Some(stamp);
        if let Some(view) = &s.hosted {
            s.hosted = Some(Arc::new(change(view)));
        }
    });
    Ok(())
}

/// The cached hosted view, if it was built at the catalog's current `stamp`.
fn hosted_snapshot(repo: &Repo, stamp: &Option<String>) -> Option<Sourced> {
    with_state(repo, |s| {
        if s.stamp != *stamp {
            (s.hosted, s.stamp) = (None, stamp.clone());
            s.generation += 1;
        }
        let key = format!("h{}:{}", repo.name, s.generation);
        s.hosted.clone().map(|view| Sourced { view, key, cache: None })
    })
}

async fn current_stamp(repo: &Repo) -> Result<Option<String>, HelmError> {
    Ok(repo.get_local(paths::STAMP).await?.map(|e| e.digest))
}

async fn hosted(repo: &Repo) -> Result<Sourced, HelmError> {
    if let Some(sourced) = hosted_snapshot(repo, &current_stamp(repo).await?) {
        return Ok(sourced);
    }
    // Writers hold this lock while they write the catalog and call `changed`, so nothing
    // lands between the listing and storing the view.
    let _writes = repo.lock_writes().await?;
    let stamp = current_stamp(repo).await?;
    if let Some(sourced) = hosted_snapshot(repo, &stamp) {
        return Ok(sourced);
    }
    let mut versions = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = repo.list(paths::CHARTS, after.as_deref(), PAGE).await?;
        versions.extend(page.iter().filter(|e| paths::is_chart(&e.path)).filter_map(stored_version));
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.path.clone()),
            _ => break,
        }
    }
    let view = Arc::new(View::from_versions(versions));
    with_state(repo, |s| s.hosted = Some(view));
    hosted_snapshot(repo, &stamp).ok_or_else(|| HelmError::internal("hosted view vanished"))
}

/// The index entry of a stored chart, from the metadata recorded at upload.
pub fn stored_version(entry: &Entry) -> Option<ChartVersion> {
    let meta: Metadata = serde_json::from_value(entry.attrs.clone())
        .map_err(|e| tracing::warn!(path = %entry.path, "chart entry without readable metadata: {e}"))
        .ok()?;
    let created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(entry.created_at.max(0) as u64);
    let entry = IndexEntry {
        meta,
        urls: Vec::new(),
        created: Some(humantime::format_rfc3339_seconds(created).to_string()),
        removed: false,
        digest: Some(entry.blob.clone()),
    };
    Some(ChartVersion { entry, origin: None })
}

/// How a remote asks its upstream for index.yaml.
pub fn index_request(_remote: &Remote) -> UpstreamRequest {
    UpstreamRequest {
        path: paths::UPSTREAM_INDEX.to_string(),
        accept: vec!["application/x-yaml, text/yaml, */*".to_string()],
        freshness: Freshness::Mutable,
        expected: None,
        package: None,
        auth_scope: None,
        document_limit: Some(MAX_INDEX),
        digest_header: None,
        validate: Some(crate::repo::Validator::new(validate_index)),
        validate_blob: None,
    }
}

fn validate_index(body: &[u8], _content_type: Option<&str>) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Head {
        entries: Option<serde::de::IgnoredAny>,
    }
    let head: Head = serde_yaml::from_slice(body).map_err(|e| format!("not a chart repository index: {e}"))?;
    head.entries.map(drop).ok_or_else(|| "index.yaml has no entries".to_string())
}

/// The upstream index URL: relative chart URLs in it are resolved against this.
pub fn index_url(remote: &Remote) -> Result<url::Url, HelmError> {
    let mut base = remote.spec.upstream.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join(paths::UPSTREAM_INDEX).map_err(HelmError::internal)
}

async fn upstream(repo: &Repo, remote: &Remote) -> Result<Sourced, HelmError> {
    let lookup = Lookup { path: paths::UPSTREAM_INDEX.to_string(), upstream: Some(&index_request) };
    let found = repo
        .get(&lookup)
        .await?
        .ok_or_else(|| HelmError::not_found(format!("the upstream of {} has no index.yaml", repo.name)))?;
    let cache = found.cache_status().cloned();
    let blob = found.entry.blob.clone();
    let key = format!("r{}:{blob}", repo.name);
    let known = with_state(repo, |s| s.upstream.as_ref().filter(|(b, _)| *b == blob).map(|(_, v)| v.clone()));
    if let Some(view) = known {
        return Ok(Sourced { view, key, cache });
    }
    let body = read_whole(repo, &found.entry).await?;
    let base = index_url(remote)?;
    let mut view = tokio::task::spawn_blocking(move || parse_upstream(&body, &base))
        .await
        .map_err(HelmError::internal)?
        .map_err(|why| HelmError::new(502, format!("the upstream index.yaml is invalid: {why}")))?;
    // `exclude`d names (private charts) are never taken from the upstream.
    view.charts.retain(|name, _| !remote.spec.excludes(name));
    let view = Arc::new(view);
    with_state(repo, |s| s.upstream = Some((blob, view.clone())));
    Ok(Sourced { view, key, cache })
}

/// The stored upstream index (not through the small-document cache: it may be large).
async fn read_whole(repo: &Repo, entry: &Entry) -> Result<Vec<u8>, RepoError> {
    let mut stream = repo.open_entry(entry, None).await?;
    let mut body = Vec::with_capacity(entry.size.min(MAX_INDEX) as usize);
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.map_err(crate::storage::BlobError::Io)?);
    }
    Ok(body)
}

/// An upstream index as a view: entries Helm could not route (bad name or version, no URL)
/// are skipped; each kept entry remembers its archive's absolute upstream URL.
pub fn parse_upstream(body: &[u8], index_url: &url::Url) -> Result<View, String> {
    #[derive(serde::Deserialize)]
    struct Upstream {
        #[serde(default)]
        entries: BTreeMap<String, Vec<serde_yaml::Value>>,
    }
    let index: Upstream = serde_yaml::from_slice(body).map_err(|e| e.to_string())?;
    let mut versions = Vec::new();
    for (name, list) in index.entries {
        for value in list {
            match upstream_version(&name, value, index_url) {
                Ok(v) => versions.push(v),
                Err(why) => tracing::debug!(chart = %name, "skipping upstream index entry: {why}"),
            }
        }
    }
    Ok(View::from_versions(versions))
}

fn upstream_version(name: &str, value: serde_yaml::Value, index_url: &url::Url) -> Result<ChartVersion, String> {
    let mut entry: IndexEntry = serde_yaml::from_value(value).map_err(|e| e.to_string())?;
    if entry.meta.name.is_empty() {
        entry.meta.name = name.to_string();
    }
    name.parse::<ChartName>().map_err(|e| e.to_string())?;
    if entry.meta.name != name || entry.removed {
        return Err("listed under another name, or removed".into());
    }
    entry.meta.version.parse::<ChartVersionText>().map_err(|e| e.to_string())?;
    let url = entry.urls.first().ok_or("no urls")?;
    let origin = index_url.join(url).map_err(|e| format!("bad url {url:?}: {e}"))?;
    if !matches!(origin.scheme(), "http" | "https") {
        return Err(format!("unsupported url {origin}"));
    }
    Ok(ChartVersion { entry, origin: Some(origin) })
}

async fn merged(repo: &Repo, members: &[Arc<Repo>]) -> Result<Sourced, HelmError> {
    let mut views = Vec::new();
    let mut keys = Vec::new();
    let mut failure = None;
    // A member's index served stale makes the merged one stale too: say so.
    let mut stale = None;
    for member in members {
        match Box::pin(view(member)).await {
            Ok(sourced) => {
                if let (None, Some(CacheStatus::Stale(why))) = (&stale, &sourced.cache) {
                    stale = Some(CacheStatus::Stale(format!("member {}: {why}", member.name)));
                }
                keys.push(sourced.key);
                views.push(sourced.view);
            }
            Err(e) => {
                tracing::warn!(repo = %repo.name, member = %member.name, "member index unavailable: {}", e.message);
                keys.push(format!("-{}", member.name));
                failure = Some(e);
            }
        }
    }
    // A failing member is left out; only when every member failed is the failure the answer.
    if let (true, Some(e)) = (views.is_empty(), failure) {
        return Err(e);
    }
    let key = format!("v[{}]", keys.join(","));
    let known = with_state(repo, |s| s.merged.as_ref().filter(|(k, _)| *k == key).map(|(_, v)| v.clone()));
    let view = match known {
        Some(view) => view,
        None => {
            let view = Arc::new(View::merge(&views));
            with_state(repo, |s| s.merged = Some((key.clone(), view.clone())));
            view
        }
    };
    Ok(Sourced { view, key, cache: stale })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_resolve_against_the_index() {
        let index = r#"
apiVersion: v1
entries:
  rel:
    - {apiVersion: v2, name: rel, version: 1.0.0, urls: [charts/rel-1.0.0.tgz], digest: abc}
  abs:
    - {apiVersion: v2, name: abs, version: 1.0.0, urls: ["https://upstream.example.com/charts/dl/abs.tgz"]}
  other:
    - {apiVersion: v2, name: other, version: 2.0.0, urls: ["https://downloads.example.org/other-2.0.0.tgz"], extra: kept}
  bad:
    - {apiVersion: v2, name: bad, version: latest, urls: [x.tgz]}
    - {apiVersion: v2, name: bad, version: 1.0.0}
generated: "2026-01-01T00:00:00Z"
"#;
        let base = url::Url::parse("https://upstream.example.com/charts/index.yaml").unwrap();
        let view = parse_upstream(index.as_bytes(), &base).unwrap();
        assert_eq!(view.len(), 3, "entries without a routable version or a URL are skipped");
        let origin = |n: &str, v: &str| view.find(n, v).unwrap().origin.as_ref().unwrap().to_string();
        assert_eq!(origin("rel", "1.0.0"), "https://upstream.example.com/charts/charts/rel-1.0.0.tgz");
        assert_eq!(origin("abs", "1.0.0"), "https://upstream.example.com/charts/dl/abs.tgz");
        assert_eq!(origin("other", "2.0.0"), "https://downloads.example.org/other-2.0.0.tgz");
        assert_eq!(view.find("other", "2.0.0").unwrap().entry.meta.other["extra"], "kept");
        assert!(validate_index(index.as_bytes(), None).is_ok());
        assert!(validate_index(b"<html>", None).is_err());
        assert!(validate_index(b"apiVersion: v1\n", None).is_err());
    }
}
