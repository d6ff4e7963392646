//! The one integration-test binary: it starts the real `binaryrepo` binary on
//! 127.0.0.1 with temporary directories, real clients (skopeo, podman, docker) and
//! local upstreams (the Debian `docker-registry`, a scripted `FakeUpstream` for
//! failure modes), and checks behaviour against the OCI distribution spec
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>).
//!
//! Nothing here talks to the internet and nothing sleeps to synchronise: every wait
//! is a bounded poll. Test images come from `scripts/make-test-images.sh` and are
//! generated once per build (see `images.rs`).

// Harness modules: not every helper is used by every test module.
#[allow(dead_code)]
mod clients;
#[allow(dead_code)]
mod helm_fixtures;
#[allow(dead_code)]
mod helm_upstream;
#[allow(dead_code)]
mod images;
#[allow(dead_code)]
mod oci;
#[allow(dead_code)]
mod server;
#[allow(dead_code)]
mod upstream;

mod addressing;
mod api;
mod cache;
mod cluster;
mod cluster_bench;
mod cluster_fetch;
mod completeness;
mod consistency;
mod go;
mod go_remote;
#[allow(dead_code)]
mod gomod;
#[allow(dead_code)]
mod goproxy;
mod harness;
mod helm;
mod helm_remote;
mod hosted;
mod remote;
mod spec_extra;
mod upstream_auth;
mod virtual_repo;
