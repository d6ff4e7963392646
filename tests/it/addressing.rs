//! How clients reach a repository and how the server is configured: the port
//! method (an extra listener per repository), the host method (`Host` header), the
//! embedded default configuration (no config file), config errors and
//! `sample-config`, `public_url` in `Location` headers, and native TLS.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::HOST;
use reqwest::StatusCode;
use serde_json::Value;

use crate::clients::{run, Skopeo};
use crate::images::{images, layout_digest, sha256_digest, verify_layout_blobs};
use crate::oci::{Fetched, OciClient, TestImage, ACCEPT_ALL_MANIFESTS, OCI_MANIFEST};
use crate::server::{docker_repos, free_port, ServerOptions, TestServer, NO_UPSTREAM};
use crate::upstream::FakeUpstream;

/// Proxy variables that send any upstream traffic of the server, except to loopback,
/// to a closed loopback port, so a test using the embedded default (Docker Hub) can
/// never reach the internet.
fn no_internet_env() -> Vec<(String, String)> {
    let dead = "http://127.0.0.1:9".to_string();
    let mut env = Vec::new();
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        env.push((var.to_string(), dead.clone()));
        env.push((var.to_ascii_lowercase(), dead.clone()));
    }
    env.push(("NO_PROXY".into(), "127.0.0.1,localhost".into()));
    env.push(("no_proxy".into(), "127.0.0.1,localhost".into()));
    env
}

fn listen_env(port: u16) -> (String, String) {
    ("BINARYREPO_SERVER__LISTEN".into(), format!("127.0.0.1:{port}"))
}

/// `repositories` of a `_catalog` answer, sorted.
fn catalog_names(r: &Fetched) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "_catalog: {}", r.text());
    let mut names: Vec<String> = r.json()["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ------------------------------------------------------------------ port method

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_method_serves_one_repository_without_its_key() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let port = free_port();
    let repos = format!(
        r#"
[[repository]]
name = "docker-local"
format = "docker"
kind = "hosted"
port = {port}

[[repository]]
name = "other-local"
format = "docker"
kind = "hosted"
"#
    );
    let srv = TestServer::start(&repos).await;
    let want = img.digest("busybox", "1.0");
    let on_port = format!("127.0.0.1:{port}");

    // skopeo pushes to HOST:PORT/busybox:1.0 — no repository key in the name.
    sk.copy(&img.oci("busybox", "1.0"), &format!("docker://{on_port}/busybox:1.0")).await?;
    assert_eq!(sk.inspect_digest(&format!("docker://{on_port}/busybox:1.0")).await?, want);

    // It landed in docker-local: visible with the path method on the main listener.
    let main = OciClient::new(&srv.base_url());
    let head = main.head_manifest("docker-local/busybox", "1.0").await?;
    assert_eq!(head.status, StatusCode::OK, "path method after a port-method push");
    assert_eq!(head.header("docker-content-digest"), Some(want));
    for d in img.children("busybox", want) {
        let blob = main.get_blob("docker-local/busybox", &d.digest).await?;
        assert_eq!(blob.status, StatusCode::OK, "blob {}", d.digest);
        assert_eq!(sha256_digest(&blob.body), d.digest);
    }
    assert_eq!(sk.inspect_digest(&format!("docker://{}/docker-local/busybox:1.0", srv.addr())).await?, want);

    // And the other way round: a path-method push is visible on the port listener.
    let port_client = OciClient::new(&format!("http://{on_port}"));
    assert_eq!(port_client.get("/v2/").await?.status, StatusCode::OK);
    let pathpushed = TestImage::new(31, &[512]);
    pathpushed.push(&main, "docker-local/pathpushed", "1").await?;
    let got = port_client.get_manifest("pathpushed", "1").await?;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    assert_eq!(got.body.as_ref(), pathpushed.manifest.as_slice());
    assert_eq!(port_client.tag_names("busybox").await?, vec!["1.0".to_string()]);

    // Another repository is not reachable through docker-local's listener.
    TestImage::new(32, &[256]).push(&main, "other-local/thing", "1").await?;
    let foreign = port_client.get_manifest("other-local/thing", "1").await?;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "port listener leaked another repository: {}", foreign.text());

    // Uploads started on the port listener point back at it without a key.
    let start = port_client.start_upload("busybox").await?;
    assert_eq!(start.status, StatusCode::ACCEPTED, "{}", start.text());
    let loc = start.header("location").context("upload Location")?;
    assert!(loc.starts_with("/v2/busybox/blobs/uploads/"), "Location on the port listener: {loc}");

    // _catalog: names without the key on the port listener, `<repo>/<name>` on the main one.
    assert_eq!(catalog_names(&port_client.get("/v2/_catalog").await?), strings(&["busybox", "pathpushed"]));
    assert_eq!(
        catalog_names(&main.get("/v2/_catalog").await?),
        strings(&["docker-local/busybox", "docker-local/pathpushed", "other-local/thing"])
    );
    assert!(srv.log().contains(&format!("listening on http://127.0.0.1:{port} (repository docker-local)")));
    Ok(())
}

