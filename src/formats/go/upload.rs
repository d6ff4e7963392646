//! Upload endpoints: `PUT <module>/@v/<version>.{zip,mod,info}` and the multipart form
//! `POST /api/go/<repo>/upload` (fields `zip` required; `module`, `version`, `mod`, `info`
//! optional; module and version default to the zip's `<module>@<version>/` prefix).

use super::error::GoError;
use super::module::{ModulePath, Version};
use super::modzip::{self, MAX_GO_MOD, MAX_ZIP};
use super::paths;
use super::publish::{publish, read_small, spool, Release, MAX_INFO};
use super::route::FileKind;
use crate::repo::Repo;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use std::io::{Seek, SeekFrom};
use tower::{ServiceBuilder, ServiceExt};

fn aborted(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e.to_string())
}

pub async fn put(
    repo: &Repo,
    module: ModulePath,
    version: Version,
    file: FileKind,
    req: Request<Body>,
) -> Result<Response, GoError> {
    let target = repo.write_target()?;
    let body = req.into_body().into_data_stream().map_err(aborted);
    let mut release = Release { module, version, zip: None, go_mod: None, info: None };
    match file {
        FileKind::Zip => release.zip = Some(spool(body, MAX_ZIP).await?),
        FileKind::Mod => release.go_mod = Some(read_small(body, MAX_GO_MOD).await?),
        FileKind::Info => release.info = Some(read_small(body, MAX_INFO).await?),
    }
    done(target, release).await
}

async fn done(target: &Repo, release: Release) -> Result<Response, GoError> {
    let name = format!("{}@{}", release.module, release.version.as_str());
    let zip = paths::file(&release.module, release.version.as_str(), FileKind::Zip);
    let has_zip = release.zip.is_some();
    let created = publish(target, release).await?;
    // Only a zip makes a version listed; a lone .mod or .info waits for it.
    let listed = has_zip || target.get_local(&zip).await?.is_some();
    let message = match (created, listed) {
        (true, true) => format!("published {name}"),
        (false, true) => format!("already published {name}"),
        (true, false) => format!("stored for {name}; the version is listed once its .zip is uploaded"),
        (false, false) => format!("already stored for {name}; the version is listed once its .zip is uploaded"),
    };
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response())
}

/// The multipart form, with a body limit that fits a maximal module zip.
pub async fn upload(repo: &Repo, req: Request<Body>) -> Result<Response, GoError> {
    let target = repo.write_target()?;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    if !multipart {
        return Err(GoError::BadRequest(
            "expected a multipart/form-data form with a zip field (and optional module, version, mod, info)".into(),
        ));
    }
    let service = ServiceBuilder::new().layer(DefaultBodyLimit::max((MAX_ZIP + 2 * MAX_GO_MOD) as usize)).service_fn(
        |req: Request<Body>| async move { Ok::<_, std::convert::Infallible>(Multipart::from_request(req, &()).await) },
    );
    let Ok(extracted) = service.oneshot(req).await;
    let mut form = extracted.map_err(|e| GoError::BadRequest(e.body_text()))?;
    let (mut module, mut version, mut zip, mut go_mod, mut info) = (None, None, None, None, None);
    while let Some(field) = form.next_field().await.map_err(|e| GoError::BadRequest(e.body_text()))? {
        let name = field.name().unwrap_or("").to_string();
        let body = field.map_err(aborted);
        let seen = match name.as_str() {
            "module" => module.is_some(),
            "version" => version.is_some(),
            "zip" => zip.is_some(),
            "mod" => go_mod.is_some(),
            "info" => info.is_some(),
            _ => false,
        };
        if seen {
            return Err(GoError::BadRequest(format!("the form has more than one {name:?} field")));
        }
        match name.as_str() {
            "module" => module = Some(text(read_small(body, 1024).await?)?),
            "version" => version = Some(text(read_small(body, 1024).await?)?),
            "zip" => zip = Some(spool(body, MAX_ZIP).await?),
            "mod" => go_mod = Some(read_small(body, MAX_GO_MOD).await?),
            "info" => info = Some(read_small(body, MAX_INFO).await?),
            other => {
                return Err(GoError::BadRequest(format!(
                    "unknown form field {other:?} (zip, module, version, mod, info)"
                )))
            }
        }
    }
    let Some(mut zip) = zip else { return Err(GoError::BadRequest("the form has no zip field".into())) };
    if module.is_none() || version.is_none() {
        let (m, v, file) = named_by_zip(zip).await?;
        (module, version, zip) = (module.or(Some(m)), version.or(Some(v)), file);
    }
    let (module, version) = (module.unwrap_or_default(), version.unwrap_or_default());
    let module = ModulePath::new(&module).map_err(|e| GoError::BadRequest(e.to_string()))?;
    let version = Version::parse(&version)
        .ok_or_else(|| GoError::BadRequest(format!("{version:?} is not a canonical semantic version")))?;
    done(target, Release { module, version, zip: Some(zip), go_mod, info }).await
}

fn text(bytes: bytes::Bytes) -> Result<String, GoError> {
    String::from_utf8(bytes.to_vec())
        .map(|s| s.trim().to_string())
        .map_err(|_| GoError::BadRequest("form field is not UTF-8".into()))
}

async fn named_by_zip(mut zip: std::fs::File) -> Result<(String, String, std::fs::File), GoError> {
    let io = |e: std::io::Error| GoError::Repo(crate::repo::RepoError::Blob(crate::storage::BlobError::Io(e)));
    let (found, zip) = tokio::task::spawn_blocking(move || {
        zip.seek(SeekFrom::Start(0))?;
        let found = modzip::prefix_of(&mut zip);
        Ok::<_, std::io::Error>((found, zip))
    })
    .await
    .map_err(|e| io(e.into()))?
    .map_err(io)?;
    let (module, version) = found.ok_or_else(|| {
        GoError::BadRequest("no module and version fields, and the zip has no <module>@<version>/ prefix".into())
    })?;
    Ok((module, version, zip))
}
