//! More of the OCI distribution spec v1.1 at the HTTP level
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>), beyond
//! `api.rs`: chunked-upload details, sha512, cross-repository mount between two hosted
//! repositories, per-repository visibility over the single-instance store, referrers,
//! catalog pagination, deletes, manifest rules, pushes through virtual repositories and
//! a table of malformed requests. Every error is checked for its status, its headers
//! where the spec names them, and the JSON `errors[0].code`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha512};
use url::Url;

use crate::clients::Skopeo;
use crate::images::{images, layout_digest, sha256_digest};
use crate::oci::{
    noise, Fetched, OciClient, TestImage, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST,
};
use crate::server::{docker_repos, TestServer, NO_UPSTREAM};
use crate::upstream::DistributionRegistry;

const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const MAX_MANIFEST: usize = 4 * 1024 * 1024;

// ------------------------------------------------------------------ setup and helpers

/// The usual trio plus a second hosted repository `team-b` and a virtual repository
/// `nodeploy` (over both hosted ones) without `deploy_to`.
fn repos(upstream: &str) -> String {
    format!(
        r#"{}
[[repository]]
name = "team-b"
format = "docker"
kind = "hosted"

[[repository]]
name = "nodeploy"
format = "docker"
kind = "virtual"
members = ["docker-local", "team-b"]
"#,
        docker_repos(upstream)
    )
}

async fn setup() -> (TestServer, OciClient) {
    let srv = TestServer::start(&repos(NO_UPSTREAM)).await;
    let oci = OciClient::new(&srv.base_url());
    (srv, oci)
}

fn sha512_digest(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(bytes)))
}

fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, h)| h)
}

/// Every regular file under `data/blobs/sha256` (the single-instance store).
fn blob_files(srv: &TestServer) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&srv.data_dir().join("blobs/sha256"), &mut out);
    out.sort();
    out
}

/// How many files in the store are named after this sha256 digest.
fn copies(srv: &TestServer, sha256: &str) -> usize {
    let hex = hex_of(sha256);
    blob_files(srv).iter().filter(|p| p.file_name().and_then(|n| n.to_str()) == Some(hex)).count()
}

/// `POST /v2/<name>/blobs/uploads/` that must open a session; returns its URL.
async fn open_upload(oci: &OciClient, name: &str) -> Result<Url> {
    let r = oci.start_upload(name).await?;
    if r.status != StatusCode::ACCEPTED {
        bail!("POST upload {name}: {} {}", r.status, r.text());
    }
    oci.location(&r)
}

async fn patch(oci: &OciClient, url: &Url, range: Option<String>, body: &[u8]) -> Result<Fetched> {
    let mut req = oci
        .http()
        .patch(url.clone())
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, body.len())
        .body(body.to_vec());
    if let Some(range) = range {
        req = req.header(CONTENT_RANGE, range);
    }
    oci.send(req).await
}

/// `PUT <upload url>?digest=…` with an optional final chunk.
async fn close(oci: &OciClient, url: &Url, digest: &str, body: &[u8]) -> Result<Fetched> {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("digest", digest);
    oci.send(
        oci.http()
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, body.len())
            .body(body.to_vec()),
    )
    .await
}

/// `POST /v2/<name>/blobs/uploads/?<query>` with a body (single-request upload or mount).
async fn post_upload(oci: &OciClient, name: &str, query: &str, body: &[u8]) -> Result<Fetched> {
    let url = oci.url(&format!("/v2/{name}/blobs/uploads/?{query}"));
    oci.send(
        oci.http()
            .post(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, body.len())
            .body(body.to_vec()),
    )
    .await
}

/// The session id at the end of an upload URL.
fn upload_id(url: &Url) -> String {
    url.path().rsplit('/').next().unwrap_or_default().to_string()
}

fn error_message(r: &Fetched) -> String {
    r.json()["errors"][0]["message"].as_str().unwrap_or_default().to_string()
}

fn manifest_digests(r: &Fetched) -> Vec<String> {
    r.json()["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["digest"].as_str().map(str::to_string))
        .collect()
}

#[track_caller]
fn assert_header(r: &Fetched, name: &str, want: &str) {
    assert_eq!(r.header(name), Some(want), "header {name}; status {} body {}", r.status, r.text());
}

/// Pushes the blobs of `image` (not its manifest).
async fn push_blobs(oci: &OciClient, name: &str, image: &TestImage) -> Result<()> {
    oci.push_blob(name, &image.config).await?;
    for layer in &image.layers {
        oci.push_blob(name, layer).await?;
    }
    Ok(())
}

/// An OCI artifact manifest (empty config, one payload layer) with a subject.
struct Artifact {
    payload: Vec<u8>,
    manifest: Vec<u8>,
}

impl Artifact {
    fn new(subject: &str, subject_size: usize, artifact_type: &str, payload: &[u8], note: &str) -> Artifact {
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": { "mediaType": EMPTY_MEDIA_TYPE, "digest": sha256_digest(b"{}"), "size": 2 },
            "layers": [{ "mediaType": "application/octet-stream", "digest": sha256_digest(payload), "size": payload.len() }],
            "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size },
            "annotations": { "org.example.note": note },
        }))
        .expect("artifact JSON");
        Artifact { payload: payload.to_vec(), manifest }
    }

    fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    /// Pushes the empty config, the payload and the manifest (by digest).
    async fn push(&self, oci: &OciClient, name: &str) -> Result<Fetched> {
        oci.push_blob(name, b"{}").await?;
        oci.push_blob(name, &self.payload).await?;
        let r = oci.put_manifest(name, &self.digest(), OCI_MANIFEST, &self.manifest).await?;
        if r.status != StatusCode::CREATED {
            bail!("PUT artifact {name}@{}: {} {}", self.digest(), r.status, r.text());
        }
        Ok(r)
    }
}

// ------------------------------------------------------------------ a raw HTTP/1.1 client

/// Sends one request exactly as written (reqwest normalises `..` and friends away) over
/// a fresh connection with `Connection: close`, and reads the whole response.
async fn raw(addr: &str, method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Result<Fetched> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let framed = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding"));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !framed {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body).await;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buf))
        .await
        .map_err(|_| anyhow!("{method} {target}: no complete response within 60s"))??;
    parse_response(&buf, method == "HEAD").with_context(|| format!("{method} {target}"))
}

fn parse_response(buf: &[u8], head: bool) -> Result<Fetched> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow!("no header end in response"))?;
    let text = std::str::from_utf8(&buf[..end])?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.append(HeaderName::from_bytes(k.trim().as_bytes())?, HeaderValue::from_str(v.trim())?);
        }
    }
    let rest = &buf[end + 4..];
    let chunked = headers.get("transfer-encoding").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("chunked"));
    let body = if head {
        Vec::new()
    } else if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = headers.get("content-length").and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        rest.get(..len).ok_or_else(|| anyhow!("body shorter than Content-Length {len}"))?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Fetched { status: StatusCode::from_u16(code)?, headers, body: Bytes::from(body) })
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| anyhow!("bad chunk header"))?;
        let size_text = std::str::from_utf8(&rest[..eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).ok_or_else(|| anyhow!("truncated chunk"))?);
        rest = rest.get(size + 2..).ok_or_else(|| anyhow!("truncated chunk end"))?;
    }
}

