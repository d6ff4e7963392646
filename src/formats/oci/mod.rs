//! OCI distribution-spec v1.1 / Docker Registry HTTP API v2.
//! <https://github.com/opencontainers/distribution-spec/blob/main/spec.md>
//!
//! Addressing: under `/v2/`, a repository is chosen by the listener (port method), by the
//! `Host` header (host method) or by the first path component (path method); the rest of
//! the path is parsed by [`route::parse`].

pub mod error;
pub mod lists;
pub mod manifest;
pub mod paths;
pub mod prefetch;
pub mod pull;
pub mod push;
pub mod route;

use super::{mount, Ctx, Format};
use crate::auth::Principal;
use crate::model::{Action, FormatKind};
use crate::repo::{Freshness, Remote, Repo, RepoKind, Repos, UpstreamRequest};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use error::{ErrorCode, OciError};
use route::Route;
use std::sync::Arc;

pub const API_VERSION_HEADER: &str = "Docker-Distribution-API-Version";

pub struct Oci;

#[async_trait]
impl Format for Oci {
    type Route = Route;
    type Error = OciError;

    fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Route, OciError> {
        route::parse(method, path, query)
    }

    fn action(route: &Route) -> Action {
        route::action(route)
    }

    async fn serve(&self, repo: &Arc<Repo>, ctx: &Ctx, route: Route, req: Request<Body>) -> Result<Response, OciError> {
        let read = route::action(&route) == Action::Read;
        let result = match route {
            Route::GetManifest { name, reference, head } => pull::get_manifest(repo, &name, &reference, head).await,
            Route::GetBlob { name, digest, head } => pull::get_blob(repo, &name, &digest, head, req.headers()).await,
            Route::PutManifest { name, reference } => push::put_manifest(repo, ctx, &name, &reference, req).await,
            Route::DeleteManifest { name, reference } => push::delete_manifest(repo, &name, &reference).await,
            Route::DeleteBlob { digest, .. } => push::delete_blob(repo, &digest).await,
            Route::StartUpload { name, digest, mount, from } => {
                push::start_upload(repo, ctx, &name, digest, mount, from, req).await
            }
            Route::UploadStatus { name, id } => push::upload_status(repo, ctx, &name, &id).await,
            Route::PatchUpload { name, id } => push::patch_upload(repo, ctx, &name, &id, req).await,
            Route::FinishUpload { name, id, digest } => push::finish_upload(repo, ctx, &name, &id, &digest, req).await,
            Route::CancelUpload { name, id } => push::cancel_upload(repo, &name, &id).await,
            Route::ListTags { name, page } => lists::tags(repo, ctx, &name, &page).await,
            Route::ListReferrers { name, digest, artifact_type } => {
                lists::referrers(repo, &name, &digest, artifact_type.as_deref()).await
            }
            Route::Catalog { page } => lists::catalog(std::slice::from_ref(repo), false, &page).await,
        };
        match read && !matches!(repo.kind, RepoKind::Hosted) {
            true => with_cache_status(repo, result),
            false => result,
        }
    }
}

/// Every read answer of a remote or virtual repository says what the cache did (RFC 9211). The
/// handlers set it where one entry decided the answer; answers assembled from several members
/// (referrers) and errors get a `detail` instead, and a 429 tells when the upstream takes
/// requests again.
fn with_cache_status(repo: &Repo, result: Result<Response, OciError>) -> Result<Response, OciError> {
    let result = result.map_err(|e| e.with_retry_after(repo));
    Ok(super::with_cache_status(result, |e| e.code.as_str().to_string()))
}

/// How `/v2/` requests find their repository.
#[derive(Debug, Clone)]
pub enum Addressing {
    /// A listener bound to one repository (`port = …`).
    Port(String),
    /// The main listener: Host header, else the first path component.
    Shared,
}

