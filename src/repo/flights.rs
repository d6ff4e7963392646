//! Coalescing with streaming fan-out: at most one upstream fetch per (repository, path) at a
//! time. The fetch runs on its own task (a client hanging up cannot cancel it for the others),
//! writes into a temporary blob, and every reader tails that blob while it grows, from the
//! first byte. Nothing is published unless the body is complete, matches its digest and
//! passes the format's blob check (`UpstreamRequest::validate_blob`, run on a local copy off
//! the async runtime); if it does not, every reader's stream ends with an error, never a
//! silently short body.

use super::remote::BlobValidator;
use super::upstream::Upstream;
use super::{RepoError, UpstreamRequest};
use crate::model::{Algorithm, Digest, Entry};
use crate::storage::{BlobError, BlobStore, BlobWriter, ByteStream, MetaStore};
use futures::StreamExt;
use std::collections::HashMap;
use std::io::Seek;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub enum Progress {
    Connecting,
    Running {
        written: u64,
        total: Option<u64>,
        media_type: Option<String>,
    },
    Done(Entry),
    NotFound,
    /// The upstream answered with this status.
    Refused(u16, String),
    Failed(String),
}

#[derive(Default)]
pub struct Flights {
    /// Running fetches, by "repo \n path".
    running: Mutex<HashMap<String, Running>>,
}

/// A running fetch: its progress, the upload id its bytes are written under, and the stores.
#[derive(Clone)]
struct Running {
    rx: watch::Receiver<Progress>,
    upload_id: String,
    blobs: Arc<dyn BlobStore>,
    tail: Arc<dyn BlobStore>,
}

impl Running {
    fn reader(&self, collapsed: bool) -> FlightReader {
        FlightReader {
            rx: self.rx.clone(),
            upload_id: self.upload_id.clone(),
            blobs: self.blobs.clone(),
            tail: self.tail.clone(),
            collapsed,
        }
    }
}

/// Everything a fetch task needs, owned so the task outlives the request that started it.
pub struct FetchJob {
    pub upstream: Arc<Upstream>,
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn MetaStore>,
    pub repo: String,
    pub path: String,
    pub request: UpstreamRequest,
    pub timeout: Duration,
    /// Set on a node of a cluster: the fetch is elected cluster-wide (see `repo/cluster.rs`).
    pub cluster: Option<Arc<super::cluster::ClusterCtx>>,
    /// Local scratch store readers tail while bytes arrive, when the blob store cannot show a
    /// growing upload byte by byte (S3 shows whole parts); None: tail the blob store itself.
    pub spool: Option<Arc<dyn BlobStore>>,
}

pub struct FlightReader {
    rx: watch::Receiver<Progress>,
    upload_id: String,
    /// Where the published blob is read once the fetch is done.
    blobs: Arc<dyn BlobStore>,
    /// Where the growing bytes are read while the fetch runs (the node's spool in a cluster).
    tail: Arc<dyn BlobStore>,
    /// Whether this reader joined a fetch that another request started.
    pub collapsed: bool,
}

