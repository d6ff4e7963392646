//! Remote and virtual Go module repositories with the real `go` command: a remote over a
//! second binaryrepo or a scripted GOPROXY tree (caching, serve-stale, one upstream fetch
//! for concurrent downloads, exclude patterns, negative cache), a virtual repository
//! merging members with hosted paths shadowing remotes, and the checksum database proxy,
//! verified by the go command against a signed test database.

use anyhow::Result;

use crate::gomod::{get, go_repos, library, module_zip, noise, publish, GoEnv, GREET, MAIN_GO};
use crate::goproxy::FakeGoProxy;
use crate::server::{TestServer, NO_UPSTREAM};

/// go-local and go-extra (hosted) and go-remote (over `upstream`) under the virtual `go`.
fn virtual_trio(upstream: &str) -> String {
    let extra = "[[repository]]\nname = \"go-extra\"\nformat = \"go\"\nkind = \"hosted\"\n";
    go_repos(upstream, "")
        .replace("members = [\"go-local\", \"go-remote\"]", "members = [\"go-local\", \"go-extra\", \"go-remote\"]")
        + extra
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_caches_and_serves_when_the_upstream_is_down() -> Result<()> {
    let mut up = TestServer::start(&go_repos(NO_UPSTREAM, "")).await;
    publish(&up, "go-local", GREET, "v1.0.0", library(GREET, "v1.0.0", "cached")).await;
    publish(&up, "go-local", GREET, "v1.1.0", library(GREET, "v1.1.0", "cached too")).await;
    let srv = TestServer::start(&go_repos(&format!("{}/go-local", up.base_url()), "")).await;

    let go = GoEnv::new(&format!("{}/go-remote", srv.base_url()));
    assert_eq!(go.ok(&["list", "-m", "-versions", GREET]).await?.trim(), "example.com/greet v1.0.0 v1.1.0");
    go.ok(&["mod", "download", "example.com/greet@v1.0.0", "example.com/greet@v1.1.0"]).await?;
    let zip = format!("{}/go-remote/{GREET}/@v/v1.0.0.zip", srv.base_url());
    let (status, cache, _) = get(&zip).await;
    assert_eq!((status, cache.as_deref()), (200, Some("binaryrepo; hit")));
    // metadata_ttl = 0s: the list is checked every time, by a HEAD and an ETag compare.
    let (status, cache, _) = get(&format!("{}/go-remote/{GREET}/@v/list", srv.base_url())).await;
    assert_eq!(status, 200);
    assert!(cache.unwrap_or_default().contains("revalidated"), "the upstream list has an ETag");

    up.stop();
    go.clear_modcache();
    go.ok(&["mod", "download", "example.com/greet@v1.0.0"]).await?;
    assert_eq!(go.ok(&["list", "-m", "-versions", GREET]).await?.trim(), "example.com/greet v1.0.0 v1.1.0");
    let (status, cache, _) = get(&format!("{}/go-remote/{GREET}/@v/list", srv.base_url())).await;
    assert_eq!(status, 200);
    assert!(cache.unwrap_or_default().contains("stale"), "the list is served stale while the upstream is down");
    go.app(MAIN_GO);
    go.ok(&["get", "example.com/greet@v1.1.0"]).await?;
    go.ok(&["build", "-o", "app", "."]).await?;
    let out = std::process::Command::new(go.work().join("app")).output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cached too");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_merges_members_and_hosted_paths_shadow_remotes() -> Result<()> {
    let up = FakeGoProxy::start().await;
    let lib = "example.com/lib";
    up.file("/example.com/lib/@v/list", "v1.5.0\n");
    up.version(lib, "v1.5.0", "module example.com/lib\n", library(lib, "v1.5.0", "impostor"));
    let only = "example.com/only";
    up.file("/example.com/only/@v/list", "v0.1.0\nv0.2.0\n");
    up.version(only, "v0.1.0", "module example.com/only\n\ngo 1.19\n", library(only, "v0.1.0", "a"));
    up.version(only, "v0.2.0", "module example.com/only\n\ngo 1.19\n", library(only, "v0.2.0", "b"));
    let srv = TestServer::start(&virtual_trio(up.url())).await;
    publish(&srv, "go-local", lib, "v1.0.0", library(lib, "v1.0.0", "local")).await;
    publish(&srv, "go-extra", lib, "v1.1.0", library(lib, "v1.1.0", "extra")).await;
    publish(&srv, "go-extra", lib, "v1.0.0", library(lib, "v1.0.0", "shadowed by go-local")).await;

    let go = GoEnv::new(&format!("{}/go", srv.base_url()));
    assert_eq!(go.ok(&["list", "-m", "-versions", lib]).await?.trim(), "example.com/lib v1.0.0 v1.1.0");
    assert_eq!(go.ok(&["list", "-m", "-versions", only]).await?.trim(), "example.com/only v0.1.0 v0.2.0");
    go.ok(&["mod", "download", "example.com/lib@v1.0.0", "example.com/lib@v1.1.0", "example.com/only@latest"]).await?;
    let (status, cache, body) = get(&format!("{}/go/{lib}/@latest", srv.base_url())).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("v1.1.0"), "{body:?}");
    assert!(cache.unwrap_or_default().contains("member go-extra"));
    // The first member with a version serves it.
    let zip = get(&format!("{}/go/{lib}/@v/v1.0.0.zip", srv.base_url())).await.2;
    assert_eq!(zip.as_ref(), library(lib, "v1.0.0", "local").as_slice());
    // A path held by a hosted member is never asked of the remote, not even for a version
    // only the upstream has (dependency confusion).
    let (status, _, _) = get(&format!("{}/go/{lib}/@v/v1.5.0.info", srv.base_url())).await;
    assert_eq!(status, 404);
    assert_eq!(up.hits_containing("/example.com/lib/"), 0, "the upstream was asked about a hosted module");
    // Nor through the checksum database proxy: a lookup would name the private module upstream.
    up.file("/sumdb/sum.example.com/lookup/example.com/lib@v1.5.0", "1\nexample.com/lib v1.5.0 h1:x=\n");
    let (status, cache, _) =
        get(&format!("{}/go/sumdb/sum.example.com/lookup/example.com/lib@v1.5.0", srv.base_url())).await;
    assert_eq!(status, 404);
    assert!(cache.is_some_and(|c| c.contains("Not Found")), "errors carry Cache-Status too");
    assert_eq!(up.hits_containing("example.com/lib@"), 0, "a sumdb lookup named a hosted module upstream");
    // A module no hosted member holds is still looked up.
    up.file("/sumdb/sum.example.com/lookup/example.com/only@v0.2.0", "2\nexample.com/only v0.2.0 h1:y=\n");
    assert_eq!(
        get(&format!("{}/go/sumdb/sum.example.com/lookup/example.com/only@v0.2.0", srv.base_url())).await.0,
        200
    );
    assert!(up.hits("/example.com/only/@v/v0.2.0.zip") == 1);
    // Lists merged from members and missing versions say what the cache did.
    let (status, cache, _) = get(&format!("{}/go/{lib}/@v/list", srv.base_url())).await;
    assert_eq!((status, cache.as_deref()), (200, Some("binaryrepo; detail=\"assembled from members\"")));
    let (status, cache, _) = get(&format!("{}/go-remote/example.com/none/@v/list", srv.base_url())).await;
    assert_eq!((status, cache.as_deref()), (404, Some("binaryrepo; detail=\"Not Found\"")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_zip_downloads_share_one_upstream_fetch() -> Result<()> {
    let up = FakeGoProxy::start().await;
    // Random text compresses little: the zip is several write batches long.
    let data = noise(4 << 20);
    let big = module_zip(GREET, "v1.0.0", &[("go.mod", "module example.com/greet\n"), ("data.txt", &data)]);
    up.version(GREET, "v1.0.0", "module example.com/greet\n", big.clone());
    let zip_path = "/example.com/greet/@v/v1.0.0.zip";
    up.gate(zip_path);
    let srv = TestServer::start(&go_repos(up.url(), "")).await;
    let url = format!("{}/go-remote{zip_path}", srv.base_url());

    // Every client has received the first half before the upstream sends the rest, so all
    // of them are attached to the one running fetch.
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut response = crate::gomod::http().get(&url).send().await?;
        assert_eq!(response.status(), 200);
        let first = response.chunk().await?.expect("first bytes");
        clients.push((response, first));
    }
    up.open_gate();
    for (mut response, first) in clients {
        let mut body = first.to_vec();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        assert!(body == big, "a client got {} bytes, not the zip", body.len());
    }
    assert_eq!(up.hits(&format!("GET {zip_path}")), 1, "one upstream fetch for 8 concurrent downloads");
    // And the real client on top of the cache.
    let go = GoEnv::new(&format!("{}/go-remote", srv.base_url()));
    go.ok(&["mod", "download", "example.com/greet@v1.0.0"]).await?;
    assert_eq!(up.hits(&format!("GET {zip_path}")), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_modules_never_reach_the_upstream_and_misses_are_remembered() -> Result<()> {
    let up = FakeGoProxy::start().await;
    let secret = "corp.example.com/secret";
    up.file("/corp.example.com/secret/@v/list", "v1.0.0\n");
    up.version(secret, "v1.0.0", "module corp.example.com/secret\n", library(secret, "v1.0.0", "leak"));
    up.status("/example.com/gone/@v/list", 410);
    up.status("/example.com/gone/@v/v1.0.0.info", 410);
    let exclude = "exclude = [\"corp.example.com/*\"]\nnegative_ttl = \"1h\"";
    let srv = TestServer::start(&go_repos(up.url(), exclude)).await;
    let base = format!("{}/go-remote", srv.base_url());
    for path in ["@v/list", "@latest", "@v/v1.0.0.info", "@v/v1.0.0.mod", "@v/v1.0.0.zip"] {
        let (status, _, _) = get(&format!("{base}/{secret}/{path}")).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _, _) = get(&format!("{base}/sumdb/sum.example.com/lookup/{secret}@v1.0.0")).await;
    assert_eq!(status, 404);
    let go = GoEnv::new(&base);
    let out = go.run(&["mod", "download", "corp.example.com/secret@v1.0.0"]).await;
    assert!(!out.status.success());
    assert_eq!(up.hits_containing("corp.example.com"), 0, "an excluded module path reached the upstream");

    for _ in 0..3 {
        assert_eq!(get(&format!("{base}/example.com/gone/@v/list")).await.0, 404);
        assert_eq!(get(&format!("{base}/example.com/gone/@v/v1.0.0.info")).await.0, 404);
    }
    assert_eq!(up.hits("/example.com/gone/@v/list"), 1, "410 is remembered for negative_ttl");
    assert_eq!(up.hits("/example.com/gone/@v/v1.0.0.info"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_database_is_proxied() -> Result<()> {
    let up = FakeGoProxy::start().await;
    let db = "/sumdb/sum.example.com";
    let lookup =
        "1234\nexample.com/greet v1.0.0 h1:abc=\nexample.com/greet v1.0.0/go.mod h1:def=\n\ngo.sum database tree\n";
    up.file(&format!("{db}/supported"), "");
    up.file(&format!("{db}/lookup/example.com/greet@v1.0.0"), lookup);
    up.file(&format!("{db}/latest"), "go.sum database tree\n5\nhash=\n");
    up.file(&format!("{db}/tile/8/0/000"), vec![7u8; 64]);
    let srv = TestServer::start(&go_repos(up.url(), "")).await;
    for repo in ["go-remote", "go"] {
        let base = format!("{}/{repo}/sumdb/sum.example.com", srv.base_url());
        assert_eq!(get(&format!("{base}/supported")).await.0, 200, "{repo}");
        let (status, _, body) = get(&format!("{base}/lookup/example.com/greet@v1.0.0")).await;
        assert_eq!((status, body.as_ref()), (200, lookup.as_bytes()), "{repo}");
        let (status, _, body) = get(&format!("{base}/tile/8/0/000")).await;
        assert_eq!((status, body.len()), (200, 64), "{repo}");
        assert_eq!(get(&format!("{base}/latest")).await.0, 200, "{repo}");
    }
    assert_eq!(up.hits(&format!("{db}/lookup/example.com/greet@v1.0.0")), 1, "lookups are immutable: cached");
    assert_eq!(up.hits(&format!("{db}/tile/8/0/000")), 1, "tiles are immutable: cached");
    assert_eq!(up.hits(&format!("HEAD {db}/latest")), 1, "latest is revalidated (metadata_ttl = 0s)");
    assert_eq!(get(&format!("{}/go-remote/sumdb/other.example.com/supported", srv.base_url())).await.0, 404);
    assert_eq!(get(&format!("{}/go-local/sumdb/sum.example.com/supported", srv.base_url())).await.0, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_from_hosted_and_a_real_module_through_the_remote() -> Result<()> {
    let source = std::path::Path::new(crate::gomod::PKG_ERRORS_SRC);
    assert!(source.is_dir(), "{} is missing: run .ci/install-deps (golang-github-pkg-errors-dev)", source.display());
    let up = FakeGoProxy::start().await;
    let errors = "github.com/pkg/errors";
    up.file("/github.com/pkg/errors/@v/list", "v0.9.1\n");
    up.version(errors, "v0.9.1", "module github.com/pkg/errors\n", crate::gomod::zip_dir(errors, "v0.9.1", source));
    let srv = TestServer::start(&go_repos(up.url(), "")).await;
    publish(&srv, "go-local", GREET, "v1.0.0", library(GREET, "v1.0.0", "hello")).await;

    let go = GoEnv::new(&format!("{}/go", srv.base_url()));
    go.app(concat!(
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/greet\"\n\t\"github.com/pkg/errors\"\n)\n\n",
        "func main() { fmt.Println(errors.Wrap(errors.New(greet.Hello()), \"wrapped\")) }\n"
    ));
    go.ok(&["get", "example.com/greet@v1.0.0", "github.com/pkg/errors@v0.9.1"]).await?;
    go.ok(&["build", "-o", "app", "."]).await?;
    let out = std::process::Command::new(go.work().join("app")).output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "wrapped: hello");
    let go_sum = std::fs::read_to_string(go.work().join("go.sum"))?;
    assert!(go_sum.contains("github.com/pkg/errors v0.9.1 h1:"), "{go_sum}");
    assert_eq!(up.hits("GET /github.com/pkg/errors/@v/v0.9.1.zip"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gosumdb_verification_works_through_the_proxy() -> Result<()> {
    let open = go_repos(NO_UPSTREAM, "").replace("kind = \"hosted\"\n", "kind = \"hosted\"\nallow_overwrite = true\n");
    let up = TestServer::start(&open).await;
    publish(&up, "go-local", GREET, "v1.0.0", library(GREET, "v1.0.0", "verified")).await;
    // One upstream URL: a GOPROXY (the hosted repository above) with a signed checksum database.
    let db = crate::gomod::SumDb::start(&format!("{}/go-local", up.base_url())).await?;
    let srv = TestServer::start(&go_repos(&db.url, "")).await;

    let mut go = GoEnv::new(&format!("{}/go", srv.base_url()));
    go.set("GOSUMDB", &db.key);
    go.set("GONOSUMDB", "");
    go.app(MAIN_GO);
    go.ok(&["get", "example.com/greet@v1.0.0"]).await?;
    go.ok(&["build", "-o", "app", "."]).await?;
    let log = srv.log();
    for path in ["/go/sumdb/sum.example.com/supported", "/go/sumdb/sum.example.com/lookup/example.com/greet@v1.0.0"] {
        assert!(log.contains(&format!("uri={path} status=200")), "{path} was not asked of binaryrepo");
    }
    assert!(log.contains("uri=/go/sumdb/sum.example.com/tile/"), "no tile went through binaryrepo");
    // A second client verifies from binaryrepo's cache of the lookup and tiles.
    let mut again = GoEnv::new(&format!("{}/go", srv.base_url()));
    again.set("GOSUMDB", &db.key);
    again.set("GONOSUMDB", "");
    again.ok(&["mod", "download", "example.com/greet@v1.0.0"]).await?;
    // A module held by the hosted member is never looked up upstream (its name could be
    // private): the lookup answers 404 and the go command, verifying, refuses the download
    // instead of trusting an unverified copy (GONOSUMDB is how private modules skip the database).
    let twin = "example.com/twin";
    publish(&up, "go-local", twin, "v1.0.0", library(twin, "v1.0.0", "original")).await;
    publish(&srv, "go-local", twin, "v1.0.0", library(twin, "v1.0.0", "tampered")).await;
    let out = again.run(&["mod", "download", "example.com/twin@v1.0.0"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("verifying"), "{stderr}");
    assert!(srv.log().contains("uri=/go/sumdb/sum.example.com/lookup/example.com/twin@v1.0.0 status=404"));
    // Verification is real: the remote cached a copy that differs from what the database
    // signs (the upstream replaced it afterwards), and the go command refuses it.
    let copy = "example.com/copy";
    publish(&up, "go-local", copy, "v1.0.0", library(copy, "v1.0.0", "tampered")).await;
    for file in ["v1.0.0.mod", "v1.0.0.zip"] {
        assert_eq!(get(&format!("{}/go-remote/{copy}/@v/{file}", srv.base_url())).await.0, 200, "{file}");
    }
    let (status, text) = crate::gomod::put(
        &format!("{}/go-local/{copy}/@v/v1.0.0.zip", up.base_url()),
        library(copy, "v1.0.0", "original"),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let out = again.run(&["mod", "download", "example.com/copy@v1.0.0"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("SECURITY ERROR"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_list_is_revalidated_and_follows_the_upstream() -> Result<()> {
    let up = FakeGoProxy::start().await;
    up.file("/example.com/greet/@v/list", "v1.0.0\n");
    let srv = TestServer::start(&go_repos(up.url(), "")).await;
    let list = format!("{}/go-remote/{GREET}/@v/list", srv.base_url());
    let (status, cache, body) = get(&list).await;
    assert_eq!((status, body.as_ref()), (200, b"v1.0.0\n".as_ref()));
    assert!(cache.unwrap_or_default().contains("uri-miss"));
    // metadata_ttl = 0s: checked every time; an unchanged Last-Modified needs no GET.
    let (_, cache, _) = get(&list).await;
    assert!(cache.unwrap_or_default().contains("revalidated"));
    assert_eq!((up.hits("GET /example.com/greet/@v/list"), up.hits("HEAD /example.com/greet/@v/list")), (1, 1));
    // A new upstream version shows up at once.
    up.file("/example.com/greet/@v/list", "v1.0.0\nv1.1.0\n");
    let (_, _, body) = get(&list).await;
    assert_eq!(body.as_ref(), b"v1.0.0\nv1.1.0\n");
    assert_eq!(up.hits("GET /example.com/greet/@v/list"), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_answers_the_go_command_would_refuse_are_not_cached() -> Result<()> {
    let up = FakeGoProxy::start().await;
    let bad = "example.com/bad";
    up.file("/example.com/bad/@v/v1.0.0.info", r#"{"Version":"v1.0.1","Time":"2024-01-02T03:04:05Z"}"#);
    up.file("/example.com/bad/@v/v1.1.0.info", r#"{"Version":"v1.1.0","Time":"last tuesday"}"#);
    // A zip whose files are not under example.com/bad@v1.0.0/, and one with a reserved name.
    up.file("/example.com/bad/@v/v1.0.0.zip", library("example.com/other", "v1.0.0", "x"));
    up.file("/example.com/bad/@v/v1.1.0.zip", module_zip(bad, "v1.1.0", &[("aux.go", "package bad\n")]));
    let good = library(bad, "v1.2.0", "fine");
    up.version(bad, "v1.2.0", "module example.com/bad\n\ngo 1.19\n", good.clone());
    let srv = TestServer::start(&go_repos(up.url(), "")).await;
    let url = |file: &str| format!("{}/go-remote/{bad}/@v/{file}", srv.base_url());

    for (file, why) in [("v1.0.0.info", "v1.0.1"), ("v1.1.0.info", "RFC 3339")] {
        for _ in 0..2 {
            let (status, cache, body) = get(&url(file)).await;
            let text = String::from_utf8_lossy(&body);
            assert_eq!(status, 502, "{file}: {text}");
            assert!(text.contains(why), "{file}: {text}");
            assert!(cache.is_some(), "{file}: errors carry Cache-Status");
        }
        assert_eq!(up.hits(&format!("/example.com/bad/@v/{file}")), 2, "{file} was cached");
    }
    for file in ["v1.0.0.zip", "v1.1.0.zip"] {
        for _ in 0..2 {
            // The body is aborted once the check fails; that can come before the headers reach us.
            let complete = match crate::gomod::http().get(url(file)).send().await {
                Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            assert!(!complete, "{file}: a zip that fails the module-zip checks was served whole");
        }
        assert_eq!(up.hits(&format!("GET /example.com/bad/@v/{file}")), 2, "{file} was cached");
    }
    // A good zip is still cached (validated once, then served from the store).
    for _ in 0..2 {
        assert_eq!(get(&url("v1.2.0.zip")).await.2.as_ref(), good.as_slice());
    }
    assert_eq!(up.hits("GET /example.com/bad/@v/v1.2.0.zip"), 1);
    // A pseudo-version with no real time is no version: refused by the route parser, never
    // asked upstream, and the refusal still says what the cache did.
    let (status, cache, _) = get(&url("v0.0.0-20191399999999-abcdefabcdef.zip")).await;
    assert_eq!((status, cache.as_deref()), (404, Some("binaryrepo; detail=\"Not Found\"")));
    assert_eq!(up.hits_containing("20191399999999"), 0);
    let go = GoEnv::new(&format!("{}/go-remote", srv.base_url()));
    go.ok(&["mod", "download", "example.com/bad@v1.2.0"]).await?;
    assert!(go.run(&["mod", "download", "example.com/bad@v1.0.0"]).await.status.code() != Some(0));
    Ok(())
}
