//! `[cluster]`: several nodes over one PostgreSQL database. With `advertise_url` set, a node
//! missing a remote blob takes a lease before fetching it; the other nodes stream it from the
//! lease holder at its advertised URL instead of fetching it again.

use serde::Deserialize;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// How the other nodes reach this one (`http://10.0.0.5:8081`); unset = no cluster coalescing.
    pub advertise_url: Option<Url>,
    /// A fetching node renews its lease every third of this; a dead node's fetch is taken over
    /// after at most this long.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { advertise_url: None, lease_ttl: default_lease_ttl() }
    }
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}
