//! `parapet-edge`, the Parapet PoP server: a caching reverse proxy that runs
//! the distributions' Wasm plugin chains (see ARCHITECTURE.md).
//!
//! [`launch`] starts an edge from a configuration: plugins loaded, the cache
//! opened (recovering its disk tier), listeners bound.

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod cache_key;
pub mod control;
pub mod edge;
pub mod forwarding;
pub mod guards;
pub mod headers;
pub mod orders;
pub mod paths;
pub mod peers;
pub mod proxy;
pub mod proxy_protocol;
pub mod routing;
pub mod server;
pub mod shares;
pub mod tls;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parapet_host::{EngineConfig, GeoDb, PluginEngine};

use crate::cache::Cache;
use crate::edge::{Edge, Snapshot};
use crate::server::Running;
use parapet_config::EdgeConfig;

/// How to start an edge.
pub struct LaunchOptions {
    /// The configuration.
    pub config: EdgeConfig,
    /// The file it came from, for reloads; relative paths in it are
    /// resolved against its directory.
    pub config_path: Option<PathBuf>,
    /// Log each request.
    pub access_log: bool,
    /// Where compiled plugins are kept across reloads and restarts
    /// (default: `plugins/` in the disk tier, else nowhere).
    pub compiled_plugins_dir: Option<PathBuf>,
}

/// Starts an edge: the plugin engine, the configuration's plugins, the
/// cache and the listeners.
pub async fn launch(options: LaunchOptions) -> anyhow::Result<Running> {
    server::start(prepare(options).await?).await
}

/// Builds an edge without serving yet: the plugin engine, the
/// configuration's plugins, the cache (recovering its disk tier). The
/// controller mode applies pending purges here, before [`server::start`].
pub async fn prepare(options: LaunchOptions) -> anyhow::Result<Arc<Edge>> {
    parapet_telemetry::prometheus();
    let base_dir = options
        .config_path
        .as_deref()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let cache_dir = options.compiled_plugins_dir.clone().or_else(|| {
        options
            .config
            .cache
            .disk_dir
            .as_ref()
            .map(|d| base_dir.join(d).join("plugins"))
    });
    let geo = match &options.config.geoip {
        Some(path) => {
            let path = base_dir.join(path);
            Some(Arc::new(GeoDb::open(&path).with_context(|| {
                format!("cannot open the GeoIP database {}", path.display())
            })?))
        }
        None => None,
    };
    let mut cache_config = options.config.cache.clone();
    cache_config.disk_dir = cache_config.disk_dir.map(|d| base_dir.join(d));
    let cache = Cache::open(&cache_config).await?;
    let engine = Arc::new(
        PluginEngine::new(EngineConfig {
            cache_dir,
            ..EngineConfig::default()
        })
        .context("starting the plugin engine")?,
    );
    let config = options.config;
    let build_engine = engine.clone();
    let config_path = options.config_path.clone();
    let snapshot = tokio::task::spawn_blocking(move || {
        Snapshot::build(config, &base_dir, &build_engine).map_err(|mut e| {
            e.file = config_path;
            e
        })
    })
    .await??;
    Ok(Edge::new(
        snapshot,
        cache,
        engine,
        geo,
        options.config_path,
        options.access_log,
    ))
}
