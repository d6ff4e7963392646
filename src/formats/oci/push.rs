//! Push endpoints: uploads (monolithic, single-request, chunked, mount), manifest PUT with
//! validation of everything it references, and deletes. Writes go to the repository's write
//! target (itself, or a virtual repository's `deploy_to`); nothing is changed by a rejected
//! request.

use super::error::{ErrorCode, OciError};
use super::manifest::{self, MAX_MANIFEST};
use super::paths;
use super::pull::{manifest_entry, DIGEST_HEADER};
use super::route::Reference;
use crate::auth::authorize;
use crate::formats::Ctx;
use crate::model::{unix_now, Action, BlobInfo, Digest, Entry};
use crate::repo::Repo;
use crate::storage::blob::put_bytes;
use crate::storage::{BlobError, ByteStream, UploadSession};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use futures::TryStreamExt;

const UPLOAD_UUID: &str = "Docker-Upload-UUID";

/// The request body; a client that sends less than it announced surfaces as `ConnectionAborted`,
/// which the error mapping reports as the client's fault, not the disk's.
fn body_stream(req: Request<Body>) -> ByteStream {
    Box::pin(
        req.into_body()
            .into_data_stream()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e.to_string())),
    )
}

fn respond(builder: axum::http::response::Builder) -> Result<Response, OciError> {
    builder
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .map_err(|e| OciError::new(ErrorCode::Unknown, e.to_string()))
}

/// Make a stored blob visible in `target`.
async fn link_blob(target: &Repo, digest: &Digest, info: &BlobInfo) -> Result<(), OciError> {
    let now = unix_now();
    let entry = Entry {
        path: paths::blob(digest),
        digest: digest.to_string(),
        blob: info.sha256.hex().to_string(),
        size: info.size,
        created_at: now,
        checked_at: now,
        attrs: serde_json::json!({}),
        ..Default::default()
    };
    target.put_entry(&entry).await?;
    Ok(())
}

fn blob_created(ctx: &Ctx, name: &str, digest: &Digest) -> Result<Response, OciError> {
    respond(
        Response::builder()
            .status(StatusCode::CREATED)
            .header(header::LOCATION, ctx.location(&format!("/v2/{}{name}/blobs/{digest}", ctx.prefix)))
            .header(DIGEST_HEADER, digest.to_string()),
    )
}

fn upload_location(ctx: &Ctx, name: &str, id: &str) -> String {
    ctx.location(&format!("/v2/{}{name}/blobs/uploads/{id}", ctx.prefix))
}

/// `Range: 0-<last byte>`; an empty upload reports `0-0` as the reference registry does.
fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

