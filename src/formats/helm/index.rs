//! index.yaml: the chart-repository index (`apiVersion: v1`, `entries` by chart name with
//! versions newest first, `generated`), see <https://helm.sh/docs/topics/chart_repository/#the-index-file>.
//!
//! A [`View`] is one repository's charts in memory. Each chart name's YAML is rendered once
//! and kept with its versions ([`Bucket`]); a change replaces only the bucket of the chart it
//! touches, so re-rendering after one upload costs one chart's YAML; the document is sent as
//! the chain of the charts' pieces, never concatenated.

use super::chart::Metadata;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One chart version as index.yaml lists it (Helm's `ChartVersion`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    #[serde(flatten)]
    pub meta: Metadata,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A version in a view: its index entry (with `urls` = the archive's file name, made absolute
/// at render time) and, for a remote repository, where the upstream keeps the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartVersion {
    pub entry: IndexEntry,
    pub origin: Option<url::Url>,
}

impl ChartVersion {
    pub fn file(&self) -> String {
        format!("{}-{}.tgz", self.entry.meta.name, self.entry.meta.version)
    }

    /// The entry as served, its URL under `base` (empty: relative to index.yaml).
    pub fn listed(&self, base: &str) -> Listed<'_> {
        let entry = &self.entry;
        Listed {
            meta: &entry.meta,
            urls: [format!("{base}{}", self.file())],
            created: entry.created.as_deref(),
            removed: entry.removed,
            digest: entry.digest.as_deref(),
        }
    }
}

/// An index entry as served: borrowed from the view (no copy of the metadata per render).
#[derive(Debug, Serialize)]
pub struct Listed<'a> {
    #[serde(flatten)]
    meta: &'a Metadata,
    urls: [String; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
}

/// All versions of one chart, newest first, with their rendered YAML once asked for.
#[derive(Debug, Default)]
pub struct Bucket {
    pub versions: Vec<Arc<ChartVersion>>,
    /// (URL base, YAML of the chart's key and its versions, indented under `entries:`)
    rendered: Mutex<Option<(String, Bytes)>>,
}

impl Bucket {
    fn new(mut versions: Vec<Arc<ChartVersion>>) -> Bucket {
        versions.sort_by(|a, b| newest_first(&a.entry.meta.version, &b.entry.meta.version));
        Bucket { versions, rendered: Mutex::default() }
    }

    fn yaml(&self, name: &str, base: &str) -> Result<Bytes, serde_yaml::Error> {
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, yaml)) = rendered.as_ref().filter(|(b, _)| b == base) {
            return Ok(yaml.clone());
        }
        let listed: Vec<Listed> = self.versions.iter().map(|v| v.listed(base)).collect();
        let text = serde_yaml::to_string(&listed)?;
        let mut out = String::with_capacity(text.len() + text.len() / 8);
        out.push_str("  ");
        out.push_str(serde_yaml::to_string(name)?.trim_end());
        out.push_str(":\n");
        for line in text.lines() {
            if !line.is_empty() {
                out.push_str("  ");
            }
            out.push_str(line);
            out.push('\n');
        }
        let yaml = Bytes::from(out);
        *rendered = Some((base.to_string(), yaml.clone()));
        Ok(yaml)
    }
}

/// SemVer order, newest first; versions that are not SemVer (upstream leniency) come last.
pub fn newest_first(a: &str, b: &str) -> Ordering {
    let parse = |v: &str| semver::Version::parse(v.strip_prefix('v').unwrap_or(v)).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => b.cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => b.cmp(a),
    }
}

/// A repository's charts by name. Cheap to derive from another: buckets are shared.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub charts: BTreeMap<String, Arc<Bucket>>,
}

