//! `parapet-dns`: the authoritative geo-DNS server of the CDN zone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use notify::Watcher;
use parapet_dns::controller::ControllerSource;
use parapet_dns::state::{Sources, State};
use parapet_dns::{launch, LaunchOptions};
use tokio::signal::unix::{signal, SignalKind};

/// mimalloc: each query makes many small, short-lived allocations (see
/// bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Parapet's geo-DNS: the authoritative server of the CDN zone. For
/// `<distribution>.<zone>` it answers the addresses of the PoP nearest to
/// the client (EDNS Client Subnet, else the resolver's address, located in
/// a MaxMind-format database); SOA, NS and static records come from the
/// settings.
///
///   parapet-dns --listen 0.0.0.0:53 --zone cdn.example.net \
///       --pops pops.toml --geoip dbip-city-lite.mmdb --config dns.toml
///   PARAPET_TOKEN=... parapet-dns ... --controller http://controller:7070
///
/// The PoPs file holds `[[pop]]` tables (id, lat, lon, ipv4, ipv6,
/// enabled, weight, capacity); see examples/pops.toml. The settings file
/// (TTL, answers per query, default PoPs, SOA, static records, metrics
/// address) is documented in examples/dns.toml.
///
/// A change to any of these files, or SIGHUP, reloads it; queries keep
/// being answered from the running data, which stays if the new data is
/// wrong.
#[derive(Parser)]
#[command(name = "parapet-dns", version, verbatim_doc_comment)]
struct Cli {
    /// UDP and TCP address to answer on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// The zone served, e.g. cdn.example.net.
    #[arg(long, value_name = "ZONE")]
    zone: String,
    /// The PoPs file (TOML, `[[pop]]` tables).
    #[arg(long, value_name = "FILE")]
    pops: PathBuf,
    /// A MaxMind-format database (City or Country level). Without one,
    /// every client gets the default PoPs.
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
    /// The settings file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for Prometheus `/metrics` and `/healthz`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// parapet-controller's REST URL: a PoP is answered only while one of
    /// its edges is healthy in the controller's edge list (polled).
    #[arg(long, value_name = "URL")]
    controller: Option<String>,
    /// Token for the controller's edge list: a monitor token
    /// (`parapet token issue --monitor`), which reads and changes nothing
    /// else.
    #[arg(
        long,
        env = "PARAPET_TOKEN",
        hide_env_values = true,
        requires = "controller"
    )]
    token: Option<String>,
    /// Check the controller's TLS certificate against this authority (PEM)
    /// instead of the system's roots.
    #[arg(
        long,
        value_name = "FILE",
        env = "PARAPET_CA_FILE",
        requires = "controller"
    )]
    controller_ca: Option<PathBuf>,
    /// Time between two reads of the edge list, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    controller_interval_ms: u64,
    /// Log every query as a JSON line.
    #[arg(long)]
    query_log: bool,
    /// UDP worker threads, each with its own socket (0: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
    /// Check the files (zone, PoPs, settings, GeoIP database) and exit: 0
    /// when they are valid, 1 naming the file, field and reason.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = Sources {
        zone: cli.zone.clone(),
        pops: cli.pops.clone(),
        config: cli.config.clone(),
        geoip: cli.geoip.clone(),
        query_log: cli.query_log,
    };
    if cli.check {
        return match State::load(sources) {
            Ok((state, _)) => {
                let pops = state.zone().selector().pops().len();
                let geoip = match state.locator().as_ref() {
                    Some(locator) => format!("GeoIP {}", locator.database_type()),
                    None => "no GeoIP database".to_string(),
                };
                println!("{}: ok ({pops} PoPs, {geoip})", state.zone().origin());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("parapet-dns: {e}");
                ExitCode::FAILURE
            }
        };
    }
    parapet_telemetry::init_logging("info,hickory_server=warn");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("parapet-dns: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli, sources)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parapet-dns: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli, sources: Sources) -> anyhow::Result<()> {
    let controller = match (cli.controller.clone(), cli.token.clone()) {
        (Some(url), Some(token)) => Some(ControllerSource {
            url,
            token,
            ca_file: cli.controller_ca.clone(),
            interval: Duration::from_millis(cli.controller_interval_ms.max(100)),
        }),
        (Some(_), None) => {
            anyhow::bail!("--controller needs a token: set PARAPET_TOKEN (or --token)")
        }
        _ => None,
    };
    let running = launch(LaunchOptions {
        sources,
        listen: cli.listen,
        metrics: cli.metrics,
        workers: cli.workers,
        controller,
    })
    .await?;
    let state = running.state.clone();
    let _watcher = watch_files(state.clone())?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // Logged once reloads and signals are handled, so that whoever waits
    // for this line may change a file or signal at once.
    tracing::info!(
        address = %running.address,
        metrics = %running.metrics.map_or("off".to_string(), |a| a.to_string()),
        zone = %state.zone().origin(),
        pops = state.zone().selector().pops().len(),
        geoip = state.locator().as_ref().map_or("none", |l| l.database_type()),
        "parapet-dns answering"
    );
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                reload(&state, Changed::Zone, "SIGHUP");
                if state.sources().geoip.is_some() {
                    reload(&state, Changed::GeoIp, "SIGHUP");
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Which data a changed file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    Zone,
    GeoIp,
}

fn reload(state: &State, what: Changed, cause: &str) {
    let (result, name) = match what {
        Changed::Zone => (state.reload_zone(), "zone"),
        Changed::GeoIp => (state.reload_geoip(), "geoip"),
    };
    match result {
        Ok(()) => {
            metrics::counter!("parapet_dns_reloads_total", "what" => name, "result" => "ok")
                .increment(1);
            tracing::info!(cause, what = name, "reloaded");
        }
        Err(e) => {
            metrics::counter!("parapet_dns_reloads_total", "what" => name, "result" => "refused")
                .increment(1);
            tracing::error!(cause, what = name, error = %e, "reload refused; the running data stays");
        }
    }
}

/// Reloads when one of the files changes. Their directories are watched,
/// since editors and `geoipupdate` replace files rather than write them in
/// place; changes within 300 ms are taken as one.
fn watch_files(state: Arc<State>) -> anyhow::Result<notify::RecommendedWatcher> {
    let sources = state.sources();
    let mut files: Vec<(PathBuf, Changed)> = vec![(sources.pops.clone(), Changed::Zone)];
    files.extend(sources.config.clone().map(|p| (p, Changed::Zone)));
    files.extend(sources.geoip.clone().map(|p| (p, Changed::GeoIp)));
    let names: Vec<(std::ffi::OsString, Changed)> = files
        .iter()
        .filter_map(|(path, what)| Some((path.file_name()?.to_os_string(), *what)))
        .collect();
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<Changed>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !(event.kind.is_modify() || event.kind.is_create()) {
            return;
        }
        for (name, what) in &names {
            if event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()))
            {
                let _ = changed.send(*what);
            }
        }
    })
    .context("starting the file watcher")?;
    let mut dirs: Vec<&Path> = files
        .iter()
        .map(|(path, _)| {
            path.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    tokio::spawn(async move {
        while let Some(first) = changes.recv().await {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut pending = vec![first];
            while let Ok(more) = changes.try_recv() {
                pending.push(more);
            }
            for what in [Changed::Zone, Changed::GeoIp] {
                if pending.contains(&what) {
                    reload(&state, what, "file changed");
                }
            }
        }
    });
    Ok(watcher)
}
