//! The native guards a behavior applies before any plugin runs: client IP
//! allow/deny lists (CIDR) and request header allow/deny lists.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

use parapet_config::BehaviorConfig;

/// Whether a client at `ip` may be served under `behavior`: not in a denied
/// network, and in an allowed one when an allow list is set.
pub fn ip_allowed(behavior: &BehaviorConfig, ip: IpAddr) -> bool {
    // An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is
    // matched as IPv4.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if behavior.ip_deny.iter().any(|net| net.contains(&ip)) {
        return false;
    }
    behavior.ip_allow.is_empty() || behavior.ip_allow.iter().any(|net| net.contains(&ip))
}

/// Applies the behavior's request header lists to `headers` in place: keeps
/// only allowed names (when an allow list is set), then drops denied ones.
/// Names compare case-insensitively.
pub fn filter_request_headers(behavior: &BehaviorConfig, headers: &mut HeaderMap) {
    if let Some(allow) = &behavior.request_headers_allow {
        let listed =
            |name: &HeaderName| allow.iter().any(|l| l.eq_ignore_ascii_case(name.as_str()));
        let refused: Vec<HeaderName> = headers.keys().filter(|n| !listed(n)).cloned().collect();
        for name in refused {
            headers.remove(name);
        }
    }
    for name in &behavior.request_headers_deny {
        headers.remove(name.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behavior(extra: &str) -> BehaviorConfig {
        toml::from_str(&format!("path = \"*\"\n{extra}")).unwrap()
    }

    #[test]
    fn deny_wins_and_allow_lists_restrict() {
        let b =
            behavior("ip_allow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nip_deny = [\"10.9.0.0/16\"]");
        assert!(ip_allowed(&b, "10.1.2.3".parse().unwrap()));
        assert!(
            !ip_allowed(&b, "10.9.1.1".parse().unwrap()),
            "deny wins inside an allowed network"
        );
        assert!(
            !ip_allowed(&b, "192.0.2.1".parse().unwrap()),
            "outside the allow list"
        );
        assert!(ip_allowed(&b, "2001:db8::5".parse().unwrap()));
        assert!(
            ip_allowed(&b, "::ffff:10.1.2.3".parse().unwrap()),
            "IPv4-mapped IPv6 counts as IPv4"
        );
        assert!(
            ip_allowed(&behavior(""), "192.0.2.1".parse().unwrap()),
            "no lists: everyone"
        );
    }

    #[test]
    fn header_lists_filter_case_insensitively() {
        let mut headers = HeaderMap::new();
        for (n, v) in [
            ("Accept", "a"),
            ("x-debug", "1"),
            ("cookie", "c"),
            ("x-other", "o"),
        ] {
            headers.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let b = behavior("request_headers_allow = [\"accept\", \"X-Debug\", \"cookie\"]\nrequest_headers_deny = [\"COOKIE\"]");
        filter_request_headers(&b, &mut headers);
        let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["accept", "x-debug"]);
    }
}
