//! Cache keys: which parts of a request decide that two requests may share a
//! cached response, as a behavior's [`CacheKeyConfig`] says.
//!
//! A key holds the distribution id, the scheme and the host (unless excluded), the path, the
//! selected query parameters sorted by name (so `?a=1&b=2` and `?b=2&a=1`
//! share an entry), and the selected headers and cookies. Parts are separated
//! by bytes that cannot occur in them, so different requests cannot produce
//! the same key by shifting text between parts.

use http::HeaderMap;

use parapet_config::{CacheKeyConfig, QueryKey};

/// Separates the parts of a key; cannot occur in a valid URL or header.
const PART: char = '\u{0}';
/// Separates items within a part.
const ITEM: char = '\u{1}';

/// The request facts a cache key is made from.
pub struct KeyInput<'a> {
    /// The distribution serving the request.
    pub distribution: &'a str,
    /// The viewer's scheme (`http` or `https`).
    pub scheme: &'a str,
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
    if policy.scheme {
        key.push_str(input.scheme);
    }
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
    for param in selected_params(policy, query) {
        key.push_str(param);
        key.push(ITEM);
    }
}

/// The query parameters the policy keeps in the key, sorted by name (the
/// order of repeated names is kept).
fn selected_params<'a>(policy: &CacheKeyConfig, query: &'a str) -> Vec<&'a str> {
    if policy.query == QueryKey::None || query.is_empty() {
        return Vec::new();
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
    params
}

/// The URL purges know an object by: host, path and the query as the
/// policy keys it (`?b=2&a=1&utm=x` under an allow list of `a` and `b`
/// is `?a=1&b=2`), so purging any URL a viewer used for the object finds
/// it.
pub fn purge_url(policy: &CacheKeyConfig, host: &str, path: &str, query: Option<&str>) -> String {
    let params = selected_params(policy, query.unwrap_or_default());
    let mut url = String::with_capacity(host.len() + path.len() + 16);
    url.push_str(host);
    url.push_str(path);
    for (i, param) in params.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(param);
    }
    url
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
                scheme: "https",
                host,
                path,
                query,
                headers: &headers,
            },
        )
    }

    #[test]
    fn the_scheme_splits_the_cache_unless_excluded() {
        let headers = headers(&[]);
        let input = |scheme| KeyInput {
            distribution: "d1",
            scheme,
            host: "h",
            path: "/p",
            query: None,
            headers: &headers,
        };
        let with = CacheKeyConfig::default();
        assert_ne!(
            cache_key(&with, &input("http")),
            cache_key(&with, &input("https"))
        );
        let without = CacheKeyConfig {
            scheme: false,
            ..CacheKeyConfig::default()
        };
        assert_eq!(
            cache_key(&without, &input("http")),
            cache_key(&without, &input("https"))
        );
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
    fn purge_urls_normalise_the_query_as_the_key_does() {
        let all = CacheKeyConfig::default();
        assert_eq!(
            purge_url(&all, "a.com", "/p", Some("b=2&a=1")),
            purge_url(&all, "a.com", "/p", Some("a=1&b=2"))
        );
        assert_eq!(
            purge_url(&all, "a.com", "/p", Some("b=2&a=1")),
            "a.com/p?a=1&b=2"
        );
        assert_eq!(purge_url(&all, "a.com", "/p", None), "a.com/p");
        let allow = CacheKeyConfig {
            query: QueryKey::Allow,
            query_params: vec!["page".into()],
            ..Default::default()
        };
        assert_eq!(
            purge_url(&allow, "a.com", "/p", Some("utm=x&page=2")),
            "a.com/p?page=2"
        );
        let none = CacheKeyConfig {
            query: QueryKey::None,
            ..Default::default()
        };
        assert_eq!(purge_url(&none, "a.com", "/p", Some("x=1")), "a.com/p");
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
