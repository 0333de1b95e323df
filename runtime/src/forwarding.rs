//! Who sent a request, and what the upstream is told of it.
//!
//! Viewers' `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and
//! `Forwarded` are dropped, and the edge writes its own; only a
//! connection from a trusted address keeps them: a balancer in
//! `server.trusted_proxies`, or another edge (a peer of the PoP, an
//! address in `server.downstream_edges`, or a request carrying the tier's
//! shared secret). Behind a trusted proxy the viewer is the rightmost
//! `X-Forwarded-For` entry that is not itself trusted, as nginx's
//! `real_ip_recursive` takes it.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use parapet_config::ServerConfig;

use crate::headers::{append_via, strip_hop_by_hop};

/// The header carrying a tier's shared secret between edges.
pub const TIER_HEADER: HeaderName = HeaderName::from_static("x-parapet-tier");

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// What the edge trusts of a request's sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    /// Its forwarding fields are kept (a trusted proxy or an edge).
    pub trusted: bool,
    /// It is another edge of the CDN: its answers keep the cache-targeted
    /// fields.
    pub edge: bool,
    /// The viewer's address: the connection's, or behind a trusted
    /// proxy, taken from `X-Forwarded-For`.
    pub client: IpAddr,
}

/// An address as configured lists name it (an IPv4-mapped IPv6 address
/// as IPv4).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn listed(networks: &[IpNet], ip: IpAddr) -> bool {
    networks.iter().any(|net| net.contains(&ip))
}

/// Decides what the sender of a request connecting from `peer` is trusted
/// with, and removes what it may not send: forwarding fields from
/// untrusted senders, the tier secret from everyone (it never travels on
/// to plugins or origins).
pub fn admit(
    headers: &mut HeaderMap,
    peer: IpAddr,
    is_peer_edge: bool,
    config: &ServerConfig,
) -> Sender {
    let peer = canonical(peer);
    let secret_matches = match (&config.tier_secret, headers.get(&TIER_HEADER)) {
        (Some(secret), Some(sent)) => constant_time_eq(secret.as_bytes(), sent.as_bytes()),
        _ => false,
    };
    headers.remove(&TIER_HEADER);
    let edge = is_peer_edge || secret_matches || listed(&config.downstream_edges, peer);
    let trusted = edge || listed(&config.trusted_proxies, peer);
    if !trusted {
        for name in [
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
            FORWARDED,
        ] {
            headers.remove(name);
        }
    }
    let client = if trusted {
        forwarded_client(headers, config).unwrap_or(peer)
    } else {
        peer
    };
    Sender {
        trusted,
        edge,
        client,
    }
}

/// The rightmost `X-Forwarded-For` address that is not a trusted hop.
fn forwarded_client(headers: &HeaderMap, config: &ServerConfig) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut last = None;
    for entry in entries.iter().rev() {
        let ip = canonical(entry.parse::<IpAddr>().ok()?);
        last = Some(ip);
        if !listed(&config.trusted_proxies, ip) && !listed(&config.downstream_edges, ip) {
            return Some(ip);
        }
    }
    last
}

/// The scheme a trusted sender says the viewer used (`X-Forwarded-Proto`).
pub fn forwarded_scheme(headers: &HeaderMap) -> Option<&'static str> {
    match headers.get(&X_FORWARDED_PROTO)?.to_str().ok()?.trim() {
        s if s.eq_ignore_ascii_case("https") => Some("https"),
        s if s.eq_ignore_ascii_case("http") => Some("http"),
        _ => None,
    }
}

/// What the upstream is told of the viewer.
pub struct Upstream<'a> {
    /// The address of the sender (this edge's view of it).
    pub sender: IpAddr,
    /// The viewer's scheme, when the cache key holds it (else the
    /// upstream is not told, so its answer cannot depend on it).
    pub scheme: Option<&'a str>,
    /// The host the viewer asked for.
    pub host: &'a str,
    /// This PoP's id, for `Via`.
    pub pop: &'a str,
}

