//! The controller's REST API as the CLI calls it: where it is and which
//! token to send (`PARAPET_URL`/`PARAPET_TOKEN`, else what `parapet login`
//! saved), which authority its certificate comes from (`PARAPET_CA_FILE`,
//! else the saved one, else the system's roots), and errors mapped to exit codes scripts can rely on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Exit codes.
pub mod exit {
    /// A bad argument or local file.
    pub const USAGE: u8 = 1;
    /// The controller refused the request (4xx).
    pub const REFUSED: u8 = 2;
    /// The controller could not be reached or failed (5xx).
    pub const UNAVAILABLE: u8 = 3;
    /// `--wait`: the job failed or did not finish in time.
    pub const JOB_FAILED: u8 = 4;
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: u8,
    /// What went wrong and what to do.
    pub message: String,
}

impl CliError {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: exit::USAGE,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::usage(format!("{e:#}"))
    }
}

/// Result of a command.
pub type CliResult<T> = Result<T, CliError>;

/// What `parapet login` saves.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    url: String,
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
}

fn saved_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("parapet").join("login.json"))
}

/// Saves a login (the file is readable by its owner only).
pub fn save_login(url: &str, token: &str, ca_file: Option<&Path>) -> CliResult<PathBuf> {
    let path =
        saved_path().ok_or_else(|| CliError::usage("neither XDG_CONFIG_HOME nor HOME is set"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::usage(format!("creating {}: {e}", dir.display())))?;
    }
    let text = serde_json::to_string_pretty(&Saved {
        url: url.to_string(),
        token: token.to_string(),
        ca_file: ca_file.map(Path::to_path_buf),
    })
    .map_err(|e| CliError::usage(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(text.as_bytes())
    };
    write().map_err(|e| CliError::usage(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

/// A client for one controller with one token.
pub struct Client {
    url: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Client {
    /// From `PARAPET_URL`/`PARAPET_TOKEN`, else the saved login.
    pub fn from_env() -> CliResult<Self> {
        let saved: Option<Saved> = saved_path()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let url = std::env::var("PARAPET_URL")
            .ok()
            .or_else(|| saved.as_ref().map(|s| s.url.clone()));
        let token = std::env::var("PARAPET_TOKEN")
            .ok()
            .or_else(|| saved.as_ref().map(|s| s.token.clone()));
        let ca_file = std::env::var_os("PARAPET_CA_FILE")
            .map(PathBuf::from)
            .or_else(|| saved.and_then(|s| s.ca_file));
        match (url, token) {
            (Some(url), Some(token)) => Client::new(&url, &token, ca_file.as_deref()),
            _ => Err(CliError::usage(
                "no controller: run `parapet login --url URL --token TOKEN`, or set PARAPET_URL and PARAPET_TOKEN",
            )),
        }
    }

    /// For `url` with `token`; over https, its certificate is checked
    /// against `ca_file` (PEM) when given, else the system's roots.
    pub fn new(url: &str, token: &str, ca_file: Option<&Path>) -> CliResult<Self> {
        let mut builder = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                CliError::usage(format!("reading the CA file {}: {e}", path.display()))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    CliError::usage(format!("{}: no PEM certificate in it", path.display()))
                })?;
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| CliError::usage(e.to_string()))?;
        Ok(Client {
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    /// Sends a request; the JSON answer, or the controller's error with
    /// its exit code.
    pub fn send(&self, method: &str, path: &str, body: Option<Body>) -> CliResult<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| CliError::usage(e.to_string()))?;
        let url = format!("{}{path}", self.url);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        request = match body {
            Some(Body::Json(value)) => request.json(&value),
            Some(Body::Wasm(body)) => request
                .header("content-type", "application/wasm")
                .body(body),
            None => request,
        };
        let response = request.send().map_err(|e| CliError {
            code: exit::UNAVAILABLE,
            message: format!(
                "cannot reach the controller at {}: {:#}",
                self.url,
                anyhow::Error::new(e)
            ),
        })?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        let reason = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        let hint = match status.as_u16() {
            401 => " (check the token: `parapet login`, or PARAPET_TOKEN)",
            403 => " (this token may not do that)",
            _ => "",
        };
        Err(CliError {
            code: if status.is_client_error() {
                exit::REFUSED
            } else {
                exit::UNAVAILABLE
            },
            message: format!("{status}: {reason}{hint}"),
        })
    }

    /// GET.
    pub fn get(&self, path: &str) -> CliResult<Value> {
        self.send("GET", path, None)
    }
}

/// A request body.
pub enum Body {
    /// JSON.
    Json(Value),
    /// A component, streamed (for the upload's progress bar).
    Wasm(reqwest::blocking::Body),
}

/// Escapes a path segment.
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
