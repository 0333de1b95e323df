//! `parapet-edge`: the Parapet PoP server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use notify::Watcher;
use parapet_config::limits::PluginMaxima;
use parapet_config::network::UpstreamConfig;
use parapet_config::{
    AdminConfig, BehaviorConfig, CacheConfig, DistributionConfig, EdgeConfig, ListenerConfig,
    OriginConfig, PopConfig, ServerConfig, SharesConfig,
};
use parapet_edge::control::{Control, ControlOptions};
use parapet_edge::edge::Edge;
use parapet_edge::routing::Routes;
use parapet_edge::{launch, prepare, LaunchOptions};
use parapet_host::{EngineConfig, PluginEngine};
use tokio::signal::unix::{signal, SignalKind};

/// mimalloc: the request path makes many small, short-lived allocations,
/// which glibc's allocator serves markedly slower (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Parapet edge server (PoP): a caching reverse proxy running Wasm
/// plugins.
///
/// Run it with a configuration file (see examples/edge.toml), or in front of
/// one origin for any Host with the default RFC 9111 cache policy:
///
///   parapet-edge --listen 127.0.0.1:8080 --origin http://127.0.0.1:8081
///
/// or following parapet-controller, which supplies the distributions:
///
///   PARAPET_EDGE_BOOTSTRAP_TOKEN=... parapet-edge --listen 0.0.0.0:80 \
///       --controller http://controller:7071 --state-dir /var/lib/parapet-edge \
///       --edge-name fra-1 --pop fra --group blue
///
/// SIGHUP (or a change to the file) reloads the configuration; SIGTERM
/// stops accepting and lets requests in flight finish.
#[derive(Parser)]
#[command(name = "parapet-edge", version, verbatim_doc_comment)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "check_config"])]
    config: Option<PathBuf>,
    /// Check a configuration file (syntax, fields, plugins) and exit: 0
    /// when it is valid, 1 with the file, field and reason when it is not.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Without a file: the address to serve viewers on.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Without a file: an address to serve viewers on over TLS, with the
    /// certificates of the distributions (from the controller, in
    /// controller mode) chosen by SNI.
    #[arg(long, value_name = "ADDR", requires = "listen")]
    listen_tls: Option<SocketAddr>,
    /// Without a file: the origin to fetch misses from.
    #[arg(long, value_name = "URL", requires = "listen")]
    origin: Option<String>,
    /// Without a file: the admin address (/metrics, /healthz, purge).
    #[arg(long, value_name = "ADDR", requires = "listen")]
    admin: Option<SocketAddr>,
    /// Without a file: the admin bearer token (else $PARAPET_ADMIN_TOKEN).
    #[arg(
        long,
        env = "PARAPET_ADMIN_TOKEN",
        hide_env_values = true,
        requires = "admin"
    )]
    admin_token: Option<String>,
    /// Without a file: keep a disk tier in this directory.
    #[arg(long, value_name = "DIR", requires = "listen")]
    cache_dir: Option<PathBuf>,
    /// Without a file: worker threads (0: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "listen")]
    workers: usize,
    /// Without a file: the memory tier size in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256, requires = "listen")]
    memory_mib: u64,
    /// Follow parapet-controller (its gRPC URL): it supplies the
    /// distributions, plugins, purges; `--config` or `--listen` give the
    /// rest (listeners, cache, admin), read at start.
    #[arg(long, value_name = "URL", requires = "state_dir")]
    controller: Option<String>,
    /// Controller mode: the token to register with (once).
    #[arg(
        long,
        env = "PARAPET_EDGE_BOOTSTRAP_TOKEN",
        hide_env_values = true,
        requires = "controller"
    )]
    bootstrap_token: Option<String>,
    /// Controller mode: check the controller's TLS certificate against this
    /// authority (PEM) instead of the system's roots.
    #[arg(
        long,
        value_name = "FILE",
        env = "PARAPET_CA_FILE",
        requires = "controller"
    )]
    controller_ca: Option<PathBuf>,
    /// Controller mode: this edge's client certificate (PEM), for a
    /// controller that asks edges for one (`--edge-client-ca` there).
    #[arg(long, value_name = "FILE", requires_all = ["controller", "controller_client_key"])]
    controller_client_cert: Option<PathBuf>,
    /// Controller mode: the private key (PEM) of `--controller-client-cert`.
    #[arg(long, value_name = "FILE", requires = "controller_client_cert")]
    controller_client_key: Option<PathBuf>,
    /// Controller mode: this edge's unique name (default: the host name).
    #[arg(long, value_name = "NAME", requires = "controller")]
    edge_name: Option<String>,
    /// Controller mode: the PoP id (overrides the file's `pop.id`).
    #[arg(long, value_name = "ID", requires = "controller")]
    pop: Option<String>,
    /// Controller mode: the edge group, for blue/green deployments.
    #[arg(
        long,
        value_name = "GROUP",
        default_value = "default",
        requires = "controller"
    )]
    group: String,
    /// Controller mode: `edge` or `shield`.
    #[arg(long, value_name = "ROLE", default_value = "edge", value_parser = ["edge", "shield"], requires = "controller")]
    role: String,
    /// Controller mode: keeps the credential, the last good configuration
    /// and plugins, so the edge starts and serves while the controller is
    /// away.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Without a file: an address range upstreams may use although it is
    /// not public (repeat for more; `--origin`'s own address is allowed).
    /// Origins, shields and peers on loopback, private, link-local and
    /// other special addresses are refused otherwise.
    #[arg(long, value_name = "CIDR", requires = "listen")]
    allow_upstream_network: Vec<ipnet::IpNet>,
    /// Without a file: the regional shield (URL) this edge sends its
    /// misses to before the origin.
    #[arg(long, value_name = "URL", requires = "listen")]
    shield: Option<String>,
    /// Without a file, on a shield: an address range of the edges behind
    /// it (repeat for more); their answers keep the cache-targeted fields
    /// (`Surrogate-Key`, `CDN-Cache-Control`) other viewers never see.
    #[arg(long, value_name = "CIDR", requires = "listen")]
    downstream_edge: Vec<ipnet::IpNet>,
    /// Log each request as a JSON line (`PARAPET_ACCESS_LOG=off` turns it
    /// off).
    #[arg(long, env = "PARAPET_ACCESS_LOG", default_value = "on", value_parser = ["on", "off"])]
    access_log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.check_config {
        return match check(path) {
            Ok(summary) => {
                println!("{}: configuration ok ({summary})", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("parapet-edge: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    parapet_telemetry::init_logging("info,foyer=warn");
    match serve(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parapet-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the configuration, then runs the edge.
fn serve(cli: Cli) -> anyhow::Result<()> {
    let (config, config_path) = match (&cli.config, &cli.listen, &cli.origin) {
        (Some(path), _, _) => (EdgeConfig::from_file(path)?, Some(path.clone())),
        (None, Some(listen), origin) if origin.is_some() || cli.controller.is_some() => {
            (from_flags(&cli, *listen, origin.as_deref())?, None)
        }
        _ => anyhow::bail!(
            "give --config FILE, or --listen ADDR with --origin URL or --controller URL (see --help)"
        ),
    };
    // Requests are served by the worker threads `server` starts; this
    // runtime runs the admin API, reloads and the cache's background work.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run(cli, config, config_path))
}

async fn run(cli: Cli, config: EdgeConfig, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let access_log = cli.access_log == "on";
    let (running, config_path) = match &cli.controller {
        None => {
            let options = LaunchOptions {
                config,
                config_path: config_path.clone(),
                access_log,
                compiled_plugins_dir: None,
            };
            (launch(options).await?, config_path)
        }
        // The controller's configuration replaces the file's distributions;
        // the file is not reloaded.
        Some(url) => (
            launch_controlled(&cli, url, config, access_log).await?,
            None,
        ),
    };
    let _watcher = match &config_path {
        Some(path) => Some(watch_config(path, running.edge.clone())?),
        None => None,
    };
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // Logged once reloads and signals are handled, so that whoever waits
    // for this line may change the file or signal at once.
    tracing::info!(
        listeners = ?running.listeners,
        admin = ?running.admin,
        pop = %running.edge.pop_id,
        "parapet-edge serving"
    );
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&running.edge, "SIGHUP").await,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn reload(edge: &Arc<Edge>, cause: &str) {
    match edge.reload().await {
        Ok(()) => tracing::info!(cause, "configuration reloaded"),
        Err(e) => {
            metrics::counter!("parapet_config_reloads_total", "result" => "refused").increment(1);
            tracing::error!(cause, error = %e, "configuration refused; the running one stays");
        }
    }
}

/// Reloads when the configuration file changes (editors often replace
/// the file, so its directory is watched). Changes within 300 ms are
/// taken as one.
fn watch_config(path: &Path, edge: Arc<Edge>) -> anyhow::Result<notify::RecommendedWatcher> {
    let (changed, mut changes) = tokio::sync::mpsc::channel::<()>(1);
    let name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event.paths.iter().any(|p| p.file_name() == name.as_deref());
        if ours && (event.kind.is_modify() || event.kind.is_create()) {
            let _ = changed.try_send(());
        }
    })
    .context("starting the configuration file watcher")?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            while changes.try_recv().is_ok() {}
            reload(&edge, "file changed").await;
        }
    });
    Ok(watcher)
}

/// Starts an edge that follows the controller at `url`: the last good
/// configuration first, the orders pending for it applied before it
/// serves, then the configuration, order, heartbeat and log tasks.
async fn launch_controlled(
    cli: &Cli,
    url: &str,
    mut base: EdgeConfig,
    access_log: bool,
) -> anyhow::Result<parapet_edge::server::Running> {
    let Some(state_dir) = cli.state_dir.clone() else {
        anyhow::bail!("--controller needs --state-dir DIR");
    };
    let Some(bootstrap_token) = cli.bootstrap_token.clone() else {
        anyhow::bail!("--controller needs a bootstrap token: set PARAPET_EDGE_BOOTSTRAP_TOKEN");
    };
    if let Some(pop) = &cli.pop {
        base.pop.id = pop.clone();
    }
    base.distributions.clear();
    let name = match &cli.edge_name {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| base.pop.id.clone()),
    };
    let control = Control::new(
        ControlOptions {
            url: url.to_string(),
            ca_file: cli.controller_ca.clone(),
            client_identity: cli
                .controller_client_cert
                .clone()
                .zip(cli.controller_client_key.clone()),
            bootstrap_token,
            name,
            role: cli.role.clone(),
            group: cli.group.clone(),
            state_dir,
        },
        base,
    )?;
    let edge = prepare(LaunchOptions {
        config: control.initial_config(),
        config_path: None,
        access_log,
        // A new configuration usually keeps most plugins: compiled once.
        compiled_plugins_dir: Some(control.compiled_plugins_dir()),
    })
    .await?;
    control.restore(&edge).await?;
    control.apply_backlog(&edge, Duration::from_secs(3)).await;
    let running = parapet_edge::server::start(edge.clone()).await?;
    control.spawn(edge);
    Ok(running)
}

