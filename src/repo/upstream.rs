//! HTTP client for one upstream: base URL, Basic credentials, and the Bearer token challenge
//! flow (`WWW-Authenticate: Bearer realm=…,service=…,scope=…`) with tokens cached per scope
//! until they expire. See the distribution token spec:
//! <https://distribution.github.io/distribution/spec/auth/token/>

use super::budget::{Budget, BudgetStatus};
use super::{RepoError, UpstreamRequest};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Client, Method, Response, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use url::Url;

pub struct Upstream {
    base: Url,
    client: Client,
    credentials: Option<(String, String)>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    budget: Budget,
    metadata_timeout: Duration,
    /// Set when a request timed out: until then the upstream is not asked (see `went_silent`).
    silent_until: Mutex<Option<Instant>>,
}

#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: HashMap<String, String>,
}

impl Upstream {
    /// `metadata_timeout` bounds each document request and revalidation (blobs are bounded by
    /// their flight's timeout and a read timeout instead).
    pub fn new(
        base: Url,
        username: Option<String>,
        password: Option<String>,
        metadata_timeout: Duration,
    ) -> Result<Upstream, RepoError> {
        let client = Client::builder()
            .connect_timeout(metadata_timeout.min(Duration::from_secs(10)))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("binaryrepo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RepoError::Unreachable(e.to_string()))?;
        let credentials = username.map(|u| (u, password.unwrap_or_default()));
        Ok(Upstream {
            base,
            client,
            credentials,
            tokens: Mutex::new(HashMap::new()),
            budget: Budget::default(),
            metadata_timeout,
            silent_until: Mutex::new(None),
        })
    }

    /// An upstream that let a request time out is left alone for `metadata_timeout`: a hung
    /// upstream then costs one wait per window instead of one per request (a virtual
    /// repository would otherwise wait on it for every request, even for what another member
    /// has). Requests in the window fail at once as unreachable, so cached copies are served.
    pub fn went_silent(&self) {
        tracing::warn!(upstream = %self.base, "upstream timed out; not asked again for {:?}", self.metadata_timeout);
        *self.silent_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + self.metadata_timeout);
    }

    fn silent_for(&self) -> Option<Duration> {
        let mut until = self.silent_until.lock().unwrap_or_else(|e| e.into_inner());
        match *until {
            Some(at) if at > Instant::now() => Some(at - Instant::now()),
            Some(_) => {
                *until = None;
                None
            }
            None => None,
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn budget(&self) -> BudgetStatus {
        self.budget.status()
    }

    /// The bound on metadata requests; blob fetches wait no longer than this for headers.
    pub fn metadata_timeout(&self) -> Duration {
        self.metadata_timeout
    }

    pub fn host(&self) -> &str {
        self.base.host_str().unwrap_or("")
    }

    /// `host[:port]`, as registry hosts are written in image references.
    pub fn authority(&self) -> String {
        match self.base.port() {
            Some(port) => format!("{}:{port}", self.host()),
            None => self.host().to_string(),
        }
    }

    /// Send a request to `path` (relative to the base URL, or an absolute URL), answering one
    /// auth challenge. Credentials and tokens go to the upstream's own origin only: a URL on
    /// another host (a release download site named by an index) is fetched anonymously.
    pub async fn send(&self, method: Method, request: &UpstreamRequest) -> Result<Response, RepoError> {
        let url = self.url(&request.path)?;
        let own_origin = url.origin() == self.base.origin();
        let scope = request.auth_scope.as_deref().filter(|_| own_origin);
        // Documents and revalidations are small: bound them; blob bodies stream for as long as they take.
        let timeout = (request.document_limit.is_some() || method == Method::HEAD).then_some(self.metadata_timeout);
        let mut headers = HeaderMap::new();
        for value in &request.accept {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.append(ACCEPT, v);
            }
        }
        let cached = scope.and_then(|s| self.cached_token(s));
        let first = self.request(&method, &url, &headers, cached.as_deref(), timeout).await?;
        if first.status() != StatusCode::UNAUTHORIZED || !own_origin {
            return Ok(first);
        }
        let Some(challenge) =
            first.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge)
        else {
            return Ok(first);
        };
        let authorization = match challenge.scheme.as_str() {
            "bearer" => format!("Bearer {}", self.fetch_token(&challenge, scope).await?),
            "basic" => match self.basic() {
                Some(basic) => basic,
                None => return Ok(first),
            },
            _ => return Ok(first),
        };
        self.request(&method, &url, &headers, Some(&authorization), timeout).await
    }

