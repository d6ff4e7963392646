//! Small documents (manifests, indexes, lists) kept in memory by blob digest. Blobs are
//! immutable and content-addressed, so an entry never goes stale; the cache is only bounded.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Manifests are a few KiB: 16 MiB holds thousands and keeps the server's footprint small.
const MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Default)]
pub struct DocumentCache {
    state: Mutex<(HashMap<String, Bytes>, usize)>,
}

impl DocumentCache {
    pub fn get(&self, sha256_hex: &str) -> Option<Bytes> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0.get(sha256_hex).cloned()
    }

    pub fn put(&self, sha256_hex: &str, bytes: Bytes) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.1 + bytes.len() > MAX_BYTES {
            // Start over rather than track recency: cheap, bounded, and hot documents come back.
            state.0.clear();
            state.1 = 0;
        }
        state.1 += bytes.len();
        state.0.insert(sha256_hex.to_string(), bytes);
    }
}