pub async fn start_upload(
    repo: &Repo,
    ctx: &Ctx,
    name: &str,
    digest: Option<Digest>,
    mount: Option<Digest>,
    from: Option<String>,
    req: Request<Body>,
) -> Result<Response, OciError> {
    let target = repo.write_target()?;
    if let Some(mount) = mount {
        if try_mount(target, ctx, &mount, from.as_deref()).await? {
            return blob_created(ctx, name, &mount);
        }
    }
    if let Some(digest) = digest {
        let info = target.put_blob(body_stream(req), Some(&digest), None).await?;
        link_blob(target, &digest, &info).await?;
        return blob_created(ctx, name, &digest);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let session = UploadSession {
        id: id.clone(),
        repo: target.name.to_string(),
        package: name.to_string(),
        created_at: unix_now(),
    };
    target.meta().create_upload(&session).await.map_err(crate::repo::RepoError::from)?;
    respond(
        Response::builder()
            .status(StatusCode::ACCEPTED)
            .header(header::LOCATION, upload_location(ctx, name, &id))
            .header(header::RANGE, "0-0")
            .header(UPLOAD_UUID, &id),
    )
}

/// Link `digest` into `target` from `from` (or find it there already). False: start an upload.
async fn try_mount(target: &Repo, ctx: &Ctx, digest: &Digest, from: Option<&str>) -> Result<bool, OciError> {
    let path = paths::blob(digest);
    if target.get_local(&path).await?.is_some() {
        return Ok(true);
    }
    let Some(from) = from else { return Ok(false) };
    // With path addressing the source name starts with its repository key.
    let source = if ctx.prefix.is_empty() {
        Some(target)
    } else {
        from.split_once('/').and_then(|(key, _)| ctx.repos.get(key)).map(|r| r.as_ref())
    };
    let Some(source) = source else { return Ok(false) };
    if authorize(&ctx.principal, &source.name, Action::Read).is_err() {
        return Ok(false);
    }
    for member in source.readable() {
        if let Some(entry) = member.get_local(&path).await? {
            target.put_entry(&Entry { checked_at: unix_now(), ..entry }).await?;
            return Ok(true);
        }
    }
    Ok(false)
}

async fn session(target: &Repo, name: &str, id: &str) -> Result<UploadSession, OciError> {
    let unknown = || OciError::new(ErrorCode::BlobUploadUnknown, format!("upload {id} is unknown"));
    let session = target.meta().get_upload(id).await.map_err(crate::repo::RepoError::from)?.ok_or_else(unknown)?;
    if session.repo != target.name.as_str() || session.package != name {
        return Err(unknown());
    }
    Ok(session)
}

pub async fn upload_status(repo: &Repo, ctx: &Ctx, name: &str, id: &str) -> Result<Response, OciError> {
    let target = repo.write_target()?;
    session(target, name, id).await?;
    let size = target.blobs().upload_size(id).await?;
    respond(
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::LOCATION, upload_location(ctx, name, id))
            .header(header::RANGE, range_header(size))
            .header(UPLOAD_UUID, id),
    )
}

/// `Content-Range: <start>-<end>` (also accepts the `bytes ` prefix some clients send).
fn content_range(raw: &str) -> Option<(u64, u64)> {
    let raw = raw.trim().trim_start_matches("bytes").trim();
    let (start, end) = raw.split_once('-')?;
    let end = end.split('/').next()?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start <= end).then_some((start, end))
}

pub async fn patch_upload(
    repo: &Repo,
    ctx: &Ctx,
    name: &str,
    id: &str,
    req: Request<Body>,
) -> Result<Response, OciError> {
    let target = repo.write_target()?;
    let _claim = target.claim_upload(id)?;
    session(target, name, id).await?;
    let current = target.blobs().upload_size(id).await?;
    let out_of_range = || {
        OciError::new(ErrorCode::RangeInvalid, format!("chunk must start at byte {current} and match its length"))
            .with_header(header::LOCATION, upload_location(ctx, name, id))
            .with_header(header::RANGE, range_header(current))
            .with_header(header::HeaderName::from_static("docker-upload-uuid"), id.to_string())
    };
    let mut length = None;
    if let Some(raw) = req.headers().get(header::CONTENT_RANGE) {
        let (start, end) = raw.to_str().ok().and_then(content_range).ok_or_else(out_of_range)?;
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if start != current || declared.is_some_and(|l| l != end - start + 1) {
            return Err(out_of_range());
        }
        length = Some(end - start + 1);
    }
    let size = match target.blobs().append_upload(id, current, body_stream(req), length).await {
        Err(BlobError::OffsetMismatch { .. }) => return Err(out_of_range()),
        other => other?,
    };
    respond(
        Response::builder()
            .status(StatusCode::ACCEPTED)
            .header(header::LOCATION, upload_location(ctx, name, id))
            .header(header::RANGE, range_header(size))
            .header(UPLOAD_UUID, id),
    )
}

