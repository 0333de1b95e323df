//! `parapet-config`: the configuration model of a Parapet edge, shared by
//! `parapet-edge` (its TOML file, and the distributions it gets from the
//! controller) and `parapet-controller` (which accepts a distribution only
//! when an edge would): where to listen, what to cache, and the
//! distributions with their behaviors and plugin chains.
//!
//! Loading is two steps: [`EdgeConfig::parse`] turns the text into types
//! (unknown fields and wrong types are refused with the field's path), and
//! [`EdgeConfig::validate`] checks what types cannot say (unique domains,
//! plugin references, TTL order, ...), again naming the field.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use parapet_host::{FailurePolicy, PluginLimits};
use serde::Deserialize;

pub mod domains;
pub mod limits;
pub mod network;
pub mod pattern;

use crate::limits::PluginMaxima;
use crate::network::{AddressPolicy, UpstreamConfig};
use crate::pattern::PathPattern;

/// Why a configuration was refused: the file, the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file it came from, when it came from one.
    pub file: Option<PathBuf>,
    /// The field, e.g. `distribution[0].behavior[1].cache.min_ttl`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl ConfigError {
    fn at(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration of one edge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// This point of presence.
    pub pop: PopConfig,
    /// Where viewers connect.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// The admin API (metrics, health, purge).
    pub admin: Option<AdminConfig>,
    /// Cache sizes and limits.
    #[serde(default)]
    pub cache: CacheConfig,
    /// A MaxMind-format database for plugins' client location.
    pub geoip: Option<PathBuf>,
    /// A regional shield that misses go to before the origin.
    pub shield: Option<String>,
    /// The other edges of this PoP (`host:port`), which share one cache.
    #[serde(default)]
    pub peers: Vec<String>,
    /// This edge's own `host:port` as its peers know it; needed with `peers`.
    pub peer_address: Option<String>,
    /// TLS between the tiers: this edge's own certificate, and how the
    /// shield's and peers' are checked.
    #[serde(default)]
    pub tier_tls: TierTlsConfig,
    /// Connection limits and timeouts of the viewer side.
    #[serde(default)]
    pub server: ServerConfig,
    /// Which addresses origins, the shield and peers may have.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// The most a distribution's plugins may ask for.
    #[serde(default)]
    pub plugin_limits: PluginMaxima,
    /// Each distribution's share of this edge's resources.
    #[serde(default)]
    pub shares: SharesConfig,
    /// What this edge serves.
    #[serde(default, rename = "distribution")]
    pub distributions: Vec<DistributionConfig>,
}

/// Identity and place of the point of presence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopConfig {
    /// Short id, e.g. `fra1`; shown to plugins and in logs.
    pub id: String,
    /// Latitude in degrees.
    pub latitude: Option<f64>,
    /// Longitude in degrees.
    pub longitude: Option<f64>,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port, e.g. `0.0.0.0:443`.
    pub address: SocketAddr,
    /// Terminate TLS (certificates chosen by SNI from the distributions).
    #[serde(default)]
    pub tls: bool,
    /// Read a PROXY protocol header (v1 or v2) at the start of each
    /// connection, sent by a balancer in `server.trusted_proxies`; the
    /// client address it names is the viewer's. Connections from other
    /// addresses are closed.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address and port, e.g. `127.0.0.1:9901`.
    pub address: SocketAddr,
    /// Bearer token for purge and prewarm; metrics and health need none.
    /// On an address other than loopback, see [`AdminConfig::check_token`].
    pub token: Option<String>,
    /// A file holding the token, instead of `token`.
    pub token_file: Option<PathBuf>,
}

/// The fewest characters an admin token reachable beyond loopback may have.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// The token of `examples/edge.toml` (and `make demo`), refused beyond
/// loopback: it is public.
pub const EXAMPLE_ADMIN_TOKEN: &str = "change-me";

