//! Chart metadata: the `Chart.yaml` fields Helm writes into index.yaml, their validation, and
//! the identifiers parsed at the edge (`ChartName`, `ChartVersionText`).
//! Field reference: <https://helm.sh/docs/topics/charts/#the-chartyaml-file>.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the upload is not a gzip-compressed tar archive: {0}")]
    NotGzipTar(String),
    #[error("the chart archive is invalid: {0}")]
    InvalidArchive(String),
    #[error("the archive has no Chart.yaml at <name>/Chart.yaml")]
    MissingChartYaml,
    #[error("Chart.yaml is invalid: {0}")]
    InvalidChartYaml(String),
    #[error("the chart is {found} but the upload path names {wanted}")]
    PathMismatch { found: String, wanted: String },
    #[error("the provenance file is invalid: {0}")]
    InvalidProv(String),
    #[error("storage: {0}")]
    Storage(String),
}

/// A chart name: 1–250 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChartName(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid chart name {0:?}: use letters, digits, '.', '_' and '-', starting with a letter or digit")]
pub struct BadName(String);

impl FromStr for ChartName {
    type Err = BadName;
    fn from_str(s: &str) -> Result<Self, BadName> {
        let valid = !s.is_empty()
            && s.len() <= 250
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if valid {
            Ok(ChartName(s.to_string()))
        } else {
            Err(BadName(s.to_string()))
        }
    }
}

impl ChartName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChartName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version as found in URLs and upstream indexes: a digit (or `v` and a digit) first, then
/// `0-9 A-Z a-z . + -`. Uploads must be strict SemVer 2 ([`ChartVersionText::semver`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChartVersionText(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid chart version {0:?}")]
pub struct BadVersion(String);

impl FromStr for ChartVersionText {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Self, BadVersion> {
        let digits = s.strip_prefix('v').unwrap_or(s);
        let valid = s.len() <= 128
            && digits.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b));
        if valid {
            Ok(ChartVersionText(s.to_string()))
        } else {
            Err(BadVersion(s.to_string()))
        }
    }
}

impl ChartVersionText {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The version as strict SemVer 2, if it is one.
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.0).ok()
    }
}

impl fmt::Display for ChartVersionText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `Chart.yaml` as index.yaml repeats it. Unknown keys (v1 `engine`, `tillerVersion`, …)
/// are kept in `other` so nothing an upstream index carries is lost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, deserialize_with = "text")]
    pub api_version: String,
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    #[serde(default, deserialize_with = "text")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_text")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintainers: Vec<Maintainer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub chart_type: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_text")]
    pub kube_version: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Maintainer {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A `dependencies` item; `condition`, `tags`, `import-values`, `alias`… stay in `other`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_text")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Scalars written unquoted in YAML (`appVersion: 1.10`, `version: 2`) read as their text.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_text(d)?.unwrap_or_default())
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        serde_json::Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(D::Error::custom(format!("expected a string, found {other}"))),
    }
}

impl Metadata {
    /// Parse and validate `Chart.yaml`.
    pub fn from_chart_yaml(text: &str) -> Result<Metadata, ChartError> {
        let meta: Metadata = serde_yaml::from_str(text).map_err(|e| ChartError::InvalidChartYaml(e.to_string()))?;
        meta.validate()?;
        Ok(meta)
    }

    /// Helm's own checks (`Metadata.Validate`), with the version held to SemVer 2.
    pub fn validate(&self) -> Result<(), ChartError> {
        let invalid = |why: String| Err(ChartError::InvalidChartYaml(why));
        if !matches!(self.api_version.as_str(), "v1" | "v2") {
            return invalid(format!("apiVersion must be v1 or v2, not {:?}", self.api_version));
        }
        if let Err(e) = self.name.parse::<ChartName>() {
            return invalid(e.to_string());
        }
        if let Err(e) = semver::Version::parse(&self.version) {
            return invalid(format!("version {:?} is not SemVer 2: {e}", self.version));
        }
        match self.chart_type.as_deref() {
            None | Some("" | "application") => {}
            Some("library") if self.api_version == "v2" => {}
            Some(other) => return invalid(format!("type {other:?} is not application or library (v2)")),
        }
        if let Some(d) = self.dependencies.iter().find(|d| d.name.parse::<ChartName>().is_err()) {
            return invalid(format!("dependency name {:?} is invalid", d.name));
        }
        if self.maintainers.iter().any(|m| m.name.trim().is_empty()) {
            return invalid("every maintainer needs a name".into());
        }
        Ok(())
    }

