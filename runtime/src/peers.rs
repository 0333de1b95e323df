//! Peers of one PoP share one cache: each cache key has an owner among the
//! edges, chosen by rendezvous (highest random weight) hashing, so adding or
//! removing an edge moves only that edge's share of keys.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Header marking a request forwarded by a peer, so the owner serves it
/// itself instead of forwarding again.
pub const PEER_HEADER: &str = "x-parapet-peer";

/// The edges of a PoP, this one included.
#[derive(Debug, Clone)]
pub struct PeerRing {
    me: String,
    members: Vec<String>,
}

impl PeerRing {
    /// A ring of `me` (this edge's `host:port`) and its `peers`.
    pub fn new(me: String, peers: &[String]) -> Self {
        let mut members: Vec<String> = peers.iter().filter(|p| **p != me).cloned().collect();
        members.push(me.clone());
        PeerRing { me, members }
    }

    /// Whether `ip` is one of the PoP's edges (peers are given as
    /// `ip:port`; a host name matches no address).
    pub fn is_member(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.members
            .iter()
            .filter_map(|m| m.parse::<std::net::SocketAddr>().ok())
            .any(|m| m.ip() == ip)
    }

    /// The owner of `key`, or `None` when it is this edge.
    pub fn owner(&self, key: &str) -> Option<&str> {
        let owner = self
            .members
            .iter()
            .max_by_key(|member| weight(member, key))?;
        (*owner != self.me).then_some(owner.as_str())
    }
}

fn weight(member: &str, key: &str) -> u64 {
    xxh3_64_with_seed(key.as_bytes(), xxh3_64_with_seed(member.as_bytes(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edge_agrees_on_the_owner_and_keys_spread() {
        let all = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"].map(String::from);
        let rings: Vec<PeerRing> = all
            .iter()
            .map(|me| PeerRing::new(me.clone(), &all))
            .collect();
        let mut owned = [0usize; 3];
        for k in 0..3000 {
            let key = format!("/object/{k}");
            let owners: Vec<&str> = rings
                .iter()
                .map(|r| r.owner(&key).unwrap_or(r.me.as_str()))
                .collect();
            assert!(owners.windows(2).all(|w| w[0] == w[1]), "{key}: {owners:?}");
            let index = all.iter().position(|m| m == owners[0]).unwrap();
            owned[index] += 1;
        }
        assert!(owned.iter().all(|&n| n > 800), "uneven spread: {owned:?}");
    }

    #[test]
    fn removing_a_peer_moves_only_its_keys() {
        let all = ["a:1", "b:1", "c:1"].map(String::from);
        let full = PeerRing::new("a:1".into(), &all);
        let smaller = PeerRing::new("a:1".into(), &all[..2]);
        for k in 0..1000 {
            let key = k.to_string();
            let before = full.owner(&key);
            if before != Some("c:1") {
                assert_eq!(smaller.owner(&key), before);
            }
        }
    }
}