// ------------------------------------------------------------------ host method

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_method_maps_host_header_to_repository() -> Result<()> {
    let repos = format!(
        r#"
[[repository]]
name = "docker-local"
format = "docker"
kind = "hosted"
hosts = ["docker-local.example.com"]

[[repository]]
name = "docker-remote"
format = "docker"
kind = "remote"
upstream = "{NO_UPSTREAM}"
"#
    );
    let srv = TestServer::start(&repos).await;
    let port = srv.port();
    let addr: SocketAddr = srv.addr().parse()?;

    // `Host: docker-local.example.com:PORT`, as a client that resolved the name sends it.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .resolve("docker-local.example.com", addr)
        .build()?;
    let by_host = OciClient::with_http(&format!("http://docker-local.example.com:{port}"), http);
    let image = TestImage::new(41, &[1000, 2000]);
    image.push(&by_host, "hostpushed", "1").await.context("push through the host method")?;
    let m = by_host.get_manifest("hostpushed", "1").await?;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());
    assert_eq!(m.header("docker-content-digest"), Some(image.digest().as_str()));

    // It is in docker-local.
    let main = OciClient::new(&srv.base_url());
    let by_path = main.get_manifest("docker-local/hostpushed", "1").await?;
    assert_eq!(by_path.status, StatusCode::OK, "{}", by_path.text());
    assert_eq!(by_path.body.as_ref(), image.manifest.as_slice());

    // Explicit Host headers: without a port, and in another case.
    let url = main.url("/v2/hostpushed/manifests/1");
    for host in ["docker-local.example.com", "DOCKER-LOCAL.Example.COM", &format!("docker-local.example.com:{port}")] {
        let r = main.send(main.http().get(&url).header(HOST, host).header("accept", ACCEPT_ALL_MANIFESTS)).await?;
        assert_eq!(r.status, StatusCode::OK, "Host: {host}: {}", r.text());
        assert_eq!(r.body.as_ref(), image.manifest.as_slice(), "Host: {host}");
        let blob = main
            .send(
                main.http()
                    .get(main.url(&format!("/v2/hostpushed/blobs/{}", image.layer_digest(1))))
                    .header(HOST, host),
            )
            .await?;
        assert_eq!(blob.status, StatusCode::OK, "Host: {host}");
        assert_eq!(blob.body.as_ref(), image.layers[1].as_slice());
    }

    // _catalog through the host: names without the key.
    let cat = main.send(main.http().get(main.url("/v2/_catalog")).header(HOST, "docker-local.example.com")).await?;
    assert_eq!(catalog_names(&cat), strings(&["hostpushed"]));

    // An unmapped host falls back to the path method.
    let other = main.send(main.http().get(&url).header(HOST, "unknown.example.com")).await?;
    other.assert_error(404, &["NAME_UNKNOWN"]);
    let fallback = main
        .send(
            main.http()
                .get(main.url("/v2/docker-local/hostpushed/manifests/1"))
                .header(HOST, "unknown.example.com")
                .header("accept", OCI_MANIFEST),
        )
        .await?;
    assert_eq!(fallback.status, StatusCode::OK, "{}", fallback.text());
    // A mapped host does not also accept the key in the path.
    let keyed = main
        .send(
            main.http()
                .get(main.url("/v2/docker-local/hostpushed/manifests/1"))
                .header(HOST, "docker-local.example.com"),
        )
        .await?;
    assert_eq!(keyed.status, StatusCode::NOT_FOUND, "{}", keyed.text());
    Ok(())
}

