//! Request parsing for the OCI distribution-spec endpoints (the "end-1".."end-13" table):
//! <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#endpoints>
//! Pure: no I/O. The path given here is what follows `/v2/<repository key>/`.

use super::error::{ErrorCode, OciError};
use crate::model::{Action, Digest};
use axum::http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    GetManifest { name: String, reference: Reference, head: bool },
    PutManifest { name: String, reference: Reference },
    DeleteManifest { name: String, reference: Reference },
    GetBlob { name: String, digest: Digest, head: bool },
    DeleteBlob { name: String, digest: Digest },
    StartUpload { name: String, digest: Option<Digest>, mount: Option<Digest>, from: Option<String> },
    UploadStatus { name: String, id: String },
    PatchUpload { name: String, id: String },
    FinishUpload { name: String, id: String, digest: Digest },
    CancelUpload { name: String, id: String },
    ListTags { name: String, page: Page },
    ListReferrers { name: String, digest: Digest, artifact_type: Option<String> },
    Catalog { page: Page },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub n: Option<u32>,
    pub last: Option<String>,
}

pub fn action(route: &Route) -> Action {
    match route {
        Route::GetManifest { .. }
        | Route::GetBlob { .. }
        | Route::ListTags { .. }
        | Route::ListReferrers { .. }
        | Route::Catalog { .. } => Action::Read,
        Route::PutManifest { .. }
        | Route::StartUpload { .. }
        | Route::UploadStatus { .. }
        | Route::PatchUpload { .. }
        | Route::FinishUpload { .. }
        | Route::CancelUpload { .. } => Action::Write,
        Route::DeleteManifest { .. } | Route::DeleteBlob { .. } => Action::Delete,
    }
}

/// Parse `<name>/<endpoint>` with its query string.
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Route, OciError> {
    let query = Query::parse(query.unwrap_or(""));
    if path == "_catalog" {
        return match *method {
            Method::GET => Ok(Route::Catalog { page: query.page()? }),
            _ => Err(unsupported_method(method)),
        };
    }
    let (name, endpoint, rest) = split_endpoint(path)?;
    validate_name(name)?;
    let name = name.to_string();
    let head = *method == Method::HEAD;
    match (endpoint, method.clone()) {
        ("manifests", Method::GET | Method::HEAD) => Ok(Route::GetManifest { name, reference: reference(rest)?, head }),
        ("manifests", Method::PUT) => Ok(Route::PutManifest { name, reference: reference(rest)? }),
        ("manifests", Method::DELETE) => Ok(Route::DeleteManifest { name, reference: reference(rest)? }),
        ("blobs", Method::GET | Method::HEAD) => Ok(Route::GetBlob { name, digest: digest(rest)?, head }),
        ("blobs", Method::DELETE) => Ok(Route::DeleteBlob { name, digest: digest(rest)? }),
        ("blobs/uploads", Method::POST) if rest.is_empty() => Ok(Route::StartUpload {
            name,
            digest: query.get("digest").map(digest).transpose()?,
            mount: query.get("mount").map(digest).transpose()?,
            from: query.get("from").map(str::to_string),
        }),
        ("blobs/uploads", _) if rest.is_empty() => Err(unsupported_method(method)),
        ("blobs/uploads", m) => {
            let id = upload_id(rest)?;
            match m {
                Method::GET => Ok(Route::UploadStatus { name, id }),
                Method::PATCH => Ok(Route::PatchUpload { name, id }),
                Method::PUT => {
                    let raw = query.get("digest").ok_or_else(|| {
                        OciError::new(ErrorCode::DigestInvalid, "the digest query parameter is required")
                    })?;
                    Ok(Route::FinishUpload { name, id, digest: digest(raw)? })
                }
                Method::DELETE => Ok(Route::CancelUpload { name, id }),
                _ => Err(unsupported_method(method)),
            }
        }
        ("tags/list", Method::GET) => Ok(Route::ListTags { name, page: query.page()? }),
        ("referrers", Method::GET) => Ok(Route::ListReferrers {
            name,
            digest: digest(rest)?,
            artifact_type: query.get("artifactType").map(str::to_string),
        }),
        _ => Err(unsupported_method(method)),
    }
}

