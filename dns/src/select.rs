//! Choosing PoPs for a client: nearest by great-circle distance, scaled by
//! weight, skipping PoPs that are down or over their answer rate.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::PopConfig;

/// Mean Earth radius in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0;

/// Address family an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

/// Which PoPs have a healthy edge, as the controller reports them. Before
/// the controller has answered (or without one) every PoP counts as up and
/// the PoPs file's `enabled` decides alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health(Option<HashSet<String>>);

impl Health {
    /// Health from the PoP ids that have at least one healthy edge.
    pub fn from_healthy(pops: HashSet<String>) -> Self {
        Health(Some(pops))
    }

    /// Whether the PoP may be answered.
    pub fn up(&self, pop: &str) -> bool {
        self.0.as_ref().is_none_or(|healthy| healthy.contains(pop))
    }
}

/// A PoP as the selector uses it: its config and its answer-rate window.
#[derive(Debug)]
pub struct Pop {
    /// From the PoPs file.
    pub config: PopConfig,
    rate: RateWindow,
}

impl Pop {
    /// A PoP with an empty rate window.
    pub fn new(config: PopConfig) -> Self {
        Pop {
            config,
            rate: RateWindow::default(),
        }
    }

    /// The PoP's addresses of `family`.
    pub fn addresses(&self, family: Family) -> Vec<IpAddr> {
        match family {
            Family::V4 => self.config.ipv4.iter().copied().map(IpAddr::V4).collect(),
            Family::V6 => self.config.ipv6.iter().copied().map(IpAddr::V6).collect(),
        }
    }

    fn has(&self, family: Family) -> bool {
        match family {
            Family::V4 => !self.config.ipv4.is_empty(),
            Family::V6 => !self.config.ipv6.is_empty(),
        }
    }

    /// Takes one answer from this second's capacity; false when it is used up.
    fn take_capacity(&self, now_second: u64) -> bool {
        match self.config.capacity {
            None => true,
            Some(capacity) => self.rate.take(now_second, capacity),
        }
    }
}

/// Answers given in the current second, packed as `second << 32 | count`
/// so that one atomic holds both.
#[derive(Debug, Default)]
struct RateWindow(AtomicU64);