/// Serve any request under `/v2`.
pub async fn dispatch(
    repos: Arc<Repos>,
    public_url: Option<url::Url>,
    addressing: &Addressing,
    req: Request<Body>,
) -> Response {
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix("/v2").unwrap_or(&path).trim_start_matches('/').to_string();
    let mut ctx = Ctx { principal: Principal::Anonymous, prefix: String::new(), public_url, repos: repos.clone() };
    if rest.is_empty() {
        return base(req.method());
    }
    let host = req.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let fixed = match addressing {
        Addressing::Port(name) => repos.get(name).cloned(),
        Addressing::Shared => repos.by_host(host).cloned(),
    };
    if let Some(repo) = fixed.filter(|r| r.format == FormatKind::Docker) {
        // `public_url` names the main endpoint, where repositories are addressed by path.
        if ctx.public_url.is_some() {
            ctx.prefix = format!("{}/", repo.name);
        }
        return mount(&Oci, &repo, &ctx, &rest, req).await;
    }
    if rest == "_catalog" {
        let page = match route::parse(req.method(), &rest, req.uri().query()) {
            Ok(Route::Catalog { page }) => page,
            Ok(_) => return OciError::new(ErrorCode::Unsupported, "unsupported").into_response(),
            Err(e) => return e.into_response(),
        };
        let readable: Vec<Arc<Repo>> = repos
            .all()
            .filter(|r| !r.is_virtual() && r.format == FormatKind::Docker)
            .filter(|r| crate::auth::authorize(&ctx.principal, &r.name, Action::Read).is_ok())
            .cloned()
            .collect();
        return lists::catalog(&readable, true, &page).await.unwrap_or_else(IntoResponse::into_response);
    }
    let (key, inner) = rest.split_once('/').unwrap_or((&rest, ""));
    if repos.get(key).is_none() {
        // containerd mirror mode: `?ns=<registry host>` names the upstream the image comes from.
        if let Some(repo) = namespace(req.uri().query()).and_then(|ns| remote_for_host(&repos, &ns)) {
            if ctx.public_url.is_some() {
                ctx.prefix = format!("{}/", repo.name);
            }
            return mount(&Oci, &repo, &ctx, &rest, req).await;
        }
    }
    let Some(repo) = repos.get(key).cloned().filter(|r| r.format == FormatKind::Docker) else {
        let message = format!("no repository {key:?}; address images as <host>/<repository>/<image>");
        return OciError::new(ErrorCode::NameUnknown, message).into_response();
    };
    ctx.prefix = format!("{key}/");
    mount(&Oci, &repo, &ctx, inner, req).await
}

fn namespace(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == "ns").map(|(_, v)| v.into_owned())
}

/// The remote repository whose upstream is the registry `host` (`docker.io` means Docker Hub).
fn remote_for_host(repos: &Repos, host: &str) -> Option<Arc<Repo>> {
    let wanted = host.to_ascii_lowercase();
    let aliases: &[&str] = if is_docker_hub(&wanted) { &DOCKER_HUB_HOSTS } else { &[] };
    repos
        .all()
        .filter(|repo| repo.format == FormatKind::Docker)
        .find(|repo| {
            repo.remote().is_some_and(|remote| {
                let upstream = remote.upstream_host();
                upstream == wanted || remote.upstream_authority() == wanted || aliases.contains(&upstream)
            })
        })
        .cloned()
}

const DOCKER_HUB_HOSTS: [&str; 3] = ["registry-1.docker.io", "docker.io", "index.docker.io"];

fn is_docker_hub(host: &str) -> bool {
    DOCKER_HUB_HOSTS.contains(&host)
}

fn base(method: &Method) -> Response {
    if *method != Method::GET && *method != Method::HEAD {
        return OciError::new(ErrorCode::Unsupported, "only GET and HEAD on /v2/").into_response();
    }
    ([(axum::http::header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

/// A request for `/v2/<upstream name>/<endpoint>` with the pull token scope; callers set the rest.
pub fn upstream_request(remote: &Remote, name: &str, endpoint: &str, freshness: Freshness) -> UpstreamRequest {
    let upstream = upstream_name(remote, name);
    UpstreamRequest {
        path: format!("v2/{upstream}/{endpoint}"),
        accept: Vec::new(),
        freshness,
        expected: None,
        // The image name: the remote's `exclude` patterns keep private names off the upstream.
        package: Some(name.to_string()),
        auth_scope: Some(format!("repository:{upstream}:pull")),
        document_limit: None,
        digest_header: None,
        validate: None,
        validate_blob: None,
    }
}

/// The name to ask an upstream for: Docker Hub keeps official images under `library/`.
pub fn upstream_name(remote: &Remote, name: &str) -> String {
    if is_docker_hub(remote.upstream_host()) && !name.contains('/') {
        format!("library/{name}")
    } else {
        name.to_string()
    }
}
