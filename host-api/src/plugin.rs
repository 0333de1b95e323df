//! A loaded plugin: one component launched with one configuration, its
//! launch image ready to be instantiated per request.

use std::sync::Arc;

use serde::Deserialize;
use wasmtime::Store;

use crate::bindings::{Hook, PluginPre};
use crate::budget::RunBudget;
use crate::cost::PluginCost;
use crate::engine::PluginEngine;
use crate::hooks::HookSet;
use crate::image::launch_image;
use crate::kv::KvStore;
use crate::limits::{Limiter, PluginLimits, MAX_CORE_INSTANCES};
use crate::load::{check_format, content_hash, LoadError};
use crate::metrics::PluginMetrics;
use crate::state::{HostState, PluginIdentity, RequestContext};

/// What happens to a request when a plugin fails (traps, overruns its
/// deadline or memory, or returns something invalid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Skip the plugin for the rest of the request, log, and go on. Only for
    /// plugins whose absence is harmless: a skipped auth or WAF plugin lets
    /// requests through.
    FailOpen,
    /// Answer 503 with the request id (the default).
    #[default]
    FailClosed,
}

/// How to load a plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginOptions {
    /// JSON configuration handed to the plugin (`{}` when empty).
    pub config: String,
    /// Resource limits.
    pub limits: PluginLimits,
    /// Failure policy.
    pub policy: FailurePolicy,
    /// The customer's key-value store.
    pub kv: Arc<KvStore>,
    /// The distribution the plugin belongs to: the `distribution` label of
    /// `parapet_plugin_cpu_microseconds_total` (empty outside an edge).
    pub distribution: String,
}

/// A component checked against the world and accepted by its `on-launch`;
/// its launch image is instantiated afresh for every request.
pub struct Plugin {
    pub(crate) identity: Arc<PluginIdentity>,
    pub(crate) pre: PluginPre<HostState>,
    pub(crate) limits: PluginLimits,
    pub(crate) policy: FailurePolicy,
    pub(crate) engine: Arc<PluginEngine>,
    pub(crate) metrics: PluginMetrics,
    /// The hooks the plugin implements: the others are never called.
    pub(crate) hooks: HookSet,
    digest: String,
    from_cache: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.identity.name)
            .field("digest", &self.digest)
            .finish()
    }
}

/// Refuses limits the engine cannot honour.
fn check_limits(engine: &PluginEngine, limits: &PluginLimits) -> Result<(), LoadError> {
    let engine_max = engine.config.max_memory_bytes;
    if limits.memory_bytes > engine_max {
        return Err(LoadError::Limits(format!(
            "memory_bytes {} is above the engine's maximum of {engine_max}",
            limits.memory_bytes
        )));
    }
    if limits.instances > MAX_CORE_INSTANCES {
        return Err(LoadError::Limits(format!(
            "instances {} is above the maximum of {MAX_CORE_INSTANCES}",
            limits.instances
        )));
    }
    let tick = engine.config.epoch_tick;
    for (name, deadline) in [
        ("hook_deadline_ms", limits.hook_deadline),
        ("launch_deadline_ms", limits.launch_deadline),
    ] {
        if deadline < tick {
            return Err(LoadError::Limits(format!(
                "{name} must be at least the engine's tick of {tick:?}"
            )));
        }
    }
    Ok(())
}

