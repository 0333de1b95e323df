//! What the server answers from: the zone (settings and PoPs) and the
//! GeoIP database, each swapped whole on reload while queries keep being
//! answered from the previous one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption, Guard};

use crate::config::{load_pops, ConfigError, Settings};
use crate::geo::{GeoError, Locator};
use crate::metrics::QueryRecord;
use crate::rrl::Rrl;
use crate::select::Health;
use crate::zone::Zone;

/// Where the server's data comes from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The zone's name, e.g. `cdn.example.net`.
    pub zone: String,
    /// The PoPs file.
    pub pops: PathBuf,
    /// The settings file, when there is one.
    pub config: Option<PathBuf>,
    /// The GeoIP database, when there is one.
    pub geoip: Option<PathBuf>,
    /// Log every query, whatever the settings say.
    pub query_log: bool,
}

/// Data that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file is unreadable or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The GeoIP database cannot be opened.
    #[error(transparent)]
    Geo(#[from] GeoError),
}

/// The running data, swapped whole on reload.
pub struct State {
    sources: Sources,
    zone: ArcSwap<Zone>,
    locator: ArcSwapOption<Locator>,
    health: ArcSwap<Health>,
    query_log: AtomicBool,
    rrl: ArcSwap<Rrl>,
}

impl State {
    /// Loads every source; also returns the settings read.
    pub fn load(sources: Sources) -> Result<(Self, Settings), LoadError> {
        let (zone, settings) = build_zone(&sources)?;
        let locator = match &sources.geoip {
            Some(path) => Some(Arc::new(Locator::open(path)?)),
            None => None,
        };
        let state = State {
            query_log: AtomicBool::new(sources.query_log || settings.query_log),
            sources,
            zone: ArcSwap::from_pointee(zone),
            locator: ArcSwapOption::new(locator),
            health: ArcSwap::from_pointee(Health::default()),
            rrl: ArcSwap::from_pointee(Rrl::new(settings.rrl.clone())),
        };
        Ok((state, settings))
    }

    /// Where the data comes from.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// The current zone.
    pub fn zone(&self) -> Guard<Arc<Zone>> {
        self.zone.load()
    }

    /// The current GeoIP database.
    pub fn locator(&self) -> Guard<Option<Arc<Locator>>> {
        self.locator.load()
    }

    /// PoP health from the controller.
    pub fn health(&self) -> Guard<Arc<Health>> {
        self.health.load()
    }

    /// The response rate limiter of UDP answers.
    pub fn rrl(&self) -> Guard<Arc<Rrl>> {
        self.rrl.load()
    }

    /// Replaces the PoP health; true when it changed.
    pub fn set_health(&self, health: Health) -> bool {
        let changed = **self.health.load() != health;
        self.health.store(Arc::new(health));
        changed
    }

    /// Re-reads the settings and PoPs files. On error the running zone
    /// stays.
    pub fn reload_zone(&self) -> Result<(), LoadError> {
        let (zone, settings) = build_zone(&self.sources)?;
        self.zone.store(Arc::new(zone));
        // New limits start a new table; the same ones keep their counts.
        if *self.rrl.load().settings() != settings.rrl {
            self.rrl.store(Arc::new(Rrl::new(settings.rrl)));
        }
        self.query_log.store(
            self.sources.query_log || settings.query_log,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Re-opens the GeoIP database. On error the running one stays.
    pub fn reload_geoip(&self) -> Result<(), LoadError> {
        if let Some(path) = &self.sources.geoip {
            self.locator.store(Some(Arc::new(Locator::open(path)?)));
        }
        Ok(())
    }

    /// Counts and (when asked to) logs an answered query.
    pub fn record(&self, query: &QueryRecord<'_>) {
        query.record(self.query_log.load(Ordering::Relaxed));
    }
}

fn build_zone(sources: &Sources) -> Result<(Zone, Settings), ConfigError> {
    let settings = match &sources.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let pops = load_pops(&sources.pops)?;
    let zone = Zone::build(&sources.zone, &settings, pops).map_err(|e| {
        let (file, field) = match (&sources.config, e.field.as_str()) {
            (_, "zone") => (PathBuf::from("--zone"), String::new()),
            (Some(config), _) => (config.clone(), e.field),
            // Without a settings file only the defaults can be wrong.
            (None, _) => (PathBuf::from("(default settings)"), e.field),
        };
        ConfigError::new(&file, field, e.reason)
    })?;
    Ok((zone, settings))
}
