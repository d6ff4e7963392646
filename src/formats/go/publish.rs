//! Publishing a module version into a hosted repository: the zip is spooled to a temporary
//! file (never held in memory), checked by the module-zip rules, then streamed into the
//! single-instance store. `.mod` and `.info` are generated from the zip unless uploaded.
//! Versions are immutable: the same bytes again are accepted, different bytes are a 409
//! (unless the repository has `allow_overwrite`).

use super::download::content_type;
use super::error::GoError;
use super::module::{ModulePath, Version};
use super::modzip::{self, BadZip, MAX_GO_MOD, MAX_ZIP};
use super::paths;
use super::route::FileKind;
use crate::model::{unix_now, Entry};
use crate::repo::{Repo, RepoError};
use crate::storage::{BlobError, ByteStream};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::io::{Seek, SeekFrom};
use tokio::io::AsyncWriteExt;

/// `.info` documents are a few dozen bytes.
pub const MAX_INFO: u64 = 64 << 10;

/// One version to publish; `zip` is a spooled file.
pub struct Release {
    pub module: ModulePath,
    pub version: Version,
    pub zip: Option<std::fs::File>,
    pub go_mod: Option<Bytes>,
    pub info: Option<Bytes>,
}

fn io(e: std::io::Error) -> GoError {
    GoError::Repo(RepoError::Blob(BlobError::Io(e)))
}

/// Copy a request body to an anonymous temporary file, refusing more than `limit` bytes.
pub async fn spool<S>(body: S, limit: u64) -> Result<std::fs::File, GoError>
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>>,
{
    let mut body = std::pin::pin!(body);
    let file = tokio::task::spawn_blocking(tempfile::tempfile).await.map_err(|e| io(e.into()))?.map_err(io)?;
    let mut out = tokio::fs::File::from_std(file.try_clone().map_err(io)?);
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(io)?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(GoError::Repo(RepoError::Blob(BlobError::TooLarge(limit))));
        }
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok(file)
}

/// Read a small body whole, refusing more than `limit` bytes.
pub async fn read_small<S>(body: S, limit: u64) -> Result<Bytes, GoError>
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(io)?;
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(GoError::Repo(RepoError::Blob(BlobError::TooLarge(limit))));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// Check everything first, then store zip, .mod and .info; returns whether anything new was stored.
pub async fn publish(target: &Repo, release: Release) -> Result<bool, GoError> {
    let Release { module, version, zip, go_mod, info } = release;
    if !version.matches_major(module.major_suffix()) {
        return Err(GoError::BadRequest(major_mismatch(&module, &version)));
    }
    if let Some(text) = &go_mod {
        modzip::check_go_mod(text, &module, &version).map_err(bad_zip)?;
    }
    if let Some(info) = &info {
        check_info(info, &version)?;
    }
    // Check and store the zip's bytes before taking the lock: both are slow, neither is
    // visible until its entry is recorded below.
    let (zip_entry, zip_mod) = match zip {
        Some(file) => {
            let (file, checked) = check_zip(file, module.clone(), version.clone()).await?;
            (Some(store_zip(target, &module, &version, file).await?), checked)
        }
        None => (None, None),
    };
    let _guard = target.lock_writes().await?;
    let mut created = false;
    // Overwriting a zip (allow_overwrite) regenerates its documents; otherwise stored ones win.
    let mut replacing = false;
    if let Some(entry) = zip_entry {
        let old = target.get_local(&entry.path).await?;
        replacing = old.as_ref().is_some_and(|o| o.blob != entry.blob);
        if replacing && !target.allow_overwrite {
            return Err(conflict(&entry.path));
        }
        // The zip's go.mod must agree with a .mod uploaded with it or before it.
        let earlier_mod = if replacing { None } else { stored(target, &module, &version, FileKind::Mod).await? };
        if let (Some(inner), Some(outer)) = (&zip_mod, go_mod.clone().or(earlier_mod)) {
            if inner.as_slice() != outer.as_ref() {
                return Err(GoError::BadRequest("the .mod file differs from the go.mod in the zip".into()));
            }
        }
        if old.is_none() || replacing {
            target.put_entry(&entry).await?;
            created = true;
        }
    }
    let generated_mod = || Bytes::from(zip_mod.clone().unwrap_or_else(|| format!("module {module}\n").into_bytes()));
    let has_zip = target.get_local(&paths::file(&module, version.as_str(), FileKind::Zip)).await?.is_some();
    // Uploaded documents must match what is stored; generated ones do not replace it.
    let documents = [
        (FileKind::Mod, go_mod.map(|m| (m, false)).or_else(|| has_zip.then(|| (generated_mod(), !replacing)))),
        (FileKind::Info, info.map(|i| (i, false)).or_else(|| has_zip.then(|| (generated_info(&version), !replacing)))),
    ];
    for (kind, document) in documents {
        if let Some((bytes, keep_existing)) = document {
            created |= put_document(target, &module, &version, kind, bytes, keep_existing).await?;
        }
    }
    Ok(created)
}

