//! Remote and virtual Helm repositories against local chart hosts (`ChartServer`, two
//! ports = two origins): the upstream index is cached as a mutable document (revalidated by
//! ETag or Last-Modified, served stale when the upstream is down), chart URLs of all three
//! shapes are rewritten to download through binaryrepo, archives are cached once and checked
//! against the index digest, credentials never go to another host; virtual repositories
//! merge their members' indexes; charts as OCI artifacts go through the docker repositories.

use anyhow::Result;
use reqwest::StatusCode;

use crate::helm_fixtures::{chart_yaml, package, package_with, send, sha256_hex, HelmClient};
use crate::helm_upstream::{ChartServer, Validator};
use crate::oci::{OciClient, OCI_MANIFEST};
use crate::server::{docker_repos, TestServer};

/// `helm-local` (hosted), `helm-remote` over `upstream` (index always revalidated) and
/// `helm` (virtual over both, uploads to helm-local).
fn helm_trio(upstream: &str, remote_extra: &str) -> String {
    format!(
        r#"
[[repository]]
name = "helm-local"
format = "helm"
kind = "hosted"

[[repository]]
name = "helm-remote"
format = "helm"
kind = "remote"
upstream = "{upstream}"
metadata_ttl = "0s"
negative_ttl = "0s"
{remote_extra}

[[repository]]
name = "helm"
format = "helm"
kind = "virtual"
members = ["helm-local", "helm-remote"]
deploy_to = "helm-local"
"#
    )
}

