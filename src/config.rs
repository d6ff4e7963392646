//! Configuration: a TOML file, then `BINARYREPO_…` environment overrides, then validation of
//! what serde cannot check (members exist, same format, deploy target, unique names and ports).
//!
//! Environment overrides address keys with `__` between levels: `BINARYREPO_SERVER__LISTEN`,
//! `BINARYREPO_STORAGE__PATH`, `BINARYREPO_STORAGE__DATABASE__URL`, and per repository by name (`-` written as `_`):
//! `BINARYREPO_REPOSITORY__DOCKER_REMOTE__PASSWORD`.

mod cluster;
mod storage;

pub use cluster::ClusterConfig;
pub use storage::{BlobBackend, BlobsConfig, DatabaseConfig, StorageConfig};

use crate::model::{FormatKind, RepoName};
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// Used when no config file is given: a hosted, a remote and a virtual repository per format
/// (Docker Hub for docker; the Go and Helm remotes' upstreams are placeholders to configure).
const EMBEDDED_DEFAULT: &str = r#"
[[repository]]
name = "docker-local"
format = "docker"
kind = "hosted"

[[repository]]
name = "docker-remote"
format = "docker"
kind = "remote"
upstream = "https://registry-1.docker.io"

[[repository]]
name = "docker"
format = "docker"
kind = "virtual"
members = ["docker-local", "docker-remote"]
deploy_to = "docker-local"

[[repository]]
name = "go-local"
format = "go"
kind = "hosted"

# A placeholder, offline so it is never contacted: to use it, set a real GOPROXY with
# BINARYREPO_REPOSITORY__GO_REMOTE__UPSTREAM=… and BINARYREPO_REPOSITORY__GO_REMOTE__OFFLINE=false.
[[repository]]
name = "go-remote"
format = "go"
kind = "remote"
upstream = "https://upstream.example.com"
offline = true

[[repository]]
name = "go"
format = "go"
kind = "virtual"
members = ["go-local", "go-remote"]
deploy_to = "go-local"

[[repository]]
name = "helm-local"
format = "helm"
kind = "hosted"

# A placeholder, offline so it is never contacted: to use it, set your chart repository with
# BINARYREPO_REPOSITORY__HELM_REMOTE__UPSTREAM=… and BINARYREPO_REPOSITORY__HELM_REMOTE__OFFLINE=false.
[[repository]]
name = "helm-remote"
format = "helm"
kind = "remote"
upstream = "https://upstream.example.com/charts"
offline = true

[[repository]]
name = "helm"
format = "helm"
kind = "virtual"
members = ["helm-local", "helm-remote"]
deploy_to = "helm-local"
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid environment override {0}: {1}")]
    Env(String, String),
    #[error("repository {repo:?}: {problem}")]
    Repo { repo: String, problem: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default, rename = "repository")]
    pub repositories: Vec<RepoConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// External base URL (scheme://host[:port]) used in Location headers behind a proxy.
    pub public_url: Option<Url>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: default_listen(), public_url: None, tls_cert: None, tls_key: None }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    Hosted,
    Remote,
    Virtual,
}

/// One `[[repository]]` table as written; `validate` turns it into a typed [`RepoSpec`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub name: String,
    pub format: FormatKind,
    pub kind: KindName,
    /// Extra listener where `/v2/<image>` maps to this repository.
    pub port: Option<u16>,
    /// Host headers that map to this repository.
    #[serde(default)]
    pub hosts: Vec<String>,
    // remote
    pub upstream: Option<Url>,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub metadata_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub negative_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub fetch_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub upstream_timeout: Option<Duration>,
    #[serde(default)]
    pub offline: bool,
    /// Package-path patterns (`corp.example.com/*`) that are never requested from the upstream,
    /// so private names do not leak; `*` matches any run of characters.
    #[serde(default)]
    pub exclude: Vec<String>,
    // hosted
    /// Accept a new upload over an existing artifact version with different bytes (else 409).
    #[serde(default)]
    pub allow_overwrite: bool,
    // virtual
    #[serde(default)]
    pub members: Vec<String>,
    pub deploy_to: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RemoteSpec {
    pub upstream: Url,
    pub username: Option<String>,
    pub password: Option<String>,
    pub metadata_ttl: Duration,
    pub negative_ttl: Duration,
    pub fetch_timeout: Duration,
    /// Bound on each metadata request (revalidation, manifests, lists); past it the cache is served.
    pub upstream_timeout: Duration,
    pub offline: bool,
    /// Package-path patterns never sent to the upstream (see [`RemoteSpec::excludes`]).
    pub exclude: Vec<String>,
}

