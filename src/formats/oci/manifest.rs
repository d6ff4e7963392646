//! Manifest documents: the media types we accept, what they reference, and their subject.
//! OCI image manifest and index (image-spec v1.1, incl. artifacts), Docker schema2 manifest
//! and manifest list.

use super::error::{ErrorCode, OciError};
use crate::model::Digest;
use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MAX_MANIFEST: u64 = 4 * 1024 * 1024;

/// Every manifest type we serve, for `Accept` on upstream requests.
pub const ACCEPTED: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: Option<String>,
    pub digest: String,
    pub size: i64,
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Value>,
}

/// A parsed manifest and what it points at.
#[derive(Debug)]
pub struct Manifest {
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// Blobs (config and layers) that must exist in the repository, with their declared sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Child manifests (indexes) that must exist under the same name, with their declared sizes.
    pub children: Vec<(Digest, u64)>,
    pub subject: Option<Digest>,
    pub annotations: Option<serde_json::Value>,
}

fn invalid(message: impl Into<String>) -> OciError {
    OciError::new(ErrorCode::ManifestInvalid, message)
}

/// Parse and validate `body` sent with `content_type` (which may be absent for old clients).
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, OciError> {
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let declared = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty() && *c != "application/json");
    let media_type = match (declared, doc.media_type.as_deref()) {
        (Some(header), Some(body)) if header != body => {
            return Err(invalid(format!("Content-Type {header} does not match the manifest's mediaType {body}")));
        }
        (Some(header), _) => header.to_string(),
        (None, Some(body)) => body.to_string(),
        (None, None) if doc.manifests.is_empty() => OCI_MANIFEST.to_string(),
        (None, None) => OCI_INDEX.to_string(),
    };
    if doc.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2 (schema 1 manifests are not supported)"));
    }
    let parse_digest = |d: &Descriptor| -> Result<(Digest, u64), OciError> {
        let size =
            u64::try_from(d.size).map_err(|_| invalid(format!("descriptor {} has a negative size", d.digest)))?;
        let digest = d.digest.parse().map_err(|e| invalid(format!("descriptor digest {:?}: {e}", d.digest)))?;
        Ok((digest, size))
    };
    let (blobs, children) = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = doc.config.as_ref().ok_or_else(|| invalid("an image manifest needs a config descriptor"))?;
            let mut blobs = vec![parse_digest(config)?];
            for layer in &doc.layers {
                blobs.push(parse_digest(layer)?);
            }
            (blobs, Vec::new())
        }
        OCI_INDEX | DOCKER_LIST => (Vec::new(), doc.manifests.iter().map(parse_digest).collect::<Result<_, _>>()?),
        other => {
            return Err(OciError::new(ErrorCode::ManifestInvalid, format!("unsupported manifest media type {other}"))
                .with_status(415));
        }
    };
    let subject = doc.subject.as_ref().map(parse_digest).transpose()?.map(|(digest, _)| digest);
    let artifact_type = doc.artifact_type.clone().or_else(|| {
        // An artifact without artifactType is typed by its config (image-spec guidance).
        doc.config.as_ref().and_then(|c| c.media_type.clone()).filter(|_| subject.is_some())
    });
    Ok(Manifest { media_type, artifact_type, blobs, children, subject, annotations: doc.annotations })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn image_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D1}","size":2}},
               "layers":[{{"mediaType":"x","digest":"{D2}","size":3}}],"artifactType":"application/x.sbom",
               "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":9}}}}"#
        );
        let m = parse(body.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.subject.unwrap().to_string(), D2);
        assert_eq!(m.artifact_type.as_deref(), Some("application/x.sbom"));
    }

    #[test]
    fn index_and_rejections() {
        let index =
            format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5}}]}}"#);
        let m = parse(index.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert_eq!(m.children.len(), 1);
        assert_eq!(parse(index.as_bytes(), None).unwrap().media_type, OCI_INDEX);
        let cases: [(&str, Option<&str>); 5] = [
            ("not json", Some(OCI_MANIFEST)),
            (r#"{"schemaVersion":1}"#, Some(OCI_MANIFEST)),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
                Some(OCI_MANIFEST),
            ),
            (r#"{"schemaVersion":2,"layers":[]}"#, Some(OCI_MANIFEST)),
            (r#"{"schemaVersion":2,"config":{"digest":"sha256:x","size":1}}"#, Some(DOCKER_MANIFEST)),
        ];
        for (body, ct) in cases {
            assert_eq!(parse(body.as_bytes(), ct).unwrap_err().code, ErrorCode::ManifestInvalid, "{body}");
        }
        assert_eq!(parse(b"{\"schemaVersion\":2}", Some("text/plain")).unwrap_err().status, 415);
    }
}
