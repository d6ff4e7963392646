//! Check-then-write sequences that race: what a rejected or concurrent request may not leave
//! behind (DESIGN.md: nothing already stored is lost or corrupted).

use anyhow::{ensure, Result};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE};
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use crate::images::sha256_digest;
use crate::oci::{noise, OciClient, OCI_MANIFEST};
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

/// A PATCH empty of bytes: 202 when the upload is free, 416 while another request holds it.
async fn probe(oci: &OciClient, url: &url::Url) -> Result<u16> {
    Ok(oci.send(oci.http().patch(url.clone()).header(CONTENT_LENGTH, 0)).await?.status.as_u16())
}

/// Polls (bounded) until the probe answers `want`.
async fn probe_until(oci: &OciClient, url: &url::Url, want: u16) -> Result<()> {
    for _ in 0..500 {
        if probe(oci, url).await? == want {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    anyhow::bail!("upload probe never answered {want}")
}

/// One request at a time per upload session: while a PATCH is still receiving its body, a
/// second PATCH, the final PUT and a cancel are refused (416), so the first PATCH can never
/// write into, or roll back, a blob that was published under it; once it ended the upload goes
/// on, and after the PUT the session is gone (404), its blob whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_one_upload_never_overlap() -> Result<()> {
    let srv = TestServer::start(&docker_repos(NO_UPSTREAM)).await;
    let oci = OciClient::new(&srv.base_url());
    let name = "docker-local/overlap";
    let start = oci.start_upload(name).await?;
    let upload = oci.location(&start)?;
    let data = noise(77, 1_000_000);
    let digest = sha256_digest(&data);

    // A: a PATCH whose body stops after 600 kB of 1 MB. Once the upload's file holds bytes
    // (the status GET takes no claim), A is certainly the request holding the upload.
    let mut stalled = tokio::net::TcpStream::connect(srv.addr()).await?;
    let head = format!(
        "PATCH {}?{} HTTP/1.1\r\nHost: {}\r\nContent-Range: 0-999999\r\nContent-Length: 1000000\r\n\r\n",
        upload.path(),
        upload.query().unwrap_or(""),
        srv.addr()
    );
    stalled.write_all(head.as_bytes()).await?;
    stalled.write_all(&data[..600_000]).await?;
    let mut holding = false;
    for _ in 0..500 {
        let status = oci.send(oci.http().get(upload.clone())).await?;
        if status.header("range").is_some_and(|r| r != "0-0") {
            holding = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    ensure!(holding, "the stalled PATCH never started writing");
    assert_eq!(probe(&oci, &upload).await?, 416, "a second request on a held upload");

    let chunk = oci.http().patch(upload.clone()).header(CONTENT_RANGE, "0-999999").body(data.clone());
    oci.send(chunk).await?.assert_error(416, &["RANGE_INVALID"]);
    let mut put_url = upload.clone();
    put_url.query_pairs_mut().append_pair("digest", &digest);
    oci.send(oci.http().put(put_url.clone()).body(data.clone())).await?.assert_error(416, &["RANGE_INVALID"]);
    oci.send(oci.http().delete(upload.clone())).await?.assert_error(416, &["RANGE_INVALID"]);

    drop(stalled);
    probe_until(&oci, &upload, 202).await?;
    let status = oci.send(oci.http().get(upload.clone())).await?;
    ensure!(
        status.header("range") == Some("0-0"),
        "the stalled chunk must be rolled back: {:?}",
        status.header("range")
    );
    let chunk = oci.http().patch(upload.clone()).header(CONTENT_RANGE, "0-999999").body(data.clone());
    assert_eq!(oci.send(chunk).await?.status, 202);
    let done = oci.send(oci.http().put(put_url).header(CONTENT_LENGTH, 0)).await?;
    assert_eq!(done.status, 201, "{}", done.text());
    oci.send(oci.http().patch(upload.clone()).header(CONTENT_LENGTH, 0))
        .await?
        .assert_error(404, &["BLOB_UPLOAD_UNKNOWN"]);
    let blob = oci.get_blob(name, &digest).await?;
    assert_eq!(sha256_digest(&blob.body), digest, "the published blob is whole");
    let on_disk = srv.data_dir().join(format!("blobs/sha256/{}/{}", &digest[7..9], &digest[7..]));
    assert_eq!(std::fs::metadata(on_disk)?.len(), data.len() as u64);
    Ok(())
}

/// An upload nobody finishes is removed after `storage.upload_ttl`, bytes and session: its
/// URL then answers 404 and the upload area is empty again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_are_purged_after_upload_ttl() -> Result<()> {
    let options = crate::server::ServerOptions {
        env: vec![("BINARYREPO_STORAGE__UPLOAD_TTL".into(), "1s".into())],
        ..Default::default()
    };
    let srv = TestServer::start_with(&docker_repos(NO_UPSTREAM), options).await;
    let oci = OciClient::new(&srv.base_url());
    let start = oci.start_upload("docker-local/abandoned").await?;
    let upload = oci.location(&start)?;
    let chunk = oci.http().patch(upload.clone()).header(CONTENT_RANGE, "0-999").body(noise(78, 1000));
    assert_eq!(oci.send(chunk).await?.status, 202);
    let uploads = srv.data_dir().join("uploads");
    assert_eq!(std::fs::read_dir(&uploads)?.count(), 1);
    for _ in 0..300 {
        if oci.send(oci.http().get(upload.clone())).await?.status == 404 {
            assert_eq!(std::fs::read_dir(&uploads)?.count(), 0, "the bytes go with the session");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("the abandoned upload was not purged within 15 s")
}