    /// GET that must answer 200: a 404 or 410 is `NotFound`, anything else an `Upstream` error.
    pub async fn get(&self, request: &UpstreamRequest) -> Result<Response, RepoError> {
        let response = self.send(Method::GET, request).await?;
        match response.status() {
            StatusCode::OK => Ok(response),
            // 410 Gone is a miss too: some upstreams answer it for what they will never have.
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(RepoError::NotFound),
            status => Err(RepoError::Upstream { status: status.as_u16(), message: format!("GET {}", request.path) }),
        }
    }

    fn url(&self, path: &str) -> Result<Url, RepoError> {
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(path.trim_start_matches('/'))
            .map_err(|e| RepoError::Unreachable(format!("bad upstream path {path}: {e}")))
    }

    async fn request(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        authorization: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Response, RepoError> {
        // The rate-limit budget is the upstream's own; another host's limits are not ours to track.
        let own_origin = url.origin() == self.base.origin();
        if let Some(wait) = self.budget.blocked_for().filter(|_| own_origin) {
            let message = format!("rate limited; retrying upstream in {}s", wait.as_secs().max(1));
            return Err(RepoError::Upstream { status: 429, message });
        }
        if let Some(wait) = self.silent_for().filter(|_| own_origin) {
            let message = format!("upstream timed out recently; asked again in {}s", wait.as_secs().max(1));
            return Err(RepoError::Unreachable(message));
        }
        let mut request = self.client.request(method.clone(), url.clone()).headers(headers.clone());
        if let Some(auth) = authorization {
            request = request.header(AUTHORIZATION, auth);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                if e.is_timeout() && own_origin {
                    self.went_silent();
                }
                return Err(RepoError::Unreachable(error_chain(&e)));
            }
        };
        if own_origin {
            self.budget.observe(response.status().as_u16(), response.headers());
        }
        Ok(response)
    }

    fn basic(&self) -> Option<String> {
        use base64_lite::encode;
        self.credentials.as_ref().map(|(u, p)| format!("Basic {}", encode(format!("{u}:{p}").as_bytes())))
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        let (token, expires) = tokens.get(scope)?;
        (Instant::now() < *expires).then(|| format!("Bearer {token}"))
    }

    async fn fetch_token(&self, challenge: &Challenge, scope: Option<&str>) -> Result<String, RepoError> {
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| RepoError::Unreachable("Bearer challenge without realm".into()))?;
        let mut url = Url::parse(realm).map_err(|e| RepoError::Unreachable(format!("bad token realm {realm}: {e}")))?;
        let scope = challenge.params.get("scope").map(String::as_str).or(scope);
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.params.get("service") {
                query.append_pair("service", service);
            }
            if let Some(scope) = scope {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self.client.get(url);
        if let Some(basic) = self.basic() {
            request = request.header(AUTHORIZATION, basic);
        }
        let response = request.send().await.map_err(|e| RepoError::Unreachable(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(RepoError::Upstream {
                status: response.status().as_u16(),
                message: "token request refused".into(),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let reply: TokenReply =
            response.json().await.map_err(|e| RepoError::Unreachable(format!("bad token reply: {e}")))?;
        let token = reply
            .token
            .or(reply.access_token)
            .ok_or_else(|| RepoError::Unreachable("token reply without token".into()))?;
        // Renew a little early so a token never expires between check and use.
        let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(60).saturating_sub(10).max(5));
        if let (Some(scope), Ok(mut tokens)) = (scope, self.tokens.lock()) {
            tokens.insert(scope.to_string(), (token.clone(), Instant::now() + lifetime));
        }
        Ok(token)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Parse `Bearer realm="…",service="…",scope="…"` (quoted values may contain commas).
fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

/// Minimal standard base64 for Basic credentials (avoids a dependency for one line).
mod base64_lite {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let c = parse_challenge(r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:library/redis:pull,push""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.com/token");
        assert_eq!(c.params["scope"], "repository:library/redis:pull,push");
        let basic = parse_challenge(r#"Basic realm=registry"#).unwrap();
        assert_eq!(basic.scheme, "basic");
        assert_eq!(basic.params["realm"], "registry");
    }

    #[test]
    fn base64() {
        assert_eq!(base64_lite::encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_lite::encode(b"a"), "YQ==");
        assert_eq!(base64_lite::encode(b"ab"), "YWI=");
    }

    #[test]
    fn joins_paths_under_base() {
        let up = Upstream::new(Url::parse("http://127.0.0.1:5000/mirror").unwrap(), None, None, Duration::from_secs(1))
            .unwrap();
        assert_eq!(up.url("/v2/x/manifests/1").unwrap().as_str(), "http://127.0.0.1:5000/mirror/v2/x/manifests/1");
        // Absolute URLs (charts an index places on another host) are taken as they are.
        assert_eq!(up.url("http://127.0.0.2:81/a.tgz").unwrap().as_str(), "http://127.0.0.2:81/a.tgz");
    }
}