impl AdminConfig {
    /// Checks `token` (the `token` field's, or the contents of
    /// `token_file`) for this listener: on an address other than loopback
    /// it must not be the example's and must have at least
    /// [`MIN_ADMIN_TOKEN_CHARS`] characters. Any token does on loopback.
    pub fn check_token(&self, token: &str) -> Result<(), String> {
        if self.address.ip().to_canonical().is_loopback() {
            return Ok(());
        }
        if token == EXAMPLE_ADMIN_TOKEN {
            return Err(format!(
                "is the example configuration's token `{EXAMPLE_ADMIN_TOKEN}`; the admin listener \
                 on {} is reachable beyond loopback: choose a secret one of at least \
                 {MIN_ADMIN_TOKEN_CHARS} characters",
                self.address
            ));
        }
        let chars = token.chars().count();
        if chars < MIN_ADMIN_TOKEN_CHARS {
            return Err(format!(
                "has {chars} characters; the admin listener on {} is reachable beyond loopback: \
                 its token needs at least {MIN_ADMIN_TOKEN_CHARS}",
                self.address
            ));
        }
        Ok(())
    }
}

/// Limits and timeouts of viewer connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Time a viewer has to send a request's headers, in milliseconds.
    pub header_timeout_ms: u64,
    /// Largest request head (request line and headers) in bytes; larger
    /// ones are answered 431.
    pub max_header_bytes: usize,
    /// On SIGTERM, how long in-flight requests may take to finish, in
    /// milliseconds.
    pub shutdown_grace_ms: u64,
    /// How long a request waits for another request fetching the same
    /// object before it goes upstream itself, in milliseconds.
    pub collapse_wait_ms: u64,
    /// Worker threads serving requests; 0 means one per CPU. Read at
    /// start only.
    pub workers: usize,
    /// Most connections each listener holds open at once, split evenly
    /// among the workers; more wait in the kernel's backlog until one
    /// closes. Read at start only.
    pub max_connections: usize,
    /// Most requests in flight on one HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
    /// How often an HTTP/2 connection is pinged, in milliseconds; 0 never.
    pub h2_keepalive_interval_ms: u64,
    /// How long a ping may go unanswered before the connection is closed,
    /// in milliseconds.
    pub h2_keepalive_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed, in
    /// milliseconds (HTTP/1.1 connections are also held to
    /// `header_timeout_ms` between requests).
    pub idle_timeout_ms: u64,
    /// Time a viewer has to send a request body the plugins read, in
    /// milliseconds; a slower one is answered 408.
    pub body_timeout_ms: u64,
    /// Balancers and proxies in front of the edge (CIDR): their
    /// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and
    /// `Forwarded` are kept and their PROXY protocol headers read. From
    /// any other address the edge sets those fields itself.
    pub trusted_proxies: Vec<IpNet>,
    /// Edges that use this one as their shield (CIDR): like trusted
    /// proxies, and their answers keep the cache-targeted fields
    /// (`CDN-Cache-Control`, `Surrogate-Control`, `Surrogate-Key`), which
    /// other viewers never see. Peers count without being listed.
    pub downstream_edges: Vec<IpNet>,
    /// A secret shared by the edges of a tier, at least 16 characters:
    /// sent to the shield and peers in `x-parapet-tier`, and a request
    /// carrying it counts as coming from an edge whatever its address.
    pub tier_secret: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_timeout_ms: 10_000,
            max_header_bytes: 32 << 10,
            shutdown_grace_ms: 10_000,
            collapse_wait_ms: 10_000,
            workers: 0,
            max_connections: 10_000,
            h2_max_concurrent_streams: 128,
            h2_keepalive_interval_ms: 30_000,
            h2_keepalive_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 10_000,
            trusted_proxies: Vec::new(),
            downstream_edges: Vec::new(),
            tier_secret: None,
        }
    }
}