/// A fresh store for one instance of the plugin `identity`, under `limits`.
/// At each epoch tick its [`RunBudget`] decides whether the call under way
/// yields or traps; arm it with [`arm`](crate::budget::arm) before each call.
pub(crate) fn new_store(
    engine: &PluginEngine,
    identity: Arc<PluginIdentity>,
    limits: PluginLimits,
    request: Arc<RequestContext>,
    hook: Hook,
) -> Store<HostState> {
    let state = HostState {
        plugin: identity,
        request,
        hook,
        body_withheld: false,
        host_calls: 0,
        log_lines: 0,
        limiter: Limiter::new(limits),
        budget: RunBudget::new(),
    };
    let mut store = Store::new(&engine.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_callback(|store| Ok(store.data().budget.on_tick()));
    store
}

impl Plugin {
    /// Checks the component, runs its `on-launch` with the configuration
    /// and compiles the launch image every request starts from (or loads
    /// that image from the artifact cache: `on-launch` runs once per plugin
    /// version, distribution, configuration, KV contents and memory limit).
    /// `name` identifies the plugin in logs and metrics.
    ///
    /// Blocks the calling thread while it compiles and runs `on-launch`
    /// (which never yields): call it at start-up or from a blocking thread
    /// (`spawn_blocking`), not from an async task.
    pub fn load(
        engine: &Arc<PluginEngine>,
        name: &str,
        bytes: &[u8],
        options: PluginOptions,
    ) -> Result<Self, LoadError> {
        let config = if options.config.trim().is_empty() {
            "{}".to_string()
        } else {
            options.config
        };
        serde_json::from_str::<serde::de::IgnoredAny>(&config)
            .map_err(|e| LoadError::ConfigNotJson(e.to_string()))?;
        check_limits(engine, &options.limits)?;
        check_format(bytes)?;
        let hooks = HookSet::of(bytes)?;
        let digest = content_hash(bytes);
        let name: Arc<str> = name.into();
        let identity = Arc::new(PluginIdentity {
            name: name.clone(),
            config: config.into(),
            kv: options.kv,
            metric_names: Default::default(),
        });
        let limits = options.limits;

        // The image depends on the component, the configuration, the KV
        // entries `on-launch` may read and the memory it ran in. It is never
        // shared across distributions: what a launch drew from the clock or
        // randomness stays with the distribution that launched it.
        let image_key = content_hash(
            format!(
                "image\n{digest}\n{}\n{}\n{}\n{}",
                options.distribution,
                identity.kv.digest(),
                limits.memory_bytes,
                identity.config
            )
            .as_bytes(),
        );
        // One image per plugin name on disk: a new configuration or KV
        // replaces the old image instead of adding to it, so a customer who
        // changes them often cannot fill the operator's disk.
        let slot = format!("image-{}.", &content_hash(name.as_bytes())[..16]);
        let compiled = engine.compile_cached(&image_key, Some(slot), || {
            futures_executor::block_on(launch_image(engine, bytes, &identity, limits))
        })?;
        let pre = engine.plugin_pre(&compiled.component)?;
        compiled.keep();
        Ok(Plugin {
            metrics: PluginMetrics::register(&name, &options.distribution),
            identity,
            pre,
            limits,
            policy: options.policy,
            engine: engine.clone(),
            hooks,
            digest,
            from_cache: compiled.from_cache,
        })
    }

    /// A fresh store for one instance of this plugin (see [`new_store`]).
    pub(crate) fn new_store(&self, request: Arc<RequestContext>, hook: Hook) -> Store<HostState> {
        new_store(
            &self.engine,
            self.identity.clone(),
            self.limits,
            request,
            hook,
        )
    }

    /// The name given at load.
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// The sha256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether the compiled code came from the on-disk artifact cache.
    pub fn loaded_from_cache(&self) -> bool {
        self.from_cache
    }

    /// Whether the plugin implements `hook`. Components built with the SDK's
    /// `#[hooks]` attribute say which hooks they define; others implement
    /// them all.
    pub fn implements(&self, hook: Hook) -> bool {
        self.hooks.contains(hook)
    }

    /// The plugin's limits.
    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// The plugin's failure policy.
    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    /// What its requests cost since the last call (see [`PluginCost`]).
    pub fn take_cost(&self) -> PluginCost {
        self.metrics.take_cost()
    }
}

#[cfg(test)]
mod tests {
    use super::FailurePolicy;

    #[test]
    fn failure_policies_are_named_in_kebab_case() {
        let open: FailurePolicy = serde_json::from_str(r#""fail-open""#).unwrap();
        let closed: FailurePolicy = serde_json::from_str(r#""fail-closed""#).unwrap();
        assert_eq!(
            (open, closed),
            (FailurePolicy::FailOpen, FailurePolicy::FailClosed)
        );
        assert!(serde_json::from_str::<FailurePolicy>(r#""closed""#).is_err());
    }
}
