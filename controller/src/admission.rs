//! What the operator admits of a customer's distribution, beyond the
//! configuration model's own rules: its origins' addresses, its plugins'
//! limits, its sizes, and a launch of every plugin with its real
//! configuration, so a version an edge would refuse is refused here (400,
//! with the plugin's own message) instead of failing on every edge.

use std::sync::Arc;

use parapet_config::DistributionConfig;
use parapet_host::{KvStore, Plugin, PluginOptions};
use serde_json::json;

use crate::api::AppState;
use crate::distributions::{Resolved, SpecError};
use crate::model::{Distribution, KvEntry, PluginVersion};
use crate::store::Collection;

fn invalid(field: &str, reason: impl std::fmt::Display) -> SpecError {
    SpecError::Invalid(format!("{field}: {reason}"))
}

/// Checks `resolved` (distribution `id` of `customer`) against the
/// operator's settings and launches its plugins with their configuration.
pub async fn admit(
    app: &AppState,
    id: &str,
    customer: &str,
    resolved: &Resolved,
) -> Result<(), SpecError> {
    let quotas = &app.settings.quotas;
    let config: DistributionConfig = serde_json::from_value(resolved.config.clone())
        .map_err(|e| SpecError::Invalid(e.to_string()))?;
    config
        .check_policy(&app.settings.address_policy(), &app.settings.plugin_limits)
        .map_err(|e| invalid(&e.field, e.reason))?;
    let size = resolved.config.to_string().len();
    if size > quotas.distribution_config_bytes {
        return Err(SpecError::Invalid(format!(
            "the distribution is {size} bytes as JSON, above the operator's limit of {} ([quotas] distribution_config_bytes)",
            quotas.distribution_config_bytes
        )));
    }
    if config.plugins.len() > quotas.plugins_per_distribution {
        return Err(invalid(
            "plugin",
            format!(
                "{} plugins, above the operator's limit of {} ([quotas] plugins_per_distribution)",
                config.plugins.len(),
                quotas.plugins_per_distribution
            ),
        ));
    }
    for (i, plugin) in config.plugins.iter().enumerate() {
        let size = plugin.config.to_string().len();
        if size > quotas.plugin_config_bytes {
            return Err(invalid(
                &format!("plugin[{i}].config"),
                format!(
                    "{size} bytes as JSON, above the operator's limit of {} ([quotas] plugin_config_bytes)",
                    quotas.plugin_config_bytes
                ),
            ));
        }
    }
    let existing: Option<Distribution> = app.store.get(Collection::Distributions, id).await?;
    if existing.is_none() {
        let owned: Vec<Distribution> = app
            .store
            .find(Collection::Distributions, &[("customer", json!(customer))])
            .await?;
        if owned.len() >= quotas.distributions_per_customer {
            return Err(SpecError::Invalid(format!(
                "customer `{customer}` has {} distributions, the operator's limit ([quotas] distributions_per_customer)",
                owned.len()
            )));
        }
    }
    launch_plugins(app, id, &config).await
}

/// Loads every plugin of `config` as an edge would, `on-launch` with its
/// configuration and the distribution's KV data included.
async fn launch_plugins(
    app: &AppState,
    id: &str,
    config: &DistributionConfig,
) -> Result<(), SpecError> {
    if config.plugins.is_empty() {
        return Ok(());
    }
    let entries: Vec<KvEntry> = app
        .store
        .find(Collection::Kv, &[("distribution", json!(id))])
        .await?;
    let kv = Arc::new(KvStore::from_entries(
        entries.into_iter().map(|e| (e.key, e.value.into_bytes())),
    ));
    for (i, plugin) in config.plugins.iter().enumerate() {
        let field = format!("plugin[{i}]");
        let reference = plugin.wasm.to_string_lossy().to_string();
        let sha256 = reference.strip_prefix("sha256:").unwrap_or(&reference);
        let bytes = app
            .store
            .backend()
            .get_blob(&PluginVersion::blob(sha256))
            .await?
            .ok_or_else(|| {
                invalid(
                    &field,
                    format!("plugin `{}` has no stored component", plugin.name),
                )
            })?;
        let options = PluginOptions {
            config: plugin.config.to_string(),
            limits: plugin.limits,
            policy: plugin.failure,
            kv: kv.clone(),
            // No per-distribution CPU series on the controller.
            distribution: String::new(),
        };
        let engine = app.validator.clone();
        let name = format!("{id}/{}", plugin.name);
        let loaded =
            tokio::task::spawn_blocking(move || Plugin::load(&engine, &name, &bytes, options))
                .await
                .map_err(|e| {
                    SpecError::Invalid(format!("{field}: the launch check failed: {e}"))
                })?;
        loaded.map_err(|e| invalid(&field, format!("plugin `{}`: {e}", plugin.name)))?;
    }
    Ok(())
}
