//! `parapet`: the command line for plugin authors, customers and
//! operators.

mod build;
mod client;
mod fixtures;
mod manage;
mod scaffold;
mod sdk;
mod serve;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use client::{segment, Body, CliError, CliResult, Client};
use manage::{
    print, CertCommand, CustomerCommand, DeployCommand, DistCommand, EdgeCommand, KvCommand,
    PurgeCommand, TokenCommand,
};
use serde_json::json;

/// Build Parapet plugins and manage a Parapet CDN.
///
/// The controller and token come from PARAPET_URL and PARAPET_TOKEN, else
/// from `parapet login`. Exit codes: 0 done; 1 bad arguments or files;
/// 2 refused by the controller (4xx); 3 controller unreachable or failing;
/// 4 a waited-for job failed or timed out.
#[derive(Parser)]
#[command(name = "parapet", version, verbatim_doc_comment)]
struct Cli {
    /// Print the controller's answers as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Save the controller's URL and a token for the next commands.
    Login {
        /// The controller's REST URL, e.g. `https://controller.example.net:7070`.
        #[arg(long)]
        url: String,
        /// The token (or PARAPET_TOKEN).
        #[arg(long, env = "PARAPET_TOKEN", hide_env_values = true)]
        token: String,
        /// Check the controller's certificate against this authority (PEM)
        /// instead of the system's roots (or PARAPET_CA_FILE); saved too.
        #[arg(long, value_name = "FILE", env = "PARAPET_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Write, build, check, upload and manage WebAssembly plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Customers (operator).
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// API tokens (operator).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Distributions and their versions.
    #[command(subcommand)]
    Dist(DistCommand),
    /// Purge cached objects on every edge.
    #[command(subcommand)]
    Purge(PurgeCommand),
    /// Purge and prewarm jobs: all, or one with its per-edge status.
    Jobs {
        /// Job id.
        id: Option<String>,
    },
    /// Edges with their working info, or remove one (operator).
    Edges {
        #[command(subcommand)]
        command: Option<EdgeCommand>,
    },
    /// Edge groups: their edges, health and rolling deployments (operator).
    Groups,
    /// Blue/green deployments.
    #[command(subcommand)]
    Deploy(DeployCommand),
    /// KV data plugins read.
    #[command(subcommand)]
    Kv(KvCommand),
    /// TLS certificates of distributions: upload, ACME, list, remove.
    #[command(subcommand)]
    Cert(CertCommand),
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
    /// Create a new plugin crate that builds as it is, with a first
    /// fixtures.toml for `parapet plugin test`.
    ///
    /// The crate depends on the plugin SDK this binary carries, written to
    /// $PARAPET_DATA_DIR (else $XDG_DATA_HOME/parapet, else
    /// ~/.local/share/parapet) under `sdk/<version>`.
    New {
        /// Crate name (a-z, 0-9, -, _).
        name: String,
        /// Directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build a plugin crate (or workspace) and run each plugin's hooks
    /// against the cases of its `fixtures.toml`, on the edge's own plugin
    /// host, without an edge. Exits non-zero when a case fails.
    ///
    /// A case names a hook (viewer-request by default), a request (and, for
    /// response hooks, a response) and what to expect: the action
    /// (continue or respond), status, path, query, headers, absent headers,
    /// body, and for origin-response the cache override. `parapet plugin
    /// new` writes a first fixtures.toml.
    Test {
        /// The plugin crate or workspace.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Build a plugin crate (or workspace) and serve it on a local edge in
    /// front of an origin, rebuilding and reloading when its sources change.
    ///
    /// Every plugin is listed at every hook (the edge calls only the hooks a
    /// plugin implements), in build order. Each request prints its access
    /// line and, per plugin, a receipt: instantiation, each hook's time,
    /// peak memory and host calls; the plugins' own log lines show too.
    /// RUST_LOG changes what is printed. A build that fails, or does not
    /// load, leaves the last good one serving. The cache is emptied at each
    /// reload.
    Serve {
        /// The plugin crate or workspace.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The origin behind the edge, e.g. http://127.0.0.1:3000.
        #[arg(long)]
        origin: String,
        /// Where the edge listens (port 0: any free port, printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The plugins' configuration, as JSON [default: the `config` of
        /// each plugin's fixtures.toml, else {}].
        #[arg(long)]
        config: Option<String>,
    },
    /// Check that a `.wasm` file is a loadable `parapet:plugin` component.
    Check {
        /// The component.
        file: PathBuf,
    },
    /// Upload a component to the controller (a new version).
    Upload {
        /// The component.
        file: PathBuf,
        /// Plugin name [default: the file's name].
        #[arg(long)]
        name: Option<String>,
        /// Operators: the customer to act for.
        #[arg(long)]
        customer: Option<String>,
    },
    /// List uploaded plugins.
    List,
    /// Delete a plugin (every version), if no distribution uses it.
    Rm {
        /// Plugin name.
        name: String,
        /// Operators: the customer to act for.
        #[arg(long)]
        customer: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let outcome = match cli.command {
        Command::Plugin(
            PluginCommand::Build { .. }
            | PluginCommand::New { .. }
            | PluginCommand::Test { .. }
            | PluginCommand::Serve { .. }
            | PluginCommand::Check { .. },
        ) => local(cli.command).map_err(CliError::from),
        command => manage(command, json),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parapet: error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// The verbs that talk to the controller.
fn manage(command: Command, json: bool) -> CliResult<()> {
    if let Command::Login {
        url,
        token,
        ca_file,
    } = &command
    {
        let client = Client::new(url, token, ca_file.as_deref())?;
        client.get("/v1/distributions")?;
        let path = client::save_login(url, token, ca_file.as_deref())?;
        println!("logged in to {url}; saved in {}", path.display());
        return Ok(());
    }
    let client = Client::from_env()?;
    let (answer, columns): (serde_json::Value, &[&str]) = match command {
        Command::Customer(CustomerCommand::Create { id, name }) => {
            let name = name.unwrap_or_else(|| id.clone());
            (
                client.send(
                    "POST",
                    "/v1/customers",
                    Some(Body::Json(json!({"id": id, "name": name}))),
                )?,
                &["id", "name", "suspended"],
            )
        }
        Command::Customer(CustomerCommand::List) => {
            (client.get("/v1/customers")?, &["id", "name", "suspended"])
        }
        Command::Customer(CustomerCommand::Suspend { id }) => (
            client.send(
                "POST",
                &format!("/v1/customers/{}/suspend", segment(&id)),
                None,
            )?,
            &["id", "name", "suspended"],
        ),
        Command::Customer(CustomerCommand::Resume { id }) => (
            client.send(
                "POST",
                &format!("/v1/customers/{}/resume", segment(&id)),
                None,
            )?,
            &["id", "name", "suspended"],
        ),
        Command::Token(TokenCommand::Issue {
            customer,
            monitor,
            name,
        }) => {
            let body = json!({"customer": customer, "monitor": monitor, "name": name});
            let issued = client.send("POST", "/v1/tokens", Some(Body::Json(body)))?;
            if !json {
                println!(
                    "token {} (shown once; keep it safe):\n{}",
                    issued["id"].as_str().unwrap_or("?"),
                    issued["token"].as_str().unwrap_or("?")
                );
                return Ok(());
            }
            (issued, &[])
        }
        Command::Token(TokenCommand::List) => (
            client.get("/v1/tokens")?,
            &["id", "kind", "customer", "name", "revoked"],
        ),
        Command::Token(TokenCommand::Revoke { id }) => (
            client.send("DELETE", &format!("/v1/tokens/{}", segment(&id)), None)?,
            &["id", "kind", "customer", "name", "revoked"],
        ),
        Command::Plugin(PluginCommand::Upload {
            file,
            name,
            customer,
        }) => (
            manage::upload(&client, &file, name, customer.as_deref())?,
            &["name", "version", "size", "sha256"],
        ),
        Command::Plugin(PluginCommand::List) => (
            client.get("/v1/plugins")?,
            &["customer", "name", "version", "size", "sha256"],
        ),
        Command::Plugin(PluginCommand::Rm { name, customer }) => (
            client.send(
                "DELETE",
                &manage::for_customer(
                    format!("/v1/plugins/{}", segment(&name)),
                    customer.as_deref(),
                ),
                None,
            )?,
            &["name", "version", "sha256"],
        ),
        Command::Plugin(_) => unreachable!("local plugin verbs are handled before"),
        Command::Dist(DistCommand::Apply {
            file,
            id,
            stage,
            customer,
            claim_override,
        }) => (
            manage::apply(&client, &file, id, stage, customer, claim_override)?,
            &["id", "customer", "live_version", "latest_version"],
        ),
        Command::Dist(DistCommand::List) => (
            client.get("/v1/distributions")?,
            &[
                "id",
                "customer",
                "live_version",
                "latest_version",
                "domains",
            ],
        ),
        Command::Dist(DistCommand::Versions { id }) => (
            client.get(&format!("/v1/distributions/{}/versions", segment(&id)))?,
            &["version", "live", "created_ms"],
        ),
        Command::Dist(DistCommand::Status { id }) => {
            let status = client.get(&format!("/v1/distributions/{}/status", segment(&id)))?;
            if !json {
                print(
                    &status,
                    false,
                    &["distribution", "live_version", "latest_version"],
                );
                println!();
                print(
                    &status["edges"],
                    false,
                    &[
                        "name",
                        "pop",
                        "group",
                        "healthy",
                        "version",
                        "failed_version",
                        "error",
                    ],
                );
                return Ok(());
            }
            (status, &[])
        }
        Command::Dist(DistCommand::Diff { id, from, to }) => {
            let diff = client.get(&format!(
                "/v1/distributions/{}/diff?from={from}&to={to}",
                segment(&id)
            ))?;
            if !json {
                print!("{}", diff["diff"].as_str().unwrap_or_default());
                return Ok(());
            }
            (diff, &[])
        }
        Command::Purge(command) => (
            manage::purge(&client, command, json)?,
            &["id", "status", "progress"],
        ),
        Command::Jobs { id: Some(id) } => {
            let job = client.get(&format!("/v1/jobs/{}", segment(&id)))?;
            if !json {
                print(
                    &job,
                    false,
                    &["id", "distribution", "status", "progress", "error"],
                );
                println!();
                print(&job["edges"], false, &["edge", "acked", "count", "error"]);
                return Ok(());
            }
            (job, &[])
        }
        Command::Jobs { id: None } => (
            client.get("/v1/jobs")?,
            &["id", "distribution", "status", "created_ms"],
        ),
        Command::Edges {
            command: Some(EdgeCommand::Rm { edge }),
        } => (
            client.send("DELETE", &format!("/v1/edges/{}", segment(&edge)), None)?,
            &["id", "name", "pop", "group"],
        ),
        Command::Edges { command: None } => (
            client.get("/v1/edges")?,
            &[
                "name",
                "pop",
                "role",
                "group",
                "healthy",
                "version",
                "config_revision",
                "requests_per_second",
                "cache_bytes",
                "last_heartbeat_ms",
            ],
        ),
        Command::Groups => (
            client.get("/v1/groups")?,
            &[
                "name",
                "edges",
                "healthy",
                "pops",
                "config_revisions",
                "deployments",
            ],
        ),
        Command::Deploy(DeployCommand::Start {
            dist,
            version,
            group,
        }) => {
            let body = json!({"distribution": dist, "version": version, "group": group});
            (
                client.send("POST", "/v1/deployments", Some(Body::Json(body)))?,
                DEPLOYMENT,
            )
        }
        Command::Deploy(DeployCommand::Promote { id }) => (
            client.send(
                "POST",
                &format!("/v1/deployments/{}/promote", segment(&id)),
                None,
            )?,
            DEPLOYMENT,
        ),
        Command::Deploy(DeployCommand::Rollback { id }) => (
            client.send(
                "POST",
                &format!("/v1/deployments/{}/rollback", segment(&id)),
                None,
            )?,
            DEPLOYMENT,
        ),
        Command::Deploy(DeployCommand::Status { id: Some(id) }) => (
            client.get(&format!("/v1/deployments/{}", segment(&id)))?,
            DEPLOYMENT,
        ),
        Command::Deploy(DeployCommand::Status { id: None }) => {
            (client.get("/v1/deployments")?, DEPLOYMENT)
        }
        Command::Kv(KvCommand::Put { dist, key, value }) => {
            let path = format!("/v1/distributions/{}/kv/{}", segment(&dist), segment(&key));
            (
                client.send("PUT", &path, Some(Body::Json(json!({"value": value}))))?,
                &["key", "value"],
            )
        }
        Command::Kv(KvCommand::Get { dist, key }) => (
            client.get(&format!(
                "/v1/distributions/{}/kv/{}",
                segment(&dist),
                segment(&key)
            ))?,
            &["key", "value"],
        ),
        Command::Kv(KvCommand::Rm { dist, key }) => {
            let path = format!("/v1/distributions/{}/kv/{}", segment(&dist), segment(&key));
            (client.send("DELETE", &path, None)?, &["key", "value"])
        }
        Command::Cert(CertCommand::Upload { dist, cert, key }) => {
            let body = json!({
                "certificate": manage::read_pem(&cert)?,
                "private_key": manage::read_pem(&key)?,
            });
            let path = format!("/v1/distributions/{}/certificate", segment(&dist));
            (
                client.send("PUT", &path, Some(Body::Json(body)))?,
                CERTIFICATE,
            )
        }
        Command::Cert(CertCommand::Acme { dist }) => {
            let path = format!("/v1/distributions/{}/certificate/acme", segment(&dist));
            (client.send("POST", &path, None)?, CERTIFICATE)
        }
        Command::Cert(CertCommand::List) => (client.get("/v1/certificates")?, CERTIFICATE),
        Command::Cert(CertCommand::Rm { dist }) => {
            let path = format!("/v1/distributions/{}/certificate", segment(&dist));
            (client.send("DELETE", &path, None)?, CERTIFICATE)
        }
        Command::Login { .. } => unreachable!("handled above"),
    };
    print(&answer, json, columns);
    Ok(())
}

/// Columns of a certificate.
const CERTIFICATE: &[&str] = &["distribution", "source", "names", "days_left", "acme_error"];

/// Columns of a deployment.
const DEPLOYMENT: &[&str] = &[
    "id",
    "distribution",
    "group",
    "from_version",
    "to_version",
    "state",
];

/// `parapet plugin test`: builds the plugins under `dir` and runs the
/// fixtures of each one that has them.
fn test_plugins(dir: &Path) -> anyhow::Result<()> {
    let (mut passed, mut failed, mut tested) = (0, 0, 0);
    for plugin in build::build(dir, &dir.join("target/plugins"))? {
        let fixtures = plugin.crate_dir.join(fixtures::FIXTURES);
        if !fixtures.exists() {
            println!(
                "{}: no {} (nothing to test)",
                plugin.name,
                fixtures::FIXTURES
            );
            continue;
        }
        let bytes = std::fs::read(&plugin.path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", plugin.path.display()))?;
        let outcome = fixtures::run(&plugin.name, &bytes, &fixtures)?;
        passed += outcome.passed;
        failed += outcome.failed;
        tested += 1;
    }
    if tested == 0 {
        anyhow::bail!(
            "no plugin under {} has a {}: write one next to the plugin's Cargo.toml (`parapet plugin new` makes a first one)",
            dir.display(),
            fixtures::FIXTURES
        );
    }
    println!("{passed} passed, {failed} failed, in {tested} plugins");
    if failed > 0 {
        anyhow::bail!("{failed} fixture cases failed");
    }
    Ok(())
}

/// The verbs that work without a controller.
fn local(command: Command) -> anyhow::Result<()> {
    match command {
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
        Command::Plugin(PluginCommand::Test { dir }) => test_plugins(&dir),
        Command::Plugin(PluginCommand::Serve {
            dir,
            origin,
            listen,
            config,
        }) => serve::serve(serve::ServeOptions {
            dir,
            origin,
            listen,
            config,
        }),
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
        _ => unreachable!("only the local plugin verbs come here"),
    }
}
