//! The whole Go catalog layout in one place. Module paths are stored in their real case
//! (decoded), and cannot start with `_` (their first element is a domain name), so the
//! `_sumdb/` prefix cannot collide with a module.
//!
//!   <module>/@v/<version>.zip   module zip (package = module, attrs.version)
//!   <module>/@v/<version>.mod   go.mod as served (generated from the zip when not uploaded)
//!   <module>/@v/<version>.info  {"Version","Time"} (generated at upload when not uploaded)
//!   <module>/@v/<query>.info    remote: an upstream answer to a non-canonical query
//!   <module>/@v/list            remote: the cached upstream version list
//!   <module>/@latest            remote: the cached upstream @latest answer
//!   _sumdb/<name>/<path>        remote: cached checksum database answers

use super::module::ModulePath;
use super::route::FileKind;

pub fn versions(module: &ModulePath) -> String {
    format!("{module}/@v/")
}

pub fn file(module: &ModulePath, version: &str, kind: FileKind) -> String {
    format!("{module}/@v/{version}.{}", kind.extension())
}

/// The version of a `.zip` entry path listed under [`versions`].
pub fn zip_version<'p>(module: &ModulePath, path: &'p str) -> Option<&'p str> {
    path.strip_prefix(&versions(module))?.strip_suffix(".zip")
}

pub fn list(module: &ModulePath) -> String {
    format!("{module}/@v/list")
}

pub fn latest(module: &ModulePath) -> String {
    format!("{module}/@latest")
}

pub fn sumdb(name: &str, path: &str) -> String {
    format!("_sumdb/{name}/{path}")
}
