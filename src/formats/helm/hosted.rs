//! Uploads and deletes: `PUT /<repo>/<name>-<version>.tgz[.prov]` and the ChartMuseum API
//! (`POST api/charts` raw or multipart `chart` + `prov`, `POST api/prov`,
//! `DELETE api/charts/<name>/<version>`), <https://github.com/helm/chartmuseum#api>.
//!
//! An archive is streamed into the blob store first, then its Chart.yaml is read back from
//! the stored blob; only a valid chart gets a catalog entry (a rejected upload leaves an
//! unreferenced blob for garbage collection). Writes go to the repository's write target
//! and run under its write lock together with the index update.

use super::archive::{prov_chart, read_metadata};
use super::chart::{ChartError, ChartName, ChartVersionText, Metadata};
use super::error::HelmError;
use super::route::ChartFile;
use super::{paths, views};
use crate::model::{unix_now, Algorithm, BlobInfo, Entry};
use crate::repo::Repo;
use crate::storage::ByteStream;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::TryStreamExt;
use tower::{ServiceBuilder, ServiceExt};

/// ChartMuseum's default upload limit is 20 MiB; charts are far smaller.
pub const MAX_CHART: u64 = 64 * 1024 * 1024;
const MAX_PROV: usize = 1024 * 1024;
/// A multipart upload: a maximal chart, a maximal provenance file and the form's overhead.
pub const MAX_MULTIPART: u64 = MAX_CHART + MAX_PROV as u64 + 64 * 1024;
const CHART_TYPE: &str = "application/gzip";
const PROV_TYPE: &str = "application/pgp-signature";

fn body_stream(req: Request<Body>) -> ByteStream {
    Box::pin(
        req.into_body()
            .into_data_stream()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e.to_string())),
    )
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn too_large() -> HelmError {
    HelmError::new(
        413,
        format!("the multipart upload exceeds {MAX_MULTIPART} bytes (a chart may have up to {MAX_CHART}, a provenance file up to {MAX_PROV})"),
    )
}

fn saved() -> Response {
    json(StatusCode::CREATED, serde_json::json!({ "saved": true }))
}

/// `PUT <name>-<version>.tgz`, or a raw `POST api/charts` (`file` None).
pub async fn put_chart(repo: &Repo, file: Option<&ChartFile>, req: Request<Body>) -> Result<Response, HelmError> {
    let target = repo.write_target()?;
    let info = target.put_blob(body_stream(req), None, Some(MAX_CHART)).await?;
    let meta = inspect(target, &info).await?;
    if let Some(file) = file.filter(|f| f.stem() != meta.stem()) {
        return Err(ChartError::PathMismatch { found: meta.stem(), wanted: file.stem().to_string() }.into());
    }
    save_chart(target, &meta, &info).await?;
    Ok(saved())
}

/// `PUT <name>-<version>.tgz.prov`.
pub async fn put_prov(repo: &Repo, file: &ChartFile, req: Request<Body>) -> Result<Response, HelmError> {
    let target = repo.write_target()?;
    let bytes = read_small(req).await?;
    let (name, version) = prov_of(&bytes)?;
    if file.stem() != format!("{name}-{version}") {
        let found = format!("{name}-{version}");
        return Err(ChartError::PathMismatch { found, wanted: file.stem().to_string() }.into());
    }
    save_prov(target, &name, &version, bytes).await?;
    Ok(saved())
}

