//! What the edge serves, compiled from a validated [`EdgeConfig`]: the
//! distribution for a `Host`, the behavior for a path, and each behavior's
//! plugin chains with the plugins loaded.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parapet_host::{Chains, Hook, KvStore, Plugin, PluginEngine, PluginOptions};

use parapet_config::domains::host_name;
use parapet_config::pattern::PathPattern;
use parapet_config::{BehaviorConfig, ConfigError, DistributionConfig, EdgeConfig};

/// The distributions of one configuration, ready to route requests: those
/// loaded, and those that never loaded (answered 503; the reason goes to
/// the controller with the edge's statuses).
pub struct Routes {
    distributions: Vec<Arc<Distribution>>,
    unavailable: Vec<Unavailable>,
    /// Exact host name → route.
    exact: HashMap<String, Route>,
    /// Parent of a `*.` wildcard domain → route.
    wildcard: HashMap<String, Route>,
    /// The route of the `*` domain, serving any other host.
    any: Option<Route>,
    /// Distribution id → route.
    ids: HashMap<String, Route>,
}

/// Where a host goes: a loaded distribution, or one that is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Serving(usize),
    Unavailable(usize),
}

/// A distribution that never loaded: its domains are answered 503.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// Its id.
    pub id: String,
    /// Its domains.
    pub domains: Vec<String>,
}

/// A distribution with its behaviors compiled.
pub struct Distribution {
    /// Its configuration.
    pub config: DistributionConfig,
    /// Its behaviors, in match order.
    pub behaviors: Vec<Behavior>,
    /// Its plugins, in the configuration's order.
    pub plugins: Vec<Arc<Plugin>>,
}

/// A behavior with its pattern compiled and its plugins loaded.
pub struct Behavior {
    /// The path pattern.
    pub pattern: PathPattern,
    /// Its configuration.
    pub config: BehaviorConfig,
    /// The plugins of each hook.
    pub chains: Chains,
}

impl Routes {
    /// Validates and compiles `config`, loading every plugin with `engine`.
    /// Relative paths (plugins, KV files) are resolved against `base_dir`,
    /// the directory of the configuration file. Any distribution that does
    /// not load refuses the whole file: it is the operator's own.
    pub fn build(
        config: &EdgeConfig,
        base_dir: &Path,
        engine: &Arc<PluginEngine>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut distributions = Vec::new();
        for (index, dist) in config.distributions.iter().enumerate() {
            let loaded = Distribution::load(dist, base_dir, engine).map_err(|mut e| {
                e.field = format!("distribution[{index}].{}", e.field);
                e
            })?;
            distributions.push(Arc::new(loaded));
        }
        Ok(Routes::assemble(distributions, Vec::new()))
    }

    /// Routes over distributions loaded one by one, and those that never
    /// loaded. A domain two of them name goes to the first (the caller
    /// keeps them unique).
    pub fn assemble(distributions: Vec<Arc<Distribution>>, unavailable: Vec<Unavailable>) -> Self {
        let mut routes = Routes {
            distributions,
            unavailable,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
            ids: HashMap::new(),
        };
        let serving = routes.distributions.iter().enumerate().map(|(i, d)| {
            (
                Route::Serving(i),
                d.config.id.as_str(),
                d.config.domains.as_slice(),
            )
        });
        let unavailable = routes
            .unavailable
            .iter()
            .enumerate()
            .map(|(i, u)| (Route::Unavailable(i), u.id.as_str(), u.domains.as_slice()));
        let entries: Vec<(Route, String, Vec<String>)> = serving
            .chain(unavailable)
            .map(|(route, id, domains)| (route, id.to_string(), domains.to_vec()))
            .collect();
        for (route, id, domains) in entries {
            routes.ids.entry(id.clone()).or_insert(route);
            for domain in domains {
                let domain = domain.to_ascii_lowercase();
                let slot = if domain == "*" {
                    routes.any.get_or_insert(route)
                } else {
                    match domain.strip_prefix("*.") {
                        Some(parent) => routes.wildcard.entry(parent.to_string()).or_insert(route),
                        None => routes.exact.entry(domain.clone()).or_insert(route),
                    }
                };
                if *slot != route {
                    tracing::warn!(distribution = %id, %domain, "a domain another distribution serves is ignored");
                }
            }
        }
        routes
    }

    fn route(&self, host: &str) -> Option<Route> {
        let name = host_name(host);
        self.exact
            .get(name.as_str())
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
            .or(self.any.as_ref())
            .copied()
    }

    /// The distribution serving `host` (a `Host` header or `:authority`,
    /// with or without a port), if any.
    pub fn distribution(&self, host: &str) -> Option<&Distribution> {
        self.find(host).map(|(_, dist)| dist)
    }

    /// Like [`Routes::distribution`], with the distribution's index.
    pub fn find(&self, host: &str) -> Option<(usize, &Distribution)> {
        match self.route(host)? {
            Route::Serving(index) => Some((index, self.distributions.get(index)?)),
            Route::Unavailable(_) => None,
        }
    }

