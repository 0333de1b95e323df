//! The distributions an edge in controller mode holds, each built and
//! applied on its own: one that does not load keeps its last good version
//! (or, having none, is answered 503) while every other distribution
//! updates. Each is kept in the state directory as it was received
//! (`distributions/<id>.json`) and as it last loaded (`serving/<id>.json`),
//! so the edge starts and serves its last good configuration without the
//! controller; and each one's apply state is reported in the heartbeats.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parapet_config::{ConfigError, DistributionConfig, EdgeConfig};
use parapet_host::{KvStore, PluginEngine};
use parapet_proto::edge::{DistributionHave, DistributionStatus};
use serde::{Deserialize, Serialize};

use rustls::sign::CertifiedKey;

use crate::edge::{AcmeChallenges, Snapshot};
use crate::routing::{Distribution, Routes, Unavailable};
use crate::tls::Certificates;

/// One distribution as the controller sent it, as kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// Distribution id.
    pub id: String,
    /// Its version number.
    pub version: u64,
    /// The configuration revision of its last change.
    pub revision: u64,
    /// The distribution table, as JSON (plugins as `sha256:` references).
    pub config_json: String,
    /// sha256 of each plugin it uses.
    pub plugins: Vec<String>,
    /// Its KV data (JSON object of strings).
    pub kv_json: String,
    /// Its certificate chain (PEM; empty: none).
    #[serde(default)]
    pub tls_certificate_pem: String,
    /// The certificate's private key (PEM; empty: none).
    #[serde(default)]
    pub tls_private_key_pem: String,
    /// Open ACME HTTP-01 challenges: token → key authorization.
    #[serde(default)]
    pub acme_challenges: BTreeMap<String, String>,
}

impl From<parapet_proto::edge::DistributionConfig> for Received {
    fn from(message: parapet_proto::edge::DistributionConfig) -> Self {
        Received {
            id: message.id,
            version: message.version,
            revision: message.revision,
            config_json: message.config_json,
            plugins: message.plugins.into_iter().map(|p| p.sha256).collect(),
            kv_json: message.kv_json,
            tls_certificate_pem: message.tls_certificate_pem,
            tls_private_key_pem: message.tls_private_key_pem,
            acme_challenges: message.acme_challenges.into_iter().collect(),
        }
    }
}

impl Received {
    /// The same distribution data (the revision and ACME challenges
    /// aside: those change without a rebuild).
    fn same_as(&self, other: &Received) -> bool {
        self.version == other.version
            && self.config_json == other.config_json
            && self.plugins == other.plugins
            && self.kv_json == other.kv_json
            && self.tls_certificate_pem == other.tls_certificate_pem
            && self.tls_private_key_pem == other.tls_private_key_pem
    }
}

/// A held distribution: what was received last, and what serves.
struct Held {
    received: Received,
    /// The loaded version serving now, if one ever loaded.
    serving: Option<Serving>,
    /// Why the last received version did not load.
    failure: Option<String>,
    /// Its domains, for a 503 when nothing of it serves.
    domains: Vec<String>,
}

/// A version that loaded, with its certificate.
#[derive(Clone)]
struct Serving {
    version: u64,
    distribution: Arc<Distribution>,
    certificate: Option<Arc<CertifiedKey>>,
}

/// Where distributions are built from: the state directory (plugins), the
/// engine, and what the edge's own configuration allows.
pub struct Builder {
    /// The state directory.
    pub state_dir: PathBuf,
    /// The plugin engine.
    pub engine: Arc<PluginEngine>,
    /// The edge's configuration without distributions.
    pub base: EdgeConfig,
    /// The edge's own certificate (`[tier_tls]`), read once at start (the
    /// file is not reloaded in controller mode).
    pub tier: Certificates,
}

impl Builder {
    fn plugin_path(&self, sha256: &str) -> PathBuf {
        self.state_dir
            .join("plugins")
            .join(format!("{sha256}.wasm"))
    }

