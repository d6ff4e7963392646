//! Reading what a chart upload claims to be: `Chart.yaml` out of a stored `.tgz` (streamed
//! from the blob store through gzip and tar on a blocking thread, so archives are never held
//! in memory; the whole archive is checked), and the chart a provenance file signs
//! (<https://helm.sh/docs/topics/provenance/>).

use super::chart::{ChartError, ChartName, Metadata};
use crate::storage::ByteStream;
use bytes::{Buf, Bytes};
use futures::StreamExt;
use std::io::Read;

/// Chart.yaml files are a few KiB; anything larger is not one.
const MAX_CHART_YAML: u64 = 1024 * 1024;
/// Helm refuses charts that unpack to more than 100 MiB; so do we (and no gzip bomb runs long).
const MAX_UNPACKED: u64 = 100 * 1024 * 1024;

/// Find `<name>/Chart.yaml` in a gzip tar stream, parse and validate it, and check that the
/// directory it sits in is the chart's name; the whole archive must be a valid gzip tar.
pub async fn read_metadata(mut stream: ByteStream) -> Result<Metadata, ChartError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let parse = tokio::task::spawn_blocking(move || metadata_from(ChannelReader { rx, current: Bytes::new() }));
    while let Some(chunk) = stream.next().await {
        // The reader hangs up once it found Chart.yaml or failed: stop feeding it.
        if tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(tx);
    parse.await.map_err(|e| ChartError::Storage(format!("archive reader failed: {e}")))?
}

/// A blocking `Read` over chunks sent from the async side.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Counts what the gzip layer hands out and fails past [`MAX_UNPACKED`], remembering that it
/// did: tar turns a short read into "unexpected EOF", which must not hide the real reason.
struct Bounded<R> {
    inner: R,
    read: u64,
    exceeded: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > MAX_UNPACKED {
            self.exceeded.set(true);
            return Err(std::io::Error::other(too_big()));
        }
        Ok(n)
    }
}

fn too_big() -> String {
    format!("the archive unpacks to more than 100 MiB ({MAX_UNPACKED} bytes)")
}

/// Read a whole chart archive (every gzip member, as Go's gzip reader and so Helm do) and
/// check its layout the way Helm's loader does: every entry under the one top-level
/// directory `<name>/`, no absolute paths, no `..`, exactly one regular `<name>/Chart.yaml`.
pub fn metadata_from(reader: impl Read) -> Result<Metadata, ChartError> {
    let exceeded = std::rc::Rc::new(std::cell::Cell::new(false));
    let unpacked = Bounded { inner: flate2::read::MultiGzDecoder::new(reader), read: 0, exceeded: exceeded.clone() };
    let flag = exceeded.clone();
    let bad = move |e: std::io::Error| match flag.get() {
        true => ChartError::NotGzipTar(too_big()),
        false => ChartError::NotGzipTar(e.to_string()),
    };
    let mut archive = tar::Archive::new(unpacked);
    let mut top: Option<String> = None;
    let mut found = None;
    // Every entry is read, so a truncated or corrupt archive is refused even when its
    // Chart.yaml comes first.
    for entry in archive.entries().map_err(&bad)? {
        let entry = entry.map_err(&bad)?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            continue;
        }
        let raw = entry.path_bytes();
        let path = String::from_utf8_lossy(&raw).into_owned();
        let parts = entry_parts(&path)?;
        let path = parts.join("/");
        let dir = parts[0];
        match &top {
            None => top = Some(dir.to_string()),
            Some(top) if top != dir => {
                return Err(ChartError::InvalidArchive(format!(
                "entry {path:?} is outside the chart's top-level directory {top:?} (a chart archive has exactly one)"
            )))
            }
            Some(_) => {}
        }
        if parts == ["Chart.yaml"] {
            let why = "no Chart.yaml at <name>/Chart.yaml: Chart.yaml sits at the top level, outside a chart directory";
            return Err(ChartError::InvalidArchive(why.into()));
        }
        if parts.len() == 1 && !kind.is_dir() {
            return Err(ChartError::InvalidArchive(format!(
                "entry {path:?} is outside the chart's top-level directory"
            )));
        }
        if parts.len() == 2 && parts[1] == "Chart.yaml" {
            if found.is_some() {
                return Err(ChartError::InvalidArchive(format!("the archive has more than one {path:?} entry")));
            }
            if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
                let what = match kind {
                    tar::EntryType::Symlink => "a symbolic link",
                    tar::EntryType::Link => "a hard link",
                    tar::EntryType::Directory => "a directory",
                    _ => "not a regular file",
                };
                return Err(ChartError::InvalidChartYaml(format!("{path} is {what}, not a regular file")));
            }
            found = Some(chart_yaml(dir, entry).map_err(|e| match exceeded.get() {
                true => ChartError::NotGzipTar(too_big()),
                false => e,
            })?);
        }
    }
    // Read to the end of the gzip stream, which checks its CRC and length.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(&bad)?;
    let meta = found.ok_or(ChartError::MissingChartYaml)?;
    match top {
        Some(top) if top == meta.name => Ok(meta),
        _ => Err(ChartError::MissingChartYaml),
    }
}

