//! `parapet-controller`: where customers and the operator manage the CDN,
//! and what keeps every edge in step. REST (axum) for people and scripts,
//! gRPC (tonic) for edges, storage in MongoDB or an embedded file.

pub mod acme;
pub mod admission;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod certificates;
pub mod claims;
pub mod console;
pub mod deployments;
pub mod distributions;
pub mod edges;
pub mod grpc;
pub mod jobs;
pub mod lease;
pub mod metrics;
pub mod model;
pub mod plugin_costs;
pub mod revision;
pub mod secrets;
pub mod series;
pub mod settings;
pub mod snapshot;
pub mod store;
pub mod tls;
pub mod traffic;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use parapet_proto::edge::edge_control_server::EdgeControlServer;
use tokio::sync::watch;

use crate::api::AppState;
use crate::auth::Authenticator;
use crate::store::Store;

/// Where the controller keeps its data.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded store in this directory.
    Embedded(PathBuf),
    /// MongoDB at this URI.
    Mongo(String),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// REST address.
    pub listen: SocketAddr,
    /// gRPC address.
    pub grpc_listen: SocketAddr,
    /// Storage.
    pub store: StoreLocation,
    /// The operator's bootstrap token.
    pub admin_token: String,
    /// The token edges register with; none: no edge can register.
    pub edge_bootstrap_token: Option<String>,
    /// TLS for both listeners; none: plain text (loopback and trials).
    pub tls: Option<tls::TlsFiles>,
    /// How often edges send heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Largest plugin upload, in bytes.
    pub max_plugin_bytes: usize,
    /// Address for Prometheus `/metrics` and `/healthz` (none: not served).
    pub metrics: Option<SocketAddr>,
    /// What customers' distributions may ask for and hold.
    pub settings: settings::Settings,
    /// Where compiled plugins are kept for the launch checks (none: a
    /// private temporary directory for the process's lifetime).
    pub compiled_plugins_dir: Option<PathBuf>,
    /// The operator's key sealing private keys in the store; none:
    /// certificates cannot be uploaded.
    pub secret_key: Option<Arc<secrets::SecretKey>>,
}

/// A running controller.
pub struct Running {
    /// REST address.
    pub rest: SocketAddr,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// Metrics address, when served.
    pub metrics: Option<SocketAddr>,
    tls: Option<tls::ListenerTls>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    worker: tokio::task::JoinHandle<()>,
    lease: Option<lease::LeaseRelease>,
}