/// Each distribution's share of resources every distribution on the edge
/// draws from; past its share a distribution's requests get 503, and only
/// its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharesConfig {
    /// Plugin instances one distribution's requests may hold at once (of
    /// the edge's pool of 1000).
    pub plugin_instances: usize,
    /// Fetches one distribution may have in flight to its upstreams at once.
    pub origin_fetches: usize,
    /// Bytes of response bodies one distribution's requests may hold at
    /// once to show them to plugins (each body reserves its length, or the
    /// plugins' body limit when the length is not known in advance).
    pub plugin_body_bytes: usize,
}

impl Default for SharesConfig {
    fn default() -> Self {
        SharesConfig {
            plugin_instances: 250,
            origin_fetches: 256,
            plugin_body_bytes: 32 << 20,
        }
    }
}

/// Cache sizes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Memory tier size in bytes.
    pub memory_bytes: u64,
    /// Directory of the disk tier; none means memory only.
    pub disk_dir: Option<PathBuf>,
    /// Disk tier size in bytes.
    pub disk_bytes: u64,
    /// Responses larger than this are served but not stored.
    pub max_object_bytes: u64,
    /// Whether an edge keeps its own copy of what it fetched from the peer
    /// that owns a key.
    pub store_peer_copies: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_bytes: 256 << 20,
            disk_dir: None,
            disk_bytes: 4 << 30,
            max_object_bytes: 32 << 20,
            store_peer_copies: false,
        }
    }
}

/// A customer's site: the domains it answers for, its origins, plugins and
/// behaviors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributionConfig {
    /// Unique id.
    pub id: String,
    /// The customer that owns it.
    pub customer: String,
    /// Host names it serves: `www.example.com`, `*.example.com` for any
    /// one label in front of `example.com`, or `*` for any host that no
    /// other distribution serves.
    pub domains: Vec<String>,
    /// Where misses are fetched from, tried in order.
    #[serde(rename = "origin")]
    pub origins: Vec<OriginConfig>,
    /// Certificate and key (PEM) for its domains on TLS listeners.
    pub tls: Option<TlsConfig>,
    /// The customer's key-value data for plugins: a JSON object of strings.
    pub kv: Option<PathBuf>,
    /// Plugins, referred to by name from the behaviors' chains.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
    /// Behaviors by path pattern, first match wins; one must be `*`.
    #[serde(rename = "behavior")]
    pub behaviors: Vec<BehaviorConfig>,
    /// Send the origin the normalised path (percent-encoded unreserved
    /// characters decoded, dot segments removed, repeated slashes merged)
    /// instead of the path as received. Behaviors, guards and plugins see
    /// the normalised path either way.
    #[serde(default)]
    pub normalize_upstream_path: bool,
}

/// An origin server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Base URL, e.g. `https://origin.example.com` or `http://10.0.0.5:8080`.
    pub url: String,
    /// Extra CA certificates (PEM) to trust for this origin.
    pub ca_file: Option<PathBuf>,
    /// Connect timeout in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed for the response headers, in milliseconds.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// The `Host` this origin is sent (e.g. `bucket.s3.example.com`);
    /// unset, the viewer's host goes upstream.
    pub host_header: Option<String>,
}

fn default_connect_timeout_ms() -> u64 {
    3_000
}

fn default_read_timeout_ms() -> u64 {
    30_000
}

