//! The two files `parapet-dns` reads: the PoPs file (`--pops`, TOML
//! `[[pop]]` tables) and the optional settings file (`--config`).
//!
//! Errors name the file, the field path and the reason.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}{reason}")]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The field path followed by ": ", or empty when the file as a whole is wrong.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    /// An error about `field` of `file` (empty field: the whole file).
    pub fn new(file: &Path, field: impl AsRef<str>, reason: impl Into<String>) -> Self {
        let field = field.as_ref();
        ConfigError {
            file: file.to_path_buf(),
            field: if field.is_empty() {
                String::new()
            } else {
                format!("{field}: ")
            },
            reason: reason.into(),
        }
    }
}

/// One point of presence: where it is and the addresses that reach it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PopConfig {
    /// Short identifier, unique in the file (`tyo`, `fra`).
    pub id: String,
    /// Human name, for logs.
    #[serde(default)]
    pub name: Option<String>,
    /// Latitude in degrees, −90 to 90.
    pub lat: f64,
    /// Longitude in degrees, −180 to 180.
    pub lon: f64,
    /// IPv4 addresses answered for A queries.
    #[serde(default)]
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses answered for AAAA queries.
    #[serde(default)]
    pub ipv6: Vec<Ipv6Addr>,
    /// A disabled PoP is never answered, except as a default when every
    /// PoP is down.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Pull: distances to this PoP count as `distance / weight`, so a PoP
    /// of weight 2 draws clients from twice as far. Default 1.
    #[serde(default = "one")]
    pub weight: f64,
    /// Answers per second this server gives for the PoP; past it, clients
    /// spill to the next nearest PoP. None: no limit.
    #[serde(default)]
    pub capacity: Option<u32>,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PopsFile {
    pop: Vec<PopConfig>,
}

/// Reads and checks a PoPs file.
pub fn load_pops(path: &Path) -> Result<Vec<PopConfig>, ConfigError> {
    let file: PopsFile = parse_toml(path)?;
    check_pops(&file.pop).map_err(|(field, reason)| ConfigError::new(path, field, reason))?;
    Ok(file.pop)
}

fn check_pops(pops: &[PopConfig]) -> Result<(), (String, String)> {
    if pops.is_empty() {
        return Err(("pop".into(), "at least one [[pop]] is needed".into()));
    }
    let mut ids = HashSet::new();
    for (i, pop) in pops.iter().enumerate() {
        let at = |field: &str| format!("pop[{i}].{field}");
        if pop.id.is_empty() {
            return Err((at("id"), "must not be empty".into()));
        }
        if !ids.insert(pop.id.as_str()) {
            return Err((at("id"), format!("`{}` is used twice", pop.id)));
        }
        if !(-90.0..=90.0).contains(&pop.lat) {
            return Err((at("lat"), format!("{} is not within -90..90", pop.lat)));
        }
        if !(-180.0..=180.0).contains(&pop.lon) {
            return Err((at("lon"), format!("{} is not within -180..180", pop.lon)));
        }
        if !(pop.weight.is_finite() && pop.weight > 0.0) {
            return Err((
                at("weight"),
                format!("{} is not a positive number", pop.weight),
            ));
        }
        if pop.capacity == Some(0) {
            return Err((
                at("capacity"),
                "0 would never answer; leave it out for no limit".into(),
            ));
        }
        if pop.ipv4.is_empty() && pop.ipv6.is_empty() {
            return Err((
                at("ipv4"),
                "a PoP needs at least one ipv4 or ipv6 address".into(),
            ));
        }
    }
    Ok(())
}

/// Settings from `--config` (every one has a default).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// TTL of PoP answers, in seconds: short, so that clients follow health
    /// changes.
    pub ttl: u32,
    /// How many PoPs an answer names, nearest first.
    pub answers: usize,
    /// PoP ids answered when the client's location is unknown, and when
    /// every PoP is down. Empty: every PoP, in file order.
    pub default_pops: Vec<String>,
    /// Names under the zone answered with PoPs, relative to the zone; `*`
    /// stands for one label (`*` is every `<distribution>.<zone>`,
    /// `*.edge` every `<x>.edge.<zone>`).
    pub distributions: Vec<String>,
    /// The zone's nameservers (absolute names). Default `ns1.<zone>.`.
    pub nameservers: Vec<String>,
    /// The SOA record's fields.
    pub soa: SoaSettings,
    /// Static records served as they are.
    #[serde(rename = "record")]
    pub records: Vec<StaticRecord>,
    /// Address for `/metrics` and `/healthz` (also `--metrics`).
    pub metrics: Option<SocketAddr>,
    /// Log every query as a JSON line (also `--query-log`).
    pub query_log: bool,
    /// Response rate limiting of UDP answers.
    pub rrl: crate::rrl::RrlSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ttl: 30,
            answers: 1,
            default_pops: Vec::new(),
            distributions: vec!["*".into()],
            nameservers: Vec::new(),
            soa: SoaSettings::default(),
            records: Vec::new(),
            metrics: None,
            query_log: false,
            rrl: crate::rrl::RrlSettings::default(),
        }
    }
}

/// The SOA record. Names default to `ns1.<zone>.` and `hostmaster.<zone>.`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SoaSettings {
    /// The primary nameserver.
    pub mname: Option<String>,
    /// The administrator's mailbox, as a name.
    pub rname: Option<String>,
    /// Serial. Default: the time the configuration was loaded (Unix
    /// seconds), so that each reload counts up.
    pub serial: Option<u32>,
    /// Seconds.
    pub refresh: u32,
    /// Seconds.
    pub retry: u32,
    /// Seconds.
    pub expire: u32,
    /// TTL of negative answers (NXDOMAIN, NODATA), in seconds.
    pub minimum: u32,
    /// TTL of the SOA and NS records.
    pub ttl: u32,
}