fn major_mismatch(module: &ModulePath, version: &Version) -> String {
    match module.major_suffix() {
        "" if version.major() >= 2 => format!(
            "{} needs a module path ending in /v{} (or +incompatible for a module without go.mod)",
            version.as_str(),
            version.major()
        ),
        "" => format!("{} is +incompatible but its major version is below 2", version.as_str()),
        suffix => format!("{} does not match the major version suffix {suffix} of {module}", version.as_str()),
    }
}

fn bad_zip(e: BadZip) -> GoError {
    GoError::BadRequest(e.to_string())
}

async fn check_zip(
    mut file: std::fs::File,
    module: ModulePath,
    version: Version,
) -> Result<(std::fs::File, Option<Vec<u8>>), GoError> {
    let checked = tokio::task::spawn_blocking(move || {
        file.seek(SeekFrom::Start(0))?;
        let result = modzip::check(&mut file, &module, &version);
        file.seek(SeekFrom::Start(0))?;
        Ok::<_, std::io::Error>((file, result))
    })
    .await
    .map_err(|e| io(e.into()))?
    .map_err(io)?;
    let (file, result) = checked;
    Ok((file, result.map_err(bad_zip)?))
}

fn check_info(info: &[u8], version: &Version) -> Result<(), GoError> {
    let value: serde_json::Value =
        serde_json::from_slice(info).map_err(|e| GoError::BadRequest(format!(".info is not JSON: {e}")))?;
    super::download::check_info(&value, version.as_str()).map_err(|why| GoError::BadRequest(format!(".info {why}")))?;
    match value.get("Time") {
        Some(_) => Ok(()),
        None => Err(GoError::BadRequest(".info has no Time field (RFC 3339, e.g. 2019-01-02T15:04:05Z)".into())),
    }
}

/// `{"Version","Time"}`: a pseudo-version's commit time, else now.
fn generated_info(version: &Version) -> Bytes {
    let time = version.pseudo_time().unwrap_or_else(|| rfc3339(unix_now()));
    Bytes::from(serde_json::json!({ "Version": version.as_str(), "Time": time }).to_string())
}

async fn stored(
    target: &Repo,
    module: &ModulePath,
    version: &Version,
    kind: FileKind,
) -> Result<Option<Bytes>, GoError> {
    match target.get_local(&paths::file(module, version.as_str(), kind)).await? {
        Some(entry) => Ok(Some(target.read_entry(&entry, MAX_GO_MOD).await?)),
        None => Ok(None),
    }
}

/// Stream the checked zip into the blob store; returns the entry to record.
async fn store_zip(
    target: &Repo,
    module: &ModulePath,
    version: &Version,
    file: std::fs::File,
) -> Result<Entry, GoError> {
    let stream: ByteStream =
        Box::pin(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)).map_ok(Bytes::from));
    let info = target.put_blob(stream, None, Some(MAX_ZIP)).await?;
    Ok(entry(module, version, FileKind::Zip, info))
}

/// Store `.mod`/`.info`; with `keep_existing` an existing copy wins (generated documents).
async fn put_document(
    target: &Repo,
    module: &ModulePath,
    version: &Version,
    kind: FileKind,
    bytes: Bytes,
    keep_existing: bool,
) -> Result<bool, GoError> {
    let info = target.put_blob(Box::pin(futures::stream::once(async { Ok(bytes) })), None, None).await?;
    put_once(target, entry(module, version, kind, info), keep_existing).await
}

fn entry(module: &ModulePath, version: &Version, kind: FileKind, info: crate::model::BlobInfo) -> Entry {
    let now = unix_now();
    Entry {
        path: paths::file(module, version.as_str(), kind),
        digest: info.sha256.to_string(),
        blob: info.sha256.hex().to_string(),
        size: info.size,
        media_type: Some(content_type(kind).to_string()),
        package: Some(module.to_string()),
        attrs: serde_json::json!({ "version": version.as_str() }),
        created_at: now,
        checked_at: now,
        ..Default::default()
    }
}

fn conflict(path: &str) -> GoError {
    GoError::Conflict(format!("{path} is already published with different content"))
}

/// Record `entry` unless the path holds other bytes (409, or kept when `keep_existing`).
async fn put_once(target: &Repo, entry: Entry, keep_existing: bool) -> Result<bool, GoError> {
    match target.get_local(&entry.path).await? {
        Some(old) if old.blob == entry.blob => Ok(false),
        Some(_) if keep_existing => Ok(false),
        Some(_) if !target.allow_overwrite => Err(conflict(&entry.path)),
        _ => {
            target.put_entry(&entry).await?;
            Ok(true)
        }
    }
}

/// Unix seconds as RFC 3339 UTC (`2006-01-02T15:04:05Z`), days to civil date per H. Hinnant.
pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_546_441_445), "2019-01-02T15:04:05Z");
        assert_eq!(super::rfc3339(1_709_208_000), "2024-02-29T12:00:00Z");
    }
}
