//! The customer and operator verbs: everything the controller's REST API
//! offers, with human output by default and `--json` for scripts.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::client::{exit, segment, Body, CliError, CliResult, Client};

/// Customers (operator).
#[derive(Subcommand)]
pub enum CustomerCommand {
    /// Create a customer.
    Create {
        /// Short id: lowercase letters, digits, `-`.
        id: String,
        /// Display name [default: the id].
        #[arg(long)]
        name: Option<String>,
    },
    /// List customers.
    List,
    /// Suspend a customer: its tokens are refused, its sites not served.
    Suspend {
        /// Customer id.
        id: String,
    },
    /// Lift a suspension.
    Resume {
        /// Customer id.
        id: String,
    },
}

/// Edges (operator).
#[derive(Subcommand)]
pub enum EdgeCommand {
    /// Remove an edge for good (a dead one): its credential is revoked and
    /// jobs stop waiting for it. A running edge registers again as new (and
    /// clears its cache).
    Rm {
        /// Edge name or id.
        edge: String,
    },
}

/// API tokens (operator).
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Issue a token; it is shown once.
    Issue {
        /// The customer it acts for (omit for an operator token).
        #[arg(long, conflicts_with = "monitor")]
        customer: Option<String>,
        /// A monitor token: reads the edge list and groups, changes nothing
        /// (for the geo-DNS and monitoring).
        #[arg(long)]
        monitor: bool,
        /// What it is for.
        #[arg(long)]
        name: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id (`tok_...`).
    Revoke {
        /// Token id.
        id: String,
    },
}

/// Distributions.
#[derive(Subcommand)]
pub enum DistCommand {
    /// Create or update a distribution from a file (TOML or JSON: the
    /// distribution table of parapet-edge's configuration, plugins named
    /// by their uploaded name). Each apply is a new version.
    Apply {
        /// The file.
        #[arg(short, long)]
        file: PathBuf,
        /// Distribution id [default: the file's `id`].
        #[arg(long)]
        id: Option<String>,
        /// Store the version without making it live (for `deploy start`).
        #[arg(long)]
        stage: bool,
        /// Operators: the customer to act for.
        #[arg(long)]
        customer: Option<String>,
        /// Operators: let the domains overlap another customer's wildcard
        /// or names (one name is still one distribution's only).
        #[arg(long)]
        claim_override: bool,
    },
    /// List distributions.
    List,
    /// List a distribution's versions.
    Versions {
        /// Distribution id.
        id: String,
    },
    /// Which version each edge serves, or why one did not load there.
    Status {
        /// Distribution id.
        id: String,
    },
    /// Show what changed between two versions.
    Diff {
        /// Distribution id.
        id: String,
        /// Older version.
        from: u64,
        /// Newer version.
        to: u64,
    },
}

/// What to purge.
#[derive(Subcommand)]
pub enum PurgeCommand {
    /// One URL (`host/path` or a full URL).
    Url {
        /// Distribution id.
        dist: String,
        /// The URL.
        url: String,
        #[command(flatten)]
        options: PurgeOptions,
    },
    /// Every URL under a `host/path` prefix.
    Prefix {
        /// Distribution id.
        dist: String,
        /// The prefix.
        prefix: String,
        #[command(flatten)]
        options: PurgeOptions,
    },
    /// Objects tagged with a Surrogate-Key.
    Tag {
        /// Distribution id.
        dist: String,
        /// The tag.
        tag: String,
        #[command(flatten)]
        options: PurgeOptions,
    },
    /// Everything of a distribution.
    All {
        /// Distribution id.
        dist: String,
        #[command(flatten)]
        options: PurgeOptions,
    },
}

