//! Turning bytes into a runnable plugin: format checks, compilation with an
//! on-disk artifact cache, world and import checks, and `on-launch`.

use std::hash::{Hash, Hasher};
use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;

use crate::bindings::{PluginPre, ALLOWED_IMPORTS, WIT_PACKAGE};
use crate::engine::PluginEngine;
use crate::state::HostState;

/// Why a plugin was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly binary (expected a component starting with \\0asm)")]
    NotWasm,
    /// A core module: it has to be turned into a component first.
    #[error(
        "this is a core WebAssembly module, not a component: build plugins with `parapet plugin build`, which encodes the component"
    )]
    CoreModule,
    /// Wasmtime could not compile it.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// It imports something outside the `parapet:plugin` world.
    #[error("the component imports `{0}`, which plugins may not use: a {WIT_PACKAGE} plugin can import only parapet:plugin interfaces")]
    ForbiddenImport(String),
    /// Imports are allowed but types or exports do not match the world.
    #[error("not a {WIT_PACKAGE} plugin: {0}")]
    WrongWorld(String),
    /// The plugin's configuration is not JSON.
    #[error("plugin configuration is not valid JSON: {0}")]
    ConfigNotJson(String),
    /// `on-launch` returned an error.
    #[error("the plugin refused its configuration: {0}")]
    Rejected(String),
    /// `on-launch` trapped or overran.
    #[error("on-launch failed: {0}")]
    LaunchFailed(String),
}

/// The lowercase hex sha256 of `bytes`: a plugin's content address.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A compiled, world-checked component, ready to instantiate.
pub(crate) struct Checked {
    pub(crate) pre: PluginPre<HostState>,
    pub(crate) digest: String,
    pub(crate) from_cache: bool,
}

/// Runs every check short of `on-launch`.
pub(crate) fn check(engine: &PluginEngine, bytes: &[u8]) -> Result<Checked, LoadError> {
    if !wasmparser::Parser::is_component(bytes) {
        return Err(if wasmparser::Parser::is_core_wasm(bytes) {
            LoadError::CoreModule
        } else {
            LoadError::NotWasm
        });
    }
    let digest = content_hash(bytes);
    let (component, from_cache) = compile_cached(engine, bytes, &digest)?;

    let ty = component.component_type();
    for (name, item) in ty.imports(&engine.engine) {
        if !ALLOWED_IMPORTS.contains(&name)
            || !matches!(item.ty, ComponentItem::ComponentInstance(_))
        {
            return Err(LoadError::ForbiddenImport(name.to_string()));
        }
    }
    let instance_pre = engine
        .linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
    let pre = PluginPre::new(instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
    Ok(Checked {
        pre,
        digest,
        from_cache,
    })
}

/// Compiles `bytes`, or loads the artifact an earlier run cached.
fn compile_cached(
    engine: &PluginEngine,
    bytes: &[u8],
    digest: &str,
) -> Result<(Component, bool), LoadError> {
    let compile =
        || Component::new(&engine.engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")));
    let Some(dir) = &engine.config.cache_dir else {
        return Ok((compile()?, false));
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine
        .engine
        .precompile_compatibility_hash()
        .hash(&mut hasher);
    let path = dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish()));

    if path.exists() {
        // SAFETY: the cache directory holds only artifacts this engine wrote
        // (named by content hash and engine settings); Wasmtime also checks
        // the artifact's engine compatibility before using it.
        match unsafe { Component::deserialize_file(&engine.engine, &path) } {
            Ok(component) => return Ok((component, true)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cached plugin artifact unusable; recompiling")
            }
        }
    }
    let component = compile()?;
    if let Err(e) = component
        .serialize()
        .map_err(|e| e.to_string())
        .and_then(|a| write_atomic(&path, &a))
    {
        tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
    }
    Ok((component, false))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

impl PluginEngine {
    /// Checks that `bytes` is a loadable `parapet:plugin` component (the same
    /// checks as loading, without running `on-launch`); returns its content
    /// hash.
    pub fn validate(&self, bytes: &[u8]) -> Result<String, LoadError> {
        check(self, bytes).map(|c| c.digest)
    }
}
