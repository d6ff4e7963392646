//! Scale-out: three `binaryrepo` nodes on different loopback ports over one PostgreSQL and one
//! Garage (S3). Any request may land on any node: push through one, pull through the others,
//! a chunked upload spread over all three, a node killed with SIGKILL mid-push.
//! Skipped with a `SKIP` line only when PostgreSQL or Garage is not installed.

use anyhow::{ensure, Result};
use binaryrepo::config::{BlobBackend, BlobsConfig};
use binaryrepo::model::Digest;
use binaryrepo::storage::blob::s3::S3BlobStore;
use binaryrepo::storage::testkit::{Garage, Postgres};
use binaryrepo::storage::BlobStore;
use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};

use crate::clients::{Podman, Skopeo};
use crate::images::{images, layout_digest, verify_layout_blobs};
use crate::oci::{noise, OciClient, TestImage};
use crate::server::{docker_repos, ServerOptions, TestServer, NO_UPSTREAM};

/// Dropped in field order: nodes first, then the engines under them.
pub struct Cluster {
    pub nodes: Vec<TestServer>,
    pub garage: Garage,
    _pg: Postgres,
}

impl Cluster {
    /// `n` nodes started at once (they race to migrate the fresh database).
    pub async fn start(n: usize, repos: &str) -> Option<Cluster> {
        Cluster::start_with(n, repos, None, false).await
    }

    /// With `lease_ttl`: every node also advertises its URL for cluster-wide coalescing;
    /// with `redirect`: blob GETs answer 307 to presigned S3 URLs.
    pub async fn start_with(n: usize, repos: &str, lease_ttl: Option<&str>, redirect: bool) -> Option<Cluster> {
        let cluster = |_: usize, port: u16| {
            lease_ttl.map_or(String::new(), |ttl| {
                format!("[cluster]\nadvertise_url = \"http://127.0.0.1:{port}\"\nlease_ttl = \"{ttl}\"\n")
            })
        };
        Cluster::start_nodes(n, repos, &format!("redirect = {redirect}\n"), cluster).await
    }

    /// `n` nodes; `blobs_extra` goes into `[storage.blobs]`, `node(i, port)` after the storage tables.
    pub async fn start_nodes(
        n: usize,
        repos: &str,
        blobs_extra: &str,
        node: impl Fn(usize, u16) -> String,
    ) -> Option<Cluster> {
        let pg = Postgres::start()?;
        let garage = Garage::start()?;
        let storage = format!("{}{blobs_extra}", storage_toml(&pg, &garage));
        let starts = (0..n).map(|i| {
            let port = crate::server::free_port();
            let text = format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[storage]\npath = \"./data\"\n{storage}\n{}\n{repos}",
                node(i, port)
            );
            async move { TestServer::start_with_file(port, &text, ServerOptions::default()).await }
        });
        let nodes = futures::future::join_all(starts).await;
        Some(Cluster { nodes, garage, _pg: pg })
    }

    pub fn oci(&self, i: usize) -> OciClient {
        OciClient::new(&self.nodes[i].base_url())
    }

    /// The blob store the nodes share, opened by the test itself.
    pub fn blobs(&self) -> S3BlobStore {
        S3BlobStore::open(&s3_config(&self.garage)).expect("open S3")
    }
}

fn s3_config(g: &Garage) -> BlobsConfig {
    BlobsConfig {
        backend: BlobBackend::S3,
        endpoint: Some(g.endpoint.clone()),
        bucket: Some(g.bucket.clone()),
        region: Some(g.region.clone()),
        prefix: "cluster/".into(),
        access_key_id: Some(g.access_key_id.clone()),
        secret_access_key: Some(g.secret_access_key.clone()),
        ..Default::default()
    }
}