impl Flights {
    /// Join the running fetch for `job.path` or start one.
    pub fn join_or_start(self: &Arc<Self>, job: FetchJob) -> FlightReader {
        let key = format!("{}\n{}", job.repo, job.path);
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = running.get(&key) {
            return flight.reader(true);
        }
        let upload_id = flight_upload_id(&key);
        let (tx, rx) = watch::channel(Progress::Connecting);
        let tail = job.spool.clone().unwrap_or_else(|| job.blobs.clone());
        let flight = Running { rx, upload_id: upload_id.clone(), blobs: job.blobs.clone(), tail };
        running.insert(key.clone(), flight.clone());
        let flights = self.clone();
        let id = upload_id;
        tokio::spawn(async move {
            let timeout = job.timeout;
            let fetch = async {
                match (&job.cluster, &job.spool) {
                    (Some(cluster), _) => super::cluster::run(&job, cluster, &id, &tx).await,
                    (None, Some(spool)) => spooled(&job, spool.as_ref(), &id, &tx).await,
                    (None, None) => run(&job, &id, &tx, None).await,
                }
            };
            let outcome = match tokio::time::timeout(timeout, fetch).await {
                Ok(Ok(entry)) => Progress::Done(entry),
                Ok(Err(RepoError::NotFound)) => Progress::NotFound,
                Ok(Err(RepoError::Upstream { status, message })) => Progress::Refused(status, message),
                Ok(Err(e)) => Progress::Failed(e.to_string()),
                Err(_) => Progress::Failed(format!("upstream fetch exceeded {timeout:?}")),
            };
            if !matches!(outcome, Progress::Done(_)) {
                let _ = job.blobs.abort_upload(&id).await;
                if let Some(spool) = &job.spool {
                    let _ = spool.abort_upload(&id).await;
                }
                if let Progress::Failed(why) = &outcome {
                    tracing::warn!(repo = %job.repo, path = %job.path, "upstream fetch failed: {why}");
                }
            }
            tx.send_replace(outcome);
            flights.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        });
        flight.reader(false)
    }

    /// Join the fetch of (repo, path) if one is running in this process (for other nodes).
    pub fn join_running(&self, repo: &str, path: &str) -> Option<FlightReader> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(&format!("{repo}\n{path}")).map(|f| f.reader(true))
    }
}

/// Upload ids must be safe file names; the key is hashed so readers find the fetch's temp blob.
fn flight_upload_id(key: &str) -> String {
    format!("fetch-{}-{}", &Digest::sha256_of(key.as_bytes()).hex()[..32], uuid::Uuid::new_v4().simple())
}

/// Fetch into the blob store with a copy in `spool` for readers to tail; the copy goes after.
async fn spooled(
    job: &FetchJob,
    spool: &dyn BlobStore,
    id: &str,
    tx: &watch::Sender<Progress>,
) -> Result<Entry, RepoError> {
    let mut writer = spool.create(id, Algorithm::Sha256).await?;
    let outcome = run(job, id, tx, Some(Tail { writer: writer.as_mut(), skip: 0 })).await;
    writer.abort().await;
    outcome
}

/// A second writer that readers tail (a cluster node's local spool), which already holds the
/// first `skip` bytes of the body from an earlier attempt.
pub struct Tail<'a> {
    pub writer: &'a mut dyn BlobWriter,
    pub skip: u64,
}

impl Tail<'_> {
    /// Write the part of `bytes` (at body offset `at`) that the tail does not have yet.
    async fn write(&mut self, at: u64, bytes: &[u8]) -> Result<(), BlobError> {
        let end = at + bytes.len() as u64;
        if end > self.skip {
            let from = usize::try_from(self.skip.saturating_sub(at)).unwrap_or(usize::MAX).min(bytes.len());
            self.writer.write(&bytes[from..]).await?;
            self.skip = end;
        }
        Ok(())
    }
}

