//! Check-then-write sequences that race: what a rejected or concurrent request may not leave
//! behind (DESIGN.md: nothing already stored is lost or corrupted).

use anyhow::Result;
use reqwest::Method;

use crate::oci::{OciClient, OCI_MANIFEST};
use crate::server::{docker_repos, TestServer, NO_UPSTREAM};

/// A manifest push checks that its blobs exist; a blob delete checks that no manifest uses the
/// blob. Sent at the same moment, one of them must lose: never a stored manifest whose config
/// blob is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_delete_racing_a_manifest_push_never_leaves_it_dangling() -> Result<()> {
    let srv = TestServer::start(&docker_repos(NO_UPSTREAM)).await;
    let oci = OciClient::new(&srv.base_url());
    let (mut pushed, mut deleted) = (0, 0);
    for round in 0..20 {
        let name = format!("docker-local/race{round}");
        let config_bytes = format!("{{\"round\":{round}}}");
        let config = oci.push_blob(&name, config_bytes.as_bytes()).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                        "size": config_bytes.len() },
            "layers": [],
        })
        .to_string();
        let delete_path = format!("/v2/{name}/blobs/{config}");
        let (put, delete) = tokio::join!(
            oci.put_manifest(&name, "t", OCI_MANIFEST, manifest.as_bytes()),
            oci.request(Method::DELETE, &delete_path)
        );
        let (put, delete) = (put?, delete?);
        let blob_after = oci.head_blob(&name, &config).await?.status.as_u16();
        let manifest_after = oci.get_manifest(&name, "t").await?.status.as_u16();
        match (put.status.as_u16(), delete.status.as_u16()) {
            (201, 405) => {
                pushed += 1;
                assert_eq!((blob_after, manifest_after), (200, 200), "round {round}: the pushed image must be whole");
            }
            (400, 202) => {
                deleted += 1;
                assert_eq!(put.error_codes(), vec!["MANIFEST_BLOB_UNKNOWN"], "round {round}");
                assert_eq!((blob_after, manifest_after), (404, 404), "round {round}: nothing may remain");
            }
            other => panic!(
                "round {round}: manifest PUT and blob DELETE answered {other:?}: {} / {}",
                put.text(),
                delete.text()
            ),
        }
    }
    assert_eq!(pushed + deleted, 20);
    Ok(())
}