/// Options of every purge.
#[derive(clap::Args)]
pub struct PurgeOptions {
    /// Mark stale (served while revalidating) instead of deleting.
    #[arg(long)]
    soft: bool,
    /// Wait until every edge acknowledged (exit 4 if the job fails or
    /// takes longer than --timeout).
    #[arg(long)]
    wait: bool,
    /// Seconds `--wait` waits.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// Blue/green deployments.
#[derive(Subcommand)]
pub enum DeployCommand {
    /// Roll a version out to one edge group.
    Start {
        /// Distribution id.
        dist: String,
        /// The version (see `dist versions`).
        version: u64,
        /// The edge group that gets it first.
        #[arg(long)]
        group: String,
    },
    /// Make the rolled-out version live everywhere.
    Promote {
        /// Deployment id.
        id: String,
    },
    /// Put the group back on the live version.
    Rollback {
        /// Deployment id.
        id: String,
    },
    /// Show one deployment, or all.
    Status {
        /// Deployment id.
        id: Option<String>,
    },
}

/// KV data for plugins.
#[derive(Subcommand)]
pub enum KvCommand {
    /// Set a key.
    Put {
        /// Distribution id.
        dist: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Show a key.
    Get {
        /// Distribution id.
        dist: String,
        /// Key.
        key: String,
    },
    /// Remove a key.
    Rm {
        /// Distribution id.
        dist: String,
        /// Key.
        key: String,
    },
}

/// TLS certificates of distributions.
#[derive(Subcommand)]
pub enum CertCommand {
    /// Upload a distribution's certificate chain and private key (PEM).
    /// The controller checks that the chain links up, the key matches, the
    /// names cover every domain and the dates are current; the key is
    /// stored sealed and never shown again. Edges serve it by SNI.
    Upload {
        /// Distribution id.
        dist: String,
        /// The chain (PEM): the leaf first, then each issuer.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Have the controller obtain and renew the distribution's certificate
    /// by ACME (HTTP-01, answered by the edges); renewal starts 30 days
    /// before expiry.
    Acme {
        /// Distribution id.
        dist: String,
    },
    /// Certificates with their names and days left.
    List,
    /// Remove a distribution's certificate (ACME renewals stop too).
    Rm {
        /// Distribution id.
        dist: String,
    },
}

/// Reads a PEM file given to `parapet cert upload`.
pub fn read_pem(path: &Path) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("reading {}: {e}", path.display())))
}

/// Prints `value` as JSON, or as a table of `columns` (one row per array
/// element, or the object alone).
pub fn print(value: &Value, json: bool, columns: &[&str]) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    let rows: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    fn text(value: Option<&Value>) -> String {
        match value {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".to_string(),
            Some(Value::Array(items)) if items.is_empty() => "-".to_string(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| text(Some(item)))
                .collect::<Vec<_>>()
                .join(","),
            Some(other) => other.to_string(),
        }
    }
    let cell = |row: &Value, column: &str| text(row.get(column));
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for row in rows {
        println!("{}", line(columns.iter().map(|c| cell(row, c)).collect()));
    }
}

/// Reads a distribution file: TOML (`.toml`) or JSON.
pub fn read_distribution(path: &Path) -> CliResult<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("reading {}: {e}", path.display())))?;
    if path.extension().is_some_and(|e| e == "toml") {
        let value: toml::Value = toml::from_str(&text)
            .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
        serde_json::to_value(value).map_err(|e| CliError::usage(e.to_string()))
    } else {
        serde_json::from_str(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
    }
}

