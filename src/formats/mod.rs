//! Format adapters. Each format lives in its own folder and implements [`Format`]; `mount`
//! runs every request through parse → authorize → serve, so no handler can forget access
//! control (DESIGN.md invariant 3).

pub mod oci;

use crate::auth::{authorize, Denied, Principal};
use crate::model::Action;
use crate::repo::{Repo, RepoError, Repos};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// What a request carries besides its route: who asks, and how URLs back to us are spelled.
pub struct Ctx {
    pub principal: Principal,
    /// Path prefix of the repository in URLs we hand out (e.g. `docker-local/`, or empty
    /// when the repository is addressed by port or Host header).
    pub prefix: String,
    /// Absolute base for Location headers, when configured.
    pub public_url: Option<url::Url>,
    pub repos: Arc<Repos>,
}

impl Ctx {
    /// An absolute-path (or absolute, with `public_url`) location for `path` (starting with `/`).
    pub fn location(&self, path: &str) -> String {
        match &self.public_url {
            Some(base) => format!("{}{}", base.as_str().trim_end_matches('/'), path),
            None => path.to_string(),
        }
    }
}

#[async_trait]
pub trait Format: Send + Sync + 'static {
    type Route: Send + std::fmt::Debug;
    type Error: IntoResponse + From<RepoError> + From<Denied> + Send;
    /// Pure: no I/O. Unknown paths are errors.
    fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Self::Route, Self::Error>;
    fn action(route: &Self::Route) -> Action;
    async fn serve(
        &self,
        repo: &Arc<Repo>,
        ctx: &Ctx,
        route: Self::Route,
        req: Request<Body>,
    ) -> Result<Response, Self::Error>;
}

/// Parse, authorize, then serve one request for `repo`.
pub async fn mount<F: Format>(format: &F, repo: &Arc<Repo>, ctx: &Ctx, path: &str, req: Request<Body>) -> Response {
    let route = match F::parse(req.method(), path, req.uri().query()) {
        Ok(route) => route,
        Err(e) => return e.into_response(),
    };
    if let Err(denied) = authorize(&ctx.principal, &repo.name, F::action(&route)) {
        return F::Error::from(denied).into_response();
    }
    match format.serve(repo, ctx, route, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}
