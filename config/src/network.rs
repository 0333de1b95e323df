//! Which addresses an edge may send requests to (origins, the shield,
//! peers). A customer names its origins, so without a policy an origin could
//! be the cloud's metadata service, the operator's internal network or the
//! edge's own admin port. Addresses that are not public are refused unless
//! the operator allowed their range (on-premises origins, or loopback for a
//! trial on one machine).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::Deserialize;

/// The operator's `[upstream]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Address ranges upstreams may be in although they are not public
    /// (loopback, private, link-local, ...): on-premises origins, a PoP's
    /// internal network for peers and shields, `127.0.0.0/8` for a trial
    /// on one machine. Empty: public addresses only.
    pub allow_networks: Vec<IpNet>,
}

/// The address policy: non-public addresses are refused unless allowed,
/// and so are the edge's own listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
    own: Vec<SocketAddr>,
}

impl AddressPolicy {
    /// The policy of `config`, refusing also the edge's own listening
    /// addresses in `own` (viewer and admin listeners).
    pub fn new(config: &UpstreamConfig, own: Vec<SocketAddr>) -> Self {
        AddressPolicy {
            allow: config.allow_networks.clone(),
            own,
        }
    }

    /// The same policy, refusing also `addresses` (listeners as bound,
    /// when the configuration asked for port 0).
    pub fn with_own(mut self, addresses: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.own.extend(addresses);
        self
    }

    /// Why `address` may not be sent to, if it may not.
    pub fn check(&self, address: SocketAddr) -> Result<(), String> {
        let ip = canonical(address.ip());
        if self.is_own(ip, address.port()) {
            return Err(format!("{address} is one of this edge's own listeners"));
        }
        self.check_ip(ip)
    }

    /// Why `ip` may not be sent to (port aside), if it may not.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        let ip = canonical(ip);
        match special_purpose(ip) {
            Some(kind) if !self.allow.iter().any(|net| net.contains(&ip)) => Err(format!(
                "{ip} is a {kind} address, which upstreams may not use unless the operator allows its range ([upstream] allow_networks)"
            )),
            _ => Ok(()),
        }
    }

    /// Why the host of an upstream URL may not be used, when that can be
    /// told without resolving it: an IP literal, or a `localhost` name.
    /// Other names are checked when they are resolved, at each connect.
    pub fn check_host(&self, host: &str, port: u16) -> Result<(), String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check(SocketAddr::new(ip, port));
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            // RFC 6761: these names resolve to loopback.
            return self.check(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
        Ok(())
    }

    /// Whether `(ip, port)` reaches one of the edge's own listeners: the
    /// listener's own address, or loopback for a listener on loopback or
    /// on every address. (The edge's other addresses behind a wildcard
    /// listener are not known here; a request to itself through them is
    /// stopped by the `Via` loop check.)
    fn is_own(&self, ip: IpAddr, port: u16) -> bool {
        self.own.iter().any(|own| {
            let own_ip = canonical(own.ip());
            own.port() == port
                && (own_ip == ip
                    || ((own_ip.is_unspecified() || own_ip.is_loopback())
                        && (ip.is_loopback() || ip.is_unspecified())))
        })
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, if it is one.
fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("\"this network\" (RFC 791)")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_private() {
        Some("private (RFC 1918)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (RFC 6598)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local (RFC 4193)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> AddressPolicy {
        AddressPolicy::new(
            &UpstreamConfig {
                allow_networks: allow.iter().map(|n| n.parse().unwrap()).collect(),
            },
            vec![
                "0.0.0.0:8080".parse().unwrap(),
                "127.0.0.1:9901".parse().unwrap(),
            ],
        )
    }

    #[test]
    fn non_public_addresses_are_refused_by_default() {
        let p = policy(&[]);
        for host in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "[::1]",
            "[fe80::1]",
            "[fd00::1]",
            "[::]",
            "[::ffff:127.0.0.1]",
            "localhost",
            "api.localhost.",
        ] {
            let refusal = p.check_host(host, 80).expect_err(host);
            assert!(refusal.contains("address"), "{host}: {refusal}");
        }
        assert!(p
            .check_host("169.254.169.254", 80)
            .unwrap_err()
            .contains("link-local"));
        for host in ["93.184.215.14", "[2606:4700::1]", "origin.example.com"] {
            assert_eq!(p.check_host(host, 443), Ok(()), "{host}");
        }
    }

    #[test]
    fn allowed_ranges_open_but_the_edges_own_listeners_stay_closed() {
        let p = policy(&["127.0.0.0/8", "10.0.0.0/8"]);
        assert_eq!(p.check_host("127.0.0.1", 8081), Ok(()));
        assert_eq!(p.check_host("10.9.9.9", 80), Ok(()));
        assert!(p.check_host("192.168.0.1", 80).is_err());
        // The viewer listener on 0.0.0.0:8080 and the admin on loopback.
        let own = p.check_host("127.0.0.1", 8080).unwrap_err();
        assert!(own.contains("own listeners"), "{own}");
        assert!(p.check_host("127.0.0.1", 9901).is_err());
        // Another machine on the listener's port: a peer, say.
        assert_eq!(p.check_host("10.0.0.1", 8080), Ok(()));
    }
}