    /// The distribution's configuration, with local plugin and KV paths,
    /// checked against this edge's policy; then loaded.
    fn load(&self, received: &Received) -> Result<(Vec<String>, Serving), (Vec<String>, String)> {
        let mut config: DistributionConfig =
            serde_json::from_str(&received.config_json).map_err(|e| {
                (
                    Vec::new(),
                    format!("the configuration is not a distribution: {e}"),
                )
            })?;
        let domains = config.domains.clone();
        let fail = |why: String| (domains.clone(), why);
        if config.id != received.id {
            return Err(fail(format!("the configuration is for `{}`", config.id)));
        }
        config
            .validate()
            .and_then(|()| {
                config.check_policy(&self.base.address_policy(), &self.base.plugin_limits)
            })
            .map_err(|e| fail(e.to_string()))?;
        for plugin in &mut config.plugins {
            let reference = plugin.wasm.to_string_lossy().to_string();
            let Some(sha256) = reference.strip_prefix("sha256:") else {
                return Err(fail(format!(
                    "plugin `{}`: `{reference}` is not a sha256 reference",
                    plugin.name
                )));
            };
            plugin.wasm = self.plugin_path(sha256);
        }
        let kv: HashMap<String, String> = serde_json::from_str(&received.kv_json)
            .map_err(|e| fail(format!("kv: not a JSON object of strings: {e}")))?;
        config.kv = None;
        let certificate = match received.tls_certificate_pem.is_empty() {
            true => None,
            false => Some(
                crate::tls::certified_key_from_pem(
                    received.tls_certificate_pem.as_bytes(),
                    received.tls_private_key_pem.as_bytes(),
                )
                .map_err(|e| fail(format!("its certificate: {e}")))?,
            ),
        };
        let loaded = Distribution::load_with_kv(
            &config,
            KvStore::from_entries(kv),
            &self.state_dir,
            &self.engine,
        )
        .map_err(|e| fail(e.to_string()))?;
        Ok((
            domains,
            Serving {
                version: received.version,
                distribution: Arc::new(loaded),
                certificate,
            },
        ))
    }
}

/// The distributions held, the revision they bring the edge to, and the
/// statuses not yet reported.
#[derive(Default)]
pub struct Holdings {
    held: BTreeMap<String, Held>,
    /// The configuration revision reached.
    pub revision: u64,
    /// Ids whose status changed since the last delivered heartbeat.
    changed: BTreeSet<String>,
    /// Ids removed since then.
    removed: BTreeSet<String>,
    /// Whether the next heartbeat lists every distribution.
    report_all: bool,
}

/// One update from the controller, gathered until it is complete.
#[derive(Default)]
pub struct Update {
    /// The revision it brings.
    pub revision: u64,
    /// Whether it lists everything the edge should hold.
    pub reset: bool,
    /// Added or changed.
    pub distributions: Vec<Received>,
    /// Removed.
    pub removed: Vec<String>,
}

impl Holdings {
    /// What the state directory holds: every distribution kept, built
    /// (those that fail to load are held as failed).
    pub fn restore(builder: &Builder) -> Self {
        let mut holdings = Holdings {
            report_all: true,
            ..Holdings::default()
        };
        holdings.revision = std::fs::read_to_string(builder.state_dir.join("revision"))
            .ok()
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(0);
        for received in kept(&builder.state_dir.join(DISTRIBUTIONS)) {
            // The version that last loaded first, so that it serves if the
            // one received after it fails again.
            let good = kept_file(&builder.serving_file(&received.id));
            if let Some(good) = good.filter(|good| !good.same_as(&received)) {
                holdings.take(builder, good);
            }
            holdings.take(builder, received);
        }
        holdings
    }

    /// What the edge holds, for the controller to send what differs.
    pub fn have(&self) -> Vec<DistributionHave> {
        self.held
            .values()
            .map(|h| DistributionHave {
                id: h.received.id.clone(),
                revision: h.received.revision,
            })
            .collect()
    }

