//! Remote repositories against upstreams that want credentials: the Bearer token
//! challenge flow (<https://distribution.github.io/distribution/spec/auth/token/>),
//! plain Basic auth, credentials from the environment, a blob redirect to a "CDN"
//! that must not see the token, and Docker Hub's `library/` naming.
//!
//! `AuthUpstream` is a scripted registry on 127.0.0.1 serving real image bytes; it
//! records every request (with its `Authorization` header) before answering, so the
//! record is complete once a client call returns.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, Response, StatusCode};
use serde_json::json;

use crate::clients::Skopeo;
use crate::images::{images, layout_digest, sha256_digest, verify_layout_blobs};
use crate::oci::{Fetched, OciClient, TestImage, OCI_MANIFEST};
use crate::server::{ServerOptions, TestServer};

const USER: &str = "puller";
const PASSWORD: &str = "s3cret";
/// A client request through binaryrepo must be answered within this, even when the
/// upstream refuses it.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ scripted upstream

#[derive(Clone, Debug)]
enum Mode {
    /// No authentication (the "CDN" blobs are redirected to).
    Open,
    /// `WWW-Authenticate: Bearer realm=…/token,service="fake",scope=…`; `/token`
    /// wants these Basic credentials when set and issues tokens for the asked scope.
    Bearer { token_credentials: Option<(String, String)>, expires_in: u64 },
    /// `WWW-Authenticate: Basic realm="x"` unless these credentials come along.
    Basic { user: String, password: String },
}

/// One image the upstream serves as `name:tag` (and by digest).
#[derive(Clone)]
struct Served {
    name: String,
    tag: String,
    media_type: String,
    manifest: Vec<u8>,
    blobs: HashMap<String, Vec<u8>>,
}

impl Served {
    /// The generated busybox image (real layers, so skopeo can copy it).
    fn busybox(name: &str, tag: &str) -> Served {
        let img = images();
        let digest = img.digest("busybox", "1.0");
        let blobs =
            img.children("busybox", digest).into_iter().map(|d| (d.digest.clone(), img.blob("busybox", &d.digest)));
        Served {
            name: name.into(),
            tag: tag.into(),
            media_type: img.entry("busybox", "1.0").media_type.clone(),
            manifest: img.manifest("busybox", "1.0"),
            blobs: blobs.collect(),
        }
    }

    fn synthetic(name: &str, tag: &str, image: &TestImage) -> Served {
        let mut blobs = HashMap::new();
        for b in std::iter::once(&image.config).chain(image.layers.iter()) {
            blobs.insert(sha256_digest(b), b.clone());
        }
        Served {
            name: name.into(),
            tag: tag.into(),
            media_type: OCI_MANIFEST.into(),
            manifest: image.manifest.clone(),
            blobs,
        }
    }

    fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }
}

/// A request as the upstream saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    host: Option<String>,
    authorization: Option<String>,
    status: u16,
}

impl Seen {
    /// Values of one query parameter.
    fn params(&self, key: &str) -> Vec<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }
}

struct AuthState {
    mode: Mode,
    /// `http://127.0.0.1:PORT/token`
    realm: String,
    /// The `Authorization` value of the expected Basic credentials.
    expected_basic: Option<String>,
    images: Vec<Served>,
    tokens: Mutex<HashMap<String, String>>,
    next_token: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    /// Blob GETs are redirected (307) to `<cdn>/cdn/<digest>` when set.
    cdn: Mutex<Option<String>>,
}

struct AuthUpstream {
    addr: SocketAddr,
    state: Arc<AuthState>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthUpstream {
    async fn start(mode: Mode, images: Vec<Served>) -> AuthUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind auth upstream");
        let addr = listener.local_addr().expect("local addr");
        let expected_basic = match &mode {
            Mode::Open => None,
            Mode::Bearer { token_credentials, .. } => token_credentials.as_ref().map(|(u, p)| basic(u, p)),
            Mode::Basic { user, password } => Some(basic(user, password)),
        };
        let state = Arc::new(AuthState {
            mode,
            realm: format!("http://{addr}/token"),
            expected_basic,
            images,
            tokens: Mutex::new(HashMap::new()),
            next_token: AtomicUsize::new(1),
            seen: Mutex::new(Vec::new()),
            cdn: Mutex::new(None),
        });
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AuthUpstream { addr, state, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests to `/token`.
    fn token_requests(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == "/token").collect()
    }

    /// Requests under `/v2/`.
    fn registry_requests(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path.starts_with("/v2")).collect()
    }

