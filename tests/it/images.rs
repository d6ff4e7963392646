//! Test images made by `scripts/make-test-images.sh`.
//!
//! The script is deterministic, so its output is generated once and cached under
//! `CARGO_TARGET_TMPDIR/images/<key>`, where the key hashes the script, the
//! arguments and the busybox binary it packs. A run writes into a staging
//! directory and renames it into place, so concurrent test processes never see a
//! half-written set.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Size of the `big` image's random layer for ordinary tests.
pub const SMALL_BIG_MIB: u32 = 8;

/// One line of `digests.txt`: a tag in one of the layouts.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// A generated set of layouts (see the script's header for what each holds).
pub struct Images {
    dir: PathBuf,
    entries: Vec<Entry>,
}

/// All images, with an 8 MiB `big`.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| Images::generate(SMALL_BIG_MIB, &[]))
}

/// Only the `big` layout, at its full default size of 100 MiB.
pub fn big_100mib() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| Images::generate(100, &["big"]))
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Images {
    fn generate(big_mib: u32, names: &[&str]) -> Images {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-images.sh");
        let text = std::fs::read(&script).expect("read scripts/make-test-images.sh");
        let busybox = std::fs::metadata("/bin/busybox").expect("/bin/busybox (busybox-static) is needed");
        let mut key = Sha256::new();
        key.update(&text);
        key.update(format!("{big_mib}|{}|{}|{}", names.join(","), busybox.size(), busybox.mtime()));
        let key = hex::encode(&key.finalize()[..8]);

        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("images");
        let dir = root.join(key);
        if !dir.exists() {
            std::fs::create_dir_all(&root).expect("create image cache dir");
            let staging = tempfile::Builder::new().prefix(".staging-").tempdir_in(&root).expect("staging dir");
            let out = staging.path().join("out");
            let run = Command::new("bash")
                .arg(&script)
                .arg(&out)
                .args(names)
                .env("BIG_MIB", big_mib.to_string())
                .output()
                .expect("run make-test-images.sh");
            assert!(
                run.status.success(),
                "make-test-images.sh failed ({}):\n{}",
                run.status,
                String::from_utf8_lossy(&run.stderr)
            );
            // Another process may have won the race; its output is byte-identical.
            if let Err(e) = std::fs::rename(&out, &dir) {
                assert!(dir.exists(), "publish {}: {e}", dir.display());
            }
        }
        let list = std::fs::read_to_string(dir.join("digests.txt")).expect("digests.txt");
        let entries = list
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 5, "bad digests.txt line: {l}");
                Entry {
                    name: f[0].into(),
                    tag: f[1].into(),
                    digest: f[2].into(),
                    media_type: f[3].into(),
                    size: f[4].parse().expect("size"),
                }
            })
            .collect();
        Images { dir, entries }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `oci:DIR/NAME:TAG`, a skopeo/podman source reference.
    pub fn oci(&self, name: &str, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.join(name).display())
    }

    /// `dir:DIR/NAME` (containers/image directory transport; used for `dockerlist`).
    pub fn dir_ref(&self, name: &str) -> String {
        format!("dir:{}", self.dir.join(name).display())
    }

    pub fn entry(&self, name: &str, tag: &str) -> &Entry {
        self.entries
            .iter()
            .find(|e| e.name == name && e.tag == tag)
            .unwrap_or_else(|| panic!("no test image {name}:{tag}"))
    }

    pub fn digest(&self, name: &str, tag: &str) -> &str {
        &self.entry(name, tag).digest
    }

    /// Path of a blob (or manifest) in layout `name`, for OCI layouts and `dir:` ones.
    pub fn blob_path(&self, name: &str, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let base = self.dir.join(name);
        let candidates =
            [base.join("blobs/sha256").join(hex), base.join(hex), base.join(format!("{hex}.manifest.json"))];
        if let Some(p) = candidates.iter().find(|p| p.exists()) {
            return p.clone();
        }
        let top = base.join("manifest.json");
        if top.exists() && sha256_digest(&std::fs::read(&top).expect("read manifest.json")) == digest {
            return top;
        }
        panic!("blob {digest} not in layout {name}")
    }

    pub fn blob(&self, name: &str, digest: &str) -> Vec<u8> {
        std::fs::read(self.blob_path(name, digest)).expect("read blob")
    }

    pub fn manifest(&self, name: &str, tag: &str) -> Vec<u8> {
        self.blob(name, self.digest(name, tag))
    }

    /// Descriptors a manifest points at: config + layers, or an index's manifests.
    pub fn children(&self, name: &str, digest: &str) -> Vec<Descriptor> {
        descriptors(&self.blob(name, digest))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

fn descriptor(v: &Value) -> Descriptor {
    Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or_default().into(),
        digest: v["digest"].as_str().expect("descriptor digest").into(),
        size: v["size"].as_u64().expect("descriptor size"),
    }
}

/// Config + layers of an image manifest, or the `manifests` of an index / list.
pub fn descriptors(manifest: &[u8]) -> Vec<Descriptor> {
    let v: Value = serde_json::from_slice(manifest).expect("manifest JSON");
    if let Some(list) = v["manifests"].as_array() {
        return list.iter().map(descriptor).collect();
    }
    let mut out = vec![descriptor(&v["config"])];
    out.extend(v["layers"].as_array().into_iter().flatten().map(descriptor));
    out
}

/// Digest recorded under `tag` in an OCI layout written by a client (e.g. skopeo's
/// `oci:` destination).
pub fn layout_digest(layout: &Path, tag: &str) -> String {
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
        .expect("index.json is JSON");
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("tag {tag} not in {}", layout.display()))
        .to_string()
}

/// Checks every blob file of an OCI layout hashes to its name; returns how many.
pub fn verify_layout_blobs(layout: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).expect("blobs dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("blob name").to_string();
        let mut h = Sha256::new();
        let mut f = std::fs::File::open(&path).expect("open blob");
        std::io::copy(&mut f, &mut h).expect("hash blob");
        assert_eq!(hex::encode(h.finalize()), name, "corrupt blob {}", path.display());
        n += 1;
    }
    n
}