impl RemoteSpec {
    /// Whether `package` matches one of the `exclude` patterns: the whole name or a leading run
    /// of its `/`-separated elements matches (`*` = any run of characters), so `corp.example.com`
    /// and `*.internal` cover everything below them, as in `GOPRIVATE`.
    pub fn excludes(&self, package: &str) -> bool {
        let prefixes = package.match_indices('/').map(|(at, _)| &package[..at]).chain([package]);
        let prefixes: Vec<&str> = prefixes.collect();
        self.exclude.iter().any(|pattern| prefixes.iter().any(|prefix| glob_match(pattern, prefix)))
    }
}

/// `*` matches any run of characters (including `/`); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[derive(Debug, Clone)]
pub enum KindSpec {
    Hosted,
    Remote(RemoteSpec),
    Virtual { members: Vec<RepoName>, deploy_to: Option<RepoName> },
}

/// A validated repository definition.
#[derive(Debug, Clone)]
pub struct RepoSpec {
    pub name: RepoName,
    pub format: FormatKind,
    pub kind: KindSpec,
    pub port: Option<u16>,
    pub hosts: Vec<String>,
    pub allow_overwrite: bool,
}

impl Config {
    /// Load a file (or the embedded default), apply `BINARYREPO_…` overrides from `env`.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?,
            None => EMBEDDED_DEFAULT.to_string(),
        };
        let mut value: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        for (key, raw) in env {
            apply_env_override(&mut value, &key, &raw)?;
        }
        let config: Config =
            toml::Value::Table(value).try_into().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Check what serde cannot and produce typed repository specs.
    pub fn validate(&self) -> Result<Vec<RepoSpec>, ConfigError> {
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(ConfigError::Invalid("server.tls_cert and server.tls_key must be set together".into()));
        }
        self.storage.blobs.validate().map_err(ConfigError::Invalid)?;
        let postgres = self.storage.database.url.as_deref().is_some_and(|u| u.starts_with("postgres"));
        if self.cluster.advertise_url.is_some() && !postgres {
            return Err(ConfigError::Invalid("cluster.advertise_url needs a postgres:// storage.database.url".into()));
        }
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        let mut hosts = HashSet::new();
        let mut specs = Vec::new();
        for repo in &self.repositories {
            let fail = |problem: &str| ConfigError::Repo { repo: repo.name.clone(), problem: problem.to_string() };
            let name: RepoName = repo.name.parse().map_err(|e: crate::model::NameError| fail(&e.to_string()))?;
            if !names.insert(name.clone()) {
                return Err(fail("the name is used twice"));
            }
            if let Some(port) = repo.port {
                if port == self.server.listen.port() || !ports.insert(port) {
                    return Err(fail(&format!("port {port} is already used")));
                }
            }
            for host in &repo.hosts {
                if !hosts.insert(host.to_ascii_lowercase()) {
                    return Err(fail(&format!("host {host:?} is mapped twice")));
                }
            }
            let kind = repo.kind_spec().map_err(|p| fail(&p))?;
            if repo.allow_overwrite && repo.format == FormatKind::Docker {
                return Err(fail("allow_overwrite applies to helm and go repositories (docker tags always move)"));
            }
            let (port, hosts, allow_overwrite) = (repo.port, repo.hosts.clone(), repo.allow_overwrite);
            specs.push(RepoSpec { name, format: repo.format, kind, port, hosts, allow_overwrite });
        }
        check_virtuals(&specs)?;
        Ok(specs)
    }
}

