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

/// Extra settings for [`TestServer::start_with`] and friends.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// TOML lines added to the `[server]` table (`public_url = "…"`, `tls_cert = "…"`).
    pub server_toml: String,
    /// Environment for the server process, set after the test's own `BINARYREPO_*`
    /// variables are removed (`BINARYREPO_REPOSITORY__DOCKER_REMOTE__PASSWORD`, …).
    pub env: Vec<(String, String)>,
    /// The server speaks TLS with a certificate signed by (or equal to) this PEM CA:
    /// readiness checks and `base_url` use `https://`.
    pub tls_ca: Option<PathBuf>,
}

pub struct TestServer {
    dir: TempDir,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// `false`: `serve` without `--config` (the embedded default).
    use_config: bool,
    options: ServerOptions,
    /// PostgreSQL + Garage under this server (`BINARYREPO_IT_ENGINES=scale`), stopped after it.
    engines: Option<Box<dyn std::any::Any + Send>>,
}

type Engines = (binaryrepo::storage::testkit::Postgres, binaryrepo::storage::testkit::Garage);

fn scale_engines() -> Option<Engines> {
    if std::env::var("BINARYREPO_IT_ENGINES").ok()? != "scale" {
        return None;
    }
    let pg = binaryrepo::storage::testkit::Postgres::start().expect("BINARYREPO_IT_ENGINES=scale needs PostgreSQL");
    let garage = binaryrepo::storage::testkit::Garage::start().expect("BINARYREPO_IT_ENGINES=scale needs Garage");
    Some((pg, garage))
}

impl TestServer {
    /// Writes `[server]` + `[storage]` + `repos` (TOML `[[repository]]` tables) and
    /// starts the server; returns once `GET /v2/` answers 200.
    pub async fn start(repos: &str) -> TestServer {
        TestServer::start_with(repos, ServerOptions::default()).await
    }

    /// Like [`TestServer::start`], with extra `[server]` keys, environment or TLS.
    ///
    /// With `BINARYREPO_IT_ENGINES=scale` in the environment, the server runs on its own throwaway
    /// PostgreSQL + Garage instead of SQLite + fs (the whole suite against the scale-out engines).
    pub async fn start_with(repos: &str, options: ServerOptions) -> TestServer {
        let port = free_port();
        let extra = &options.server_toml;
        let engines = scale_engines();
        let storage = engines.as_ref().map_or(String::new(), |(pg, g)| crate::cluster::storage_toml(pg, g));
        let text = move |dir: &Path| {
            let data = dir.join("data");
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n\n[storage]\npath = \"{}\"\n{storage}\n{repos}",
                data.display()
            )
        };
        let mut server = TestServer::launch(port, Some(&text as &dyn Fn(&Path) -> String), options.clone()).await;
        server.engines = engines.map(|e| Box::new(e) as Box<dyn std::any::Any + Send>);
        server
    }

    /// Writes `text` verbatim as the config file. The server must end up listening
    /// on `127.0.0.1:port` (from `text` or a `BINARYREPO_SERVER__LISTEN` in `options.env`).
    pub async fn start_with_file(port: u16, text: &str, options: ServerOptions) -> TestServer {
        let text = |_: &Path| text.to_string();
        TestServer::launch(port, Some(&text as &dyn Fn(&Path) -> String), options).await
    }

    /// `binaryrepo serve` without `--config`, in a fresh temporary working directory;
    /// `options.env` must make it listen on `127.0.0.1:port`.
    pub async fn start_without_config(port: u16, options: ServerOptions) -> TestServer {
        TestServer::launch(port, None, options).await
    }

    async fn launch(port: u16, text: Option<&dyn Fn(&Path) -> String>, options: ServerOptions) -> TestServer {
        let dir = tempfile::Builder::new().prefix("binaryrepo-it-").tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        if let Some(text) = text {
            std::fs::write(&config, text(dir.path())).expect("write config");
        }
        let log = dir.path().join("server.log");
        let use_config = text.is_some();
        let mut server = TestServer { dir, port, config, log, child: None, use_config, options, engines: None };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_binaryrepo"));
        cmd.arg("serve");
        if self.use_config {
            cmd.arg("--config").arg(&self.config);
        }
        cmd.current_dir(self.dir.path()).stdin(Stdio::null()).stdout(log.try_clone().expect("dup log")).stderr(log);
        // The config under test is the file, not whatever the developer exported.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BINARYREPO_") {
                cmd.env_remove(k);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info,binaryrepo=debug");
        }
        cmd.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn().expect("spawn binaryrepo");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let mut http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2));
        if let Some(ca) = &self.options.tls_ca {
            let pem = std::fs::read(ca).expect("read TLS CA");
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM CA"));
        }
        let http = http.build().expect("client");
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

    /// Sends `signal` (`-STOP`, `-CONT`, …) to the server process with `kill`.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").arg(signal).arg(child.id().to_string()).status();
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

    /// `http://127.0.0.1:PORT` (`https://` with `ServerOptions::tls_ca`)
    pub fn base_url(&self) -> String {
        let scheme = if self.options.tls_ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
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

    /// The temporary directory: the server's working directory, holding its config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process has exited (it is reaped if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait"))
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
