//! Client location from a MaxMind-format database (GeoIP2, GeoLite2,
//! DB-IP; City or Country level).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use serde::Deserialize;

/// A GeoIP database that cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("GeoIP database {path}: {source}")]
pub struct GeoError {
    path: PathBuf,
    source: maxminddb::MaxMindDbError,
}

/// Where the database puts an address, and how far that answer reaches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Latitude and longitude in degrees, or `None` when the database does
    /// not know the address.
    pub position: Option<(f64, f64)>,
    /// Length of the database network the address is in: every address of
    /// that network gets the same answer (the ECS scope).
    pub prefix_len: u8,
}

/// The fields of a GeoIP2 City or Country record that placing a client
/// needs; decoding only these skips the name maps (most of a record).
#[derive(Deserialize)]
struct Record<'a> {
    location: Option<Coordinates>,
    #[serde(borrow)]
    country: Option<Country<'a>>,
    #[serde(borrow)]
    registered_country: Option<Country<'a>>,
}

#[derive(Deserialize)]
struct Coordinates {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

/// An open database, read into memory.
pub struct Locator {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator")
            .field("path", &self.path)
            .field("type", &self.reader.metadata.database_type)
            .finish()
    }
}

impl Locator {
    /// Opens a `.mmdb` file.
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let reader = Reader::open_readfile(path).map_err(|source| GeoError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Locator {
            reader,
            path: path.to_path_buf(),
        })
    }

    /// The database's type, e.g. `DBIP-City-Lite`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata.database_type
    }

    /// Locates `ip`: the city's coordinates when the database has them,
    /// else the centroid of its country.
    pub fn locate(&self, ip: IpAddr) -> Location {
        let full_len: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let Ok((record, prefix_len)) = self.reader.lookup_prefix::<Record>(ip) else {
            return Location {
                position: None,
                prefix_len: full_len,
            };
        };
        let prefix_len = u8::try_from(prefix_len).unwrap_or(full_len).min(full_len);
        let position = record.and_then(|record| {
            let coordinates = record
                .location
                .and_then(|l| Some((l.latitude?, l.longitude?)));
            coordinates.or_else(|| {
                let code = record
                    .country
                    .and_then(|c| c.iso_code)
                    .or_else(|| record.registered_country.and_then(|c| c.iso_code))?;
                country_centroid(code)
            })
        });
        Location {
            position,
            prefix_len,
        }
    }
}

/// The centre of a country by its ISO 3166-1 alpha-2 code.
pub fn country_centroid(code: &str) -> Option<(f64, f64)> {
    let country = keshvar::Alpha2::try_from(code).ok()?.to_country();
    let geo = country.geo();
    Some((geo.latitude(), geo.longitude()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_centroids_are_known() {
        let (lat, lon) = country_centroid("jp").expect("Japan");
        assert!(
            (30.0..40.0).contains(&lat) && (130.0..145.0).contains(&lon),
            "{lat},{lon}"
        );
        let (lat, lon) = country_centroid("DE").expect("Germany");
        assert!(
            (47.0..55.0).contains(&lat) && (6.0..15.0).contains(&lon),
            "{lat},{lon}"
        );
        assert_eq!(country_centroid("XX"), None);
        assert_eq!(country_centroid(""), None);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let file = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(file.path(), b"not a database").expect("write");
        let error = Locator::open(file.path()).expect_err("garbage").to_string();
        assert!(error.starts_with("GeoIP database "), "{error}");
    }
}
