//! Cluster-wide coalescing of remote blob fetches: three nodes over one PostgreSQL + Garage in
//! front of a scripted upstream. Many cold GETs spread over the nodes make one upstream GET; the
//! leading node killed with SIGKILL mid-fetch does not fail the pulls on the other nodes.

use anyhow::Result;
use bytes::Bytes;
use futures::future::join_all;
use tokio::sync::mpsc;

use crate::cache::{read_blob, signals, streaming_client};
use crate::clients::Skopeo;
use crate::cluster::Cluster;
use crate::images::{images, layout_digest, verify_layout_blobs};
use crate::oci::{noise, TestImage};
use crate::server::docker_repos;
use crate::upstream::{DistributionRegistry, FakeUpstream};

const MIB: usize = 1024 * 1024;

/// 3 nodes × 20 concurrent cold GETs of one blob → 1 upstream GET, 60 correct bodies. The
/// upstream holds the second half of the body until every client has its response headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_cold_pulls_over_three_nodes_make_one_upstream_fetch() -> Result<()> {
    const SIZE: usize = 12 * MIB;
    let fake = FakeUpstream::start(TestImage::new(400, &[100])).await;
    let digest = fake.add_blob(Bytes::from(noise(401, SIZE)));
    let gate = fake.gate_blob_bodies(SIZE / 2);
    let Some(cluster) = Cluster::start_with(3, &docker_repos(&fake.url()), Some("10s"), false).await else {
        return Ok(());
    };
    let http = streaming_client();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let readers: Vec<_> = (0..60)
        .map(|i| {
            let url = format!("{}/v2/docker-remote/busybox/blobs/{digest}", cluster.nodes[i % 3].base_url());
            tokio::spawn(read_blob(http.clone(), url, None, Some((0, tx.clone())), None))
        })
        .collect();
    drop(tx);
    signals(&mut rx, 60, "response headers on every node while the upstream holds the body").await;
    gate.wait_reached(1).await;
    assert_eq!(fake.blob_gets(&digest), 1, "{:?}", fake.all_hits());
    // The internal endpoint serves other nodes only: without the cluster token, nothing.
    for node in &cluster.nodes {
        let url = format!("{}/_cluster/v1/flight?repo=docker-remote&path=_blobs/{digest}", node.base_url());
        let wrong = http.get(&url).header("x-binaryrepo-cluster-token", "guess").send().await?;
        assert_eq!((http.get(&url).send().await?.status().as_u16(), wrong.status().as_u16()), (404, 404));
    }
    gate.open();
    for (i, reader) in join_all(readers).await.into_iter().enumerate() {
        reader??.assert_complete(&format!("reader {i} on node {}", i % 3), SIZE, &digest, "fwd=uri-miss");
    }
    assert_eq!(fake.blob_gets(&digest), 1, "one upstream GET for 60 clients on 3 nodes: {:?}", fake.all_hits());
    // Published once, in the shared store: every node now answers from it.
    for node in 0..3 {
        let url = format!("{}/v2/docker-remote/busybox/blobs/{digest}", cluster.nodes[node].base_url());
        read_blob(http.clone(), url, None, None, None).await?.assert_complete("after", SIZE, &digest, "hit");
    }
    assert_eq!(fake.blob_gets(&digest), 1);
    Ok(())
}

/// How the leading node drops out of a fetch while a follower streams from it.
#[derive(Clone, Copy, PartialEq)]
enum LeaderLoss {
    /// SIGKILL: connections reset, renewals stop.
    Killed,
    /// SIGSTOP: no reset, no renewals; the follower's stream just goes silent.
    Frozen,
}

