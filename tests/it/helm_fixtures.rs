//! Helm test fixtures made in code, byte-for-byte deterministic: chart archives shaped like
//! `helm package` output (`<name>/Chart.yaml` first, values, templates, a packaged
//! dependency under `charts/`), a clear-signed provenance file in Helm's layout, and a
//! client that uses a chart repository exactly as Helm does (fetch index.yaml, resolve the
//! chart URL against the index URL, download, check the sha256 digest).

use std::collections::BTreeMap;

use anyhow::{anyhow, ensure, Context, Result};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::oci::Fetched;

/// A realistic Chart.yaml: dependencies, maintainers, annotations, kubeVersion, keywords.
pub fn chart_yaml(name: &str, version: &str) -> String {
    format!(
        r#"apiVersion: v2
name: {name}
version: {version}
appVersion: "1.25.3"
description: |
  A test chart for {name}.
  Second line of the description.
type: application
keywords:
  - web
  - http
home: https://charts.example.com/{name}
sources:
  - https://git.example.com/{name}
maintainers:
  - name: Ada Lovelace
    email: ada@example.com
    url: https://example.com/ada
icon: https://charts.example.com/{name}/icon.png
kubeVersion: ">=1.22.0-0"
annotations:
  category: Infrastructure
  artifacthub.io/license: Apache-2.0
dependencies:
  - name: common
    version: 2.x.x
    repository: https://charts.example.com/stable
    tags:
      - bitnami-common
  - name: redis
    version: "~17.0"
    repository: https://charts.example.com/stable
    condition: redis.enabled
    alias: cache
"#
    )
}

/// `helm package` of a chart `name` `version` whose Chart.yaml is `chart_yaml`; `salt`
/// changes the values (same name and version, different bytes).
pub fn package_with(dir: &str, chart_yaml: &str, salt: &str) -> Vec<u8> {
    let common = tgz(&[
        ("common/Chart.yaml", "apiVersion: v2\nname: common\nversion: 2.2.1\ntype: library\n"),
        ("common/templates/_names.tpl", "{{- define \"common.name\" -}}{{ .Chart.Name }}{{- end -}}\n"),
    ]);
    let values = format!("replicaCount: 1\nimage:\n  repository: nginx\n  tag: stable\nsalt: {salt:?}\n");
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ include \"common.name\" . }}\n";
    let files: Vec<(String, Vec<u8>)> = vec![
        (format!("{dir}/Chart.yaml"), chart_yaml.as_bytes().to_vec()),
        (format!("{dir}/values.yaml"), values.into_bytes()),
        (format!("{dir}/templates/deployment.yaml"), deployment.as_bytes().to_vec()),
        (format!("{dir}/charts/common-2.2.1.tgz"), common),
    ];
    tgz_bytes(&files)
}

pub fn package(name: &str, version: &str) -> Vec<u8> {
    package_with(name, &chart_yaml(name, version), "")
}

pub fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
    let files: Vec<(String, Vec<u8>)> = files.iter().map(|(p, b)| (p.to_string(), b.as_bytes().to_vec())).collect();
    tgz_bytes(&files)
}

fn tgz_bytes(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        tar.append_data(&mut header, path, body.as_slice()).expect("tar append");
    }
    tar.into_inner().expect("tar finish").finish().expect("gzip finish")
}

/// A provenance file as `helm package --sign` writes it (the signature is a placeholder:
/// the server stores and serves it, verification is the client's job).
pub fn prov(name: &str, version: &str, archive: &[u8]) -> String {
    format!(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{}\n...\nfiles:\n  {name}-{version}.tgz: sha256:{}\n-----BEGIN PGP SIGNATURE-----\n\nwsBcBAEBCgAQBQJlb2JhCRBLfCRNTESTSIG\n=abcd\n-----END PGP SIGNATURE-----\n",
        chart_yaml(name, version).trim_end(),
        sha256_hex(archive)
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// index.yaml as the chart-repository documentation defines it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexFile {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub entries: BTreeMap<String, Vec<IndexVersion>>,
    pub generated: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexVersion {
    pub api_version: String,
    pub name: String,
    pub version: String,
    pub app_version: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    pub home: Option<String>,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub maintainers: Vec<serde_yaml::Value>,
    pub icon: Option<String>,
    #[serde(default)]
    pub dependencies: Vec<serde_yaml::Value>,
    #[serde(rename = "type")]
    pub chart_type: Option<String>,
    #[serde(default)]
    pub deprecated: bool,
    pub kube_version: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub urls: Vec<String>,
    pub created: String,
    pub digest: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// What the Helm client does with a chart repository at `repo_url` (ending in `/`).
pub struct HelmClient {
    pub http: reqwest::Client,
    pub repo_url: Url,
}

impl HelmClient {
    pub fn new(repo_url: &str) -> HelmClient {
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let repo_url = Url::parse(&format!("{}/", repo_url.trim_end_matches('/'))).expect("repo url");
        HelmClient { http, repo_url }
    }

    pub fn index_url(&self) -> Url {
        self.repo_url.join("index.yaml").expect("index url")
    }

    pub async fn index(&self) -> Result<IndexFile> {
        let response = self.http.get(self.index_url()).send().await?;
        ensure!(response.status() == StatusCode::OK, "GET index.yaml: {}", response.status());
        let text = response.text().await?;
        let index: IndexFile = serde_yaml::from_str(&text).with_context(|| format!("index.yaml:\n{text}"))?;
        ensure!(index.api_version == "v1", "apiVersion {}", index.api_version);
        Ok(index)
    }

    /// `helm pull name --version v`: the archive, checked against the index digest.
    pub async fn pull(&self, name: &str, version: &str) -> Result<Vec<u8>> {
        let index = self.index().await?;
        let entry = index
            .entries
            .get(name)
            .and_then(|vs| vs.iter().find(|v| v.version == version))
            .ok_or_else(|| anyhow!("{name} {version} not in index"))?;
        let url = self.index_url().join(entry.urls.first().ok_or_else(|| anyhow!("no urls"))?)?;
        let response = self.http.get(url.clone()).send().await?;
        ensure!(response.status() == StatusCode::OK, "GET {url}: {}", response.status());
        let bytes = response.bytes().await?.to_vec();
        let digest = entry.digest.as_deref().ok_or_else(|| anyhow!("no digest"))?;
        ensure!(sha256_hex(&bytes) == digest, "digest mismatch for {url}");
        Ok(bytes)
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Result<Fetched> {
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Fetched { status, headers, body })
}

/// A multipart body as `helm cm-push` sends it: `chart` and optionally `prov` file fields.
pub fn multipart(chart: Option<(&str, &[u8])>, prov: Option<(&str, &str)>) -> (String, Vec<u8>) {
    let boundary = "binaryrepo-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    let mut part = |field: &str, file: &str, bytes: &[u8]| {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    };
    if let Some((file, bytes)) = chart {
        part("chart", file, bytes);
    }
    if let Some((file, text)) = prov {
        part("prov", file, text.as_bytes());
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