    /// Applies a complete update: builds what changed, drops what went,
    /// keeps it on disk. Returns whether what serves changed.
    pub fn apply(&mut self, builder: &Builder, update: Update) -> anyhow::Result<bool> {
        let mut changed = false;
        let mut removed = update.removed;
        if update.reset {
            let listed: BTreeSet<&str> =
                update.distributions.iter().map(|d| d.id.as_str()).collect();
            removed.extend(
                self.held
                    .keys()
                    .filter(|id| !listed.contains(id.as_str()))
                    .cloned(),
            );
        }
        for id in removed {
            if self.held.remove(&id).is_some() {
                changed = true;
                self.changed.remove(&id);
                self.removed.insert(id.clone());
                for file in [builder.distribution_file(&id), builder.serving_file(&id)] {
                    if let Err(e) = std::fs::remove_file(&file) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!(file = %file.display(), error = %e, "cannot remove a dropped distribution's file");
                        }
                    }
                }
            }
        }
        for received in update.distributions {
            let bytes = serde_json::to_vec(&received)?;
            let file = builder.distribution_file(&received.id);
            super::owner_only::write_atomically(&file, &bytes)
                .with_context(|| format!("keeping {}", file.display()))?;
            changed |= self.take(builder, received);
        }
        self.revision = self.revision.max(update.revision);
        super::owner_only::write_atomically(
            &builder.state_dir.join("revision"),
            self.revision.to_string().as_bytes(),
        )
        .context("keeping the revision")?;
        Ok(changed)
    }

    /// Holds `received`, building it unless the same data already
    /// serves; returns whether what serves changed.
    fn take(&mut self, builder: &Builder, received: Received) -> bool {
        let id = received.id.clone();
        if let Some(held) = self.held.get_mut(&id) {
            if held.received.same_as(&received) && held.failure.is_none() {
                let challenges_changed = held.received.acme_challenges != received.acme_challenges;
                held.received = received;
                return challenges_changed;
            }
        }
        self.changed.insert(id.clone());
        self.removed.remove(&id);
        let built = builder.load(&received);
        let previous = self.held.remove(&id);
        let held = match built {
            Ok((domains, loaded)) => {
                tracing::info!(distribution = %id, version = received.version, "distribution applied");
                builder.keep_serving(&received);
                Held {
                    serving: Some(loaded),
                    failure: None,
                    domains,
                    received,
                }
            }
            Err((domains, why)) => {
                metrics::counter!("parapet_distribution_apply_failures_total").increment(1);
                let serving = previous.as_ref().and_then(|p| p.serving.clone());
                tracing::error!(distribution = %id, version = received.version, error = %why,
                    still_serving = ?serving.as_ref().map(|s| s.version),
                    "a distribution's configuration did not load; its last good version stays");
                Held {
                    domains: if domains.is_empty() {
                        previous.map(|p| p.domains).unwrap_or_default()
                    } else {
                        domains
                    },
                    serving,
                    failure: Some(why),
                    received,
                }
            }
        };
        self.held.insert(id, held);
        true
    }

    /// A snapshot of the builder's configuration serving what is held:
    /// routes, certificates (beside the edge's own) and ACME challenges.
    pub fn snapshot(&self, builder: &Builder) -> Result<Snapshot, ConfigError> {
        let mut certificates = builder.tier.clone();
        for (domains, key) in self.certificates() {
            certificates.add(&domains, key);
        }
        Snapshot::with_routes(
            builder.base.clone(),
            self.routes(),
            certificates,
            self.challenges(),
            &builder.state_dir,
        )
    }

    /// Routes over what serves: each distribution's loaded version, and a
    /// 503 for those that never loaded.
    fn routes(&self) -> Routes {
        let mut serving = Vec::new();
        let mut unavailable = Vec::new();
        for held in self.held.values() {
            match &held.serving {
                Some(loaded) => serving.push(loaded.distribution.clone()),
                None => unavailable.push(Unavailable {
                    id: held.received.id.clone(),
                    domains: held.domains.clone(),
                }),
            }
        }
        Routes::assemble(serving, unavailable)
    }

    /// The certificates of what serves, each with its distribution's
    /// domains.
    fn certificates(&self) -> Vec<(Vec<String>, Arc<CertifiedKey>)> {
        self.held
            .values()
            .filter_map(|held| {
                let serving = held.serving.as_ref()?;
                let certificate = serving.certificate.clone()?;
                Some((serving.distribution.config.domains.clone(), certificate))
            })
            .collect()
    }

    /// The open ACME challenges of every distribution held.
    fn challenges(&self) -> AcmeChallenges {
        let mut challenges = AcmeChallenges::default();
        for held in self.held.values() {
            for (token, key_authorization) in &held.received.acme_challenges {
                challenges.insert(token, &held.received.id, key_authorization);
            }
        }
        challenges
    }

    /// The statuses the next heartbeat carries (all of them after a start),
    /// and whether that is every distribution. Taken: put them back with
    /// [`Holdings::unreported`] if the heartbeat is not delivered.
    pub fn take_statuses(&mut self) -> (Vec<DistributionStatus>, bool) {
        let complete = std::mem::take(&mut self.report_all);
        let ids: Vec<String> = if complete {
            self.held.keys().cloned().collect()
        } else {
            std::mem::take(&mut self.changed).into_iter().collect()
        };
        if complete {
            self.changed.clear();
        }
        let mut statuses: Vec<DistributionStatus> = ids
            .iter()
            .filter_map(|id| self.held.get(id))
            .map(|held| DistributionStatus {
                id: held.received.id.clone(),
                version: held.serving.as_ref().map_or(0, |s| s.version),
                failed_version: held.failure.as_ref().map_or(0, |_| held.received.version),
                error: held.failure.clone().unwrap_or_default(),
                removed: false,
            })
            .collect();
        let removed = std::mem::take(&mut self.removed);
        if !complete {
            statuses.extend(removed.into_iter().map(|id| DistributionStatus {
                id,
                removed: true,
                ..Default::default()
            }));
        }
        (statuses, complete)
    }

    /// Statuses a heartbeat could not deliver, to send again.
    pub fn unreported(&mut self, statuses: Vec<DistributionStatus>, complete: bool) {
        if complete {
            self.report_all = true;
            return;
        }
        for status in statuses {
            if status.removed {
                if !self.held.contains_key(&status.id) {
                    self.removed.insert(status.id);
                }
            } else if self.held.contains_key(&status.id) {
                self.changed.insert(status.id);
            }
        }
    }

    /// Asks the next heartbeat to list every distribution (after a new
    /// registration, the controller knows none of them).
    pub fn report_all(&mut self) {
        self.report_all = true;
    }
}

