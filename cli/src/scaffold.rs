//! `parapet plugin new`: a plugin crate that builds as it is.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const LIB_RS: &str = r#"//! A Parapet plugin. Build it with `parapet plugin build`.

use parapet_sdk::{
    export_plugin, hooks, log, Plugin, Request, RequestAction, Response, ResponseAction,
};
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

/// `#[hooks]`: the edge calls only the hooks defined in this block.
#[hooks]
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

/// The first fixtures of a new plugin, run by `parapet plugin test`.
const FIXTURES_TOML: &str = r#"# Cases for `parapet plugin test`: each runs one hook of the plugin on a
# request (and, for response hooks, a response) and checks what it returns.
# Unset `expect` fields are not checked.

# The plugin's configuration (a TOML table, given to the plugin as JSON).
# A case may set its own `config`.
config = { greeting = "hi there" }

[[case]]
name = "answers /hello itself"
hook = "viewer-request"            # viewer-request (default), origin-request,
                                   # origin-response or viewer-response
request = { path = "/hello" }      # GET https://example.com/ unless set
expect = { action = "respond", status = 200, body = "hi there" }

[[case]]
name = "lets other requests through"
request = { path = "/shop", query = "page=2", headers = { accept = "text/html" } }
expect = { action = "continue", path = "/shop", query = "page=2" }

[[case]]
name = "marks responses"
hook = "viewer-response"
response = { status = 200, headers = { "content-type" = "text/html" } }
expect = { action = "continue", status = 200, headers = { "x-plugin" = "NAME" } }
"#;

/// Creates `parent/name` with a working plugin crate and its first
/// fixtures; returns its path.
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
    let sdk = crate::sdk::install()?.display().to_string();
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
parapet-sdk = {{ path = {sdk:?} }}
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
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), LIB_RS.replace("NAME", name))?;
    std::fs::write(
        dir.join(crate::fixtures::FIXTURES),
        FIXTURES_TOML.replace("NAME", name),
    )?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(dir)
}
