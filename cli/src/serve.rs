//! `parapet plugin serve`: the plugins of a crate (or workspace) on a local
//! edge in front of an origin, each listed at every hook (the edge calls
//! only the hooks a plugin implements), rebuilt and reloaded when the
//! sources change. Each request prints its access line and, per plugin, a
//! receipt: instantiation, each hook's time, peak memory and host calls.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use parapet_config::EdgeConfig;
use parapet_edge::cache::Purge;
use parapet_edge::{launch, LaunchOptions};

use crate::build::{self, Built};
use crate::fixtures;

/// How often the sources are checked for changes.
const POLL: Duration = Duration::from_millis(500);

/// What `parapet plugin serve` was asked for.
pub struct ServeOptions {
    /// The plugin crate or workspace.
    pub dir: PathBuf,
    /// The origin behind the edge, `http://` or `https://`.
    pub origin: String,
    /// Where the edge listens.
    pub listen: SocketAddr,
    /// The configuration (JSON) of every plugin served, instead of each
    /// one's `fixtures.toml` `config`.
    pub config: Option<String>,
}

/// What is printed unless `RUST_LOG` says otherwise: access lines, plugin
/// receipts and the plugins' own log lines.
const OUTPUT: &str = "warn,parapet::access=info,parapet::receipt=debug,plugin=trace";

/// Builds the plugins, serves them until Ctrl-C, rebuilding on change.
pub fn serve(mut options: ServeOptions) -> Result<()> {
    check_origin(&options.origin)?;
    options.dir = options
        .dir
        .canonicalize()
        .with_context(|| format!("plugin directory {}", options.dir.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(OUTPUT));
    tracing_subscriber::fmt()
        .compact()
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let config = options
        .config
        .as_deref()
        .map(|json| {
            let value: serde_json::Value = serde_json::from_str(json)
                .with_context(|| format!("--config is not JSON: {json}"))?;
            toml::Value::try_from(value).context("--config cannot be a plugin configuration")
        })
        .transpose()?;
    let built = build::build(&options.dir, &plugins_out(&options.dir))?;
    let state = options.dir.join("target/parapet-serve");
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let config_path = state.join("edge.toml");
    write_edge_config(&config_path, &options, &built, config.as_ref())?;

    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(options, config_path, state, config))
}

async fn run(
    options: ServeOptions,
    config_path: PathBuf,
    state: PathBuf,
    config: Option<toml::Value>,
) -> Result<()> {
    let edge_config = EdgeConfig::from_file(&config_path)
        .map_err(|e| anyhow::anyhow!("the generated edge configuration: {e}"))?;
    let running = launch(LaunchOptions {
        config: edge_config,
        config_path: Some(config_path.clone()),
        access_log: true,
        compiled_plugins_dir: Some(state.join("compiled")),
    })
    .await?;
    let address = running.listeners.first().copied().context("no listener")?;
    eprintln!(
        "parapet: serving on http://{address} in front of {}; watching {} (Ctrl-C stops)",
        options.origin,
        options.dir.display()
    );
    let mut seen = newest_change(&options.dir);
    let mut ticks = tokio::time::interval(POLL);
    // One listener for the whole run: a Ctrl-C during a rebuild is kept.
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {}
        }
        let now = newest_change(&options.dir);
        if now <= seen {
            continue;
        }
        seen = now;
        eprintln!("parapet: sources changed; rebuilding");
        let dir = options.dir.clone();
        let rebuilt = tokio::task::spawn_blocking(move || build::build(&dir, &plugins_out(&dir)))
            .await
            .context("the build task failed")?;
        let built = match rebuilt {
            Ok(built) => built,
            Err(e) => {
                eprintln!("parapet: build failed, still serving the last good build: {e:#}");
                continue;
            }
        };
        let reloaded = match write_edge_config(&config_path, &options, &built, config.as_ref()) {
            Ok(()) => running.edge.reload().await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("{e:#}")),
        };
        match reloaded {
            Ok(()) => {
                // What the old build stored would hide the new one's work.
                running.edge.cache.purge(&Purge::everything(), false).await;
                let names: Vec<String> = built
                    .iter()
                    .map(|b| format!("{} sha256:{:.12}", b.name, b.digest))
                    .collect();
                eprintln!("parapet: reloaded {}; cache emptied", names.join(", "));
            }
            Err(e) => eprintln!(
                "parapet: the new build does not load, still serving the last good one: {e}"
            ),
        }
    }
    eprintln!("parapet: stopping");
    running.shutdown().await;
    Ok(())
}