/// Fetch from the upstream into the blob store (and `tail`), verify, publish, record the entry.
pub async fn run(
    job: &FetchJob,
    upload_id: &str,
    tx: &watch::Sender<Progress>,
    mut tail: Option<Tail<'_>>,
) -> Result<Entry, RepoError> {
    let request = &job.request;
    // `fetch_timeout` bounds the whole body; an upstream that accepts the connection but never
    // answers must not hold clients (or a virtual repository's later members) for that long.
    let headers_within = job.upstream.metadata_timeout();
    let Ok(response) = tokio::time::timeout(headers_within, job.upstream.get(request)).await else {
        job.upstream.went_silent();
        return Err(RepoError::Unreachable(format!("upstream sent no response within {headers_within:?}")));
    };
    let response = response?;
    let total = response.content_length();
    let media_type =
        response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
    let algorithm = request.expected.as_ref().map_or(Algorithm::Sha256, Digest::algorithm);
    let mut writer = job.blobs.create(upload_id, algorithm).await?;
    // A format's blob check reads a local copy (the blob store's temporary object need not be a file).
    let mut copy = match &request.validate_blob {
        Some(_) => match tokio::task::spawn_blocking(tempfile::tempfile).await {
            Ok(Ok(file)) => Some(tokio::fs::File::from_std(file)),
            Ok(Err(e)) => return abort(writer, RepoError::Blob(BlobError::Io(e))).await,
            Err(e) => return abort(writer, RepoError::Blob(BlobError::Io(e.into()))).await,
        },
        None => None,
    };
    let written = tail.as_ref().map_or(0, |t| t.writer.readable());
    tx.send_replace(Progress::Running { written, total, media_type: media_type.clone() });
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let at = writer.written();
        let step = match chunk {
            Ok(bytes) => match writer.write(&bytes).await {
                Ok(()) => {
                    let tailed = match tail.as_mut() {
                        Some(t) => t.write(at, &bytes).await,
                        None => Ok(()),
                    };
                    match (tailed, &mut copy) {
                        (Ok(()), Some(copy)) => copy.write_all(&bytes).await.map_err(BlobError::Io),
                        (tailed, _) => tailed,
                    }
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(BlobError::Io(std::io::Error::other(e.to_string()))),
        };
        if let Err(e) = step {
            writer.abort().await;
            return Err(RepoError::Unreachable(format!("upstream body failed: {e}")));
        }
        let written = tail.as_ref().map_or_else(|| writer.readable(), |t| t.writer.readable());
        tx.send_modify(|p| {
            if let Progress::Running { written: w, .. } = p {
                *w = written;
            }
        });
    }
    if let Some(total) = total.filter(|t| *t != writer.written()) {
        let got = writer.written();
        writer.abort().await;
        return Err(RepoError::Corrupt(format!("upstream body ended at {got} of {total} bytes")));
    }
    if let (Some(validate), Some(copy)) = (&request.validate_blob, copy) {
        if let Err(e) = validate_copy(validate.clone(), copy).await {
            let e = match e {
                Verdict::Invalid(why) => {
                    RepoError::Corrupt(format!("upstream sent an invalid blob for {}: {why}", request.path))
                }
                Verdict::Failed(e) => RepoError::Blob(BlobError::Io(e)),
            };
            return abort(writer, e).await;
        }
    }
    let info = writer.commit(request.expected.as_ref()).await.map_err(|e| match e {
        BlobError::DigestMismatch { .. } => RepoError::Corrupt(e.to_string()),
        other => RepoError::Blob(other),
    })?;
    let digest = request.expected.clone().unwrap_or_else(|| info.sha256.clone());
    let entry = super::refresh::cached_entry(&job.repo, &job.path, &digest, &info, media_type, request, etag);
    job.meta.put_entry(&entry).await?;
    Ok(entry)
}

async fn abort<T>(writer: Box<dyn BlobWriter>, e: RepoError) -> Result<T, RepoError> {
    writer.abort().await;
    Err(e)
}

enum Verdict {
    Invalid(String),
    Failed(std::io::Error),
}

/// Run a format's blob check on the complete local copy, off the async runtime.
async fn validate_copy(validate: BlobValidator, mut copy: tokio::fs::File) -> Result<(), Verdict> {
    copy.flush().await.map_err(Verdict::Failed)?;
    let mut file = copy.into_std().await;
    let verdict = tokio::task::spawn_blocking(move || {
        file.seek(std::io::SeekFrom::Start(0)).map_err(Verdict::Failed)?;
        validate.check(&mut file).map_err(Verdict::Invalid)
    })
    .await;
    verdict.unwrap_or_else(|e| Err(Verdict::Failed(e.into())))
}

impl FlightReader {
    /// Wait until the upstream answered: the total size if known, or why there is nothing.
    pub async fn started(&mut self) -> Result<(Option<u64>, Option<String>), RepoError> {
        loop {
            match &*self.rx.borrow_and_update() {
                Progress::Connecting => {}
                // Without a length we cannot send Content-Length: wait for the whole blob instead.
                Progress::Running { total: None, .. } => {}
                Progress::Running { total, media_type, .. } => return Ok((*total, media_type.clone())),
                Progress::Done(entry) => return Ok((Some(entry.size), entry.media_type.clone())),
                Progress::NotFound => return Err(RepoError::NotFound),
                Progress::Refused(status, message) => {
                    return Err(RepoError::Upstream { status: *status, message: message.clone() })
                }
                Progress::Failed(why) => return Err(RepoError::Unreachable(why.clone())),
            }
            if self.rx.changed().await.is_err() {
                return Err(RepoError::Unreachable("fetch task ended".into()));
            }
        }
    }

    /// The bytes `[start, end]` (inclusive) of the fetched blob, tailing it while it grows.
    pub fn into_stream(self, range: Option<(u64, u64)>) -> ByteStream {
        let FlightReader { mut rx, upload_id, blobs, tail, .. } = self;
        let (mut pos, end) = match range {
            Some((start, end)) => (start, Some(end + 1)),
            None => (0, None),
        };
        Box::pin(async_stream::try_stream! {
            loop {
                let progress = rx.borrow_and_update().clone();
                let (available, done) = match &progress {
                    Progress::Connecting => (pos, None),
                    // Hold back the last byte until the digest is verified: a corrupt body then
                    // ends as an aborted response, never as a complete 200 with wrong bytes.
                    Progress::Running { written, total, .. } => (total.map_or(*written, |t| (*written).min(t.saturating_sub(1))), None),
                    Progress::Done(entry) => (entry.size, Some(entry.clone())),
                    Progress::NotFound => Err(std::io::Error::other("upstream has no such blob"))?,
                    Progress::Refused(_, why) | Progress::Failed(why) => Err(std::io::Error::other(why.clone()))?,
                };
                let stop = end.map_or(available, |e| e.min(available));
                if let Some(entry) = done {
                    if pos < stop {
                        let sha = Digest::from_sha256_hex(&entry.blob).map_err(std::io::Error::other)?;
                        let mut rest = blobs.open(&sha, Some((pos, stop - 1))).await.map_err(std::io::Error::other)?;
                        while let Some(chunk) = rest.next().await {
                            yield chunk?;
                        }
                    }
                    break;
                }
                if pos < stop {
                    match tail.open_upload(&upload_id, pos, stop).await {
                        Ok(mut part) => {
                            while let Some(chunk) = part.next().await {
                                let chunk = chunk?;
                                pos += chunk.len() as u64;
                                yield chunk;
                            }
                            continue;
                        }
                        // Published (renamed) between our look and our open: the next state is Done.
                        Err(BlobError::UploadNotFound) => {}
                        Err(e) => Err(std::io::Error::other(e))?,
                    }
                }
                if end.is_some_and(|e| pos >= e) {
                    break;
                }
                if rx.changed().await.is_err() {
                    Err(std::io::Error::other("fetch task ended"))?;
                }
            }
        })
    }
}

/// At most one task per key at a time for work whose result every waiter shares (document
/// refreshes). The task runs detached: waiters that hang up do not cancel it for the others.
pub struct Coalescer<T> {
    running: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer { running: Mutex::new(HashMap::new()) }
    }
}

impl<T: Clone + Send + Sync + 'static> Coalescer<T> {
    /// The shared result of the task for `key` (started with `start` unless one is running),
    /// and whether this caller joined a task another caller started; None if the task died.
    pub async fn run<F>(self: &Arc<Self>, key: String, start: impl FnOnce() -> F) -> Option<(T, bool)>
    where
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let (mut rx, collapsed) = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            match running.get(&key) {
                Some(rx) => (rx.clone(), true),
                None => {
                    let (tx, rx) = watch::channel(None);
                    running.insert(key.clone(), rx.clone());
                    let this = self.clone();
                    let task = start();
                    tokio::spawn(async move {
                        let result = task.await;
                        // Remove first: a caller arriving after this sees the stored result instead.
                        this.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                        tx.send_replace(Some(result));
                    });
                    (rx, false)
                }
            }
        };
        loop {
            if let Some(result) = rx.borrow_and_update().clone() {
                return Some((result, collapsed));
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }
}
