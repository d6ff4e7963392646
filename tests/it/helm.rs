//! Helm chart repositories over HTTP, as the Helm client and ChartMuseum clients
//! (`helm cm-push`, curl) use them: uploads (PUT, raw POST, multipart with provenance),
//! index.yaml (schema, order, digests, ETag/304, gzip, absolute URLs with `public_url`),
//! downloads checked against the index digest, overwrite rules, deletes and clear 400s.
//! Remote, virtual and OCI charts are in `helm_remote.rs`.
//! Spec: <https://helm.sh/docs/topics/chart_repository/>.

use std::io::Read;

use anyhow::Result;
use reqwest::StatusCode;

use crate::helm_fixtures::{chart_yaml, multipart, package, package_with, prov, send, sha256_hex, tgz, HelmClient};
use crate::server::{ServerOptions, TestServer};

pub fn helm_repos(extra_hosted: &str) -> String {
    format!(
        r#"
[[repository]]
name = "helm-local"
format = "helm"
kind = "hosted"
{extra_hosted}
"#
    )
}

fn repo_url(srv: &TestServer) -> String {
    format!("{}/helm-local", srv.base_url())
}

async fn put(srv: &TestServer, file: &str, body: Vec<u8>) -> Result<crate::oci::Fetched> {
    let http = reqwest::Client::new();
    send(http.put(format!("{}/{file}", repo_url(srv))).body(body)).await
}

async fn post_raw(srv: &TestServer, body: Vec<u8>) -> Result<crate::oci::Fetched> {
    let http = reqwest::Client::new();
    send(http.post(format!("{}/api/helm-local/charts", srv.base_url())).body(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_three_ways_then_index_and_download() -> Result<()> {
    let srv = TestServer::start(&helm_repos("")).await;
    let http = reqwest::Client::new();
    let (a1, a2, b, c) = (
        package("alpha", "0.1.0"),
        package("alpha", "0.10.0"),
        package("beta", "1.0.0"),
        package("gamma", "2.0.0-rc.1"),
    );

    let r = put(&srv, "alpha-0.1.0.tgz", a1.clone()).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["saved"], true);
    assert_eq!(put(&srv, "alpha-0.10.0.tgz", a2.clone()).await?.status, StatusCode::CREATED);
    assert_eq!(post_raw(&srv, b.clone()).await?.status, StatusCode::CREATED);
    let gamma_prov = prov("gamma", "2.0.0-rc.1", &c);
    let (content_type, body) =
        multipart(Some(("gamma-2.0.0-rc.1.tgz", &c)), Some(("gamma-2.0.0-rc.1.tgz.prov", &gamma_prov)));
    let r = send(
        http.post(format!("{}/api/helm-local/charts", srv.base_url())).header("content-type", content_type).body(body),
    )
    .await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    let helm = HelmClient::new(&repo_url(&srv));
    let index = helm.index().await?;
    assert_eq!(index.entries.keys().collect::<Vec<_>>(), ["alpha", "beta", "gamma"]);
    let alpha: Vec<&str> = index.entries["alpha"].iter().map(|v| v.version.as_str()).collect();
    assert_eq!(alpha, ["0.10.0", "0.1.0"], "newest first, by SemVer");
    let a = &index.entries["alpha"][1];
    assert_eq!(a.urls, ["alpha-0.1.0.tgz"], "relative URLs by default");
    assert_eq!(a.digest.as_deref(), Some(sha256_hex(&a1).as_str()));
    assert_eq!(a.app_version.as_deref(), Some("1.25.3"));
    assert_eq!(a.description.as_deref(), Some("A test chart for alpha.\nSecond line of the description.\n"));
    assert_eq!(a.keywords, ["web", "http"]);
    assert_eq!(a.maintainers[0]["email"], "ada@example.com");
    assert_eq!(a.dependencies[1]["alias"], "cache");
    assert_eq!(a.dependencies[0]["tags"][0], "bitnami-common");
    assert_eq!(a.annotations["artifacthub.io/license"], "Apache-2.0");
    assert_eq!(a.kube_version.as_deref(), Some(">=1.22.0-0"));
    assert_eq!(a.chart_type.as_deref(), Some("application"));
    assert!(httpdate_or_rfc3339(&a.created), "created {}", a.created);
    assert!(httpdate_or_rfc3339(&index.generated), "generated {}", index.generated);
    assert!(a.other.is_empty(), "unexpected keys {:?}", a.other);

    assert_eq!(helm.pull("alpha", "0.1.0").await?, a1);
    assert_eq!(helm.pull("beta", "1.0.0").await?, b);
    assert_eq!(helm.pull("gamma", "2.0.0-rc.1").await?, c);
    // ChartMuseum-style URLs under charts/ work too, and the provenance file sits beside the chart.
    let r = send(http.get(format!("{}/charts/beta-1.0.0.tgz", repo_url(&srv)))).await?;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, b.len()));
    let r = send(http.get(format!("{}/gamma-2.0.0-rc.1.tgz.prov", repo_url(&srv)))).await?;
    assert_eq!((r.status, r.text()), (StatusCode::OK, gamma_prov.clone()));
    assert_eq!(send(http.get(format!("{}/beta-1.0.0.tgz.prov", repo_url(&srv)))).await?.status, StatusCode::NOT_FOUND);
    Ok(())
}

