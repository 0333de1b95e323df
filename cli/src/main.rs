//! `parapet`: the command line for plugin authors (and, later, customers and
//! operators).

mod build;
mod scaffold;
mod toolchain;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build and manage Parapet edge plugins.
#[derive(Parser)]
#[command(name = "parapet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write, build and check WebAssembly plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Compile a plugin crate (or a workspace of plugin crates) into
    /// `parapet:plugin` components, checked with the edge's own loader.
    ///
    /// Uses rustup's wasm32-unknown-unknown target (installing it if needed),
    /// else Debian's rustc-web with -Zbuild-std. Force one with
    /// PARAPET_WASM_TOOLCHAIN=standard|debian.
    Build {
        /// The plugin crate or workspace.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write `<name>.wasm` [default: DIR/target/plugins]
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Create a new plugin crate that builds as it is.
    New {
        /// Crate name (a-z, 0-9, -, _).
        name: String,
        /// Directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Check that a `.wasm` file is a loadable `parapet:plugin` component.
    Check {
        /// The component.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parapet: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plugin(PluginCommand::Build { dir, out }) => {
            let out = out.unwrap_or_else(|| dir.join("target/plugins"));
            for b in build::build(&dir, &out)? {
                println!(
                    "{}  {} bytes  sha256:{}",
                    b.path.display(),
                    b.size,
                    b.digest
                );
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::New { name, dir }) => {
            let path = scaffold::new_plugin(&name, &dir)?;
            println!(
                "created {}; build it with `parapet plugin build {}`",
                path.display(),
                path.display()
            );
            Ok(())
        }
        Command::Plugin(PluginCommand::Check { file }) => {
            let bytes = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let engine = parapet_host::PluginEngine::validator()?;
            let digest = engine
                .validate(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!(
                "{}: a valid {} component, sha256:{digest}",
                file.display(),
                parapet_host::WIT_PACKAGE
            );
            Ok(())
        }
    }
}