/// The configuration from flags: with `--origin`, one distribution for any
/// host (the default behavior, RFC 9111 caching); without, none (the
/// controller supplies them).
fn from_flags(cli: &Cli, listen: SocketAddr, origin: Option<&str>) -> anyhow::Result<EdgeConfig> {
    let behavior: BehaviorConfig = toml::from_str("path = \"*\"")?;
    let admin = cli.admin.map(|address| AdminConfig {
        address,
        token: cli.admin_token.clone(),
        token_file: None,
    });
    if let Some((admin, token)) = admin.as_ref().and_then(|a| Some((a, a.token.as_ref()?))) {
        admin
            .check_token(token)
            .map_err(|why| anyhow::anyhow!("--admin-token (or $PARAPET_ADMIN_TOKEN) {why}"))?;
    }
    let config = EdgeConfig {
        pop: PopConfig {
            id: "local".into(),
            latitude: None,
            longitude: None,
        },
        listeners: std::iter::once((listen, false))
            .chain(cli.listen_tls.map(|address| (address, true)))
            .map(|(address, tls)| ListenerConfig {
                address,
                tls,
                proxy_protocol: false,
            })
            .collect(),
        admin,
        cache: CacheConfig {
            memory_bytes: cli.memory_mib << 20,
            disk_dir: cli.cache_dir.clone(),
            ..CacheConfig::default()
        },
        geoip: None,
        shield: cli.shield.clone(),
        peers: Vec::new(),
        peer_address: None,
        tier_tls: Default::default(),
        server: ServerConfig {
            workers: cli.workers,
            downstream_edges: cli.downstream_edge.clone(),
            ..ServerConfig::default()
        },
        upstream: UpstreamConfig {
            allow_networks: allowed_networks(cli, origin)?,
        },
        plugin_limits: PluginMaxima::default(),
        shares: SharesConfig::default(),
        distributions: origin
            .map(|origin| DistributionConfig {
                id: "default".into(),
                customer: "local".into(),
                domains: vec!["*".into()],
                origins: vec![OriginConfig {
                    url: origin.to_string(),
                    ca_file: None,
                    connect_timeout_ms: 3_000,
                    read_timeout_ms: 30_000,
                    host_header: None,
                }],
                tls: None,
                kv: None,
                plugins: Vec::new(),
                behaviors: vec![behavior.clone()],
                normalize_upstream_path: false,
            })
            .into_iter()
            .collect(),
    };
    config.validate().context("the flags")?;
    Ok(config)
}

