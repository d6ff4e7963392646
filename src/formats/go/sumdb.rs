//! Checksum database proxy (Go modules reference, "Checksum database",
//! <https://go.dev/ref/mod#checksum-database>): `sumdb/<name>/…` is passed to the upstream's
//! `sumdb/<name>/…`. Lookups and tiles are immutable (cached forever); `latest` and
//! `supported` are mutable. Lookups carry their module, so `exclude` patterns keep private
//! module names from reaching the upstream. Hosted repositories have no checksum database:
//! 404 tells the go command to contact it directly.

use super::download::{find, members_for, respond, MAX_DOCUMENT};
use super::error::GoError;
use super::module::{unescape, ModulePath};
use super::paths;
use super::route::SumdbKind;
use crate::repo::{Freshness, Remote, Repo, RepoKind, UpstreamRequest};
use axum::response::Response;
use std::sync::Arc;

/// The module of a `lookup/<module>@<version>` path (escaped in the URL).
fn lookup_module(path: &str, kind: SumdbKind) -> Option<ModulePath> {
    let (module, _) = path.strip_prefix("lookup/")?.rsplit_once('@')?;
    (kind == SumdbKind::Lookup).then(|| ModulePath::from_escaped(module).ok())?
}

fn request(name: &str, path: &str, kind: SumdbKind) -> UpstreamRequest {
    let freshness = match kind {
        SumdbKind::Lookup | SumdbKind::Tile => Freshness::Immutable,
        SumdbKind::Supported | SumdbKind::Latest => Freshness::Mutable,
    };
    let package = match kind {
        SumdbKind::Lookup => {
            path.strip_prefix("lookup/").and_then(|m| m.split_once('@')).and_then(|(m, _)| unescape(m))
        }
        _ => None,
    };
    UpstreamRequest {
        path: format!("sumdb/{name}/{path}"),
        accept: Vec::new(),
        freshness,
        expected: None,
        package,
        auth_scope: None,
        document_limit: Some(MAX_DOCUMENT),
        digest_header: None,
        validate: None,
        validate_blob: None,
    }
}

pub async fn get(repo: &Arc<Repo>, name: &str, path: &str, kind: SumdbKind) -> Result<Response, GoError> {
    let members = match (&repo.kind, lookup_module(path, kind)) {
        // The dependency-confusion guard of downloads: a module held by a hosted member is
        // never named to a remote's upstream, not even in a checksum lookup.
        (RepoKind::Virtual { .. }, Some(module)) => members_for(repo, &module).await?,
        (RepoKind::Virtual { members, .. }, None) => members.clone(),
        _ => vec![repo.clone()],
    };
    let remotes: Vec<Arc<Repo>> = members.into_iter().filter(|m| m.remote().is_some()).collect();
    let upstream = |_: &Remote| request(name, path, kind);
    let Some((found, holder)) = find(&remotes, &paths::sumdb(name, path), &upstream).await? else {
        return Err(GoError::NotFound(format!("checksum database {name} is not proxied here")));
    };
    let content_type = match kind {
        SumdbKind::Tile => "application/octet-stream",
        _ => "text/plain; charset=utf-8",
    };
    respond(repo, found, &holder, content_type).await
}