// ------------------------------------------------------------------ chunked uploads

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_patch_then_put_with_final_chunk() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/streamed";
    let data = noise(300, 700_000);
    let digest = sha256_digest(&data);
    let (a, b) = data.split_at(500_000);

    let start = oci.start_upload(name).await?;
    assert_eq!(start.status, 202, "{}", start.text());
    let url = oci.location(&start)?;
    let id = upload_id(&url);
    assert_header(&start, "docker-upload-uuid", &id);
    assert!(url.path().starts_with(&format!("/v2/{name}/blobs/uploads/")), "Location {url}");

    // Streamed: chunked transfer encoding, no Content-Range, no Content-Length.
    let parts: Vec<std::io::Result<Bytes>> = a.chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(parts));
    let r = oci.send(oci.http().patch(url.clone()).header(CONTENT_TYPE, "application/octet-stream").body(body)).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_header(&r, "range", "0-499999");
    assert_header(&r, "docker-upload-uuid", &id);
    let url = oci.location(&r)?;

    // The final chunk travels with the closing PUT, with its Content-Range.
    let mut put_url = url.clone();
    put_url.query_pairs_mut().append_pair("digest", &digest);
    let done = oci
        .send(
            oci.http()
                .put(put_url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, format!("500000-{}", data.len() - 1))
                .header(CONTENT_LENGTH, b.len())
                .body(b.to_vec()),
        )
        .await?;
    assert_eq!(done.status, 201, "{}", done.text());
    assert_header(&done, "docker-content-digest", &digest);
    assert_eq!(oci.location(&done)?.path(), format!("/v2/{name}/blobs/{digest}"));
    let get = oci.get_blob(name, &digest).await?;
    assert_eq!(get.status, 200);
    assert!(get.body.as_ref() == data.as_slice(), "blob bytes differ");

    // A completed session is gone.
    oci.send(oci.http().get(url)).await?.assert_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_chunks_are_416_and_the_upload_continues() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/ordered";
    let data = noise(301, 300_000);
    let digest = sha256_digest(&data);
    let url = open_upload(&oci, name).await?;
    let id = upload_id(&url);

    let first = patch(&oci, &url, Some("0-99999".into()), &data[..100_000]).await?;
    assert_eq!(first.status, 202, "{}", first.text());
    assert_header(&first, "range", "0-99999");

    // A gap, an overlap and a repeat: each refused with 416 and the current Range.
    for (range, chunk) in
        [("200000-299999", &data[200_000..]), ("50000-149999", &data[50_000..150_000]), ("0-99999", &data[..100_000])]
    {
        let r = patch(&oci, &url, Some(range.into()), chunk).await?;
        r.assert_error(416, &["RANGE_INVALID", "BLOB_UPLOAD_INVALID"]);
        assert_header(&r, "range", "0-99999");
        assert!(r.header("location").is_some(), "416 must carry the upload Location: {:?}", r.headers);
        assert_header(&r, "docker-upload-uuid", &id);
    }

    // Nothing of the refused chunks was kept.
    let status = oci.send(oci.http().get(url.clone())).await?;
    assert_eq!(status.status, 204, "{}", status.text());
    assert_header(&status, "range", "0-99999");

    let second = patch(&oci, &url, Some("100000-199999".into()), &data[100_000..200_000]).await?;
    assert_eq!(second.status, 202, "{}", second.text());
    assert_header(&second, "range", "0-199999");
    let done = close(&oci, &oci.location(&second)?, &digest, &data[200_000..]).await?;
    assert_eq!(done.status, 201, "{}", done.text());
    assert_header(&done, "docker-content-digest", &digest);
    assert!(oci.get_blob(name, &digest).await?.body.as_ref() == data.as_slice(), "blob bytes differ");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_status_reports_range_and_uuid() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/status";
    let url = open_upload(&oci, name).await?;
    let id = upload_id(&url);

    let empty = oci.send(oci.http().get(url.clone())).await?;
    assert_eq!(empty.status, 204, "{}", empty.text());
    assert_header(&empty, "range", "0-0");
    assert_header(&empty, "docker-upload-uuid", &id);

    let r = patch(&oci, &url, None, &noise(302, 1234)).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let status = oci.send(oci.http().get(url.clone())).await?;
    assert_eq!(status.status, 204, "{}", status.text());
    assert!(status.body.is_empty());
    assert_header(&status, "range", "0-1233");
    assert_header(&status, "docker-upload-uuid", &id);
    assert_eq!(oci.location(&status)?.path(), url.path());

    // The session belongs to its repository and name.
    for other in ["docker-local/other", "team-b/status"] {
        oci.get(&format!("/v2/{other}/blobs/uploads/{id}")).await?.assert_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    }
    oci.get(&format!("/v2/{name}/blobs/uploads/{}", uuid_like(7))).await?.assert_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    Ok(())
}

