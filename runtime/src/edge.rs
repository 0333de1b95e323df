//! The edge's shared state: the configuration snapshot requests are served
//! under (swapped atomically on reload), the cache, the upstream client and
//! the plugin engine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use parapet_config::network::AddressPolicy;
use parapet_host::{GeoDb, PluginEngine};

use crate::access_log::AccessRecord;
use crate::cache::Cache;
use crate::peers::PeerRing;
use crate::routing::Routes;
use crate::tls::{Certificates, SniResolver};
use crate::upstream::Upstream;
use parapet_config::{ConfigError, EdgeConfig};

/// One configuration, compiled: what a request is served under from start
/// to end, even if a reload happens meanwhile.
pub struct Snapshot {
    /// The configuration.
    pub config: EdgeConfig,
    /// Distributions and behaviors with their plugins loaded.
    pub routes: Routes,
    /// The peers sharing this PoP's cache, if any.
    pub peers: Option<PeerRing>,
    /// Bearer token of the admin API's purge and prewarm.
    pub admin_token: Option<String>,
    /// Certificates for TLS listeners.
    certificates: Option<Certificates>,
    /// Open ACME HTTP-01 challenges (controller mode).
    pub acme_challenges: AcmeChallenges,
}

/// ACME HTTP-01 challenges the edge answers for the controller's ACME
/// client: token → (distribution id, key authorization).
#[derive(Debug, Default, Clone)]
pub struct AcmeChallenges(std::collections::HashMap<String, (String, String)>);

impl AcmeChallenges {
    /// Answers `token` with `key_authorization` on `distribution`'s domains.
    pub fn insert(&mut self, token: &str, distribution: &str, key_authorization: &str) {
        self.0.insert(
            token.to_string(),
            (distribution.to_string(), key_authorization.to_string()),
        );
    }

    /// The answer to `token` on distribution `distribution`, if open.
    pub fn answer(&self, distribution: &str, token: &str) -> Option<&str> {
        self.0
            .get(token)
            .filter(|(owner, _)| owner == distribution)
            .map(|(_, answer)| answer.as_str())
    }
}

impl Snapshot {
    /// Compiles `config`, loading plugins, certificates and the admin token;
    /// relative paths are resolved against `base_dir`.
    pub fn build(
        config: EdgeConfig,
        base_dir: &Path,
        engine: &Arc<PluginEngine>,
    ) -> Result<Self, ConfigError> {
        let routes = Routes::build(&config, base_dir, engine)?;
        let certificates = Certificates::load(&config, base_dir)?;
        Self::assemble(config, routes, certificates, base_dir)
    }

    /// A snapshot of `config` (listeners, cache, admin, peers; its own
    /// distributions are not read) serving `routes`, distributions loaded
    /// one by one, with their `certificates` and ACME `challenges`
    /// (controller mode).
    pub fn with_routes(
        config: EdgeConfig,
        routes: Routes,
        certificates: Certificates,
        challenges: AcmeChallenges,
        base_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let mut snapshot = Self::assemble(config, routes, certificates, base_dir)?;
        snapshot.acme_challenges = challenges;
        Ok(snapshot)
    }

    fn assemble(
        config: EdgeConfig,
        routes: Routes,
        certificates: Certificates,
        base_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let peers = config
            .peer_address
            .as_ref()
            .filter(|_| !config.peers.is_empty())
            .map(|me| PeerRing::new(me.clone(), &config.peers));
        let admin_token = admin_token(&config, base_dir)?;
        Ok(Snapshot {
            config,
            routes,
            peers,
            admin_token,
            certificates: Some(certificates),
            acme_challenges: AcmeChallenges::default(),
        })
    }
}

/// The admin API's bearer token: `admin.token`, or the contents of
/// `admin.token_file` (relative to `base_dir`), checked as
/// [`parapet_config::AdminConfig::check_token`] says (validation checks
/// `admin.token`; the file is read here).
pub fn admin_token(config: &EdgeConfig, base_dir: &Path) -> Result<Option<String>, ConfigError> {
    let Some(admin) = &config.admin else {
        return Ok(None);
    };
    match (&admin.token, &admin.token_file) {
        (Some(token), _) => Ok(Some(token.clone())),
        (None, Some(file)) => {
            let path = base_dir.join(file);
            let refused = |reason: String| ConfigError {
                file: None,
                field: "admin.token_file".into(),
                reason,
            };
            let token = std::fs::read_to_string(&path)
                .map_err(|e| refused(format!("cannot read {}: {e}", path.display())))?;
            let token = token.trim().to_string();
            admin
                .check_token(&token)
                .map_err(|why| refused(format!("the token in {} {why}", path.display())))?;
            Ok(Some(token))
        }
        (None, None) => Ok(None),
    }
}

