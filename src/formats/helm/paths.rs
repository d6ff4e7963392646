//! The whole Helm catalog layout in one place. Chart names start with a letter or digit, so
//! `index.yaml` cannot collide with a chart path.
//!
//!   charts/<name>/<version>.tgz        chart archive (package = name; hosted: attrs = the
//!                                      Chart.yaml metadata as JSON, written at upload so
//!                                      index.yaml never re-reads archives)
//!   charts/<name>/<version>.tgz.prov   provenance file beside its chart
//!   index.yaml                         remote: the upstream's index.yaml as fetched
//!   _stamp                             hosted: a fresh id (digest, no blob) written with every
//!                                      upload and delete, so each node's cached view of the
//!                                      charts knows when another node changed them

pub const CHARTS: &str = "charts/";
pub const UPSTREAM_INDEX: &str = "index.yaml";
pub const STAMP: &str = "_stamp";

pub fn chart(name: &str, version: &str) -> String {
    format!("{CHARTS}{name}/{version}.tgz")
}

pub fn prov(name: &str, version: &str) -> String {
    format!("{CHARTS}{name}/{version}.tgz.prov")
}

pub fn is_chart(path: &str) -> bool {
    path.starts_with(CHARTS) && path.ends_with(".tgz")
}
