//! The whole OCI catalog layout in one place. Names never have a component starting with
//! `_` (the name grammar forbids it), so the `_`-prefixed parts cannot collide with names.
//!
//!   _blobs/<digest>              blob link: the blob is visible in this repository
//!   <name>/_manifests/<digest>   manifest (package = name, refers_to = subject digest)
//!   <name>/_tags/<tag>           tag → manifest (same blob and digest as the manifest)
//!   <name>/_tagslist             a remote's cached upstream tags/list document
//!   <name>/_referrers/<digest>   a remote's cached upstream referrers document

use crate::model::Digest;

pub fn blob(digest: &Digest) -> String {
    format!("_blobs/{digest}")
}

pub fn manifest(name: &str, digest: &Digest) -> String {
    format!("{name}/_manifests/{digest}")
}

pub fn manifests(name: &str) -> String {
    format!("{name}/_manifests/")
}

pub fn tag(name: &str, tag: &str) -> String {
    format!("{name}/_tags/{tag}")
}

pub fn tags(name: &str) -> String {
    format!("{name}/_tags/")
}

pub fn tag_of(path: &str) -> Option<&str> {
    path.rsplit_once("/_tags/").map(|(_, t)| t)
}

pub fn upstream_tags(name: &str) -> String {
    format!("{name}/_tagslist")
}

pub fn upstream_referrers(name: &str, digest: &Digest) -> String {
    format!("{name}/_referrers/{digest}")
}
