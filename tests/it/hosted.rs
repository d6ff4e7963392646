//! Hosted repository with real clients: skopeo round trips (single image, OCI
//! index, Docker manifest list), delete, podman push/pull, docker push/pull via the
//! virtual repository, and the referrers API for an artifact with a `subject`
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers>).

use anyhow::Result;
use serde_json::Value;

use crate::clients::{Docker, Podman, Skopeo};
use crate::images::{descriptors, images, layout_digest, verify_layout_blobs};
use crate::oci::{OciClient, ACCEPT_ALL_MANIFESTS, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::server::{docker_repos, TestServer, NO_UPSTREAM};

async fn hosted_server() -> TestServer {
    TestServer::start(&docker_repos(NO_UPSTREAM)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_push_inspect_and_pull_back() -> Result<()> {
    let img = images();
    let srv = hosted_server().await;
    let sk = Skopeo::new();
    let want = img.digest("busybox", "1.0");
    let dst = format!("docker://{}/docker-local/busybox:1.0", srv.addr());

    sk.copy(&img.oci("busybox", "1.0"), &dst).await?;

    assert_eq!(sk.inspect_raw(&dst).await?, img.manifest("busybox", "1.0"), "manifest bytes changed");
    assert_eq!(sk.inspect_digest(&dst).await?, want);
    let info = sk.inspect(&dst).await?;
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(1));

    // Registry-level view of what skopeo pushed.
    let oci = OciClient::new(&srv.base_url());
    let head = oci.head_manifest("docker-local/busybox", "1.0").await?;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("docker-content-digest"), Some(want));
    assert_eq!(head.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(head.header("content-length"), Some(img.entry("busybox", "1.0").size.to_string().as_str()));
    for d in img.children("busybox", want) {
        let blob = oci.get_blob("docker-local/busybox", &d.digest).await?;
        assert_eq!(blob.status, 200, "blob {}", d.digest);
        assert_eq!(blob.body.as_ref(), img.blob("busybox", &d.digest).as_slice(), "blob {} bytes", d.digest);
    }
    assert_eq!(oci.tag_names("docker-local/busybox").await?, vec!["1.0".to_string()]);

    // Pull back by tag and by digest.
    let out = tempfile::tempdir()?;
    let back = out.path().join("back");
    sk.copy(&dst, &format!("oci:{}:1.0", back.display())).await?;
    assert_eq!(layout_digest(&back, "1.0"), want);
    let by_digest = format!("docker://{}/docker-local/busybox@{want}", srv.addr());
    sk.copy(&by_digest, &format!("oci:{}:bydigest", back.display())).await?;
    assert_eq!(layout_digest(&back, "bydigest"), want);
    assert_eq!(verify_layout_blobs(&back), 3, "manifest + config + layer");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_all_oci_index() -> Result<()> {
    let img = images();
    let srv = hosted_server().await;
    let sk = Skopeo::new();
    let want = img.digest("multi", "1.0");
    let dst = format!("docker://{}/docker-local/multi:1.0", srv.addr());

    sk.copy_all(&img.oci("multi", "1.0"), &dst).await?;
    assert_eq!(sk.inspect_raw(&dst).await?, img.manifest("multi", "1.0"));

    let oci = OciClient::new(&srv.base_url());
    let index = oci.get_manifest("docker-local/multi", "1.0").await?;
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some(OCI_INDEX));
    assert_eq!(index.header("docker-content-digest"), Some(want));
    for child in descriptors(&index.body) {
        let m = oci.get_manifest("docker-local/multi", &child.digest).await?;
        assert_eq!(m.status, 200, "child {}", child.digest);
        assert_eq!(m.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(m.body.as_ref(), img.blob("multi", &child.digest).as_slice());
    }

    let out = tempfile::tempdir()?;
    let back = out.path().join("multi");
    sk.copy_all(&dst, &format!("oci:{}:1.0", back.display())).await?;
    assert_eq!(layout_digest(&back, "1.0"), want);
    // index + 2 × (manifest + config + layer)
    assert_eq!(verify_layout_blobs(&back), 7);

    // A child an index still lists is not deleted (the index would break); after the index is
    // gone, it is.
    let child = descriptors(&index.body)[0].digest.clone();
    let refused = oci.delete_manifest("docker-local/multi", &child).await?;
    refused.assert_error(405, &["UNSUPPORTED"]);
    assert!(refused.text().contains(want), "names the index: {}", refused.text());
    sk.copy_all(&dst, &format!("oci:{}:again", back.display())).await?;
    assert_eq!(oci.delete_manifest("docker-local/multi", want).await?.status, 202);
    assert_eq!(oci.delete_manifest("docker-local/multi", &child).await?.status, 202);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_all_docker_manifest_list() -> Result<()> {
    let img = images();
    let srv = hosted_server().await;
    let sk = Skopeo::new();
    let want = img.digest("dockerlist", "1.0");
    let dst = format!("docker://{}/docker-local/dockerlist:1.0", srv.addr());

    sk.copy_all(&img.dir_ref("dockerlist"), &dst).await?;
    assert_eq!(sk.inspect_raw(&dst).await?, img.manifest("dockerlist", "1.0"));

    let oci = OciClient::new(&srv.base_url());
    let list = oci.get_manifest("docker-local/dockerlist", "1.0").await?;
    assert_eq!(list.status, 200);
    assert_eq!(list.header("content-type"), Some(DOCKER_LIST));
    assert_eq!(list.header("docker-content-digest"), Some(want));
    for child in descriptors(&list.body) {
        let m = oci.get_manifest("docker-local/dockerlist", &child.digest).await?;
        assert_eq!(m.status, 200);
        assert_eq!(m.header("content-type"), Some(DOCKER_MANIFEST));
        let v: Value = serde_json::from_slice(&m.body)?;
        assert_eq!(v["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
        assert_eq!(v["layers"][0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
    }

    // Back into a dir: layout (an OCI layout cannot hold the list without conversion).
    let out = tempfile::tempdir()?;
    let back = out.path().join("dockerlist");
    sk.copy_all(&dst, &format!("dir:{}", back.display())).await?;
    assert_eq!(crate::images::sha256_digest(&std::fs::read(back.join("manifest.json"))?), want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_delete_removes_manifest_and_tag() -> Result<()> {
    let img = images();
    let srv = hosted_server().await;
    let sk = Skopeo::new();
    let digest = img.digest("busybox", "1.0");
    let dst = format!("docker://{}/docker-local/deleteme:1.0", srv.addr());
    sk.copy(&img.oci("busybox", "1.0"), &dst).await?;

    sk.delete(&dst).await?;

    let oci = OciClient::new(&srv.base_url());
    oci.get_manifest("docker-local/deleteme", digest).await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    let by_tag = oci.get_manifest("docker-local/deleteme", "1.0").await?;
    assert_eq!(by_tag.status, 404, "tag still resolves after its manifest was deleted: {}", by_tag.text());
    assert!(sk.inspect_raw(&dst).await.is_err());
    // The same image pushed again is served again (blobs may have been kept or not).
    sk.copy(&img.oci("busybox", "1.0"), &dst).await?;
    assert_eq!(sk.inspect_digest(&dst).await?, digest);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_push_and_pull() -> Result<()> {
    let img = images();
    let srv = hosted_server().await;
    let podman = Podman::new();

    let id = podman.pull(&img.oci("busybox", "1.0")).await?;
    let target = format!("{}/docker-local/podbox:1.0", srv.addr());
    podman.tag(&id, &target).await?;
    let pushed = podman.push(&target, None).await?;
    assert!(pushed.starts_with("sha256:"), "digest file: {pushed}");

    let oci = OciClient::new(&srv.base_url());
    let m = oci.get_manifest("docker-local/podbox", "1.0").await?;
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.header("docker-content-digest"), Some(pushed.as_str()));

    podman.rmi_all().await?;
    assert!(podman.images().await?.is_empty());
    let pulled = podman.pull(&target).await?;
    assert_eq!(pulled, id, "image ID (config digest) after the round trip");
    assert_eq!(format!("sha256:{id}"), descriptors(&m.body)[0].digest);
    // And by digest.
    podman.rmi_all().await?;
    podman.pull(&format!("{}/docker-local/podbox@{pushed}", srv.addr())).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_build_push_pull_through_virtual() -> Result<()> {
    let Some(docker) = Docker::available("docker_build_push_pull_through_virtual").await else {
        return Ok(());
    };
    let srv = hosted_server().await;
    let marker = format!("scratchbox-{}-{}", srv.port(), std::process::id());
    let local = format!("binaryrepo-it/scratchbox:{}", srv.port());
    docker.build_scratch(&local, &marker).await?;
    let remote = format!("{}/docker/scratchbox:{}", srv.addr(), srv.port());
    docker.tag(&local, &remote).await?;
    docker.push(&remote).await?;

    // Pushing to the virtual repository deployed into docker-local.
    let oci = OciClient::new(&srv.base_url());
    let tag = srv.port().to_string();
    let m = oci.get_manifest("docker-local/scratchbox", &tag).await?;
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.header("content-type"), Some(DOCKER_MANIFEST));
    let digest = m.header("docker-content-digest").expect("digest header").to_string();

    docker.rmi(&remote).await?;
    docker.rmi(&local).await?;
    docker.pull(&remote).await?;
    let digests = docker.repo_digests(&remote).await?;
    assert!(digests.iter().any(|d| d.ends_with(&digest)), "{digests:?} lacks {digest}");
    assert_eq!(docker.run(&remote, &["cat", "/etc/marker"]).await?, marker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_with_subject_is_listed_by_referrers() -> Result<()> {
    let img = images();
    let srv = hosted_server().await;
    let sk = Skopeo::new();
    let subject = img.digest("busybox", "1.0");
    let sbom = img.digest("busybox", "sbom");
    let oci = OciClient::new(&srv.base_url());
    let base = format!("docker://{}/docker-local/busybox", srv.addr());
    sk.copy(&img.oci("busybox", "1.0"), &format!("{base}:1.0")).await?;

    // No referrers yet: an empty index, not an error.
    let empty = oci.referrers("docker-local/busybox", subject, None).await?;
    assert_eq!(empty.status, 200, "{}", empty.text());
    assert_eq!(empty.header("content-type"), Some(OCI_INDEX));
    assert_eq!(empty.json()["manifests"].as_array().map(Vec::len), Some(0));

    sk.copy(&img.oci("busybox", "sbom"), &format!("{base}:sbom")).await?;
    assert_eq!(sk.inspect_raw(&format!("{base}:sbom")).await?, img.manifest("busybox", "sbom"));

    let r = oci.referrers("docker-local/busybox", subject, None).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    let index = r.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(manifests.len(), 1, "{index}");
    let d = &manifests[0];
    assert_eq!(d["digest"], sbom);
    assert_eq!(d["mediaType"], OCI_MANIFEST);
    assert_eq!(d["size"], img.entry("busybox", "sbom").size);
    assert_eq!(d["artifactType"], "application/vnd.example.sbom.v1");
    assert_eq!(d["annotations"]["org.opencontainers.image.created"], "1970-01-01T00:00:00Z");

    // Filtering by artifactType is optional; if applied it must be announced.
    let hit = oci.referrers("docker-local/busybox", subject, Some("application/vnd.example.sbom.v1")).await?;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.json()["manifests"].as_array().map(Vec::len), Some(1));
    let miss = oci.referrers("docker-local/busybox", subject, Some("application/vnd.example.other")).await?;
    assert_eq!(miss.status, 200);
    if miss.header("oci-filters-applied").is_some() {
        assert_eq!(miss.header("oci-filters-applied"), Some("artifactType"));
        assert_eq!(miss.json()["manifests"].as_array().map(Vec::len), Some(0));
    }

    // The artifact itself is an ordinary manifest.
    let m = oci.manifest(reqwest::Method::GET, "docker-local/busybox", sbom, ACCEPT_ALL_MANIFESTS).await?;
    assert_eq!(m.status, 200);
    assert_eq!(m.body.as_ref(), img.manifest("busybox", "sbom").as_slice());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_manifest_with_subject_returns_oci_subject_and_tolerates_missing_subject() -> Result<()> {
    let img = images();
    let srv = hosted_server().await;
    let oci = OciClient::new(&srv.base_url());
    let name = "docker-local/lonely";
    let subject = img.digest("busybox", "1.0");
    let sbom = img.manifest("busybox", "sbom");
    for d in descriptors(&sbom) {
        oci.push_blob(name, &img.blob("busybox", &d.digest)).await?;
    }

    // The subject does not exist in this repository: the push must still succeed.
    let put = oci.put_manifest(name, img.digest("busybox", "sbom"), OCI_MANIFEST, &sbom).await?;
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(put.header("oci-subject"), Some(subject));
    assert_eq!(put.header("docker-content-digest"), Some(img.digest("busybox", "sbom")));

    let r = oci.referrers(name, subject, None).await?;
    assert_eq!(r.status, 200);
    let digests: Vec<String> = r.json()["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["digest"].as_str().map(str::to_string))
        .collect();
    assert_eq!(digests, vec![img.digest("busybox", "sbom").to_string()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_survive_a_restart() -> Result<()> {
    let img = images();
    let mut srv = hosted_server().await;
    let sk = Skopeo::new();
    let dst = format!("docker://{}/docker-local/busybox:1.0", srv.addr());
    sk.copy(&img.oci("busybox", "1.0"), &dst).await?;

    srv.restart().await;

    assert_eq!(sk.inspect_raw(&dst).await?, img.manifest("busybox", "1.0"));
    let out = tempfile::tempdir()?;
    sk.copy(&dst, &format!("oci:{}:1.0", out.path().join("b").display())).await?;
    assert_eq!(verify_layout_blobs(&out.path().join("b")), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_remote_repository_is_refused() -> Result<()> {
    let img = images();
    let srv = hosted_server().await;
    let oci = OciClient::new(&srv.base_url());
    let r = oci.start_upload("docker-remote/busybox").await?;
    assert!(r.status.is_client_error(), "status {}: {}", r.status, r.text());
    assert!(r.error_codes().contains(&"UNSUPPORTED".to_string()), "{}", r.text());

    let m = oci.put_manifest("docker-remote/busybox", "1.0", OCI_MANIFEST, &img.manifest("busybox", "1.0")).await?;
    assert!(m.status.is_client_error(), "status {}: {}", m.status, m.text());
    assert!(m.error_codes().contains(&"UNSUPPORTED".to_string()), "{}", m.text());

    let sk = Skopeo::new();
    let dst = format!("docker://{}/docker-remote/busybox:1.0", srv.addr());
    let pushed = sk.copy(&img.oci("busybox", "1.0"), &dst).await;
    assert!(pushed.is_err(), "skopeo push to a remote repository must fail");
    Ok(())
}