/// TLS between edges, their shield and their peers. A shield is reached
/// over TLS when its URL is `https://`; peers when `peers` is set (their
/// `peer_address` is then a TLS listener).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierTlsConfig {
    /// This edge's certificate chain (PEM) for the names other edges reach
    /// it by: served on its TLS listeners to handshakes without SNI, or
    /// whose SNI it covers and no distribution's domain matches.
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
    /// The authority (PEM) the shield's and peers' certificates are
    /// checked against, besides the usual roots.
    pub ca_file: Option<PathBuf>,
    /// Reach peers over https.
    #[serde(default)]
    pub peers: bool,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// A plugin: a component with its configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name used in chains, logs and metrics.
    pub name: String,
    /// The `.wasm` component.
    pub wasm: PathBuf,
    /// Settings handed to the plugin as JSON.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// What happens to a request when the plugin fails.
    #[serde(default)]
    pub failure: FailurePolicy,
    /// Resource limits.
    #[serde(default)]
    pub limits: PluginLimits,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// How requests whose path matches `path` are handled.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviorConfig {
    /// Path pattern with `*` (any run of characters) and `?` (one
    /// character), matched against the whole path, e.g. `/static/*`; `*`
    /// is the default behavior.
    pub path: String,
    /// Cache policy.
    #[serde(default)]
    pub cache: CachePolicyConfig,
    /// If set, only these client networks are served.
    #[serde(default)]
    pub ip_allow: Vec<IpNet>,
    /// Client networks refused with 403.
    #[serde(default)]
    pub ip_deny: Vec<IpNet>,
    /// If set, only these request headers reach the plugins and the origin.
    pub request_headers_allow: Option<Vec<String>>,
    /// Request headers removed before the plugins and the origin.
    #[serde(default)]
    pub request_headers_deny: Vec<String>,
    /// Plugins run before the cache lookup, in order.
    #[serde(default)]
    pub viewer_request: Vec<String>,
    /// Plugins run before a miss goes upstream.
    #[serde(default)]
    pub origin_request: Vec<String>,
    /// Plugins run on the upstream's answer, before it is stored.
    #[serde(default)]
    pub origin_response: Vec<String>,
    /// Plugins run before the response goes to the viewer.
    #[serde(default)]
    pub viewer_response: Vec<String>,
}

/// Cache policy of a behavior.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CachePolicyConfig {
    /// Least time an object stays fresh, in seconds, whatever the origin says.
    pub min_ttl: u64,
    /// Freshness when the origin gives none (no `max-age`, `s-maxage` or
    /// `Expires`), in seconds; unset, RFC 9111 applies (a heuristic from
    /// `Last-Modified`, else stale at once).
    pub default_ttl: Option<u64>,
    /// Most time an object stays fresh, in seconds.
    pub max_ttl: u64,
    /// What distinguishes one cached object from another.
    pub key: CacheKeyConfig,
    /// How a `Range` request on a miss is fetched.
    pub ranges: RangeFetch,
}

/// How a `Range` request that misses is fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeFetch {
    /// The whole object is fetched and stored; ranges are answered from it
    /// (suits objects the edge would store anyway).
    #[default]
    Whole,
    /// The viewer's range goes upstream and the `206` is stored as a part
    /// of the object: later ranges inside the stored parts are answered
    /// from them, and parts that cover the object become the whole object
    /// (suits large media).
    Parts,
}

impl Default for CachePolicyConfig {
    fn default() -> Self {
        CachePolicyConfig {
            min_ttl: 0,
            default_ttl: None,
            max_ttl: 31_536_000,
            key: CacheKeyConfig::default(),
            ranges: RangeFetch::Whole,
        }
    }
}

/// Which parts of a request make up its cache key (the path always does).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheKeyConfig {
    /// Include the host.
    pub host: bool,
    /// Include the scheme (`http` or `https`). The upstream is told the
    /// viewer's scheme (`X-Forwarded-Proto`) only when it is in the key,
    /// so an answer that depends on it is never shared across schemes.
    pub scheme: bool,
    /// Which query parameters to include.
    pub query: QueryKey,
    /// The parameters `query = "allow"` includes.
    pub query_params: Vec<String>,
    /// Request headers to include.
    pub headers: Vec<String>,
    /// Cookies to include.
    pub cookies: Vec<String>,
}

impl Default for CacheKeyConfig {
    fn default() -> Self {
        CacheKeyConfig {
            host: true,
            scheme: true,
            query: QueryKey::All,
            query_params: Vec::new(),
            headers: Vec::new(),
            cookies: Vec::new(),
        }
    }
}

/// Query parameters in the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryKey {
    /// Every parameter.
    All,
    /// None.
    None,
    /// Only those in `query_params`.
    Allow,
}