/// Where the components of the crate at `dir` are written.
fn plugins_out(dir: &Path) -> PathBuf {
    dir.join("target/plugins")
}

/// Refuses an origin the edge could not use, before building anything.
fn check_origin(origin: &str) -> Result<()> {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        bail!("--origin must be an http:// or https:// URL, not `{origin}`");
    };
    if rest.trim_end_matches('/').is_empty() {
        bail!("--origin `{origin}` has no host");
    }
    Ok(())
}

/// Writes the edge's configuration: one distribution for every host in
/// front of the origin, every built plugin at every hook, in build order.
fn write_edge_config(
    path: &Path,
    options: &ServeOptions,
    built: &[Built],
    config: Option<&toml::Value>,
) -> Result<()> {
    let mut plugins = Vec::new();
    for plugin in built {
        let settings = match config {
            Some(value) => Some(value.clone()),
            None => fixtures::config_of(&plugin.crate_dir)?.map(toml::Value::Table),
        };
        let mut entry = table([
            ("name", plugin.name.clone().into()),
            ("wasm", plugin.path.display().to_string().into()),
        ]);
        if let Some(settings) = settings {
            entry.insert("config".into(), settings);
        }
        plugins.push(toml::Value::Table(entry));
    }
    let names = || toml::Value::Array(built.iter().map(|b| b.name.clone().into()).collect());
    let strings = |items: &[&str]| toml::Value::Array(items.iter().map(|s| (*s).into()).collect());
    let distribution = table([
        ("id", "local".into()),
        ("customer", "local".into()),
        ("domains", strings(&["*"])),
        ("plugin", toml::Value::Array(plugins)),
        (
            "origin",
            toml::Value::Array(vec![table([("url", options.origin.clone().into())]).into()]),
        ),
        (
            "behavior",
            toml::Value::Array(vec![table([
                ("path", "*".into()),
                ("viewer_request", names()),
                ("origin_request", names()),
                ("origin_response", names()),
                ("viewer_response", names()),
            ])
            .into()]),
        ),
    ]);
    let document = table([
        ("pop", table([("id", "local".into())]).into()),
        (
            "listener",
            toml::Value::Array(vec![table([(
                "address",
                options.listen.to_string().into(),
            )])
            .into()]),
        ),
        (
            // A local origin is the point of a local loop.
            "upstream",
            table([(
                "allow_networks",
                strings(&[
                    "127.0.0.0/8",
                    "::1/128",
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "fc00::/7",
                ]),
            )])
            .into(),
        ),
        (
            "distribution",
            toml::Value::Array(vec![distribution.into()]),
        ),
    ]);
    let digests: Vec<String> = built
        .iter()
        .map(|b| format!("# {} sha256:{}", b.name, b.digest))
        .collect();
    let text = format!(
        "# Written by `parapet plugin serve`; rewritten at each rebuild.\n{}\n\n{}",
        digests.join("\n"),
        toml::to_string(&document).context("writing the edge configuration")?
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A TOML table of `entries`.
fn table<const N: usize>(entries: [(&str, toml::Value); N]) -> toml::Table {
    entries
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
}

/// The newest modification time of the sources under `dir` (build output
/// and hidden directories aside).
fn newest_change(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if let Ok(modified) = meta.modified() {
                newest = newest.max(modified);
            }
        }
    }
    newest
}