/// A syntactically valid upload id that no session has.
fn uuid_like(n: u8) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_upload_is_unknown_afterwards() -> Result<()> {
    let (srv, oci) = setup().await;
    let name = "docker-local/cancelled";
    let data = noise(303, 50_000);
    let digest = sha256_digest(&data);
    let url = open_upload(&oci, name).await?;
    let id = upload_id(&url);
    assert_eq!(patch(&oci, &url, Some("0-24999".into()), &data[..25_000]).await?.status, 202);

    let del = oci.send(oci.http().delete(url.clone())).await?;
    assert_eq!(del.status, 204, "{}", del.text());
    assert!(!srv.data_dir().join("uploads").join(&id).exists(), "cancelled upload data was kept");

    oci.send(oci.http().get(url.clone())).await?.assert_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    patch(&oci, &url, Some("25000-49999".into()), &data[25_000..]).await?.assert_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    patch(&oci, &url, None, &data[25_000..]).await?.assert_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    close(&oci, &url, &digest, &data[25_000..]).await?.assert_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    oci.send(oci.http().delete(url.clone())).await?.assert_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    oci.get_blob(name, &digest).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    assert_eq!(copies(&srv, &digest), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_on_chunked_and_single_post_uploads() -> Result<()> {
    let (srv, oci) = setup().await;
    let name = "docker-local/wrongdigest";
    let before = blob_files(&srv).len();

    // Chunked, then closed with a digest of other bytes.
    let data = noise(304, 80_000);
    let actual = sha256_digest(&data);
    let claimed = sha256_digest(b"other bytes");
    let url = open_upload(&oci, name).await?;
    assert_eq!(patch(&oci, &url, Some("0-79999".into()), &data).await?.status, 202);
    close(&oci, &url, &claimed, &[]).await?.assert_error(400, &["DIGEST_INVALID"]);
    for d in [&claimed, &actual] {
        oci.get_blob(name, d).await?.assert_error(404, &["BLOB_UNKNOWN"]);
        assert_eq!(oci.head_blob(name, d).await?.status, 404);
    }

    // Single POST with a wrong digest, sha256 and sha512.
    let single = noise(305, 3000);
    for claimed in [sha256_digest(b"nope"), sha512_digest(b"nope")] {
        post_upload(&oci, name, &format!("digest={claimed}"), &single).await?.assert_error(400, &["DIGEST_INVALID"]);
        oci.get_blob(name, &claimed).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    }
    oci.get_blob(name, &sha256_digest(&single)).await?.assert_error(404, &["BLOB_UNKNOWN"]);

    // Monolithic PUT with a wrong sha512.
    let url = open_upload(&oci, name).await?;
    close(&oci, &url, &sha512_digest(b"nope"), &single).await?.assert_error(400, &["DIGEST_INVALID"]);

    assert_eq!(blob_files(&srv).len(), before, "rejected content reached the store: {:?}", blob_files(&srv));
    Ok(())
}

/// distribution-spec: a chunk "MUST" match its `Content-Range`; the reference registry
/// answers 416 when `Content-Length` is not `end - start + 1`. Accepting it leaves the
/// session at an offset the client does not expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_whose_content_range_disagrees_with_its_length_is_416() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/rangelen";
    let url = open_upload(&oci, name).await?;
    for range in ["0-9", "0-2"] {
        let r = patch(&oci, &url, Some(range.into()), b"12345").await?;
        r.assert_error(416, &["RANGE_INVALID", "BLOB_UPLOAD_INVALID"]);
        let status = oci.send(oci.http().get(url.clone())).await?;
        assert_eq!(status.status, 204);
        assert_header(&status, "range", "0-0");
    }
    let ok = patch(&oci, &url, Some("0-4".into()), b"12345").await?;
    assert_eq!(ok.status, 202, "{}", ok.text());
    assert_header(&ok, "range", "0-4");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_blob_uploads_and_reads() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/empty";
    let digest = sha256_digest(b"");
    let r = post_upload(&oci, name, &format!("digest={digest}"), b"").await?;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_header(&r, "docker-content-digest", &digest);
    let head = oci.head_blob(name, &digest).await?;
    assert_eq!(head.status, 200, "{}", head.text());
    assert_header(&head, "content-length", "0");
    let get = oci.get_blob(name, &digest).await?;
    assert_eq!(get.status, 200, "{}", get.text());
    assert!(get.body.is_empty());
    // Also through a session closed with an empty PUT.
    let url = open_upload(&oci, "docker-local/empty2").await?;
    let done = close(&oci, &url, &digest, b"").await?;
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(oci.get_blob("docker-local/empty2", &digest).await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_grammar_boundaries() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/tags";
    let image = TestImage::new(395, &[100]);
    push_blobs(&oci, name, &image).await?;
    let longest = format!("_{}", "x".repeat(127));
    let mut accepted = vec![longest.clone(), "V1.0_RC-1".to_string(), "0".to_string(), "a.b-c_d".to_string()];
    for tag in &accepted {
        let r = oci.put_manifest(name, tag, OCI_MANIFEST, &image.manifest).await?;
        assert_eq!(r.status, 201, "tag {tag:?}: {}", r.text());
        assert_eq!(oci.get_manifest(name, tag).await?.status, 200, "tag {tag:?}");
    }
    for tag in [format!("{longest}x"), "-x".to_string(), ".x".to_string()] {
        let r = oci.put_manifest(name, &tag, OCI_MANIFEST, &image.manifest).await?;
        assert_eq!(r.status, 400, "tag {tag:?}: {}", r.text());
        assert!(!r.error_codes().is_empty(), "{}", r.text());
    }
    accepted.sort();
    assert_eq!(oci.tag_names(name).await?, accepted);
    Ok(())
}

// ------------------------------------------------------------------ sha512

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha512_blob_uploads_and_reads() -> Result<()> {
    let (srv, oci) = setup().await;
    let name = "docker-local/sha512";

    // Single-request POST.
    let one = noise(310, 40_000);
    let d1 = sha512_digest(&one);
    let r = post_upload(&oci, name, &format!("digest={d1}"), &one).await?;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_header(&r, "docker-content-digest", &d1);
    assert_eq!(oci.location(&r)?.path(), format!("/v2/{name}/blobs/{d1}"));

    // POST, then PUT with the whole blob.
    let two = noise(311, 50_000);
    let d2 = sha512_digest(&two);
    let url = open_upload(&oci, name).await?;
    let r = close(&oci, &url, &d2, &two).await?;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_header(&r, "docker-content-digest", &d2);
    assert_eq!(oci.location(&r)?.path(), format!("/v2/{name}/blobs/{d2}"));

    // Chunked, closed with a sha512 digest.
    let three = noise(312, 60_000);
    let d3 = sha512_digest(&three);
    let url = open_upload(&oci, name).await?;
    assert_eq!(patch(&oci, &url, Some("0-29999".into()), &three[..30_000]).await?.status, 202);
    let r = close(&oci, &url, &d3, &three[30_000..]).await?;
    assert_eq!(r.status, 201, "{}", r.text());

    for (bytes, digest) in [(&one, &d1), (&two, &d2), (&three, &d3)] {
        let head = oci.head_blob(name, digest).await?;
        assert_eq!(head.status, 200, "HEAD {digest}: {}", head.text());
        assert_header(&head, "content-length", &bytes.len().to_string());
        assert_header(&head, "docker-content-digest", digest);
        let get = oci.get_blob(name, digest).await?;
        assert_eq!(get.status, 200, "GET {digest}");
        assert_header(&get, "docker-content-digest", digest);
        assert!(get.body.as_ref() == bytes.as_slice(), "{digest}: bytes differ");
        // Stored once, under its SHA-256, like everything else.
        assert_eq!(copies(&srv, &sha256_digest(bytes)), 1, "{digest}");
    }
    // Mountable by its sha512 digest.
    let r = post_upload(&oci, "team-b/sha512", &format!("mount={d1}&from={name}"), &[]).await?;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_header(&r, "docker-content-digest", &d1);
    assert!(oci.get_blob("team-b/sha512", &d1).await?.body.as_ref() == one.as_slice());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_put_by_sha512_reference() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/m512";
    let image = TestImage::new(313, &[2000]);
    push_blobs(&oci, name, &image).await?;
    let d512 = sha512_digest(&image.manifest);

    let put = oci.put_manifest(name, &d512, OCI_MANIFEST, &image.manifest).await?;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_header(&put, "docker-content-digest", &d512);
    assert_eq!(oci.location(&put)?.path(), format!("/v2/{name}/manifests/{d512}"));
    for head in [false, true] {
        let method = if head { Method::HEAD } else { Method::GET };
        let r = oci.manifest(method, name, &d512, OCI_MANIFEST).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_header(&r, "docker-content-digest", &d512);
        assert_header(&r, "content-type", OCI_MANIFEST);
        assert_header(&r, "content-length", &image.manifest.len().to_string());
        if !head {
            assert_eq!(r.body.as_ref(), image.manifest.as_slice());
        }
    }
    // No tag was created; a wrong sha512 is refused.
    assert_eq!(oci.tags(name, None, None).await?.status, 404);
    let other = TestImage::new(314, &[100]);
    push_blobs(&oci, name, &other).await?;
    oci.put_manifest(name, &sha512_digest(b"not it"), OCI_MANIFEST, &other.manifest)
        .await?
        .assert_error(400, &["DIGEST_INVALID"]);

    // A manifest may reference a blob by its sha512 digest.
    let layer = noise(315, 5000);
    let l512 = sha512_digest(&layer);
    assert_eq!(post_upload(&oci, name, &format!("digest={l512}"), &layer).await?.status, 201);
    let manifest = |layer_digest: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": image.config_digest(), "size": image.config.len() },
            "layers": [{ "mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len() }],
        }))
        .expect("JSON")
    };
    let ok = oci.put_manifest(name, "with512", OCI_MANIFEST, &manifest(&l512)).await?;
    assert_eq!(ok.status, 201, "{}", ok.text());
    let missing = sha512_digest(b"never uploaded");
    oci.put_manifest(name, "missing512", OCI_MANIFEST, &manifest(&missing))
        .await?
        .assert_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    Ok(())
}

