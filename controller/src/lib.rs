//! `parapet-controller`: where customers and the operator manage the CDN,
//! and what keeps every edge in step. REST (axum) for people and scripts,
//! gRPC (tonic) for edges, storage in MongoDB or an embedded file.

pub mod admission;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod claims;
pub mod deployments;
pub mod distributions;
pub mod edges;
pub mod grpc;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod revision;
pub mod settings;
pub mod snapshot;
pub mod store;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
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
    /// The token edges register with (default: the admin token).
    pub edge_bootstrap_token: Option<String>,
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
}

/// A running controller.
pub struct Running {
    /// REST address.
    pub rest: SocketAddr,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// Metrics address, when served.
    pub metrics: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    worker: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the listeners and the worker.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.worker.abort();
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
        compiled_scratch: scratch,
        changes: governor::RateLimiter::keyed(governor::Quota::per_minute(
            options.settings.quotas.changes_per_minute_per_customer,
        )),
        catalog: catalog::Catalog::start(store.clone())
            .await
            .context("reading the distributions")?,
    });
    let worker = tokio::spawn(worker::run(store));
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

    let rest = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let rest_address = rest.local_addr()?;
    let mut rest_stopped = stopped.clone();
    let router = api::router(app.clone());
    tasks.push(tokio::spawn(async move {
        let shutdown = async move {
            let _ = rest_stopped.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(rest, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "the REST listener failed");
        }
    }));

    let grpc = tokio::net::TcpListener::bind(options.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.grpc_listen))?;
    let grpc_address = grpc.local_addr()?;
    let service = EdgeControlServer::new(grpc::EdgeService::new(app, stopped.clone()));
    let mut grpc_stopped = stopped;
    tasks.push(tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
        let shutdown = async move {
            let _ = grpc_stopped.wait_for(|stop| *stop).await;
        };
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(error = %e, "the gRPC listener failed");
        }
    }));
    Ok(Running {
        rest: rest_address,
        grpc: grpc_address,
        metrics: metrics_address,
        stop,
        tasks,
        worker,
    })
}
