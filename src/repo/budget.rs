//! The upstream's request budget: `RateLimit-Limit`/`RateLimit-Remaining` (as Docker Hub sends
//! them, `100;w=21600`) and `Retry-After` on 429. After a 429 nothing is sent upstream until
//! the wait is over, so a rate-limited upstream never sees a retry storm from us.

use reqwest::header::HeaderMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const DEFAULT_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Budget {
    state: Mutex<State>,
}

#[derive(Default, Clone)]
struct State {
    limit: Option<u64>,
    remaining: Option<u64>,
    blocked_until: Option<Instant>,
}

/// What operators see of an upstream's budget.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct BudgetStatus {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Seconds until requests are sent upstream again after a 429.
    pub blocked_for_secs: u64,
}

impl Budget {
    /// How long to hold off, if a 429 told us to wait.
    pub fn blocked_for(&self) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.blocked_until.and_then(|until| until.checked_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }

    pub fn observe(&self, status: u16, headers: &HeaderMap) {
        let number = |name: &str| {
            let raw = headers.get(name)?.to_str().ok()?;
            raw.split(';').next()?.trim().parse::<u64>().ok()
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limit) = number("ratelimit-limit") {
            state.limit = Some(limit);
        }
        if let Some(remaining) = number("ratelimit-remaining") {
            state.remaining = Some(remaining);
        }
        if status == 429 {
            let wait = number("retry-after").map(Duration::from_secs).unwrap_or(DEFAULT_BACKOFF);
            state.blocked_until = Some(Instant::now() + wait);
            tracing::warn!("upstream rate limit reached; not asking it again for {}s", wait.as_secs());
        }
    }

    pub fn status(&self) -> BudgetStatus {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        BudgetStatus {
            limit: state.limit,
            remaining: state.remaining,
            blocked_for_secs: self.blocked_for().map_or(0, |d| d.as_secs().max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reads_docker_hub_headers_and_backs_off() {
        let budget = Budget::default();
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-limit", HeaderValue::from_static("100;w=21600"));
        headers.insert("ratelimit-remaining", HeaderValue::from_static("76;w=21600"));
        budget.observe(200, &headers);
        assert_eq!(budget.status(), BudgetStatus { limit: Some(100), remaining: Some(76), blocked_for_secs: 0 });
        assert!(budget.blocked_for().is_none());
        headers.insert("retry-after", HeaderValue::from_static("30"));
        budget.observe(429, &headers);
        let blocked = budget.blocked_for().unwrap();
        assert!(blocked <= Duration::from_secs(30) && blocked > Duration::from_secs(20));
    }
}
