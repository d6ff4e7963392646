//! One request at a time per upload session. A chunk, the final `PUT` and a cancel of the
//! same session must not overlap: a chunk still writing while the upload is published would
//! write into (or, rolling back, truncate) the published blob, and a commit racing a cancel
//! would publish what was cancelled. The second request is refused, not queued: a client that
//! stalls mid-body must not hold others waiting. Per process; several nodes over one database
//! need a database lease instead.

use super::RepoError;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Claims(Arc<Mutex<HashSet<String>>>);

/// Held while a request works on an upload session; released on drop.
pub struct Claim {
    held: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Claims {
    pub fn claim(&self, key: &str) -> Result<Claim, RepoError> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(key.to_string()) {
            return Err(RepoError::Busy(key.to_string()));
        }
        Ok(Claim { held: self.0.clone(), key: key.to_string() })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_until_the_first_is_dropped() {
        let claims = Claims::default();
        let first = claims.claim("u1").expect("free");
        assert!(matches!(claims.claim("u1"), Err(RepoError::Busy(_))));
        assert!(claims.claim("u2").is_ok(), "other sessions are independent");
        drop(first);
        assert!(claims.claim("u1").is_ok());
    }
}
