//! Distribution configs: a customer's submission is checked with the edge's
//! own configuration model and rules (so the controller refuses what an
//! edge would, with the same message), its plugins are resolved to
//! uploaded components, and each accepted submission becomes a version.

use serde_json::{json, Map, Value};

use crate::model::{Distribution, PluginVersion, Version};
use crate::store::{Collection, Store, StoreError};

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The submission is wrong: 400, with the field.
    #[error("{0}")]
    Invalid(String),
    /// It clashes with another distribution: 409.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> SpecError {
    if field.is_empty() {
        SpecError::Invalid(reason.to_string())
    } else {
        SpecError::Invalid(format!("{field}: {reason}"))
    }
}

/// A submission turned into what edges get.
pub struct Resolved {
    /// The edge's configuration table for the distribution.
    pub config: Value,
    /// sha256 of each plugin used.
    pub plugins: Vec<String>,
}

/// Finds an uploaded plugin of `customer`: `name` (newest version) or
/// `name@version`.
async fn find_plugin(
    store: &Store,
    customer: &str,
    reference: &str,
) -> Result<Option<PluginVersion>, StoreError> {
    let (name, version) = match reference.split_once('@') {
        Some((name, version)) => (name, version.parse::<u64>().ok()),
        None => (reference, None),
    };
    let versions: Vec<PluginVersion> = store
        .find(
            Collection::Plugins,
            &[("customer", json!(customer)), ("name", json!(name))],
        )
        .await?;
    Ok(match version {
        Some(v) => versions.into_iter().find(|p| p.version == v),
        None => versions.into_iter().max_by_key(|p| p.version),
    })
}

/// Checks `spec` (the distribution table without `id` and `customer`) for
/// distribution `id` of `customer`, resolving plugin names.
pub async fn resolve(
    store: &Store,
    id: &str,
    customer: &str,
    spec: &Value,
) -> Result<Resolved, SpecError> {
    let Value::Object(table) = spec else {
        return Err(invalid("", "the distribution must be a JSON object"));
    };
    for (field, why) in [
        ("id", "comes from the URL"),
        (
            "customer",
            "comes from the token (operators: the `customer` query parameter)",
        ),
        ("kv", "KV data is managed with /v1/distributions/{id}/kv"),
        (
            "tls",
            "certificates are managed with /v1/distributions/{id}/certificate (`parapet cert`)",
        ),
    ] {
        if table.contains_key(field) {
            return Err(invalid(field, why));
        }
    }
    let mut config: Map<String, Value> = table.clone();
    config.insert("id".into(), json!(id));
    config.insert("customer".into(), json!(customer));

    let mut plugins = Vec::new();
    if let Some(Value::Array(entries)) = config.get_mut("plugin") {
        for (i, entry) in entries.iter_mut().enumerate() {
            let field = format!("plugin[{i}].wasm");
            let Some(reference) = entry
                .get("wasm")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue; // the edge's model reports the missing field below
            };
            let plugin = find_plugin(store, customer, &reference)
                .await?
                .ok_or_else(|| {
                    invalid(
                        &field,
                        format!("no plugin `{reference}` uploaded (see GET /v1/plugins)"),
                    )
                })?;
            entry["wasm"] = json!(format!("sha256:{}", plugin.sha256));
            plugins.push(plugin.sha256);
        }
    }

    let config = Value::Object(config);
    let parsed: parapet_config::DistributionConfig =
        serde_path_to_error::deserialize(config.clone()).map_err(|e| {
            let path = e.path().to_string();
            invalid(if path == "." { "" } else { &path }, e.into_inner())
        })?;
    parsed
        .validate()
        .map_err(|e| invalid(&e.field, &e.reason))?;
    for (i, origin) in parsed.origins.iter().enumerate() {
        if origin.ca_file.is_some() {
            return Err(invalid(
                &format!("origin[{i}].ca_file"),
                "files on the controller cannot reach edges; leave it out",
            ));
        }
    }

    let domains: Vec<String> = parsed
        .domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    if let Some(i) = domains.iter().position(|d| d == "*") {
        return Err(invalid(
            &format!("domains[{i}]"),
            "`*` would take every other customer's unmatched traffic; name the domains (a wildcard like `*.example.com` is fine)",
        ));
    }
    crate::certificates::check_domains(store, id, &domains)
        .await
        .map_err(|e| match e {
            crate::certificates::CertificateError::Store(e) => SpecError::Store(e),
            other => SpecError::Invalid(other.to_string()),
        })?;
    plugins.sort();
    plugins.dedup();
    Ok(Resolved { config, plugins })
}

/// The domains of a stored version, lower-case.
pub fn domains_of(version: &Version) -> Vec<String> {
    domains_in(&version.resolved)
}

