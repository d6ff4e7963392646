//! Hosted Go module repositories with the real `go` command (GOPROXY protocol,
//! <https://go.dev/ref/mod#goproxy-protocol>): uploads (PUT and multipart), the module-zip
//! rules, immutable versions, then `go get`, `go list -m -versions`, `go mod download` and
//! `go build` against what was uploaded.

use anyhow::Result;

use crate::gomod::{get, go_repos, library, module_zip, publish, put, GoEnv, GREET, MAIN_GO};
use crate::server::{TestServer, NO_UPSTREAM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_upload_then_go_get_and_build() -> Result<()> {
    let srv = TestServer::start(&go_repos(NO_UPSTREAM, "")).await;
    publish(&srv, "go-local", GREET, "v1.0.0", library(GREET, "v1.0.0", "hello from v1.0.0")).await;
    publish(&srv, "go-local", GREET, "v1.1.0", library(GREET, "v1.1.0", "hello from v1.1.0")).await;
    publish(&srv, "go-local", GREET, "v1.2.0-rc.1", library(GREET, "v1.2.0-rc.1", "rc")).await;

    let go = GoEnv::new(&format!("{}/go-local", srv.base_url()));
    let versions = go.ok(&["list", "-m", "-versions", GREET]).await?;
    assert_eq!(versions.trim(), "example.com/greet v1.0.0 v1.1.0 v1.2.0-rc.1");
    go.app(MAIN_GO);
    go.ok(&["get", "example.com/greet@v1.0.0"]).await?;
    go.ok(&["build", "-o", "app", "."]).await?;
    let out = std::process::Command::new(go.work().join("app")).output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello from v1.0.0");
    // @latest is the highest release, not the release candidate.
    go.ok(&["get", "example.com/greet@latest"]).await?;
    let listed = go.ok(&["list", "-m", GREET]).await?;
    assert_eq!(listed.trim(), "example.com/greet v1.1.0");
    let json = go.ok(&["mod", "download", "-json", "example.com/greet@v1.2.0-rc.1"]).await?;
    assert!(json.contains("\"Version\": \"v1.2.0-rc.1\""), "{json}");

    // Protocol details: content types, @latest, generated .mod, plain-text 404s.
    let base = format!("{}/go-local/{GREET}", srv.base_url());
    let (status, _, latest) = get(&format!("{base}/@latest")).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&latest).contains("\"Version\":\"v1.1.0\""), "{latest:?}");
    let (status, _, go_mod) = get(&format!("{base}/@v/v1.0.0.mod")).await;
    assert_eq!((status, go_mod.as_ref()), (200, b"module example.com/greet\n\ngo 1.19\n".as_ref()));
    let (status, _, text) = get(&format!("{base}/@v/v9.9.9.info")).await;
    assert_eq!(status, 404, "{text:?}");
    let (status, _, _) = get(&format!("{}/go-local/example.com/nothing/@v/list", srv.base_url())).await;
    assert_eq!(status, 404);
    let response = crate::gomod::http().get(format!("{base}/@v/v1.0.0.zip")).send().await?;
    assert_eq!(response.headers()["content-type"], "application/zip");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_encoded_module_paths_and_multipart_upload() -> Result<()> {
    let srv = TestServer::start(&go_repos(NO_UPSTREAM, "")).await;
    let module = "example.com/BigCorp/Lib";
    let zip = library(module, "v0.1.0", "big");
    // The README's form upload: the module and version come from the zip's prefix.
    let boundary = "binaryrepo-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"zip\"; filename=\"lib.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&zip);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = crate::gomod::http()
        .post(format!("{}/api/go/go/upload", srv.base_url()))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await?;
    assert_eq!(response.status(), 201, "{}", response.text().await?);

    let base = srv.base_url();
    for path in ["example.com/!big!corp/!lib", "example.com/%21big%21corp/%21lib"] {
        let (status, _, list) = get(&format!("{base}/go-local/{path}/@v/list")).await;
        assert_eq!((status, list.as_ref()), (200, b"v0.1.0\n".as_ref()), "{path}");
    }
    let (status, _, _) = get(&format!("{base}/go-local/example.com/!big!corp/lib/@v/list")).await;
    assert_eq!(status, 404, "lib and Lib are different modules");
    let go = GoEnv::new(&format!("{base}/go"));
    go.ok(&["mod", "download", "example.com/BigCorp/Lib@v0.1.0"]).await?;
    assert!(go.modcache().join("cache/download/example.com/!big!corp/!lib/@v/v0.1.0.zip").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_rejected_with_reasons() -> Result<()> {
    let srv = TestServer::start(&go_repos(NO_UPSTREAM, "")).await;
    let url = |module: &str, file: &str| format!("{}/go-local/{module}/@v/{file}", srv.base_url());
    let cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        (url(GREET, "v1.0.0.zip"), b"not a zip".to_vec(), 400, "not a zip"),
        (url(GREET, "v1.0.0.zip"), library("example.com/other", "v1.0.0", "x"), 400, "is not under"),
        (
            url(GREET, "v1.0.0.zip"),
            module_zip(GREET, "v1.0.0", &[("go.mod", "module example.com/other\n")]),
            400,
            "declares module",
        ),
        (url(GREET, "v1.0.0.zip"), module_zip(GREET, "v1.0.0", &[("a.go", ""), ("A.go", "")]), 400, "letter case"),
        (url(GREET, "v1.0.0.zip"), module_zip(GREET, "v1.0.0", &[("x/../y.go", "")]), 400, "clean"),
        (url(GREET, "v2.0.0.zip"), library(GREET, "v2.0.0", "x"), 400, "/v2"),
        (url(GREET, "v1.0.zip"), library(GREET, "v1.0", "x"), 400, "canonical"),
        (url("example.com/Greet", "v1.0.0.zip"), library(GREET, "v1.0.0", "x"), 400, "malformed"),
        (url(GREET, "v1.0.0.mod"), b"module example.com/wrong\n".to_vec(), 400, "declares module"),
        (url(GREET, "v1.0.0.info"), b"{\"Version\":\"v1.0.1\"}".to_vec(), 400, "v1.0.1"),
        (url(GREET, "v1.0.0.info"), br#"{"Version":"v1.0.0","Time":"yesterday"}"#.to_vec(), 400, "RFC 3339"),
        (url(GREET, "v1.0.0.info"), br#"{"Version":"v1.0.0"}"#.to_vec(), 400, "no Time"),
        (url(GREET, "v1.0.0.zip"), module_zip(GREET, "v1.0.0", &[("aux.go", "")]), 400, "reserved"),
        (url(GREET, "v1.0.0.zip"), module_zip(GREET, "v1.0.0", &[("Com1.txt", "")]), 400, "reserved"),
        (url(GREET, "v1.0.0.zip"), module_zip(GREET, "v1.0.0", &[("dir./x.go", "")]), 400, "ends with a dot"),
        (url(GREET, "v1.0.0.zip"), module_zip(GREET, "v1.0.0", &[("a;b.go", "")]), 400, "not allowed"),
        (
            url(GREET, "v0.0.0-20191399999999-abcdefabcdef.zip"),
            library(GREET, "v0.0.0-20191399999999-abcdefabcdef", "x"),
            400,
            "real date and time",
        ),
    ];
    for (url, body, want, why) in cases {
        let (status, text) = put(&url, body).await;
        assert_eq!(status, want, "PUT {url}: {text}");
        assert!(text.contains(why), "PUT {url}: {text:?} should mention {why:?}");
    }
    let (status, _, _) = get(&url(GREET, "list")).await;
    assert_eq!(status, 404, "nothing was published by the rejected uploads");

    // Immutable versions: same bytes again are fine, different bytes are a conflict.
    let zip = library(GREET, "v1.0.0", "one");
    assert_eq!(put(&url(GREET, "v1.0.0.zip"), zip.clone()).await.0, 201);
    assert_eq!(put(&url(GREET, "v1.0.0.zip"), zip).await.0, 200);
    let (status, text) = put(&url(GREET, "v1.0.0.zip"), library(GREET, "v1.0.0", "two")).await;
    assert_eq!(status, 409, "{text}");
    let (status, text) = put(&url(GREET, "v1.0.0.mod"), b"module example.com/greet\n".to_vec()).await;
    assert_eq!(status, 409, "a different .mod for a published version: {text}");
    let remote = format!("{}/go-remote/{GREET}/@v/v1.0.0.zip", srv.base_url());
    assert_eq!(put(&remote, library(GREET, "v1.0.0", "x")).await.0, 405);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudo_versions_and_incompatible_majors() -> Result<()> {
    let srv = TestServer::start(&go_repos(NO_UPSTREAM, "")).await;
    let dev = "example.com/dev";
    let pseudo = "v0.0.0-20240102030405-abcdefabcdef";
    publish(&srv, "go-local", dev, pseudo, library(dev, pseudo, "unreleased")).await;
    // Higher in semver order, but an older commit: @latest is the newest commit, as the mirror picks.
    let older = "v0.1.1-0.20230101000000-aaaaaaaaaaaa";
    publish(&srv, "go-local", dev, older, library(dev, older, "older")).await;
    let old = "example.com/old";
    let incompatible = "v2.1.0+incompatible";
    let zip = module_zip(old, incompatible, &[("old.go", "package old\n")]);
    publish(&srv, "go-local", old, incompatible, zip).await;
    let v2 = "example.com/old/v3";
    publish(&srv, "go-local", v2, "v3.0.0", library(v2, "v3.0.0", "three")).await;

    let base = srv.base_url();
    // Pseudo-versions are not listed, but are @latest when nothing else exists, with their commit time.
    let (status, _, list) = get(&format!("{base}/go-local/{dev}/@v/list")).await;
    assert_eq!((status, list.as_ref()), (200, b"".as_ref()));
    let (_, _, latest) = get(&format!("{base}/go/{dev}/@latest")).await;
    let latest = String::from_utf8_lossy(&latest);
    assert!(latest.contains(pseudo) && latest.contains("2024-01-02T03:04:05Z"), "{latest}");
    let go = GoEnv::new(&format!("{base}/go"));
    let listed = go.ok(&["list", "-m", &format!("{dev}@latest")]).await?;
    assert_eq!(listed.trim(), format!("{dev} {pseudo}"));
    go.ok(&["mod", "download", &format!("{dev}@{pseudo}")]).await?;
    // +incompatible: listed and downloadable, with a generated go.mod.
    assert_eq!(go.ok(&["list", "-m", "-versions", old]).await?.trim(), format!("{old} {incompatible}"));
    go.ok(&["mod", "download", &format!("{old}@{incompatible}"), &format!("{v2}@v3.0.0")]).await?;
    let (_, _, go_mod) = get(&format!("{base}/go-local/{old}/@v/{incompatible}.mod")).await;
    assert_eq!(go_mod.as_ref(), b"module example.com/old\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mod_before_zip_and_allow_overwrite() -> Result<()> {
    let open = "[[repository]]\nname = \"go-open\"\nformat = \"go\"\nkind = \"hosted\"\nallow_overwrite = true\n";
    let srv = TestServer::start(&(go_repos(NO_UPSTREAM, "") + open)).await;
    let url = |repo: &str, file: &str| format!("{}/{repo}/{GREET}/@v/{file}", srv.base_url());
    // A .mod uploaded first binds the zip that follows.
    let go_mod = "module example.com/greet\n\ngo 1.19\n";
    let (status, text) = put(&url("go-local", "v1.0.0.mod"), go_mod.into()).await;
    assert_eq!(status, 201, "{text}");
    assert!(text.contains("listed once its .zip is uploaded") && !text.contains("published"), "{text}");
    let info = br#"{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}"#.to_vec();
    let (status, text) = put(&url("go-local", "v1.0.0.info"), info).await;
    assert!(status == 201 && text.contains("listed once its .zip is uploaded"), "{status} {text}");
    assert_eq!(get(&url("go-local", "list")).await.0, 404, "not listed before its zip");
    let other = module_zip(GREET, "v1.0.0", &[("go.mod", "module example.com/greet\n\ngo 1.20\n")]);
    let (status, text) = put(&url("go-local", "v1.0.0.zip"), other).await;
    assert!(status == 400 && text.contains("differs"), "{status} {text}");
    assert_eq!(put(&url("go-local", "v1.0.0.zip"), library(GREET, "v1.0.0", "x")).await.0, 201);
    assert_eq!(get(&url("go-local", "list")).await.2.as_ref(), b"v1.0.0\n");

    // allow_overwrite: a new zip replaces the old one and its generated .mod.
    assert_eq!(put(&url("go-open", "v1.0.0.zip"), library(GREET, "v1.0.0", "one")).await.0, 201);
    let two = module_zip(
        GREET,
        "v1.0.0",
        &[("go.mod", "module example.com/greet\n\ngo 1.20\n"), ("g.go", "package greet\n")],
    );
    assert_eq!(put(&url("go-open", "v1.0.0.zip"), two.clone()).await.0, 201);
    assert_eq!(get(&url("go-open", "v1.0.0.zip")).await.2.as_ref(), two.as_slice());
    assert_eq!(get(&url("go-open", "v1.0.0.mod")).await.2.as_ref(), b"module example.com/greet\n\ngo 1.20\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_form_errors_are_go_style() -> Result<()> {
    let helm = "[[repository]]\nname = \"charts\"\nformat = \"helm\"\nkind = \"hosted\"\n";
    let srv = TestServer::start(&(go_repos(NO_UPSTREAM, "") + helm)).await;
    let form = |url: String, fields: &[(&str, Vec<u8>)]| {
        let boundary = "binaryrepo-form-boundary";
        let mut body = Vec::new();
        for (name, bytes) in fields {
            let head =
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\r\n");
            body.extend_from_slice(head.as_bytes());
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        async move {
            let content_type = format!("multipart/form-data; boundary={boundary}");
            let request = crate::gomod::http().post(url).header("content-type", content_type).body(body);
            let response = request.send().await.expect("POST");
            let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string());
            (response.status().as_u16(), content_type.unwrap_or_default(), response.text().await.unwrap_or_default())
        }
    };
    let zip = library(GREET, "v1.0.0", "x");
    for repo in ["charts", "nothing-here"] {
        let (status, content_type, text) =
            form(format!("{}/api/go/{repo}/upload", srv.base_url()), &[("zip", zip.clone())]).await;
        assert_eq!(status, 404, "{repo}: {text}");
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert!(text.contains("no go repository") && text.contains(repo) && !text.contains("helm"), "{text}");
    }
    let upload = format!("{}/api/go/go-local/upload/", srv.base_url());
    let (status, _, text) = form(upload.clone(), &[("zip", zip.clone()), ("zip", zip.clone())]).await;
    assert!(status == 400 && text.contains("more than one \"zip\""), "{status} {text}");
    let (status, _, text) =
        form(upload.clone(), &[("module", GREET.into()), ("zip", zip.clone()), ("module", GREET.into())]).await;
    assert!(status == 400 && text.contains("more than one \"module\""), "{status} {text}");
    let response = crate::gomod::http().post(&upload).body(zip.clone()).send().await?;
    let (status, text) = (response.status().as_u16(), response.text().await?);
    assert!(status == 400 && text.contains("multipart/form-data") && text.contains("zip"), "{status} {text}");
    // The trailing slash is accepted.
    let (status, _, text) = form(upload, &[("zip", zip)]).await;
    assert_eq!(status, 201, "{text}");
    Ok(())
}