impl Running {
    /// Reads the TLS certificate and key files again for new connections
    /// (false: the listeners are plain text).
    pub fn reload_tls(&self) -> anyhow::Result<bool> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Stops the listeners and the worker, and gives up the worker lease.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.worker.abort();
        let _ = self.worker.await;
        if let Some(lease) = self.lease {
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %e, "cannot give up the worker lease; it lapses by itself");
            }
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Opens the store and starts the REST and gRPC listeners.
pub async fn launch(options: LaunchOptions) -> anyhow::Result<Running> {
    let store = match &options.store {
        StoreLocation::Embedded(dir) => Store::embedded(dir)
            .with_context(|| format!("opening the store in {}", dir.display()))?,
        StoreLocation::Mongo(uri) => Store::mongo(uri).await.context("connecting to MongoDB")?,
    };
    claims::adopt_existing(&store)
        .await
        .context("claiming the stored distributions' domains")?;
    if options.edge_bootstrap_token.as_deref() == Some(options.admin_token.as_str()) {
        anyhow::bail!(
            "the edge bootstrap token must differ from the admin token: every edge holds it"
        );
    }
    let secret_key = options.secret_key;
    let issuer = match (&options.settings.acme, &secret_key) {
        (Some(acme), Some(secret)) => Some(Arc::new(acme::Issuer::new(
            acme.clone(),
            secret.clone(),
            options.heartbeat_interval_ms,
        ))),
        (Some(_), None) => anyhow::bail!(
            "[acme] needs the operator's secret key (--secret-key-file) to keep account and certificate keys"
        ),
        (None, _) => None,
    };
    let auth = Authenticator::new(
        store.clone(),
        &options.admin_token,
        options.edge_bootstrap_token.as_deref(),
    );
    // Compiled once per plugin, however often distributions launch it.
    let (compiled_plugins_dir, scratch) = match &options.compiled_plugins_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let scratch = tempfile::Builder::new()
                .prefix("parapet-controller-compiled-")
                .tempdir()
                .context("creating a directory for compiled plugins")?;
            (scratch.path().to_path_buf(), Some(scratch))
        }
    };
    let validator = Arc::new(
        parapet_host::PluginEngine::new(parapet_host::EngineConfig {
            allocator: parapet_host::Allocator::OnDemand,
            cache_dir: Some(compiled_plugins_dir),
            ..parapet_host::EngineConfig::default()
        })
        .context("starting the plugin validator")?,
    );
    let app = Arc::new(AppState {
        store: store.clone(),
        auth,
        heartbeat_interval_ms: options.heartbeat_interval_ms,
        validator,
        max_plugin_bytes: options.max_plugin_bytes,
        settings: options.settings.clone(),
        secret_key,
        compiled_scratch: scratch,
        changes: governor::RateLimiter::keyed(governor::Quota::per_minute(
            options.settings.quotas.changes_per_minute_per_customer,
        )),
        catalog: catalog::Catalog::start(store.clone())
            .await
            .context("reading the distributions")?,
    });
    // The embedded store is one process's: no other controller to share
    // the worker with.
    let lease = matches!(options.store, StoreLocation::Mongo(_))
        .then(|| lease::WorkerLease::new(store.clone()));
    let release = lease.as_ref().map(lease::WorkerLease::release_on_stop);
    let worker = tokio::spawn(worker::run(store, lease, issuer));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let metrics_address = match options.metrics {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen for metrics on {address}"))?;
            let bound = listener.local_addr()?;
            let mut metrics_stopped = stopped.clone();
            let served = metrics::serve(listener, app.clone());
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    _ = served => {},
                    _ = metrics_stopped.wait_for(|stop| *stop) => {},
                }
            }));
            Some(bound)
        }
        None => {
            parapet_telemetry::prometheus();
            None
        }
    };

    let tls = options.tls.map(tls::ListenerTls::load).transpose()?;
    let rest = std::net::TcpListener::bind(options.listen)
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let rest_address = rest.local_addr()?;
    tasks.push(serve(
        rest,
        api::router(app.clone(), tls.is_some()),
        tls.as_ref().map(|t| t.rest.clone()),
        stopped.clone(),
        "REST",
    )?);
    let grpc = std::net::TcpListener::bind(options.grpc_listen)
        .with_context(|| format!("cannot listen on {}", options.grpc_listen))?;
    let grpc_address = grpc.local_addr()?;
    let service = EdgeControlServer::new(grpc::EdgeService::new(app, stopped.clone()));
    tasks.push(serve(
        grpc,
        tonic::service::Routes::new(service).into_axum_router(),
        tls.as_ref().map(|t| t.grpc.clone()),
        stopped,
        "gRPC",
    )?);
    Ok(Running {
        rest: rest_address,
        grpc: grpc_address,
        metrics: metrics_address,
        tls,
        stop,
        tasks,
        worker,
        lease: release,
    })
}

/// Serves `router` on `listener` (over TLS with `tls`) until `stopped`;
/// open connections get a few seconds to finish.
fn serve(
    listener: std::net::TcpListener,
    router: axum::Router,
    tls: Option<RustlsConfig>,
    mut stopped: watch::Receiver<bool>,
    what: &'static str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
        shutdown.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let service = router.into_make_service();
    let server = axum_server::from_tcp(listener)
        .with_context(|| format!("setting up the {what} listener"))?
        .handle(handle);
    Ok(tokio::spawn(async move {
        let served = match tls {
            Some(config) => {
                server
                    .acceptor(axum_server::tls_rustls::RustlsAcceptor::new(config))
                    .serve(service)
                    .await
            }
            None => server.serve(service).await,
        };
        if let Err(e) = served {
            tracing::error!(error = %e, listener = what, "a listener failed");
        }
    }))
}
