//! Self-checks of the test harness that need no `binaryrepo`: the generated
//! images, the fake upstream's faults, the distribution registry's request
//! counting and restart, and the skopeo/podman wrappers. When one of these fails,
//! the failures elsewhere are about the harness, not the server.

use anyhow::Result;
use reqwest::StatusCode;

use crate::clients::{Podman, Skopeo};
use crate::images::{descriptors, images, layout_digest, sha256_digest};
use crate::oci::{OciClient, TestImage};
use crate::upstream::{DistributionRegistry, FakeUpstream, Fault};

#[test]
fn generated_images_are_complete_and_consistent() {
    let img = images();
    for (name, tag) in [
        ("busybox", "1.0"),
        ("busybox", "sbom"),
        ("big", "1.0"),
        ("multi", "1.0"),
        ("dockerlist", "1.0"),
        ("artifact", "sbom"),
    ] {
        let e = img.entry(name, tag);
        let manifest = img.manifest(name, tag);
        assert_eq!(sha256_digest(&manifest), e.digest, "{name}:{tag}");
        assert_eq!(manifest.len() as u64, e.size, "{name}:{tag}");
        for d in descriptors(&manifest) {
            let blob = img.blob(name, &d.digest);
            assert_eq!(sha256_digest(&blob), d.digest, "{name}:{tag} -> {}", d.digest);
            assert_eq!(blob.len() as u64, d.size, "{name}:{tag} -> {}", d.digest);
            if d.media_type.contains("manifest") {
                for leaf in descriptors(&blob) {
                    assert_eq!(sha256_digest(&img.blob(name, &leaf.digest)), leaf.digest);
                }
            }
        }
    }
    let sbom: serde_json::Value = serde_json::from_slice(&img.manifest("busybox", "sbom")).unwrap();
    assert_eq!(sbom["subject"]["digest"], img.digest("busybox", "1.0"));
    assert_eq!(sbom["config"]["digest"], sha256_digest(b"{}"));
    let big = img.children("big", img.digest("big", "1.0"));
    assert!(big.iter().any(|d| d.size > (crate::images::SMALL_BIG_MIB as u64) << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_upstream_faults_behave_as_documented() -> Result<()> {
    let fake = FakeUpstream::start(TestImage::new(1, &[1 << 20])).await;
    let oci = OciClient::new(&fake.url());
    let layer = fake.image().layer_digest(0);

    let ok = oci.get_blob("busybox", &layer).await?;
    assert_eq!(ok.status, 200);
    assert_eq!(sha256_digest(&ok.body), layer);
    let head = oci.head_blob("busybox", &layer).await?;
    assert_eq!(head.header("content-length"), Some("1048576"));

    fake.set_blob_fault(Fault::Truncate);
    assert!(oci.get_blob("busybox", &layer).await.is_err(), "truncated body must be a client-side error");

    fake.set_blob_fault(Fault::Short);
    let short = oci.get_blob("busybox", &layer).await?;
    assert_eq!((short.status, short.body.len()), (StatusCode::OK, 1 << 19));

    fake.set_blob_fault(Fault::Corrupt);
    let bad = oci.get_blob("busybox", &layer).await?;
    assert_eq!(bad.body.len(), 1 << 20);
    assert_ne!(sha256_digest(&bad.body), layer);

    fake.set_blob_fault(Fault::Status(500));
    assert_eq!(oci.get_blob("busybox", &layer).await?.status, 500);

    assert_eq!(fake.blob_gets(&layer), 5);
    let m = oci.get_manifest("busybox", "latest").await?;
    assert_eq!(m.body.as_ref(), fake.image().manifest.as_slice());
    assert_eq!(oci.get_manifest("busybox", "nope").await?.error_codes(), vec!["MANIFEST_UNKNOWN"]);
    assert_eq!(fake.manifest_gets(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_registry_counts_stops_and_restarts() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let mut up = DistributionRegistry::start().await;
    let dst = format!("docker://{}/busybox:1.0", up.addr());
    sk.copy(&img.oci("busybox", "1.0"), &dst).await?;

    up.sync_log().await;
    let before = up.blob_gets(None);
    let out = tempfile::tempdir()?;
    sk.copy(&dst, &format!("oci:{}:1.0", out.path().join("l").display())).await?;
    up.sync_log().await;
    assert_eq!(up.blob_gets(None) - before, 2, "config + layer");
    assert_eq!(layout_digest(&out.path().join("l"), "1.0"), img.digest("busybox", "1.0"));

    up.stop();
    let oci = OciClient::new(&up.url());
    assert!(oci.get("/v2/").await.is_err(), "connection must be refused while stopped");
    up.start_again().await;
    let m = oci.get_manifest("busybox", "1.0").await?;
    assert_eq!(m.header("docker-content-digest"), Some(img.digest("busybox", "1.0")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_wrapper_round_trip_via_distribution() -> Result<()> {
    let img = images();
    let up = DistributionRegistry::start().await;
    let podman = Podman::new();
    let id = podman.pull(&img.oci("busybox", "1.0")).await?;
    let target = format!("{}/podbox:1.0", up.addr());
    podman.tag(&id, &target).await?;
    let pushed = podman.push(&target, None).await?;
    assert!(pushed.starts_with("sha256:"));
    podman.rmi_all().await?;
    assert_eq!(podman.pull(&target).await?, id);
    Ok(())
}