    /// Every token issued so far stops working (as if it expired).
    fn revoke_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }

    fn redirect_blobs_to(&self, cdn: &AuthUpstream) {
        *self.state.cdn.lock().unwrap() = Some(cdn.url());
    }
}

impl Drop for AuthUpstream {
    fn drop(&mut self) {
        self.task.abort();
        if std::thread::panicking() {
            eprintln!("---- requests seen by the upstream on {} ----", self.addr);
            for s in self.seen() {
                eprintln!("{s:?}");
            }
        }
    }
}

/// `Basic base64(user:password)`, as reqwest encodes it.
fn basic(user: &str, password: &str) -> String {
    let req = reqwest::Client::new().get("http://127.0.0.1/").basic_auth(user, Some(password)).build().unwrap();
    req.headers()[header::AUTHORIZATION].to_str().unwrap().to_string()
}

async fn handle(State(st): State<Arc<AuthState>>, req: Request) -> Response<Body> {
    let header_of =
        |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut seen = Seen {
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or_default().to_string(),
        host: header_of(header::HOST),
        authorization: header_of(header::AUTHORIZATION),
        status: 0,
    };
    let response = answer(&st, req.method(), &seen);
    seen.status = response.status().as_u16();
    st.seen.lock().unwrap().push(seen);
    response
}

fn answer(st: &AuthState, method: &Method, seen: &Seen) -> Response<Body> {
    let path = seen.path.as_str();
    if path == "/token" {
        return token(st, seen);
    }
    if let Some(digest) = path.strip_prefix("/cdn/") {
        // Like a pre-signed object-store URL: a second auth mechanism is an error.
        if seen.authorization.is_some() {
            return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "only one auth mechanism allowed");
        }
        return match st.images.iter().find_map(|i| i.blobs.get(digest)) {
            Some(blob) => content(method, blob, "application/octet-stream", digest),
            None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "no such blob"),
        };
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a registry path");
    };
    let rest = rest.trim_start_matches('/');
    let parsed = ["/manifests/", "/blobs/"]
        .iter()
        .find_map(|sep| rest.rfind(sep).map(|i| (&rest[..i], &sep[1..sep.len() - 1], &rest[i + sep.len()..])));
    let name = parsed.map(|(name, _, _)| name);
    if let Some(denied) = check_auth(st, seen, name) {
        return denied;
    }
    let Some((name, kind, reference)) = parsed else {
        if rest.is_empty() {
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header("Docker-Distribution-API-Version", "registry/2.0")
                .body(Body::from("{}"))
                .unwrap();
        }
        return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "unknown path");
    };
    let Some(image) =
        st.images.iter().find(|i| i.name == name && (kind == "blobs" || i.tag == reference || i.digest() == reference))
    else {
        return error(StatusCode::NOT_FOUND, if kind == "blobs" { "BLOB_UNKNOWN" } else { "MANIFEST_UNKNOWN" }, name);
    };
    if kind == "manifests" {
        return content(method, &image.manifest, &image.media_type, &image.digest());
    }
    let Some(blob) = st.images.iter().filter(|i| i.name == name).find_map(|i| i.blobs.get(reference)) else {
        return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", reference);
    };
    if let (Some(cdn), &Method::GET) = (st.cdn.lock().unwrap().as_ref(), method) {
        return Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, format!("{cdn}/cdn/{reference}"))
            .body(Body::empty())
            .unwrap();
    }
    content(method, blob, "application/octet-stream", reference)
}

