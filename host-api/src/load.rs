//! Turning bytes into a runnable plugin: format checks, compilation with an
//! on-disk artifact cache, world and import checks, and `on-launch`.

use std::hash::{Hash, Hasher};
use std::io::Write;
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
    /// The plugin's limits are outside what the engine allows.
    #[error("invalid limits: {0}")]
    Limits(String),
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
    let artifact = engine
        .config
        .cache_dir
        .as_ref()
        .map(|dir| dir.join(format!("{digest}-{}.cwasm", engine_key(engine))));
    let cached = artifact
        .as_deref()
        .and_then(|path| load_artifact(engine, path));
    let from_cache = cached.is_some();
    let component = match cached {
        Some(component) => component,
        None => Component::new(&engine.engine, bytes)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?,
    };

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

    // Only a component that passed every check is worth keeping.
    if let (Some(path), false) = (&artifact, from_cache) {
        if let Err(e) = store_artifact(&component, path) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
        }
    }
    Ok(Checked {
        pre,
        digest,
        from_cache,
    })
}

/// A stable digest of the engine's compilation settings, so that an artifact
/// is only reused by an engine that can run it.
fn engine_key(engine: &PluginEngine) -> String {
    /// Feeds `Hash` output into SHA-256 (std's hashers are not stable
    /// across Rust releases).
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the SHA-256 digest is read")
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine
        .engine
        .precompile_compatibility_hash()
        .hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// The cached artifact at `path`, if there is a usable one.
fn load_artifact(engine: &PluginEngine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    // SAFETY: the cache directory is the operator's, created owner-only by
    // the engine, and holds only artifacts this engine wrote, named by
    // content hash and engine settings; Wasmtime also checks an artifact's
    // engine compatibility before using it.
    match unsafe { Component::deserialize_file(&engine.engine, path) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cached plugin artifact unusable; recompiling");
            None
        }
    }
}

/// Writes `component`'s artifact to `path` through a temporary file, so a
/// reader never sees a partial artifact.
fn store_artifact(component: &Component, path: &Path) -> Result<(), String> {
    let artifact = component.serialize().map_err(|e| e.to_string())?;
    let dir = path.parent().ok_or("artifact path has no directory")?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    file.write_all(&artifact).map_err(|e| e.to_string())?;
    file.as_file().sync_all().map_err(|e| e.to_string())?;
    file.persist(path).map_err(|e| e.to_string())?;
    Ok(())
}

impl PluginEngine {
    /// Checks that `bytes` is a loadable `parapet:plugin` component (the same
    /// checks as loading, without running `on-launch`); returns its content
    /// hash.
    pub fn validate(&self, bytes: &[u8]) -> Result<String, LoadError> {
        check(self, bytes).map(|c| c.digest)
    }
}