// ------------------------------------------------------------------ mount and visibility

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_between_hosted_repositories() -> Result<()> {
    let (srv, oci) = setup().await;
    let data = noise(320, 9000);
    let digest = oci.push_blob("docker-local/src", &data).await?;

    // Mounted from a repository that has it: 201, and readable there.
    let r = post_upload(&oci, "team-b/dst", &format!("mount={digest}&from=docker-local/src"), &[]).await?;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_header(&r, "docker-content-digest", &digest);
    assert_eq!(oci.location(&r)?.path(), format!("/v2/team-b/dst/blobs/{digest}"));
    let get = oci.get_blob("team-b/dst", &digest).await?;
    assert_eq!(get.status, 200);
    assert!(get.body.as_ref() == data.as_slice());
    assert_eq!(copies(&srv, &digest), 1);

    // The source lacks the blob (it is only in team-b): an upload session starts instead.
    let other = noise(321, 7000);
    let other_digest = oci.push_blob("team-b/elsewhere", &other).await?;
    let r = post_upload(&oci, "docker-local/dst", &format!("mount={other_digest}&from=docker-local/src"), &[]).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let url = oci.location(&r)?;
    assert!(url.path().starts_with("/v2/docker-local/dst/blobs/uploads/"), "Location {url}");
    assert_header(&r, "docker-upload-uuid", &upload_id(&url));
    oci.get_blob("docker-local/dst", &other_digest).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    // … and that session works.
    let done = close(&oci, &url, &other_digest, &other).await?;
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(oci.get_blob("docker-local/dst", &other_digest).await?.status, 200);

    // From a repository that does not have it, although another one does: 202.
    let third = noise(322, 6000);
    let third_digest = oci.push_blob("docker-local/only", &third).await?;
    let r = post_upload(&oci, "team-b/dst", &format!("mount={third_digest}&from=team-b/src"), &[]).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(oci.location(&r)?.path().starts_with("/v2/team-b/dst/blobs/uploads/"));
    oci.get_blob("team-b/dst", &third_digest).await?.assert_error(404, &["BLOB_UNKNOWN"]);

    // From an unknown repository key: 202.
    let r = post_upload(&oci, "team-b/dst", &format!("mount={third_digest}&from=nosuchrepo/src"), &[]).await?;
    assert_eq!(r.status, 202, "{}", r.text());

    // Without `from`, of a blob the target does not have (though the store does): 202.
    let r = post_upload(&oci, "team-b/dst", &format!("mount={third_digest}"), &[]).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(oci.location(&r)?.path().starts_with("/v2/team-b/dst/blobs/uploads/"));
    oci.get_blob("team-b/dst", &third_digest).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    assert_eq!(copies(&srv, &third_digest), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_do_not_leak_across_repositories_and_are_stored_once() -> Result<()> {
    let (srv, oci) = setup().await;
    let image = TestImage::new(330, &[3000, 5000]);
    image.push(&oci, "docker-local/app", "v1").await?;
    let blobs: Vec<String> =
        std::iter::once(image.config_digest()).chain((0..image.layers.len()).map(|i| image.layer_digest(i))).collect();

    for d in &blobs {
        oci.get_blob("team-b/app", d).await?.assert_error(404, &["BLOB_UNKNOWN"]);
        assert_eq!(oci.head_blob("team-b/app", d).await?.status, 404, "HEAD {d}");
    }
    oci.get_manifest("team-b/app", "v1").await?.assert_error(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    oci.get_manifest("team-b/app", &image.digest()).await?.assert_error(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    oci.tags("team-b/app", None, None).await?.assert_error(404, &["NAME_UNKNOWN"]);

    let refused = oci.put_manifest("team-b/app", "v1", OCI_MANIFEST, &image.manifest).await?;
    refused.assert_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    let named = refused.json()["errors"][0]["detail"]["digest"].as_str().map(str::to_string);
    assert!(named.as_ref().is_some_and(|d| blobs.contains(d)), "detail.digest should name a missing blob: {named:?}");
    oci.get_manifest("team-b/app", "v1").await?.assert_error(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);

    // The same bytes pushed to team-b: no new file, one file per blob.
    let before = blob_files(&srv);
    push_blobs(&oci, "team-b/app", &image).await?;
    let put = oci.put_manifest("team-b/app", "v1", OCI_MANIFEST, &image.manifest).await?;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(blob_files(&srv), before, "pushing identical content to a second repository added files");
    for d in blobs.iter().chain(std::iter::once(&image.digest())) {
        assert_eq!(copies(&srv, d), 1, "{d} must be stored exactly once");
    }
    assert_eq!(oci.tag_names("team-b/app").await?, vec!["v1"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_copy_for_a_layer_cached_by_a_remote_and_pushed_to_a_hosted_repository() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let up = DistributionRegistry::start().await;
    sk.copy(&img.oci("busybox", "1.0"), &format!("docker://{}/busybox:1.0", up.addr())).await?;
    let srv = TestServer::start(&repos(&up.url())).await;
    let want = img.digest("busybox", "1.0");
    let children = img.children("busybox", want);
    let layers = children.iter().filter(|d| d.media_type.contains("layer")).count();
    assert!(layers >= 1);

    let out = tempfile::tempdir()?;
    let layout = out.path().join("pulled");
    sk.copy(&format!("docker://{}/docker-remote/busybox:1.0", srv.addr()), &format!("oci:{}:1.0", layout.display()))
        .await?;
    assert_eq!(layout_digest(&layout, "1.0"), want);
    let cached = blob_files(&srv);
    for d in &children {
        assert_eq!(copies(&srv, &d.digest), 1, "{} cached once", d.digest);
    }

    sk.copy(&img.oci("busybox", "1.0"), &format!("docker://{}/docker-local/busybox:1.0", srv.addr())).await?;
    let oci = OciClient::new(&srv.base_url());
    let local = oci.get_manifest("docker-local/busybox", "1.0").await?;
    assert_eq!(local.status, 200, "{}", local.text());
    assert_header(&local, "docker-content-digest", want);
    let after = blob_files(&srv);
    assert!(
        after.len() < cached.len() + layers,
        "the push stored the layers again: {} files before, {} after",
        cached.len(),
        after.len()
    );
    assert_eq!(after, cached, "identical content pushed to docker-local must reuse the cached files");
    for d in children.iter().map(|d| d.digest.as_str()).chain(std::iter::once(want)) {
        assert_eq!(copies(&srv, d), 1, "{d} must be stored exactly once");
    }
    Ok(())
}

// ------------------------------------------------------------------ referrers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_list_filter_and_unknown_subject() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/refs";
    let subject = TestImage::new(340, &[1000]);
    subject.push(&oci, name, "1.0").await?;
    let sbom = Artifact::new(
        &subject.digest(),
        subject.manifest.len(),
        "application/vnd.example.sbom.v1",
        b"sbom payload",
        "sbom",
    );
    let sig =
        Artifact::new(&subject.digest(), subject.manifest.len(), "application/vnd.example.sig.v1", b"signature", "sig");
    for a in [&sbom, &sig] {
        let put = a.push(&oci, name).await?;
        assert_header(&put, "oci-subject", &subject.digest());
    }

    let r = oci.referrers(name, &subject.digest(), None).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_header(&r, "content-type", OCI_INDEX);
    assert!(r.header("oci-filters-applied").is_none(), "no filter was asked for");
    let index = r.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let list = index["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 2, "{index}");
    for (a, ty, note) in
        [(&sbom, "application/vnd.example.sbom.v1", "sbom"), (&sig, "application/vnd.example.sig.v1", "sig")]
    {
        let d = list
            .iter()
            .find(|d| d["digest"] == a.digest())
            .unwrap_or_else(|| panic!("{} missing: {index}", a.digest()));
        assert_eq!(d["mediaType"], OCI_MANIFEST);
        assert_eq!(d["size"], a.manifest.len());
        assert_eq!(d["artifactType"], ty);
        assert_eq!(d["annotations"]["org.example.note"], note);
    }

    let filtered = oci.referrers(name, &subject.digest(), Some("application/vnd.example.sig.v1")).await?;
    assert_eq!(filtered.status, 200, "{}", filtered.text());
    assert_header(&filtered, "oci-filters-applied", "artifactType");
    assert_header(&filtered, "content-type", OCI_INDEX);
    assert_eq!(manifest_digests(&filtered), vec![sig.digest()]);

    let none = oci.referrers(name, &subject.digest(), Some("application/vnd.example.none")).await?;
    assert_eq!(none.status, 200);
    assert_header(&none, "oci-filters-applied", "artifactType");
    assert!(manifest_digests(&none).is_empty(), "{}", none.text());

    // Unknown subject (and unknown name): 200 with an empty list, never 404.
    for n in [name, "docker-local/never-pushed"] {
        let empty = oci.referrers(n, &sha256_digest(b"unknown subject"), None).await?;
        assert_eq!(empty.status, 200, "{n}: {}", empty.text());
        assert_header(&empty, "content-type", OCI_INDEX);
        assert_eq!(empty.json()["manifests"].as_array().map(Vec::len), Some(0), "{}", empty.text());
    }
    // Other repositories do not see these referrers.
    assert!(manifest_digests(&oci.referrers("team-b/refs", &subject.digest(), None).await?).is_empty());

    // A deleted referrer is no longer listed.
    let del = oci.delete_manifest(name, &sbom.digest()).await?;
    assert_eq!(del.status, 202, "{}", del.text());
    assert_eq!(manifest_digests(&oci.referrers(name, &subject.digest(), None).await?), vec![sig.digest()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_through_a_virtual_repository_are_the_union() -> Result<()> {
    let up = DistributionRegistry::start().await;
    let upstream = OciClient::new(&up.url());
    let subject = TestImage::new(341, &[1000]);
    subject.push(&upstream, "app", "1.0").await?;
    let remote_art = Artifact::new(
        &subject.digest(),
        subject.manifest.len(),
        "application/vnd.example.sbom.v1",
        b"remote",
        "remote",
    );
    remote_art.push(&upstream, "app").await?;

    let srv = TestServer::start(&repos(&up.url())).await;
    let oci = OciClient::new(&srv.base_url());
    // The remote learns of its artifact by pulling it.
    let pulled = oci.get_manifest("docker-remote/app", &remote_art.digest()).await?;
    assert_eq!(pulled.status, 200, "{}", pulled.text());

    let local_art =
        Artifact::new(&subject.digest(), subject.manifest.len(), "application/vnd.example.sig.v1", b"local", "local");
    local_art.push(&oci, "docker-local/app").await?;

    let mut local = manifest_digests(&oci.referrers("docker-local/app", &subject.digest(), None).await?);
    local.sort();
    assert_eq!(local, vec![local_art.digest()]);
    let r = oci.referrers("docker-remote/app", &subject.digest(), None).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(manifest_digests(&r), vec![remote_art.digest()]);

    let union = oci.referrers("docker/app", &subject.digest(), None).await?;
    assert_eq!(union.status, 200, "{}", union.text());
    assert_header(&union, "content-type", OCI_INDEX);
    let mut got = manifest_digests(&union);
    got.sort();
    let mut want = vec![local_art.digest(), remote_art.digest()];
    want.sort();
    assert_eq!(got, want, "{}", union.text());
    let sig = oci.referrers("docker/app", &subject.digest(), Some("application/vnd.example.sig.v1")).await?;
    assert_header(&sig, "oci-filters-applied", "artifactType");
    assert_eq!(manifest_digests(&sig), vec![local_art.digest()]);
    Ok(())
}

/// Without `artifactType`, a referrer's descriptor carries its config's media type
/// (distribution-spec, listing referrers); an index with a subject is listed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_artifact_type_defaults_to_the_config_media_type() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/reftype";
    let subject = TestImage::new(342, &[100]);
    subject.push(&oci, name, "1.0").await?;
    let config = br#"{"kind":"example"}"#.to_vec();
    let payload = b"untyped payload".to_vec();
    oci.push_blob(name, &config).await?;
    oci.push_blob(name, &payload).await?;
    let untyped = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.example.config.v1+json", "digest": sha256_digest(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/octet-stream", "digest": sha256_digest(&payload), "size": payload.len() }],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject.digest(), "size": subject.manifest.len() },
    }))?;
    let put = oci.put_manifest(name, &sha256_digest(&untyped), OCI_MANIFEST, &untyped).await?;
    assert_eq!(put.status, 201, "{}", put.text());

    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.example.bundle.v1",
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": subject.digest(), "size": subject.manifest.len() }],
        "subject": { "mediaType": OCI_MANIFEST, "digest": subject.digest(), "size": subject.manifest.len() },
    }))?;
    let put = oci.put_manifest(name, &sha256_digest(&index), OCI_INDEX, &index).await?;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_header(&put, "oci-subject", &subject.digest());

    let r = oci.referrers(name, &subject.digest(), None).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json()["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 2, "{}", r.text());
    let m = list.iter().find(|d| d["digest"] == sha256_digest(&untyped)).expect("untyped artifact listed");
    assert_eq!(m["artifactType"], "application/vnd.example.config.v1+json", "{}", r.text());
    let i = list.iter().find(|d| d["digest"] == sha256_digest(&index)).expect("index listed");
    assert_eq!(i["mediaType"], OCI_INDEX);
    assert_eq!(i["artifactType"], "application/vnd.example.bundle.v1");

    let f = oci.referrers(name, &subject.digest(), Some("application/vnd.example.config.v1+json")).await?;
    assert_eq!(manifest_digests(&f), vec![sha256_digest(&untyped)]);
    Ok(())
}