/// Everything the edge's tasks share.
pub struct Edge {
    snapshot: ArcSwap<Snapshot>,
    /// The cache.
    pub cache: Arc<Cache>,
    /// Pooled upstream connections.
    pub upstream: Arc<Upstream>,
    /// The plugin engine.
    pub engine: Arc<PluginEngine>,
    /// Client location for plugins.
    pub geo: Option<Arc<GeoDb>>,
    /// This PoP's id.
    pub pop_id: Arc<str>,
    /// Certificates of the TLS listeners.
    pub tls: Arc<SniResolver>,
    /// Whether each request is logged.
    pub access_log: bool,
    /// Set on shutdown: health checks fail so balancers stop sending.
    pub draining: AtomicBool,
    /// The configuration file, for reloads.
    pub config_path: Option<PathBuf>,
    /// Where access log records go besides the log (controller mode ships
    /// them to the controller).
    pub log_sink: OnceLock<tokio::sync::mpsc::Sender<AccessRecord>>,
    /// The listeners as bound (viewer and admin), which upstreams may not be.
    bound: OnceLock<Vec<SocketAddr>>,
    /// Each distribution's share of plugin instances and upstream fetches.
    pub shares: crate::shares::Shares,
    next_request: AtomicU64,
}

impl Edge {
    /// An edge serving `snapshot`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mut snapshot: Snapshot,
        cache: Arc<Cache>,
        engine: Arc<PluginEngine>,
        geo: Option<Arc<GeoDb>>,
        config_path: Option<PathBuf>,
        access_log: bool,
    ) -> Arc<Self> {
        let certificates = snapshot.certificates.take().unwrap_or_default();
        let upstream = Upstream::new(snapshot.config.address_policy());
        Arc::new(Edge {
            pop_id: snapshot.config.pop.id.as_str().into(),
            snapshot: ArcSwap::from_pointee(snapshot),
            cache,
            upstream,
            engine,
            geo,
            tls: SniResolver::new(certificates),
            access_log,
            draining: AtomicBool::new(false),
            config_path,
            log_sink: OnceLock::new(),
            bound: OnceLock::new(),
            shares: crate::shares::Shares::default(),
            next_request: AtomicU64::new(0),
        })
    }

    /// The configuration requests are served under now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Serves `snapshot` from now on; requests in progress finish under the
    /// one they started with.
    pub fn apply(&self, mut snapshot: Snapshot) {
        if let Some(certificates) = snapshot.certificates.take() {
            self.tls.replace(certificates);
        }
        self.upstream
            .set_policy(self.address_policy(&snapshot.config));
        self.shares.retain(|id| snapshot.routes.by_id(id).is_some());
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Records the listeners as bound, so upstreams cannot be them.
    pub fn set_bound(&self, addresses: Vec<SocketAddr>) {
        let _ = self.bound.set(addresses);
        self.upstream
            .set_policy(self.address_policy(&self.snapshot().config));
    }

    /// The address policy of `config` on this edge.
    fn address_policy(&self, config: &EdgeConfig) -> AddressPolicy {
        let bound = self.bound.get().cloned().unwrap_or_default();
        config.address_policy().with_own(bound)
    }

    /// Rereads the configuration file and applies it. A configuration that
    /// does not load leaves the running one in place.
    pub async fn reload(self: &Arc<Self>) -> Result<(), ConfigError> {
        let Some(path) = self.config_path.clone() else {
            return Err(ConfigError {
                file: None,
                field: String::new(),
                reason: "the edge runs without a configuration file".into(),
            });
        };
        let engine = self.engine.clone();
        let built = tokio::task::spawn_blocking(move || {
            let config = EdgeConfig::from_file(&path)?;
            let base_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            Snapshot::build(config, &base_dir, &engine).map_err(|mut e| {
                e.file = Some(path.clone());
                e
            })
        })
        .await
        .map_err(|e| ConfigError {
            file: None,
            field: String::new(),
            reason: format!("the reload task failed: {e}"),
        })??;
        let old = self.snapshot();
        if old.config.listeners != built.config.listeners || old.config.cache != built.config.cache
        {
            tracing::warn!("listener and cache changes apply at the next restart");
        }
        self.apply(built);
        metrics::counter!("parapet_config_reloads_total", "result" => "ok").increment(1);
        Ok(())
    }

    /// Requests served since the start.
    pub fn requests_served(&self) -> u64 {
        self.next_request.load(Ordering::Relaxed)
    }

    /// Counts a request and returns its number, from which
    /// [`Edge::request_id`] makes its id.
    pub fn count_request(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// The id of request number `n`: the PoP, the process id and `n`.
    pub fn request_id(&self, n: u64) -> String {
        format!("{}-{:x}-{n:x}", self.pop_id, std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::AcmeChallenges;

    #[test]
    fn a_challenge_is_answered_on_its_own_distribution_only() {
        let mut challenges = AcmeChallenges::default();
        challenges.insert("tok", "shop", "tok.thumbprint");
        assert_eq!(challenges.answer("shop", "tok"), Some("tok.thumbprint"));
        assert_eq!(challenges.answer("other", "tok"), None);
        assert_eq!(challenges.answer("shop", "unknown"), None);
    }
}
