//! The GOPROXY protocol's URL space (<https://go.dev/ref/mod#goproxy-protocol>) plus our
//! uploads, parsed into typed routes before anything is served. Pure: no I/O.
//!
//! ```text
//! GET  <module>/@v/list | <module>/@latest | <module>/@v/<version>.{info,mod,zip}
//! PUT  <module>/@v/<version>.{info,mod,zip}              (hosted, or virtual with deploy_to)
//! POST api/upload                                        (multipart form, see README)
//! GET  sumdb/<name>/{supported,latest,lookup/<m>@<v>,tile/…}   (checksum database proxy)
//! ```

use super::error::GoError;
use super::module::{unescape, ModulePath, Version};
use crate::formats::percent_decode;
use crate::model::Action;
use axum::http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    GetList {
        module: ModulePath,
    },
    GetLatest {
        module: ModulePath,
    },
    /// `.info` also answers non-canonical queries (`master`, `v1.2`) on remotes.
    GetInfo {
        module: ModulePath,
        query: String,
    },
    GetMod {
        module: ModulePath,
        version: Version,
    },
    GetZip {
        module: ModulePath,
        version: Version,
    },
    Put {
        module: ModulePath,
        version: Version,
        file: FileKind,
    },
    Upload,
    Sumdb {
        name: String,
        path: String,
        kind: SumdbKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Info,
    Mod,
    Zip,
}

impl FileKind {
    pub fn extension(self) -> &'static str {
        match self {
            FileKind::Info => "info",
            FileKind::Mod => "mod",
            FileKind::Zip => "zip",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumdbKind {
    Supported,
    Latest,
    /// `lookup/<module>@<version>`: carries the module so exclude patterns apply.
    Lookup,
    Tile,
}

pub fn action(route: &Route) -> Action {
    match route {
        Route::Put { .. } | Route::Upload => Action::Write,
        _ => Action::Read,
    }
}

pub fn parse(method: &Method, path: &str, _query: Option<&str>) -> Result<Route, GoError> {
    let path = percent_decode(path).ok_or_else(|| GoError::BadRequest(format!("bad percent-encoding in {path:?}")))?;
    let unknown = || GoError::NotFound(format!("not a GOPROXY path: {path:?}"));
    let read = *method == Method::GET || *method == Method::HEAD;
    if path == "api/upload" || path == "api/upload/" {
        return match *method {
            Method::POST => Ok(Route::Upload),
            _ => Err(GoError::MethodNotAllowed("use POST for api/upload".into())),
        };
    }
    if let Some(rest) = path.strip_prefix("sumdb/") {
        return if read { sumdb(rest).ok_or_else(unknown) } else { Err(read_only()) };
    }
    if let Some(module) = path.strip_suffix("/@latest") {
        return if read { Ok(Route::GetLatest { module: module_path(module)? }) } else { Err(read_only()) };
    }
    let (module, file) = path.split_once("/@v/").ok_or_else(unknown)?;
    let module = module_path(module)?;
    if file == "list" {
        return if read { Ok(Route::GetList { module }) } else { Err(read_only()) };
    }
    let (stem, extension) = file.rsplit_once('.').ok_or_else(unknown)?;
    let kind = match extension {
        "info" => FileKind::Info,
        "mod" => FileKind::Mod,
        "zip" => FileKind::Zip,
        _ => return Err(unknown()),
    };
    let query = unescape(stem).filter(|q| !q.is_empty() && !q.contains('/')).ok_or_else(unknown)?;
    match (read, *method == Method::PUT, kind) {
        (true, _, FileKind::Info) => Ok(Route::GetInfo { module, query }),
        (true, _, FileKind::Mod) => Ok(Route::GetMod { module, version: canonical(&query, read)? }),
        (true, _, FileKind::Zip) => Ok(Route::GetZip { module, version: canonical(&query, read)? }),
        (false, true, file) => Ok(Route::Put { module, version: canonical(&query, read)?, file }),
        _ => Err(GoError::MethodNotAllowed(format!("{method} is not allowed on {path:?}"))),
    }
}

fn read_only() -> GoError {
    GoError::MethodNotAllowed("only GET and HEAD are allowed here".into())
}

fn module_path(escaped: &str) -> Result<ModulePath, GoError> {
    ModulePath::from_escaped(escaped).map_err(|e| GoError::BadRequest(e.to_string()))
}

/// Downloads of a non-canonical version are simply not found (the go command resolves
/// queries through `.info` first); uploads of one are a client error.
fn canonical(raw: &str, read: bool) -> Result<Version, GoError> {
    Version::parse(raw).ok_or_else(|| {
        let message = format!(
            "{raw:?} is not a canonical semantic version (vMAJOR.MINOR.PATCH[-pre][+incompatible]; \
             a pseudo-version's yyyymmddhhmmss must be a real date and time)"
        );
        if read {
            GoError::NotFound(message)
        } else {
            GoError::BadRequest(message)
        }
    })
}

fn sumdb(rest: &str) -> Option<Route> {
    let (name, path) = rest.split_once('/')?;
    let host_like = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c));
    let clean = |s: &str| s.split('/').all(|e| !e.is_empty() && e != "." && e != "..");
    if !host_like(name) || !clean(path) {
        return None;
    }
    let kind = match path.split('/').next()? {
        "supported" if path == "supported" => SumdbKind::Supported,
        "latest" if path == "latest" => SumdbKind::Latest,
        "lookup" if path.contains('@') => SumdbKind::Lookup,
        "tile" if path.len() > "tile/".len() => SumdbKind::Tile,
        _ => return None,
    };
    Some(Route::Sumdb { name: name.to_string(), path: path.to_string(), kind })
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
