//! `TestServer`: the real `binaryrepo` binary on a free 127.0.0.1 port with its
//! config, data and log in a temporary directory. Killed on drop; its log is
//! printed when the owning test panics.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// An upstream URL nobody listens on (TCP discard port, connection refused), for
/// tests that need a `remote` repository but never reach it.
pub const NO_UPSTREAM: &str = "http://127.0.0.1:9";

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The usual trio: `docker-local` (hosted), `docker-remote` (remote over
/// `upstream`, tags always revalidated) and `docker` (virtual over both, deploying
/// to `docker-local`).
pub fn docker_repos(upstream: &str) -> String {
    format!(
        r#"
[[repository]]
name = "docker-local"
format = "docker"
kind = "hosted"

[[repository]]
name = "docker-remote"
format = "docker"
kind = "remote"
upstream = "{upstream}"
metadata_ttl = "0s"

[[repository]]
name = "docker"
format = "docker"
kind = "virtual"
members = ["docker-local", "docker-remote"]
deploy_to = "docker-local"
"#
    )
}

/// Picks a free loopback port: bind :0, read the port, drop the listener.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

pub struct TestServer {
    dir: TempDir,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl TestServer {
    /// Writes `[server]` + `[storage]` + `repos` (TOML `[[repository]]` tables) and
    /// starts the server; returns once `GET /v2/` answers 200.
    pub async fn start(repos: &str) -> TestServer {
        let dir = tempfile::Builder::new().prefix("binaryrepo-it-").tempdir().expect("tempdir");
        let port = free_port();
        let data = dir.path().join("data");
        let config = dir.path().join("config.toml");
        let text =
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n\n[storage]\npath = \"{}\"\n{repos}", data.display());
        std::fs::write(&config, text).expect("write config");
        let log = dir.path().join("server.log");
        let mut server = TestServer { dir, port, config, log, child: None };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_binaryrepo"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // The config under test is the file, not whatever the developer exported.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BINARYREPO_") {
                cmd.env_remove(k);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info,binaryrepo=debug");
        }
        let child = cmd.spawn().expect("spawn binaryrepo");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("client");
        let url = format!("{}/v2/", self.base_url());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("binaryrepo exited during startup ({status}); log:\n{}", self.log());
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status() == reqwest::StatusCode::OK {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("binaryrepo not ready on {url} after {READY_TIMEOUT:?}; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts again on the same port, config and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `127.0.0.1:PORT`, the registry host for image references.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Everything the server wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!("---- binaryrepo log (last {} lines) ----", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("---- end of binaryrepo log ----");
        }
    }
}

/// Creates (truncating) a file for a child process's output.
pub fn log_file(path: &Path) -> File {
    File::create(path).expect("create log file")
}
