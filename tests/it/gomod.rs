//! Go test support: module zips built by the module-zip rules (every file under
//! `<module>@<version>/`), a `go` command in a throwaway GOPATH/GOMODCACHE/GOCACHE/HOME that
//! can only reach binaryrepo (`GOPROXY=<repo url>`, no `direct`, `GOSUMDB=off`), and the go
//! repository trio for `TestServer`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{bail, Result};

use crate::server::TestServer;
use tempfile::TempDir;

/// `go-local` (hosted), `go-remote` (remote over `upstream`, lists always revalidated,
/// `extra` TOML lines added) and `go` (virtual over both, deploying to `go-local`).
pub fn go_repos(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[[repository]]
name = "go-local"
format = "go"
kind = "hosted"

[[repository]]
name = "go-remote"
format = "go"
kind = "remote"
upstream = "{upstream}"
metadata_ttl = "0s"
{extra}

[[repository]]
name = "go"
format = "go"
kind = "virtual"
members = ["go-local", "go-remote"]
deploy_to = "go-local"
"#
    )
}

/// A module zip for `module@version` with `files` (relative paths) under its prefix.
pub fn module_zip(module: &str, version: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, body) in files {
        writer.start_file(format!("{module}@{version}/{name}"), options).expect("zip entry");
        writer.write_all(body.as_bytes()).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

/// A small library module: go.mod plus a package whose `Hello` returns `greeting`.
pub fn library(module: &str, version: &str, greeting: &str) -> Vec<u8> {
    let package = module.rsplit('/').next().unwrap_or("lib").to_lowercase().replace(['.', '-'], "");
    let go_mod = format!("module {module}\n\ngo 1.19\n");
    let source = format!(
        "// Package {package} says hello.\npackage {package}\n\n// Hello returns the greeting of {version}.\nfunc Hello() string {{\n\treturn \"{greeting}\"\n}}\n"
    );
    module_zip(module, version, &[("go.mod", &go_mod), ("LICENSE", "MIT\n"), (&format!("{package}.go"), &source)])
}

/// A `go` command that can only reach binaryrepo, in temporary directories.
pub struct GoEnv {
    dir: TempDir,
    proxy: String,
    /// Set after the defaults (e.g. a real `GOSUMDB`).
    extra: Vec<(String, String)>,
}

impl GoEnv {
    pub fn new(proxy: &str) -> GoEnv {
        let dir = tempfile::Builder::new().prefix("binaryrepo-go-").tempdir().expect("tempdir");
        for sub in ["gopath", "modcache", "cache", "home", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        GoEnv { dir, proxy: proxy.to_string(), extra: Vec::new() }
    }

    /// Override an environment variable for every later command.
    pub fn set(&mut self, key: &str, value: &str) {
        self.extra.push((key.to_string(), value.to_string()));
    }

    /// The module directory the commands run in.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Forget every downloaded module (a fresh client).
    pub fn clear_modcache(&self) {
        let cache = self.dir.path().join("modcache");
        std::fs::remove_dir_all(&cache).expect("rm modcache");
        std::fs::create_dir_all(&cache).expect("mkdir modcache");
    }

    /// Write `go.mod` (module `example.com/app`) and `main.go` into the work directory.
    pub fn app(&self, main_go: &str) {
        std::fs::write(self.work().join("go.mod"), "module example.com/app\n\ngo 1.19\n").expect("go.mod");
        std::fs::write(self.work().join("main.go"), main_go).expect("main.go");
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        let root = self.dir.path();
        let mut cmd = tokio::process::Command::new("go");
        cmd.args(args).current_dir(self.work()).env_clear();
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root.join("home"))
            .env("GOPATH", root.join("gopath"))
            .env("GOMODCACHE", root.join("modcache"))
            .env("GOCACHE", root.join("cache"))
            .env("GOENV", "off")
            .env("GOPROXY", &self.proxy)
            .env("GOSUMDB", "off")
            .env("GONOSUMDB", "*")
            .env("GOFLAGS", "-mod=mod -modcacherw")
            .env("GOTOOLCHAIN", "local")
            .env("GO111MODULE", "on");
        cmd.envs(self.extra.iter().map(|(k, v)| (k, v)));
        cmd.output().await.expect("run go")
    }

    /// Run and require success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args).await;
        if !out.status.success() {
            bail!(
                "go {} failed ({}):\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn modcache(&self) -> PathBuf {
        self.dir.path().join("modcache")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// PUT bytes to `url`; (status, body text).
pub async fn put(url: &str, body: Vec<u8>) -> (u16, String) {
    let response = http().put(url).body(body).send().await.expect("PUT");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

/// GET `url`; (status, Cache-Status header, body).
pub async fn get(url: &str) -> (u16, Option<String>, bytes::Bytes) {
    let response = http().get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    let cache = response.headers().get("cache-status").and_then(|v| v.to_str().ok()).map(str::to_string);
    (status, cache, response.bytes().await.unwrap_or_default())
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

/// Debian's copy of github.com/pkg/errors v0.9.1 (golang-github-pkg-errors-dev): a real
/// module without go.mod.
pub const PKG_ERRORS_SRC: &str = "/usr/share/gocode/src/github.com/pkg/errors";

/// A module zip of every regular file under `dir` (recursively), by the module-zip rules.
pub fn zip_dir(module: &str, version: &str, dir: &Path) -> Vec<u8> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files);
    files.sort();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, b)| (n.as_str(), b.as_str())).collect();
    module_zip(module, version, &files)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read module source").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            let name = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            out.push((name, text));
        }
    }
}

/// A test checksum database (tests/fixtures/go/sumdb, built against Debian's
/// golang-golang-x-mod-dev in GOPATH mode) in front of the GOPROXY `proxy`.
pub struct SumDb {
    child: tokio::process::Child,
    pub url: String,
    /// `<name>+<hash>+<key>`, the value for `GOSUMDB`.
    pub key: String,
    _dir: TempDir,
}

impl SumDb {
    pub async fn start(proxy: &str) -> Result<SumDb> {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::Builder::new().prefix("binaryrepo-sumdb-").tempdir()?;
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/go/sumdb/main.go");
        let bin = dir.path().join("sumdb");
        let out = tokio::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(source)
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOCACHE", dir.path().join("cache"))
            .env("GOFLAGS", "")
            .env("HOME", dir.path())
            .output()
            .await?;
        if !out.status.success() {
            bail!("building the test checksum database failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut child = tokio::process::Command::new(&bin)
            .args(["-proxy", proxy, "-name", "sum.example.com"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let key = lines.next_line().await?.unwrap_or_default();
        let listening = lines.next_line().await?.unwrap_or_default();
        let Some(url) = listening.strip_prefix("listening ") else { bail!("sumdb said {listening:?}") };
        Ok(SumDb { child, url: url.to_string(), key, _dir: dir })
    }
}

impl Drop for SumDb {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub const GREET: &str = "example.com/greet";

/// A program that prints `greet.Hello()`.
pub const MAIN_GO: &str =
    "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello()) }\n";

/// PUT a module zip to `repo`; it must be created (201).
pub async fn publish(srv: &TestServer, repo: &str, module_escaped: &str, version: &str, zip: Vec<u8>) {
    let url = format!("{}/{repo}/{module_escaped}/@v/{version}.zip", srv.base_url());
    let (status, text) = put(&url, zip).await;
    assert_eq!(status, 201, "PUT {url}: {text}");
}

/// `len` pseudo-random letters and digits (xorshift; deterministic).
pub fn noise(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}