/// An upstream index listing `(name, version, url, archive)` (versions of a chart next to
/// each other) with their digests.
fn upstream_index(charts: &[(&str, &str, String, &[u8])]) -> String {
    let mut text = String::from("apiVersion: v1\nentries:\n");
    let mut previous = "";
    for (name, version, url, archive) in charts {
        if *name != previous {
            text.push_str(&format!("  {name}:\n"));
            previous = name;
        }
        for line in chart_yaml(name, version).lines() {
            let prefix = if line.starts_with("apiVersion") { "  - " } else { "    " };
            text.push_str(&format!("{prefix}{line}\n"));
        }
        text.push_str(&format!(
            "    urls:\n      - {url}\n    created: \"2026-01-01T00:00:00Z\"\n    digest: {}\n",
            sha256_hex(archive)
        ));
    }
    text.push_str("generated: \"2026-01-01T00:00:00Z\"\n");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_rewrites_three_url_shapes_caches_and_serves_stale() -> Result<()> {
    let up = ChartServer::start(Validator::ETag).await;
    let downloads = ChartServer::start(Validator::ETag).await;
    let (rel, abs, other) = (package("rel", "1.0.0"), package("abs", "2.0.0"), package("other", "3.0.0"));
    up.put("/charts/files/rel-1.0.0.tgz", rel.clone());
    let rel_prov = crate::helm_fixtures::prov("rel", "1.0.0", &rel);
    up.put("/charts/files/rel-1.0.0.tgz.prov", rel_prov.clone());
    up.put("/dl/abs.tgz", abs.clone());
    downloads.put("/releases/other-3.0.0.tgz", other.clone());
    let index = upstream_index(&[
        ("rel", "1.0.0", "files/rel-1.0.0.tgz".into(), &rel),
        ("abs", "2.0.0", up.url("/dl/abs.tgz"), &abs),
        ("other", "3.0.0", downloads.url("/releases/other-3.0.0.tgz"), &other),
    ]);
    up.put("/charts/index.yaml", index);
    let srv = TestServer::start(&helm_trio(&up.url("/charts"), "")).await;
    let helm = HelmClient::new(&format!("{}/helm-remote", srv.base_url()));

    let listed = helm.index().await?;
    for (name, version) in [("rel", "1.0.0"), ("abs", "2.0.0"), ("other", "3.0.0")] {
        let entry = &listed.entries[name][0];
        assert_eq!(entry.urls, [format!("{name}-{version}.tgz")], "rewritten to download through binaryrepo");
        assert_eq!(entry.maintainers[0]["name"], "Ada Lovelace", "metadata passes through");
    }
    assert_eq!(helm.pull("rel", "1.0.0").await?, rel);
    let r = send(helm.http.get(format!("{}/helm-remote/rel-1.0.0.tgz.prov", srv.base_url()))).await?;
    assert_eq!((r.status, r.text()), (StatusCode::OK, rel_prov), "the .prov beside the upstream chart");
    let r = send(helm.http.head(format!("{}/helm-remote/rel-1.0.0.tgz", srv.base_url()))).await?;
    assert_eq!(r.header("content-length"), Some(rel.len().to_string().as_str()));
    assert_eq!(r.header("cache-status"), Some("binaryrepo; hit"));
    assert_eq!(helm.pull("abs", "2.0.0").await?, abs);
    assert_eq!(helm.pull("other", "3.0.0").await?, other);
    // Again: archives come from the cache; the index is revalidated by ETag, not refetched.
    assert_eq!(helm.pull("other", "3.0.0").await?, other);
    assert_eq!(up.hits("GET", "/charts/files/rel-1.0.0.tgz"), 1);
    assert_eq!(up.hits("GET", "/dl/abs.tgz"), 1);
    assert_eq!(downloads.hits("GET", "/releases/other-3.0.0.tgz"), 1);
    assert_eq!(up.hits("GET", "/charts/index.yaml"), 1);
    assert!(up.hits("HEAD", "/charts/index.yaml") >= 4);

    // The upstream changes: a new version appears after revalidation.
    let newer = package("rel", "1.1.0");
    up.put("/charts/files/rel-1.1.0.tgz", newer.clone());
    up.put(
        "/charts/index.yaml",
        upstream_index(&[
            ("rel", "1.0.0", "files/rel-1.0.0.tgz".into(), &rel),
            ("rel", "1.1.0", "files/rel-1.1.0.tgz".into(), &newer),
            ("abs", "2.0.0", up.url("/dl/abs.tgz"), &abs),
            ("other", "3.0.0", downloads.url("/releases/other-3.0.0.tgz"), &other),
        ]),
    );
    let listed = helm.index().await?;
    let versions: Vec<&str> = listed.entries["rel"].iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"]);

    // Both hosts go away: the cached index is served stale, cached charts still download.
    up.stop();
    downloads.stop();
    let r = send(helm.http.get(helm.index_url())).await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.header("cache-status").unwrap_or("").contains("stale"), "{:?}", r.header("cache-status"));
    assert_eq!(helm.pull("other", "3.0.0").await?, other);
    assert_eq!(helm.pull("rel", "1.0.0").await?, rel);
    assert!(helm.pull("rel", "1.1.0").await.is_err(), "never fetched, and the upstream is gone");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_rejects_archives_that_do_not_match_the_index_digest() -> Result<()> {
    let up = ChartServer::start(Validator::ETag).await;
    let listed = package("app", "1.0.0");
    let served = package_with("app", &chart_yaml("app", "1.0.0"), "tampered");
    up.put("/app-1.0.0.tgz", served.clone());
    up.put("/index.yaml", upstream_index(&[("app", "1.0.0", "app-1.0.0.tgz".into(), &listed)]));
    let srv = TestServer::start(&helm_trio(&up.url(""), "")).await;
    let helm = HelmClient::new(&format!("{}/helm-remote", srv.base_url()));
    let url = format!("{}/helm-remote/app-1.0.0.tgz", srv.base_url());
    // Small enough to verify before answering: a clear 502, never `stored`.
    let r = send(helm.http.get(&url)).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap_or_default().contains("verification"), "{}", r.text());
    let cache = r.header("cache-status").unwrap_or_default().to_string();
    assert!(!cache.is_empty() && !cache.contains("stored"), "{cache:?}");
    for attempt in 1..=2 {
        let outcome = match helm.http.get(&url).send().await {
            Ok(r) if r.status() == StatusCode::OK => r.bytes().await.map(|b| b.to_vec()).map_err(|e| e.to_string()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        };
        assert!(outcome.is_err(), "attempt {attempt}: a mismatching archive must not be served whole");
    }
    assert!(helm.pull("app", "1.0.0").await.is_err());
    // Once the upstream serves the listed archive, that is what arrives: nothing bad was cached.
    up.put("/app-1.0.0.tgz", listed.clone());
    let r = send(helm.http.get(&url)).await?;
    assert_eq!((r.status, r.body.to_vec()), (StatusCode::OK, listed.clone()));
    assert_eq!(r.header("cache-status"), Some("binaryrepo; fwd=uri-miss; stored"), "verified, then answered");
    assert_eq!(helm.pull("app", "1.0.0").await?, listed);
    assert!(up.hits("GET", "/app-1.0.0.tgz") >= 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_revalidates_by_last_modified_and_keeps_credentials_home() -> Result<()> {
    let up = ChartServer::start(Validator::LastModified).await;
    let elsewhere = ChartServer::start(Validator::ETag).await;
    let (app, far) = (package("app", "1.0.0"), package("far", "1.0.0"));
    up.put("/app-1.0.0.tgz", app.clone());
    elsewhere.put("/far-1.0.0.tgz", far.clone());
    up.put(
        "/index.yaml",
        upstream_index(&[
            ("app", "1.0.0", "app-1.0.0.tgz".into(), &app),
            ("far", "1.0.0", elsewhere.url("/far-1.0.0.tgz"), &far),
        ]),
    );
    let creds = "username = \"robot\"\npassword = \"s3cret\"";
    let srv = TestServer::start(&helm_trio(&up.url(""), creds)).await;
    let helm = HelmClient::new(&format!("{}/helm-remote", srv.base_url()));
    for _ in 0..3 {
        helm.index().await?;
    }
    assert_eq!(up.hits("GET", "/index.yaml"), 1, "Last-Modified unchanged: no refetch");
    assert_eq!(helm.pull("app", "1.0.0").await?, app);

    elsewhere.demand_auth();
    let r = send(helm.http.get(format!("{}/helm-remote/far-1.0.0.tgz", srv.base_url()))).await?;
    assert_ne!(r.status, StatusCode::OK);
    assert!(elsewhere.hits("GET", "/far-1.0.0.tgz") >= 1);
    assert!(
        elsewhere.authorizations().is_empty(),
        "credentials went to another host: {:?}",
        elsewhere.authorizations()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_merges_indexes_first_member_wins_and_uploads_to_deploy_target() -> Result<()> {
    let up = ChartServer::start(Validator::ETag).await;
    let (theirs, only_up) =
        (package_with("shared", &chart_yaml("shared", "1.0.0"), "upstream"), package("remote-only", "0.5.0"));
    let private = package("internal-app", "9.9.9");
    up.put("/shared-1.0.0.tgz", theirs.clone());
    up.put("/remote-only-0.5.0.tgz", only_up.clone());
    up.put("/internal-app-9.9.9.tgz", private.clone());
    up.put(
        "/index.yaml",
        upstream_index(&[
            ("shared", "1.0.0", "shared-1.0.0.tgz".into(), &theirs),
            ("remote-only", "0.5.0", "remote-only-0.5.0.tgz".into(), &only_up),
            ("internal-app", "9.9.9", "internal-app-9.9.9.tgz".into(), &private),
        ]),
    );
    let srv = TestServer::start(&helm_trio(&up.url(""), r#"exclude = ["internal-*"]"#)).await;
    let http = reqwest::Client::new();
    let ours = package("shared", "1.0.0");
    // Uploads to the virtual repository land in helm-local; the remote refuses them.
    let r = send(http.put(format!("{}/helm/shared-1.0.0.tgz", srv.base_url())).body(ours.clone())).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(http.post(format!("{}/api/helm-remote/charts", srv.base_url())).body(ours.clone())).await?;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text());
    let local = HelmClient::new(&format!("{}/helm-local", srv.base_url()));
    assert_eq!(local.pull("shared", "1.0.0").await?, ours);

    let virt = HelmClient::new(&format!("{}/helm", srv.base_url()));
    let index = virt.index().await?;
    assert_eq!(index.entries.keys().collect::<Vec<_>>(), ["remote-only", "shared"], "excluded names are not listed");
    assert_eq!(index.entries["shared"].len(), 1);
    assert_eq!(index.entries["shared"][0].digest.as_deref(), Some(sha256_hex(&ours).as_str()), "first member wins");
    assert_eq!(index.entries["remote-only"][0].urls, ["remote-only-0.5.0.tgz"], "URLs point at the virtual repository");
    assert_eq!(virt.pull("shared", "1.0.0").await?, ours);
    assert_eq!(virt.pull("remote-only", "0.5.0").await?, only_up);
    assert_eq!(up.hits("GET", "/shared-1.0.0.tgz"), 0);
    let r = send(http.get(format!("{}/helm/internal-app-9.9.9.tgz", srv.base_url()))).await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "excluded names are not fetched: {}", r.text());
    assert_eq!(up.hits("GET", "/internal-app-9.9.9.tgz"), 0);
    let api = send(http.get(format!("{}/api/helm/charts", srv.base_url()))).await?.json();
    assert_eq!(api["remote-only"][0]["version"], "0.5.0");

    // A new local version shows up in the merged index at once.
    let r = send(http.post(format!("{}/api/helm/charts", srv.base_url())).body(package("shared", "1.1.0"))).await?;
    assert_eq!(r.status, StatusCode::CREATED);
    let versions: Vec<String> = virt.index().await?.entries["shared"].iter().map(|v| v.version.clone()).collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"]);

    // Deletes through the virtual repository reach deploy_to only: a remote's chart is a 405.
    let r = send(http.delete(format!("{}/api/helm/charts/remote-only/0.5.0", srv.base_url()))).await?;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text());
    let message = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("deploy_to") && message.contains("helm-local"), "{message}");
    assert_eq!(virt.pull("remote-only", "0.5.0").await?, only_up);
    let r = send(http.delete(format!("{}/api/helm/charts/shared/1.1.0", srv.base_url()))).await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    Ok(())
}

const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const HELM_CHART: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
const HELM_PROV: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";

/// `helm push` at the HTTP level: config and chart layer blobs, then the manifest by tag.
async fn helm_push(oci: &OciClient, name: &str, chart: &[u8]) -> Result<(String, Vec<u8>)> {
    let config = br#"{"apiVersion":"v2","name":"demo","version":"0.1.0","description":"OCI chart"}"#;
    let config_digest = oci.push_blob(name, config).await?;
    let layer_digest = oci.push_blob(name, chart).await?;
    let prov = crate::helm_fixtures::prov("demo", "0.1.0", chart);
    let prov_digest = oci.push_blob(name, prov.as_bytes()).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": HELM_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [
            { "mediaType": HELM_CHART, "digest": layer_digest, "size": chart.len() },
            { "mediaType": HELM_PROV, "digest": prov_digest, "size": prov.len() },
        ],
        "annotations": { "org.opencontainers.image.title": "demo", "org.opencontainers.image.version": "0.1.0" }
    });
    let body = serde_json::to_vec(&manifest)?;
    let r = oci.put_manifest(name, "0.1.0", OCI_MANIFEST, &body).await?;
    anyhow::ensure!(r.status == StatusCode::CREATED, "PUT manifest: {} {}", r.status, r.text());
    Ok((layer_digest, body))
}

