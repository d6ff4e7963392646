//! A raw OCI distribution-API client for tests that need to see status codes,
//! headers and error bodies (spec:
//! <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#endpoints>),
//! plus `TestImage`, a tiny synthetic image (config + noise layers) to push with it.
//!
//! Names passed in include the repository key: `docker-local/busybox`.

use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::images::sha256_digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What a client that understands every manifest kind sends.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// A fully read response.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("expected JSON body ({e}), got {}: {}", self.status, self.text()))
    }

    /// `code`s of an OCI error body `{"errors":[{"code":…}]}`; empty if none.
    pub fn error_codes(&self) -> Vec<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"].as_array().cloned())
            .into_iter()
            .flatten()
            .filter_map(|e| e["code"].as_str().map(str::to_string))
            .collect()
    }

    /// Asserts the status and that the error body carries one of `codes`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, codes: &[&str]) {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text());
        let got = self.error_codes();
        assert!(
            got.iter().any(|c| codes.contains(&c.as_str())),
            "expected one of {codes:?} in error body, got {got:?}: {}",
            self.text()
        );
    }
}

#[derive(Clone)]
pub struct OciClient {
    base: String,
    http: reqwest::Client,
}

impl OciClient {
    /// `base_url` like `http://127.0.0.1:1234`.
    pub fn new(base_url: &str) -> Self {
        let http =
            reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().expect("reqwest client");
        OciClient { base: base_url.trim_end_matches('/').to_string(), http }
    }