/// The components of a tar entry path, refusing what Helm's loader refuses (absolute paths,
/// parent references) and what could escape or confuse the chart directory (`./`, empty).
fn entry_parts(path: &str) -> Result<Vec<&str>, ChartError> {
    let invalid = |why: &str| Err(ChartError::InvalidArchive(format!("entry {path:?} {why}")));
    if path.starts_with('/') || path.starts_with('\\') || path.as_bytes().get(1) == Some(&b':') {
        return invalid("has an absolute path");
    }
    // Archives made on Windows may separate with `\`; Helm's loader then splits on that.
    let separator = if path.contains('\\') { '\\' } else { '/' };
    let parts: Vec<&str> = path.trim_end_matches(separator).split(separator).collect();
    if parts.contains(&"..") {
        return invalid("refers to a parent directory (..)");
    }
    if parts.first() == Some(&".") {
        return invalid("starts with ./ (entries must start with the chart's directory name)");
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return invalid("has an empty or . path component");
    }
    Ok(parts)
}

fn chart_yaml(dir: &str, entry: impl Read) -> Result<Metadata, ChartError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_CHART_YAML + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ChartError::InvalidChartYaml(format!("cannot read {dir}/Chart.yaml: {e}")))?;
    if bytes.len() as u64 > MAX_CHART_YAML {
        return Err(ChartError::InvalidChartYaml(format!(
            "{dir}/Chart.yaml is too large (more than {MAX_CHART_YAML} bytes)"
        )));
    }
    // Helm's loader drops a UTF-8 byte order mark at the start of a file; so do we.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ChartError::InvalidChartYaml(format!("{dir}/Chart.yaml is not UTF-8: {e}")))?;
    let meta = Metadata::from_chart_yaml(text)?;
    if meta.name != dir {
        let why = format!("Chart.yaml names the chart {:?} but sits in directory {dir:?}", meta.name);
        return Err(ChartError::InvalidChartYaml(why));
    }
    Ok(meta)
}