/// `dist apply`.
pub fn apply(
    client: &Client,
    file: &Path,
    id: Option<String>,
    stage: bool,
    customer: Option<String>,
    claim_override: bool,
) -> CliResult<Value> {
    let mut spec = read_distribution(file)?;
    let from_file = spec
        .as_object_mut()
        .and_then(|o| o.remove("id"))
        .and_then(|v| v.as_str().map(str::to_string));
    if let Some(object) = spec.as_object_mut() {
        object.remove("customer");
    }
    let id = id.or(from_file).ok_or_else(|| {
        CliError::usage(format!("{}: no `id`; add one or pass --id", file.display()))
    })?;
    let mut query = Vec::new();
    if stage {
        query.push("stage=true");
    }
    if claim_override {
        query.push("claim_override=true");
    }
    let path = format!(
        "/v1/distributions/{}{}{}",
        segment(&id),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    client.send(
        "PUT",
        &for_customer(path, customer.as_deref()),
        Some(Body::Json(spec)),
    )
}

/// `path` acting for `customer` (operators), when given.
pub fn for_customer(path: String, customer: Option<&str>) -> String {
    match customer {
        Some(customer) => {
            let separator = if path.contains('?') { '&' } else { '?' };
            format!("{path}{separator}customer={}", segment(customer))
        }
        None => path,
    }
}

/// `plugin upload`, with a progress bar on a terminal.
pub fn upload(
    client: &Client,
    file: &Path,
    name: Option<String>,
    customer: Option<&str>,
) -> CliResult<Value> {
    let name = match name {
        Some(name) => name,
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
            .ok_or_else(|| CliError::usage("give the plugin's name with --name"))?,
    };
    let bytes = std::fs::read(file)
        .map_err(|e| CliError::usage(format!("reading {}: {e}", file.display())))?;
    let bar = ProgressBar::new(bytes.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("uploading {msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(name.clone());
    let length = bytes.len() as u64;
    let reader = bar.wrap_read(std::io::Cursor::new(bytes));
    let body = reqwest::blocking::Body::sized(ReadOnce(reader), length);
    let answer = client.send(
        "POST",
        &for_customer(format!("/v1/plugins/{}", segment(&name)), customer),
        Some(Body::Wasm(body)),
    );
    bar.finish_and_clear();
    answer
}

/// A reader reqwest can own.
struct ReadOnce<R>(R);

impl<R: Read> Read for ReadOnce<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buffer)
    }
}

/// `purge ...`: queues the job and, with `--wait`, follows it to the end.
pub fn purge(client: &Client, command: PurgeCommand, json: bool) -> CliResult<Value> {
    let (dist, selector, options) = match command {
        PurgeCommand::Url { dist, url, options } => (dist, json!({"url": url}), options),
        PurgeCommand::Prefix {
            dist,
            prefix,
            options,
        } => (dist, json!({"prefix": prefix}), options),
        PurgeCommand::Tag { dist, tag, options } => (dist, json!({"tag": tag}), options),
        PurgeCommand::All { dist, options } => (dist, json!({"everything": true}), options),
    };
    let mut body = selector;
    body["distribution"] = json!(dist);
    body["soft"] = json!(options.soft);
    let job = client.send("POST", "/v1/purges", Some(Body::Json(body)))?;
    if !options.wait {
        return Ok(job);
    }
    let id = job["id"].as_str().unwrap_or_default().to_string();
    wait_for_job(client, &id, Duration::from_secs(options.timeout), json)
}

/// Follows a job until it is done; a spinner shows the acknowledgements.
pub fn wait_for_job(client: &Client, id: &str, timeout: Duration, json: bool) -> CliResult<Value> {
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    loop {
        let job = client.get(&format!("/v1/jobs/{}", segment(id)))?;
        let status = job["status"].as_str().unwrap_or_default().to_string();
        bar.set_message(format!(
            "{id}: {status}, edges acknowledged {}",
            job["progress"].as_str().unwrap_or("?")
        ));
        match status.as_str() {
            "done" => {
                bar.finish_and_clear();
                return Ok(job);
            }
            "failed" => {
                bar.finish_and_clear();
                return Err(CliError {
                    code: exit::JOB_FAILED,
                    message: format!(
                        "job {id} failed: {}",
                        job["error"].as_str().unwrap_or("no reason given")
                    ),
                });
            }
            _ => {}
        }
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            return Err(CliError {
                code: exit::JOB_FAILED,
                message: format!(
                    "job {id} not done after {} s ({} edges acknowledged); see `parapet jobs {id}`",
                    timeout.as_secs(),
                    job["progress"].as_str().unwrap_or("?")
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
