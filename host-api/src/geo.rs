//! Viewer location from a MaxMind-format (GeoIP2 / GeoLite2 / DB-IP) database.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{geoip2, Reader};

use crate::bindings::Geo;

/// Errors opening a GeoIP database.
#[derive(Debug, thiserror::Error)]
#[error("opening GeoIP database {path}: {source}")]
pub struct GeoError {
    path: String,
    source: maxminddb::MaxMindDbError,
}

/// A GeoIP database, read into memory.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("type", &self.reader.metadata.database_type)
            .finish()
    }
}

impl GeoDb {
    /// Opens a `.mmdb` file (City or Country level).
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let reader = Reader::open_readfile(path).map_err(|source| GeoError {
            path: path.display().to_string(),
            source,
        })?;
        Ok(GeoDb { reader })
    }

    /// Where `ip` is, or `None` when the database does not know it.
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        let city: geoip2::City = self.reader.lookup(ip).ok().flatten()?;
        let location = city.location.as_ref();
        let geo = Geo {
            country: city.country.and_then(|c| c.iso_code).map(str::to_string),
            city: city
                .city
                .and_then(|c| c.names)
                .and_then(|n| n.get("en").map(|s| s.to_string())),
            latitude: location.and_then(|l| l.latitude),
            longitude: location.and_then(|l| l.longitude),
        };
        let known = geo.country.is_some() || geo.latitude.is_some();
        known.then_some(geo)
    }
}
