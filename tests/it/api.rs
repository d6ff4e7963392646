//! The distribution API of a hosted repository at the HTTP level: upload flows,
//! manifest rules, tag listing and error codes, following the OCI distribution
//! spec (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>).

use anyhow::Result;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LINK, RANGE};
use reqwest::Method;
use serde_json::json;

use crate::images::sha256_digest;
use crate::oci::{noise, tag_names, OciClient, TestImage, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use crate::server::{docker_repos, TestServer, NO_UPSTREAM};

async fn setup() -> (TestServer, OciClient) {
    let srv = TestServer::start(&docker_repos(NO_UPSTREAM)).await;
    let oci = OciClient::new(&srv.base_url());
    (srv, oci)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_root_answers_200() -> Result<()> {
    let (_srv, oci) = setup().await;
    let r = oci.get("/v2/").await?;
    assert_eq!(r.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolithic_upload_then_head_and_get() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/blobs";
    let data = noise(1, 300_000);
    let digest = oci.push_blob(name, &data).await?;

    let head = oci.head_blob(name, &digest).await?;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(data.len().to_string().as_str()));
    assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    assert!(head.body.is_empty());

    let get = oci.get_blob(name, &digest).await?;
    assert_eq!(get.status, 200);
    assert_eq!(get.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(get.body.as_ref(), data.as_slice());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_post_upload_with_digest() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/blobs";
    let data = noise(2, 1000);
    let digest = sha256_digest(&data);
    let url = oci.url(&format!("/v2/{name}/blobs/uploads/?digest={digest}"));
    let r = oci.send(oci.http().post(url).header(CONTENT_TYPE, "application/octet-stream").body(data.clone())).await?;
    // A registry may ignore the digest and open a session instead (202).
    assert!(r.status == 201 || r.status == 202, "{} {}", r.status, r.text());
    if r.status == 201 {
        assert_eq!(oci.get_blob(name, &digest).await?.body.as_ref(), data.as_slice());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/chunks";
    let data = noise(3, 250_000);
    let digest = sha256_digest(&data);
    let (a, b) = data.split_at(100_000);

    let start = oci.start_upload(name).await?;
    assert_eq!(start.status, 202, "{}", start.text());
    let mut location = oci.location(&start)?;

    let mut offset = 0usize;
    for chunk in [a, b] {
        let end = offset + chunk.len() - 1;
        let r = oci
            .send(
                oci.http()
                    .patch(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{end}"))
                    .header(CONTENT_LENGTH, chunk.len())
                    .body(chunk.to_vec()),
            )
            .await?;
        assert_eq!(r.status, 202, "PATCH {offset}-{end}: {}", r.text());
        assert_eq!(r.header("range"), Some(format!("0-{end}").as_str()));
        location = oci.location(&r)?;
        offset = end + 1;
    }

    // Upload status.
    let status = oci.send(oci.http().get(location.clone())).await?;
    assert_eq!(status.status, 204, "{}", status.text());
    assert_eq!(status.header("range"), Some(format!("0-{}", data.len() - 1).as_str()));

    // Out-of-order chunk is refused with 416.
    let bad = oci
        .send(
            oci.http()
                .patch(location.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, "5-9")
                .body(vec![0u8; 5]),
        )
        .await?;
    assert_eq!(bad.status, 416, "{}", bad.text());

    let mut close = location.clone();
    close.query_pairs_mut().append_pair("digest", &digest);
    let done = oci.send(oci.http().put(close).header(CONTENT_LENGTH, 0)).await?;
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(done.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(oci.location(&done)?.path(), format!("/v2/{name}/blobs/{digest}"));
    assert_eq!(oci.get_blob(name, &digest).await?.body.as_ref(), data.as_slice());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_is_rejected_and_nothing_is_published() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/wrong";
    let data = noise(4, 5000);
    let claimed = sha256_digest(b"something else");
    let start = oci.start_upload(name).await?;
    assert_eq!(start.status, 202);
    let mut url = oci.location(&start)?;
    url.query_pairs_mut().append_pair("digest", &claimed);
    let r = oci.send(oci.http().put(url).header(CONTENT_TYPE, "application/octet-stream").body(data.clone())).await?;
    r.assert_error(400, &["DIGEST_INVALID"]);
    oci.get_blob(name, &claimed).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    oci.head_blob(name, &claimed).await.map(|h| assert_eq!(h.status, 404))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_blob_and_malformed_digest() -> Result<()> {
    let (_srv, oci) = setup().await;
    oci.get_blob("docker-local/x", &sha256_digest(b"nope")).await?.assert_error(404, &["BLOB_UNKNOWN"]);
    let bad = oci.get("/v2/docker-local/x/blobs/sha256:xyz").await?;
    assert!(bad.status == 400 || bad.status == 404, "{} {}", bad.status, bad.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_range_request() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/ranges";
    let data = noise(5, 10_000);
    let digest = oci.push_blob(name, &data).await?;
    let r =
        oci.send(oci.http().get(oci.url(&format!("/v2/{name}/blobs/{digest}"))).header(RANGE, "bytes=100-199")).await?;
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.body.as_ref(), &data[100..200]);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/10000"));
    // RFC 9110 §14.1.1: a last position below the first makes the range invalid, so it is ignored.
    for ignored in ["bytes=5-2", "bytes=abc"] {
        let url = oci.url(&format!("/v2/{name}/blobs/{digest}"));
        let r = oci.send(oci.http().get(url).header(RANGE, ignored)).await?;
        assert_eq!(r.status, 200, "{ignored}: {}", r.text());
        assert_eq!(r.body.as_ref(), data.as_slice(), "{ignored}: the whole blob");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_repository_mount() -> Result<()> {
    let (_srv, oci) = setup().await;
    let data = noise(6, 4000);
    let digest = oci.push_blob("docker-local/a", &data).await?;
    let url = oci.url(&format!("/v2/docker-local/b/blobs/uploads/?mount={digest}&from=docker-local/a"));
    let r = oci.send(oci.http().post(url).header(CONTENT_LENGTH, 0)).await?;
    // 201 = mounted; 202 = the registry chose to open an ordinary upload instead.
    assert!(r.status == 201 || r.status == 202, "{} {}", r.status, r.text());
    if r.status == 201 {
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(oci.get_blob("docker-local/b", &digest).await?.body.as_ref(), data.as_slice());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_put_get_head_by_tag_and_digest() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/app";
    let image = TestImage::new(10, &[2000, 3000]);
    let put = image.push(&oci, name, "v1").await?;
    let digest = image.digest();
    assert_eq!(put.header("docker-content-digest"), Some(digest.as_str()));
    assert!(put.header("location").is_some(), "PUT manifest must return Location");

    for reference in ["v1", digest.as_str()] {
        let get = oci.get_manifest(name, reference).await?;
        assert_eq!(get.status, 200, "{reference}: {}", get.text());
        assert_eq!(get.body.as_ref(), image.manifest.as_slice(), "{reference}: bytes must be stored verbatim");
        assert_eq!(get.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(get.header("docker-content-digest"), Some(digest.as_str()));
        let head = oci.head_manifest(name, reference).await?;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some(image.manifest.len().to_string().as_str()));
        assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    }
    // Pushing by digest (no tag) also works and does not create a tag.
    let other = TestImage::new(11, &[100]);
    for blob in std::iter::once(&other.config).chain(other.layers.iter()) {
        oci.push_blob(name, blob).await?;
    }
    let by_digest = oci.put_manifest(name, &other.digest(), OCI_MANIFEST, &other.manifest).await?;
    assert_eq!(by_digest.status, 201, "{}", by_digest.text());
    assert_eq!(oci.tag_names(name).await?, vec!["v1".to_string()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retag_moves_the_tag() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/moving";
    let one = TestImage::new(20, &[100]);
    let two = TestImage::new(21, &[100]);
    one.push(&oci, name, "latest").await?;
    two.push(&oci, name, "latest").await?;
    let get = oci.get_manifest(name, "latest").await?;
    assert_eq!(get.header("docker-content-digest"), Some(two.digest().as_str()));
    // The old manifest is still addressable by digest.
    assert_eq!(oci.get_manifest(name, &one.digest()).await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_referencing_missing_blob_is_rejected() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/broken";
    let image = TestImage::new(30, &[100]);
    oci.push_blob(name, &image.config).await?; // the layer is never pushed
    let r = oci.put_manifest(name, "v1", OCI_MANIFEST, &image.manifest).await?;
    r.assert_error(400, &["MANIFEST_BLOB_UNKNOWN"]);
    assert_eq!(oci.get_manifest(name, "v1").await?.status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_digest_mismatch_and_invalid_json_are_rejected() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/invalid";
    let image = TestImage::new(31, &[100]);
    for blob in std::iter::once(&image.config).chain(image.layers.iter()) {
        oci.push_blob(name, blob).await?;
    }
    let wrong = sha256_digest(b"not this manifest");
    oci.put_manifest(name, &wrong, OCI_MANIFEST, &image.manifest)
        .await?
        .assert_error(400, &["DIGEST_INVALID", "MANIFEST_INVALID"]);
    oci.put_manifest(name, "v1", OCI_MANIFEST, b"{not json").await?.assert_error(400, &["MANIFEST_INVALID"]);
    // A manifest bigger than any sane limit is refused, not buffered (4 MiB is the
    // limit most registries and clients use).
    let huge = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": image.config_digest(), "size": image.config.len() },
        "layers": [{ "mediaType": OCI_LAYER, "digest": image.layer_digest(0), "size": 100 }],
        "annotations": { "padding": "x".repeat(16 << 20) },
    });
    let r = oci.put_manifest(name, "huge", OCI_MANIFEST, &serde_json::to_vec(&huge)?).await?;
    assert!(r.status == 400 || r.status == 413, "{} {}", r.status, r.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_manifest_repo_and_name() -> Result<()> {
    let (_srv, oci) = setup().await;
    oci.get_manifest("docker-local/nothing", "1.0").await?.assert_error(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    oci.get_manifest("docker-local/nothing", &sha256_digest(b"x"))
        .await?
        .assert_error(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    // A repository key that is not configured.
    let r = oci.get_manifest("no-such-repo/busybox", "1.0").await?;
    assert_eq!(r.status, 404, "{}", r.text());
    // Invalid names / references are client errors, never 5xx.
    for path in [
        "/v2/docker-local/UPPER/manifests/1.0",
        "/v2/docker-local/a..b/manifests/1.0",
        "/v2/docker-local/x/manifests/bad!tag",
        "/v2/docker-local/x/manifests/sha256:short",
    ] {
        let r = oci.get(path).await?;
        assert!(r.status.is_client_error(), "{path}: {} {}", r.status, r.text());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_list_is_sorted_and_paginated() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/tagged";
    let image = TestImage::new(40, &[100]);
    for tag in ["c", "a", "b", "1.0"] {
        image.push(&oci, name, tag).await?;
    }
    assert_eq!(oci.tag_names(name).await?, vec!["1.0", "a", "b", "c"]);

    let page = oci.tags(name, Some(2), None).await?;
    assert_eq!(page.status, 200);
    assert_eq!(tag_names(&page), vec!["1.0", "a"]);
    // A Link header is optional; when present it points to the next page.
    if let Some(link) = page.header(LINK.as_str()) {
        assert!(link.contains("rel=\"next\""), "Link: {link}");
    }
    let none = oci.tags(name, Some(0), None).await?;
    assert_eq!(none.status, 200);
    assert!(tag_names(&none).is_empty(), "n=0 must return no tags: {}", none.text());
    assert!(none.header(LINK.as_str()).is_none(), "n=0 must not return a Link header");

    let next = oci.tags(name, Some(2), Some("a")).await?;
    assert_eq!(tag_names(&next), vec!["b", "c"]);
    let last = oci.tags(name, Some(2), Some("c")).await?;
    assert_eq!(last.status, 200);
    assert!(tag_names(&last).is_empty());

    oci.tags("docker-local/untagged-nothing", None, None).await?.assert_error(404, &["NAME_UNKNOWN"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_manifest_by_digest() -> Result<()> {
    let (_srv, oci) = setup().await;
    let name = "docker-local/del";
    let image = TestImage::new(50, &[100]);
    image.push(&oci, name, "v1").await?;
    let r = oci.delete_manifest(name, &image.digest()).await?;
    assert_eq!(r.status, 202, "{}", r.text());
    oci.get_manifest(name, &image.digest()).await?.assert_error(404, &["MANIFEST_UNKNOWN"]);
    assert_eq!(oci.get_manifest(name, "v1").await?.status, 404);
    let again = oci.delete_manifest(name, &image.digest()).await?;
    assert_eq!(again.status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_method_is_an_error_not_a_crash() -> Result<()> {
    let (srv, oci) = setup().await;
    let r = oci.request(Method::PATCH, "/v2/docker-local/x/manifests/1.0").await?;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.text());
    assert_eq!(oci.get("/v2/").await?.status, 200, "server still up; log:\n{}", srv.log());
    Ok(())
}
