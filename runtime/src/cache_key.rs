//! Cache keys: which parts of a request decide that two requests may share a
//! cached response, as a behavior's [`CacheKeyConfig`] says.
//!
//! A key holds the distribution id, the host (unless excluded), the path, the
//! selected query parameters sorted by name (so `?a=1&b=2` and `?b=2&a=1`
//! share an entry), and the selected headers and cookies. Parts are separated
//! by bytes that cannot occur in them, so different requests cannot produce
//! the same key by shifting text between parts.

use http::HeaderMap;

use crate::config::{CacheKeyConfig, QueryKey};

/// Separates the parts of a key; cannot occur in a valid URL or header.
const PART: char = '\u{0}';
/// Separates items within a part.
const ITEM: char = '\u{1}';

/// The request facts a cache key is made from.
pub struct KeyInput<'a> {
    /// The distribution serving the request.
    pub distribution: &'a str,
    /// The host name (lower-case, without port).
    pub host: &'a str,
    /// The path.
    pub path: &'a str,
    /// The query string without `?`.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// The cache key of `input` under `policy`.
pub fn cache_key(policy: &CacheKeyConfig, input: &KeyInput<'_>) -> String {
    let mut key = String::with_capacity(64 + input.path.len());
    key.push_str(input.distribution);
    key.push(PART);
    if policy.host {
        key.push_str(input.host);
    }
    key.push(PART);
    key.push_str(input.path);
    key.push(PART);
    push_query(&mut key, policy, input.query.unwrap_or_default());
    key.push(PART);
    for name in &policy.headers {
        key.push_str(name);
        key.push('=');
        for (i, value) in input.headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        key.push(ITEM);
    }
    key.push(PART);
    for name in &policy.cookies {
        key.push_str(name);
        key.push('=');
        if let Some(value) = cookie(input.headers, name) {
            key.push_str(value);
        }
        key.push(ITEM);
    }
    key
}

/// Appends the query parameters the policy selects, sorted by name (the
/// order of repeated names is kept).
fn push_query(key: &mut String, policy: &CacheKeyConfig, query: &str) {
    if policy.query == QueryKey::None || query.is_empty() {
        return;
    }
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            policy.query == QueryKey::All || policy.query_params.iter().any(|p| p == name)
        })
        .collect();
    params.sort_by_key(|pair| pair.split('=').next().unwrap_or_default());
    for param in params {
        key.push_str(param);
        key.push(ITEM);
    }
}

/// The value of cookie `name` in the `cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn key(
        policy: &CacheKeyConfig,
        host: &str,
        path: &str,
        query: Option<&str>,
        h: &[(&str, &str)],
    ) -> String {
        let headers = headers(h);
        cache_key(
            policy,
            &KeyInput {
                distribution: "d1",
                host,
                path,
                query,
                headers: &headers,
            },
        )
    }

    #[test]
    fn query_order_does_not_split_the_cache_but_values_do() {
        let all = CacheKeyConfig::default();
        let a = key(&all, "h", "/p", Some("b=2&a=1"), &[]);
        assert_eq!(a, key(&all, "h", "/p", Some("a=1&b=2"), &[]));
        assert_ne!(a, key(&all, "h", "/p", Some("a=1&b=3"), &[]));
        assert_ne!(a, key(&all, "h", "/p", None, &[]));
        // Repeated names keep their relative order.
        assert_ne!(
            key(&all, "h", "/p", Some("a=1&a=2"), &[]),
            key(&all, "h", "/p", Some("a=2&a=1"), &[])
        );
    }

    #[test]
    fn query_none_and_allow_lists() {
        let none = CacheKeyConfig {
            query: QueryKey::None,
            ..Default::default()
        };
        assert_eq!(
            key(&none, "h", "/p", Some("x=1"), &[]),
            key(&none, "h", "/p", None, &[])
        );
        let allow = CacheKeyConfig {
            query: QueryKey::Allow,
            query_params: vec!["page".into()],
            ..Default::default()
        };
        let page2 = key(&allow, "h", "/p", Some("page=2&utm=a"), &[]);
        assert_eq!(page2, key(&allow, "h", "/p", Some("utm=b&page=2"), &[]));
        assert_ne!(page2, key(&allow, "h", "/p", Some("page=3"), &[]));
    }

    #[test]
    fn host_headers_and_cookies_as_configured() {
        let policy = CacheKeyConfig {
            headers: vec!["accept-language".into()],
            cookies: vec!["tier".into()],
            ..Default::default()
        };
        let at = |host: &str, h: &[(&str, &str)]| key(&policy, host, "/", None, h);
        let en = at(
            "a.com",
            &[("accept-language", "en"), ("cookie", "x=1; tier=gold")],
        );
        assert_ne!(
            en,
            at(
                "a.com",
                &[("accept-language", "de"), ("cookie", "tier=gold")]
            )
        );
        assert_ne!(
            en,
            at(
                "a.com",
                &[("accept-language", "en"), ("cookie", "tier=free")]
            )
        );
        assert_ne!(
            en,
            at(
                "b.com",
                &[("accept-language", "en"), ("cookie", "tier=gold")]
            )
        );
        assert_eq!(
            en,
            at(
                "a.com",
                &[("Accept-Language", "en"), ("cookie", "tier=gold; y=2")]
            ),
            "header names match case-insensitively; other cookies do not count"
        );

        let hostless = CacheKeyConfig {
            host: false,
            ..Default::default()
        };
        assert_eq!(
            key(&hostless, "a.com", "/", None, &[]),
            key(&hostless, "b.com", "/", None, &[])
        );
    }

    #[test]
    fn parts_cannot_bleed_into_each_other() {
        let policy = CacheKeyConfig {
            host: true,
            ..Default::default()
        };
        assert_ne!(
            key(&policy, "ab", "/c", None, &[]),
            key(&policy, "a", "b/c", None, &[])
        );
        assert_ne!(
            key(&policy, "h", "/p", Some("a=1"), &[]),
            key(&policy, "h", "/p?a=1", None, &[])
        );
    }
}
