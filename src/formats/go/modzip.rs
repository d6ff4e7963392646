//! Module zip checks, the rules of the Go modules reference ("Module zip files",
//! <https://go.dev/ref/mod#zip-files>): every file under `<module>@<version>/`, clean and
//! portable file paths, no two paths equal under case folding, go.mod only at the root,
//! size limits, and go.mod's `module` line naming the module. Runs on a spooled file, so
//! the zip is never held in memory; only go.mod (≤ 16 MiB) is read whole.

use super::module::{ModulePath, Version};
use std::collections::HashSet;
use std::io::{Read, Seek};

/// Limits of the Go module zip format (the x/mod zip package).
pub const MAX_ZIP: u64 = 500 << 20;
pub const MAX_GO_MOD: u64 = 16 << 20;
const MAX_LICENSE: u64 = 16 << 20;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid module zip: {0}")]
pub struct BadZip(pub String);

fn bad<T>(why: impl Into<String>) -> Result<T, BadZip> {
    Err(BadZip(why.into()))
}

/// Check a module zip for `module@version`; returns its go.mod, if it has one.
pub fn check<R: Read + Seek>(reader: R, module: &ModulePath, version: &Version) -> Result<Option<Vec<u8>>, BadZip> {
    let mut archive = zip::ZipArchive::new(reader).or_else(|e| bad(format!("not a zip file ({e})")))?;
    let prefix = format!("{module}@{}/", version.as_str());
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut go_mod = None;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).or_else(|e| bad(format!("unreadable entry {index} ({e})")))?;
        let full = file.name().or_else(|e| bad(format!("entry {index} has an unreadable name ({e})")))?.into_owned();
        let Some(name) = full.strip_prefix(&prefix) else {
            return bad(format!("{full:?} is not under {prefix:?} (every file must be)"));
        };
        let (name, is_dir) = match name.strip_suffix('/') {
            Some(dir) => (dir, true),
            None => (name, file.is_dir()),
        };
        if name.is_empty() && is_dir {
            continue;
        }
        check_file_path(name).or_else(|why| bad(format!("{full:?}: {why}")))?;
        if !seen.insert(name.to_lowercase()) {
            return bad(format!("{full:?} collides with another path (paths must differ beyond letter case)"));
        }
        if is_dir {
            continue;
        }
        total = total.saturating_add(file.size());
        if total > MAX_ZIP {
            return bad(format!("the files total more than {MAX_ZIP} bytes uncompressed"));
        }
        let base = name.rsplit('/').next().unwrap_or(name);
        if base.eq_ignore_ascii_case("go.mod") && name != "go.mod" {
            return bad(format!("{full:?}: go.mod must be spelled in lowercase and sit at the module root"));
        }
        if name == "LICENSE" && file.size() > MAX_LICENSE {
            return bad(format!("LICENSE is larger than {MAX_LICENSE} bytes"));
        }
        if name == "go.mod" {
            go_mod = Some(read_go_mod(&mut file)?);
        }
    }
    if let Some(text) = &go_mod {
        check_go_mod(text, module, version)?;
    }
    Ok(go_mod)
}

fn read_go_mod(file: &mut impl Read) -> Result<Vec<u8>, BadZip> {
    let mut buf = Vec::new();
    file.take(MAX_GO_MOD + 1).read_to_end(&mut buf).or_else(|e| bad(format!("go.mod cannot be read ({e})")))?;
    if buf.len() as u64 > MAX_GO_MOD {
        return bad(format!("go.mod is larger than {MAX_GO_MOD} bytes"));
    }
    Ok(buf)
}

/// go.mod's module line must name `module`; a +incompatible version has no go.mod.
pub fn check_go_mod(text: &[u8], module: &ModulePath, version: &Version) -> Result<(), BadZip> {
    if version.is_incompatible() {
        return bad(format!(
            "{} has a go.mod file, so it must use a /v{} module path instead of +incompatible",
            version.as_str(),
            version.major()
        ));
    }
    let text = std::str::from_utf8(text).or_else(|_| bad("go.mod is not UTF-8"))?;
    match module_line(text) {
        Some(declared) if declared == module.as_str() => Ok(()),
        Some(declared) => bad(format!("go.mod declares module {declared:?}, not {:?}", module.as_str())),
        None => bad("go.mod has no module line"),
    }
}

/// The path on go.mod's `module` line (quoted or not, comments stripped).
pub fn module_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split("//").next().unwrap_or("").trim();
        let rest = line.strip_prefix("module")?;
        if !rest.starts_with([' ', '\t', '"']) {
            return None;
        }
        let path = rest.trim().trim_matches(|c| c == '"' || c == '`');
        (!path.is_empty()).then(|| path.to_string())
    })
}

/// A file path inside a module (module.CheckFilePath, simplified): relative, clean, no empty
/// elements, no characters that are special on some file system or shell.
pub fn check_file_path(name: &str) -> Result<(), String> {
    if name.starts_with('/') || name.contains('\\') {
        return Err("file paths must be relative and use '/'".into());
    }
    for element in name.split('/') {
        if element.is_empty() || element == "." || element == ".." {
            return Err("file paths must be clean (no empty, '.' or '..' elements)".into());
        }
        if let Some(c) = element.chars().find(|c| c.is_control() || "\"'*<>?`|:".contains(*c)) {
            return Err(format!("character {c:?} is not allowed in file paths"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "modzip_tests.rs"]
mod tests;

/// `(module, version)` from the first entry's `<module>@<version>/` prefix, for uploads
/// that do not name them.
pub fn prefix_of<R: Read + Seek>(reader: R) -> Option<(String, String)> {
    let mut archive = zip::ZipArchive::new(reader).ok()?;
    let first = archive.by_index(0).ok()?;
    let name = first.name().ok()?;
    let (module, rest) = name.split_once('@')?;
    let (version, _) = rest.split_once('/')?;
    Some((module.to_string(), version.to_string()))
}