fn unsupported_method(method: &Method) -> OciError {
    OciError::new(ErrorCode::Unsupported, format!("method {method} is not supported on this endpoint"))
}

/// Split at the last endpoint marker: names may contain path components but never these.
fn split_endpoint(path: &str) -> Result<(&str, &'static str, &str), OciError> {
    const MARKERS: [(&str, &str); 5] = [
        ("/blobs/uploads/", "blobs/uploads"),
        ("/manifests/", "manifests"),
        ("/blobs/", "blobs"),
        ("/referrers/", "referrers"),
        ("/tags/list", "tags/list"),
    ];
    // The last marker wins (names may contain endpoint words); at the same place, the longer one.
    let best = MARKERS
        .iter()
        .filter_map(|(marker, endpoint)| path.rfind(marker).map(|at| (at, *marker, *endpoint)))
        .max_by_key(|(at, marker, _)| (*at, marker.len()));
    let (at, marker, endpoint) =
        best.ok_or_else(|| OciError::new(ErrorCode::NotFound, format!("no such endpoint: /v2/.../{path}")))?;
    let rest = &path[at + marker.len()..];
    if endpoint == "tags/list" && !rest.is_empty() {
        return Err(OciError::new(ErrorCode::NotFound, "no such endpoint"));
    }
    Ok((&path[..at], endpoint, rest))
}

/// `[a-z0-9]+((\.|_|__|[-]+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|[-]+)[a-z0-9]+)*)*`
pub fn validate_name(name: &str) -> Result<(), OciError> {
    let bad = || OciError::new(ErrorCode::NameInvalid, format!("invalid repository name {name:?}"));
    if name.is_empty() || name.len() > 255 {
        return Err(bad());
    }
    for component in name.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if bytes.is_empty() || !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
            return Err(bad());
        }
        let mut i = 0;
        while i < bytes.len() {
            if alnum(&bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !alnum(&bytes[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            let dashes = sep.bytes().all(|b| b == b'-');
            if !(sep == "." || sep == "_" || sep == "__" || dashes) {
                return Err(bad());
            }
        }
    }
    Ok(())
}

fn reference(raw: &str) -> Result<Reference, OciError> {
    if raw.contains(':') {
        return digest(raw).map(Reference::Digest);
    }
    // [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
    let valid = !raw.is_empty()
        && raw.len() <= 128
        && raw.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(Reference::Tag(raw.to_string()))
    } else {
        Err(OciError::new(ErrorCode::ManifestInvalid, format!("invalid tag {raw:?}")).with_status(400))
    }
}

fn digest(raw: &str) -> Result<Digest, OciError> {
    raw.parse().map_err(|e| OciError::new(ErrorCode::DigestInvalid, format!("invalid digest {raw:?}: {e}")))
}

