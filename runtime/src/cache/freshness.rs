//! How long a response stays fresh and how it may be served once stale,
//! from the response's headers (RFC 9111 through `http-cache-semantics`),
//! the cache-targeted fields (`CDN-Cache-Control`, `Surrogate-Control`), the
//! behavior's TTL bounds and the plugins' override.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use http_cache_semantics::{CacheOptions, CachePolicy};

use parapet_config::CachePolicyConfig;

/// Caching decided for one response.
pub struct Freshness {
    /// The RFC 9111 policy (storability, age, revalidation headers).
    pub policy: CachePolicy,
    /// Whether the response may be stored.
    pub storable: bool,
    /// Time it stays fresh from now.
    pub ttl: Duration,
    /// `stale-while-revalidate`: how long past `ttl` it may be served while
    /// a background refresh runs.
    pub stale_while_revalidate: Duration,
    /// `stale-if-error`: how long past `ttl` it may be served when the
    /// upstream fails.
    pub stale_if_error: Duration,
}

/// What plugins decided in `on-origin-response`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Override {
    /// Store or not, whatever the headers say (`private` is never stored).
    pub cacheable: Option<bool>,
    /// Replaces the computed time to live.
    pub ttl: Option<Duration>,
}

/// The options of a shared cache.
pub fn options() -> CacheOptions {
    CacheOptions {
        shared: true,
        ..CacheOptions::default()
    }
}

/// The headers the cache reads its instructions from: the response's, with
/// `Cache-Control` replaced by `CDN-Cache-Control` (RFC 9213) or else
/// `Surrogate-Control` when present, as those target this cache.
pub fn targeted(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    let targeted = ["cdn-cache-control", "surrogate-control"]
        .iter()
        .find_map(|name| headers.get(*name).cloned());
    if let Some(value) = targeted {
        out.insert(http::header::CACHE_CONTROL, value);
        out.remove(http::header::EXPIRES);
        out.remove(http::header::PRAGMA);
    }
    out
}

/// Decides how `response` (its status and targeted headers) to `request`
/// is cached under `policy`.
pub fn decide(
    request: &http::request::Parts,
    status: http::StatusCode,
    response_headers: &HeaderMap,
    config: &CachePolicyConfig,
    plugin: Override,
    now: SystemTime,
) -> Freshness {
    let headers = super::directives::canonical_response(&targeted(response_headers), status);
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.headers = headers;
    let policy = CachePolicy::new_options(request, &parts, now, options());
    let headers = &parts.headers;
    let private = has_directive(headers, "private");
    // A response that sets a cookie is one viewer's: not stored, whatever
    // else it says (as Varnish's built-in policy does). A plugin may still
    // force storing; the cookie is then left out of the stored copy.
    let sets_cookie = headers.contains_key(http::header::SET_COOKIE);
    let storable = match plugin.cacheable {
        Some(cacheable) => cacheable && !private,
        None => policy.is_storable() && !sets_cookie,
    };
    let explicit = headers.contains_key(http::header::EXPIRES)
        || has_directive(headers, "max-age")
        || has_directive(headers, "s-maxage");
    let origin_ttl = match config.default_ttl {
        Some(default) if !explicit && !has_directive(headers, "no-cache") => {
            Duration::from_secs(default)
        }
        _ => policy.time_to_live(now),
    };
    let ttl = plugin.ttl.unwrap_or_else(|| {
        origin_ttl.clamp(
            Duration::from_secs(config.min_ttl),
            Duration::from_secs(config.max_ttl),
        )
    });
    let revalidate_strictly = has_directive(headers, "must-revalidate")
        || has_directive(headers, "proxy-revalidate")
        || has_directive(headers, "no-cache");
    let window = |name| {
        if revalidate_strictly {
            Duration::ZERO
        } else {
            directive_seconds(headers, name).unwrap_or_default()
        }
    };
    Freshness {
        storable,
        ttl,
        stale_while_revalidate: window("stale-while-revalidate"),
        stale_if_error: window("stale-if-error"),
        policy,
    }
}

/// Whether `Cache-Control` in `headers` has the directive `name`.
fn has_directive(headers: &HeaderMap, name: &str) -> bool {
    directive(headers, name).is_some()
}

