//! The operator's settings file (`--config FILE`, TOML; every key is
//! optional): what customers' distributions may ask for and hold. The
//! `[upstream]` and `[plugin_limits]` tables mean what they mean in
//! parapet-edge's file, so the controller refuses what edges would.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

use parapet_config::limits::PluginMaxima;
use parapet_config::network::{AddressPolicy, UpstreamConfig};
use parapet_config::ConfigError;
use serde::Deserialize;

/// The settings file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address ranges origins may use although not public.
    pub upstream: UpstreamConfig,
    /// The most a distribution's plugins may ask for.
    pub plugin_limits: PluginMaxima,
    /// How much each customer and distribution may hold.
    pub quotas: Quotas,
    /// Where automatic certificates come from; none: customers upload
    /// theirs.
    pub acme: Option<crate::acme::AcmeSettings>,
    /// Where each PoP is, by PoP id (the console's map).
    pub pops: BTreeMap<String, PopPlace>,
}

/// Where a PoP is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopPlace {
    /// A name for people (e.g. the city).
    #[serde(default)]
    pub name: Option<String>,
    /// Latitude in degrees, -90..90.
    pub lat: f64,
    /// Longitude in degrees, -180..180.
    pub lon: f64,
}

/// Sizes and counts per customer and distribution. They keep every
/// distribution's data well within what one configuration message to an
/// edge may carry (a few MiB), whatever the customers do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Distributions one customer may have.
    pub distributions_per_customer: usize,
    /// Plugins one distribution may define.
    pub plugins_per_distribution: usize,
    /// Largest `config` of one plugin, as JSON, in bytes.
    pub plugin_config_bytes: usize,
    /// Largest distribution table, as JSON, in bytes.
    pub distribution_config_bytes: usize,
    /// KV entries one distribution may have.
    pub kv_entries_per_distribution: usize,
    /// KV keys and values of one distribution, in bytes.
    pub kv_bytes_per_distribution: usize,
    /// Changes (any call but GET and HEAD) one customer may make per
    /// minute, all at once or spread out: each may make every edge
    /// relaunch that customer's plugins, and the controller check them.
    pub changes_per_minute_per_customer: NonZeroU32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            distributions_per_customer: 1_000,
            plugins_per_distribution: 16,
            plugin_config_bytes: 64 << 10,
            distribution_config_bytes: 512 << 10,
            kv_entries_per_distribution: 10_000,
            kv_bytes_per_distribution: 1 << 20,
            changes_per_minute_per_customer: NonZeroU32::new(120).expect("not zero"),
        }
    }
}

impl Settings {
    /// Reads and checks a settings file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let in_file = |field: String, reason: String| ConfigError {
            file: Some(path.to_path_buf()),
            field,
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| in_file(String::new(), format!("cannot read: {e}")))?;
        let deserializer =
            toml::Deserializer::parse(&text).map_err(|e| in_file(String::new(), e.to_string()))?;
        let settings: Settings = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let reason = e.into_inner().message().to_string();
            in_file(if field == "." { String::new() } else { field }, reason)
        })?;
        for (id, place) in &settings.pops {
            if !(-90.0..=90.0).contains(&place.lat) {
                return Err(in_file(
                    format!("pops.{id}.lat"),
                    "must be within -90..90 degrees".into(),
                ));
            }
            if !(-180.0..=180.0).contains(&place.lon) {
                return Err(in_file(
                    format!("pops.{id}.lon"),
                    "must be within -180..180 degrees".into(),
                ));
            }
        }
        Ok(settings)
    }

    /// The address policy origins are held to (the edges' own listeners
    /// are theirs to refuse).
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy::new(&self.upstream, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_settings_file_parses_and_unknown_keys_are_refused() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/controller.toml");
        let settings = Settings::from_file(&example).expect("the example parses");
        assert_eq!(settings.quotas, Quotas::default());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("controller.toml");
        std::fs::write(&path, "[quotas]\nkv_bytes = 5\n").expect("write");
        let refused = Settings::from_file(&path).unwrap_err().to_string();
        assert!(
            refused.contains("quotas.kv_bytes: unknown field `kv_bytes`"),
            "{refused}"
        );
        std::fs::write(&path, "[pops.fra]\nlat = 50.1\nlon = 188.0\n").expect("write");
        let refused = Settings::from_file(&path).unwrap_err().to_string();
        assert!(
            refused.contains("pops.fra.lon: must be within -180..180 degrees"),
            "{refused}"
        );
    }
}
