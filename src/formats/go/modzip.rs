//! Module zip checks, the rules of the Go modules reference ("Module zip files",
//! <https://go.dev/ref/mod#zip-files>): every file under `<module>@<version>/`, clean and
//! portable file paths, no two paths equal under case folding, go.mod only at the root,
//! size limits, and go.mod's `module` line naming the module. Runs on a spooled file, so
//! the zip is never held in memory; only go.mod (≤ 16 MiB) is read whole.

use super::module::{ModulePath, Version};
use std::collections::HashMap;
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

/// Check a module zip for `module@version`; returns its go.mod, if it has one. Every entry
/// is inflated (CRC and declared size verified, the actual total bounded by [`MAX_ZIP`]),
/// so blocking: run it off the async runtime.
pub fn check<R: Read + Seek>(reader: R, module: &ModulePath, version: &Version) -> Result<Option<Vec<u8>>, BadZip> {
    let mut archive = zip::ZipArchive::new(reader).or_else(|e| bad(format!("not a zip file ({e})")))?;
    if archive.has_duplicate_names() {
        return bad("the zip has two entries with the same name");
    }
    let prefix = format!("{module}@{}/", version.as_str());
    let mut seen = HashMap::new();
    let mut total = 0u64;
    let mut go_mod = None;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).or_else(|e| bad(format!("unreadable entry {index} ({e})")))?;
        let full = match std::str::from_utf8(file.name_raw()) {
            Ok(name) => name.to_string(),
            Err(_) => return bad(format!("entry {index} has a name that is not valid UTF-8")),
        };
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
        collisions(&mut seen, name, is_dir).or_else(|why| bad(format!("{full:?}: {why}")))?;
        if is_dir {
            continue;
        }
        let base = name.rsplit('/').next().unwrap_or(name);
        if base.eq_ignore_ascii_case("go.mod") && name != "go.mod" {
            return bad(format!("{full:?}: go.mod must be spelled in lowercase and sit at the module root"));
        }
        if name == "LICENSE" && file.size() > MAX_LICENSE {
            return bad(format!("LICENSE is larger than {MAX_LICENSE} bytes"));
        }
        if file.size() > MAX_ZIP - total {
            return bad(format!("the files total more than {MAX_ZIP} bytes uncompressed"));
        }
        let declared = file.size();
        let actual = if name == "go.mod" {
            let text = read_go_mod(&mut file)?;
            let len = text.len() as u64;
            go_mod = Some(text);
            // Drain the rest so the CRC is checked even for a go.mod read to its limit.
            len + inflate(&mut file, &full, MAX_ZIP - total - len)?
        } else {
            inflate(&mut file, &full, MAX_ZIP - total)?
        };
        if actual != declared {
            return bad(format!("{full:?} inflates to {actual} bytes, but its header says {declared}"));
        }
        total += actual;
    }
    if let Some(text) = &go_mod {
        check_go_mod(text, module, version)?;
    }
    Ok(go_mod)
}

/// x/mod's collision check: `path` and each of its parent directories must not equal another
/// entry under case folding, nor be a file here and a directory there. `seen` maps folded
/// paths to (path, is a directory).
fn collisions(seen: &mut HashMap<String, (String, bool)>, path: &str, is_dir: bool) -> Result<(), String> {
    let mut path = path;
    let mut is_dir = is_dir;
    loop {
        match seen.get(&path.to_lowercase()) {
            Some((other, _)) if other != path => {
                return Err(format!("{other:?} and {path:?} differ only in letter case (paths must differ beyond it)"))
            }
            Some((_, was_dir)) if *was_dir != is_dir => return Err(format!("{path:?} is both a file and a directory")),
            Some(_) if !is_dir => return Err(format!("{path:?} appears twice")),
            Some(_) => {}
            None => {
                seen.insert(path.to_lowercase(), (path.to_string(), is_dir));
            }
        }
        match path.rsplit_once('/') {
            Some((parent, _)) => (path, is_dir) = (parent, true),
            None => return Ok(()),
        }
    }
}

/// Read an entry to its end (the zip reader checks its CRC there), refusing more than `room` bytes.
fn inflate(file: &mut impl Read, full: &str, room: u64) -> Result<u64, BadZip> {
    let read = std::io::copy(&mut file.take(room.saturating_add(1)), &mut std::io::sink())
        .or_else(|e| bad(format!("{full:?} is corrupt ({e})")))?;
    if read > room {
        return bad(format!("the files total more than {MAX_ZIP} bytes uncompressed"));
    }
    Ok(read)
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

/// The path on go.mod's `module` directive, as the go command's parser reads it: `//`
/// comments stripped, the path bare, `"quoted"` or `` `raw` ``, on the directive's line or
/// as the single line of a block (`module (` … `)`).
pub fn module_line(text: &str) -> Option<String> {
    let mut lines = text.lines().map(|line| line.split("//").next().unwrap_or("").trim());
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("module") else { continue };
        if !rest.starts_with([' ', '\t', '"', '`', '(']) {
            continue;
        }
        let rest = rest.trim();
        if rest == "(" {
            let mut inside = lines.by_ref().take_while(|l| *l != ")").filter(|l| !l.is_empty());
            return inside.next().and_then(unquote);
        }
        return unquote(rest);
    }
    None
}

/// A bare, `"quoted"` or `` `raw` `` module path; None when empty or not one token.
fn unquote(token: &str) -> Option<String> {
    let path = if let Some(inner) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        inner
    } else if let Some(inner) = token.strip_prefix('`').and_then(|t| t.strip_suffix('`')) {
        inner
    } else {
        token
    };
    (!path.is_empty() && !path.contains(char::is_whitespace) && !path.contains(['"', '`'])).then(|| path.to_string())
}

/// Names Windows reserves, with or without an extension, in any letter case.
const WINDOWS_RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// A file path inside a module, by the rules of x/mod's `module.CheckFilePath`: relative and
/// clean, no empty elements, no element made only of dots or ending in a dot, only letters,
/// digits, spaces and `!#$%&()+,-.=@[]^_{}~`, and no element whose part before the first dot
/// is a name Windows reserves (`CON`, `aux.go`, `Com1.txt`, …). (UTF-8 is checked by the caller.)
pub fn check_file_path(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file path".into());
    }
    for element in name.split('/') {
        if element.is_empty() {
            return Err("file paths must be clean (no empty elements, no leading or trailing '/')".into());
        }
        if element.bytes().all(|b| b == b'.') {
            return Err(format!("file paths must be clean (no {element:?} elements)"));
        }
        if element.ends_with('.') {
            return Err(format!("path element {element:?} ends with a dot"));
        }
        if let Some(c) = element.chars().find(|c| !file_name_ok(*c)) {
            return Err(format!("character {c:?} is not allowed in file paths"));
        }
        let short = element.split('.').next().unwrap_or(element);
        if WINDOWS_RESERVED.iter().any(|r| r.eq_ignore_ascii_case(short)) {
            return Err(format!("{short:?} is a reserved file name on Windows (also with an extension)"));
        }
    }
    Ok(())
}

/// ASCII letters, digits, space and `!#$%&()+,-.=@[]^_{}~`; beyond ASCII, letters only.
fn file_name_ok(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || "!#$%&()+,-.=@[]^_{}~ ".contains(c);
    }
    // Go's unicode.IsLetter: alphabetic, but not letter-like numbers (Nl, e.g. Roman numerals).
    c.is_alphabetic() && !c.is_numeric()
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
