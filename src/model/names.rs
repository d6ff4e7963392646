//! Repository names: the key users put in URLs and config (`docker-local`).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid repository name {0:?}: use 1-64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit")]
pub struct NameError(pub String);

impl FromStr for RepoName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if valid {
            Ok(RepoName(s.to_string()))
        } else {
            Err(NameError(s.to_string()))
        }
    }
}

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn repo_names() {
        for ok in ["docker", "docker-local", "a.b_c1"] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
        for bad in ["", "-x", "Docker", "a/b", &"x".repeat(65)] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
    }
}