/// The `[storage.*]` tables every node gets (after `[storage] path`).
pub fn storage_toml(pg: &Postgres, g: &Garage) -> String {
    format!(
        "[storage.database]\nurl = \"{}\"\n\n[storage.blobs]\nbackend = \"s3\"\nendpoint = \"{}\"\n\
         bucket = \"{}\"\nregion = \"{}\"\nprefix = \"cluster/\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        pg.url, g.endpoint, g.bucket, g.region, g.access_key_id, g.secret_access_key
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_push_through_one_node_pull_through_the_others() -> Result<()> {
    let Some(cluster) = Cluster::start(3, &docker_repos(NO_UPSTREAM)).await else { return Ok(()) };
    let img = images();
    let sk = Skopeo::new();
    let want = img.digest("busybox", "1.0");
    let on = |i: usize| format!("docker://{}/docker-local/busybox:1.0", cluster.nodes[i].addr());
    sk.copy(&img.oci("busybox", "1.0"), &on(0)).await?;
    assert_eq!(sk.inspect_digest(&on(1)).await?, want);
    let out = tempfile::tempdir()?;
    let back = out.path().join("back");
    sk.copy(&on(2), &format!("oci:{}:1.0", back.display())).await?;
    assert_eq!(layout_digest(&back, "1.0"), want);
    assert_eq!(verify_layout_blobs(&back), 3, "manifest + config + layer");
    assert_eq!(cluster.oci(2).tag_names("docker-local/busybox").await?, ["1.0"]);
    assert!(cluster.nodes[0].data_dir().join("blobs").read_dir().map_or(true, |mut d| d.next().is_none()));
    Ok(())
}

/// podman pushes through node 0 and pulls through nodes 1 and 2 (by tag, then by digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_push_through_one_node_pull_through_the_others() -> Result<()> {
    let Some(cluster) = Cluster::start(3, &docker_repos(NO_UPSTREAM)).await else { return Ok(()) };
    let img = images();
    let podman = Podman::new();
    let id = podman.pull(&img.oci("busybox", "1.0")).await?;
    let on = |i: usize| format!("{}/docker-local/podbox:1.0", cluster.nodes[i].addr());
    podman.tag(&id, &on(0)).await?;
    let pushed = podman.push(&on(0), None).await?;
    podman.rmi_all().await?;
    assert_eq!(podman.pull(&on(1)).await?, id, "image ID after the round trip");
    podman.rmi_all().await?;
    podman.pull(&format!("{}/docker-local/podbox@{pushed}", cluster.nodes[2].addr())).await?;
    Ok(())
}

/// `redirect = true`: a stored blob GET is a 307 to a presigned Garage URL that serves the
/// bytes; skopeo follows it. HEAD and ranges are answered by the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_sends_clients_to_presigned_urls() -> Result<()> {
    let Some(cluster) = Cluster::start_with(2, &docker_repos(NO_UPSTREAM), None, true).await else { return Ok(()) };
    let img = images();
    let sk = Skopeo::new();
    let on = |i: usize| format!("docker://{}/docker-local/busybox:1.0", cluster.nodes[i].addr());
    sk.copy(&img.oci("busybox", "1.0"), &on(0)).await?;
    let out = tempfile::tempdir()?;
    let back = out.path().join("back");
    sk.copy(&on(1), &format!("oci:{}:1.0", back.display())).await?;
    assert_eq!(verify_layout_blobs(&back), 3, "manifest + config + layer");
    let data = noise(11, 100_000);
    let digest = cluster.oci(0).push_blob("docker-local/redirected", &data).await?;
    let manual = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build()?;
    let oci = OciClient::with_http(&cluster.nodes[1].base_url(), manual);
    let resp = oci.get_blob("docker-local/redirected", &digest).await?;
    assert_eq!(resp.status, 307);
    let location = resp.header("location").expect("Location").to_string();
    assert!(location.starts_with(&cluster.garage.endpoint) && location.contains("X-Amz-Signature"), "{location}");
    let direct = reqwest::Client::builder().no_proxy().build()?.get(&location).send().await?;
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.bytes().await?.as_ref(), data.as_slice());
    assert_eq!(oci.head_blob("docker-local/redirected", &digest).await?.status, 200);
    let (status, size, got) = cluster.oci(1).get_blob_hashed("docker-local/redirected", &digest).await?;
    assert_eq!((status.as_u16(), size, got), (200, data.len() as u64, digest));
    Ok(())
}

