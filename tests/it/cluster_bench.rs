//! A small storage-engine comparison, run on demand (`cargo test --test it engine_bench --
//! --ignored --nocapture`): the same OCI operations through one node on fs + SQLite and on
//! Garage + PostgreSQL. Prints numbers; asserts only correctness. Debug builds: compare
//! the two rows with each other, not with other benchmarks.

use anyhow::Result;
use std::time::Instant;

use crate::cluster::Cluster;
use crate::oci::{noise, OciClient, TestImage};
use crate::server::{docker_repos, TestServer, NO_UPSTREAM};

const BIG: usize = 64 * 1024 * 1024;
const SMALL: usize = 4096;
const SMALL_COUNT: usize = 200;
const HEADS: usize = 500;

async fn measure(label: &str, oci: &OciClient) -> Result<()> {
    let name = "docker-local/bench";
    let big = noise(1, BIG);
    let t = Instant::now();
    let digest = oci.push_blob(name, &big).await?;
    let push = t.elapsed();
    let t = Instant::now();
    let (status, size, got) = oci.get_blob_hashed(name, &digest).await?;
    let pull = t.elapsed();
    assert_eq!((status.as_u16(), size, got), (200, BIG as u64, digest));
    let t = Instant::now();
    for i in 0..SMALL_COUNT {
        oci.push_blob(name, &noise(100 + i as u64, SMALL)).await?;
    }
    let small = t.elapsed();
    TestImage::new(7, &[1000]).push(oci, name, "latest").await?;
    let t = Instant::now();
    for _ in 0..HEADS {
        assert_eq!(oci.head_manifest(name, "latest").await?.status, 200);
    }
    let heads = t.elapsed();
    let mib = (BIG / (1024 * 1024)) as f64;
    println!(
        "{label:<22} push 64 MiB {:>7.1} MiB/s | pull 64 MiB {:>7.1} MiB/s | 4 KiB blob pushes {:>6.0}/s | manifest HEADs {:>6.0}/s",
        mib / push.as_secs_f64(),
        mib / pull.as_secs_f64(),
        SMALL_COUNT as f64 / small.as_secs_f64(),
        HEADS as f64 / heads.as_secs_f64(),
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on demand"]
async fn engine_bench() -> Result<()> {
    let single = TestServer::start(&docker_repos(NO_UPSTREAM)).await;
    measure("fs + SQLite", &OciClient::new(&single.base_url())).await?;
    drop(single);
    let Some(cluster) = Cluster::start(1, &docker_repos(NO_UPSTREAM)).await else { return Ok(()) };
    measure("Garage + PostgreSQL", &cluster.oci(0)).await?;
    Ok(())
}