/// Where distributions are kept as received, in the state directory.
pub const DISTRIBUTIONS: &str = "distributions";
/// Where distributions are kept as they last loaded.
pub const SERVING: &str = "serving";

impl Builder {
    fn distribution_file(&self, id: &str) -> PathBuf {
        self.state_dir
            .join(DISTRIBUTIONS)
            .join(format!("{id}.json"))
    }

    fn serving_file(&self, id: &str) -> PathBuf {
        self.state_dir.join(SERVING).join(format!("{id}.json"))
    }

    /// Keeps `received` as the version to start from should a later one
    /// not load (a failure to keep it is logged: it only costs that).
    fn keep_serving(&self, received: &Received) {
        let file = self.serving_file(&received.id);
        let kept = serde_json::to_vec(received)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| {
                super::owner_only::write_atomically(&file, &bytes).map_err(Into::into)
            });
        if let Err(e) = kept {
            tracing::warn!(file = %file.display(), error = %e, "cannot keep the distribution that loaded");
        }
    }
}

/// The distributions kept in `dir` (those that cannot be read are logged
/// and skipped).
fn kept(dir: &Path) -> Vec<Received> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| kept_file(&entry.path()))
        .collect()
}

/// The distribution kept in `file`, if it can be read.
fn kept_file(file: &Path) -> Option<Received> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "a kept distribution cannot be read; skipped");
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .inspect_err(|e| tracing::warn!(file = %file.display(), error = %e, "a kept distribution cannot be read; skipped"))
        .ok()
}