/// Node 0 has the tag cached; node 1 moves it; node 0 follows once the NOTIFY arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_on_one_node_is_seen_by_the_others() -> Result<()> {
    let Some(cluster) = Cluster::start(2, &docker_repos(NO_UPSTREAM)).await else { return Ok(()) };
    let (a, b) = (cluster.oci(0), cluster.oci(1));
    let first = TestImage::new(1, &[1000]);
    let second = TestImage::new(2, &[2000]);
    first.push(&a, "docker-local/moving", "latest").await?;
    let seen = a.head_manifest("docker-local/moving", "latest").await?;
    assert_eq!(seen.header("docker-content-digest"), Some(first.digest().as_str()));
    let moved_at = std::time::Instant::now();
    second.push(&b, "docker-local/moving", "latest").await?;
    let pushed_at = std::time::Instant::now();
    // Bounded poll: the invalidation travels through PostgreSQL after the writer's commit.
    let mut polls = 0;
    loop {
        let now = a.head_manifest("docker-local/moving", "latest").await?;
        if now.header("docker-content-digest") == Some(second.digest().as_str()) {
            break;
        }
        polls += 1;
        ensure!(polls < 2000, "node 0 still serves the old tag after {polls} reads");
    }
    println!(
        "tag move visible on the other node after {polls} stale reads, {:?} after the push returned \
         ({:?} after it started)",
        pushed_at.elapsed(),
        moved_at.elapsed()
    );
    Ok(())
}

/// POST on node 0, PATCH on node 1, PATCH on node 2, PUT on node 0: one blob, readable anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_spread_over_three_nodes() -> Result<()> {
    let Some(cluster) = Cluster::start(3, &docker_repos(NO_UPSTREAM)).await else { return Ok(()) };
    let data = noise(7, 9 * 1024 * 1024 + 17);
    let digest = crate::images::sha256_digest(&data);
    let name = "docker-local/chunked";
    let start = cluster.oci(0).start_upload(name).await?;
    assert_eq!(start.status, 202);
    let location = start.header("location").expect("Location").to_string();
    let path = url::Url::parse("http://x/")?.join(&location)?.path().to_string();
    let (c1, c2) = (5 * 1024 * 1024, 8 * 1024 * 1024);
    for (node, range) in [(1, 0..c1), (2, c1..c2)] {
        let oci = cluster.oci(node);
        let req = oci
            .http()
            .patch(oci.url(&path))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("content-range", format!("{}-{}", range.start, range.end - 1))
            .header(CONTENT_LENGTH, range.len())
            .body(data[range.clone()].to_vec());
        let resp = oci.send(req).await?;
        assert_eq!(resp.status, 202, "PATCH on node {node}: {}", resp.text());
        assert_eq!(resp.header("range"), Some(format!("0-{}", range.end - 1).as_str()));
    }
    let status = cluster.oci(1).get(&path).await?;
    assert_eq!(status.header("range"), Some(format!("0-{}", c2 - 1).as_str()), "status on another node");
    let oci = cluster.oci(0);
    let put = oci.http().put(format!("{}?digest={digest}", oci.url(&path))).body(data[c2..].to_vec());
    let done = oci.send(put).await?;
    assert_eq!(done.status, 201, "{}", done.text());
    for node in 0..3 {
        let (status, size, got) = cluster.oci(node).get_blob_hashed(name, &digest).await?;
        assert_eq!((status.as_u16(), size, got.as_str()), (200, data.len() as u64, digest.as_str()));
    }
    Ok(())
}