// ------------------------------------------------------------------ no config file

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_config_file_with_default_repositories() -> Result<()> {
    let img = images();
    let port = free_port();
    let mut env = no_internet_env();
    env.push(listen_env(port));
    let srv = TestServer::start_without_config(port, ServerOptions { env, ..Default::default() }).await;
    assert!(!srv.config_path().exists(), "the test must not have written a config file");

    let log = srv.log();
    for repo in [
        "docker-local (docker, hosted)",
        "docker-remote (docker, remote",
        "docker (docker, virtual",
        "go-local (go, hosted)",
        "go-remote (go, remote",
        "go (go, virtual",
    ] {
        assert!(log.contains(repo), "log does not describe {repo:?}:\n{log}");
    }
    assert!(
        log.contains(&format!("listening on http://127.0.0.1:{port}")),
        "log does not say where it listens:\n{log}"
    );
    let data = srv.dir().join("data");
    assert!(data.is_dir(), "./data was not created in the working directory");
    assert!(data.join("metadata.db").exists(), "no ./data/metadata.db");

    let sk = Skopeo::new();
    let dst = format!("docker://{}/docker-local/busybox:1.0", srv.addr());
    sk.copy(&img.oci("busybox", "1.0"), &dst).await?;
    assert_eq!(sk.inspect_digest(&dst).await?, img.digest("busybox", "1.0"));
    let hex = img.digest("busybox", "1.0").trim_start_matches("sha256:").to_string();
    assert!(data.join("blobs/sha256").join(&hex[..2]).join(&hex).exists(), "manifest blob not under ./data");
    Ok(())
}

/// The embedded default takes per-repository environment overrides too: point
/// docker-remote at a local upstream and pull through the `docker` virtual repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_takes_environment_overrides() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(91, &[4000])).await;
    let port = free_port();
    let mut env = no_internet_env();
    env.push(listen_env(port));
    env.push(("BINARYREPO_REPOSITORY__DOCKER_REMOTE__UPSTREAM".into(), fake.url()));
    env.push(("BINARYREPO_REPOSITORY__DOCKER_REMOTE__METADATA_TTL".into(), "0s".into()));
    let srv = TestServer::start_without_config(port, ServerOptions { env, ..Default::default() }).await;
    assert!(srv.log().contains(&format!("docker-remote (docker, remote → {}", fake.url())), "{}", srv.log());

    let oci = OciClient::new(&srv.base_url());
    let m = oci.get_manifest("docker/busybox", "latest").await?;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());
    assert_eq!(m.body.as_ref(), fake.image().manifest.as_slice());
    let layer = fake.image().layer_digest(0);
    let b = oci.get_blob("docker/busybox", &layer).await?;
    assert_eq!(sha256_digest(&b.body), layer);
    assert_eq!(fake.blob_gets(&layer), 1);
    assert_eq!(fake.hits("GET", "/v2/library/busybox/manifests/latest"), 0);
    Ok(())
}

// ------------------------------------------------------------------ config errors

