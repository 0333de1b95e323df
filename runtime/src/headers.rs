//! Header rules of a proxy: hop-by-hop fields removed in both directions,
//! `Via` (loops detected), cache-targeted fields (`CDN-Cache-Control`,
//! `Surrogate-Control`, `Surrogate-Key`) kept from viewers, and conversion
//! to and from the plugins' header lists. Forwarding fields are
//! `forwarding`'s.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Fields that describe one connection, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Fields meant for this cache only: honoured, then removed before the
/// response reaches the viewer.
pub const CACHE_TARGETED: [&str; 3] = ["cdn-cache-control", "surrogate-control", "surrogate-key"];

/// The `Content-Length` of a message, when it has a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Whether a response with `status` never has a body (1xx, 204, 304).
pub fn status_has_no_body(status: http::StatusCode) -> bool {
    status.is_informational()
        || matches!(
            status,
            http::StatusCode::NO_CONTENT | http::StatusCode::NOT_MODIFIED
        )
}

/// Removes hop-by-hop fields, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends this edge to `Via` (`1.1 parapet-<pop>`).
pub fn append_via(headers: &mut HeaderMap, pop: &str) {
    let hop = format!("1.1 parapet-{pop}");
    let value = match headers.get(http::header::VIA).map(HeaderValue::to_str) {
        Some(Ok(previous)) => format!("{previous}, {hop}"),
        _ => hop,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(http::header::VIA, value);
    }
}

/// Whether `Via` already passed through this edge: a forwarding loop.
pub fn via_contains(headers: &HeaderMap, pop: &str) -> bool {
    let hop = format!("parapet-{pop}");
    headers
        .get_all(http::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| entry.split_whitespace().nth(1) == Some(hop.as_str()))
}

/// Removes what a viewer must not see of an upstream response: hop-by-hop
/// and cache-targeted fields.
pub fn strip_for_viewer(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    for name in CACHE_TARGETED {
        headers.remove(name);
    }
}

/// Headers as the plugins see them: lower-case names, values as text
/// (bytes that are not UTF-8 are replaced).
pub fn to_plugin(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A plugin's header list back as a map, without framing and hop-by-hop
/// fields (the edge frames messages itself). The host has validated names
/// and values; anything that still does not parse is dropped.
pub fn from_plugin(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    strip_hop_by_hop(&mut map);
    map.remove(http::header::CONTENT_LENGTH);
    map
}

/// A header map of `pairs`, for tests.
#[cfg(test)]
pub(crate) fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_go() {
        let mut h = map(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn via_is_extended_and_loops_detected() {
        let mut h = map(&[("via", "1.1 shield")]);
        append_via(&mut h, "fra1");
        assert_eq!(h["via"], "1.1 shield, 1.1 parapet-fra1");
        assert!(via_contains(&h, "fra1"));
        assert!(!via_contains(&h, "fra"));
    }

    #[test]
    fn plugin_headers_lose_framing() {
        let h = from_plugin(&[
            ("content-length".into(), "5".into()),
            ("transfer-encoding".into(), "chunked".into()),
            ("x-ok".into(), "yes".into()),
        ]);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-ok"], "yes");
    }
}