fn upload_id(raw: &str) -> Result<String, OciError> {
    let valid = !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(raw.to_string())
    } else {
        Err(OciError::new(ErrorCode::BlobUploadUnknown, "no such upload"))
    }
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Query {
        Query(url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn page(&self) -> Result<Page, OciError> {
        let n = match self.get("n") {
            Some(raw) => Some(
                raw.parse::<u32>()
                    .map_err(|_| OciError::new(ErrorCode::PaginationNumberInvalid, format!("invalid n={raw}")))?,
            ),
            None => None,
        };
        Ok(Page { n, last: self.get("last").map(str::to_string) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn ok(method: Method, path: &str, query: Option<&str>) -> Route {
        parse(&method, path, query).unwrap_or_else(|e| panic!("{method} {path}: {e:?}"))
    }

    fn code(method: Method, path: &str, query: Option<&str>) -> ErrorCode {
        parse(&method, path, query).unwrap_err().code
    }

    #[test]
    fn routes() {
        let d: Digest = D.parse().unwrap();
        assert_eq!(
            ok(Method::GET, "library/redis/manifests/7", None),
            Route::GetManifest { name: "library/redis".into(), reference: Reference::Tag("7".into()), head: false }
        );
        assert_eq!(
            ok(Method::HEAD, &format!("a/manifests/{D}"), None),
            Route::GetManifest { name: "a".into(), reference: Reference::Digest(d.clone()), head: true }
        );
        assert_eq!(
            ok(Method::GET, &format!("a/b/blobs/{D}"), None),
            Route::GetBlob { name: "a/b".into(), digest: d.clone(), head: false }
        );
        assert_eq!(
            ok(Method::POST, "a/blobs/uploads/", Some(&format!("mount={D}&from=other/x"))),
            Route::StartUpload { name: "a".into(), digest: None, mount: Some(d.clone()), from: Some("other/x".into()) }
        );
        assert_eq!(
            ok(Method::PATCH, "a/blobs/uploads/abc-1", None),
            Route::PatchUpload { name: "a".into(), id: "abc-1".into() }
        );
        assert_eq!(
            ok(Method::PUT, "a/blobs/uploads/abc", Some(&format!("digest={D}"))),
            Route::FinishUpload { name: "a".into(), id: "abc".into(), digest: d.clone() }
        );
        assert_eq!(
            ok(Method::GET, "a/tags/list", Some("n=2&last=b")),
            Route::ListTags { name: "a".into(), page: Page { n: Some(2), last: Some("b".into()) } }
        );
        assert_eq!(
            ok(Method::GET, &format!("a/referrers/{D}"), Some("artifactType=application%2Fx")),
            Route::ListReferrers { name: "a".into(), digest: d.clone(), artifact_type: Some("application/x".into()) }
        );
        assert_eq!(ok(Method::GET, "_catalog", Some("n=1")), Route::Catalog { page: Page { n: Some(1), last: None } });
        // A name may itself contain an endpoint word as a component.
        assert_eq!(
            ok(Method::GET, "blobs/manifests/manifests/1", None),
            Route::GetManifest { name: "blobs/manifests".into(), reference: Reference::Tag("1".into()), head: false }
        );
    }

    #[test]
    fn bad_input() {
        assert_eq!(code(Method::GET, "A/manifests/1", None), ErrorCode::NameInvalid);
        assert_eq!(code(Method::GET, "a--/manifests/1", None), ErrorCode::NameInvalid);
        assert_eq!(code(Method::GET, "a..b/manifests/1", None), ErrorCode::NameInvalid);
        assert_eq!(code(Method::GET, "a/manifests/sha256:zz", None), ErrorCode::DigestInvalid);
        assert_eq!(code(Method::GET, "a/manifests/-bad", None), ErrorCode::ManifestInvalid);
        assert_eq!(code(Method::GET, "a/blobs/notadigest", None), ErrorCode::DigestInvalid);
        assert_eq!(code(Method::PUT, "a/blobs/uploads/abc", None), ErrorCode::DigestInvalid);
        assert_eq!(code(Method::GET, "a/blobs/uploads/../x", None), ErrorCode::BlobUploadUnknown);
        assert_eq!(code(Method::GET, "a/whatever", None), ErrorCode::NotFound);
        assert_eq!(code(Method::POST, "a/manifests/1", None), ErrorCode::Unsupported);
        assert_eq!(code(Method::GET, "a/tags/list", Some("n=x")), ErrorCode::PaginationNumberInvalid);
        assert_eq!(code(Method::GET, "/manifests/1", None), ErrorCode::NameInvalid);
    }

    #[test]
    fn names() {
        for ok in ["a", "a/b", "a.b", "a_b", "a__b", "a---b", "library/redis", "0"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/", "/a", "a//b", "_a", "a.", "a...b", "a___b", "a_.b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