/// `None` when the request may proceed, else the 401 challenge.
fn check_auth(st: &AuthState, seen: &Seen, name: Option<&str>) -> Option<Response<Body>> {
    let authorization = seen.authorization.as_deref();
    let challenge = match &st.mode {
        Mode::Open => return None,
        Mode::Basic { .. } if authorization == st.expected_basic.as_deref() => return None,
        Mode::Basic { .. } => r#"Basic realm="x""#.to_string(),
        Mode::Bearer { .. } => {
            let granted = authorization
                .and_then(|a| a.strip_prefix("Bearer "))
                .and_then(|t| st.tokens.lock().unwrap().get(t).cloned());
            let allows = |scopes: &str| match name {
                None => true,
                Some(name) => scopes.split(' ').any(|s| {
                    s.strip_prefix("repository:")
                        .and_then(|s| s.rsplit_once(':'))
                        .is_some_and(|(n, actions)| n == name && actions.split(',').any(|a| a == "pull"))
                }),
            };
            if granted.as_deref().is_some_and(allows) {
                return None;
            }
            match name {
                Some(name) => format!(r#"Bearer realm="{}",service="fake",scope="repository:{name}:pull""#, st.realm),
                None => format!(r#"Bearer realm="{}",service="fake""#, st.realm),
            }
        }
    };
    let mut denied = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required");
    denied.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
    Some(denied)
}

fn token(st: &AuthState, seen: &Seen) -> Response<Body> {
    let Mode::Bearer { expires_in, .. } = &st.mode else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no token service");
    };
    if st.expected_basic.is_some() && seen.authorization != st.expected_basic {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "bad credentials for the token service");
    }
    let token = format!("token-{}", st.next_token.fetch_add(1, Ordering::SeqCst));
    st.tokens.lock().unwrap().insert(token.clone(), seen.params("scope").join(" "));
    let body = json!({ "token": token, "access_token": token, "expires_in": expires_in });
    Response::builder().header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())).unwrap()
}

fn content(method: &Method, body: &[u8], content_type: &str, digest: &str) -> Response<Body> {
    let ok = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .header("Docker-Content-Digest", digest)
        .header(header::ETAG, format!("\"{digest}\""));
    let body = if method == Method::HEAD { Body::empty() } else { Body::from(body.to_vec()) };
    ok.body(body).unwrap()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = json!({ "errors": [{ "code": code, "message": message }] });
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

// ------------------------------------------------------------------ helpers

/// A remote repository `name` over `upstream` (tags always revalidated), with extra keys.
fn remote(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        r#"
[[repository]]
name = "{name}"
format = "docker"
kind = "remote"
upstream = "{upstream}"
metadata_ttl = "0s"
{extra}
"#
    )
}

fn credentials(user: &str, password: &str) -> String {
    format!("username = \"{user}\"\npassword = \"{password}\"")
}

/// skopeo copy `docker://SRV/<image>` into an OCI layout under `dir`; returns the digest.
async fn pull(sk: &Skopeo, srv: &TestServer, image: &str, dir: &Path) -> Result<String> {
    let layout = dir.join(image.replace(['/', ':'], "_"));
    sk.copy(&format!("docker://{}/{image}", srv.addr()), &format!("oci:{}:pulled", layout.display())).await?;
    assert_eq!(verify_layout_blobs(&layout), 3, "{image}: manifest + config + layer");
    Ok(layout_digest(&layout, "pulled"))
}

/// A request through binaryrepo that the upstream refuses: answered in time, with
/// an error that is neither success, nor a 404 (the image may exist), nor a 500.
async fn assert_refused(oci: &OciClient, what: &str, request: impl std::future::Future<Output = Result<Fetched>>) {
    let r = tokio::time::timeout(ANSWER_WITHIN, request)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_WITHIN:?}"))
        .unwrap_or_else(|e| panic!("{what}: connection failed: {e:#}"));
    assert!(!r.status.is_success(), "{what}: {} {}", r.status, r.text());
    assert_ne!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{what}: {}", r.text());
    assert_ne!(r.status, StatusCode::NOT_FOUND, "{what}: an auth failure is not a missing image: {}", r.text());
    // (A HEAD answer has no body to carry the error.)
    if !what.contains("HEAD") {
        assert!(!r.error_codes().is_empty(), "{what}: no OCI error body: {} {}", r.status, r.text());
    }
    // The server is still healthy.
    assert_eq!(oci.get("/v2/").await.expect("GET /v2/").status, StatusCode::OK);
}

