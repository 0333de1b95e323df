//! What the edge serves, compiled from a validated [`EdgeConfig`]: the
//! distribution for a `Host`, the behavior for a path, and each behavior's
//! plugin chains with the plugins loaded.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parapet_host::{Chains, KvStore, Plugin, PluginEngine, PluginOptions};

use parapet_config::domains::host_name;
use parapet_config::pattern::PathPattern;
use parapet_config::{BehaviorConfig, ConfigError, DistributionConfig, EdgeConfig};

/// The distributions of one configuration, ready to route requests.
pub struct Routes {
    distributions: Vec<Distribution>,
    /// Exact host name → distribution index.
    exact: HashMap<String, usize>,
    /// Parent of a `*.` wildcard domain → distribution index.
    wildcard: HashMap<String, usize>,
    /// The distribution with the `*` domain, serving any other host.
    any: Option<usize>,
    /// Distribution id → index.
    ids: HashMap<String, usize>,
}

/// A distribution with its behaviors compiled.
pub struct Distribution {
    /// Its configuration.
    pub config: DistributionConfig,
    /// Its behaviors, in match order.
    pub behaviors: Vec<Behavior>,
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
    /// the directory of the configuration file.
    pub fn build(
        config: &EdgeConfig,
        base_dir: &Path,
        engine: &Arc<PluginEngine>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut routes = Routes {
            distributions: Vec::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
            ids: HashMap::new(),
        };
        for (index, dist) in config.distributions.iter().enumerate() {
            routes
                .distributions
                .push(Distribution::build(index, dist, base_dir, engine)?);
            routes.ids.insert(dist.id.clone(), index);
            for domain in &dist.domains {
                let domain = domain.to_ascii_lowercase();
                if domain == "*" {
                    routes.any = Some(index);
                    continue;
                }
                match domain.strip_prefix("*.") {
                    Some(parent) => routes.wildcard.insert(parent.to_string(), index),
                    None => routes.exact.insert(domain, index),
                };
            }
        }
        Ok(routes)
    }

    /// The distribution serving `host` (a `Host` header or `:authority`,
    /// with or without a port), if any.
    pub fn distribution(&self, host: &str) -> Option<&Distribution> {
        self.find(host).map(|(_, dist)| dist)
    }

    /// Like [`Routes::distribution`], with the distribution's index.
    pub fn find(&self, host: &str) -> Option<(usize, &Distribution)> {
        let name = host_name(host);
        let index = *self
            .exact
            .get(name.as_str())
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
            .or(self.any.as_ref())?;
        Some((index, self.distributions.get(index)?))
    }

    /// The distribution with id `id`.
    pub fn by_id(&self, id: &str) -> Option<&Distribution> {
        self.distributions.get(*self.ids.get(id)?)
    }

    /// The distribution at `index`, as [`Routes::find`] returned it.
    ///
    /// # Panics
    /// If `index` did not come from this `Routes`.
    pub fn distribution_at(&self, index: usize) -> &Distribution {
        &self.distributions[index]
    }
}

impl Distribution {
    fn build(
        index: usize,
        config: &DistributionConfig,
        base_dir: &Path,
        engine: &Arc<PluginEngine>,
    ) -> Result<Self, ConfigError> {
        let field = |name: String| format!("distribution[{index}].{name}");
        let error = |name: String, reason: String| ConfigError {
            file: None,
            field: field(name),
            reason,
        };
        let kv = match &config.kv {
            Some(path) => KvStore::from_json_file(&base_dir.join(path))
                .map_err(|e| error("kv".into(), e.to_string()))?,
            None => KvStore::default(),
        };
        let kv = Arc::new(kv);
        let mut plugins = HashMap::new();
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
            plugins.insert(plugin.name.as_str(), Arc::new(loaded));
        }
        let chain = |names: &[String]| -> Vec<Arc<Plugin>> {
            // `validate` has checked that every name is defined.
            names
                .iter()
                .filter_map(|n| plugins.get(n.as_str()).cloned())
                .collect()
        };
        let mut behaviors = Vec::new();
        for (b, behavior) in config.behaviors.iter().enumerate() {
            let pattern = PathPattern::new(&behavior.path)
                .map_err(|why| error(format!("behavior[{b}].path"), why))?;
            behaviors.push(Behavior {
                pattern,
                chains: Chains {
                    on_viewer_request: chain(&behavior.viewer_request),
                    on_origin_request: chain(&behavior.origin_request),
                    on_origin_response: chain(&behavior.origin_response),
                    on_viewer_response: chain(&behavior.viewer_response),
                },
                config: behavior.clone(),
            });
        }
        Ok(Distribution {
            config: config.clone(),
            behaviors,
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
