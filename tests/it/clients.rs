//! Real container clients, isolated from the host's configuration: skopeo,
//! podman (rootful, vfs storage in a temp dir) and docker (only when `docker
//! info` works; it shares the host daemon, so callers use unique tags and clean up).
//!
//! Every call is bounded by a timeout and returns `Err` with the command line and
//! its stderr on failure. Registries are reached over plain HTTP without
//! credentials.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::Command;

const CMD_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `cmd`, returning stdout on success and an error with stderr otherwise.
pub async fn run(mut cmd: Command) -> Result<Vec<u8>> {
    let line = format!("{:?}", cmd.as_std());
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(CMD_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("{line}: timed out after {CMD_TIMEOUT:?}"))?
        .with_context(|| format!("spawn {line}"))?;
    if !out.status.success() {
        bail!(
            "{line} failed ({}):\nstderr: {}\nstdout: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(out.stdout)
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// A registries.conf that neither searches nor mirrors anything, and an empty
/// auth file (so no host credentials are ever sent).
fn write_registries_conf(dir: &Path) -> PathBuf {
    let path = dir.join("registries.conf");
    std::fs::write(&path, "unqualified-search-registries = []\n").expect("write registries.conf");
    std::fs::write(dir.join("auth.json"), r#"{"auths":{}}"#).expect("write auth.json");
    path
}

// ------------------------------------------------------------------ skopeo

pub struct Skopeo {
    dir: TempDir,
}

impl Skopeo {
    pub fn new() -> Skopeo {
        let dir = tempfile::Builder::new().prefix("skopeo-it-").tempdir().expect("tempdir");
        write_registries_conf(dir.path());
        Skopeo { dir }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("skopeo");
        cmd.env("CONTAINERS_REGISTRIES_CONF", self.dir.path().join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", self.dir.path().join("auth.json"))
            .env("TMPDIR", self.dir.path())
            .arg("--insecure-policy");
        cmd
    }

    fn copy_cmd(&self, all: bool, src: &str, dst: &str) -> Command {
        let mut cmd = self.cmd();
        cmd.arg("copy");
        if all {
            cmd.arg("--all");
        }
        // --preserve-digests: fail rather than silently convert, so digests compare.
        cmd.args([
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-no-creds",
            "--dest-no-creds",
        ])
        .arg(src)
        .arg(dst);
        cmd
    }

    /// `skopeo copy SRC DST` (one image; for an index, the host platform's).
    pub async fn copy(&self, src: &str, dst: &str) -> Result<()> {
        run(self.copy_cmd(false, src, dst)).await.map(drop)
    }

    /// `skopeo copy --all SRC DST` (an index / manifest list with every instance).
    pub async fn copy_all(&self, src: &str, dst: &str) -> Result<()> {
        run(self.copy_cmd(true, src, dst)).await.map(drop)
    }

    /// The manifest bytes exactly as served (`inspect --raw`).
    pub async fn inspect_raw(&self, image: &str) -> Result<Vec<u8>> {
        let mut cmd = self.cmd();
        cmd.args(["inspect", "--raw", "--tls-verify=false", "--no-creds", image]);
        run(cmd).await
    }

    /// `skopeo inspect` JSON (Digest, Layers, Architecture, …).
    pub async fn inspect(&self, image: &str) -> Result<Value> {
        let mut cmd = self.cmd();
        cmd.args(["inspect", "--tls-verify=false", "--no-creds", image]);
        Ok(serde_json::from_slice(&run(cmd).await?)?)
    }

    pub async fn inspect_digest(&self, image: &str) -> Result<String> {
        let v = self.inspect(image).await?;
        v["Digest"].as_str().map(str::to_string).ok_or_else(|| anyhow!("no Digest in {v}"))
    }

    /// `skopeo delete` (resolves a tag to its digest and deletes the manifest).
    pub async fn delete(&self, image: &str) -> Result<()> {
        let mut cmd = self.cmd();
        cmd.args(["delete", "--tls-verify=false", "--no-creds", image]);
        run(cmd).await.map(drop)
    }

    /// `skopeo list-tags`.
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let mut cmd = self.cmd();
        cmd.args(["list-tags", "--tls-verify=false", "--no-creds", repo]);
        let v: Value = serde_json::from_slice(&run(cmd).await?)?;
        Ok(v["Tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)).collect())
    }
}

// ------------------------------------------------------------------ podman

/// Rootful podman with private vfs storage, runroot, tmpdir and registries.conf,
/// so it needs no host configuration and leaves nothing behind.
pub struct Podman {
    dir: TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        let dir = tempfile::Builder::new().prefix("podman-it-").tempdir().expect("tempdir");
        write_registries_conf(dir.path());
        std::fs::write(dir.path().join("policy.json"), r#"{"default":[{"type":"insecureAcceptAnything"}]}"#)
            .expect("write policy.json");
        std::fs::write(dir.path().join("containers.conf"), "").expect("write containers.conf");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("podman tmpdir");
        Podman { dir }
    }

    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("REGISTRY_AUTH_FILE", d.join("auth.json"))
            .env("TMPDIR", d.join("tmp"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        cmd
    }

    fn policy(&self) -> PathBuf {
        self.dir.path().join("policy.json")
    }

    /// `podman pull` of any transport (`oci:DIR:TAG`, `HOST/NAME:TAG`); returns the image ID.
    pub async fn pull(&self, image: &str) -> Result<String> {
        let mut cmd = self.cmd();
        cmd.args(["pull", "--quiet", "--tls-verify=false"]).arg("--signature-policy").arg(self.policy()).arg(image);
        // --quiet prints the image ID (the last line).
        let out = text(run(cmd).await?);
        out.lines().last().map(str::to_string).ok_or_else(|| anyhow!("podman pull printed nothing"))
    }

    pub async fn tag(&self, image: &str, new_name: &str) -> Result<()> {
        let mut cmd = self.cmd();
        cmd.args(["tag", image, new_name]);
        run(cmd).await.map(drop)
    }

    /// `podman push --tls-verify=false IMAGE [DEST]`; returns the pushed manifest digest.
    pub async fn push(&self, image: &str, dest: Option<&str>) -> Result<String> {
        let digestfile = self.dir.path().join("tmp/pushed-digest");
        let mut cmd = self.cmd();
        cmd.args(["push", "--quiet", "--tls-verify=false"])
            .arg("--signature-policy")
            .arg(self.policy())
            .arg("--digestfile")
            .arg(&digestfile)
            .arg(image);
        if let Some(dest) = dest {
            cmd.arg(dest);
        }
        run(cmd).await?;
        Ok(std::fs::read_to_string(&digestfile)?.trim().to_string())
    }

    /// `podman image inspect --format {{.Id}}` (the config digest, without `sha256:`).
    pub async fn image_id(&self, image: &str) -> Result<String> {
        let mut cmd = self.cmd();
        cmd.args(["image", "inspect", "--format", "{{.Id}}", image]);
        Ok(text(run(cmd).await?))
    }

    pub async fn rmi_all(&self) -> Result<()> {
        let mut cmd = self.cmd();
        cmd.args(["rmi", "--all", "--force"]);
        run(cmd).await.map(drop)
    }

    /// Image references currently in this podman's storage.
    pub async fn images(&self) -> Result<Vec<String>> {
        let mut cmd = self.cmd();
        cmd.args(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        Ok(text(run(cmd).await?).lines().map(str::to_string).collect())
    }
}

// ------------------------------------------------------------------ docker

/// The host docker engine. Every image tagged through this wrapper is removed
/// again on drop.
pub struct Docker {
    created: std::sync::Mutex<Vec<String>>,
}

impl Docker {
    /// `Some` when `docker info` succeeds; otherwise prints why the caller skips.
    pub async fn available(test: &str) -> Option<Docker> {
        let mut cmd = Command::new("docker");
        cmd.args(["info", "--format", "{{.ServerVersion}}"]);
        match tokio::time::timeout(Duration::from_secs(30), run(cmd)).await {
            Ok(Ok(_)) => Some(Docker { created: Default::default() }),
            Ok(Err(e)) => {
                eprintln!("SKIP {test}: docker engine not usable: {e}");
                None
            }
            Err(_) => {
                eprintln!("SKIP {test}: `docker info` timed out");
                None
            }
        }
    }

    fn remember(&self, image: &str) {
        self.created.lock().unwrap().push(image.to_string());
    }

    /// Builds the `FROM scratch` busybox image (scripts/docker-build-scratch.sh);
    /// `marker` ends up in /etc/marker, making the image unique.
    pub async fn build_scratch(&self, tag: &str, marker: &str) -> Result<()> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker-build-scratch.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script).arg(tag).arg(marker);
        self.remember(tag);
        run(cmd).await.map(drop)
    }

    pub async fn tag(&self, image: &str, new_name: &str) -> Result<()> {
        let mut cmd = Command::new("docker");
        cmd.args(["tag", image, new_name]);
        self.remember(new_name);
        run(cmd).await.map(drop)
    }

    /// `docker push` (127.0.0.0/8 registries are plain HTTP for the engine).
    pub async fn push(&self, image: &str) -> Result<()> {
        let mut cmd = Command::new("docker");
        cmd.args(["push", "--quiet", image]);
        run(cmd).await.map(drop)
    }

    pub async fn pull(&self, image: &str) -> Result<()> {
        let mut cmd = Command::new("docker");
        cmd.args(["pull", "--quiet", image]);
        self.remember(image);
        run(cmd).await.map(drop)
    }

    pub async fn rmi(&self, image: &str) -> Result<()> {
        let mut cmd = Command::new("docker");
        cmd.args(["rmi", "--force", image]);
        run(cmd).await.map(drop)
    }

    /// `docker run --rm IMAGE ARGS…` (network off); returns stdout.
    pub async fn run(&self, image: &str, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("docker");
        cmd.args(["run", "--rm", "--network", "none", image]).args(args);
        Ok(text(run(cmd).await?))
    }

    /// `RepoDigests` of a local image, e.g. `127.0.0.1:1234/docker/x@sha256:…`.
    pub async fn repo_digests(&self, image: &str) -> Result<Vec<String>> {
        let mut cmd = Command::new("docker");
        cmd.args(["image", "inspect", "--format", "{{json .RepoDigests}}", image]);
        Ok(serde_json::from_slice(&run(cmd).await?)?)
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap());
        if created.is_empty() {
            return;
        }
        let _ = std::process::Command::new("docker")
            .args(["rmi", "--force"])
            .args(&created)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
