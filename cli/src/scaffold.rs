//! `parapet plugin new`: a plugin crate that builds as it is.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where this CLI was built from finds the SDK; elsewhere, crates.io.
fn sdk_dependency() -> String {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    match local.canonicalize() {
        Ok(path) => format!(
            "parapet-sdk = {{ path = {:?} }}",
            path.display().to_string()
        ),
        Err(_) => format!("parapet-sdk = \"{}\"", env!("CARGO_PKG_VERSION")),
    }
}

const LIB_RS: &str = r#"//! A Parapet plugin. Build it with `parapet plugin build`.

use parapet_sdk::{export_plugin, log, Plugin, Request, RequestAction, Response, ResponseAction};
use serde::Deserialize;

/// The plugin's settings, e.g. `{"greeting": "hi there"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "hello".into()
}

/// Adds a response header and answers `/hello` itself.
struct MyPlugin {
    greeting: String,
}

impl Plugin for MyPlugin {
    /// Runs once, at launch (an error refuses the plugin); every request
    /// starts from the value it returns.
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))?;
        Ok(MyPlugin { greeting: config.greeting })
    }

    fn on_viewer_request(&mut self, request: Request) -> RequestAction {
        if request.path == "/hello" {
            log::info("answering /hello");
            return RequestAction::Respond(Response::new(200).with_body(self.greeting.clone()));
        }
        RequestAction::Continue(request)
    }

    fn on_viewer_response(&mut self, _request: &Request, mut response: Response) -> ResponseAction {
        response.set_header("x-plugin", "NAME");
        ResponseAction::Continue(response)
    }
}

export_plugin!(MyPlugin);
"#;

/// Creates `parent/name` with a working plugin crate; returns its path.
pub fn new_plugin(name: &str, parent: &Path) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        bail!("plugin name `{name}` must start with a lower-case letter and use only a-z, 0-9, - and _");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
{sdk}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A plugin is its own workspace.
[workspace]
"#,
        sdk = sdk_dependency()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), LIB_RS.replace("NAME", name))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(dir)
}
