//! `parapet plugin build`: compile a plugin crate (or a workspace of them) to
//! core wasm, encode each as a component, and check it against the world.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use parapet_host::PluginEngine;
use serde::Deserialize;

use crate::toolchain::Toolchain;

/// One line of cargo's JSON messages, as far as we need it.
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
    #[serde(default)]
    manifest_path: Option<PathBuf>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
    crate_types: Vec<String>,
}

/// A built and validated plugin component.
pub struct Built {
    /// The plugin's name (its crate's, with `-` for `_`).
    pub name: String,
    /// The plugin crate's directory.
    pub crate_dir: PathBuf,
    /// Where the component was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: usize,
    /// Its content hash.
    pub digest: String,
}

/// Builds every `cdylib` crate under `dir` into `out/<name>.wasm`.
pub fn build(dir: &Path, out: &Path) -> Result<Vec<Built>> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("plugin directory {}", dir.display()))?;
    if !dir.join("Cargo.toml").exists() {
        bail!(
            "{} has no Cargo.toml: point `parapet plugin build` at a plugin crate or workspace",
            dir.display()
        );
    }
    let toolchain = Toolchain::detect()?;
    eprintln!(
        "parapet: building {} with {}",
        dir.display(),
        toolchain.describe()
    );
    let target_dir = dir.join("target").join(toolchain.target_subdir());

    let mut child = toolchain
        .cargo_build(&dir, &target_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting cargo")?;
    let mut cores = Vec::new();
    let stdout = child.stdout.take().context("cargo stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo output")?;
        let Ok(msg) = serde_json::from_str::<CargoMessage>(&line) else {
            continue;
        };
        let Some(target) = msg.target.filter(|t| {
            msg.reason == "compiler-artifact" && t.crate_types.iter().any(|k| k == "cdylib")
        }) else {
            continue;
        };
        if let Some(wasm) = msg
            .filenames
            .into_iter()
            .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        {
            let crate_dir = msg
                .manifest_path
                .as_deref()
                .and_then(Path::parent)
                .map_or_else(|| dir.clone(), Path::to_path_buf);
            cores.push((target.name.replace('_', "-"), wasm, crate_dir));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status}); see the errors above");
    }
    if cores.is_empty() {
        bail!("no plugin was built: a plugin crate needs `[lib] crate-type = [\"cdylib\"]`");
    }

    let engine = PluginEngine::validator()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut built = Vec::new();
    for (name, core, crate_dir) in cores {
        let module = std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
        let component =
            componentize(&module).with_context(|| format!("encoding {name} as a component"))?;
        let digest = engine
            .validate(&component)
            .with_context(|| format!("checking {name}"))?;
        let path = out.join(format!("{name}.wasm"));
        std::fs::write(&path, &component).with_context(|| format!("writing {}", path.display()))?;
        built.push(Built {
            name,
            crate_dir,
            path,
            size: component.len(),
            digest,
        });
    }
    Ok(built)
}

/// Encodes a core module (with wit-bindgen's embedded world) as a component.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .encode()
}