impl RepoConfig {
    fn kind_spec(&self) -> Result<KindSpec, String> {
        let remote_keys = self.upstream.is_some()
            || self.username.is_some()
            || self.password.is_some()
            || self.metadata_ttl.is_some()
            || self.negative_ttl.is_some()
            || self.fetch_timeout.is_some()
            || self.upstream_timeout.is_some()
            || self.offline
            || !self.exclude.is_empty();
        let virtual_keys = !self.members.is_empty() || self.deploy_to.is_some();
        match self.kind {
            KindName::Hosted if remote_keys || virtual_keys => {
                Err("a hosted repository takes no upstream, credentials, ttls, members or deploy_to".into())
            }
            KindName::Hosted => Ok(KindSpec::Hosted),
            _ if self.allow_overwrite => Err("allow_overwrite applies to hosted repositories only".into()),
            KindName::Remote if virtual_keys => Err("a remote repository takes no members or deploy_to".into()),
            KindName::Remote => {
                let upstream = self.upstream.clone().ok_or("a remote repository needs `upstream`")?;
                if !matches!(upstream.scheme(), "http" | "https") {
                    return Err("upstream must be an http or https URL".into());
                }
                Ok(KindSpec::Remote(RemoteSpec {
                    upstream,
                    username: self.username.clone(),
                    password: self.password.clone(),
                    metadata_ttl: self.metadata_ttl.unwrap_or(Duration::from_secs(300)),
                    negative_ttl: self.negative_ttl.unwrap_or(Duration::from_secs(30)),
                    fetch_timeout: self.fetch_timeout.unwrap_or(Duration::from_secs(3600)),
                    upstream_timeout: self.upstream_timeout.unwrap_or(Duration::from_secs(20)),
                    offline: self.offline,
                    exclude: self.exclude.clone(),
                }))
            }
            KindName::Virtual if remote_keys => {
                Err("a virtual repository takes no upstream, credentials or ttls".into())
            }
            KindName::Virtual => {
                let parse = |n: &String| n.parse::<RepoName>().map_err(|e| e.to_string());
                let members = self.members.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
                if members.is_empty() {
                    return Err("a virtual repository needs `members`".into());
                }
                let deploy_to = self.deploy_to.as_ref().map(parse).transpose()?;
                Ok(KindSpec::Virtual { members, deploy_to })
            }
        }
    }
}

fn check_virtuals(specs: &[RepoSpec]) -> Result<(), ConfigError> {
    let find = |name: &RepoName| specs.iter().find(|s| &s.name == name);
    for spec in specs {
        let KindSpec::Virtual { members, deploy_to } = &spec.kind else { continue };
        let fail = |problem: String| ConfigError::Repo { repo: spec.name.to_string(), problem };
        for member in members {
            let Some(target) = find(member) else {
                return Err(fail(format!("member {member} is not a configured repository")));
            };
            if target.format != spec.format {
                return Err(fail(format!("member {member} has another format")));
            }
            if matches!(target.kind, KindSpec::Virtual { .. }) {
                return Err(fail(format!("member {member} is virtual; nest members directly")));
            }
        }
        if let Some(deploy) = deploy_to {
            if !members.contains(deploy) {
                return Err(fail(format!("deploy_to {deploy} is not one of the members")));
            }
            if !matches!(find(deploy).map(|s| &s.kind), Some(KindSpec::Hosted)) {
                return Err(fail(format!("deploy_to {deploy} is not a hosted repository")));
            }
        }
    }
    Ok(())
}

