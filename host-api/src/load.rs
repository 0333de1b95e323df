//! Turning bytes into a runnable plugin: format checks, compilation with an
//! on-disk artifact cache, and world and import checks.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;

use crate::bindings::{allowed_import, PluginPre, WIT_PACKAGE};
use crate::engine::PluginEngine;
use crate::hooks::HookSet;
use crate::image::check_snapshottable;
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

/// Refuses bytes that are not a WebAssembly component, naming what they are.
pub(crate) fn check_format(bytes: &[u8]) -> Result<(), LoadError> {
    if wasmparser::Parser::is_component(bytes) {
        Ok(())
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        Err(LoadError::CoreModule)
    } else {
        Err(LoadError::NotWasm)
    }
}

/// A compiled component and where its artifact goes once it has passed
/// every check.
pub(crate) struct Compiled {
    pub(crate) component: Component,
    /// Whether it came from the on-disk artifact cache.
    pub(crate) from_cache: bool,
    artifact: Option<PathBuf>,
    /// The file-name prefix of the artifacts this one replaces.
    slot: Option<String>,
}

impl Compiled {
    /// Writes the artifact to the cache (if there is one and it did not come
    /// from there). Only a component that passed every check is worth
    /// keeping; a failure to write is logged, not fatal.
    /// An artifact with a slot replaces the others of that slot, so the
    /// cache holds one per slot however often its inputs change.
    pub(crate) fn keep(&self) {
        let (Some(path), false) = (&self.artifact, self.from_cache) else {
            return;
        };
        if let Err(e) = store_artifact(&self.component, path) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
            return;
        }
        if let (Some(slot), Some(dir)) = (&self.slot, path.parent()) {
            remove_others(dir, slot, path);
        }
    }
}

/// Removes the artifacts in `dir` whose names start with `slot` but are not
/// `kept`.
fn remove_others(dir: &Path, slot: &str, kept: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        let in_slot = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(slot));
        if in_slot && path != kept {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a replaced plugin artifact");
            }
        }
    }
}

impl PluginEngine {
    /// Loads the artifact cached under `key` (a content hash of what
    /// determines the component), or compiles what `source` makes. With a
    /// `slot`, the artifact, once kept, replaces the slot's others.
    pub(crate) fn compile_cached<B: AsRef<[u8]>>(
        &self,
        key: &str,
        slot: Option<String>,
        source: impl FnOnce() -> Result<B, LoadError>,
    ) -> Result<Compiled, LoadError> {
        let name = match &slot {
            Some(slot) => format!("{slot}{key}-{}.cwasm", engine_key(self)),
            None => format!("{key}-{}.cwasm", engine_key(self)),
        };
        let artifact = self.config.cache_dir.as_ref().map(|dir| dir.join(name));
        let cached = artifact.as_deref().and_then(|p| load_artifact(self, p));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => self.compile(source()?.as_ref())?,
        };
        Ok(Compiled {
            component,
            from_cache,
            artifact,
            slot,
        })
    }

    /// Compiles `bytes`, without the artifact cache.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))
    }

    /// Checks a compiled component's imports and exports against the
    /// `parapet:plugin` world and prepares it for instantiation.
    pub(crate) fn plugin_pre(
        &self,
        component: &Component,
    ) -> Result<PluginPre<HostState>, LoadError> {
        let ty = component.component_type();
        for (name, item) in ty.imports(&self.engine) {
            if !allowed_import(name) || !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                return Err(LoadError::ForbiddenImport(name.to_string()));
            }
        }
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        PluginPre::new(instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))
    }

    /// Checks that `bytes` is a loadable `parapet:plugin` component (the same
    /// checks as loading, without running `on-launch`); returns its content
    /// hash.
    pub fn validate(&self, bytes: &[u8]) -> Result<String, LoadError> {
        check_format(bytes)?;
        HookSet::of(bytes)?;
        check_snapshottable(bytes)?;
        let digest = content_hash(bytes);
        let compiled = self.compile_cached(&digest, None, || Ok(bytes))?;
        self.plugin_pre(&compiled.component)?;
        compiled.keep();
        Ok(digest)
    }
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