/// Prepares request headers for upstream: hop-by-hop fields removed,
/// `X-Forwarded-For` and `Forwarded` extended with the sender,
/// `X-Forwarded-Proto` and `X-Forwarded-Host` set unless a trusted sender
/// set them, and this hop added to `Via`.
pub fn forward_request_headers(headers: &mut HeaderMap, upstream: &Upstream<'_>) {
    strip_hop_by_hop(headers);
    let sender = canonical(upstream.sender);
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::to_str) {
        Some(Ok(previous)) => format!("{previous}, {sender}"),
        _ => sender.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let node = match sender {
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
        v4 => v4.to_string(),
    };
    let mut element = format!("for={node};host=\"{}\"", upstream.host.replace('"', ""));
    if let Some(scheme) = upstream.scheme {
        element.push_str(";proto=");
        element.push_str(scheme);
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(
                X_FORWARDED_PROTO,
                HeaderValue::from_static(scheme_value(scheme)),
            );
        }
    }
    let forwarded = match headers.get(&FORWARDED).map(HeaderValue::to_str) {
        Some(Ok(previous)) => format!("{previous}, {element}"),
        _ => element,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert(FORWARDED, value);
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Ok(value) = HeaderValue::from_str(upstream.host) {
            headers.insert(X_FORWARDED_HOST, value);
        }
    }
    append_via(headers, upstream.pop);
}

fn scheme_value(scheme: &str) -> &'static str {
    if scheme == "https" {
        "https"
    } else {
        "http"
    }
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::map as headers;

    fn config(trusted: &[&str], edges: &[&str], secret: Option<&str>) -> ServerConfig {
        ServerConfig {
            trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
            downstream_edges: edges.iter().map(|n| n.parse().unwrap()).collect(),
            tier_secret: secret.map(str::to_string),
            ..ServerConfig::default()
        }
    }

    const SPOOFED: [(&str, &str); 4] = [
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "admin.internal"),
        ("forwarded", "for=10.0.0.1;proto=https"),
    ];

    #[test]
    fn a_viewers_forwarding_fields_are_dropped() {
        let mut h = headers(&SPOOFED);
        let sender = admit(
            &mut h,
            "203.0.113.5".parse().unwrap(),
            false,
            &config(&["198.18.0.0/24"], &[], None),
        );
        assert!(!sender.trusted && !sender.edge);
        assert_eq!(sender.client, "203.0.113.5".parse::<IpAddr>().unwrap());
        assert!(h.is_empty(), "{h:?}");
        forward_request_headers(
            &mut h,
            &Upstream {
                sender: sender.client,
                scheme: Some("http"),
                host: "shop.example",
                pop: "fra1",
            },
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.5");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.5;host=\"shop.example\";proto=http"
        );
        assert_eq!(h["via"], "1.1 parapet-fra1");
    }

    #[test]
    fn a_trusted_balancer_keeps_them_and_names_the_viewer() {
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.5, 198.18.0.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let config = config(&["198.18.0.0/24"], &[], None);
        let sender = admit(&mut h, "::ffff:198.18.0.2".parse().unwrap(), false, &config);
        assert!(sender.trusted && !sender.edge);
        assert_eq!(sender.client, "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(forwarded_scheme(&h), Some("https"));
        forward_request_headers(
            &mut h,
            &Upstream {
                sender: "198.18.0.2".parse().unwrap(),
                scheme: Some("http"),
                host: "h",
                pop: "p",
            },
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.5, 198.18.0.9, 198.18.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn edges_by_address_peer_or_secret() {
        let config = config(&[], &["198.18.1.0/24"], Some("0123456789abcdef"));
        let from = |ip: &str, pairs: &[(&str, &str)], peer: bool| {
            let mut h = headers(pairs);
            let sender = admit(&mut h, ip.parse().unwrap(), peer, &config);
            assert!(!h.contains_key("x-parapet-tier"));
            sender.edge
        };
        assert!(from("198.18.1.4", &[], false));
        assert!(from("203.0.113.5", &[], true));
        assert!(from(
            "203.0.113.5",
            &[("x-parapet-tier", "0123456789abcdef")],
            false
        ));
        assert!(!from(
            "203.0.113.5",
            &[("x-parapet-tier", "0123456789abcdeX")],
            false
        ));
        assert!(!from("203.0.113.5", &[("via", "1.1 parapet-fra1")], false));
    }

    #[test]
    fn without_the_scheme_in_the_key_the_upstream_is_not_told_it() {
        let mut h = HeaderMap::new();
        forward_request_headers(
            &mut h,
            &Upstream {
                sender: "2001:db8::1".parse().unwrap(),
                scheme: None,
                host: "h",
                pop: "p",
            },
        );
        assert!(!h.contains_key("x-forwarded-proto"));
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";host=\"h\"");
    }
}
