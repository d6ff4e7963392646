//! Virtual repository `docker` over `docker-local` (first) and `docker-remote`:
//! pushes land in the deploy target, pulls resolve through the members in order.

use anyhow::Result;

use crate::clients::Skopeo;
use crate::images::{images, layout_digest, verify_layout_blobs};
use crate::oci::{OciClient, TestImage};
use crate::server::{docker_repos, TestServer};
use crate::upstream::DistributionRegistry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_virtual_lands_in_deploy_target() -> Result<()> {
    let img = images();
    let up = DistributionRegistry::start().await;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let sk = Skopeo::new();
    let want = img.digest("busybox", "1.0");

    sk.copy(&img.oci("busybox", "1.0"), &format!("docker://{}/docker/vbox:1.0", srv.addr())).await?;

    let oci = OciClient::new(&srv.base_url());
    let local = oci.get_manifest("docker-local/vbox", "1.0").await?;
    assert_eq!(local.status, 200, "{}", local.text());
    assert_eq!(local.header("docker-content-digest"), Some(want));
    // Not in the remote member (its upstream is empty) …
    let remote = oci.get_manifest("docker-remote/vbox", "1.0").await?;
    assert_eq!(remote.status, 404, "{}", remote.text());
    // … nor pushed to the upstream.
    let upstream = OciClient::new(&up.url()).get_manifest("vbox", "1.0").await?;
    assert_eq!(upstream.status, 404);
    // Readable through the virtual repository.
    assert_eq!(sk.inspect_digest(&format!("docker://{}/docker/vbox:1.0", srv.addr())).await?, want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_virtual_of_upstream_only_image() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let up = DistributionRegistry::start().await;
    sk.copy(&img.oci("busybox", "1.0"), &format!("docker://{}/busybox:1.0", up.addr())).await?;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let want = img.digest("busybox", "1.0");

    let out = tempfile::tempdir()?;
    let layout = out.path().join("v");
    sk.copy(&format!("docker://{}/docker/busybox:1.0", srv.addr()), &format!("oci:{}:1.0", layout.display())).await?;
    assert_eq!(layout_digest(&layout, "1.0"), want);
    assert_eq!(verify_layout_blobs(&layout), 3);

    // By digest too, and the blobs are addressable through the virtual name.
    let oci = OciClient::new(&srv.base_url());
    let m = oci.get_manifest("docker/busybox", want).await?;
    assert_eq!(m.status, 200);
    for d in img.children("busybox", want) {
        let b = oci.get_blob("docker/busybox", &d.digest).await?;
        assert_eq!(b.status, 200, "{}", d.digest);
        assert_eq!(b.body.len() as u64, d.size);
    }
    // Pulling through the virtual repository did not deploy anything locally.
    let local = oci.get_manifest("docker-local/busybox", "1.0").await?;
    assert_eq!(local.status, 404, "{}", local.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_prefers_the_first_member() -> Result<()> {
    let img = images();
    let sk = Skopeo::new();
    let up = DistributionRegistry::start().await;
    // Same name and tag upstream and locally, different content.
    sk.copy(&img.oci("busybox", "1.0"), &format!("docker://{}/shadow:1.0", up.addr())).await?;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let oci = OciClient::new(&srv.base_url());
    let local = TestImage::new(200, &[1000]);
    local.push(&oci, "docker-local/shadow", "1.0").await?;

    let m = oci.get_manifest("docker/shadow", "1.0").await?;
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.header("docker-content-digest"), Some(local.digest().as_str()));
    // The remote member still serves its own version.
    let r = oci.get_manifest("docker-remote/shadow", "1.0").await?;
    assert_eq!(r.header("docker-content-digest"), Some(img.digest("busybox", "1.0")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_misses_are_404() -> Result<()> {
    let up = DistributionRegistry::start().await;
    let srv = TestServer::start(&docker_repos(&up.url())).await;
    let oci = OciClient::new(&srv.base_url());
    oci.get_manifest("docker/nothing-here", "1.0").await?.assert_error(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    Ok(())
}
