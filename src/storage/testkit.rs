//! Throwaway engines for tests: a PostgreSQL cluster (initdb + pg_ctl) and a single-node Garage,
//! each in a temporary directory on free loopback ports, stopped on drop. `start` returns None
//! (after printing a `SKIP` line) only when the engine's binaries are not installed.
//! Test support, not part of the server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn find_binary(name: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(extra_dirs.iter().cloned()).map(|d| d.join(name)).find(|p| p.is_file())
}

fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Run `program args` as the `postgres` user when we are root (initdb refuses root).
fn pg_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

pub struct Postgres {
    pub url: String,
    dir: tempfile::TempDir,
    pg_ctl: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    pub fn start() -> Option<Postgres> {
        let dirs = postgres_bin_dirs();
        let (Some(initdb), Some(pg_ctl)) = (find_binary("initdb", &dirs), find_binary("pg_ctl", &dirs)) else {
            println!("SKIP: PostgreSQL (initdb, pg_ctl) is not installed; run .ci/install-deps");
            return None;
        };
        let as_postgres = is_root();
        let dir = tempfile::tempdir().expect("temp dir");
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()), "chown");
        }
        let data = dir.path().join("data");
        let mut init = pg_command(&initdb, as_postgres);
        init.args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"]).arg(&data);
        run(&mut init, "initdb");
        let port = free_port();
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.path().display());
        let mut start = pg_command(&pg_ctl, as_postgres);
        start.args(["-w", "-s", "-D"]).arg(&data).arg("-o").arg(opts).arg("-l").arg(dir.path().join("log"));
        start.arg("start");
        run(&mut start, "pg_ctl start");
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        Some(Postgres { url, dir, pg_ctl, as_postgres })
    }

    /// A fresh database in this cluster (its URL), for tests that need isolation.
    pub fn database(&self, name: &str) -> String {
        let port = self.url.rsplit(':').next().and_then(|p| p.split('/').next()).unwrap_or("5432");
        let dirs = postgres_bin_dirs();
        let createdb = find_binary("createdb", &dirs).expect("createdb next to initdb");
        let mut cmd = pg_command(&createdb, self.as_postgres);
        cmd.args(["-h", "127.0.0.1", "-p", port, "-U", "postgres", name]);
        run(&mut cmd, "createdb");
        format!("postgres://postgres@127.0.0.1:{port}/{name}")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = pg_command(&self.pg_ctl, self.as_postgres);
        stop.args(["-s", "-m", "immediate", "-D"]).arg(self.dir.path().join("data")).arg("stop");
        let _ = stop.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

pub struct Garage {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    child: Child,
    _dir: tempfile::TempDir,
}

const GARAGE_KEY_ID: &str = "GK0123456789abcdef01234567";
const GARAGE_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

impl Garage {
    pub fn start() -> Option<Garage> {
        let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
        let Some(garage) = find_binary("garage", &cargo_bin.into_iter().collect::<Vec<_>>()) else {
            println!("SKIP: garage is not installed; run .ci/install-deps");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let (s3_port, rpc_port) = (free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let text = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_secret = \"{secret}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n",
            d = dir.path().display(),
            secret = &GARAGE_SECRET[..64],
        );
        std::fs::write(&config, text).expect("garage config");
        let log = std::fs::File::create(dir.path().join("log")).expect("garage log");
        let child = Command::new(&garage)
            .arg("-c")
            .arg(&config)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", GARAGE_KEY_ID)
            .env("GARAGE_DEFAULT_SECRET_KEY", GARAGE_SECRET)
            .env("GARAGE_DEFAULT_BUCKET", "binaryrepo")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("garage server");
        let g = Garage {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            region: "garage".into(),
            bucket: "binaryrepo".into(),
            access_key_id: GARAGE_KEY_ID.into(),
            secret_access_key: GARAGE_SECRET.into(),
            child,
            _dir: dir,
        };
        g.wait_ready(&garage, &config);
        Some(g)
    }

    /// Bounded poll until the default bucket exists (Garage creates it right after start).
    fn wait_ready(&self, garage: &Path, config: &Path) {
        for _ in 0..300 {
            let ok = Command::new(garage)
                .arg("-c")
                .arg(config)
                .args(["bucket", "info", &self.bucket])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("garage did not become ready; see {}", self._dir.path().join("log").display());
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's S3 server (a second S3 dialect, to catch Garage-only assumptions), with one bucket.
pub struct Moto {
    pub endpoint: String,
    pub bucket: String,
    child: Child,
}

impl Moto {
    pub fn start() -> Option<Moto> {
        let Some(moto) = find_binary("moto_server", &[]) else {
            println!("SKIP: moto_server is not installed (pip install 'moto[server]')");
            return None;
        };
        let port = free_port();
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server");
        let moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), bucket: "binaryrepo".into(), child };
        moto.create_bucket(port);
        Some(moto)
    }

    /// Bounded poll until the server answers, creating the bucket (moto takes any signature).
    fn create_bucket(&self, port: u16) {
        use std::io::{Read, Write};
        let request = format!(
            "PUT /{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.bucket
        );
        for _ in 0..300 {
            if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let mut answer = String::new();
                if conn.write_all(request.as_bytes()).is_ok() && conn.read_to_string(&mut answer).is_ok() {
                    assert!(answer.starts_with("HTTP/1.1 200"), "moto: {answer}");
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("moto_server did not start on port {port}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