// ------------------------------------------------------------------ catalog

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_pagination_follows_link() -> Result<()> {
    let (_srv, oci) = setup().await;
    let image = TestImage::new(350, &[100]);
    for name in ["docker-local/alpha", "docker-local/beta", "team-b/gamma"] {
        image.push(&oci, name, "1").await?;
    }
    let want = vec!["docker-local/alpha", "docker-local/beta", "team-b/gamma"];

    let all = oci.get("/v2/_catalog").await?;
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(all.json()["repositories"], json!(want));
    assert!(all.header("link").is_none(), "no Link without n");

    let first = oci.get("/v2/_catalog?n=1").await?;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["repositories"], json!(["docker-local/alpha"]));
    let link = first.header("link").ok_or_else(|| anyhow!("no Link header on a partial page"))?.to_string();
    assert!(link.starts_with("</v2/_catalog?") && link.ends_with(">; rel=\"next\""), "Link: {link}");

    // Follow the links to the end.
    let mut seen = vec!["docker-local/alpha".to_string()];
    let mut next = Some(link);
    let mut pages = 1;
    while let Some(link) = next.take() {
        let target = link.trim_start_matches('<').split('>').next().unwrap_or_default().to_string();
        let url = Url::parse(&oci.url("/"))?.join(&target)?;
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(query.contains(&("n".into(), "1".into())), "Link keeps n: {link}");
        assert_eq!(query.iter().find(|(k, _)| k == "last").map(|(_, v)| v.as_str()), seen.last().map(String::as_str));
        let page = oci.send(oci.http().get(url)).await?;
        assert_eq!(page.status, 200, "{}", page.text());
        let names: Vec<String> = page.json()["repositories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        assert!(names.len() <= 1, "n=1 page: {names:?}");
        seen.extend(names);
        next = page.header("link").map(str::to_string);
        pages += 1;
        assert!(pages <= 5, "pagination does not end");
    }
    assert_eq!(seen, want);

    let tail = oci.get("/v2/_catalog?n=5&last=docker-local%2Fbeta").await?;
    assert_eq!(tail.json()["repositories"], json!(["team-b/gamma"]));
    assert!(tail.header("link").is_none());
    Ok(())
}

// ------------------------------------------------------------------ deletes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_tag_blob_and_unknown_manifest() -> Result<()> {
    let (srv, oci) = setup().await;
    let name = "docker-local/del";
    let image = TestImage::new(360, &[4000]);
    image.push(&oci, name, "v1").await?;
    image.push(&oci, name, "v2").await?;

    // Deleting a tag leaves the manifest and the other tag.
    let r = oci.delete_manifest(name, "v1").await?;
    assert_eq!(r.status, 202, "{}", r.text());
    oci.get_manifest(name, "v1").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    let by_digest = oci.get_manifest(name, &image.digest()).await?;
    assert_eq!(by_digest.status, 200, "{}", by_digest.text());
    assert_eq!(by_digest.body.as_ref(), image.manifest.as_slice());
    assert_eq!(oci.get_manifest(name, "v2").await?.status, 200);
    assert_eq!(oci.tag_names(name).await?, vec!["v2"]);
    oci.delete_manifest(name, "v1").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);

    // Unknown manifests, by digest and by tag.
    oci.delete_manifest(name, &sha256_digest(b"no manifest")).await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    oci.delete_manifest(name, "never").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);

    // Blobs: the same layer also lives in team-b.
    let layer = image.layer_digest(0);
    oci.push_blob("team-b/del", &image.layers[0]).await?;
    // Deleting in a repository that never had it changes nothing elsewhere.
    let config = image.config_digest();
    oci.request(Method::DELETE, &format!("/v2/team-b/del/blobs/{config}")).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    assert_eq!(oci.get_blob(name, &config).await?.status, 200);

    // A blob link is shared by every image of the repository: while a manifest uses the layer,
    // deleting it is refused, so images keep working.
    let r = oci.request(Method::DELETE, &format!("/v2/{name}/blobs/{layer}")).await?;
    r.assert_error(405, &["UNSUPPORTED"]);
    assert_eq!(oci.get_blob(name, &layer).await?.status, 200);
    assert_eq!(oci.delete_manifest(name, &image.digest()).await?.status, 202);
    let r = oci.request(Method::DELETE, &format!("/v2/{name}/blobs/{layer}")).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    oci.get_blob(name, &layer).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    assert_eq!(oci.head_blob(name, &layer).await?.status, 404);
    oci.request(Method::DELETE, &format!("/v2/{name}/blobs/{layer}")).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    // team-b keeps its copy: the shared file was not removed.
    let kept = oci.get_blob("team-b/del", &layer).await?;
    assert_eq!(kept.status, 200, "{}", kept.text());
    assert!(kept.body.as_ref() == image.layers[0].as_slice());
    assert_eq!(copies(&srv, &layer), 1);
    Ok(())
}

// ------------------------------------------------------------------ manifest rules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_with_a_missing_child_is_rejected() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/idx";
    let present = TestImage::new(370, &[100]);
    present.push(&oci, name, "amd64").await?;
    let absent = TestImage::new(371, &[100]);
    push_blobs(&oci, name, &absent).await?; // blobs, but never its manifest
    let index = |children: &[&TestImage]| {
        let manifests: Vec<Value> = children
            .iter()
            .map(|c| json!({ "mediaType": OCI_MANIFEST, "digest": c.digest(), "size": c.manifest.len() }))
            .collect();
        serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }))
            .expect("JSON")
    };

    let bad = oci.put_manifest(name, "multi", OCI_INDEX, &index(&[&present, &absent])).await?;
    bad.assert_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    assert_eq!(bad.json()["errors"][0]["detail"]["digest"], absent.digest());
    oci.get_manifest(name, "multi").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    // A child manifest that lives in another repository does not count either.
    absent.push(&oci, "team-b/idx", "x").await?;
    oci.put_manifest(name, "multi", OCI_INDEX, &index(&[&present, &absent]))
        .await?
        .assert_error(400, &["MANIFEST_BLOB_UNKNOWN"]);

    let ok = oci.put_manifest(name, "multi", OCI_INDEX, &index(&[&present])).await?;
    assert_eq!(ok.status, 201, "{}", ok.text());
    Ok(())
}