/// Node 0 leads the fetch of a 12 MiB blob whose upstream holds the second half; a client on
/// node 1 follows and has its first MiB when the leader drops out. That client still gets the
/// whole verified blob: its node takes the expired lease over and fetches once more.
async fn leader_drops_out_mid_fetch(loss: LeaderLoss, seed: u64) -> Result<()> {
    const SIZE: usize = 12 * MIB;
    let fake = FakeUpstream::start(TestImage::new(seed, &[100])).await;
    let digest = fake.add_blob(Bytes::from(noise(seed + 1, SIZE)));
    let gate = fake.gate_blob_bodies(SIZE / 2);
    let Some(mut cluster) = Cluster::start_with(2, &docker_repos(&fake.url()), Some("1s"), false).await else {
        return Ok(());
    };
    let http = streaming_client();
    let url = |node: usize| format!("{}/v2/docker-remote/busybox/blobs/{digest}", cluster.nodes[node].base_url());
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Node 0 alone starts the fetch, so it leads.
    let on_leader = tokio::spawn(read_blob(http.clone(), url(0), None, Some((0, tx.clone())), None));
    signals(&mut rx, 1, "leader's client headers").await;
    gate.wait_reached(1).await;
    let follower = tokio::spawn(read_blob(http.clone(), url(1), None, Some((MIB as u64, tx.clone())), None));
    drop(tx);
    signals(&mut rx, 1, "follower's first MiB").await;
    match loss {
        LeaderLoss::Killed => {
            cluster.nodes[0].stop();
            let _ = on_leader.await?;
        }
        LeaderLoss::Frozen => cluster.nodes[0].signal("-STOP"),
    }
    gate.open();
    let read = follower.await;
    if loss == LeaderLoss::Frozen {
        cluster.nodes[0].signal("-CONT");
        cluster.nodes[0].stop();
    }
    read??.assert_complete("client on the other node", SIZE, &digest, "fwd=uri-miss");
    assert_eq!(fake.blob_gets(&digest), 2, "the other node fetched once more: {:?}", fake.all_hits());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_fetch_another_node_completes_the_pull() -> Result<()> {
    leader_drops_out_mid_fetch(LeaderLoss::Killed, 410).await
}

/// The follower gives up on the silent stream after twice the lease TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_leader_mid_fetch_another_node_completes_the_pull() -> Result<()> {
    leader_drops_out_mid_fetch(LeaderLoss::Frozen, 412).await
}

/// A leader whose lease is live but whose advertised URL nobody can reach (a misconfiguration,
/// a partition): after twice the lease TTL of failures the follower fetches on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_live_leader_is_bypassed() -> Result<()> {
    const SIZE: usize = 4 * MIB;
    let fake = FakeUpstream::start(TestImage::new(420, &[100])).await;
    let digest = fake.add_blob(Bytes::from(noise(421, SIZE)));
    let gate = fake.gate_blob_bodies(SIZE / 2);
    let cluster = |i: usize, port: u16| {
        let advertised =
            if i == 0 { crate::server::NO_UPSTREAM.to_string() } else { format!("http://127.0.0.1:{port}") };
        format!("[cluster]\nadvertise_url = \"{advertised}\"\nlease_ttl = \"1s\"\n")
    };
    let Some(cluster) = Cluster::start_nodes(2, &docker_repos(&fake.url()), "", cluster).await else {
        return Ok(());
    };
    let http = streaming_client();
    let url = |node: usize| format!("{}/v2/docker-remote/busybox/blobs/{digest}", cluster.nodes[node].base_url());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let on_leader = tokio::spawn(read_blob(http.clone(), url(0), None, Some((0, tx.clone())), None));
    signals(&mut rx, 1, "leader's client headers").await;
    gate.wait_reached(1).await;
    let follower = tokio::spawn(read_blob(http.clone(), url(1), None, None, None));
    // The follower gives up on the unreachable leader and fetches itself.
    gate.wait_reached(2).await;
    gate.open();
    on_leader.await??.assert_complete("leader's client", SIZE, &digest, "fwd=uri-miss");
    follower.await??.assert_complete("follower's client", SIZE, &digest, "fwd=uri-miss");
    assert_eq!(fake.blob_gets(&digest), 2, "{:?}", fake.all_hits());
    Ok(())
}

/// Real clients over a real upstream: three skopeo pulls at once through the remote repository
/// on three nodes fetch every blob from the CNCF registry exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_skopeo_pulls_through_three_nodes_fetch_each_blob_once() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let mut up = DistributionRegistry::start().await;
    sk.copy(&img.oci("busybox", "1.0"), &format!("docker://{}/busybox:1.0", up.addr())).await?;
    up.sync_log().await;
    let before = up.blob_gets(None);
    let Some(cluster) = Cluster::start_with(3, &docker_repos(&up.url()), Some("10s"), false).await else {
        return Ok(());
    };
    let out = tempfile::tempdir()?;
    let pulls = (0..3).map(|i| {
        let src = format!("docker://{}/docker-remote/busybox:1.0", cluster.nodes[i].addr());
        let dst = format!("oci:{}:1.0", out.path().join(format!("n{i}")).display());
        let sk = Skopeo::new();
        async move { sk.copy(&src, &dst).await }
    });
    for pulled in join_all(pulls).await {
        pulled?;
    }
    let want = img.digest("busybox", "1.0");
    for i in 0..3 {
        let layout = out.path().join(format!("n{i}"));
        assert_eq!(layout_digest(&layout, "1.0"), want);
        assert_eq!(verify_layout_blobs(&layout), 3);
    }
    up.sync_log().await;
    let gets = up.blob_gets(None) - before;
    assert_eq!(gets, 2, "config + layer fetched once each for three pulls on three nodes");
    Ok(())
}