impl RateWindow {
    fn take(&self, now_second: u64, capacity: u32) -> bool {
        let stamp = now_second & 0xffff_ffff;
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (second, count) = (current >> 32, current & 0xffff_ffff);
            let count = if second == stamp { count } else { 0 };
            if count >= u64::from(capacity) {
                return false;
            }
            let next = (stamp << 32) | (count + 1);
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

/// Great-circle distance between two points in degrees, in kilometres
/// (haversine formula).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The PoPs of a zone and the defaults for clients nobody can place.
#[derive(Debug)]
pub struct Selector {
    pops: Vec<Pop>,
    /// Indexes into `pops`, in preference order.
    defaults: Vec<usize>,
}

impl Selector {
    /// `defaults` are PoP ids (already checked to exist); empty means all.
    pub fn new(pops: Vec<PopConfig>, defaults: &[String]) -> Self {
        let defaults = if defaults.is_empty() {
            (0..pops.len()).collect()
        } else {
            defaults
                .iter()
                .filter_map(|id| pops.iter().position(|p| &p.id == id))
                .collect()
        };
        Selector {
            pops: pops.into_iter().map(Pop::new).collect(),
            defaults,
        }
    }

    /// Every PoP, in file order.
    pub fn pops(&self) -> &[Pop] {
        &self.pops
    }

    /// Up to `count` PoPs with `family` addresses for a client at
    /// `position`, best first. Unknown positions get the default PoPs.
    /// PoPs that are disabled or without a healthy edge are skipped, and so
    /// are PoPs past their capacity while others remain; when every PoP is
    /// down, the defaults are answered anyway, since answering nothing helps
    /// nobody.
    pub fn choose(
        &self,
        position: Option<(f64, f64)>,
        family: Family,
        count: usize,
        health: &Health,
    ) -> Vec<&Pop> {
        let candidates: Vec<usize> = match position {
            Some(client) => {
                let mut by_distance: Vec<(f64, usize)> = self
                    .pops
                    .iter()
                    .enumerate()
                    .map(|(i, pop)| {
                        let km = distance_km(client, (pop.config.lat, pop.config.lon));
                        (km / pop.config.weight, i)
                    })
                    .collect();
                by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
                by_distance.into_iter().map(|(_, i)| i).collect()
            }
            None => self.defaults.clone(),
        };
        let usable = |i: &usize| {
            let pop = &self.pops[*i];
            pop.config.enabled && health.up(&pop.config.id) && pop.has(family)
        };
        let now_second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut chosen: Vec<usize> = candidates
            .iter()
            .filter(|i| usable(i))
            .filter(|i| self.pops[**i].take_capacity(now_second))
            .take(count)
            .copied()
            .collect();
        if chosen.is_empty() {
            // Everything usable is at capacity: the nearest still beats nothing.
            chosen = candidates
                .iter()
                .filter(|i| usable(i))
                .take(count)
                .copied()
                .collect();
        }
        if chosen.is_empty() {
            // Every PoP is down.
            chosen = self
                .defaults
                .iter()
                .filter(|i| self.pops[**i].has(family))
                .take(count)
                .copied()
                .collect();
        }
        chosen.into_iter().map(|i| &self.pops[i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKYO: (f64, f64) = (35.68, 139.69);
    const FRANKFURT: (f64, f64) = (50.11, 8.68);
    const NEW_YORK: (f64, f64) = (40.71, -74.0);

    fn pop(id: &str, (lat, lon): (f64, f64)) -> PopConfig {
        PopConfig {
            id: id.into(),
            name: None,
            lat,
            lon,
            ipv4: vec!["192.0.2.1".parse().expect("ip")],
            ipv6: Vec::new(),
            enabled: true,
            weight: 1.0,
            capacity: None,
        }
    }

    fn ids(pops: Vec<&Pop>) -> Vec<&str> {
        pops.into_iter().map(|p| p.config.id.as_str()).collect()
    }

    fn world() -> Vec<PopConfig> {
        vec![
            pop("fra", FRANKFURT),
            pop("tyo", TOKYO),
            pop("nyc", NEW_YORK),
        ]
    }

    #[test]
    fn great_circle_distances_match_known_values() {
        // Tokyo–Frankfurt is about 9 330 km; London–Paris about 344 km.
        let km = distance_km(TOKYO, FRANKFURT);
        assert!((9_250.0..9_400.0).contains(&km), "{km}");
        let km = distance_km((51.5074, -0.1278), (48.8566, 2.3522));
        assert!((340.0..348.0).contains(&km), "{km}");
        assert_eq!(distance_km(TOKYO, TOKYO), 0.0);
        // Antipodes: half the circumference, no NaN.
        let km = distance_km((0.0, 0.0), (0.0, 180.0));
        assert!(
            (km - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0,
            "{km}"
        );
    }

    #[test]
    fn nearest_pops_come_first() {
        let selector = Selector::new(world(), &[]);
        let osaka = (34.69, 135.50);
        assert_eq!(
            ids(selector.choose(Some(osaka), Family::V4, 1, &Health::default())),
            ["tyo"]
        );
        let paris = (48.86, 2.35);
        assert_eq!(
            ids(selector.choose(Some(paris), Family::V4, 2, &Health::default())),
            ["fra", "nyc"]
        );
    }

    #[test]
    fn weight_pulls_clients_from_further_away() {
        // Reykjavik is nearer to Frankfurt (2 400 km) than to New York (4 200 km).
        let reykjavik = (64.15, -21.94);
        let mut pops = world();
        assert_eq!(
            ids(Selector::new(pops.clone(), &[]).choose(
                Some(reykjavik),
                Family::V4,
                1,
                &Health::default()
            )),
            ["fra"]
        );
        pops[2].weight = 2.0;
        assert_eq!(
            ids(Selector::new(pops, &[]).choose(
                Some(reykjavik),
                Family::V4,
                1,
                &Health::default()
            )),
            ["nyc"]
        );
    }

    #[test]
    fn disabled_pops_are_skipped_unless_all_are_down() {
        let mut pops = world();
        pops[1].enabled = false;
        let selector = Selector::new(pops.clone(), &[]);
        // Tokyo–Frankfurt is 9 330 km, Tokyo–New York 10 850 km.
        assert_eq!(
            ids(selector.choose(Some(TOKYO), Family::V4, 1, &Health::default())),
            ["fra"]
        );
        for pop in &mut pops {
            pop.enabled = false;
        }
        let selector = Selector::new(pops, &["nyc".into(), "fra".into()]);
        assert_eq!(
            ids(selector.choose(Some(TOKYO), Family::V4, 2, &Health::default())),
            ["nyc", "fra"]
        );
    }

    #[test]
    fn unknown_clients_get_the_defaults_and_families_are_respected() {
        let mut pops = world();
        pops[1].ipv6 = vec!["2001:db8::1".parse().expect("ip")];
        let selector = Selector::new(pops, &["tyo".into()]);
        assert_eq!(
            ids(selector.choose(None, Family::V4, 3, &Health::default())),
            ["tyo"]
        );
        // Only Tokyo has IPv6, so Frankfurt's clients get Tokyo for AAAA.
        assert_eq!(
            ids(selector.choose(Some(FRANKFURT), Family::V6, 1, &Health::default())),
            ["tyo"]
        );
        let selector = Selector::new(world(), &[]);
        assert!(selector
            .choose(Some(FRANKFURT), Family::V6, 1, &Health::default())
            .is_empty());
    }

    #[test]
    fn capacity_spills_to_the_next_nearest() {
        let mut pops = world();
        pops[1].capacity = Some(2);
        let selector = Selector::new(pops, &[]);
        let answers: Vec<&str> = (0..6)
            .flat_map(|_| ids(selector.choose(Some(TOKYO), Family::V4, 1, &Health::default())))
            .collect();
        // At most 2 a second for Tokyo; the six queries may straddle one
        // second boundary.
        let tokyo = answers.iter().filter(|id| **id == "tyo").count();
        assert!((2..=4).contains(&tokyo), "{answers:?}");
        assert!(
            answers.iter().all(|id| *id == "tyo" || *id == "fra"),
            "{answers:?}"
        );
    }

    #[test]
    fn pops_without_a_healthy_edge_are_skipped() {
        let selector = Selector::new(world(), &["nyc".into()]);
        let health = Health::from_healthy(["fra".to_string(), "nyc".to_string()].into());
        assert_eq!(
            ids(selector.choose(Some(TOKYO), Family::V4, 1, &health)),
            ["fra"]
        );
        // No PoP has a healthy edge: the defaults.
        let health = Health::from_healthy(HashSet::new());
        assert_eq!(
            ids(selector.choose(Some(TOKYO), Family::V4, 1, &health)),
            ["nyc"]
        );
    }

    #[test]
    fn rate_window_restarts_each_second() {
        let window = RateWindow::default();
        assert!(window.take(10, 2));
        assert!(window.take(10, 2));
        assert!(!window.take(10, 2));
        assert!(window.take(11, 2));
    }
}