fn httpdate_or_rfc3339(text: &str) -> bool {
    humantime::parse_rfc3339(text).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chartmuseum_api_lists_describes_and_deletes() -> Result<()> {
    let srv = TestServer::start(&helm_repos("")).await;
    let http = reqwest::Client::new();
    let api = format!("{}/api/helm-local", srv.base_url());
    for (name, version) in [("alpha", "1.0.0"), ("alpha", "1.1.0-beta.1"), ("alpha", "0.9.0"), ("beta", "3.0.0")] {
        assert_eq!(post_raw(&srv, package(name, version)).await?.status, StatusCode::CREATED);
    }
    let alpha_prov = prov("alpha", "1.0.0", &package("alpha", "1.0.0"));
    let r = send(http.post(format!("{api}/prov")).body(alpha_prov.clone())).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    let all = send(http.get(format!("{api}/charts"))).await?.json();
    assert_eq!(all["alpha"].as_array().unwrap().len(), 3);
    assert_eq!(all["beta"][0]["urls"][0], "beta-3.0.0.tgz");
    let listed = send(http.get(format!("{api}/charts/alpha"))).await?;
    let head = send(http.head(format!("{api}/charts/alpha"))).await?;
    assert_eq!(head.header("content-length"), Some(listed.body.len().to_string().as_str()));
    let versions = listed.json();
    assert_eq!(versions[0]["version"], "1.1.0-beta.1");
    let latest = send(http.get(format!("{api}/charts/alpha/latest"))).await?.json();
    assert_eq!(latest["version"], "1.0.0", "latest is the newest release, not a pre-release");
    let one = send(http.get(format!("{api}/charts/alpha/0.9.0"))).await?;
    assert_eq!((one.status, one.json()["name"].clone()), (StatusCode::OK, "alpha".into()));
    let missing = send(http.get(format!("{api}/charts/nope"))).await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json()["error"].as_str().unwrap().contains("nope"));
    assert_eq!(send(http.head(format!("{api}/charts/alpha/9.9.9"))).await?.status, StatusCode::NOT_FOUND);

    let r = send(http.delete(format!("{api}/charts/alpha/1.0.0"))).await?;
    assert_eq!((r.status, r.json()["deleted"].clone()), (StatusCode::OK, true.into()));
    assert_eq!(send(http.delete(format!("{api}/charts/alpha/1.0.0"))).await?.status, StatusCode::NOT_FOUND);
    let index = HelmClient::new(&repo_url(&srv)).index().await?;
    let alpha: Vec<&str> = index.entries["alpha"].iter().map(|v| v.version.as_str()).collect();
    assert_eq!(alpha, ["1.1.0-beta.1", "0.9.0"]);
    for file in ["alpha-1.0.0.tgz", "alpha-1.0.0.tgz.prov"] {
        let r = send(http.get(format!("{}/{file}", repo_url(&srv)))).await?;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{file} after delete");
    }
    // SemVer build metadata: `+` in the file name, plain or escaped.
    let built = package("meta", "1.0.0+build.7");
    assert_eq!(post_raw(&srv, built.clone()).await?.status, StatusCode::CREATED);
    assert_eq!(HelmClient::new(&repo_url(&srv)).pull("meta", "1.0.0+build.7").await?, built);
    let escaped = send(http.get(format!("{}/meta-1.0.0%2Bbuild.7.tgz", repo_url(&srv)))).await?;
    assert_eq!((escaped.status, escaped.body.len()), (StatusCode::OK, built.len()));
    // Deleting the last version removes the chart from the index.
    assert_eq!(send(http.delete(format!("{api}/charts/beta/3.0.0"))).await?.status, StatusCode::OK);
    assert!(!HelmClient::new(&repo_url(&srv)).index().await?.entries.contains_key("beta"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_clear_400s_and_change_nothing() -> Result<()> {
    let srv = TestServer::start(&helm_repos("")).await;
    let http = reqwest::Client::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("junk-1.0.0.tgz", b"this is not gzip".to_vec(), "not a gzip-compressed tar"),
        ("nochart-1.0.0.tgz", tgz(&[("nochart/values.yaml", "a: 1\n")]), "no Chart.yaml"),
        ("flat-1.0.0.tgz", tgz(&[("Chart.yaml", "apiVersion: v2\nname: flat\nversion: 1.0.0\n")]), "no Chart.yaml"),
        ("badver-1.0.tgz", package_with("badver", "apiVersion: v2\nname: badver\nversion: \"1.0\"\n", ""), "SemVer"),
        (
            "badapi-1.0.0.tgz",
            package_with("badapi", "apiVersion: v9\nname: badapi\nversion: 1.0.0\n", ""),
            "apiVersion",
        ),
        ("moved-1.0.0.tgz", package_with("elsewhere", &chart_yaml("moved", "1.0.0"), ""), "directory"),
        (
            "two-1.0.0.tgz",
            tgz(&[("two/Chart.yaml", &chart_yaml("two", "1.0.0")), ("other/values.yaml", "a: 1\n")]),
            "outside the chart's top-level directory",
        ),
        (
            "dup-1.0.0.tgz",
            tgz(&[("dup/Chart.yaml", &chart_yaml("dup", "1.0.0")), ("dup/Chart.yaml", &chart_yaml("dup", "1.0.0"))]),
            "more than one",
        ),
        ("other-1.0.0.tgz", package("real", "1.0.0"), "upload path names other-1.0.0"),
        ("real-2.0.0.tgz", package("real", "1.0.0"), "upload path names real-2.0.0"),
    ];
    for (file, body, want) in cases {
        let r = put(&srv, file, body).await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{file}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let message = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(want), "{file}: {message:?} should contain {want:?}");
    }
    let r = put(&srv, "not-a-chart-name.tgz", package("x", "1.0.0")).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Multipart: a provenance file for another chart, and no chart field at all.
    let chart = package("signed", "1.0.0");
    let (ct, body) = multipart(Some(("signed-1.0.0.tgz", &chart)), Some(("x.prov", &prov("other", "1.0.0", &chart))));
    let r = send(http.post(format!("{}/api/helm-local/charts", srv.base_url())).header("content-type", ct).body(body))
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("signs other-1.0.0"), "{}", r.text());
    let (ct, mut body) = multipart(Some(("signed-1.0.0.tgz", &chart)), None);
    let second = multipart(Some(("signed-1.0.0.tgz", &chart)), None).1;
    body.truncate(body.len() - "--binaryrepo-test-boundary-7MA4YWxkTrZu0gW--\r\n".len());
    body.extend_from_slice(&second);
    let r = send(http.post(format!("{}/api/helm-local/charts", srv.base_url())).header("content-type", ct).body(body))
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("more than one \\\"chart\\\" field"), "{}", r.text());
    let (ct, body) = multipart(None, None);
    let r = send(http.post(format!("{}/api/helm-local/charts", srv.base_url())).header("content-type", ct).body(body))
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = send(http.post(format!("{}/api/helm-local/prov", srv.base_url())).body("not signed")).await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = send(http.post(format!("{}/api/helm-local/charts/x", srv.base_url()))).await?;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text());
    // Unknown repositories and API paths answer ChartMuseum's JSON error body.
    for path in [
        "api/no-such-repo/charts",
        "api/helm-local/nope",
        "api/helm-local/charts/a/1.0.0/x/y",
        "no-such-repo/index.yaml",
        "no-such-repo/app-1.0.0.tgz",
        "helm-local/README.md",
    ] {
        let r = send(http.get(format!("{}/{path}", srv.base_url()))).await?;
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {}", r.text());
    }
    let r = send(http.get(format!("{}/api/no-such-repo/charts", srv.base_url()))).await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"].as_str().unwrap().contains("no-such-repo"), "{}", r.text());

    let index = HelmClient::new(&repo_url(&srv)).index().await?;
    assert!(index.entries.is_empty(), "{:?}", index.entries.keys());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_version_other_bytes_is_409_unless_overwrite_is_allowed() -> Result<()> {
    let srv = TestServer::start(&format!(
        "{}\n[[repository]]\nname = \"helm-dev\"\nformat = \"helm\"\nkind = \"hosted\"\nallow_overwrite = true\n",
        helm_repos("")
    ))
    .await;
    let http = reqwest::Client::new();
    let first = package("app", "1.0.0");
    let second = package_with("app", &chart_yaml("app", "1.0.0"), "rebuilt");
    assert_ne!(first, second);
    assert_eq!(put(&srv, "app-1.0.0.tgz", first.clone()).await?.status, StatusCode::CREATED);
    assert_eq!(put(&srv, "app-1.0.0.tgz", first.clone()).await?.status, StatusCode::CREATED, "same bytes again");
    let r = post_raw(&srv, second.clone()).await?;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("already exists"));
    assert_eq!(HelmClient::new(&repo_url(&srv)).pull("app", "1.0.0").await?, first);

    let dev = format!("{}/helm-dev", srv.base_url());
    assert_eq!(send(http.put(format!("{dev}/app-1.0.0.tgz")).body(first.clone())).await?.status, StatusCode::CREATED);
    let r = send(http.put(format!("{dev}/app-1.0.0.tgz")).body(second.clone())).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(HelmClient::new(&dev).pull("app", "1.0.0").await?, second);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_has_etag_304_and_gzip() -> Result<()> {
    let srv = TestServer::start(&helm_repos("")).await;
    let http = reqwest::Client::new();
    let index_url = format!("{}/index.yaml", repo_url(&srv));
    let empty = send(http.get(&index_url)).await?;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.text().contains("entries: {}"), "{}", empty.text());
    assert_eq!(put(&srv, "web-1.0.0.tgz", package("web", "1.0.0")).await?.status, StatusCode::CREATED);

    let plain = send(http.get(&index_url)).await?;
    let etag = plain.header("etag").expect("ETag").to_string();
    assert_ne!(Some(etag.as_str()), empty.header("etag"), "the ETag changes with the content");
    assert_eq!(plain.header("content-type"), Some("application/x-yaml"));
    let again = send(http.get(&index_url).header("if-none-match", &etag)).await?;
    assert_eq!((again.status, again.body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(send(http.get(&index_url)).await?.body, plain.body, "cached rendering is stable");
    let head = send(http.head(&index_url)).await?;
    assert_eq!(
        (head.status, head.header("content-length")),
        (StatusCode::OK, Some(plain.body.len().to_string().as_str()))
    );

    let zipped = send(http.get(&index_url).header("accept-encoding", "gzip")).await?;
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(zipped.body.as_ref()).read_to_string(&mut text)?;
    assert_eq!(text.as_bytes(), plain.body.as_ref());
    assert!(zipped.body.len() < plain.body.len());
    let zetag = zipped.header("etag").unwrap().to_string();
    assert_ne!(zetag, etag);
    let again = send(http.get(&index_url).header("accept-encoding", "gzip").header("if-none-match", &zetag)).await?;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    assert_eq!(put(&srv, "web-1.1.0.tgz", package("web", "1.1.0")).await?.status, StatusCode::CREATED);
    let changed = send(http.get(&index_url).header("if-none-match", &etag)).await?;
    assert_eq!(changed.status, StatusCode::OK, "an upload invalidates the cached index");
    assert!(changed.text().contains("version: 1.1.0"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_makes_chart_urls_absolute_and_restart_keeps_charts() -> Result<()> {
    let options =
        ServerOptions { server_toml: "public_url = \"https://charts.example.com\"".into(), ..Default::default() };
    let mut srv = TestServer::start_with(&helm_repos(""), options).await;
    assert_eq!(put(&srv, "web-1.0.0.tgz", package("web", "1.0.0")).await?.status, StatusCode::CREATED);
    let index = HelmClient::new(&repo_url(&srv)).index().await?;
    assert_eq!(index.entries["web"][0].urls, ["https://charts.example.com/helm-local/web-1.0.0.tgz"]);
    let http = reqwest::Client::new();
    let index_url = format!("{}/index.yaml", repo_url(&srv));
    let before = send(http.get(&index_url)).await?;
    let etag = before.header("etag").unwrap().to_string();
    // `generated` is when the charts last changed (the newest `created`), not render time.
    let created = index.entries["web"][0].created.clone();
    assert!(before.text().contains(&format!("generated: \"{created}\"")), "{}", before.text());
    srv.restart().await;
    let index = HelmClient::new(&repo_url(&srv)).index().await?;
    assert_eq!(index.entries["web"][0].version, "1.0.0", "the index is rebuilt from the catalog");
    let after = send(http.get(&index_url)).await?;
    assert_eq!(after.header("etag"), Some(etag.as_str()), "nothing changed: same ETag after a restart");
    assert_eq!(after.body, before.body, "and the same document");
    let r = send(http.get(&index_url).header("if-none-match", &etag)).await?;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    Ok(())
}

/// Incompressible text, so an archive of it is about as large as its contents.
fn noise(len: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_take_charts_past_axums_default_limit() -> Result<()> {
    let srv = TestServer::start(&helm_repos("")).await;
    let http = reqwest::Client::new();
    let api = format!("{}/api/helm-local", srv.base_url());
    // A chart of about 4 MiB (axum's default body limit is 2 MiB), with its provenance file.
    let big = tgz(&[("big/Chart.yaml", &chart_yaml("big", "1.0.0")), ("big/files/blob.txt", &noise(5 << 20))]);
    assert!(big.len() > 3 << 20, "{}", big.len());
    let signature = prov("big", "1.0.0", &big);
    let (ct, body) = multipart(Some(("big-1.0.0.tgz", &big)), Some(("big-1.0.0.tgz.prov", &signature)));
    let r = send(http.post(format!("{api}/charts")).header("content-type", ct).body(body)).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let helm = HelmClient::new(&repo_url(&srv));
    assert_eq!(helm.pull("big", "1.0.0").await?, big);

    // A provenance file alone, multipart, past 2 MiB of form (padding fields are ignored).
    let other = package("small", "1.0.0");
    let (ct, mut body) = multipart(None, Some(("small-1.0.0.tgz.prov", &prov("small", "1.0.0", &other))));
    let padding = format!(
        "--binaryrepo-test-boundary-7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"padding\"\r\n\r\n{}\r\n",
        "p".repeat(3 << 20)
    );
    body.splice(0..0, padding.into_bytes());
    let r = send(http.post(format!("{api}/prov")).header("content-type", ct).body(body)).await?;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(http.get(format!("{}/small-1.0.0.tgz.prov", repo_url(&srv)))).await?;
    assert_eq!(r.status, StatusCode::OK);

    // Past the real limit: 413 with a JSON message that says what the limit is.
    let huge = vec![0u8; (64 << 20) + (2 << 20)];
    let (ct, body) = multipart(Some(("huge-1.0.0.tgz", &huge)), None);
    let r = send(http.post(format!("{api}/charts")).header("content-type", ct).body(body)).await?;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json()["error"].as_str().unwrap().contains("exceeds"), "{}", r.text());
    let r = send(http.post(format!("{api}/prov")).body(vec![b'x'; 2 << 20])).await?;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("exceeds"), "{}", r.text());
    Ok(())
}