impl View {
    pub fn from_versions(versions: impl IntoIterator<Item = ChartVersion>) -> View {
        let mut by_name: BTreeMap<String, Vec<Arc<ChartVersion>>> = BTreeMap::new();
        for v in versions {
            by_name.entry(v.entry.meta.name.clone()).or_default().push(Arc::new(v));
        }
        View { charts: by_name.into_iter().map(|(name, vs)| (name, Arc::new(Bucket::new(vs)))).collect() }
    }

    pub fn find(&self, name: &str, version: &str) -> Option<&Arc<ChartVersion>> {
        self.charts.get(name)?.versions.iter().find(|v| v.entry.meta.version == version)
    }

    pub fn len(&self) -> usize {
        self.charts.values().map(|b| b.versions.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.charts.is_empty()
    }

    /// This view with `version` added (replacing the same name and version).
    pub fn with(&self, version: ChartVersion) -> View {
        let name = version.entry.meta.name.clone();
        let mut versions: Vec<Arc<ChartVersion>> =
            self.charts.get(&name).map(|b| b.versions.clone()).unwrap_or_default();
        versions.retain(|v| v.entry.meta.version != version.entry.meta.version);
        versions.push(Arc::new(version));
        let mut charts = self.charts.clone();
        charts.insert(name, Arc::new(Bucket::new(versions)));
        View { charts }
    }

    /// This view without `name` `version`.
    pub fn without(&self, name: &str, version: &str) -> View {
        let mut charts = self.charts.clone();
        if let Some(bucket) = self.charts.get(name) {
            let versions: Vec<_> =
                bucket.versions.iter().filter(|v| v.entry.meta.version != version).cloned().collect();
            match versions.is_empty() {
                true => charts.remove(name),
                false => charts.insert(name.to_string(), Arc::new(Bucket::new(versions))),
            };
        }
        View { charts }
    }

    /// Several views as one: the first view that has a name and version wins.
    pub fn merge(views: &[Arc<View>]) -> View {
        let mut charts: BTreeMap<String, Arc<Bucket>> = BTreeMap::new();
        for view in views {
            for (name, bucket) in &view.charts {
                let Some(existing) = charts.get(name) else {
                    charts.insert(name.clone(), bucket.clone());
                    continue;
                };
                let mut versions = existing.versions.clone();
                let extra = bucket
                    .versions
                    .iter()
                    .filter(|v| !existing.versions.iter().any(|e| e.entry.meta.version == v.entry.meta.version));
                versions.extend(extra.cloned());
                if versions.len() > existing.versions.len() {
                    charts.insert(name.clone(), Arc::new(Bucket::new(versions)));
                }
            }
        }
        View { charts }
    }

    /// index.yaml with chart URLs under `base` (empty: relative to the index), as pieces to
    /// send one after another: the charts' cached YAML is shared, not copied into one buffer.
    pub fn render(&self, base: &str, generated: &str) -> Result<Vec<Bytes>, serde_yaml::Error> {
        let mut pieces = Vec::with_capacity(self.charts.len() + 2);
        pieces.push(Bytes::from_static(match self.charts.is_empty() {
            true => b"apiVersion: v1\nentries: {}\n",
            false => b"apiVersion: v1\nentries:\n",
        }));
        for (name, bucket) in &self.charts {
            pieces.push(bucket.yaml(name, base)?);
        }
        pieces.push(Bytes::from(format!("generated: \"{generated}\"\n")));
        Ok(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(name: &str, v: &str) -> ChartVersion {
        let meta = Metadata {
            api_version: "v2".into(),
            name: name.into(),
            version: v.into(),
            description: Some("line one\n\nline three\n".into()),
            ..Default::default()
        };
        let entry = IndexEntry {
            meta,
            urls: vec![],
            created: Some("2026-01-01T00:00:00Z".into()),
            removed: false,
            digest: Some("ab".into()),
        };
        ChartVersion { entry, origin: None }
    }

    fn joined(pieces: Vec<Bytes>) -> String {
        pieces.iter().map(|p| std::str::from_utf8(p).unwrap()).collect()
    }

    #[derive(Deserialize)]
    struct Index {
        #[serde(rename = "apiVersion")]
        api_version: String,
        entries: BTreeMap<String, Vec<IndexEntry>>,
        generated: String,
    }

    #[test]
    fn renders_newest_first_and_round_trips() {
        let view = View::from_versions([
            version("b", "1.0.0"),
            version("a", "0.9.0"),
            version("a", "0.10.0-rc.1"),
            version("a", "0.10.0"),
        ]);
        let text = joined(view.render("", "2026-12-04T00:00:00Z").unwrap());
        let index: Index = serde_yaml::from_str(&text).unwrap();
        assert_eq!(index.api_version, "v1");
        assert_eq!(index.generated, "2026-12-04T00:00:00Z");
        let a: Vec<&str> = index.entries["a"].iter().map(|e| e.meta.version.as_str()).collect();
        assert_eq!(a, ["0.10.0", "0.10.0-rc.1", "0.9.0"]);
        assert_eq!(index.entries["a"][0].urls, ["a-0.10.0.tgz"]);
        assert_eq!(index.entries["a"][0].meta.description.as_deref(), Some("line one\n\nline three\n"));
        let absolute = joined(view.render("https://repo.example.com/helm/", "x").unwrap());
        let index: Index = serde_yaml::from_str(&absolute).unwrap();
        assert_eq!(index.entries["b"][0].urls, ["https://repo.example.com/helm/b-1.0.0.tgz"]);
    }

    #[test]
    fn keys_that_look_like_other_types_stay_strings() {
        let text =
            joined(View::from_versions([version("123", "1.0.0"), version("true", "1.0.0")]).render("", "x").unwrap());
        let index: Index = serde_yaml::from_str(&text).unwrap();
        assert_eq!(index.entries.keys().collect::<Vec<_>>(), ["123", "true"]);
        let empty: Index = serde_yaml::from_str(&joined(View::default().render("", "x").unwrap())).unwrap();
        assert!(empty.entries.is_empty());
    }

    #[test]
    fn changes_and_merges() {
        let view = View::from_versions([version("a", "1.0.0")]);
        let view = view.with(version("a", "2.0.0")).with(version("b", "1.0.0"));
        assert_eq!(view.len(), 3);
        assert_eq!(view.charts["a"].versions[0].entry.meta.version, "2.0.0");
        let view = view.without("b", "1.0.0");
        assert!(!view.charts.contains_key("b"));
        let mut first = version("a", "1.0.0");
        first.entry.digest = Some("first".into());
        let merged = View::merge(&[Arc::new(View::from_versions([first])), Arc::new(view)]);
        assert_eq!(merged.find("a", "1.0.0").unwrap().entry.digest.as_deref(), Some("first"));
        assert!(merged.find("a", "2.0.0").is_some());
        assert_eq!(newest_first("v2.0.0", "1.0.0"), Ordering::Less);
        assert_eq!(newest_first("1.0.0", "0.1"), Ordering::Less, "SemVer before loose versions");
    }

    /// The exact text, so a change in the YAML shape is a visible diff.
    #[test]
    fn snapshot() {
        let mut one = version("web", "1.0.0");
        one.entry.meta.maintainers = vec![super::super::chart::Maintainer {
            name: "Ada".into(),
            email: Some("ada@example.com".into()),
            url: None,
        }];
        one.entry.meta.annotations.insert("category".into(), "Web".into());
        let text = joined(View::from_versions([one]).render("", "2026-12-04T00:00:00Z").unwrap());
        let want = r#"apiVersion: v1
entries:
  web:
  - apiVersion: v2
    name: web
    version: 1.0.0
    description: |
      line one

      line three
    maintainers:
    - name: Ada
      email: ada@example.com
    annotations:
      category: Web
    urls:
    - web-1.0.0.tgz
    created: 2026-01-01T00:00:00Z
    digest: ab
generated: "2026-12-04T00:00:00Z"
"#;
        assert_eq!(text, want);
    }
}
