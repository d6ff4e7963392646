//! Request parsing for chart repositories. Pure: no I/O. The path is what follows the
//! repository key: `index.yaml`, `<name>-<version>.tgz[.prov]` (also under `charts/`, as
//! ChartMuseum writes its URLs), and the ChartMuseum API with `api/` in front
//! (<https://github.com/helm/chartmuseum#api>). Chart repository layout:
//! <https://helm.sh/docs/topics/chart_repository/>.

use super::chart::{ChartName, ChartVersionText};
use super::error::HelmError;
use crate::formats::percent_decode;
use crate::model::Action;
use axum::http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    GetIndex {
        head: bool,
    },
    GetChart {
        file: ChartFile,
        head: bool,
    },
    GetProv {
        file: ChartFile,
        head: bool,
    },
    PutChart {
        file: ChartFile,
    },
    PutProv {
        file: ChartFile,
    },
    /// `POST api/charts`: the raw archive, or multipart fields `chart` and `prov`.
    UploadChart,
    /// `POST api/prov`: a provenance file alone (raw or multipart field `prov`).
    UploadProv,
    ListCharts {
        head: bool,
    },
    ListVersions {
        name: ChartName,
        head: bool,
    },
    GetVersion {
        name: ChartName,
        version: VersionRef,
        head: bool,
    },
    DeleteVersion {
        name: ChartName,
        version: ChartVersionText,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRef {
    Latest,
    Exact(ChartVersionText),
}

/// A chart archive file name without `.tgz`: `<name>-<version>`. Names may contain `-`, so
/// the split is ambiguous in general; [`ChartFile::candidates`] lists every valid one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartFile(String);

impl ChartFile {
    pub fn parse(stem: &str) -> Option<ChartFile> {
        let file = ChartFile(stem.to_string());
        (!file.candidates().is_empty()).then_some(file)
    }

    pub fn stem(&self) -> &str {
        &self.0
    }

    /// Every `(name, version)` this file name can mean, strict SemVer versions first.
    pub fn candidates(&self) -> Vec<(ChartName, ChartVersionText)> {
        let mut strict = Vec::new();
        let mut loose = Vec::new();
        for (at, _) in self.0.match_indices('-') {
            let (name, version) = (&self.0[..at], &self.0[at + 1..]);
            let (Ok(name), Ok(version)) = (name.parse::<ChartName>(), version.parse::<ChartVersionText>()) else {
                continue;
            };
            match version.semver().is_some() {
                true => strict.push((name, version)),
                false => loose.push((name, version)),
            }
        }
        strict.extend(loose);
        strict
    }
}

pub fn action(route: &Route) -> Action {
    match route {
        Route::GetIndex { .. }
        | Route::GetChart { .. }
        | Route::GetProv { .. }
        | Route::ListCharts { .. }
        | Route::ListVersions { .. }
        | Route::GetVersion { .. } => Action::Read,
        Route::PutChart { .. } | Route::PutProv { .. } | Route::UploadChart | Route::UploadProv => Action::Write,
        Route::DeleteVersion { .. } => Action::Delete,
    }
}

pub fn parse(method: &Method, path: &str, _query: Option<&str>) -> Result<Route, HelmError> {
    // Versions may carry `+build` metadata, which some clients send as `%2B`.
    let path = percent_decode(path).ok_or_else(|| HelmError::bad_request(format!("bad escape in {path:?}")))?;
    match path.strip_prefix("api/") {
        Some(api) => parse_api(method, api),
        None => parse_file(method, path.strip_prefix("charts/").unwrap_or(&path)),
    }
}

fn parse_file(method: &Method, path: &str) -> Result<Route, HelmError> {
    let head = *method == Method::HEAD;
    let read = matches!(*method, Method::GET | Method::HEAD);
    if path == "index.yaml" {
        return if read { Ok(Route::GetIndex { head }) } else { Err(not_allowed(method, path)) };
    }
    let (stem, prov) = match (path.strip_suffix(".tgz.prov"), path.strip_suffix(".tgz")) {
        (Some(stem), _) => (stem, true),
        (None, Some(stem)) => (stem, false),
        _ => return Err(HelmError::not_found(format!("no such file {path:?} in a chart repository"))),
    };
    let file = (!stem.contains('/'))
        .then(|| ChartFile::parse(stem))
        .flatten()
        .ok_or_else(|| HelmError::bad_request(format!("{path:?} is not <name>-<version>.tgz")))?;
    match (method.clone(), prov) {
        (Method::GET | Method::HEAD, false) => Ok(Route::GetChart { file, head }),
        (Method::GET | Method::HEAD, true) => Ok(Route::GetProv { file, head }),
        (Method::PUT, false) => Ok(Route::PutChart { file }),
        (Method::PUT, true) => Ok(Route::PutProv { file }),
        _ => Err(not_allowed(method, path)),
    }
}

fn parse_api(method: &Method, api: &str) -> Result<Route, HelmError> {
    let head = *method == Method::HEAD;
    let read = matches!(*method, Method::GET | Method::HEAD);
    let parts: Vec<&str> = api.trim_end_matches('/').split('/').collect();
    let name = |s: &str| s.parse::<ChartName>().map_err(|e| HelmError::bad_request(e.to_string()));
    let version = |s: &str| s.parse::<ChartVersionText>().map_err(|e| HelmError::bad_request(e.to_string()));
    match (parts.as_slice(), method.clone()) {
        (["charts"], Method::POST) => Ok(Route::UploadChart),
        (["prov"], Method::POST) => Ok(Route::UploadProv),
        (["charts"], _) if read => Ok(Route::ListCharts { head }),
        (["charts", n], _) if read => Ok(Route::ListVersions { name: name(n)?, head }),
        (["charts", n, "latest"], _) if read => {
            Ok(Route::GetVersion { name: name(n)?, version: VersionRef::Latest, head })
        }
        (["charts", n, v], _) if read => {
            Ok(Route::GetVersion { name: name(n)?, version: VersionRef::Exact(version(v)?), head })
        }
        (["charts", n, v], Method::DELETE) => Ok(Route::DeleteVersion { name: name(n)?, version: version(v)? }),
        (["charts" | "prov", ..], _) => Err(not_allowed(method, api)),
        _ => Err(HelmError::not_found(format!("no such API endpoint {api:?}"))),
    }
}

fn not_allowed(method: &Method, path: &str) -> HelmError {
    HelmError::new(405, format!("{method} is not supported on {path:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(stem: &str) -> ChartFile {
        ChartFile::parse(stem).unwrap()
    }

    fn name(s: &str) -> ChartName {
        s.parse().unwrap()
    }

    fn version(s: &str) -> ChartVersionText {
        s.parse().unwrap()
    }

    #[test]
    fn routes() {
        let get = Method::GET;
        let table: Vec<(Method, &str, Route)> = vec![
            (get.clone(), "index.yaml", Route::GetIndex { head: false }),
            (Method::HEAD, "index.yaml", Route::GetIndex { head: true }),
            (get.clone(), "nginx-1.2.3.tgz", Route::GetChart { file: file("nginx-1.2.3"), head: false }),
            (get.clone(), "charts/nginx-1.2.3.tgz", Route::GetChart { file: file("nginx-1.2.3"), head: false }),
            (get.clone(), "nginx-1.2.3.tgz.prov", Route::GetProv { file: file("nginx-1.2.3"), head: false }),
            (Method::PUT, "my-app-0.1.0-rc.1.tgz", Route::PutChart { file: file("my-app-0.1.0-rc.1") }),
            (Method::PUT, "a-1.0.0.tgz.prov", Route::PutProv { file: file("a-1.0.0") }),
            (get.clone(), "a-1.0.0%2Bbuild.1.tgz", Route::GetChart { file: file("a-1.0.0+build.1"), head: false }),
            (get.clone(), "a-1.0.0+build.1.tgz", Route::GetChart { file: file("a-1.0.0+build.1"), head: false }),
            (Method::POST, "api/charts", Route::UploadChart),
            (Method::POST, "api/prov", Route::UploadProv),
            (get.clone(), "api/charts", Route::ListCharts { head: false }),
            (get.clone(), "api/charts/", Route::ListCharts { head: false }),
            (get.clone(), "api/charts/nginx", Route::ListVersions { name: name("nginx"), head: false }),
            (
                get.clone(),
                "api/charts/nginx/latest",
                Route::GetVersion { name: name("nginx"), version: VersionRef::Latest, head: false },
            ),
            (
                Method::HEAD,
                "api/charts/nginx/1.0.0",
                Route::GetVersion { name: name("nginx"), version: VersionRef::Exact(version("1.0.0")), head: true },
            ),
            (
                Method::DELETE,
                "api/charts/nginx/1.0.0",
                Route::DeleteVersion { name: name("nginx"), version: version("1.0.0") },
            ),
        ];
        for (method, path, want) in table {
            assert_eq!(parse(&method, path, None).unwrap(), want, "{method} {path}");
        }
    }

    #[test]
    fn bad_input() {
        let table: Vec<(Method, &str, u16)> = vec![
            (Method::GET, "", 404),
            (Method::GET, "README.md", 404),
            (Method::GET, "nginx.tgz", 400),
            (Method::GET, "-1.0.0.tgz", 400),
            (Method::GET, "x/nginx-1.0.0.tgz", 400),
            (Method::GET, "../nginx-1.0.0.tgz", 400),
            (Method::GET, "nginx-1.0.0 .tgz", 400),
            (Method::POST, "index.yaml", 405),
            (Method::DELETE, "nginx-1.0.0.tgz", 405),
            (Method::PUT, "api/charts", 405),
            (Method::DELETE, "api/charts/nginx", 405),
            (Method::GET, "api/charts/Bad Name", 400),
            (Method::GET, "api/charts/nginx/1.0/x", 405),
            (Method::GET, "api/health", 404),
            (Method::GET, "api/charts/..", 400),
            (Method::GET, "a-1.0.0%2.tgz", 400),
            (Method::GET, "a-1.0.0%zz.tgz", 400),
            (Method::GET, "a%2F1.0.0.tgz", 400),
        ];
        for (method, path, status) in table {
            let err = parse(&method, path, None).unwrap_err();
            assert_eq!(err.status, status, "{method} {path}: {}", err.message);
        }
    }

    #[test]
    fn file_names_split_into_every_valid_candidate() {
        let pairs = |stem: &str| -> Vec<(String, String)> {
            file(stem).candidates().into_iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
        };
        assert_eq!(pairs("nginx-1.2.3"), [("nginx".into(), "1.2.3".into())]);
        assert_eq!(pairs("my-chart-2-1.0.0")[0], ("my-chart-2".into(), "1.0.0".into()));
        assert_eq!(pairs("app-1.0.0-rc.1"), [("app".into(), "1.0.0-rc.1".into())]);
        // A loose version (not SemVer) is kept, after the strict ones.
        assert_eq!(pairs("old-0.1"), [("old".into(), "0.1".into())]);
        assert_eq!(pairs("a-1-2.0.0"), [("a-1".into(), "2.0.0".into()), ("a".into(), "1-2.0.0".into())]);
        assert!(ChartFile::parse("nginx").is_none());
        assert!(ChartFile::parse("nginx-latest").is_none());
    }
}