/// Runs `binaryrepo ARGS` in `cwd` with only `env` as `BINARYREPO_*`; it must exit
/// within 30 s. Returns (success, stdout, stderr).
async fn run_binary(cwd: &Path, args: &[&str], env: &[(String, String)]) -> Result<(bool, String, String)> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_binaryrepo"));
    cmd.args(args).current_dir(cwd).stdin(Stdio::null()).kill_on_drop(true);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BINARYREPO_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(no_internet_env()).envs(env.iter().map(|(k, v)| (k, v)));
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .with_context(|| format!("binaryrepo {args:?} did not exit within 30 s"))??;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((out.status.success(), text(&out.stdout), text(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_config_keys_are_fatal_and_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let hosted = "[[repository]]\nname = \"docker-local\"\nformat = \"docker\"\nkind = \"hosted\"\n";
    let server = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
    let cases = [
        ("lisen", format!("{server}lisen = \"127.0.0.1:1\"\n{hosted}")),
        ("storge", format!("{server}[storge]\npath = \"./data\"\n{hosted}")),
        ("pth", format!("{server}[storage]\npth = \"./data\"\n{hosted}")),
        ("upstreem", format!("{server}{hosted}upstreem = \"http://127.0.0.1:9\"\n")),
    ];
    for (key, text) in &cases {
        let config = dir.path().join(format!("{key}.toml"));
        std::fs::write(&config, text)?;
        let (ok, _, stderr) = run_binary(dir.path(), &["serve", "--config", config.to_str().unwrap()], &[]).await?;
        assert!(!ok, "unknown key {key} was accepted");
        assert!(stderr.contains(key), "stderr does not name {key}:\n{stderr}");
    }
    // The same through an environment override.
    let config = dir.path().join("valid.toml");
    std::fs::write(&config, format!("{server}{hosted}"))?;
    let env = [("BINARYREPO_SERVER__LISEN".to_string(), "1".to_string())];
    let (ok, _, stderr) = run_binary(dir.path(), &["serve", "--config", config.to_str().unwrap()], &env).await?;
    assert!(!ok, "BINARYREPO_SERVER__LISEN was accepted");
    assert!(stderr.to_ascii_lowercase().contains("lisen"), "stderr does not name lisen:\n{stderr}");
    // Other startup errors: a missing config file, TLS half configured or unreadable.
    let missing = dir.path().join("missing.toml");
    let (ok, _, stderr) = run_binary(dir.path(), &["serve", "--config", missing.to_str().unwrap()], &[]).await?;
    assert!(!ok && stderr.contains("missing.toml"), "missing config file: {stderr}");
    let half = dir.path().join("half-tls.toml");
    std::fs::write(&half, format!("{server}tls_cert = \"cert.pem\"\n{hosted}"))?;
    let (ok, _, stderr) = run_binary(dir.path(), &["serve", "--config", half.to_str().unwrap()], &[]).await?;
    assert!(!ok && stderr.contains("tls_key"), "tls_cert without tls_key: {stderr}");
    let absent = dir.path().join("absent-tls.toml");
    std::fs::write(&absent, format!("{server}tls_cert = \"nocert.pem\"\ntls_key = \"nokey.pem\"\n{hosted}"))?;
    let (ok, _, stderr) = run_binary(dir.path(), &["serve", "--config", absent.to_str().unwrap()], &[]).await?;
    assert!(!ok && stderr.contains("nocert.pem"), "unreadable tls_cert: {stderr}");
    // Nothing of these attempts was left listening.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "a failed start left port {port} bound");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_config_starts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (ok, sample, stderr) = run_binary(dir.path(), &["sample-config"], &[]).await?;
    assert!(ok, "sample-config failed: {stderr}");
    assert!(sample.contains("[[repository]]"), "{sample}");
    let port = free_port();
    let mut env = no_internet_env();
    env.push(listen_env(port));
    let srv = TestServer::start_with_file(port, &sample, ServerOptions { env, ..Default::default() }).await;
    let log = srv.log();
    for repo in [
        "docker-local (docker, hosted)",
        "docker-remote (docker, remote",
        "docker (docker, virtual",
        "go-local (go, hosted)",
        "go-remote (go, remote",
        "go (go, virtual",
    ] {
        assert!(log.contains(repo), "log does not describe {repo:?}:\n{log}");
    }
    // Its relative storage path is under the working directory, and pushes work.
    let oci = OciClient::new(&srv.base_url());
    TestImage::new(51, &[100]).push(&oci, "docker-local/sample", "1").await?;
    assert!(srv.dir().join("data/metadata.db").exists());
    Ok(())
}

// ------------------------------------------------------------------ public_url

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_makes_locations_absolute() -> Result<()> {
    const PUBLIC: &str = "https://registry.example.com";
    let options = ServerOptions { server_toml: format!("public_url = \"{PUBLIC}\""), ..Default::default() };
    let srv = TestServer::start_with(&docker_repos(NO_UPSTREAM), options).await;
    let oci = OciClient::new(&srv.base_url());
    let name = "docker-local/busybox";
    // The path and query of an absolute Location, sent to the real server.
    let local = |loc: &str| -> Result<String> {
        let url = url::Url::parse(loc).with_context(|| format!("Location {loc:?} is not absolute"))?;
        assert_eq!(url.origin().ascii_serialization(), PUBLIC, "Location {loc}");
        Ok(oci.url(&format!("{}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default())))
    };

    // Monolithic: POST, then PUT ?digest=.
    let image = TestImage::new(61, &[3000]);
    let start = oci.start_upload(name).await?;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    let loc = start.header("location").context("POST Location")?;
    assert!(loc.starts_with(&format!("{PUBLIC}/v2/{name}/blobs/uploads/")), "POST Location: {loc}");
    let digest = sha256_digest(&image.config);
    let put = oci
        .send(oci.http().put(format!("{}{}digest={digest}", local(loc)?, sep(loc))).body(image.config.clone()))
        .await?;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(put.header("location"), Some(format!("{PUBLIC}/v2/{name}/blobs/{digest}").as_str()));

    // Chunked: POST, PATCH (Location again absolute), PUT.
    let layer = &image.layers[0];
    let start = oci.start_upload(name).await?;
    let loc = start.header("location").context("POST Location")?.to_string();
    let patch = oci
        .send(
            oci.http()
                .patch(local(&loc)?)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("0-{}", layer.len() - 1))
                .body(layer.clone()),
        )
        .await?;
    assert_eq!(patch.status, StatusCode::ACCEPTED, "{}", patch.text());
    let loc = patch.header("location").context("PATCH Location")?.to_string();
    assert!(loc.starts_with(&format!("{PUBLIC}/v2/{name}/blobs/uploads/")), "PATCH Location: {loc}");
    let status = oci.send(oci.http().get(local(&loc)?)).await?;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert!(status.header("location").is_some_and(|l| l.starts_with(PUBLIC)), "{:?}", status.headers);
    let digest = image.layer_digest(0);
    let put = oci.send(oci.http().put(format!("{}{}digest={digest}", local(&loc)?, sep(&loc)))).await?;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(put.header("location"), Some(format!("{PUBLIC}/v2/{name}/blobs/{digest}").as_str()));

    // Manifest PUT, and a cross-repository mount.
    let put = oci.put_manifest(name, "1", OCI_MANIFEST, &image.manifest).await?;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(put.header("location"), Some(format!("{PUBLIC}/v2/{name}/manifests/{}", image.digest()).as_str()));
    let mount = oci
        .send(
            oci.http()
                .post(oci.url(&format!("/v2/docker-local/other/blobs/uploads/?mount={digest}&from={name}")))
                .header("content-length", "0"),
        )
        .await?;
    assert_eq!(mount.status, StatusCode::CREATED, "{}", mount.text());
    assert_eq!(mount.header("location"), Some(format!("{PUBLIC}/v2/docker-local/other/blobs/{digest}").as_str()));
    Ok(())
}

/// With `public_url` set, uploads must still work when the repository was chosen by
/// the `Host` header or by a port listener. The public URL here resolves to the
/// main listener (path method), as a reverse proxy in front of it would; a
/// `Location` must lead a client back to the same repository, either relative (on
/// the host or port it used) or under `public_url` with the repository key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_locations_work_for_host_and_port_method() -> Result<()> {
    let main_port = free_port();
    let repo_port = free_port();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{main_port}"
public_url = "http://registry.example.com:{main_port}"

[storage]
path = "./data"

[[repository]]
name = "docker-local"
format = "docker"
kind = "hosted"
port = {repo_port}
hosts = ["docker-local.example.com"]
"#
    );
    let srv = TestServer::start_with_file(main_port, &config, ServerOptions::default()).await;
    let loopback: SocketAddr = srv.addr().parse()?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .resolve("registry.example.com", loopback)
        .resolve("docker-local.example.com", loopback)
        .build()?;

    let via_path = OciClient::with_http(&format!("http://registry.example.com:{main_port}"), http.clone());
    TestImage::new(81, &[100]).push(&via_path, "docker-local/viapath", "1").await.context("path method")?;

    let mut failures = Vec::new();
    let via_host = OciClient::with_http(&format!("http://docker-local.example.com:{main_port}"), http.clone());
    if let Err(e) = TestImage::new(82, &[100]).push(&via_host, "viahost", "1").await {
        failures.push(format!("host method push failed: {e:#}"));
    }
    let via_port = OciClient::with_http(&format!("http://127.0.0.1:{repo_port}"), http.clone());
    if let Err(e) = TestImage::new(83, &[100]).push(&via_port, "viaport", "1").await {
        failures.push(format!("port method push failed: {e:#}"));
    }
    let start = via_host.start_upload("viahost").await?;
    let host_loc = start.header("location").unwrap_or_default().to_string();
    let start = via_port.start_upload("viaport").await?;
    let port_loc = start.header("location").unwrap_or_default().to_string();
    assert!(
        failures.is_empty(),
        "{}
upload Location via Host: {host_loc}
upload Location via port: {port_loc}",
        failures.join("\n")
    );
    let main = OciClient::new(&srv.base_url());
    for name in ["viapath", "viahost", "viaport"] {
        let m = main.get_manifest(&format!("docker-local/{name}"), "1").await?;
        assert_eq!(m.status, StatusCode::OK, "docker-local/{name}: {}", m.text());
    }
    Ok(())
}

fn sep(url: &str) -> &'static str {
    if url.contains('?') {
        "&"
    } else {
        "?"
    }
}

// ------------------------------------------------------------------ TLS

/// A self-signed certificate for IP 127.0.0.1 in `dir`: (cert.pem, key.pem), and
/// `dir/certs/ca.crt` for containers/image's `--cert-dir`.
async fn self_signed(dir: &Path) -> Result<()> {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"));
    run(cmd).await?;
    std::fs::create_dir_all(dir.join("certs"))?;
    std::fs::copy(dir.join("cert.pem"), dir.join("certs/ca.crt"))?;
    Ok(())
}

/// skopeo with TLS verification on (no `--tls-verify=false`), private registries.conf.
fn tls_skopeo(dir: &Path) -> tokio::process::Command {
    let conf = dir.join("registries.conf");
    if !conf.exists() {
        std::fs::write(&conf, "unqualified-search-registries = []\n").expect("registries.conf");
        std::fs::write(dir.join("auth.json"), r#"{"auths":{}}"#).expect("auth.json");
    }
    let mut cmd = tokio::process::Command::new("skopeo");
    cmd.env("CONTAINERS_REGISTRIES_CONF", &conf)
        .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
        .env("TMPDIR", dir)
        .arg("--insecure-policy");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_tls_push_and_inspect() -> Result<()> {
    let img = images();
    let tls = tempfile::tempdir()?;
    self_signed(tls.path()).await?;
    let options = ServerOptions {
        server_toml: format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            tls.path().join("cert.pem").display(),
            tls.path().join("key.pem").display()
        ),
        tls_ca: Some(tls.path().join("cert.pem")),
        ..Default::default()
    };
    let tls_port = free_port();
    let repos = format!(
        "{}\n[[repository]]\nname = \"tls-port\"\nformat = \"docker\"\nkind = \"hosted\"\nport = {tls_port}\n",
        docker_repos(NO_UPSTREAM)
    );
    let srv = TestServer::start_with(&repos, options).await;
    assert!(srv.base_url().starts_with("https://"));
    assert!(srv.log().contains(&format!("listening on https://{}", srv.addr())), "{}", srv.log());
    let certs = tls.path().join("certs");
    let certs = certs.to_str().unwrap();
    let want = img.digest("busybox", "1.0");
    let dst = format!("docker://{}/docker-local/busybox:1.0", srv.addr());
    let sk_dir = tempfile::tempdir()?;

    let mut copy = tls_skopeo(sk_dir.path());
    copy.args(["copy", "--preserve-digests", "--src-no-creds", "--dest-no-creds", "--dest-cert-dir", certs])
        .arg(img.oci("busybox", "1.0"))
        .arg(&dst);
    run(copy).await.context("skopeo push over https")?;

    let mut inspect = tls_skopeo(sk_dir.path());
    inspect.args(["inspect", "--no-creds", "--cert-dir", certs]).arg(&dst);
    let info: Value = serde_json::from_slice(&run(inspect).await?)?;
    assert_eq!(info["Digest"], want);

    let out = tempfile::tempdir()?;
    let back = out.path().join("back");
    let mut pull = tls_skopeo(sk_dir.path());
    pull.args(["copy", "--preserve-digests", "--src-no-creds", "--src-cert-dir", certs])
        .arg(&dst)
        .arg(format!("oci:{}:1.0", back.display()));
    run(pull).await.context("skopeo pull over https")?;
    assert_eq!(layout_digest(&back, "1.0"), want);
    assert_eq!(verify_layout_blobs(&back), 3);

    // Verification is real: without the CA skopeo refuses the certificate.
    let mut untrusted = tls_skopeo(sk_dir.path());
    untrusted.args(["inspect", "--no-creds", "--raw"]).arg(&dst);
    assert!(run(untrusted).await.is_err(), "skopeo trusted an unknown self-signed certificate");

    // HTTP/2 and HTTP/1.1 over TLS.
    let pem = std::fs::read(tls.path().join("cert.pem"))?;
    for http1 in [false, true] {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        if http1 {
            builder = builder.http1_only();
        }
        let oci = OciClient::with_http(&srv.base_url(), builder.build()?);
        let m = oci.get_manifest("docker-local/busybox", "1.0").await?;
        assert_eq!(m.status, StatusCode::OK);
        assert_eq!(m.header("docker-content-digest"), Some(want));
        let version = oci.http().get(oci.url("/v2/")).send().await?.version();
        let expected = if http1 { reqwest::Version::HTTP_11 } else { reqwest::Version::HTTP_2 };
        assert_eq!(version, expected, "negotiated protocol (http1_only = {http1})");
    }

    // The port listener speaks TLS as well.
    let mut on_port = tls_skopeo(sk_dir.path());
    on_port
        .args(["copy", "--preserve-digests", "--src-no-creds", "--dest-no-creds", "--dest-cert-dir", certs])
        .arg(img.oci("busybox", "1.0"))
        .arg(format!("docker://127.0.0.1:{tls_port}/busybox:1.0"));
    run(on_port).await.context("skopeo push to the TLS port listener")?;
    let main = OciClient::with_http(
        &srv.base_url(),
        reqwest::Client::builder().no_proxy().add_root_certificate(reqwest::Certificate::from_pem(&pem)?).build()?,
    );
    let m = main.head_manifest("tls-port/busybox", "1.0").await?;
    assert_eq!(m.header("docker-content-digest"), Some(want));

    // Plain HTTP to the TLS port gets no registry answer.
    let plain = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?;
    match plain.get(format!("http://{}/v2/", srv.addr())).send().await {
        Err(_) => {}
        Ok(r) => assert!(!r.status().is_success(), "plain http to the TLS port answered {}", r.status()),
    }
    // And the server is still fine afterwards.
    let mut again = tls_skopeo(sk_dir.path());
    again.args(["inspect", "--no-creds", "--raw", "--cert-dir", certs]).arg(&dst);
    assert_eq!(run(again).await?, img.manifest("busybox", "1.0"));
    Ok(())
}

/// A second server on a data directory in use refuses to start, naming the directory: two
/// processes would each trust their own caches over one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_in_use_is_refused() -> Result<()> {
    let srv = TestServer::start(&docker_repos(NO_UPSTREAM)).await;
    let data = srv.data_dir();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{}\"\n[storage]\npath = \"{}\"\n{}",
        free_port(),
        data.display(),
        docker_repos(NO_UPSTREAM)
    );
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("second.toml"), config)?;
    let (ok, _, stderr) = run_binary(dir.path(), &["serve", "--config", "second.toml"], &[]).await?;
    assert!(!ok, "a second server started on {}", data.display());
    assert!(stderr.contains("in use by another binaryrepo process"), "{stderr}");
    let still = OciClient::new(&srv.base_url()).get("/v2/").await?;
    assert_eq!(still.status, StatusCode::OK, "the first server keeps serving");
    Ok(())
}