    /// `<name>-<version>`, the archive's file name without `.tgz`.
    pub fn stem(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
apiVersion: v2
name: web-app
version: 1.2.3-rc.1+build.5
appVersion: 1.10
description: |
  A web application.
  Two lines.
keywords: [web, http]
home: https://charts.example.com/web-app
sources: [https://git.example.com/web-app]
maintainers:
  - name: Ada
    email: ada@example.com
    url: https://example.com/ada
icon: https://charts.example.com/icon.png
type: application
deprecated: true
kubeVersion: ">=1.22.0-0"
annotations:
  category: Web
  artifacthub.io/license: Apache-2.0
dependencies:
  - name: redis
    version: "~17.0"
    repository: https://charts.example.com/stable
    condition: redis.enabled
    tags: [cache]
    alias: cache
  - name: common
    version: 2.x.x
    repository: "@stable"
    import-values: [defaults]
"#;

    #[test]
    fn reads_every_field() {
        let m = Metadata::from_chart_yaml(FULL).unwrap();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("web-app", "1.2.3-rc.1+build.5"));
        assert_eq!(m.app_version.as_deref(), Some("1.1"), "unquoted numbers keep their YAML value");
        assert_eq!(m.description.as_deref(), Some("A web application.\nTwo lines.\n"));
        assert_eq!(m.keywords, ["web", "http"]);
        assert_eq!(m.maintainers[0].email.as_deref(), Some("ada@example.com"));
        assert_eq!(m.dependencies[0].other["condition"], "redis.enabled");
        assert_eq!(m.dependencies[1].other["import-values"], serde_json::json!(["defaults"]));
        assert!(m.deprecated);
        assert_eq!(m.kube_version.as_deref(), Some(">=1.22.0-0"));
        assert_eq!(m.annotations["artifacthub.io/license"], "Apache-2.0");
        // Stored as JSON attrs and read back unchanged.
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(serde_json::from_value::<Metadata>(json).unwrap(), m);
    }

    #[test]
    fn rejects_bad_metadata() {
        let base = "apiVersion: v2\nname: ok\nversion: 1.0.0\n";
        assert!(Metadata::from_chart_yaml(base).is_ok());
        for (text, why) in [
            ("apiVersion: v3\nname: ok\nversion: 1.0.0\n", "apiVersion"),
            ("name: ok\nversion: 1.0.0\n", "apiVersion"),
            ("apiVersion: v2\nversion: 1.0.0\n", "chart name"),
            ("apiVersion: v2\nname: a/b\nversion: 1.0.0\n", "chart name"),
            ("apiVersion: v2\nname: ok\nversion: 1.0\n", "SemVer"),
            ("apiVersion: v2\nname: ok\n", "SemVer"),
            ("apiVersion: v1\nname: ok\nversion: 1.0.0\ntype: library\n", "type"),
            ("apiVersion: v2\nname: ok\nversion: 1.0.0\ndependencies: [{version: 1}]\n", "dependency"),
            ("apiVersion: v2\nname: ok\nversion: 1.0.0\nmaintainers: [{email: a@b}]\n", "maintainer"),
            ("apiVersion: v2\nname: [ok\n", "invalid"),
            ("- just\n- a list\n", "invalid"),
        ] {
            let err = Metadata::from_chart_yaml(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn names_and_versions() {
        for ok in ["nginx", "my-chart", "a.b_c", "Web2"] {
            assert!(ok.parse::<ChartName>().is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(251)] {
            assert!(bad.parse::<ChartName>().is_err(), "{bad}");
        }
        for ok in ["1.0.0", "v1.2.3", "0.1", "1.0.0-rc.1+b.2"] {
            assert!(ok.parse::<ChartVersionText>().is_ok(), "{ok}");
        }
        for bad in ["", "latest", "v", "1.0/2", "1 0"] {
            assert!(bad.parse::<ChartVersionText>().is_err(), "{bad}");
        }
        assert!("1.0.0".parse::<ChartVersionText>().unwrap().semver().is_some());
        assert!("v1.0.0".parse::<ChartVersionText>().unwrap().semver().is_none());
    }
}