pub async fn finish_upload(
    repo: &Repo,
    ctx: &Ctx,
    name: &str,
    id: &str,
    digest: &Digest,
    req: Request<Body>,
) -> Result<Response, OciError> {
    let target = repo.write_target()?;
    let _claim = target.claim_upload(id)?;
    session(target, name, id).await?;
    let current = target.blobs().upload_size(id).await?;
    let info = match target.blobs().finish_upload(id, current, body_stream(req), Some(digest)).await {
        Ok(info) => info,
        Err(e @ BlobError::DigestMismatch { .. }) => {
            cancel(target, id).await?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    link_blob(target, digest, &info).await?;
    target.meta().delete_upload(id).await.map_err(crate::repo::RepoError::from)?;
    blob_created(ctx, name, digest)
}

async fn cancel(target: &Repo, id: &str) -> Result<(), OciError> {
    target.blobs().abort_upload(id).await?;
    target.meta().delete_upload(id).await.map_err(crate::repo::RepoError::from)?;
    Ok(())
}

pub async fn cancel_upload(repo: &Repo, name: &str, id: &str) -> Result<Response, OciError> {
    let target = repo.write_target()?;
    let _claim = target.claim_upload(id)?;
    session(target, name, id).await?;
    cancel(target, id).await?;
    respond(Response::builder().status(StatusCode::NO_CONTENT))
}

async fn read_manifest_body(req: Request<Body>) -> Result<bytes::Bytes, OciError> {
    let too_big = || {
        OciError::new(ErrorCode::SizeInvalid, format!("manifests are limited to {MAX_MANIFEST} bytes")).with_status(413)
    };
    let limited = http_body_util::Limited::new(req.into_body(), MAX_MANIFEST as usize);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_big()),
        Err(e) => Err(OciError::new(ErrorCode::ManifestInvalid, format!("could not read the manifest: {e}"))),
    }
}

pub async fn put_manifest(
    repo: &Repo,
    ctx: &Ctx,
    name: &str,
    reference: &Reference,
    req: Request<Body>,
) -> Result<Response, OciError> {
    let target = repo.write_target()?;
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = read_manifest_body(req).await?;
    let parsed = manifest::parse(&body, content_type.as_deref())?;
    let digest = match reference {
        Reference::Digest(d) => {
            let actual = Digest::of(d.algorithm(), &body);
            if &actual != d {
                return Err(OciError::new(ErrorCode::DigestInvalid, format!("manifest hashes to {actual}, not {d}")));
            }
            d.clone()
        }
        Reference::Tag(_) => Digest::sha256_of(&body),
    };
    // Under the write lock, a concurrent blob delete cannot remove a blob between the check
    // and the manifest becoming visible.
    let _writes = target.lock_writes().await?;
    check_references(repo, target, name, &parsed).await?;
    let info = put_bytes(target.blobs(), body.clone(), Some(&digest)).await?;
    let now = unix_now();
    let entry = manifest_entry(name, &digest, info.sha256.hex().to_string(), info.size, &parsed, now);
    target.put_entry(&entry).await?;
    if let Reference::Tag(tag) = reference {
        target.put_entry(&Entry { path: paths::tag(name, tag), refers_to: None, ..entry }).await?;
    }
    let mut response = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, ctx.location(&format!("/v2/{}{name}/manifests/{digest}", ctx.prefix)))
        .header(DIGEST_HEADER, digest.to_string());
    if let Some(subject) = &parsed.subject {
        response = response.header("OCI-Subject", subject.to_string());
    }
    respond(response)
}

/// Every blob and child manifest a manifest names must already be in the repository. Pushed
/// through a virtual repository, what the client could read through it (say a base layer cached
/// by a remote member, which is why the client skipped uploading it) is linked into the target.
async fn check_references(repo: &Repo, target: &Repo, name: &str, parsed: &manifest::Manifest) -> Result<(), OciError> {
    let wanted = parsed
        .blobs
        .iter()
        .map(|(d, size)| (paths::blob(d), d, *size, "blob"))
        .chain(parsed.children.iter().map(|(d, size)| (paths::manifest(name, d), d, *size, "manifest")));
    for (path, digest, size, what) in wanted {
        let entry = match target.get_local(&path).await? {
            Some(entry) => Some(entry),
            None => link_from_members(repo, target, &path).await?,
        };
        let Some(entry) = entry else {
            return Err(OciError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("{what} {digest} is not in this repository"),
            )
            .with_detail(serde_json::json!({ "digest": digest.to_string() })));
        };
        if entry.size != size {
            return Err(OciError::new(
                ErrorCode::ManifestInvalid,
                format!("descriptor of {what} {digest} says {size} bytes, the {what} has {}", entry.size),
            ));
        }
    }
    Ok(())
}

