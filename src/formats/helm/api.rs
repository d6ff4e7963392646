//! ChartMuseum's read API over any repository's view: `GET api/charts` (every chart),
//! `api/charts/<name>` (its versions, newest first), `api/charts/<name>/<version|latest>`
//! (<https://github.com/helm/chartmuseum#api>). URLs are the ones index.yaml gives.

use super::chart::ChartName;
use super::error::HelmError;
use super::index::Listed;
use super::route::VersionRef;
use super::views;
use crate::repo::Repo;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

/// The JSON answer; for HEAD the same headers (Content-Length of the body) and no body.
fn json(value: serde_json::Value, head: bool) -> Response {
    let body = value.to_string();
    let length = body.len();
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if head {
        *response.body_mut() = axum::body::Body::empty();
        response.headers_mut().insert(header::CONTENT_LENGTH, length.into());
    }
    response
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, HelmError> {
    serde_json::to_value(value).map_err(HelmError::internal)
}

pub async fn list_charts(repo: &Repo, base: &str, head: bool) -> Result<Response, HelmError> {
    let sourced = views::view(repo).await?;
    let charts: BTreeMap<&String, Vec<Listed>> = sourced
        .view
        .charts
        .iter()
        .map(|(name, bucket)| (name, bucket.versions.iter().map(|v| v.listed(base)).collect()))
        .collect();
    Ok(json(to_json(&charts)?, head))
}

pub async fn list_versions(repo: &Repo, base: &str, name: &ChartName, head: bool) -> Result<Response, HelmError> {
    let sourced = views::view(repo).await?;
    let bucket = sourced.view.charts.get(name.as_str()).ok_or_else(|| not_found(name, None))?;
    let versions: Vec<Listed> = bucket.versions.iter().map(|v| v.listed(base)).collect();
    Ok(json(to_json(&versions)?, head))
}

pub async fn get_version(
    repo: &Repo,
    base: &str,
    name: &ChartName,
    version: &VersionRef,
    head: bool,
) -> Result<Response, HelmError> {
    let sourced = views::view(repo).await?;
    let bucket = sourced.view.charts.get(name.as_str()).ok_or_else(|| not_found(name, None))?;
    let found = match version {
        // Newest first, so the first SemVer release (else the first) is the latest.
        VersionRef::Latest => bucket
            .versions
            .iter()
            .find(|v| semver::Version::parse(&v.entry.meta.version).is_ok_and(|s| s.pre.is_empty()))
            .or(bucket.versions.first()),
        VersionRef::Exact(wanted) => bucket.versions.iter().find(|v| v.entry.meta.version == wanted.as_str()),
    };
    let found = found.ok_or_else(|| not_found(name, Some(version)))?;
    Ok(json(to_json(&found.listed(base))?, head))
}

fn not_found(name: &ChartName, version: Option<&VersionRef>) -> HelmError {
    match version {
        Some(VersionRef::Exact(v)) => HelmError::not_found(format!("chart {name} version {v} not found")),
        _ => HelmError::not_found(format!("chart {name} not found")),
    }
}