/// `BINARYREPO_SERVER__LISTEN=…` sets `server.listen`; values are parsed as TOML when they can be.
fn apply_env_override(root: &mut toml::Table, key: &str, raw: &str) -> Result<(), ConfigError> {
    let Some(rest) = key.strip_prefix("BINARYREPO_") else { return Ok(()) };
    if rest == "CONFIG" || rest == "LOG" {
        return Ok(());
    }
    let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let value = parse_env_value(raw);
    let fail = |why: &str| ConfigError::Env(key.to_string(), why.to_string());
    match parts.as_slice() {
        // `SECTION__KEY` or deeper (`STORAGE__DATABASE__URL`, `STORAGE__BLOBS__BUCKET`).
        [tables @ .., field] if !tables.is_empty() && tables[0] != "repository" => {
            let mut table = root;
            for name in tables {
                let entry = table.entry(name.clone()).or_insert_with(|| toml::Value::Table(Default::default()));
                table = entry.as_table_mut().ok_or_else(|| fail("not a table"))?;
            }
            table.insert(field.clone(), value);
            Ok(())
        }
        [section, repo, field] if section == "repository" => {
            let repos = root
                .get_mut("repository")
                .and_then(|r| r.as_array_mut())
                .ok_or_else(|| fail("no repositories configured"))?;
            let target = repos
                .iter_mut()
                .filter_map(|r| r.as_table_mut())
                .find(|t| t.get("name").and_then(|n| n.as_str()).is_some_and(|n| n.replace('-', "_") == *repo))
                .ok_or_else(|| fail("no repository with that name"))?;
            target.insert(field.clone(), value);
            Ok(())
        }
        _ => Err(fail("use BINARYREPO_<SECTION>__<KEY> or BINARYREPO_REPOSITORY__<NAME>__<KEY>")),
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    let parsed: Result<toml::Table, _> = toml::from_str(&format!("v = {raw}"));
    match parsed.ok().and_then(|mut t| t.remove("v")) {
        Some(v) if !v.is_str() => v,
        _ => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn example_config_parses() {
        let config = load_str(EXAMPLE, &[]).unwrap();
        let specs = config.validate().unwrap();
        assert!(specs.iter().any(|s| matches!(s.kind, KindSpec::Virtual { .. })));
    }

    #[test]
    fn embedded_default_has_a_trio_per_format() {
        let config = Config::load(None, std::iter::empty()).unwrap();
        let names: Vec<_> = config.repositories.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker-local",
                "docker-remote",
                "docker",
                "go-local",
                "go-remote",
                "go",
                "helm-local",
                "helm-remote",
                "helm"
            ]
        );
        let env = [
            ("BINARYREPO_REPOSITORY__GO_REMOTE__UPSTREAM".to_string(), "http://127.0.0.1:3000".to_string()),
            ("BINARYREPO_REPOSITORY__GO_REMOTE__OFFLINE".to_string(), "false".to_string()),
        ];
        let specs = Config::load(None, env.into_iter()).unwrap().validate().unwrap();
        let go_remote = specs.iter().find(|s| s.name.as_str() == "go-remote").unwrap();
        let KindSpec::Remote(remote) = &go_remote.kind else { panic!("go-remote is not a remote") };
        assert_eq!((remote.upstream.as_str(), remote.offline), ("http://127.0.0.1:3000/", false));
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8081");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_str("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n", &[]).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        let err = load_str("[[repository]]\nname=\"a\"\nformat=\"docker\"\nkind=\"hosted\"\nupstreem=\"x\"\n", &[])
            .unwrap_err();
        assert!(err.to_string().contains("upstreem"), "{err}");
    }

    #[test]
    fn env_overrides() {
        let text = "[[repository]]\nname=\"docker-remote\"\nformat=\"docker\"\nkind=\"remote\"\nupstream=\"http://127.0.0.1:5000\"\n";
        let config = load_str(
            text,
            &[
                ("BINARYREPO_SERVER__LISTEN", "127.0.0.1:9999"),
                ("BINARYREPO_REPOSITORY__DOCKER_REMOTE__PASSWORD", "s3cret"),
                ("BINARYREPO_REPOSITORY__DOCKER_REMOTE__METADATA_TTL", "1m"),
                ("BINARYREPO_STORAGE__DATABASE__URL", "postgres://u@127.0.0.1/db"),
                ("BINARYREPO_STORAGE__BLOBS__BACKEND", "s3"),
                ("BINARYREPO_STORAGE__BLOBS__BUCKET", "b"),
                ("BINARYREPO_CLUSTER__ADVERTISE_URL", "http://127.0.0.1:8082"),
                ("BINARYREPO_CLUSTER__LEASE_TTL", "3s"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(config.storage.database.url.as_deref(), Some("postgres://u@127.0.0.1/db"));
        assert_eq!(
            (config.storage.blobs.backend, config.storage.blobs.bucket.as_deref()),
            (BlobBackend::S3, Some("b"))
        );
        assert_eq!(config.cluster.lease_ttl, Duration::from_secs(3));
        assert!(config.cluster.advertise_url.is_some());
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.repositories[0].password.as_deref(), Some("s3cret"));
        assert_eq!(config.repositories[0].metadata_ttl, Some(Duration::from_secs(60)));
        assert!(load_str(text, &[("BINARYREPO_NOPE", "1")]).is_err());
    }

    #[test]
    fn semantic_errors() {
        let hosted = "[[repository]]\nname=\"h\"\nformat=\"docker\"\nkind=\"hosted\"\n";
        let cases = [
            ("[[repository]]\nname=\"r\"\nformat=\"docker\"\nkind=\"remote\"\n", "needs `upstream`"),
            (&format!("{hosted}{hosted}"), "used twice"),
            (&format!("{hosted}[[repository]]\nname=\"v\"\nformat=\"docker\"\nkind=\"virtual\"\nmembers=[\"x\"]\n"), "not a configured"),
            (&format!("{hosted}[[repository]]\nname=\"v\"\nformat=\"docker\"\nkind=\"virtual\"\nmembers=[\"h\"]\ndeploy_to=\"z\"\n"), "not one of the members"),
            ("[[repository]]\nname=\"Bad\"\nformat=\"docker\"\nkind=\"hosted\"\n", "invalid repository name"),
            ("[[repository]]\nname=\"h\"\nformat=\"docker\"\nkind=\"hosted\"\nupstream=\"http://x\"\n", "takes no upstream"),
            ("[storage.blobs]\nbackend=\"s3\"\n", "bucket is required"),
            ("[storage.blobs]\nprefix=\"p\"\n", "must end with '/'"),
            ("[cluster]\nadvertise_url=\"http://127.0.0.1:1\"\n", "needs a postgres://"),
        ];
        for (text, want) in cases {
            let err = load_str(text, &[]).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn exclude_patterns_match_with_stars() {
        for (pattern, text, want) in [
            ("corp.example.com/*", "corp.example.com/lib", true),
            ("corp.example.com/*", "corp.example.com", false),
            ("corp.example.com/*", "corp.example.community/x", false),
            ("*.internal/*", "git.internal/a/b", true),
            ("exact/path", "exact/path", true),
            ("exact/path", "exact/path/v2", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
        ] {
            assert_eq!(glob_match(pattern, text), want, "{pattern} vs {text}");
        }
        let err = load_str("[[repository]]\nname=\"h\"\nformat=\"go\"\nkind=\"hosted\"\nexclude=[\"x/*\"]\n", &[]);
        assert!(err.unwrap_err().to_string().contains("takes no upstream"));
        let err = load_str("[[repository]]\nname=\"r\"\nformat=\"helm\"\nkind=\"remote\"\nupstream=\"http://x\"\nallow_overwrite=true\n", &[]);
        assert!(err.unwrap_err().to_string().contains("hosted repositories only"));
        let err =
            load_str("[[repository]]\nname=\"d\"\nformat=\"docker\"\nkind=\"hosted\"\nallow_overwrite=true\n", &[]);
        assert!(err.unwrap_err().to_string().contains("docker tags always move"));
    }

    #[test]
    fn exclude_patterns_cover_everything_below_them_like_goprivate() {
        let toml = "[[repository]]\nname=\"r\"\nformat=\"go\"\nkind=\"remote\"\nupstream=\"http://x\"\n\
                    exclude=[\"corp.example.com\", \"*.internal\", \"team/*\"]\n";
        let specs = load_str(toml, &[]).unwrap().validate().unwrap();
        let KindSpec::Remote(remote) = &specs[0].kind else { panic!("not a remote") };
        for (name, want) in [
            ("corp.example.com", true),
            ("corp.example.com/secret/v2", true),
            ("corp.example.community/x", false),
            ("git.internal/x", true),
            ("internal/x", false),
            ("team/app", true),
            ("team", false),
            ("public.example.org/corp.example.com", false),
        ] {
            assert_eq!(remote.excludes(name), want, "{name}");
        }
    }
}
