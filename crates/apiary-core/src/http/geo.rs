//! GeoIP for the dashboard's map: a MaxMind-format database the operator supplies (`geoip` in
//! `[core]`, GeoLite2/GeoIP2 Country or City; none is bundled), read whole into memory once.
//!
//! A source address becomes its country's ISO code and, with a City database, a map cell (the
//! location rounded to whole degrees, so nearby cities share a dot and the rollups stay
//! small). Without a database, or for an address the database does not know, nothing is added:
//! the map is simply not shown.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use super::HttpError;

/// An opened GeoIP database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("type", &self.reader.metadata().database_type)
            .field("build_epoch", &self.reader.metadata().build_epoch)
            .finish()
    }
}

/// Where an address is, as far as the database knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// ISO 3166-1 alpha-2 code (`DE`), when the database has one.
    pub country: Option<String>,
    /// `(latitude, longitude)` rounded to whole degrees (City databases only).
    pub cell: Option<(i32, i32)>,
}

/// The parts of a GeoIP2 record we use (Country and City databases share them).
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    #[serde(default)]
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

impl GeoIp {
    /// Reads the database at `path` and checks that it is a MaxMind DB.
    pub fn open(path: &Path) -> Result<Self, HttpError> {
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| HttpError::Invalid(format!("GeoIP database {}: {e}", path.display())))?;
        Ok(Self { reader })
    }

    /// The database's build time (seconds): the rollups are refolded when it changes.
    pub fn build_epoch(&self) -> i64 {
        i64::try_from(self.reader.metadata().build_epoch).unwrap_or(i64::MAX)
    }

    /// Whether the database carries locations (a City database), so a map can be drawn.
    pub fn has_locations(&self) -> bool {
        self.reader.metadata().database_type.contains("City")
    }

    /// Looks `ip` up; `None` when the database has no usable record for it.
    pub fn locate(&self, ip: IpAddr) -> Option<Place> {
        // An IPv6 address in an IPv4-only database is an error, not a miss: either way, unknown.
        let found = self.reader.lookup(ip).ok()?;
        let rec: Record<'_> = found.decode().ok()??;
        let country = rec
            .country
            .and_then(|c| c.iso_code)
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
            .map(str::to_owned);
        let cell = rec.location.and_then(|l| match (l.latitude, l.longitude) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some((lat.round() as i32, lon.round() as i32))
            }
            _ => None,
        });
        if country.is_none() && cell.is_none() {
            return None;
        }
        Some(Place { country, cell })
    }
}

/// The rollup key of a map cell (`"LAT,LON"`).
pub(crate) fn cell_key((lat, lon): (i32, i32)) -> String {
    format!("{lat},{lon}")
}

/// A map cell back from its key.
pub(crate) fn parse_cell(key: &str) -> Option<(i32, i32)> {
    let (a, b) = key.split_once(',')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
