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

fn metadata_from(reader: impl Read) -> Result<Metadata, ChartError> {
    let bad = |e: std::io::Error| ChartError::NotGzipTar(e.to_string());
    let unpacked = flate2::read::GzDecoder::new(reader).take(MAX_UNPACKED + 1);
    let mut archive = tar::Archive::new(unpacked);
    let mut found = None;
    // Every entry is read, so a truncated or corrupt archive is refused even when its
    // Chart.yaml comes first.
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let parts: Vec<&str> = path.trim_start_matches("./").split('/').filter(|p| !p.is_empty()).collect();
        if let ([dir, "Chart.yaml"], None) = (parts.as_slice(), &found) {
            found = Some(chart_yaml(dir, entry)?);
        }
    }
    // Read to the end of the gzip stream, which checks its CRC and length.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(bad)?;
    if rest.limit() == 0 {
        return Err(ChartError::NotGzipTar(format!("the archive unpacks to more than {MAX_UNPACKED} bytes")));
    }
    found.ok_or(ChartError::MissingChartYaml)
}

fn chart_yaml(dir: &str, entry: impl Read) -> Result<Metadata, ChartError> {
    let mut text = String::new();
    entry
        .take(MAX_CHART_YAML)
        .read_to_string(&mut text)
        .map_err(|e| ChartError::InvalidChartYaml(format!("cannot read {dir}/Chart.yaml: {e}")))?;
    let meta = Metadata::from_chart_yaml(&text)?;
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

    #[test]
    fn provenance_names_its_chart() {
        let prov = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\napiVersion: v2\nname: demo\nversion: 0.1.0\n\n...\nfiles:\n  demo-0.1.0.tgz: sha256:abc\n-----BEGIN PGP SIGNATURE-----\n\nwsBcBAEBCgAQ\n-----END PGP SIGNATURE-----\n";
        let (name, version) = prov_chart(prov).unwrap();
        assert_eq!((name.as_str(), version.as_str()), ("demo", "0.1.0"));
        assert!(prov_chart("hello").is_err());
        assert!(prov_chart(&prov.replace("0.1.0\n", "zero\n")).is_err());
    }
}