/// `helm pull oci://…`: manifest by tag, then the chart layer, checked by digest.
async fn helm_pull(oci: &OciClient, name: &str) -> Result<Vec<u8>> {
    let m = oci.manifest(reqwest::Method::GET, name, "0.1.0", OCI_MANIFEST).await?;
    anyhow::ensure!(m.status == StatusCode::OK, "GET manifest {name}: {} {}", m.status, m.text());
    let manifest = m.json();
    anyhow::ensure!(manifest["config"]["mediaType"] == HELM_CONFIG, "config media type {}", manifest["config"]);
    let layer = manifest["layers"][0]["digest"].as_str().unwrap_or_default().to_string();
    let blob = oci.get_blob(name, &layer).await?;
    anyhow::ensure!(blob.status == StatusCode::OK, "GET chart layer: {}", blob.status);
    anyhow::ensure!(format!("sha256:{}", sha256_hex(&blob.body)) == layer, "layer digest mismatch");
    Ok(blob.body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_as_oci_artifacts_push_to_hosted_pull_through_remote_and_virtual() -> Result<()> {
    let upstream = TestServer::start(&docker_repos(crate::server::NO_UPSTREAM)).await;
    let srv = TestServer::start(&docker_repos(&upstream.base_url())).await;
    let chart = package("demo", "0.1.0");
    let up = OciClient::new(&upstream.base_url());
    let (layer, manifest) = helm_push(&up, "docker-local/charts/demo", &chart).await?;
    assert_eq!(helm_pull(&up, "docker-local/charts/demo").await?, chart);

    let oci = OciClient::new(&srv.base_url());
    // Through the remote (whose upstream holds the chart under docker-local/charts/demo) and
    // the virtual repository over it.
    assert_eq!(helm_pull(&oci, "docker-remote/docker-local/charts/demo").await?, chart);
    assert_eq!(helm_pull(&oci, "docker/docker-local/charts/demo").await?, chart);
    let m = oci.get_manifest("docker-remote/docker-local/charts/demo", "0.1.0").await?;
    assert_eq!(m.body.as_ref(), manifest.as_slice(), "manifest bytes unchanged");
    // Pushed through the virtual repository: lands in docker-local.
    helm_push(&oci, "docker/charts/demo", &chart).await?;
    assert_eq!(helm_pull(&oci, "docker-local/charts/demo").await?, chart);
    assert_eq!(oci.get_blob("docker-local/charts/demo", &layer).await?.status, StatusCode::OK);
    let tags = oci.tag_names("docker/charts/demo").await?;
    assert_eq!(tags, ["0.1.0"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_serves_its_other_members_when_a_remote_is_unreachable() -> Result<()> {
    let srv = TestServer::start(&helm_trio(crate::server::NO_UPSTREAM, "")).await;
    let http = reqwest::Client::new();
    let local = package("app", "1.0.0");
    let r = send(http.put(format!("{}/helm/app-1.0.0.tgz", srv.base_url())).body(local.clone())).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let virt = HelmClient::new(&format!("{}/helm", srv.base_url()));
    assert_eq!(virt.index().await?.entries.keys().collect::<Vec<_>>(), ["app"]);
    assert_eq!(virt.pull("app", "1.0.0").await?, local);
    let r = send(http.get(format!("{}/helm/nope-1.0.0.tgz", srv.base_url()))).await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a clean miss in one member is the answer: {}", r.text());
    let r = send(http.get(format!("{}/helm-remote/index.yaml", srv.base_url()))).await?;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap_or_default().contains("unreachable"), "{}", r.text());
    // Every read answer of a remote or virtual repository says what the cache did, errors too
    // (also those refused before serving: a malformed file name, an unknown API path).
    for path in [
        "helm-remote/index.yaml",
        "helm-remote/app-1.0.0.tgz",
        "helm/nope-1.0.0.tgz",
        "helm/nope.tgz",
        "helm/README.md",
        "api/helm/charts/nope",
        "api/helm-remote/charts",
        "api/helm/nope",
    ] {
        let r = send(http.get(format!("{}/{path}", srv.base_url()))).await?;
        assert!(!r.status.is_success(), "{path}: {}", r.status);
        assert!(r.header("cache-status").is_some_and(|v| v.starts_with("binaryrepo")), "{path}: {:?}", r.headers);
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    }
    let r = send(http.get(format!("{}/helm/index.yaml", srv.base_url()))).await?;
    assert!(r.header("cache-status").is_some(), "{:?}", r.headers);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_follows_an_upstream_that_republishes_a_version_with_other_bytes() -> Result<()> {
    let up = ChartServer::start(Validator::ETag).await;
    let first = package("app", "1.0.0");
    let second = package_with("app", &chart_yaml("app", "1.0.0"), "republished");
    up.put("/app-1.0.0.tgz", first.clone());
    up.put("/app-1.0.0.tgz.prov", crate::helm_fixtures::prov("app", "1.0.0", &first));
    up.put("/index.yaml", upstream_index(&[("app", "1.0.0", "app-1.0.0.tgz".into(), &first)]));
    let srv = TestServer::start(&helm_trio(&up.url(""), "")).await;
    for repo in ["helm-remote", "helm"] {
        let helm = HelmClient::new(&format!("{}/{repo}", srv.base_url()));
        assert_eq!(helm.pull("app", "1.0.0").await?, first, "{repo}");
    }
    let prov_url = format!("{}/helm-remote/app-1.0.0.tgz.prov", srv.base_url());
    assert!(send(reqwest::Client::new().get(&prov_url)).await?.text().contains(&sha256_hex(&first)));

    // Same name and version, other bytes, new digest in the index.
    up.put("/app-1.0.0.tgz", second.clone());
    up.put("/app-1.0.0.tgz.prov", crate::helm_fixtures::prov("app", "1.0.0", &second));
    up.put("/index.yaml", upstream_index(&[("app", "1.0.0", "app-1.0.0.tgz".into(), &second)]));
    for repo in ["helm-remote", "helm"] {
        let helm = HelmClient::new(&format!("{}/{repo}", srv.base_url()));
        let index = helm.index().await?;
        assert_eq!(index.entries["app"][0].digest.as_deref(), Some(sha256_hex(&second).as_str()), "{repo}");
        // `pull` checks the bytes against the index's digest, as Helm does.
        assert_eq!(helm.pull("app", "1.0.0").await?, second, "{repo}: the index and the bytes agree");
    }
    assert_eq!(up.hits("GET", "/app-1.0.0.tgz"), 2, "fetched once per published archive");
    let r = send(reqwest::Client::new().get(&prov_url)).await?;
    assert!(r.text().contains(&sha256_hex(&second)), "the provenance file of the new archive: {}", r.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_checks_archives_the_index_gives_no_digest_for() -> Result<()> {
    let up = ChartServer::start(Validator::ETag).await;
    let elsewhere = ChartServer::start(Validator::ETag).await;
    let real = package("far", "1.0.0");
    elsewhere.put("/far-1.0.0.tgz", b"<html>not a chart</html>".to_vec());
    let index = upstream_index(&[("far", "1.0.0", elsewhere.url("/far-1.0.0.tgz"), &real)])
        .replace(&format!("    digest: {}\n", sha256_hex(&real)), "");
    assert!(!index.contains("digest"), "{index}");
    up.put("/index.yaml", index);
    let srv = TestServer::start(&helm_trio(&up.url(""), "")).await;
    let http = reqwest::Client::new();
    let url = format!("{}/helm-remote/far-1.0.0.tgz", srv.base_url());
    let r = send(http.get(&url)).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap_or_default().contains("gzip"), "{}", r.text());
    // Another chart's archive is refused too.
    elsewhere.put("/far-1.0.0.tgz", package("near", "1.0.0"));
    let r = send(http.get(&url)).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap_or_default().contains("not far-1.0.0"), "{}", r.text());
    // Nothing bad was cached: the real archive arrives once it is there.
    elsewhere.put("/far-1.0.0.tgz", real.clone());
    let r = send(http.get(&url)).await?;
    assert_eq!((r.status, r.body.to_vec()), (StatusCode::OK, real.clone()));
    let r = send(http.get(&url)).await?;
    assert_eq!((r.status, r.header("cache-status")), (StatusCode::OK, Some("binaryrepo; hit")));
    assert_eq!(elsewhere.hits("GET", "/far-1.0.0.tgz"), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upstream_index_is_served_stale_with_cache_status() -> Result<()> {
    let up = ChartServer::start(Validator::ETag).await;
    let app = package("app", "1.0.0");
    up.put("/app-1.0.0.tgz", app.clone());
    up.put("/index.yaml", upstream_index(&[("app", "1.0.0", "app-1.0.0.tgz".into(), &app)]));
    let srv = TestServer::start(&helm_trio(&up.url(""), "")).await;
    let helm = HelmClient::new(&format!("{}/helm-remote", srv.base_url()));
    assert_eq!(helm.index().await?.entries.keys().collect::<Vec<_>>(), ["app"]);
    // The upstream's index grows past the 128 MiB limit: refused, the cached one served stale.
    let mut huge = upstream_index(&[("app", "1.0.0", "app-1.0.0.tgz".into(), &app)]).into_bytes();
    huge.resize(129 << 20, b'\n');
    up.put("/index.yaml", huge);
    for repo in ["helm-remote", "helm"] {
        let http = reqwest::Client::new();
        for head in [false, true] {
            let url = format!("{}/{repo}/index.yaml", srv.base_url());
            let r = send(if head { http.head(&url) } else { http.get(&url) }).await?;
            assert_eq!(r.status, StatusCode::OK, "{repo}");
            let cache = r.header("cache-status").unwrap_or_default().to_string();
            assert!(cache.contains("stale") && cache.contains("exceeds"), "{repo} head={head}: {cache:?}");
        }
    }
    assert_eq!(helm.pull("app", "1.0.0").await?, app);
    Ok(())
}
