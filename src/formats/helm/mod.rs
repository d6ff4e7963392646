//! Helm chart repositories (<https://helm.sh/docs/topics/chart_repository/>): `index.yaml`
//! and chart archives under `/<repo>/`, and the ChartMuseum API under `/api/<repo>/…`
//! (<https://github.com/helm/chartmuseum#api>), for hosted, remote and virtual repositories.
//!
//! `route` parses (pure), `hosted` writes, `download` serves archives from any repository
//! kind, `views` says where a repository's charts come from and caches them, `index` renders
//! index.yaml, `chart` and `archive` read and validate Chart.yaml, `error` maps errors to
//! ChartMuseum's JSON bodies. Charts as OCI artifacts need nothing here: the OCI format
//! stores them like any other artifact.

pub mod api;
pub mod archive;
pub mod chart;
pub mod download;
pub mod error;
pub mod hosted;
pub mod index;
pub mod paths;
pub mod route;
pub mod views;

use super::{mount, Ctx, Format};
use crate::model::Action;
use crate::repo::{Repo, RepoKind};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use download::Kind;
use error::HelmError;
use route::Route;
use std::sync::Arc;

pub struct Helm;

#[async_trait]
impl Format for Helm {
    type Route = Route;
    type Error = HelmError;

    fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Route, HelmError> {
        route::parse(method, path, query)
    }

    fn action(route: &Route) -> Action {
        route::action(route)
    }

    async fn serve(
        &self,
        repo: &Arc<Repo>,
        ctx: &Ctx,
        route: Route,
        req: Request<Body>,
    ) -> Result<Response, HelmError> {
        let base = url_base(ctx);
        match route {
            Route::GetIndex { head } => get_index(repo, &base, head, req.headers()).await,
            Route::GetChart { file, head } => download::get(repo, &file, Kind::Chart, head).await,
            Route::GetProv { file, head } => download::get(repo, &file, Kind::Prov, head).await,
            Route::PutChart { file } => hosted::put_chart(repo, Some(&file), req).await,
            Route::PutProv { file } => hosted::put_prov(repo, &file, req).await,
            Route::UploadChart => hosted::upload(repo, req).await,
            Route::UploadProv => hosted::upload_prov(repo, req).await,
            Route::ListCharts { head } => api::list_charts(repo, &base, head).await,
            Route::ListVersions { name, head } => api::list_versions(repo, &base, &name, head).await,
            Route::GetVersion { name, version, head } => api::get_version(repo, &base, &name, &version, head).await,
            Route::DeleteVersion { name, version } => hosted::delete(repo, &name, &version).await,
        }
    }
}

/// A request under `/<repo>/`, or under the API (`path` then starts with `api/`).
/// Every read answer of a remote or virtual repository carries `Cache-Status`, errors
/// included (also those refused before serving: a malformed path, a denied read).
pub async fn serve(repo: &Arc<Repo>, ctx: &Ctx, path: &str, req: Request<Body>) -> Response {
    let read = *req.method() == Method::GET || *req.method() == Method::HEAD;
    let response = mount(&Helm, repo, ctx, path, req).await;
    if !read || matches!(repo.kind, RepoKind::Hosted) {
        return response;
    }
    let detail = match response.status() {
        status if status.is_success() || status == StatusCode::NOT_MODIFIED => "assembled from members",
        status => status.canonical_reason().unwrap_or("error"),
    };
    super::fill_cache_status(response, detail)
}

/// Where chart URLs in index.yaml point: relative to the index by default (the client
/// resolves them against the URL it fetched the index from), absolute with `public_url`.
fn url_base(ctx: &Ctx) -> String {
    match ctx.public_url {
        Some(_) => ctx.location(&format!("/{}", ctx.prefix)),
        None => String::new(),
    }
}

async fn get_index(repo: &Repo, base: &str, head: bool, headers: &HeaderMap) -> Result<Response, HelmError> {
    let (rendered, cache) = views::index(repo, base).await?;
    let gzip = accepts_gzip(headers);
    let etag = match gzip {
        true => format!("\"{}-gzip\"", rendered.etag),
        false => format!("\"{}\"", rendered.etag),
    };
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::VARY, "Accept-Encoding")
        .header(header::CACHE_CONTROL, "no-cache");
    if let Some(status) = cache {
        response = response.header("Cache-Status", status.header_value());
    }
    if none_match(headers, &etag) {
        return response.status(StatusCode::NOT_MODIFIED).body(Body::empty()).map_err(HelmError::internal);
    }
    let (body, length) = match gzip {
        true => {
            // Compressed once per rendering, off the runtime.
            let zipped = tokio::task::spawn_blocking(move || rendered.gzip()).await.map_err(HelmError::internal)?;
            response = response.header(header::CONTENT_ENCODING, "gzip");
            let length = zipped.len();
            (Body::from(zipped), length)
        }
        false => {
            let pieces = rendered.pieces.clone().into_iter().map(Ok::<_, std::convert::Infallible>);
            (Body::from_stream(futures::stream::iter(pieces)), rendered.length)
        }
    };
    response = response
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-yaml")
        .header(header::CONTENT_LENGTH, length);
    let body = if head { Body::empty() } else { body };
    response.body(body).map_err(HelmError::internal)
}

/// `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let values = headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok());
    values.flat_map(|v| v.split(',')).any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts.any(|p| {
            let q = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="));
            q.and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0)
        });
        (coding == "gzip" || coding == "*") && !refused
    })
}

/// `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2) or is `*`.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let values = headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v: &HeaderValue| v.to_str().ok());
    values.flat_map(|v| v.split(',')).map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn gzip_negotiation() {
        let ae = header::ACCEPT_ENCODING;
        assert!(accepts_gzip(&headers(&[(ae.clone(), "gzip")])));
        assert!(accepts_gzip(&headers(&[(ae.clone(), "br, gzip;q=0.5")])));
        assert!(accepts_gzip(&headers(&[(ae.clone(), "*")])));
        assert!(!accepts_gzip(&headers(&[(ae.clone(), "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[(ae.clone(), "identity")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn etag_matching() {
        let inm = header::IF_NONE_MATCH;
        assert!(none_match(&headers(&[(inm.clone(), "\"abc\"")]), "\"abc\""));
        assert!(none_match(&headers(&[(inm.clone(), "\"x\", W/\"abc\"")]), "\"abc\""));
        assert!(none_match(&headers(&[(inm.clone(), "*")]), "\"abc\""));
        assert!(!none_match(&headers(&[(inm.clone(), "\"abcd\"")]), "\"abc\""));
        assert!(!none_match(&HeaderMap::new(), "\"abc\""));
    }
}