/// The address ranges upstreams may use beyond public ones: those of
/// `--allow-upstream-network`, and the address of the `--origin` the
/// operator named (a loopback range for `localhost`).
fn allowed_networks(cli: &Cli, origin: Option<&str>) -> anyhow::Result<Vec<ipnet::IpNet>> {
    let mut networks = cli.allow_upstream_network.clone();
    let Some(origin) = origin else {
        return Ok(networks);
    };
    let uri: http::Uri = origin
        .parse()
        .with_context(|| format!("--origin `{origin}` is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => networks.push(ipnet::IpNet::from(ip)),
        Err(_) if host.eq_ignore_ascii_case("localhost") => {
            networks.extend(
                ["127.0.0.0/8", "::1/128"].map(|n| n.parse::<ipnet::IpNet>().expect("a network")),
            );
        }
        Err(_) => {}
    }
    Ok(networks)
}

/// Loads `path` as the server would; returns a one-line summary.
fn check(path: &Path) -> anyhow::Result<String> {
    let config = EdgeConfig::from_file(path)?;
    let engine =
        Arc::new(PluginEngine::new(EngineConfig::default()).context("starting the plugin engine")?);
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let in_file = |mut e: parapet_config::ConfigError| {
        e.file = Some(path.to_path_buf());
        e
    };
    parapet_edge::edge::admin_token(&config, base_dir).map_err(in_file)?;
    Routes::build(&config, base_dir, &engine).map_err(in_file)?;
    let plugins: usize = config.distributions.iter().map(|d| d.plugins.len()).sum();
    Ok(format!(
        "distributions: {}, plugins loaded: {plugins}",
        config.distributions.len()
    ))
}