/// The domains of a resolved configuration, lower-case.
pub fn domains_in(config: &Value) -> Vec<String> {
    config["domains"]
        .as_array()
        .map(|domains| {
            domains
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

/// The domains `id` reserves: those of every version in service (the live
/// and newest versions, and a rolling deployment's), sorted.
pub async fn reserved_domains(
    store: &Store,
    id: &str,
    live_version: u64,
    latest_version: u64,
) -> Result<Vec<String>, StoreError> {
    let mut in_service = vec![live_version, latest_version];
    if let Some(deployment) = crate::deployments::active(store, id).await? {
        in_service.push(deployment.to_version);
    }
    in_service.sort_unstable();
    in_service.dedup();
    let mut domains = Vec::new();
    for number in in_service {
        if let Some(stored) = version(store, id, number).await? {
            domains.extend(domains_of(&stored));
        }
    }
    domains.sort();
    domains.dedup();
    Ok(domains)
}

/// How a version is applied.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyMode {
    /// Store it without making it live (for a blue/green deployment),
    /// except as a first version.
    pub stage: bool,
    /// The operator lets its domains overlap another customer's
    /// wildcard or names (see [`crate::claims`]).
    pub claim_override: bool,
}

/// Stores `resolved` as the next version of `id`, its domains claimed
/// first (409 when another distribution serves one, or another
/// customer's wildcard covers one); live unless staged. Returns the
/// distribution.
pub async fn apply(
    store: &Store,
    id: &str,
    customer: &str,
    spec: Value,
    resolved: Resolved,
    mode: ApplyMode,
) -> Result<Distribution, SpecError> {
    let now = crate::model::now_ms();
    let existing: Option<Distribution> = store.get(Collection::Distributions, id).await?;
    // The caller checked ownership; a distribution created meanwhile by
    // another customer is not taken over.
    if existing.as_ref().is_some_and(|d| d.customer != customer) {
        return Err(SpecError::Conflict(format!(
            "distribution `{id}` belongs to another customer"
        )));
    }
    let version = existing.as_ref().map_or(1, |d| d.latest_version + 1);
    let new_domains = domains_in(&resolved.config);
    let claimed = crate::claims::claim(store, id, customer, &new_domains, mode.claim_override)
        .await
        .map_err(|e| match e {
            crate::claims::ClaimError::Taken(why) => SpecError::Conflict(why),
            crate::claims::ClaimError::Store(e) => e.into(),
        })?;
    let stored: Result<Distribution, SpecError> = async {
        let mut before = domains_in(&resolved.config);
        let record = Version {
            distribution: id.to_string(),
            version,
            spec,
            resolved: resolved.config,
            plugins: resolved.plugins,
            created_ms: now,
        };
        store
            .insert(Collection::Versions, &Version::key(id, version), &record)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => SpecError::Conflict(format!(
                    "distribution `{id}` changed meanwhile; submit again"
                )),
                other => other.into(),
            })?;
        let live_version = match &existing {
            Some(d) if mode.stage => d.live_version,
            _ => version,
        };
        let domains = reserved_domains(store, id, live_version, version).await?;
        if let Some(existing) = &existing {
            before.extend(existing.domains.iter().cloned());
        }
        let distribution = Distribution {
            id: id.to_string(),
            customer: customer.to_string(),
            live_version,
            latest_version: version,
            domains,
            created_ms: existing.as_ref().map_or(now, |d| d.created_ms),
            revision: existing.map_or(0, |d| d.revision),
        };
        store
            .put(Collection::Distributions, id, &distribution)
            .await?;
        crate::claims::keep_only(store, id, &before, &distribution.domains).await?;
        let revision = crate::revision::bump(store, &[id.to_string()]).await?;
        Ok(Distribution {
            revision,
            ..distribution
        })
    }
    .await;
    if stored.is_err() {
        if let Err(e) = crate::claims::release(store, id, &claimed).await {
            tracing::error!(distribution = id, error = %e, "cannot release the domains of a version not stored");
        }
    }
    stored
}

/// A version of a distribution.
pub async fn version(store: &Store, id: &str, version: u64) -> Result<Option<Version>, StoreError> {
    store
        .get(Collection::Versions, &Version::key(id, version))
        .await
}

/// Every version of a distribution, oldest first.
pub async fn versions(store: &Store, id: &str) -> Result<Vec<Version>, StoreError> {
    let mut versions: Vec<Version> = store
        .find(Collection::Versions, &[("distribution", json!(id))])
        .await?;
    versions.sort_by_key(|v| v.version);
    Ok(versions)
}

/// A unified diff between two versions' submitted configs.
pub fn diff(from: &Version, to: &Version) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    let (old, new) = (pretty(&from.spec), pretty(&to.spec));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .header(
            &format!("{}@{}", from.distribution, from.version),
            &format!("{}@{}", to.distribution, to.version),
        )
        .to_string()
}