/// A valid image manifest of exactly `size` bytes, padded with an annotation.
fn padded_manifest(image: &TestImage, size: usize) -> Vec<u8> {
    let doc = |pad: usize| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": image.config_digest(), "size": image.config.len() },
            "layers": [{ "mediaType": OCI_LAYER, "digest": image.layer_digest(0), "size": image.layers[0].len() }],
            "annotations": { "padding": "x".repeat(pad) },
        }))
        .expect("JSON")
    };
    let base = doc(0).len();
    let body = doc(size - base);
    assert_eq!(body.len(), size);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_size_limit_is_4_mib_and_nothing_is_stored_beyond() -> Result<()> {
    let (srv, oci) = setup().await;
    let name = "docker-local/sizes";
    let image = TestImage::new(372, &[100]);
    push_blobs(&oci, name, &image).await?;

    let at_limit = padded_manifest(&image, MAX_MANIFEST);
    let ok = oci.put_manifest(name, "max", OCI_MANIFEST, &at_limit).await?;
    assert_eq!(ok.status, 201, "a 4 MiB manifest should be accepted: {}", ok.text());

    let before = blob_files(&srv);
    let over = padded_manifest(&image, MAX_MANIFEST + 1);
    let r = oci.put_manifest(name, "over", OCI_MANIFEST, &over).await?;
    assert!(r.status == 413 || r.status == 400, "{} {}", r.status, r.text());
    assert!(!r.error_codes().is_empty(), "error body expected: {}", r.text());
    oci.get_manifest(name, "over").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    oci.get_manifest(name, &sha256_digest(&over)).await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    assert_eq!(blob_files(&srv), before, "an oversized manifest reached the store");
    assert_eq!(oci.tag_names(name).await?, vec!["max"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_that_disagrees_with_media_type_is_manifest_invalid() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/ctype";
    let image = TestImage::new(373, &[100]);
    push_blobs(&oci, name, &image).await?;
    for content_type in [DOCKER_MANIFEST, OCI_INDEX] {
        oci.put_manifest(name, "v1", content_type, &image.manifest).await?.assert_error(400, &["MANIFEST_INVALID"]);
    }
    // An index body without mediaType, declared as an image manifest.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": image.digest(), "size": image.manifest.len() }],
    }))?;
    oci.put_manifest(name, "v1", OCI_MANIFEST, &index).await?.assert_error(400, &["MANIFEST_INVALID"]);
    oci.get_manifest(name, "v1").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    // A media type parameter is not a disagreement.
    let ok = oci.put_manifest(name, "v1", &format!("{OCI_MANIFEST}; charset=utf-8"), &image.manifest).await?;
    assert_eq!(ok.status, 201, "{}", ok.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_put_does_not_move_an_existing_tag() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/stable";
    let good = TestImage::new(374, &[100]);
    good.push(&oci, name, "v1").await?;
    let missing = TestImage::new(375, &[100]); // nothing of it pushed
    let other = TestImage::new(376, &[100]);
    push_blobs(&oci, name, &other).await?;

    let attempts: Vec<(&str, String, Vec<u8>, &[&str])> = vec![
        ("missing blobs", OCI_MANIFEST.into(), missing.manifest.clone(), &["MANIFEST_BLOB_UNKNOWN"]),
        ("not JSON", OCI_MANIFEST.into(), b"{nope".to_vec(), &["MANIFEST_INVALID"]),
        ("Content-Type mismatch", DOCKER_MANIFEST.into(), other.manifest.clone(), &["MANIFEST_INVALID"]),
        (
            "oversized",
            OCI_MANIFEST.into(),
            padded_manifest(&other, MAX_MANIFEST + 100),
            &["SIZE_INVALID", "MANIFEST_INVALID"],
        ),
        ("schemaVersion 1", OCI_MANIFEST.into(), br#"{"schemaVersion":1}"#.to_vec(), &["MANIFEST_INVALID"]),
    ];
    for (what, content_type, body, codes) in attempts {
        let r = oci.put_manifest(name, "v1", &content_type, &body).await?;
        assert!(r.status.is_client_error(), "{what}: {} {}", r.status, r.text());
        assert!(r.error_codes().iter().any(|c| codes.contains(&c.as_str())), "{what}: {}", r.text());
        let now = oci.get_manifest(name, "v1").await?;
        assert_eq!(now.status, 200, "{what}");
        assert_eq!(now.header("docker-content-digest"), Some(good.digest().as_str()), "{what} moved the tag");
    }
    assert_eq!(oci.tag_names(name).await?, vec!["v1"]);
    Ok(())
}

/// Descriptor sizes are part of the content address (image-spec: `size` MUST be the
/// exact byte count); a manifest whose descriptor size disagrees with the stored blob
/// cannot be pulled by any client that verifies sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_size_that_disagrees_with_the_blob_is_rejected() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/badsize";
    let image = TestImage::new(377, &[1000]);
    push_blobs(&oci, name, &image).await?;
    for size in [i64::MAX, 999, 1001] {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": image.config_digest(), "size": image.config.len() },
            "layers": [{ "mediaType": OCI_LAYER, "digest": image.layer_digest(0), "size": size }],
        }))?;
        let r = oci.put_manifest(name, "v1", OCI_MANIFEST, &body).await?;
        assert!(r.status.is_client_error(), "layer size {size} for a 1000-byte blob: {} {}", r.status, r.text());
        assert!(
            r.error_codes()
                .iter()
                .any(|c| ["MANIFEST_INVALID", "SIZE_INVALID", "MANIFEST_BLOB_UNKNOWN"].contains(&c.as_str())),
            "{}",
            r.text()
        );
    }
    Ok(())
}

// ------------------------------------------------------------------ virtual repositories

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_through_virtual_links_a_layer_cached_by_the_remote_member() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let up = DistributionRegistry::start().await;
    sk.copy(&img.oci("busybox", "1.0"), &format!("docker://{}/busybox:1.0", up.addr())).await?;
    let srv = TestServer::start(&repos(&up.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let base = img.digest("busybox", "1.0");
    let layer = img
        .children("busybox", base)
        .into_iter()
        .find(|d| d.media_type.contains("layer"))
        .ok_or_else(|| anyhow!("busybox has no layer"))?;

    // Pull the base image through the remote: its layer is now cached there only.
    let out = tempfile::tempdir()?;
    let layout = out.path().join("base");
    sk.copy(&format!("docker://{}/docker-remote/busybox:1.0", srv.addr()), &format!("oci:{}:1.0", layout.display()))
        .await?;
    assert_eq!(copies(&srv, &layer.digest), 1);

    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": { "app": "newapp" } },
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len() },
        "layers": [{ "mediaType": layer.media_type, "digest": layer.digest, "size": layer.size }],
    }))?;
    let digest = sha256_digest(&manifest);

    // Directly to the hosted repository the layer is unknown: it is not in docker-local.
    oci.push_blob("docker-local/direct", &config).await?;
    let direct = oci.put_manifest("docker-local/direct", "1.0", OCI_MANIFEST, &manifest).await?;
    direct.assert_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    assert_eq!(direct.json()["errors"][0]["detail"]["digest"], layer.digest.as_str());

    // Through the virtual repository the client could read the layer, so the push works.
    oci.push_blob("docker/newapp", &config).await?;
    let put = oci.put_manifest("docker/newapp", "1.0", OCI_MANIFEST, &manifest).await?;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_header(&put, "docker-content-digest", &digest);
    assert_eq!(oci.location(&put)?.path(), format!("/v2/docker/newapp/manifests/{digest}"));

    for name in ["docker-local/newapp", "docker/newapp"] {
        let m = oci.get_manifest(name, "1.0").await?;
        assert_eq!(m.status, 200, "{name}: {}", m.text());
        assert_header(&m, "docker-content-digest", &digest);
    }
    let (status, size, got) = oci.get_blob_hashed("docker-local/newapp", &layer.digest).await?;
    assert_eq!((status.as_u16(), size, got.as_str()), (200, layer.size, layer.digest.as_str()));
    assert_eq!(copies(&srv, &layer.digest), 1, "linking must not copy the layer");
    // Not deployed to the remote member.
    assert_eq!(oci.get_manifest("docker-remote/newapp", "1.0").await?.status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_without_deploy_to_refuses_pushes() -> Result<()> {
    let (_srv, oci) = setup().await;
    let image = TestImage::new(380, &[100]);
    image.push(&oci, "team-b/app", "1.0").await?;
    // Reading through it works.
    let read = oci.get_manifest("nodeploy/app", "1.0").await?;
    assert_eq!(read.status, 200, "{}", read.text());

    let d = image.layer_digest(0);
    let refusals = vec![
        ("POST upload", oci.start_upload("nodeploy/app").await?),
        ("POST ?digest", post_upload(&oci, "nodeploy/app", &format!("digest={d}"), &image.layers[0]).await?),
        ("POST ?mount", post_upload(&oci, "nodeploy/app", &format!("mount={d}&from=team-b/app"), &[]).await?),
        ("PUT manifest", oci.put_manifest("nodeploy/app", "2.0", OCI_MANIFEST, &image.manifest).await?),
        ("DELETE manifest", oci.delete_manifest("nodeploy/app", "1.0").await?),
        ("DELETE blob", oci.request(Method::DELETE, &format!("/v2/nodeploy/app/blobs/{d}")).await?),
    ];
    for (what, r) in refusals {
        assert_eq!(r.status, 405, "{what}: {}", r.text());
        assert_eq!(r.error_codes().first().map(String::as_str), Some("UNSUPPORTED"), "{what}: {}", r.text());
        assert!(error_message(&r).contains("deploy_to"), "{what}: message should mention deploy_to: {}", r.text());
    }
    // Nothing changed in the members.
    assert_eq!(oci.get_manifest("team-b/app", "1.0").await?.status, 200);
    assert_eq!(oci.tag_names("team-b/app").await?, vec!["1.0"]);
    Ok(())
}

// ------------------------------------------------------------------ robustness

struct Case {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Acceptable `errors[0].code`s; empty = any code.
    codes: &'static [&'static str],
}

