//! Module paths and versions as the go command spells them (Go modules reference,
//! "Module paths", "Versions" and "Module path escaping" in the GOPROXY protocol section,
//! <https://go.dev/ref/mod#goproxy-protocol>). Pure parsing and ordering, no I/O.
//!
//! In URLs a capital letter is written `!` + its lowercase form (`example.com/!big!corp`);
//! `%21` is accepted for `!`. Paths are stored decoded, so one module has one catalog prefix.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidModule(pub String);

/// A checked module path in its real case (`example.com/BigCorp/Lib`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModulePath(String);

impl ModulePath {
    /// Parse the escaped form used in URLs (`!x` for `X`; `%21` already decoded by the router).
    pub fn from_escaped(escaped: &str) -> Result<ModulePath, InvalidModule> {
        let path = unescape(escaped).ok_or_else(|| {
            InvalidModule(format!("malformed module path {escaped:?}: capitals are written '!' + lowercase"))
        })?;
        ModulePath::new(&path)
    }

    /// Check a module path in its real case (module.CheckPath's rules).
    pub fn new(path: &str) -> Result<ModulePath, InvalidModule> {
        let bad = |why: &str| Err(InvalidModule(format!("malformed module path {path:?}: {why}")));
        if path.is_empty() || path.len() > 1024 {
            return bad("empty or too long");
        }
        let first = path.split('/').next().unwrap_or("");
        if !first.contains('.') || first.starts_with('-') {
            return bad("the first path element must be a domain name (with a dot, not starting with '-')");
        }
        if first.bytes().any(|b| b.is_ascii_uppercase()) {
            return bad("the first path element must be lowercase");
        }
        for element in path.split('/') {
            let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
            if element.is_empty() || element.starts_with('.') || element.ends_with('.') || !element.chars().all(allowed)
            {
                return bad(
                    "each element needs letters, digits, '-', '.', '_' or '~', not starting or ending with '.'",
                );
            }
        }
        if split_major(path).is_none() {
            return bad("invalid major version suffix (/v0 and /v1 are not allowed, /vN needs N >= 2)");
        }
        Ok(ModulePath(path.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The escaped form for URLs: capitals as `!` + lowercase.
    pub fn escaped(&self) -> String {
        escape(&self.0)
    }

    /// The major version suffix: `/v2`, `.v1` (gopkg.in) or empty.
    pub fn major_suffix(&self) -> &str {
        split_major(&self.0).map_or("", |(_, major)| major)
    }
}

impl std::fmt::Display for ModulePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `!x` → `X`; capitals and a `!` before anything but a lowercase letter are invalid.
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '!' => match chars.next() {
                Some(l) if l.is_ascii_lowercase() => out.push(l.to_ascii_uppercase()),
                _ => return None,
            },
            c if c.is_ascii_uppercase() => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// (prefix, major suffix) like module.SplitPathVersion; None for an invalid suffix.
fn split_major(path: &str) -> Option<(&str, &str)> {
    if let Some(rest) = path.strip_prefix("gopkg.in/") {
        let dot = rest.rfind(".v")?;
        let major = &rest[dot + 2..];
        let digits = major.strip_suffix("-unstable").unwrap_or(major);
        let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with("0")
            || digits == "0";
        let at = "gopkg.in/".len() + dot;
        return ok.then(|| (&path[..at], &path[at..]));
    }
    let Some((prefix, last)) = path.rsplit_once('/') else { return Some((path, "")) };
    let Some(digits) = last.strip_prefix('v').filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) else {
        return Some((path, ""));
    };
    if digits.starts_with('0') && digits != "0" {
        return Some((path, ""));
    }
    match digits {
        "0" | "1" => None,
        _ => Some((prefix, &path[prefix.len()..])),
    }
}

/// A canonical module version: `vMAJOR.MINOR.PATCH[-pre][+incompatible]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    raw: String,
    semver: semver::Version,
}

impl Version {
    /// Only canonical semantic versions (what `.mod`/`.zip` and `@v/list` carry).
    pub fn parse(raw: &str) -> Option<Version> {
        let semver = semver::Version::parse(raw.strip_prefix('v')?).ok()?;
        if !(semver.build.is_empty() || semver.build.as_str() == "incompatible") {
            return None;
        }
        let version = Version { raw: raw.to_string(), semver };
        // Shaped like a pseudo-version but with no real commit time: the go command refuses it.
        if version.pseudo_stamp().is_some_and(|stamp| civil_time(stamp).is_none()) {
            return None;
        }
        Some(version)
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn major(&self) -> u64 {
        self.semver.major
    }

    pub fn is_incompatible(&self) -> bool {
        self.semver.build.as_str() == "incompatible"
    }

    pub fn is_prerelease(&self) -> bool {
        !self.semver.pre.is_empty()
    }

    /// A pseudo-version (`v0.0.0-20190102150405-abcdef123456` and its two other forms).
    pub fn is_pseudo(&self) -> bool {
        self.pseudo_time().is_some()
    }

    /// The commit time of a pseudo-version as RFC 3339 (`2019-01-02T15:04:05Z`).
    pub fn pseudo_time(&self) -> Option<String> {
        let (year, month, day, hour, minute, second) = civil_time(self.pseudo_stamp()?)?;
        Some(format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"))
    }

    /// The 14-digit `yyyymmddhhmmss` of a version shaped like a pseudo-version (its three forms).
    fn pseudo_stamp(&self) -> Option<&str> {
        let (head, rev) = self.semver.pre.as_str().rsplit_once('-')?;
        if rev.is_empty() || !rev.bytes().all(|b| b.is_ascii_alphanumeric()) || head.len() < 14 {
            return None;
        }
        let (before, stamp) = head.split_at(head.len() - 14);
        if !stamp.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let base_zero = self.semver.minor == 0 && self.semver.patch == 0;
        if !((before.is_empty() && base_zero) || before == "0." || before.ends_with(".0.")) {
            return None;
        }
        Some(stamp)
    }

    /// Whether this version may be published under a module path with `suffix` (`/v2`, `.v1`, "").
    pub fn matches_major(&self, suffix: &str) -> bool {
        if suffix.is_empty() {
            return self.major() <= 1 && !self.is_incompatible() || self.major() >= 2 && self.is_incompatible();
        }
        if self.is_incompatible() {
            return false;
        }
        let wanted = suffix.trim_start_matches(['/', '.']).trim_end_matches("-unstable");
        let ours = format!("v{}", self.major());
        // gopkg.in/….v1 also carries v0 pseudo-versions (module.MatchPathMajor).
        wanted == ours || (wanted == "v1" && suffix.starts_with('.') && self.raw.starts_with("v0.0.0-"))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.semver.cmp_precedence(&other.semver).then_with(|| self.raw.cmp(&other.raw))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What `@latest` answers from a set of versions: the highest release, else the highest
/// pre-release, else the pseudo-version with the newest commit time, as the Go module mirror
/// does (Go modules reference, "Version queries"); semver order breaks a tie.
pub fn latest<'a>(versions: impl IntoIterator<Item = &'a Version>) -> Option<&'a Version> {
    let versions: Vec<&Version> = versions.into_iter().collect();
    let best = |keep: &dyn Fn(&Version) -> bool| versions.iter().copied().filter(|v| keep(v)).max();
    best(&|v| !v.is_prerelease() && !v.is_pseudo())
        .or_else(|| best(&|v| v.is_prerelease() && !v.is_pseudo()))
        .or_else(|| versions.iter().copied().filter_map(|v| Some((v.pseudo_stamp()?, v))).max().map(|(_, v)| v))
}

/// `yyyymmddhhmmss` as (year, month, day, hour, minute, second) when it is a real UTC time.
fn civil_time(stamp: &str) -> Option<(u32, u32, u32, u32, u32, u32)> {
    let n = |a: usize, b: usize| stamp.get(a..b)?.parse::<u32>().ok();
    let (year, month, day) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (hour, minute, second) = (n(8, 10)?, n(10, 12)?, n(12, 14)?);
    (stamp.len() == 14 && valid_date(year, month, day) && hour < 24 && minute < 60 && second < 60)
        .then_some((year, month, day, hour, minute, second))
}

fn valid_date(year: u32, month: u32, day: u32) -> bool {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// Whether `s` is an RFC 3339 date-time as Go's `time.Time` JSON form is parsed
/// (`2006-01-02T15:04:05[.frac](Z|±hh:mm)`).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let n = |a: usize, l: usize| s[a..a + l].parse::<u32>().unwrap_or(u32::MAX);
    if b.len() < 20 || !digits(0..4) || !digits(5..7) || !digits(8..10) || !digits(11..13) || !digits(14..16) {
        return false;
    }
    if !digits(17..19) || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' {
        return false;
    }
    if b[16] != b':' || !valid_date(n(0, 4), n(5, 2), n(8, 2)) || n(11, 2) > 23 || n(14, 2) > 59 || n(17, 2) > 59 {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return false;
        }
        rest = &frac[len..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) && n(s.len() - 5, 2) < 24 && n(s.len() - 2, 2) < 60
        }
        _ => false,
    }
}

/// The `@v/list` body: sorted, deduplicated, without pseudo-versions, one per line.
pub fn list_body<'a>(versions: impl IntoIterator<Item = &'a Version>) -> String {
    let mut versions: Vec<&Version> = versions.into_iter().filter(|v| !v.is_pseudo()).collect();
    versions.sort();
    versions.dedup_by(|a, b| a.raw == b.raw);
    versions.iter().map(|v| format!("{}\n", v.raw)).collect()
}

#[cfg(test)]
#[path = "module_tests.rs"]
mod tests;