impl Default for SoaSettings {
    fn default() -> Self {
        SoaSettings {
            mname: None,
            rname: None,
            serial: None,
            refresh: 3600,
            retry: 600,
            expire: 604_800,
            minimum: 60,
            ttl: 3600,
        }
    }
}

/// A record served as it is, e.g. the nameservers' own addresses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticRecord {
    /// Relative to the zone (`ns1`, `www`), `@` for the apex.
    pub name: String,
    /// Record type: A, AAAA, CNAME, TXT, MX, CAA, …
    #[serde(rename = "type")]
    pub record_type: String,
    /// The data as in a zone file; names in it end with a dot.
    pub value: String,
    /// Seconds; default 300.
    #[serde(default = "static_ttl")]
    pub ttl: u32,
}

fn static_ttl() -> u32 {
    300
}

impl Settings {
    /// Reads a settings file; the records and names are checked when the
    /// zone is built.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let settings: Settings = parse_toml(path)?;
        if settings.answers == 0 {
            return Err(ConfigError::new(path, "answers", "must be at least 1"));
        }
        if settings.rrl.ipv4_prefix_length > 32 {
            return Err(ConfigError::new(
                path,
                "rrl.ipv4_prefix_length",
                "must be at most 32",
            ));
        }
        if settings.rrl.ipv6_prefix_length > 128 {
            return Err(ConfigError::new(
                path,
                "rrl.ipv6_prefix_length",
                "must be at most 128",
            ));
        }
        Ok(settings)
    }
}

fn parse_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "", format!("cannot read: {e}")))?;
    let deserializer = toml::Deserializer::parse(&text)
        .map_err(|e| ConfigError::new(path, "", e.to_string().trim_end().to_string()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        ConfigError::new(path, field, e.into_inner().message().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write");
        file
    }

    #[test]
    fn pops_file_reads_with_defaults() {
        let file = write(
            r#"
[[pop]]
id = "tyo"
lat = 35.68
lon = 139.69
ipv4 = ["192.0.2.1"]
"#,
        );
        let pops = load_pops(file.path()).expect("valid");
        assert_eq!(pops[0].id, "tyo");
        assert!(pops[0].enabled);
        assert_eq!(pops[0].weight, 1.0);
        assert_eq!(pops[0].capacity, None);
    }

    #[test]
    fn bad_pops_are_refused_naming_the_field() {
        let cases = [
            ("[[pop]]\nid = \"a\"\nlat = 91.0\nlon = 0.0\nipv4 = [\"192.0.2.1\"]\n", "pop[0].lat: 91 is not within -90..90"),
            ("[[pop]]\nid = \"a\"\nlat = 1.0\nlon = 0.0\n", "pop[0].ipv4: a PoP needs at least one"),
            ("[[pop]]\nid = \"a\"\nlat = 1.0\nlon = 0.0\nipv4 = [\"300.0.0.1\"]\n", "pop[0].ipv4[0]: invalid IPv4 address"),
            ("[[pop]]\nid = \"a\"\nlat = 1.0\nlon = 0.0\nipv4 = [\"192.0.2.1\"]\nwieght = 2.0\n", "pop[0].wieght: unknown field `wieght`"),
            ("[[pop]]\nid = \"a\"\nlat = 1.0\nlon = 0.0\nipv4 = [\"192.0.2.1\"]\n[[pop]]\nid = \"a\"\nlat = 1.0\nlon = 0.0\nipv4 = [\"192.0.2.1\"]\n", "pop[1].id: `a` is used twice"),
            ("[[pop]]\nid = \"a\"\nlat = 1.0\nlon = 0.0\nipv4 = [\"192.0.2.1\"]\nweight = 0.0\n", "pop[0].weight: 0 is not a positive number"),
            ("pop = []\n", "pop: at least one [[pop]] is needed"),
            ("[[pop]\n", "TOML parse error"),
        ];
        for (text, expected) in cases {
            let file = write(text);
            let error = load_pops(file.path()).expect_err(text).to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
            assert!(
                error.starts_with(&file.path().display().to_string()),
                "{error}"
            );
        }
    }

    #[test]
    fn settings_default_and_refuse_unknown_fields() {
        let file = write("ttl = 20\n[soa]\nminimum = 30\n[[record]]\nname = \"ns1\"\ntype = \"A\"\nvalue = \"192.0.2.53\"\n");
        let settings = Settings::from_file(file.path()).expect("valid");
        assert_eq!(settings.ttl, 20);
        assert_eq!(settings.answers, 1);
        assert_eq!(settings.soa.minimum, 30);
        assert_eq!(settings.soa.refresh, 3600);
        assert_eq!(settings.records[0].ttl, 300);

        let file = write("[soa]\nminimun = 30\n");
        let error = Settings::from_file(file.path())
            .expect_err("typo")
            .to_string();
        assert!(
            error.contains("soa.minimun: unknown field `minimun`"),
            "{error}"
        );
        let file = write("answers = 0\n");
        let error = Settings::from_file(file.path())
            .expect_err("zero")
            .to_string();
        assert!(error.contains("answers: must be at least 1"), "{error}");
    }
}
