//! `Cache-Control` as RFC 9111 section 5.2 reads it: directive names are
//! case-insensitive, the request's directives change how a stored
//! response may be used (5.2.1), and a response's fields are put in the
//! form `http-cache-semantics` reads (names lower-cased, `Age` as its first
//! member, `must-understand` applied).

use std::time::{Duration, SystemTime};

use http::header::{AGE, CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::object::{CachedObject, Usability};

/// The directives of one `Cache-Control` field (all its lines), names
/// lower-cased, values unquoted.
fn parse(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let (name, value) = match item.split_once('=') {
                Some((name, value)) => (name, Some(value.trim().trim_matches('"').to_string())),
                None => (item, None),
            };
            let name = name.trim().to_ascii_lowercase();
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

/// A delta-seconds value (RFC 9111 1.2.2): digits only.
fn seconds(value: &Option<String>) -> Option<u64> {
    let value = value.as_deref()?;
    (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse().unwrap_or(u64::MAX))
}

/// What a viewer's request asks of the cache (RFC 9111 5.2.1, and
/// `Pragma: no-cache` when it has no `Cache-Control`, 5.4).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `max-age=N`: nothing older than N seconds without validation.
    pub max_age: Option<u64>,
    /// `max-stale[=N]`: a stale response is acceptable (up to N seconds
    /// past its freshness; any, without a value).
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh=N`: only responses fresh for N more seconds.
    pub min_fresh: Option<u64>,
    /// `no-cache`: validate before using a stored response.
    pub no_cache: bool,
    /// `no-store`: store nothing of this exchange.
    pub no_store: bool,
    /// `only-if-cached`: never go upstream; 504 when nothing usable is
    /// stored.
    pub only_if_cached: bool,
}

impl RequestDirectives {
    /// The directives of a request's headers.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut out = RequestDirectives::default();
        if !headers.contains_key(CACHE_CONTROL) {
            out.no_cache = headers
                .get_all(PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim().eq_ignore_ascii_case("no-cache"));
            return out;
        }
        for (name, value) in parse(headers) {
            match name.as_str() {
                // An invalid max-age asks for validation (as max-age=0).
                "max-age" => out.max_age = Some(seconds(&value).unwrap_or(0)),
                "max-stale" => out.max_stale = Some(seconds(&value)),
                "min-fresh" => out.min_fresh = Some(seconds(&value).unwrap_or(u64::MAX)),
                "no-cache" => out.no_cache = true,
                "no-store" => out.no_store = true,
                "only-if-cached" => out.only_if_cached = true,
                _ => {}
            }
        }
        out
    }

    /// How `object` may be used for this request at `now`: its own
    /// usability, made stricter by `no-cache`, `max-age` and `min-fresh`,
    /// or looser by `max-stale` unless the response forbids serving it
    /// stale (`must-revalidate`, `proxy-revalidate`, `no-cache`).
    pub fn usability(&self, object: &CachedObject, now: SystemTime) -> Usability {
        let own = object.usability(now);
        let age = object.age(now);
        let remaining = object.remaining(now);
        let too_old = self
            .max_age
            .is_some_and(|max| age > Duration::from_secs(max));
        let too_close = self
            .min_fresh
            .is_some_and(|min| remaining < Duration::from_secs(min));
        if self.no_cache || too_old || too_close {
            return Usability::Stale;
        }
        match (own, self.max_stale) {
            (Usability::Fresh, _) | (_, None) => own,
            (_, Some(limit)) => {
                let strict = parse(&super::freshness::targeted(&object.headers))
                    .iter()
                    .any(|(name, _)| {
                        matches!(
                            name.as_str(),
                            "must-revalidate" | "proxy-revalidate" | "no-cache"
                        )
                    });
                let staleness = object.staleness(now);
                let acceptable = limit.is_none_or(|limit| staleness <= Duration::from_secs(limit));
                if strict || !acceptable || object.invalidated {
                    own
                } else {
                    Usability::StaleWhileRevalidate
                }
            }
        }
    }
}

/// Statuses whose meaning this cache knows (RFC 9110 15), for
/// `must-understand` (RFC 9111 5.2.2.3).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// A response's fields in the form the RFC 9111 policy reads: one
/// `Cache-Control` with lower-cased directive names; with
/// `must-understand`, `no-store` dropped for a status this cache
/// understands and added for any other; `Age` as the first member of a
/// list, and dropped when it is not a non-negative integer (5.1).
pub fn canonical_response(headers: &HeaderMap, status: StatusCode) -> HeaderMap {
    let mut out = headers.clone();
    if headers.contains_key(CACHE_CONTROL) {
        let mut directives = parse(headers);
        if directives.iter().any(|(name, _)| name == "must-understand") {
            directives.retain(|(name, _)| name != "no-store");
            if !understood(status) {
                directives.push(("no-store".into(), None));
            }
        }
        let text = directives
            .iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}={value}"),
                None => name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        match HeaderValue::from_str(&text) {
            Ok(value) => {
                out.insert(CACHE_CONTROL, value);
            }
            Err(_) => {
                out.remove(CACHE_CONTROL);
            }
        }
    }
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| HeaderValue::from_str(v).ok());
    match age {
        Some(age) => {
            out.insert(AGE, age);
        }
        None => {
            out.remove(AGE);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::map;

    #[test]
    fn request_directives_and_pragma() {
        let d = RequestDirectives::of(&map(&[(
            "cache-control",
            "Max-Age=5, MAX-STALE, min-fresh=\"10\", only-if-cached",
        )]));
        assert_eq!(d.max_age, Some(5));
        assert_eq!(d.max_stale, Some(None));
        assert_eq!(d.min_fresh, Some(10));
        assert!(d.only_if_cached && !d.no_cache);
        assert!(RequestDirectives::of(&map(&[("pragma", "no-cache")])).no_cache);
        // Pragma counts only without Cache-Control.
        let both = map(&[("pragma", "no-cache"), ("cache-control", "max-stale=3")]);
        assert_eq!(RequestDirectives::of(&both).max_stale, Some(Some(3)));
        assert!(!RequestDirectives::of(&both).no_cache);
        assert_eq!(
            RequestDirectives::of(&map(&[("cache-control", "max-age=5x")])).max_age,
            Some(0)
        );
    }

    #[test]
    fn response_fields_as_the_policy_reads_them() {
        let h = canonical_response(
            &map(&[("cache-control", "No-Cache, Max-Age=60"), ("age", "10, 20")]),
            StatusCode::OK,
        );
        assert_eq!(h["cache-control"], "no-cache, max-age=60");
        assert_eq!(h["age"], "10");
        let h = canonical_response(&map(&[("age", "ten")]), StatusCode::OK);
        assert!(!h.contains_key("age"));
        let understood = canonical_response(
            &map(&[("cache-control", "must-understand, no-store, max-age=60")]),
            StatusCode::OK,
        );
        assert_eq!(understood["cache-control"], "must-understand, max-age=60");
        let unknown = canonical_response(
            &map(&[("cache-control", "must-understand, max-age=60")]),
            StatusCode::from_u16(299).unwrap(),
        );
        assert_eq!(
            unknown["cache-control"],
            "must-understand, max-age=60, no-store"
        );
    }
}
