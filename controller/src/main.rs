//! `parapet-controller`: the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use parapet_controller::secrets::SecretKey;
use parapet_controller::settings::Settings;
use parapet_controller::tls::TlsFiles;
use parapet_controller::{launch, LaunchOptions, StoreLocation};
use tokio::signal::unix::{signal, SignalKind};

/// Parapet's controller: customers and operators manage the CDN over REST
/// (`--listen`, OpenAPI at /openapi.json); edges register and follow their
/// configuration over gRPC (`--grpc-listen`).
///
///   PARAPET_ADMIN_TOKEN=... parapet-controller --data-dir /var/lib/parapet
///   PARAPET_ADMIN_TOKEN=... parapet-controller --mongodb-uri mongodb://db:27017/parapet
///   parapet-controller --dev --data-dir /tmp/parapet     # prints a generated admin token
#[derive(Parser)]
#[command(name = "parapet-controller", version, verbatim_doc_comment)]
struct Cli {
    /// REST API address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// gRPC address for edges.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7071")]
    grpc_listen: SocketAddr,
    /// Keep the data in an embedded store in this directory.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "mongodb_uri",
        required_unless_present = "mongodb_uri"
    )]
    data_dir: Option<PathBuf>,
    /// Keep the data in MongoDB (the URI's database, default `parapet`).
    #[arg(
        long,
        value_name = "URI",
        env = "PARAPET_MONGODB_URI",
        hide_env_values = true
    )]
    mongodb_uri: Option<String>,
    /// The operator's token.
    #[arg(long, env = "PARAPET_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The token edges register with; without one, no edge can register
    /// (`--dev` generates one). Never the admin token.
    #[arg(long, env = "PARAPET_EDGE_BOOTSTRAP_TOKEN", hide_env_values = true)]
    edge_bootstrap_token: Option<String>,
    /// Serve REST and gRPC over TLS with this certificate chain (PEM, leaf
    /// first); clients verify it (`PARAPET_CA_FILE` for the CLI,
    /// `--controller-ca` for edges and the geo-DNS). SIGHUP reads it again.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS for edges: on gRPC, only clients with a certificate from
    /// this authority (PEM) get through the handshake.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    edge_client_ca: Option<PathBuf>,
    /// The operator's secret key (a file holding 32 random bytes in base64,
    /// e.g. from `openssl rand -base64 32`): it seals customers' private
    /// keys and the ACME account in the store. Without one, certificates
    /// cannot be uploaded. Keep it out of the store's backups.
    #[arg(long, value_name = "FILE", env = "PARAPET_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// The secret key itself (base64), instead of `--secret-key-file`.
    #[arg(
        long,
        env = "PARAPET_SECRET_KEY",
        hide_env_values = true,
        conflicts_with = "secret_key_file"
    )]
    secret_key: Option<String>,
    /// Development mode: without an admin token, generate one and print it;
    /// without a secret key, keep one in `<data-dir>/dev-secret.key`.
    #[arg(long)]
    dev: bool,
    /// How often edges send heartbeats, in milliseconds; an edge silent for
    /// three intervals is unhealthy.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    heartbeat_interval_ms: u64,
    /// Largest plugin upload, in MiB (larger ones get 413).
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    max_plugin_mib: usize,
    /// Serve Prometheus `/metrics` and `/healthz` on this address.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// The settings file (TOML; see examples/controller.toml): address
    /// ranges origins may use, plugin limit maxima, quotas.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    parapet_telemetry::init_logging("info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("parapet-controller: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parapet-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A token generated for a `--dev` run, printed as `what`.
fn dev_token(what: &str) -> String {
    let token = parapet_controller::auth::new_token(
        parapet_controller::model::TokenKind::Operator,
        None,
        None,
        "dev",
    )
    .1;
    eprintln!("parapet-controller: --dev: the {what} for this run is\n  {token}");
    token
}

/// The `--dev` secret key, kept (0600) in the data directory so that
/// certificates stay readable across restarts of a trial.
fn dev_secret_key(data_dir: &std::path::Path) -> anyhow::Result<SecretKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("dev-secret.key");
    if !path.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(SecretKey::generate().as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "parapet-controller: --dev: private keys are sealed with {}",
            path.display()
        );
    }
    Ok(SecretKey::from_file(&path)?)
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let admin_token = match (cli.admin_token, cli.dev) {
        (Some(token), _) if !token.is_empty() => token,
        (_, true) => dev_token("admin token"),
        _ => anyhow::bail!(
            "no admin token: set PARAPET_ADMIN_TOKEN (or pass --dev to generate one for a trial run)"
        ),
    };
    // An empty variable means unset, not a token anyone could send.
    let edge_bootstrap_token = match (cli.edge_bootstrap_token.filter(|t| !t.is_empty()), cli.dev) {
        (Some(token), _) => Some(token),
        (None, true) => Some(dev_token("edge bootstrap token")),
        (None, false) => {
            tracing::warn!(
                "no edge bootstrap token (PARAPET_EDGE_BOOTSTRAP_TOKEN): edges cannot register"
            );
            None
        }
    };
    let settings = match &cli.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let secret_key = match (cli.secret_key_file, cli.secret_key, cli.dev, &cli.data_dir) {
        (Some(file), _, _, _) => Some(SecretKey::from_file(&file)?),
        (None, Some(key), _, _) => Some(SecretKey::from_base64(&key)?),
        (None, None, true, Some(dir)) => Some(dev_secret_key(dir)?),
        _ => {
            tracing::warn!("no secret key (--secret-key-file): certificates cannot be uploaded");
            None
        }
    };
    let (store, compiled_plugins_dir) = match (cli.data_dir, cli.mongodb_uri) {
        (_, Some(uri)) => (StoreLocation::Mongo(uri), None),
        (Some(dir), None) => {
            let compiled = dir.join("compiled");
            (StoreLocation::Embedded(dir), Some(compiled))
        }
        (None, None) => anyhow::bail!("give --data-dir DIR or --mongodb-uri URI"),
    };
    let tls = match (cli.tls_cert, cli.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            edge_client_ca: cli.edge_client_ca,
        }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let running = launch(LaunchOptions {
        listen: cli.listen,
        grpc_listen: cli.grpc_listen,
        store,
        admin_token,
        edge_bootstrap_token,
        tls,
        heartbeat_interval_ms: cli.heartbeat_interval_ms,
        max_plugin_bytes: cli.max_plugin_mib << 20,
        metrics: cli.metrics,
        settings,
        compiled_plugins_dir,
        secret_key: secret_key.map(std::sync::Arc::new),
    })
    .await?;
    tracing::info!(
        rest = %format!("{scheme}://{}", running.rest),
        grpc = %format!("{scheme}://{}", running.grpc),
        metrics = %running.metrics.map_or("off".to_string(), |a| a.to_string()),
        "parapet-controller serving"
    );
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => match running.reload_tls() {
                Ok(true) => tracing::info!("TLS certificate read again"),
                Ok(false) => tracing::info!("SIGHUP: nothing to reload (no TLS)"),
                Err(e) => tracing::error!(error = %format!("{e:#}"), "TLS certificate not reloaded; the previous one stays"),
            },
        }
    }
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