async fn link_from_members(repo: &Repo, target: &Repo, path: &str) -> Result<Option<Entry>, OciError> {
    if !repo.is_virtual() {
        return Ok(None);
    }
    for member in repo.readable().into_iter().filter(|m| m.name != target.name) {
        if let Some(entry) = member.get_local(path).await? {
            let linked = Entry { checked_at: unix_now(), ..entry };
            target.put_entry(&linked).await?;
            return Ok(Some(linked));
        }
    }
    Ok(None)
}

pub async fn delete_manifest(repo: &Repo, name: &str, reference: &Reference) -> Result<Response, OciError> {
    let target = repo.write_target()?;
    let unknown = || OciError::new(ErrorCode::ManifestUnknown, format!("manifest {name}:{reference} is unknown"));
    match reference {
        Reference::Tag(tag) => {
            if !target.delete_entry(&paths::tag(name, tag)).await? {
                return Err(unknown());
            }
        }
        Reference::Digest(digest) => {
            let _writes = target.lock_writes().await?;
            let uses = |m: &manifest::Manifest| m.children.iter().any(|(d, _)| d == digest);
            if let Some(index) = manifest_using(target, &paths::manifests(name), uses).await? {
                return Err(OciError::new(
                    ErrorCode::Unsupported,
                    format!("manifest {digest} is a child of index {index}; delete that index first"),
                ));
            }
            if !target.delete_entry(&paths::manifest(name, digest)).await? {
                return Err(unknown());
            }
            let digest = digest.to_string();
            let mut after: Option<String> = None;
            loop {
                let page = target.list(&paths::tags(name), after.as_deref(), 500).await?;
                for tag in page.iter().filter(|e| e.digest == digest) {
                    target.delete_entry(&tag.path).await?;
                }
                match page.last() {
                    Some(last) if page.len() == 500 => after = Some(last.path.clone()),
                    _ => break,
                }
            }
        }
    }
    respond(Response::builder().status(StatusCode::ACCEPTED))
}

/// Blob links are shared by every image name in a repository, so a blob that any manifest of
/// the repository still references is not deleted (that would break the image); an unreferenced
/// link is removed. The bytes themselves are left to garbage collection.
pub async fn delete_blob(repo: &Repo, digest: &Digest) -> Result<Response, OciError> {
    let target = repo.write_target()?;
    let _writes = target.lock_writes().await?;
    if target.get_local(&paths::blob(digest)).await?.is_none() {
        return Err(OciError::new(ErrorCode::BlobUnknown, format!("blob {digest} is unknown to this repository")));
    }
    let uses = |m: &manifest::Manifest| m.blobs.iter().any(|(d, _)| d == digest);
    if let Some(user) = manifest_using(target, "", uses).await? {
        return Err(OciError::new(
            ErrorCode::Unsupported,
            format!("blob {digest} is used by manifest {user}; delete that manifest first"),
        ));
    }
    target.delete_entry(&paths::blob(digest)).await?;
    respond(Response::builder().status(StatusCode::ACCEPTED))
}

/// The first manifest under `prefix` in `target` for which `uses` holds, as `name@digest` (a
/// scan: deletes are rare).
async fn manifest_using(
    target: &Repo,
    prefix: &str,
    uses: impl Fn(&manifest::Manifest) -> bool,
) -> Result<Option<String>, OciError> {
    let mut after: Option<String> = None;
    loop {
        let page = target.list(prefix, after.as_deref(), 500).await?;
        for entry in page.iter().filter(|e| e.path.contains("/_manifests/")) {
            let bytes = target.read_entry(entry, MAX_MANIFEST).await?;
            let Ok(parsed) = manifest::parse(&bytes, entry.media_type.as_deref()) else { continue };
            if uses(&parsed) {
                return Ok(Some(entry.path.replace("/_manifests/", "@")));
            }
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.path.clone()),
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("0-99"), Some((0, 99)));
        assert_eq!(content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(content_range("5-2"), None);
        assert_eq!(content_range("x"), None);
        assert_eq!(range_header(0), "0-0");
        assert_eq!(range_header(10), "0-9");
    }
}
