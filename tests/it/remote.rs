//! Remote (pull-through cache) repository: a real CNCF distribution registry as
//! upstream for the happy paths and outages, and `FakeUpstream` for bodies that are
//! truncated, short, corrupted or errors — which must never be cached or served as
//! if they were good (DESIGN.md invariants 4, 7 and 8).

use anyhow::Result;
use futures::future::join_all;

use crate::clients::{Podman, Skopeo};
use crate::images::{big_100mib, images, layout_digest, sha256_digest, verify_layout_blobs, Images};
use crate::oci::{OciClient, TestImage};
use crate::server::{docker_repos, TestServer};
use crate::upstream::{DistributionRegistry, FakeUpstream, Fault};

/// Upstream registry seeded with `name:tag` from the test layouts (OCI layout, or
/// the `dir:` layout for `dockerlist`).
async fn seeded_upstream(img: &Images, sk: &Skopeo, items: &[(&str, &str)]) -> Result<DistributionRegistry> {
    let up = DistributionRegistry::start().await;
    for (name, tag) in items {
        let dst = format!("docker://{}/{name}:{tag}", up.addr());
        if *name == "dockerlist" {
            sk.copy_all(&img.dir_ref(name), &dst).await?;
        } else {
            sk.copy_all(&img.oci(name, tag), &dst).await?;
        }
    }
    Ok(up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_caches_and_survives_upstream_outage() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let mut up = seeded_upstream(img, &sk, &[("busybox", "1.0")]).await?;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let want = img.digest("busybox", "1.0");
    let src = format!("docker://{}/docker-remote/busybox:1.0", srv.addr());
    let out = tempfile::tempdir()?;
    let layout = out.path().join("pulled");

    up.sync_log().await;
    let before = up.blob_gets(None);
    sk.copy(&src, &format!("oci:{}:first", layout.display())).await?;
    assert_eq!(layout_digest(&layout, "first"), want);
    assert_eq!(verify_layout_blobs(&layout), 3);
    // config + layer came from the upstream
    let after_first = up.wait_blob_gets(before + 2).await;
    assert!(after_first >= before + 2, "expected upstream blob GETs, saw {}", after_first - before);

    // Second pull: blobs come from the cache only.
    up.sync_log().await;
    let n = up.blob_gets(None);
    sk.copy(&src, &format!("oci:{}:second", layout.display())).await?;
    up.sync_log().await;
    assert_eq!(up.blob_gets(None), n, "second pull fetched blobs from upstream again");
    assert_eq!(layout_digest(&layout, "second"), want);

    // podman, as a user would for the second pull: served from the cache too.
    let podman = Podman::new();
    podman.pull(&format!("{}/docker-remote/busybox:1.0", srv.addr())).await?;
    up.sync_log().await;
    assert_eq!(up.blob_gets(None), n, "podman pull fetched blobs from upstream again");

    // Upstream down: the cached tag is served stale, the digest as ever.
    up.stop();
    sk.copy(&src, &format!("oci:{}:stale", layout.display())).await?;
    assert_eq!(layout_digest(&layout, "stale"), want);
    let by_digest = format!("docker://{}/docker-remote/busybox@{want}", srv.addr());
    sk.copy(&by_digest, &format!("oci:{}:bydigest", layout.display())).await?;
    assert_eq!(layout_digest(&layout, "bydigest"), want);
    assert_eq!(sk.inspect_raw(&src).await?, img.manifest("busybox", "1.0"));

    // Something never fetched while the upstream is down is an error, not a hang.
    let oci = OciClient::new(&srv.base_url());
    let missing = oci.get_manifest("docker-remote/neverseen", "1.0").await?;
    assert!(!missing.status.is_success(), "{} {}", missing.status, missing.text());

    // And the upstream coming back is noticed.
    up.start_again().await;
    let fresh = oci.get_manifest("docker-remote/busybox", "1.0").await?;
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.header("docker-content-digest"), Some(want));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_oci_index_and_docker_manifest_list() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let up = seeded_upstream(img, &sk, &[("multi", "1.0"), ("dockerlist", "1.0")]).await?;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let out = tempfile::tempdir()?;

    let multi = out.path().join("multi");
    sk.copy_all(&format!("docker://{}/docker-remote/multi:1.0", srv.addr()), &format!("oci:{}:1.0", multi.display()))
        .await?;
    assert_eq!(layout_digest(&multi, "1.0"), img.digest("multi", "1.0"));
    assert_eq!(verify_layout_blobs(&multi), 7);

    let list = out.path().join("dockerlist");
    let src = format!("docker://{}/docker-remote/dockerlist:1.0", srv.addr());
    sk.copy_all(&src, &format!("dir:{}", list.display())).await?;
    assert_eq!(sha256_digest(&std::fs::read(list.join("manifest.json"))?), img.digest("dockerlist", "1.0"));
    assert_eq!(sk.inspect_raw(&src).await?, img.manifest("dockerlist", "1.0"));
    let oci = OciClient::new(&srv.base_url());
    let head = oci.head_manifest("docker-remote/dockerlist", "1.0").await?;
    assert_eq!(head.header("content-type"), Some(crate::oci::DOCKER_LIST));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retagged_upstream_image_is_seen_with_zero_ttl() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let up = seeded_upstream(img, &sk, &[("busybox", "1.0")]).await?;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let oci = OciClient::new(&srv.base_url());

    let first = oci.get_manifest("docker-remote/busybox", "1.0").await?;
    assert_eq!(first.header("docker-content-digest"), Some(img.digest("busybox", "1.0")));

    let newer = TestImage::new(7, &[1000]);
    newer.push(&OciClient::new(&up.url()), "busybox", "1.0").await?;

    let second = oci.get_manifest("docker-remote/busybox", "1.0").await?;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("docker-content-digest"), Some(newer.digest().as_str()));
    assert_eq!(second.body.as_ref(), newer.manifest.as_slice());
    // The old image stays reachable by digest.
    let old = oci.get_manifest("docker-remote/busybox", img.digest("busybox", "1.0")).await?;
    assert_eq!(old.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_blob_pulls_fetch_upstream_once() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let mut up = seeded_upstream(img, &sk, &[("big", "1.0")]).await?;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let layer = img.children("big", img.digest("big", "1.0")).into_iter().max_by_key(|d| d.size).expect("big layer");

    up.sync_log().await;
    let before = up.blob_gets(Some(&layer.digest));
    let pulls = (0..4).map(|_| {
        let oci = oci.clone();
        let digest = layer.digest.clone();
        tokio::spawn(async move { oci.get_blob_hashed("docker-remote/big", &digest).await })
    });
    for result in join_all(pulls).await {
        let (status, size, digest) = result??;
        assert_eq!(status, 200);
        assert_eq!(size, layer.size);
        assert_eq!(digest, layer.digest);
    }
    up.sync_log().await;
    assert_eq!(up.blob_gets(Some(&layer.digest)) - before, 1, "concurrent misses must share one upstream fetch");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_100mib_image_pull_through() -> Result<()> {
    let img = big_100mib();
    let sk = Skopeo::new();
    let mut up = seeded_upstream(img, &sk, &[("big", "1.0")]).await?;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let src = format!("docker://{}/docker-remote/big:1.0", srv.addr());
    let out = tempfile::tempdir()?;
    let layout = out.path().join("big");

    sk.copy(&src, &format!("oci:{}:1.0", layout.display())).await?;
    assert_eq!(layout_digest(&layout, "1.0"), img.digest("big", "1.0"));
    assert_eq!(verify_layout_blobs(&layout), 4);

    up.sync_log().await;
    let n = up.blob_gets(None);
    let again = out.path().join("again");
    sk.copy(&src, &format!("oci:{}:1.0", again.display())).await?;
    up.sync_log().await;
    assert_eq!(up.blob_gets(None), n, "cached pull touched the upstream's blobs");
    Ok(())
}

// ------------------------------------------------------------------ failure modes (FakeUpstream)

/// A faulty upstream blob body reaches the client as an error — never as a 200
/// with complete wrong bytes — and is never cached: once the upstream is fixed,
/// the next pull fetches again and gets the right bytes, and the one after is
/// served from the cache.
async fn faulty_blob_is_never_cached(fault: Fault, seed: u64) -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(seed, &[1 << 20])).await;
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let layer = fake.image().layer_digest(0);
    let good = fake.image().layers[0].clone();

    fake.set_blob_fault(fault);
    for attempt in 1..=2 {
        match oci.get_blob("docker-remote/busybox", &layer).await {
            Err(_) => {}                          // aborted body: the client sees an error
            Ok(r) if !r.status.is_success() => {} // or an error status
            Ok(r) => panic!(
                "attempt {attempt}: {fault:?} upstream body served as {} with {} bytes (digest ok: {})",
                r.status,
                r.body.len(),
                sha256_digest(&r.body) == layer
            ),
        }
    }
    assert!(fake.blob_gets(&layer) >= 1, "the upstream was never asked");

    fake.set_blob_fault(Fault::None);
    let before = fake.blob_gets(&layer);
    let r = oci.get_blob("docker-remote/busybox", &layer).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.len(), good.len());
    assert!(r.body.as_ref() == good.as_slice(), "wrong bytes after the upstream was fixed");
    assert!(fake.blob_gets(&layer) > before, "good bytes must come from a fresh upstream fetch");

    let cached = fake.blob_gets(&layer);
    let again = oci.get_blob("docker-remote/busybox", &layer).await?;
    assert_eq!(again.status, 200);
    assert!(again.body.as_ref() == good.as_slice());
    assert_eq!(fake.blob_gets(&layer), cached, "a verified blob is served from the cache");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_upstream_blob_is_never_cached() -> Result<()> {
    faulty_blob_is_never_cached(Fault::Truncate, 101).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_upstream_blob_is_never_cached() -> Result<()> {
    faulty_blob_is_never_cached(Fault::Short, 102).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_upstream_blob_is_never_cached() -> Result<()> {
    faulty_blob_is_never_cached(Fault::Corrupt, 103).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_500_on_blob_is_never_cached() -> Result<()> {
    faulty_blob_is_never_cached(Fault::Status(500), 104).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_upstream_manifest_by_digest_is_refused() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(110, &[100])).await;
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let digest = fake.image().digest();

    fake.set_manifest_fault(Fault::Corrupt);
    match oci.get_manifest("docker-remote/busybox", &digest).await {
        Err(_) => {}
        Ok(r) if !r.status.is_success() => {}
        Ok(r) => panic!("corrupted manifest served as {}: {}", r.status, r.text()),
    }

    fake.set_manifest_fault(Fault::None);
    let r = oci.get_manifest("docker-remote/busybox", &digest).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.as_ref(), fake.image().manifest.as_slice());
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tag_is_served_while_upstream_fails() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(120, &[100])).await;
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let digest = fake.image().digest();

    let first = oci.get_manifest("docker-remote/busybox", "latest").await?;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("docker-content-digest"), Some(digest.as_str()));

    for fault in [Fault::Status(503), Fault::Status(429), Fault::Truncate] {
        fake.set_manifest_fault(fault);
        let stale = oci.get_manifest("docker-remote/busybox", "latest").await?;
        assert_eq!(stale.status, 200, "{fault:?}: {}", stale.text());
        assert_eq!(stale.body.as_ref(), fake.image().manifest.as_slice(), "{fault:?}");
        let head = oci.head_manifest("docker-remote/busybox", "latest").await?;
        assert_eq!(head.status, 200, "{fault:?}");
        assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_misses_are_404_with_oci_codes() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(130, &[100])).await;
    let srv = TestServer::start(&docker_repos(&fake.url())).await;
    let oci = OciClient::new(&srv.base_url());

    oci.get_manifest("docker-remote/busybox", "nosuchtag").await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    oci.get_manifest("docker-remote/other", "latest").await?.assert_error(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    oci.get_blob("docker-remote/busybox", &sha256_digest(b"absent")).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    // The image itself is fine.
    let ok = oci.get_manifest("docker-remote/busybox", "latest").await?;
    assert_eq!(ok.status, 200);
    Ok(())
}

/// The CNCF registry answers `HEAD …/tags/list` with 405: the revalidation then compares by
/// GET, so a tag pushed upstream shows up once the cached list is older than `metadata_ttl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_list_of_a_cncf_upstream_refreshes() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let up = seeded_upstream(img, &sk, &[("busybox", "1.0")]).await?;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let oci = OciClient::new(&srv.base_url());
    assert_eq!(oci.tag_names("docker-remote/busybox").await?, vec!["1.0"]);
    sk.copy(&img.oci("busybox", "1.0"), &format!("docker://{}/busybox:2.0", up.addr())).await?;
    let tags = oci.tags("docker-remote/busybox", None, None).await?;
    assert_eq!(crate::oci::tag_names(&tags), vec!["1.0", "2.0"], "{}", tags.text());
    let status = tags.header("cache-status").unwrap_or("");
    assert!(!status.contains("stale"), "the refresh must not fail: {status}");
    assert_eq!(oci.tag_names("docker/busybox").await?, vec!["1.0", "2.0"], "virtual over the remote");
    Ok(())
}