/// SIGKILL while a chunk streams in: nothing is published, the other nodes serve on, and the
/// bytes already stored survive for the client to resume the upload on another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_push_publishes_nothing() -> Result<()> {
    let Some(mut cluster) = Cluster::start(2, &docker_repos(NO_UPSTREAM)).await else { return Ok(()) };
    let data = noise(9, 20 * 1024 * 1024);
    let digest = crate::images::sha256_digest(&data);
    let name = "docker-local/killed";
    let start = cluster.oci(0).start_upload(name).await?;
    let location = start.header("location").expect("Location").to_string();
    let path = url::Url::parse("http://x/")?.join(&location)?.path().to_string();
    let id = path.rsplit('/').next().expect("upload id").to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let oci0 = cluster.oci(0);
    // A streaming PATCH (chunk parts land in S3 as they fill); a monolithic PUT would stream
    // into a multipart upload of the final key instead, which S3 never shows incomplete.
    let patch = oci0.http().patch(oci0.url(&path)).header(CONTENT_TYPE, "application/octet-stream").body(body);
    let request = tokio::spawn(async move { patch.send().await });
    for piece in data[..12 * 1024 * 1024].chunks(1024 * 1024) {
        tx.send(Ok(Bytes::copy_from_slice(piece))).await?;
    }
    // Bounded poll until the node stored a part of the upload in S3, then kill it.
    let blobs = cluster.blobs();
    let mut polls = 0;
    while blobs.upload_size(&id).await? == 0 {
        polls += 1;
        ensure!(polls < 20_000, "no part of the upload reached S3");
        tokio::task::yield_now().await;
    }
    cluster.nodes[0].stop();
    drop(tx);
    let answered = request.await?;
    assert!(answered.map_or(true, |r| r.status() != 202), "a killed node acknowledged nothing");
    let sha: Digest = digest.parse()?;
    assert_eq!(blobs.stat(&sha).await?, None, "nothing half-published");
    let oci1 = cluster.oci(1);
    assert_eq!(oci1.head_blob(name, &digest).await?.status, 404);
    // The stored prefix survives: the client resumes on node 1.
    let status = oci1.get(&path).await?;
    let stored: usize =
        status.header("range").and_then(|r| r.split('-').nth(1)).map_or(0, |e| e.parse::<usize>().unwrap_or(0) + 1);
    assert!(stored > 0 && stored < data.len(), "stored {stored}");
    let put = oci1.http().put(format!("{}?digest={digest}", oci1.url(&path))).body(data[stored..].to_vec());
    assert_eq!(oci1.send(put).await?.status, 201);
    let (status, size, got) = oci1.get_blob_hashed(name, &digest).await?;
    assert_eq!((status.as_u16(), size, got), (200, data.len() as u64, digest.clone()));
    Ok(())
}

/// SIGKILL during a monolithic PUT (streamed to a multipart upload of the final key): the blob
/// stays unknown everywhere, and a new push through the other node succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_monolithic_put_publishes_nothing() -> Result<()> {
    let Some(mut cluster) = Cluster::start(2, &docker_repos(NO_UPSTREAM)).await else { return Ok(()) };
    let data = noise(10, 24 * 1024 * 1024);
    let digest = crate::images::sha256_digest(&data);
    let name = "docker-local/killed-put";
    let start = cluster.oci(0).start_upload(name).await?;
    let location = start.header("location").expect("Location").to_string();
    let path = url::Url::parse("http://x/")?.join(&location)?.path().to_string();
    // Capacity 1: once the last send returns, the client has taken all but one piece.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    let oci0 = cluster.oci(0);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let put = oci0.http().put(format!("{}?digest={digest}", oci0.url(&path))).body(body);
    let request = tokio::spawn(async move { put.send().await });
    for piece in data[..16 * 1024 * 1024].chunks(1024 * 1024) {
        tx.send(Ok(Bytes::copy_from_slice(piece))).await?;
    }
    cluster.nodes[0].stop();
    drop(tx);
    assert!(request.await?.map_or(true, |r| r.status() != 201), "a killed node acknowledged nothing");
    let sha: Digest = digest.parse()?;
    assert_eq!(cluster.blobs().stat(&sha).await?, None, "nothing half-published");
    let oci1 = cluster.oci(1);
    assert_eq!(oci1.head_blob(name, &digest).await?.status, 404);
    assert_eq!(oci1.push_blob(name, &data).await?, digest);
    let (status, size, got) = oci1.get_blob_hashed(name, &digest).await?;
    assert_eq!((status.as_u16(), size, got), (200, data.len() as u64, digest));
    Ok(())
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    async_stream::stream! {
        while let Some(item) = rx.recv().await {
            yield item;
        }
    }
}