/// `POST api/charts`: raw archive, or multipart with `chart` and optionally `prov`.
pub async fn upload(repo: &Repo, req: Request<Body>) -> Result<Response, HelmError> {
    if !is_multipart(&req) {
        return put_chart(repo, None, req).await;
    }
    let target = repo.write_target()?;
    let (chart, prov) = read_multipart(target, req).await?;
    let Some(info) = chart else {
        return Err(HelmError::bad_request("multipart upload without a \"chart\" field"));
    };
    let meta = inspect(target, &info).await?;
    let prov = match prov {
        Some(bytes) => {
            let (name, version) = prov_of(&bytes)?;
            if name.as_str() != meta.name || version != meta.version {
                let why = format!("the provenance file signs {name}-{version}, the chart is {}", meta.stem());
                return Err(ChartError::InvalidProv(why).into());
            }
            Some((name, bytes))
        }
        None => None,
    };
    save_chart(target, &meta, &info).await?;
    if let Some((name, bytes)) = prov {
        save_prov(target, &name, &meta.version, bytes).await?;
    }
    Ok(saved())
}

/// `POST api/prov`: raw provenance file or multipart field `prov`.
pub async fn upload_prov(repo: &Repo, req: Request<Body>) -> Result<Response, HelmError> {
    let target = repo.write_target()?;
    let bytes = match is_multipart(&req) {
        true => read_multipart(target, req).await?.1.ok_or_else(|| HelmError::bad_request("no \"prov\" field"))?,
        false => read_small(req).await?,
    };
    let (name, version) = prov_of(&bytes)?;
    save_prov(target, &name, &version, bytes).await?;
    Ok(saved())
}

/// `DELETE api/charts/<name>/<version>`: the chart and its provenance file.
pub async fn delete(repo: &Repo, name: &ChartName, version: &ChartVersionText) -> Result<Response, HelmError> {
    let target = repo.write_target()?;
    let _writes = target.lock_writes().await?;
    let removed = target.delete_entry(&paths::chart(name.as_str(), version.as_str())).await?;
    let removed_prov = target.delete_entry(&paths::prov(name.as_str(), version.as_str())).await?;
    if !removed && !removed_prov {
        if repo.is_virtual() {
            // The chart may come from another member (a remote, another hosted repository):
            // deletes only reach the deploy_to repository.
            return Err(HelmError::new(
                405,
                format!(
                    "chart {name} {version} is not in {}, the deploy_to repository of virtual repository {}; \
                     only charts uploaded there can be deleted through it",
                    target.name, repo.name
                ),
            ));
        }
        return Err(HelmError::not_found(format!("chart {name} {version} not found")));
    }
    views::changed(target, |view| view.without(name.as_str(), version.as_str())).await?;
    Ok(json(StatusCode::OK, serde_json::json!({ "deleted": true })))
}

fn is_multipart(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

async fn inspect(target: &Repo, info: &BlobInfo) -> Result<Metadata, HelmError> {
    let stream = target.blobs().open(&info.sha256, None).await?;
    Ok(read_metadata(stream).await?)
}

fn prov_of(bytes: &[u8]) -> Result<(ChartName, String), ChartError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ChartError::InvalidProv("not UTF-8 text".into()))?;
    prov_chart(text)
}

async fn read_small(req: Request<Body>) -> Result<Bytes, HelmError> {
    axum::body::to_bytes(req.into_body(), MAX_PROV).await.map_err(|e| {
        match std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            true => HelmError::new(413, format!("the provenance file exceeds {MAX_PROV} bytes")),
            false => HelmError::bad_request(format!("cannot read the provenance file: {e}")),
        }
    })
}