    /// The distribution `host` belongs to when it never loaded.
    pub fn unavailable(&self, host: &str) -> Option<&Unavailable> {
        match self.route(host)? {
            Route::Unavailable(index) => self.unavailable.get(index),
            Route::Serving(_) => None,
        }
    }

    /// The loaded distribution with id `id`.
    pub fn by_id(&self, id: &str) -> Option<&Distribution> {
        match self.ids.get(id)? {
            Route::Serving(index) => self.distributions.get(*index).map(|d| &**d),
            Route::Unavailable(_) => None,
        }
    }

    /// The distribution at `index`, as [`Routes::find`] returned it.
    ///
    /// # Panics
    /// If `index` did not come from this `Routes`.
    pub fn distribution_at(&self, index: usize) -> &Distribution {
        &self.distributions[index]
    }

    /// The loaded distributions.
    pub fn distributions(&self) -> &[Arc<Distribution>] {
        &self.distributions
    }
}

impl Distribution {
    /// Loads one distribution: its KV data, its plugins (each launched
    /// with its configuration), its behaviors. Fields in errors are
    /// relative to the distribution.
    pub fn load(
        config: &DistributionConfig,
        base_dir: &Path,
        engine: &Arc<PluginEngine>,
    ) -> Result<Self, ConfigError> {
        let kv = match &config.kv {
            Some(path) => {
                KvStore::from_json_file(&base_dir.join(path)).map_err(|e| ConfigError {
                    file: None,
                    field: "kv".into(),
                    reason: e.to_string(),
                })?
            }
            None => KvStore::default(),
        };
        Self::load_with_kv(config, kv, base_dir, engine)
    }

    /// Like [`Distribution::load`], with the KV data given (`config.kv`
    /// is not read).
    pub fn load_with_kv(
        config: &DistributionConfig,
        kv: KvStore,
        base_dir: &Path,
        engine: &Arc<PluginEngine>,
    ) -> Result<Self, ConfigError> {
        let error = |field: String, reason: String| ConfigError {
            file: None,
            field,
            reason,
        };
        let kv = Arc::new(kv);
        let mut plugins = HashMap::new();
        let mut loaded_in_order = Vec::new();
        for (i, plugin) in config.plugins.iter().enumerate() {
            let path = base_dir.join(&plugin.wasm);
            let bytes = std::fs::read(&path).map_err(|e| {
                error(
                    format!("plugin[{i}].wasm"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let options = PluginOptions {
                config: plugin.config.to_string(),
                limits: plugin.limits,
                policy: plugin.failure,
                kv: kv.clone(),
                distribution: config.id.clone(),
            };
            let name = format!("{}/{}", config.id, plugin.name);
            let loaded = Plugin::load(engine, &name, &bytes, options).map_err(|e| {
                error(
                    format!("plugin[{i}]"),
                    format!("plugin `{}`: {e}", plugin.name),
                )
            })?;
            let loaded = Arc::new(loaded);
            loaded_in_order.push(loaded.clone());
            plugins.insert(plugin.name.as_str(), loaded);
        }
        // Only the plugins that implement the hook: a chain of plugins that
        // would only pass the message on is empty, and costs nothing.
        let chain = |names: &[String], hook: Hook| -> Vec<Arc<Plugin>> {
            // `validate` has checked that every name is defined.
            names
                .iter()
                .filter_map(|n| plugins.get(n.as_str()).cloned())
                .filter(|p| {
                    let implements = p.implements(hook);
                    if !implements {
                        tracing::info!(
                            plugin = p.name(),
                            hook = hook.name(),
                            "the plugin does not implement this hook; it is skipped there"
                        );
                    }
                    implements
                })
                .collect()
        };
        let mut behaviors = Vec::new();
        for (b, behavior) in config.behaviors.iter().enumerate() {
            let pattern = PathPattern::new(&behavior.path)
                .map_err(|why| error(format!("behavior[{b}].path"), why))?;
            behaviors.push(Behavior {
                pattern,
                chains: Chains {
                    on_viewer_request: chain(&behavior.viewer_request, Hook::OnViewerRequest),
                    on_origin_request: chain(&behavior.origin_request, Hook::OnOriginRequest),
                    on_origin_response: chain(&behavior.origin_response, Hook::OnOriginResponse),
                    on_viewer_response: chain(&behavior.viewer_response, Hook::OnViewerResponse),
                },
                config: behavior.clone(),
            });
        }
        Ok(Distribution {
            config: config.clone(),
            behaviors,
            plugins: loaded_in_order,
        })
    }

    /// The first behavior whose pattern matches `path`; the default `*`
    /// behavior when none of the others does.
    pub fn behavior(&self, path: &str) -> Option<&Behavior> {
        self.behaviors.get(self.behavior_index(path)?)
    }

    /// The index of [`Distribution::behavior`]'s answer.
    pub fn behavior_index(&self, path: &str) -> Option<usize> {
        self.behaviors.iter().position(|b| b.pattern.matches(path))
    }
}
