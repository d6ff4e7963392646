//! A cached image is complete: child manifests of a cached index and referrers of a cached
//! subject are fetched with it, so they are served after the upstream is gone.

use anyhow::Result;

use crate::clients::Skopeo;
use crate::images::{descriptors, images, sha256_digest};
use crate::oci::{OciClient, OCI_INDEX, OCI_MANIFEST};
use crate::server::{docker_repos, TestServer};
use crate::upstream::DistributionRegistry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_children_and_referrers_are_cached_with_the_subject() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let mut up = DistributionRegistry::start().await;
    for (name, tag) in [("multi", "1.0"), ("busybox", "1.0"), ("busybox", "sbom")] {
        sk.copy_all(&img.oci(name, tag), &format!("docker://{}/{name}:{tag}", up.addr())).await?;
    }
    // The CNCF registry 2.8 has no referrers API: publish the referrers with the tag schema.
    let subject = img.digest("busybox", "1.0").to_string();
    let sbom = img.entry("busybox", "sbom");
    let schema_tag = subject.replace(':', "-");
    let fallback = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": img.digest("busybox", "sbom"), "size": sbom.size,
                        "artifactType": "application/vnd.example.sbom.v1" }],
    });
    let upstream = OciClient::new(&up.url());
    let put = upstream.put_manifest("busybox", &schema_tag, OCI_INDEX, fallback.to_string().as_bytes()).await?;
    assert_eq!(put.status, 201, "{}", put.text());

    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let index: serde_json::Value = serde_json::from_slice(&img.manifest("multi", "1.0"))?;
    let children: Vec<String> = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["digest"].as_str().map(String::from))
        .collect();
    assert_eq!(children.len(), 2);

    // Only the tags are asked for; children and referrers follow in the background.
    assert_eq!(oci.get_manifest("docker-remote/multi", "1.0").await?.status, 200);
    assert_eq!(oci.get_manifest("docker-remote/busybox", "1.0").await?.status, 200);
    let completed = |log: &str| log.matches("cached image completed").count() == 2;
    for _ in 0..200 {
        if completed(&srv.log()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(completed(&srv.log()), "prefetch did not finish:\n{}", srv.log());
    assert!(srv.log().contains("(2 child manifests, 0 referrers)"), "{}", srv.log());
    assert!(srv.log().contains("(0 child manifests, 1 referrers)"), "{}", srv.log());
    up.sync_log().await;
    let asked: Vec<String> = up.requests().into_iter().map(|r| r.path).collect();
    assert!(asked.iter().any(|p| p.ends_with(&format!("/manifests/{schema_tag}"))), "{asked:?}");

    up.stop();
    for child in &children {
        let r = oci.get_manifest("docker-remote/multi", child).await?;
        assert_eq!(r.status, 200, "child {child} not served from cache: {}", r.text());
        assert_eq!(r.header("docker-content-digest"), Some(child.as_str()));
    }
    let referrers = oci.referrers("docker-remote/busybox", &subject, None).await?;
    assert_eq!(referrers.status, 200, "{}", referrers.text());
    let listed: Vec<String> = referrers.json()["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["digest"].as_str().map(String::from))
        .collect();
    assert_eq!(listed, vec![img.digest("busybox", "sbom").to_string()]);
    // The referrer itself, and its blobs, pull from the cache too.
    let sbom_digest = img.digest("busybox", "sbom").to_string();
    let artifact = oci.get_manifest("docker-remote/busybox", &sbom_digest).await?;
    assert_eq!(artifact.status, 200, "referrer manifest not cached: {}", artifact.text());
    assert_eq!(artifact.body.as_ref(), img.manifest("busybox", "sbom").as_slice());
    for blob in descriptors(&img.manifest("busybox", "sbom")) {
        let r = oci.get_blob("docker-remote/busybox", &blob.digest).await?;
        assert_eq!(r.status, 200, "referrer blob {} not cached: {}", blob.digest, r.text());
        assert_eq!(sha256_digest(&r.body), blob.digest);
    }
    Ok(())
}