/// The `chart` field streamed into the blob store, the `prov` field in memory.
async fn read_multipart(target: &Repo, req: Request<Body>) -> Result<(Option<BlobInfo>, Option<Bytes>), HelmError> {
    let bad = |e: axum::extract::multipart::MultipartError| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        _ => HelmError::bad_request(format!("bad multipart body: {}", e.body_text())),
    };
    let bad_request = |e: axum::extract::multipart::MultipartRejection| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        _ => HelmError::bad_request(e.body_text()),
    };
    // axum's default limit (2 MiB) is far below a chart's: allow a maximal chart and
    // provenance file plus the form's own overhead, as a raw upload would.
    let service = ServiceBuilder::new().layer(DefaultBodyLimit::max(MAX_MULTIPART as usize)).service_fn(
        |req: Request<Body>| async move { Ok::<_, std::convert::Infallible>(Multipart::from_request(req, &()).await) },
    );
    let Ok(extracted) = service.oneshot(req).await;
    let mut multipart = extracted.map_err(bad_request)?;
    let (mut chart, mut prov) = (None, None);
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let seen = match field.name() {
            Some("chart") => chart.is_some(),
            Some("prov") => prov.is_some(),
            _ => false,
        };
        if seen {
            let name = field.name().unwrap_or_default();
            return Err(HelmError::bad_request(format!("the form has more than one {name:?} field")));
        }
        match field.name() {
            Some("chart") => {
                let mut writer = target.blobs().create(&uuid::Uuid::new_v4().to_string(), Algorithm::Sha256).await?;
                loop {
                    let chunk = match field.chunk().await {
                        Ok(Some(chunk)) if writer.written() + chunk.len() as u64 <= MAX_CHART => chunk,
                        Ok(Some(_)) => {
                            writer.abort().await;
                            return Err(HelmError::new(413, format!("the chart exceeds {MAX_CHART} bytes")));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            writer.abort().await;
                            return Err(bad(e));
                        }
                    };
                    writer.write(&chunk).await?;
                }
                chart = Some(writer.commit(None).await?);
            }
            Some("prov") => {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if bytes.len() + chunk.len() > MAX_PROV {
                        return Err(HelmError::new(413, format!("the provenance file exceeds {MAX_PROV} bytes")));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                prov = Some(Bytes::from(bytes));
            }
            _ => {}
        }
    }
    Ok((chart, prov))
}

/// Record a chart (409 if the version exists with other bytes, unless `allow_overwrite`).
async fn save_chart(target: &Repo, meta: &Metadata, info: &BlobInfo) -> Result<(), HelmError> {
    let path = paths::chart(&meta.name, &meta.version);
    let attrs = serde_json::to_value(meta).map_err(HelmError::internal)?;
    let entry = new_entry(path, info, CHART_TYPE, &meta.name, attrs);
    let _writes = target.lock_writes().await?;
    if !may_write(target, &entry, &meta.stem()).await? {
        return Ok(());
    }
    target.put_entry(&entry).await?;
    if let Some(version) = views::stored_version(&entry) {
        views::changed(target, |view| view.with(version)).await?;
    }
    Ok(())
}

async fn save_prov(target: &Repo, name: &ChartName, version: &str, bytes: Bytes) -> Result<(), HelmError> {
    let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
    let info = target.put_blob(body, None, None).await?;
    let path = paths::prov(name.as_str(), version);
    let entry = new_entry(path, &info, PROV_TYPE, name.as_str(), serde_json::json!({}));
    let _writes = target.lock_writes().await?;
    if may_write(target, &entry, &format!("{name}-{version}.tgz.prov")).await? {
        target.put_entry(&entry).await?;
    }
    Ok(())
}

/// False when the same bytes are already there (nothing to do); 409 for other bytes.
async fn may_write(target: &Repo, entry: &Entry, what: &str) -> Result<bool, HelmError> {
    match target.get_local(&entry.path).await? {
        Some(existing) if existing.blob == entry.blob => Ok(false),
        Some(_) if !target.allow_overwrite => Err(HelmError::conflict(format!(
            "{what} already exists with other content; repository {} does not allow overwrites",
            target.name
        ))),
        _ => Ok(true),
    }
}

fn new_entry(path: String, info: &BlobInfo, media_type: &str, package: &str, attrs: serde_json::Value) -> Entry {
    let now = unix_now();
    Entry {
        repo: String::new(),
        path,
        digest: info.sha256.to_string(),
        blob: info.sha256.hex().to_string(),
        size: info.size,
        media_type: Some(media_type.to_string()),
        package: Some(package.to_string()),
        refers_to: None,
        attrs,
        created_at: now,
        checked_at: now,
        etag: None,
    }
}