/// The chart a provenance file signs: the clear-signed message starts with the chart's
/// Chart.yaml, then `...` and the `files:` map of archive digests.
pub fn prov_chart(text: &str) -> Result<(ChartName, String), ChartError> {
    let invalid = |why: &str| ChartError::InvalidProv(why.to_string());
    let signed = text
        .split_once("-----BEGIN PGP SIGNED MESSAGE-----")
        .map(|(_, rest)| rest)
        .ok_or_else(|| invalid("no PGP signed message"))?;
    let body = signed.split_once("\n\n").map(|(_, b)| b).ok_or_else(|| invalid("no message body"))?;
    let body =
        body.split_once("-----BEGIN PGP SIGNATURE-----").map(|(b, _)| b).ok_or_else(|| invalid("no signature"))?;
    let chart_yaml = body.split("\n...\n").next().unwrap_or(body);
    // RFC 4880 §7.1: lines starting with '-' are escaped as "- -".
    let chart_yaml: String =
        chart_yaml.lines().map(|l| l.strip_prefix("- ").unwrap_or(l)).collect::<Vec<_>>().join("\n");
    let meta: Metadata =
        serde_yaml::from_str(&chart_yaml).map_err(|e| ChartError::InvalidProv(format!("bad chart metadata: {e}")))?;
    let name = meta.name.parse::<ChartName>().map_err(|e| ChartError::InvalidProv(e.to_string()))?;
    semver::Version::parse(&meta.version)
        .map_err(|e| ChartError::InvalidProv(format!("version {:?}: {e}", meta.version)))?;
    Ok((name, meta.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, body) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, body.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn stream(bytes: Vec<u8>) -> ByteStream {
        // Small chunks, so the reader crosses chunk boundaries.
        let chunks: Vec<std::io::Result<Bytes>> = bytes.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures::stream::iter(chunks))
    }

    const CHART: &str = "apiVersion: v2\nname: demo\nversion: 0.1.0\n";

    #[tokio::test]
    async fn finds_chart_yaml_in_a_stream() {
        let archive =
            tgz(&[("demo/values.yaml", "a: 1\n"), ("demo/Chart.yaml", CHART), ("demo/charts/sub/Chart.yaml", "x")]);
        let meta = read_metadata(stream(archive)).await.unwrap();
        assert_eq!(meta.stem(), "demo-0.1.0");
    }

    #[tokio::test]
    async fn rejects_bad_archives() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not gzip at all".to_vec(), "not a gzip"),
            (tgz(&[("demo/values.yaml", "a: 1\n")]), "no Chart.yaml"),
            (tgz(&[("Chart.yaml", CHART)]), "no Chart.yaml"),
            (tgz(&[("other/Chart.yaml", CHART)]), "directory"),
            (tgz(&[("demo/Chart.yaml", "apiVersion: v2\nname: demo\nversion: one\n")]), "SemVer"),
        ];
        for (bytes, want) in cases {
            let err = read_metadata(stream(bytes)).await.unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
        let mut truncated = tgz(&[("demo/values.yaml", &"v".repeat(10_000)), ("demo/Chart.yaml", CHART)]);
        truncated.truncate(40);
        assert!(read_metadata(stream(truncated)).await.is_err());
        // Chart.yaml first, then a body cut short or corrupted: still refused.
        let noise: String =
            (0..20_000u32).map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) % 26) as u8)).collect();
        let whole = tgz(&[("demo/Chart.yaml", CHART), ("demo/values.yaml", &noise)]);
        let err = read_metadata(stream(whole[..whole.len() - 100].to_vec())).await.unwrap_err();
        assert!(err.to_string().contains("not a gzip"), "{err}");
        let mut flipped = whole.clone();
        let at = flipped.len() - 6;
        flipped[at] ^= 0xff;
        assert!(read_metadata(stream(flipped)).await.is_err(), "a bad gzip trailer is refused");
    }

    type RawEntry<'a> = (&'a str, tar::EntryType, &'a [u8]);

    /// Entries written as given (no path checks), each `(path, type, body)`.
    fn raw_tgz(entries: &[RawEntry]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (path, kind, body) in entries {
            let mut header = tar::Header::new_gnu();
            let name = &mut header.as_gnu_mut().unwrap().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(*kind);
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("values.yaml").unwrap();
            }
            header.set_cksum();
            tar.append(&header, *body).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn refusal(bytes: Vec<u8>) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(read_metadata(stream(bytes))).unwrap_err().to_string()
    }

    #[test]
    fn refuses_what_helm_refuses_with_the_reason() {
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let chart = CHART.as_bytes();
        let cases: Vec<(Vec<RawEntry>, &str)> = vec![
            (vec![("demo/Chart.yaml", Regular, chart), ("/etc/passwd", Regular, b"x")], "absolute path"),
            (vec![("demo/Chart.yaml", Regular, chart), ("demo/../../x", Regular, b"x")], "parent directory"),
            (vec![("./demo/Chart.yaml", Regular, chart)], "starts with ./"),
            (vec![("demo/Chart.yaml", Regular, chart), ("other/values.yaml", Regular, b"x")], "top-level directory"),
            (vec![("demo/Chart.yaml", Regular, chart), ("demo/Chart.yaml", Regular, chart)], "more than one"),
            (vec![("demo/values.yaml", Regular, b"a: 1"), ("demo/Chart.yaml", Symlink, b"")], "symbolic link"),
            (vec![("demo/values.yaml", Regular, b"a: 1"), ("demo/Chart.yaml", Link, b"")], "hard link"),
            (vec![("demo/Chart.yaml", Directory, b"")], "a directory"),
        ];
        for (entries, want) in cases {
            let err = refusal(raw_tgz(&entries));
            assert!(err.contains(want), "{err} should contain {want}");
        }
        let err = refusal(raw_tgz(&[("demo\\Chart.yaml", Regular, chart), ("demo\\..\\x", Regular, b"x")]));
        assert!(err.contains("parent directory"), "{err}");
        let big = format!("{CHART}description: {}\n", "x".repeat(1024 * 1024));
        let err = refusal(tgz(&[("demo/Chart.yaml", &big)]));
        assert!(err.contains("too large"), "{err}");
    }

    #[tokio::test]
    async fn refuses_archives_that_unpack_past_100_mib_saying_so() {
        // Zeros compress ~1000:1, so this is a small upload that unpacks past the limit.
        let mut header = tar::Header::new_gnu();
        header.set_size(MAX_UNPACKED + 1024);
        header.set_mode(0o644);
        header.set_cksum();
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut small = tar::Header::new_gnu();
        small.set_size(CHART.len() as u64);
        small.set_mode(0o644);
        tar.append_data(&mut small, "demo/Chart.yaml", CHART.as_bytes()).unwrap();
        tar.append_data(&mut header, "demo/big", std::io::repeat(0).take(MAX_UNPACKED + 1024)).unwrap();
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        let err = read_metadata(stream_big(bytes)).await.unwrap_err().to_string();
        assert!(err.contains("unpacks to more than 100 MiB"), "{err}");
    }

    fn stream_big(bytes: Vec<u8>) -> ByteStream {
        let chunks: Vec<std::io::Result<Bytes>> =
            bytes.chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn accepts_windows_separators_as_helm_does() {
        use tar::EntryType::Regular;
        let archive =
            raw_tgz(&[("demo\\Chart.yaml", Regular, CHART.as_bytes()), ("demo\\values.yaml", Regular, b"a: 1")]);
        assert_eq!(read_metadata(stream(archive)).await.unwrap().stem(), "demo-0.1.0");
    }

    #[tokio::test]
    async fn accepts_a_byte_order_mark_and_multi_member_gzip() {
        let bom = format!("\u{feff}{CHART}");
        let meta = read_metadata(stream(tgz(&[("demo/Chart.yaml", &bom)]))).await.unwrap();
        assert_eq!(meta.stem(), "demo-0.1.0");
        // Two gzip members, the tar split between them: Go's gzip reader (and Helm) reads both.
        let tar_bytes = {
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(CHART.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, "demo/Chart.yaml", CHART.as_bytes()).unwrap();
            tar.into_inner().unwrap()
        };
        let member = |part: &[u8]| {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            gz.finish().unwrap()
        };
        let mut two = member(&tar_bytes[..700]);
        two.extend(member(&tar_bytes[700..]));
        let meta = read_metadata(stream(two)).await.unwrap();
        assert_eq!(meta.stem(), "demo-0.1.0");
    }

    #[test]
    fn provenance_names_its_chart() {
        let prov = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\napiVersion: v2\nname: demo\nversion: 0.1.0\n\n...\nfiles:\n  demo-0.1.0.tgz: sha256:abc\n-----BEGIN PGP SIGNATURE-----\n\nwsBcBAEBCgAQ\n-----END PGP SIGNATURE-----\n";
        let (name, version) = prov_chart(prov).unwrap();
        assert_eq!((name.as_str(), version.as_str()), ("demo", "0.1.0"));
        assert!(prov_chart("hello").is_err());
        assert!(prov_chart(&prov.replace("0.1.0\n", "zero\n")).is_err());
    }
}