    /// With a caller-built client (e.g. one that `resolve`s a host name to 127.0.0.1).
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Self {
        OciClient { base: base_url.trim_end_matches('/').to_string(), http }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Resolves a `Location` header against the base URL (it may be relative).
    pub fn location(&self, resp: &Fetched) -> Result<Url> {
        let loc = resp.header(LOCATION.as_str()).ok_or_else(|| anyhow!("no Location header"))?;
        Ok(Url::parse(&self.base)?.join(loc)?)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<Fetched> {
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok(Fetched { status, headers, body })
    }

    pub async fn request(&self, method: Method, path: &str) -> Result<Fetched> {
        self.send(self.http.request(method, self.url(path))).await
    }

    pub async fn get(&self, path: &str) -> Result<Fetched> {
        self.request(Method::GET, path).await
    }

    pub async fn get_manifest(&self, name: &str, reference: &str) -> Result<Fetched> {
        self.manifest(Method::GET, name, reference, ACCEPT_ALL_MANIFESTS).await
    }

    pub async fn head_manifest(&self, name: &str, reference: &str) -> Result<Fetched> {
        self.manifest(Method::HEAD, name, reference, ACCEPT_ALL_MANIFESTS).await
    }

    pub async fn manifest(&self, method: Method, name: &str, reference: &str, accept: &str) -> Result<Fetched> {
        let url = self.url(&format!("/v2/{name}/manifests/{reference}"));
        self.send(self.http.request(method, url).header(ACCEPT, accept)).await
    }

    pub async fn put_manifest(&self, name: &str, reference: &str, media_type: &str, body: &[u8]) -> Result<Fetched> {
        let url = self.url(&format!("/v2/{name}/manifests/{reference}"));
        self.send(self.http.put(url).header(CONTENT_TYPE, media_type).body(body.to_vec())).await
    }

    pub async fn delete_manifest(&self, name: &str, reference: &str) -> Result<Fetched> {
        self.request(Method::DELETE, &format!("/v2/{name}/manifests/{reference}")).await
    }

    pub async fn get_blob(&self, name: &str, digest: &str) -> Result<Fetched> {
        self.get(&format!("/v2/{name}/blobs/{digest}")).await
    }

    pub async fn head_blob(&self, name: &str, digest: &str) -> Result<Fetched> {
        self.request(Method::HEAD, &format!("/v2/{name}/blobs/{digest}")).await
    }

    /// GETs a blob streaming, hashing as it goes (for big blobs): (status, size, digest).
    pub async fn get_blob_hashed(&self, name: &str, digest: &str) -> Result<(StatusCode, u64, String)> {
        let mut resp = self.http.get(self.url(&format!("/v2/{name}/blobs/{digest}"))).send().await?;
        let status = resp.status();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((status, size, format!("sha256:{}", hex::encode(hasher.finalize()))))
    }

    /// Starts an upload session: `POST /v2/<name>/blobs/uploads/`.
    pub async fn start_upload(&self, name: &str) -> Result<Fetched> {
        let url = self.url(&format!("/v2/{name}/blobs/uploads/"));
        self.send(self.http.post(url).header(CONTENT_LENGTH, "0")).await
    }

    /// POST-then-PUT monolithic upload; returns the digest.
    pub async fn push_blob(&self, name: &str, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        let start = self.start_upload(name).await?;
        ensure!(start.status == StatusCode::ACCEPTED, "POST upload to {name}: {} {}", start.status, start.text());
        let mut url = self.location(&start)?;
        url.query_pairs_mut().append_pair("digest", &digest);
        let done =
            self.send(self.http.put(url).header(CONTENT_TYPE, "application/octet-stream").body(data.to_vec())).await?;
        ensure!(done.status == StatusCode::CREATED, "PUT upload to {name}: {} {}", done.status, done.text());
        Ok(digest)
    }

    pub async fn referrers(&self, name: &str, digest: &str, artifact_type: Option<&str>) -> Result<Fetched> {
        let mut path = format!("/v2/{name}/referrers/{digest}");
        if let Some(t) = artifact_type {
            path.push_str(&format!("?artifactType={}", url_escape(t)));
        }
        self.get(&path).await
    }

    /// `GET /v2/<name>/tags/list` with optional `n` and `last`.
    pub async fn tags(&self, name: &str, n: Option<usize>, last: Option<&str>) -> Result<Fetched> {
        let mut url = Url::parse(&self.url(&format!("/v2/{name}/tags/list")))?;
        if let Some(n) = n {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        if let Some(last) = last {
            url.query_pairs_mut().append_pair("last", last);
        }
        self.send(self.http.get(url)).await
    }

    /// The tag names of a successful tags/list response.
    pub async fn tag_names(&self, name: &str) -> Result<Vec<String>> {
        let r = self.tags(name, None, None).await?;
        ensure!(r.status.is_success(), "tags/list {name}: {} {}", r.status, r.text());
        Ok(tag_names(&r))
    }
}

pub fn tag_names(r: &Fetched) -> Vec<String> {
    r.json()["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)).collect()
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Deterministic pseudo-random bytes (xorshift64*), incompressible enough for tests.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A synthetic OCI image: a JSON config and noise "layers" (registries do not look
/// inside layers), unique per seed.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
}

impl TestImage {
    pub fn new(seed: u64, layer_sizes: &[usize]) -> Self {
        let layers: Vec<Vec<u8>> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| noise(seed.wrapping_mul(1000).wrapping_add(i as u64 + 1), n))
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "seed": seed.to_string() } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .expect("config JSON");
        let layer_descs: Vec<Value> = layers
            .iter()
            .map(|l| json!({ "mediaType": OCI_LAYER, "digest": sha256_digest(l), "size": l.len() }))
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len() },
            "layers": layer_descs,
        }))
        .expect("manifest JSON");
        TestImage { config, layers, manifest }
    }

    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    pub fn config_digest(&self) -> String {
        sha256_digest(&self.config)
    }

    pub fn layer_digest(&self, i: usize) -> String {
        sha256_digest(&self.layers[i])
    }

    /// The blob (config or layer) with this digest.
    pub fn blob(&self, digest: &str) -> Option<&[u8]> {
        std::iter::once(&self.config)
            .chain(self.layers.iter())
            .find(|b| sha256_digest(b) == digest)
            .map(|b| b.as_slice())
    }

    /// Pushes blobs, then the manifest under `tag`; returns the manifest PUT response.
    pub async fn push(&self, client: &OciClient, name: &str, tag: &str) -> Result<Fetched> {
        client.push_blob(name, &self.config).await.context("push config")?;
        for layer in &self.layers {
            client.push_blob(name, layer).await.context("push layer")?;
        }
        let r = client.put_manifest(name, tag, OCI_MANIFEST, &self.manifest).await?;
        ensure!(r.status == StatusCode::CREATED, "PUT manifest {name}:{tag}: {} {}", r.status, r.text());
        Ok(r)
    }
}
