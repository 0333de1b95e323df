//! `parapet-edge`: the Parapet PoP server.
//!
//! Serving is being built (issue 3); today the binary checks a configuration
//! the way the server will load it: parsed, validated, and every plugin
//! compiled and launched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use parapet_edge::config::EdgeConfig;
use parapet_edge::routing::Routes;
use parapet_host::{EngineConfig, PluginEngine};

/// The Parapet edge server (PoP): a caching reverse proxy running Wasm plugins.
#[derive(Parser)]
#[command(name = "parapet-edge", version, about)]
struct Cli {
    /// Check the configuration file (syntax, fields, plugins) and exit: 0
    /// when it is valid, 1 with the file, field and reason when it is not.
    #[arg(long, value_name = "FILE")]
    check_config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match check(&cli.check_config) {
        Ok(summary) => {
            println!(
                "{}: configuration ok ({summary})",
                cli.check_config.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("parapet-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads `path` as the server would; returns a one-line summary.
fn check(path: &Path) -> anyhow::Result<String> {
    let config = EdgeConfig::from_file(path)?;
    let engine =
        Arc::new(PluginEngine::new(EngineConfig::default()).context("starting the plugin engine")?);
    let base_dir = path.parent().unwrap_or(Path::new("."));
    Routes::build(&config, base_dir, &engine).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        e
    })?;
    let plugins: usize = config.distributions.iter().map(|d| d.plugins.len()).sum();
    Ok(format!(
        "distributions: {}, plugins loaded: {plugins}",
        config.distributions.len()
    ))
}