impl EdgeConfig {
    /// Reads, parses and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let in_file = |mut e: ConfigError| {
            e.file = Some(path.to_path_buf());
            e
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| in_file(ConfigError::at("", format!("cannot read: {e}"))))?;
        let config = Self::parse(&text).map_err(in_file)?;
        config.validate().map_err(in_file)?;
        Ok(config)
    }

    /// Parses TOML text into a configuration, without validating it.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| ConfigError::at("", e.to_string()))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let reason = e.into_inner().message().to_string();
            ConfigError::at(if field == "." { String::new() } else { field }, reason)
        })
    }

    /// Checks everything the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pop.id.trim().is_empty() {
            return Err(ConfigError::at("pop.id", "must not be empty"));
        }
        if self.listeners.is_empty() {
            return Err(ConfigError::at(
                "listener",
                "at least one listener is needed",
            ));
        }
        if let Some(admin) = &self.admin {
            if admin.token.is_some() && admin.token_file.is_some() {
                return Err(ConfigError::at(
                    "admin",
                    "set `token` or `token_file`, not both",
                ));
            }
            if let Some(token) = &admin.token {
                admin
                    .check_token(token)
                    .map_err(|why| ConfigError::at("admin.token", why))?;
            }
        }
        let addresses = self.address_policy();
        if let Some(shield) = &self.shield {
            check_upstream_url("shield", shield, &addresses)?;
        }
        if self.tier_tls.cert.is_some() != self.tier_tls.key.is_some() {
            return Err(ConfigError::at(
                "tier_tls",
                "give `cert` and `key` together (this edge's certificate and its private key)",
            ));
        }
        if !self.peers.is_empty() && self.peer_address.is_none() {
            return Err(ConfigError::at(
                "peer_address",
                "needed with `peers`: this edge's own host:port as its peers know it",
            ));
        }
        for (i, peer) in self.peers.iter().enumerate() {
            if Some(peer) == self.peer_address.as_ref() {
                continue; // this edge itself, in a list shared by the PoP
            }
            let scheme = if self.tier_tls.peers { "https" } else { "http" };
            check_upstream_url(
                &format!("peers[{i}]"),
                &format!("{scheme}://{peer}"),
                &addresses,
            )?;
        }
        if let Some(secret) = &self.server.tier_secret {
            if secret.chars().count() < 16 {
                return Err(ConfigError::at(
                    "server.tier_secret",
                    "must be at least 16 characters",
                ));
            }
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            if listener.proxy_protocol && self.server.trusted_proxies.is_empty() {
                return Err(ConfigError::at(
                    format!("listener[{i}].proxy_protocol"),
                    "needs `server.trusted_proxies`: the addresses allowed to send PROXY headers",
                ));
            }
        }
        if self.server.max_connections == 0 || self.server.h2_max_concurrent_streams == 0 {
            return Err(ConfigError::at(
                "server",
                "`max_connections` and `h2_max_concurrent_streams` must be at least 1",
            ));
        }
        let mut ids = HashSet::new();
        let mut domains = HashSet::new();
        for (d, dist) in self.distributions.iter().enumerate() {
            let at = |field: &str| format!("distribution[{d}].{field}");
            if !ids.insert(dist.id.as_str()) {
                return Err(ConfigError::at(
                    at("id"),
                    format!("`{}` is used by another distribution", dist.id),
                ));
            }
            dist.validate()
                .and_then(|()| dist.check_policy(&addresses, &self.plugin_limits))
                .map_err(|mut e| {
                    e.field = at(&e.field);
                    e
                })?;
            for (i, domain) in dist.domains.iter().enumerate() {
                if !domains.insert(domain.to_ascii_lowercase()) {
                    return Err(ConfigError::at(
                        at(&format!("domains[{i}]")),
                        format!("`{domain}` is served by another distribution"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl EdgeConfig {
    /// The address policy of this edge's upstreams: `[upstream]`, and
    /// its own listeners (viewer, admin, and its address as peers know it).
    pub fn address_policy(&self) -> AddressPolicy {
        let mut own: Vec<SocketAddr> = self.listeners.iter().map(|l| l.address).collect();
        own.extend(self.admin.as_ref().map(|a| a.address));
        own.extend(
            self.peer_address
                .as_ref()
                .and_then(|a| a.parse::<SocketAddr>().ok()),
        );
        AddressPolicy::new(&self.upstream, own)
    }
}

impl DistributionConfig {
    /// Checks what the operator's policy says of a distribution: its
    /// origins' addresses and its plugins' limits. The controller runs
    /// this with its own policy; edges with theirs.
    pub fn check_policy(
        &self,
        addresses: &AddressPolicy,
        maxima: &PluginMaxima,
    ) -> Result<(), ConfigError> {
        for (i, origin) in self.origins.iter().enumerate() {
            check_upstream_url(&format!("origin[{i}].url"), &origin.url, addresses)?;
        }
        for (i, plugin) in self.plugins.iter().enumerate() {
            maxima.check(&plugin.limits).map_err(|(limit, why)| {
                ConfigError::at(format!("plugin[{i}].limits.{limit}"), why)
            })?;
        }
        Ok(())
    }

    /// Checks one distribution on its own (ids and domains shared with
    /// other distributions are the caller's to check); fields in errors
    /// are relative to it. The controller runs this on every upload.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.domains.is_empty() {
            return Err(ConfigError::at("domains", "at least one domain is needed"));
        }
        for (i, domain) in self.domains.iter().enumerate() {
            check_domain(domain).map_err(|why| ConfigError::at(format!("domains[{i}]"), why))?;
        }
        if self.origins.is_empty() {
            return Err(ConfigError::at("origin", "at least one origin is needed"));
        }
        for (i, origin) in self.origins.iter().enumerate() {
            check_url(&format!("origin[{i}].url"), &origin.url)?;
            if let Some(host) = &origin.host_header {
                let valid = !host.is_empty()
                    && !host.contains('@')
                    && host.parse::<http::uri::Authority>().is_ok();
                if !valid {
                    return Err(ConfigError::at(
                        format!("origin[{i}].host_header"),
                        format!("`{host}` is not a host name (with an optional port)"),
                    ));
                }
            }
        }
        let mut plugins = HashSet::new();
        for (i, plugin) in self.plugins.iter().enumerate() {
            if plugin.name.is_empty() || !plugins.insert(plugin.name.as_str()) {
                return Err(ConfigError::at(
                    format!("plugin[{i}].name"),
                    format!("`{}` is empty or used by another plugin", plugin.name),
                ));
            }
        }
        if !self.behaviors.iter().any(|b| b.path == "*") {
            return Err(ConfigError::at(
                "behavior",
                "a default behavior (`path = \"*\"`) is needed",
            ));
        }
        for (b, behavior) in self.behaviors.iter().enumerate() {
            behavior.validate(&plugins).map_err(|mut e| {
                e.field = format!("behavior[{b}].{}", e.field);
                e
            })?;
        }
        Ok(())
    }
}

impl BehaviorConfig {
    /// Checks the behavior; fields in errors are relative to it.
    fn validate(&self, plugins: &HashSet<&str>) -> Result<(), ConfigError> {
        PathPattern::new(&self.path).map_err(|why| ConfigError::at("path", why))?;
        let ttl = &self.cache;
        let default = ttl.default_ttl.unwrap_or(ttl.min_ttl);
        if ttl.min_ttl > default || default > ttl.max_ttl {
            return Err(ConfigError::at(
                "cache",
                format!(
                    "TTLs must satisfy min_ttl <= default_ttl <= max_ttl (got {} / {} / {})",
                    ttl.min_ttl,
                    ttl.default_ttl
                        .map_or_else(|| "unset".to_string(), |d| d.to_string()),
                    ttl.max_ttl
                ),
            ));
        }
        if ttl.key.query == QueryKey::Allow && ttl.key.query_params.is_empty() {
            return Err(ConfigError::at(
                "cache.key.query_params",
                "`query = \"allow\"` needs at least one parameter",
            ));
        }
        let header_lists = [
            ("cache.key.headers", Some(&ttl.key.headers)),
            ("request_headers_allow", self.request_headers_allow.as_ref()),
            ("request_headers_deny", Some(&self.request_headers_deny)),
        ];
        for (field, names) in header_lists {
            for (i, name) in names.into_iter().flatten().enumerate() {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(ConfigError::at(
                        format!("{field}[{i}]"),
                        format!("`{name}` is not a valid header name"),
                    ));
                }
            }
        }
        let chains = [
            ("viewer_request", &self.viewer_request),
            ("origin_request", &self.origin_request),
            ("origin_response", &self.origin_response),
            ("viewer_response", &self.viewer_response),
        ];
        for (field, chain) in chains {
            for (i, name) in chain.iter().enumerate() {
                if !plugins.contains(name.as_str()) {
                    return Err(ConfigError::at(
                        format!("{field}[{i}]"),
                        format!("no plugin named `{name}` in this distribution"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A host name or a `*.` wildcard of one.
fn check_domain(domain: &str) -> Result<(), String> {
    if domain == "*" {
        return Ok(()); // any host no other distribution serves
    }
    let name = domain.strip_prefix("*.").unwrap_or(domain);
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "`{domain}` is not a host name (or `*.` followed by one)"
        ));
    }
    Ok(())
}

/// An upstream URL ([`check_url`]) whose host the address policy allows,
/// as far as can be told without resolving it.
fn check_upstream_url(
    field: &str,
    url: &str,
    addresses: &AddressPolicy,
) -> Result<(), ConfigError> {
    check_url(field, url)?;
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ConfigError::at(field, format!("`{url}` is not a URL: {e}")))?;
    let host = uri.host().unwrap_or_default();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    addresses
        .check_host(host, port)
        .map_err(|why| ConfigError::at(field, format!("`{url}`: {why}")))
}

/// An absolute `http` or `https` URL with a host.
fn check_url(field: &str, url: &str) -> Result<(), ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ConfigError::at(field, format!("`{url}` is not a URL: {e}")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(ConfigError::at(
            field,
            format!("`{url}` must be an http:// or https:// URL with a host"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(address: &str) -> AdminConfig {
        AdminConfig {
            address: address.parse().expect("an address"),
            token: None,
            token_file: None,
        }
    }

    #[test]
    fn beyond_loopback_an_admin_token_must_be_long_and_not_the_examples() {
        for loopback in [
            "127.0.0.1:9901",
            "127.8.0.1:9901",
            "[::1]:9901",
            "[::ffff:127.0.0.1]:9901",
        ] {
            assert_eq!(
                admin(loopback).check_token(EXAMPLE_ADMIN_TOKEN),
                Ok(()),
                "{loopback}"
            );
            assert_eq!(admin(loopback).check_token("x"), Ok(()), "{loopback}");
        }
        for open in [
            "0.0.0.0:9901",
            "10.0.0.5:9901",
            "[::]:9901",
            "[2001:db8::1]:9901",
        ] {
            let example = admin(open).check_token(EXAMPLE_ADMIN_TOKEN).unwrap_err();
            assert!(
                example.starts_with("is the example configuration's token `change-me`;"),
                "{example}"
            );
            assert!(example.contains(open), "{example}");
            let short = admin(open).check_token("fifteen-chars-x").unwrap_err();
            assert!(short.starts_with("has 15 characters;"), "{short}");
            assert!(short.contains("needs at least 16"), "{short}");
            // Characters, not bytes.
            assert!(admin(open).check_token("ééééééééééééééé").is_err());
            assert_eq!(admin(open).check_token("sixteen-chars-xx"), Ok(()));
        }
    }
}