fn case(method: &'static str, path: impl Into<String>, codes: &'static [&'static str]) -> Case {
    Case { method, path: path.into(), headers: Vec::new(), body: Vec::new(), codes }
}

impl Case {
    fn header(mut self, name: &str, value: impl Into<String>) -> Case {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.body = body.into();
        self
    }
    fn path_of(mut self, path: &str) -> Case {
        self.path = path.to_string();
        self
    }
    fn header_replace(mut self, name: &str, value: &str) -> Case {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.header(name, value)
    }
    fn manifest(body: impl Into<Vec<u8>>, codes: &'static [&'static str]) -> Case {
        case("PUT", "/v2/docker-local/robust/manifests/bad", codes).header("Content-Type", OCI_MANIFEST).body(body)
    }
}

const NAME: &[&str] = &["NAME_INVALID", "NAME_UNKNOWN"];
const DIGEST: &[&str] = &["DIGEST_INVALID"];
const TAG: &[&str] = &["MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID"];
const PAGE: &[&str] = &["PAGINATION_NUMBER_INVALID"];
const RANGE_CODES: &[&str] = &["RANGE_INVALID", "BLOB_UPLOAD_INVALID"];
const MANIFEST: &[&str] = &["MANIFEST_INVALID"];
const METHOD: &[&str] = &["UNSUPPORTED"];
const UPLOAD: &[&str] = &["BLOB_UPLOAD_UNKNOWN"];
const ANY: &[&str] = &[];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_4xx_with_error_codes_and_never_5xx() -> Result<()> {
    let (srv, oci) = setup().await;
    let addr = srv.addr();
    let image = TestImage::new(390, &[100]);
    image.push(&oci, "docker-local/robust", "1.0").await?;
    let blob = image.layer_digest(0);
    let cfg = image.config_digest();
    let z64 = "0".repeat(64);
    let (cfg_size, layer_size) = (image.config.len(), image.layers[0].len());
    let with_layer = |layer: Value| -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": cfg, "size": cfg_size },
            "layers": [layer],
        }))
        .expect("JSON")
    };
    let raw_layer = |size: &str| -> Vec<u8> {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{cfg}","size":{cfg_size}}},"layers":[{{"mediaType":"{OCI_LAYER}","digest":"{blob}","size":{size}}}]}}"#
        )
        .into_bytes()
    };
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));

    let cases = vec![
        // ---- names
        case("GET", "/v2/docker-local/UPPER/manifests/1.0", NAME),
        case("GET", "/v2/docker-local/Busybox/blobs/{blob}", NAME),
        case("GET", "/v2/docker-local/a/../b/manifests/1.0", NAME),
        case("GET", "/v2/docker-local/../docker-remote/x/manifests/1.0", NAME),
        case("GET", "/v2/../etc/passwd", ANY),
        case("GET", "/v2/docker-local/..%2f..%2fetc/manifests/1.0", NAME),
        case("GET", "/v2/docker-local/a//b/manifests/1.0", NAME),
        case("GET", "/v2/docker-local//manifests/1.0", NAME),
        case("GET", "/v2/docker-local/-lead/manifests/1.0", NAME),
        case("GET", "/v2/docker-local/trail-/manifests/1.0", NAME),
        case("GET", "/v2/docker-local/a___b/manifests/1.0", NAME),
        case("GET", "/v2/docker-local/a%00b/manifests/1.0", NAME),
        case("GET", format!("/v2/docker-local/{}a/manifests/1.0", "a/".repeat(200)), NAME),
        case("GET", "/v2/docker-local/_blobs/manifests/1.0", NAME),
        case("GET", "/v2/no-such-repo/x/manifests/1.0", NAME),
        case("GET", "/v2/UPPER-REPO/x/manifests/1.0", NAME),
        case("POST", "/v2/docker-local/UPPER/blobs/uploads/", NAME),
        case("GET", "/v2/docker-local/UPPER/tags/list", NAME),
        case("GET", "/v2/docker-local/a..b/referrers/{blob}", NAME),
        // ---- digests
        case("GET", "/v2/docker-local/robust/blobs/sha256:xyz", DIGEST),
        case("GET", format!("/v2/docker-local/robust/blobs/sha256:{}", "0".repeat(63)), DIGEST),
        case("GET", format!("/v2/docker-local/robust/blobs/sha256:{}", "A".repeat(64)), DIGEST),
        case("GET", format!("/v2/docker-local/robust/blobs/sha512:{z64}"), DIGEST),
        case("GET", format!("/v2/docker-local/robust/blobs/md5:{}", "0".repeat(32)), DIGEST),
        case("GET", format!("/v2/docker-local/robust/blobs/SHA256:{z64}"), DIGEST),
        case("GET", "/v2/docker-local/robust/blobs/sha256:", DIGEST),
        case("GET", "/v2/docker-local/robust/blobs/notadigest", DIGEST),
        case("HEAD", "/v2/docker-local/robust/blobs/sha256:xyz", ANY),
        case("DELETE", "/v2/docker-local/robust/blobs/sha256:xyz", DIGEST),
        case("GET", "/v2/docker-local/robust/manifests/sha256:zz", DIGEST),
        case("DELETE", "/v2/docker-local/robust/manifests/sha256:zz", DIGEST),
        case("GET", "/v2/docker-local/robust/referrers/sha256:zz", DIGEST),
        case("GET", "/v2/docker-local/robust/referrers/1.0", DIGEST),
        case("POST", "/v2/docker-local/robust/blobs/uploads/?digest=sha256:zz", DIGEST).body(b"x".to_vec()),
        case("POST", "/v2/docker-local/robust/blobs/uploads/?mount=sha256:zz&from=docker-local/robust", DIGEST),
        case("PUT", "{upload}?digest=sha256:zz", DIGEST),
        case("PUT", "{upload}", DIGEST),
        case("PUT", "{upload}?digest=", DIGEST),
        // ---- tags
        case("GET", "/v2/docker-local/robust/manifests/-bad", TAG),
        case("GET", "/v2/docker-local/robust/manifests/.hidden", TAG),
        case("GET", "/v2/docker-local/robust/manifests/bad!tag", TAG),
        case("GET", "/v2/docker-local/robust/manifests/", TAG),
        case("GET", format!("/v2/docker-local/robust/manifests/{}", "t".repeat(129)), TAG),
        Case::manifest(image.manifest.clone(), TAG).path_of("/v2/docker-local/robust/manifests/bad%20tag"),
        case("DELETE", "/v2/docker-local/robust/manifests/bad!tag", TAG),
        // ---- pagination
        case("GET", "/v2/docker-local/robust/tags/list?n=abc", PAGE),
        case("GET", "/v2/docker-local/robust/tags/list?n=-1", PAGE),
        case("GET", "/v2/docker-local/robust/tags/list?n=1.5", PAGE),
        case("GET", "/v2/docker-local/robust/tags/list?n=99999999999999999999", PAGE),
        case("GET", "/v2/docker-local/robust/tags/list?n=%ZZ", PAGE),
        case("GET", "/v2/_catalog?n=x", PAGE),
        case("GET", "/v2/_catalog?n=-5", PAGE),
        // ---- uploads and Content-Range
        case("PATCH", "{upload}", RANGE_CODES).header("Content-Range", "garbage").body(b"abc".to_vec()),
        case("PATCH", "{upload}", RANGE_CODES).header("Content-Range", "9-3").body(b"abc".to_vec()),
        case("PATCH", "{upload}", RANGE_CODES).header("Content-Range", "-").body(b"abc".to_vec()),
        case("PATCH", "{upload}", RANGE_CODES).header("Content-Range", "0-").body(b"abc".to_vec()),
        case("PATCH", "{upload}", RANGE_CODES).header("Content-Range", "-1-1").body(b"abc".to_vec()),
        case("PATCH", "{upload}", RANGE_CODES).header("Content-Range", "5-7").body(b"abc".to_vec()),
        case("PATCH", "{upload}", RANGE_CODES)
            .header("Content-Range", "99999999999999999999-99999999999999999999")
            .body(b"abc".to_vec()),
        case("PATCH", "{upload}", RANGE_CODES).header("Content-Range", "bytes=0-2").body(b"abc".to_vec()),
        case("GET", "/v2/docker-local/robust/blobs/uploads/not-a-session", UPLOAD),
        case("PATCH", "/v2/docker-local/robust/blobs/uploads/not-a-session", UPLOAD).body(b"abc".to_vec()),
        case("DELETE", "/v2/docker-local/robust/blobs/uploads/not-a-session", UPLOAD),
        case("GET", "/v2/docker-local/robust/blobs/uploads/a.b", UPLOAD),
        case("GET", format!("/v2/docker-local/robust/blobs/uploads/{}", "a".repeat(65)), UPLOAD),
        case("GET", "/v2/docker-local/robust/blobs/uploads/..%2f..%2fmetadata.db", UPLOAD),
        case("GET", "{upload_elsewhere}", UPLOAD),
        case("POST", "/v2/docker-remote/x/blobs/uploads/", METHOD),
        // ---- blob ranges
        // (An unparseable or reversed Range such as `bytes=abc` or `bytes=5-2` is ignored, per
        // RFC 9110 §14.1.1: a 200, not an error; see api::blob_range_request.)
        case("GET", "/v2/docker-local/robust/blobs/{blob}", &["RANGE_INVALID"]).header("Range", "bytes=999999-"),
        // ---- manifest bodies
        Case::manifest(with_layer(json!({ "mediaType": OCI_LAYER, "digest": blob, "size": -1 })), MANIFEST),
        Case::manifest(raw_layer("18446744073709551615"), MANIFEST),
        Case::manifest(raw_layer("9223372036854775808"), MANIFEST),
        Case::manifest(raw_layer("1e400"), MANIFEST),
        Case::manifest(raw_layer("1.5"), MANIFEST),
        Case::manifest(raw_layer("\"100\""), MANIFEST),
        Case::manifest(raw_layer("null"), MANIFEST),
        Case::manifest(
            with_layer(json!({ "mediaType": OCI_LAYER, "digest": "sha256:zz", "size": layer_size })),
            MANIFEST,
        ),
        Case::manifest(with_layer(json!({ "mediaType": OCI_LAYER, "size": layer_size })), MANIFEST),
        Case::manifest(with_layer(json!("not a descriptor")), MANIFEST),
        Case::manifest(format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#), MANIFEST),
        Case::manifest(format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":null}}"#), MANIFEST),
        Case::manifest(
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{}},"layers":{{}}}}"#),
            MANIFEST,
        ),
        Case::manifest(r#"{"schemaVersion":1}"#, MANIFEST),
        Case::manifest(r#"{"schemaVersion":"2"}"#, MANIFEST),
        Case::manifest("{not json", MANIFEST),
        Case::manifest("", MANIFEST),
        Case::manifest("[]", MANIFEST),
        Case::manifest("null", MANIFEST),
        Case::manifest("\"a string\"", MANIFEST),
        Case::manifest(vec![0xff, 0xfe, 0x00, 0x7b], MANIFEST),
        Case::manifest(deep.clone(), MANIFEST),
        Case::manifest(
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"digest":"sha256:zz","size":1}}]}}"#
            ),
            MANIFEST,
        )
        .header_replace("Content-Type", OCI_INDEX),
        Case::manifest(image.manifest.clone(), &["MANIFEST_INVALID"]).header_replace("Content-Type", "text/plain"),
        Case::manifest(image.manifest.clone(), &["MANIFEST_INVALID"])
            .header_replace("Content-Type", "application/vnd.oci.image.manifest.v9+json"),
        // ---- methods
        case("POST", "/v2/docker-local/robust/manifests/1.0", METHOD),
        case("PATCH", "/v2/docker-local/robust/manifests/1.0", METHOD),
        case("OPTIONS", "/v2/docker-local/robust/manifests/1.0", METHOD),
        case("PUT", "/v2/docker-local/robust/blobs/{blob}", METHOD).body(b"x".to_vec()),
        case("POST", "/v2/docker-local/robust/blobs/{blob}", METHOD),
        case("PATCH", "/v2/docker-local/robust/blobs/{blob}", METHOD),
        case("GET", "/v2/docker-local/robust/blobs/uploads/", METHOD),
        case("PUT", "/v2/docker-local/robust/blobs/uploads/", METHOD),
        case("DELETE", "/v2/docker-local/robust/blobs/uploads/", METHOD),
        case("POST", "{upload}", METHOD),
        case("DELETE", "/v2/docker-local/robust/tags/list", METHOD),
        case("PUT", "/v2/docker-local/robust/tags/list", METHOD),
        case("POST", "/v2/docker-local/robust/referrers/{blob}", METHOD),
        case("DELETE", "/v2/docker-local/robust/referrers/{blob}", METHOD),
        case("POST", "/v2/_catalog", METHOD),
        case("DELETE", "/v2/", METHOD),
        case("POST", "/v2/", METHOD),
        // ---- unknown endpoints
        case("GET", "/v2/docker-local/robust/whatever", &["NOT_FOUND", "NAME_INVALID"]),
        case("GET", "/v2/docker-local", &["NOT_FOUND", "NAME_INVALID"]),
        case("GET", "/v2/docker-local/", &["NOT_FOUND", "NAME_INVALID"]),
        case("GET", "/v2/docker-local/robust/tags/list/extra", &["NOT_FOUND", "NAME_INVALID"]),
        case("GET", "/v2/docker-local/robust/tags", &["NOT_FOUND", "NAME_INVALID"]),
    ];

    let mut failures = Vec::new();
    for (i, c) in cases.into_iter().enumerate() {
        let path = if c.path.contains("{upload_elsewhere}") {
            let url = open_upload(&oci, "team-b/robust").await?;
            format!("/v2/docker-local/robust/blobs/uploads/{}", upload_id(&url))
        } else if c.path.contains("{upload}") {
            let url = open_upload(&oci, "docker-local/robust").await?;
            c.path.replace("{upload}", url.path())
        } else {
            c.path.replace("{blob}", &blob)
        };
        let shown = if path.len() > 120 { format!("{}…", &path[..120]) } else { path.clone() };
        let r = match raw(&addr, c.method, &path, &c.headers, &c.body).await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("#{i} {} {shown}: transport error {e:#}", c.method));
                continue;
            }
        };
        let code = r.error_codes().first().cloned();
        let ok_status = r.status.is_client_error();
        let ok_code = if c.method == "HEAD" {
            true // no body on HEAD
        } else {
            code.as_deref().is_some_and(|got| c.codes.is_empty() || c.codes.contains(&got))
        };
        if !ok_status || !ok_code {
            failures.push(format!(
                "#{i} {} {shown} [{:?}]: {} code {code:?}, want 4xx with {:?}; body {}",
                c.method,
                c.headers,
                r.status,
                c.codes,
                r.text().chars().take(200).collect::<String>()
            ));
        }
    }

    // Still healthy, and still serving what it served before.
    assert_eq!(oci.get("/v2/").await?.status, 200);
    let m = oci.get_manifest("docker-local/robust", "1.0").await?;
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.body.as_ref(), image.manifest.as_slice());
    assert_eq!(oci.tag_names("docker-local/robust").await?, vec!["1.0"]);
    TestImage::new(391, &[100]).push(&oci, "docker-local/after", "1").await?;
    let log = srv.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(failures.is_empty(), "{} malformed requests were mishandled:\n{}", failures.len(), failures.join("\n"));
    Ok(())
}