/// Helm's hosted index is cached per node: a chart uploaded or deleted through one node shows
/// in (or leaves) the index.yaml another node serves, through the catalog's stamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_index_follows_uploads_and_deletes_made_through_other_nodes() -> Result<()> {
    use crate::helm_fixtures::{package, HelmClient};
    let repos = "[[repository]]\nname = \"charts\"\nformat = \"helm\"\nkind = \"hosted\"\n";
    let Some(cluster) = Cluster::start(2, repos).await else { return Ok(()) };
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let on_b = HelmClient::new(&format!("{}/charts", b.base_url()));
    assert!(on_b.index().await?.entries.is_empty(), "node B builds its view of an empty repository");
    let http = reqwest::Client::new();
    let put = http.put(format!("{}/charts/web-1.0.0.tgz", a.base_url())).body(package("web", "1.0.0")).send().await?;
    ensure!(put.status().is_success(), "upload through node A: {}", put.status());
    let mut seen = false;
    for _ in 0..100 {
        if on_b.index().await?.entries.contains_key("web") {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    ensure!(seen, "node B's index.yaml never listed the chart uploaded through node A");
    let deleted = http.delete(format!("{}/api/charts/charts/web/1.0.0", b.base_url())).send().await?;
    ensure!(deleted.status().is_success(), "delete through node B: {}", deleted.status());
    let on_a = HelmClient::new(&format!("{}/charts", a.base_url()));
    for _ in 0..100 {
        if !on_a.index().await?.entries.contains_key("web") {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("node A's index.yaml still lists the chart deleted through node B")
}

/// A bucket that does not exist (or credentials it refuses) stops the node at start with a
/// message naming the bucket, instead of "blob unknown" answers for content that exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_bucket_is_refused_at_start() -> Result<()> {
    let Some(garage) = Garage::start() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let port = crate::server::free_port();
    let blobs = format!(
        "[storage.blobs]\nbackend = \"s3\"\nendpoint = \"{}\"\nbucket = \"nosuchbucket\"\nregion = \"{}\"\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        garage.endpoint, garage.region, garage.access_key_id, garage.secret_access_key
    );
    let config = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"./data\"\n{blobs}");
    std::fs::write(dir.path().join("node.toml"), config)?;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_binaryrepo"));
    cmd.args(["serve", "--config", "node.toml"]).current_dir(dir.path()).kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output()).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the node started on a missing bucket");
    ensure!(stderr.contains("nosuchbucket") && stderr.contains("not usable"), "{stderr}");
    Ok(())
}

/// `/healthz` answers 503 once the metadata store is gone, so a load balancer stops sending
/// requests to the node (they would wait on the database and fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_when_the_database_is_gone() -> Result<()> {
    let Some(pg) = Postgres::start() else { return Ok(()) };
    let port = crate::server::free_port();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"./data\"\n[storage.database]\nurl = \"{}\"\n{}",
        pg.url,
        docker_repos(NO_UPSTREAM)
    );
    let node = TestServer::start_with_file(port, &text, ServerOptions::default()).await;
    let http = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(20)).build()?;
    let health = format!("{}/healthz", node.base_url());
    assert_eq!(http.get(&health).send().await?.status(), 200);
    drop(pg);
    let answer = http.get(&health).send().await?;
    assert_eq!(answer.status(), 503, "{}", answer.text().await?);
    Ok(())
}