/// The seconds of a `name=N` directive of `Cache-Control`.
fn directive_seconds(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let value = directive(headers, name)??;
    value
        .trim_matches('"')
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// A `Cache-Control` directive: `Some(None)` when present without a value.
fn directive(headers: &HeaderMap, name: &str) -> Option<Option<String>> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|item| {
            let (key, value) = match item.split_once('=') {
                Some((key, value)) => (key, Some(value.trim().to_string())),
                None => (item, None),
            };
            key.trim().eq_ignore_ascii_case(name).then_some(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> http::request::Parts {
        http::Request::get("http://example.com/a")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn decide_with(pairs: &[(&str, &str)], config: &CachePolicyConfig) -> Freshness {
        let now = SystemTime::now();
        decide(
            &request(),
            http::StatusCode::OK,
            &headers(pairs),
            config,
            Override::default(),
            now,
        )
    }

    #[test]
    fn s_maxage_wins_and_ttls_are_clamped() {
        let config = CachePolicyConfig::default();
        let f = decide_with(&[("cache-control", "max-age=10, s-maxage=100")], &config);
        assert!(f.storable);
        assert_eq!(f.ttl, Duration::from_secs(100));
        let bounded = CachePolicyConfig {
            min_ttl: 30,
            max_ttl: 50,
            ..CachePolicyConfig::default()
        };
        assert_eq!(
            decide_with(&[("cache-control", "max-age=100")], &bounded).ttl,
            Duration::from_secs(50)
        );
        assert_eq!(
            decide_with(&[("cache-control", "max-age=1")], &bounded).ttl,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn cdn_cache_control_targets_this_cache() {
        let f = decide_with(
            &[
                ("cache-control", "no-store"),
                (
                    "cdn-cache-control",
                    "max-age=600, stale-while-revalidate=30",
                ),
            ],
            &CachePolicyConfig::default(),
        );
        assert!(f.storable);
        assert_eq!(f.ttl, Duration::from_secs(600));
        assert_eq!(f.stale_while_revalidate, Duration::from_secs(30));
        let f = decide_with(
            &[("surrogate-control", "max-age=5")],
            &CachePolicyConfig::default(),
        );
        assert_eq!(f.ttl, Duration::from_secs(5));
    }

    #[test]
    fn private_no_store_and_cookies_are_not_stored() {
        let config = CachePolicyConfig::default();
        for pairs in [
            &[("cache-control", "private, max-age=60")][..],
            &[("cache-control", "no-store")],
            &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
            &[
                ("cache-control", "public, max-age=60"),
                ("set-cookie", "s=1"),
            ],
            &[
                ("cache-control", "max-age=60, immutable"),
                ("set-cookie", "s=1"),
            ],
        ] {
            assert!(!decide_with(pairs, &config).storable, "{pairs:?}");
        }
    }

    #[test]
    fn default_ttl_applies_only_without_explicit_freshness() {
        let config = CachePolicyConfig {
            default_ttl: Some(120),
            ..CachePolicyConfig::default()
        };
        assert_eq!(decide_with(&[], &config).ttl, Duration::from_secs(120));
        assert_eq!(
            decide_with(&[("cache-control", "max-age=7")], &config).ttl,
            Duration::from_secs(7)
        );
        assert_eq!(
            decide_with(&[], &CachePolicyConfig::default()).ttl,
            Duration::ZERO,
            "RFC 9111 without Last-Modified: stale at once"
        );
    }

    #[test]
    fn must_revalidate_forbids_stale_serving() {
        let f = decide_with(
            &[(
                "cache-control",
                "max-age=1, must-revalidate, stale-while-revalidate=60, stale-if-error=60",
            )],
            &CachePolicyConfig::default(),
        );
        assert_eq!(f.stale_while_revalidate, Duration::ZERO);
        assert_eq!(f.stale_if_error, Duration::ZERO);
        let f = decide_with(
            &[("cache-control", "max-age=1, stale-if-error=60")],
            &CachePolicyConfig::default(),
        );
        assert_eq!(f.stale_if_error, Duration::from_secs(60));
    }
}