// ------------------------------------------------------------------ Bearer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_fetched_once_and_reused_within_its_lifetime() -> Result<()> {
    let second = TestImage::new(71, &[3000, 5000]);
    let up = AuthUpstream::start(
        Mode::Bearer { token_credentials: Some((USER.into(), PASSWORD.into())), expires_in: 300 },
        vec![Served::busybox("busybox", "1.0"), Served::synthetic("busybox", "2.0", &second)],
    )
    .await;
    let srv = TestServer::start(&remote("docker-remote", &up.url(), &credentials(USER, PASSWORD))).await;
    let sk = Skopeo::new();
    let out = tempfile::tempdir()?;

    assert_eq!(pull(&sk, &srv, "docker-remote/busybox:1.0", out.path()).await?, images().digest("busybox", "1.0"));
    let tokens = up.token_requests();
    assert_eq!(tokens.len(), 1, "one token for the first pull: {tokens:?}");
    let t = &tokens[0];
    assert_eq!(t.params("scope"), vec!["repository:busybox:pull".to_string()]);
    assert_eq!(t.params("service"), vec!["fake".to_string()]);
    assert_eq!(t.authorization.as_deref(), Some(basic(USER, PASSWORD).as_str()), "token request credentials");
    for r in up.registry_requests().iter().filter(|r| r.status != 401) {
        assert!(r.authorization.as_deref().is_some_and(|a| a.starts_with("Bearer ")), "{r:?}");
    }

    // Another image of the same repository, other blobs: the cached token is used.
    let oci = OciClient::new(&srv.base_url());
    let m = oci.get_manifest("docker-remote/busybox", "2.0").await?;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());
    assert_eq!(m.body.as_ref(), second.manifest.as_slice());
    for (i, layer) in second.layers.iter().enumerate() {
        let b = oci.get_blob("docker-remote/busybox", &second.layer_digest(i)).await?;
        assert_eq!(b.status, StatusCode::OK, "{}", b.text());
        assert_eq!(b.body.as_ref(), layer.as_slice());
    }
    assert_eq!(up.token_requests().len(), 1, "a token within its lifetime was requested again");
    let unauthorized = up.registry_requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(unauthorized, 1, "only the very first upstream request should meet a challenge");

    // The upstream stops accepting the token (expiry, revocation): one new token, same pull works.
    up.revoke_tokens();
    let m = oci.get_manifest("docker-remote/busybox", "1.0").await?;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());
    assert_eq!(up.token_requests().len(), 2, "a rejected token must be replaced");
    let b = oci.get_blob("docker-remote/busybox", &second.config_digest()).await?;
    assert_eq!(b.body.as_ref(), second.config.as_slice());
    assert_eq!(up.token_requests().len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_bearer_token_and_names_unchanged_off_docker_hub() -> Result<()> {
    let nested = TestImage::new(72, &[700]);
    let up = AuthUpstream::start(
        Mode::Bearer { token_credentials: None, expires_in: 300 },
        vec![Served::busybox("busybox", "1.0"), Served::synthetic("someuser/app", "1.0", &nested)],
    )
    .await;
    let srv = TestServer::start(&remote("docker-remote", &up.url(), "")).await;
    let sk = Skopeo::new();
    let out = tempfile::tempdir()?;

    assert_eq!(pull(&sk, &srv, "docker-remote/busybox:1.0", out.path()).await?, images().digest("busybox", "1.0"));
    let oci = OciClient::new(&srv.base_url());
    let m = oci.get_manifest("docker-remote/someuser/app", "1.0").await?;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());

    let tokens = up.token_requests();
    assert!(tokens.iter().all(|t| t.authorization.is_none()), "credentials sent without any configured: {tokens:?}");
    let mut scopes: Vec<String> = tokens.iter().flat_map(|t| t.params("scope")).collect();
    scopes.sort();
    assert_eq!(scopes, vec!["repository:busybox:pull".to_string(), "repository:someuser/app:pull".to_string()]);
    // Not Docker Hub: the single-component name goes upstream as it is.
    let paths: Vec<String> = up.registry_requests().into_iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert!(paths.iter().any(|p| p == "GET /v2/busybox/manifests/1.0"), "{paths:?}");
    assert!(paths.iter().any(|p| p == "GET /v2/someuser/app/manifests/1.0"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("library/")), "library/ added for a non-Docker-Hub upstream: {paths:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_wrong_or_missing_credentials_are_errors_not_hangs() -> Result<()> {
    let up = AuthUpstream::start(
        Mode::Bearer { token_credentials: Some((USER.into(), PASSWORD.into())), expires_in: 300 },
        vec![Served::busybox("busybox", "1.0")],
    )
    .await;
    let repos = format!("{}{}", remote("wrong", &up.url(), &credentials(USER, "nope")), remote("anon", &up.url(), ""));
    let srv = TestServer::start(&repos).await;
    let oci = OciClient::new(&srv.base_url());
    let layer = images().children("busybox", images().digest("busybox", "1.0"))[1].digest.clone();

    for repo in ["wrong", "anon"] {
        let name = format!("{repo}/busybox");
        assert_refused(&oci, &format!("{name} manifest"), oci.get_manifest(&name, "1.0")).await;
        assert_refused(&oci, &format!("{name} HEAD manifest"), oci.head_manifest(&name, "1.0")).await;
        assert_refused(&oci, &format!("{name} blob"), oci.get_blob(&name, &layer)).await;
        let sk = Skopeo::new();
        let out = tempfile::tempdir()?;
        let copied = tokio::time::timeout(ANSWER_WITHIN * 2, pull(&sk, &srv, &format!("{name}:1.0"), out.path())).await;
        assert!(matches!(copied, Ok(Err(_))), "skopeo through {repo}: {copied:?}");
    }
    // Every token request was refused; nothing was fetched.
    assert!(up.token_requests().iter().all(|t| t.status == 401));
    assert!(up.registry_requests().iter().all(|r| r.status == 401));
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_redirect_to_cdn_does_not_carry_the_token() -> Result<()> {
    let cdn = AuthUpstream::start(Mode::Open, vec![Served::busybox("busybox", "1.0")]).await;
    let up = AuthUpstream::start(
        Mode::Bearer { token_credentials: Some((USER.into(), PASSWORD.into())), expires_in: 300 },
        vec![Served::busybox("busybox", "1.0")],
    )
    .await;
    up.redirect_blobs_to(&cdn);
    let srv = TestServer::start(&remote("docker-remote", &up.url(), &credentials(USER, PASSWORD))).await;
    let sk = Skopeo::new();
    let out = tempfile::tempdir()?;

    assert_eq!(pull(&sk, &srv, "docker-remote/busybox:1.0", out.path()).await?, images().digest("busybox", "1.0"));
    let fetched = cdn.seen();
    assert_eq!(fetched.len(), 2, "config + layer from the CDN: {fetched:?}");
    for r in &fetched {
        assert_eq!(r.authorization, None, "credentials leaked to another host: {r:?}");
        assert_eq!(r.status, 200);
    }
    Ok(())
}

// ------------------------------------------------------------------ Basic

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_config_and_from_environment() -> Result<()> {
    let up = AuthUpstream::start(
        Mode::Basic { user: USER.into(), password: PASSWORD.into() },
        vec![Served::busybox("busybox", "1.0")],
    )
    .await;
    let repos = [
        remote("in-config", &up.url(), &credentials(USER, PASSWORD)),
        remote("from-env", &up.url(), &format!("username = \"{USER}\"")),
        remote("wrong", &up.url(), &credentials(USER, "nope")),
        remote("anon", &up.url(), ""),
    ]
    .concat();
    let env = vec![("BINARYREPO_REPOSITORY__FROM_ENV__PASSWORD".to_string(), PASSWORD.to_string())];
    let srv = TestServer::start_with(&repos, ServerOptions { env, ..Default::default() }).await;
    let sk = Skopeo::new();
    let out = tempfile::tempdir()?;
    let want = images().digest("busybox", "1.0");
    let expected = basic(USER, PASSWORD);

    for repo in ["in-config", "from-env"] {
        let before = up.seen().len();
        assert_eq!(pull(&sk, &srv, &format!("{repo}/busybox:1.0"), out.path()).await.context(repo)?, want);
        let served: Vec<Seen> = up.seen()[before..].iter().filter(|r| r.status == 200).cloned().collect();
        assert!(served.len() >= 3, "{repo}: manifest, config and layer from the upstream: {served:?}");
        assert!(served.iter().all(|r| r.authorization.as_deref() == Some(expected.as_str())), "{served:?}");
    }

    let oci = OciClient::new(&srv.base_url());
    let layer = images().children("busybox", want)[1].digest.clone();
    for repo in ["wrong", "anon"] {
        let name = format!("{repo}/busybox");
        assert_refused(&oci, &format!("{name} manifest"), oci.get_manifest(&name, "1.0")).await;
        assert_refused(&oci, &format!("{name} blob"), oci.get_blob(&name, &layer)).await;
    }
    Ok(())
}

// ------------------------------------------------------------------ Docker Hub naming

/// Docker Hub itself cannot be used here, so the server's upstream traffic goes
/// through `HTTP_PROXY` = the scripted upstream, with `upstream =
/// "http://registry-1.docker.io"`: the proxy sees the absolute-form request and
/// answers it like Docker Hub would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_single_component_names_get_library_prefix() -> Result<()> {
    let app = TestImage::new(73, &[900]);
    let proxy = AuthUpstream::start(
        Mode::Bearer { token_credentials: None, expires_in: 300 },
        vec![
            Served::busybox("library/busybox", "1.0"),
            Served::synthetic("someuser/app", "1.0", &app),
            Served::synthetic("canary", "1.0", &app),
        ],
    )
    .await;
    let mut env = Vec::new();
    for var in ["HTTP_PROXY", "http_proxy"] {
        env.push((var.to_string(), proxy.url()));
    }
    for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        env.push((var.to_string(), "http://127.0.0.1:9".to_string()));
    }
    env.push(("NO_PROXY".into(), String::new()));
    env.push(("no_proxy".into(), String::new()));
    let repos = format!(
        "{}{}",
        remote("canary", "http://binaryrepo-canary.invalid", ""),
        remote("docker-remote", "http://registry-1.docker.io", "")
    );
    let srv = TestServer::start_with(&repos, ServerOptions { env, ..Default::default() }).await;
    let oci = OciClient::new(&srv.base_url());

    // First make sure upstream traffic really goes to the proxy (never to the internet).
    let canary = oci.get_manifest("canary/canary", "1.0").await?;
    assert!(
        proxy.registry_requests().iter().any(|r| r.host.as_deref() == Some("binaryrepo-canary.invalid")),
        "the server's upstream client ignores HTTP_PROXY ({} {}); this test relies on it",
        canary.status,
        canary.text()
    );
    assert_eq!(canary.status, StatusCode::OK, "{}", canary.text());

    let sk = Skopeo::new();
    let out = tempfile::tempdir()?;
    assert_eq!(pull(&sk, &srv, "docker-remote/busybox:1.0", out.path()).await?, images().digest("busybox", "1.0"));
    let m = oci.get_manifest("docker-remote/someuser/app", "1.0").await?;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());

    let hub: Vec<Seen> =
        proxy.registry_requests().into_iter().filter(|r| r.host.as_deref() == Some("registry-1.docker.io")).collect();
    let paths: Vec<&str> = hub.iter().map(|r| r.path.as_str()).collect();
    assert!(paths.contains(&"/v2/library/busybox/manifests/1.0"), "{paths:?}");
    assert!(paths.contains(&"/v2/someuser/app/manifests/1.0"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/v2/busybox/")), "busybox asked for without library/: {paths:?}");
    let scopes: Vec<String> = proxy.token_requests().iter().flat_map(|t| t.params("scope")).collect();
    assert!(scopes.contains(&"repository:library/busybox:pull".to_string()), "{scopes:?}");
    Ok(())
}
