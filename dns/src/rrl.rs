//! Response rate limiting for UDP answers, as BIND's and Knot's RRL do:
//! each client prefix (a /24 of IPv4, a /56 of IPv6 by default) gets at
//! most `responses_per_second` alike answers per second (the same name and
//! type; errors and NXDOMAIN share one class per prefix, so random names do
//! not escape the limit). Past it, every `slip`-th answer goes out empty
//! and truncated, telling a real resolver to ask again over TCP (never
//! limited), and the others are dropped — so a forged source address
//! cannot turn the server into an amplifier against its owner, and one
//! prefix's flood leaves every other prefix's answers alone.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RecordType};
use serde::Deserialize;

/// The `[rrl]` table of the settings file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RrlSettings {
    /// Limit UDP answers at all.
    pub enabled: bool,
    /// Alike answers per second to one client prefix (also the burst).
    pub responses_per_second: NonZeroU32,
    /// Of the answers past the limit, every `slip`-th is sent empty and
    /// truncated (0: none, all dropped; 1: all truncated).
    pub slip: u32,
    /// The IPv4 prefix length clients are grouped by.
    pub ipv4_prefix_length: u8,
    /// The IPv6 prefix length clients are grouped by.
    pub ipv6_prefix_length: u8,
}

impl Default for RrlSettings {
    fn default() -> Self {
        RrlSettings {
            enabled: true,
            responses_per_second: NonZeroU32::new(20).expect("not zero"),
            slip: 2,
            ipv4_prefix_length: 24,
            ipv6_prefix_length: 56,
        }
    }
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: send it.
    Send,
    /// Past the limit: send it empty with the TC bit.
    Slip,
    /// Past the limit: send nothing.
    Drop,
}

impl Verdict {
    /// The `action` label of `parapet_dns_rrl_total`, for limited answers.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Send => "sent",
            Verdict::Slip => "slipped",
            Verdict::Drop => "dropped",
        }
    }
}

/// A client prefix and the class of answer it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    prefix: IpAddr,
    class: u64,
}

/// The limiter of one settings file's `[rrl]`.
pub struct Rrl {
    settings: RrlSettings,
    limiter: Option<DefaultKeyedRateLimiter<Key>>,
    limited: AtomicU64,
}

impl Rrl {
    /// A limiter for `settings`.
    pub fn new(settings: RrlSettings) -> Self {
        let limiter = settings.enabled.then(|| {
            RateLimiter::keyed(
                Quota::per_second(settings.responses_per_second)
                    .allow_burst(settings.responses_per_second),
            )
        });
        Rrl {
            settings,
            limiter,
            limited: AtomicU64::new(0),
        }
    }

    /// The settings it was made from.
    pub fn settings(&self) -> &RrlSettings {
        &self.settings
    }

    /// Whether a UDP answer with `rcode` to `question` (name and type,
    /// when the query had one) goes to `client`.
    pub fn check(
        &self,
        client: IpAddr,
        question: Option<(&LowerName, RecordType)>,
        rcode: ResponseCode,
    ) -> Verdict {
        let Some(limiter) = &self.limiter else {
            return Verdict::Send;
        };
        let key = Key {
            prefix: self.prefix(client),
            class: answer_class(question, rcode),
        };
        if limiter.check_key(&key).is_ok() {
            return Verdict::Send;
        }
        let n = self.limited.fetch_add(1, Ordering::Relaxed) + 1;
        match self.settings.slip {
            0 => Verdict::Drop,
            slip if n.is_multiple_of(u64::from(slip)) => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }

    /// Forgets the prefixes whose limit has refilled, so the table holds
    /// only recent clients; call it every second or so.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The client's prefix (the address with its host bits cleared).
    fn prefix(&self, client: IpAddr) -> IpAddr {
        match client.to_canonical() {
            IpAddr::V4(v4) => {
                let length = u32::from(self.settings.ipv4_prefix_length);
                let mask = u32::MAX
                    .checked_shl(32u32.saturating_sub(length))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let length = u32::from(self.settings.ipv6_prefix_length);
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(length))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

/// Answers alike for the limit: positive answers and NODATA by name and
/// type; NXDOMAIN, REFUSED and other errors by their code alone.
fn answer_class(question: Option<(&LowerName, RecordType)>, rcode: ResponseCode) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    u16::from(rcode).hash(&mut hasher);
    if let Some((name, qtype)) = question.filter(|_| rcode == ResponseCode::NoError) {
        name.hash(&mut hasher);
        u16::from(qtype).hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn name(text: &str) -> LowerName {
        LowerName::from_str(text).expect("name")
    }

    fn rrl(per_second: u32, slip: u32) -> Rrl {
        Rrl::new(RrlSettings {
            responses_per_second: NonZeroU32::new(per_second).expect("not zero"),
            slip,
            ..RrlSettings::default()
        })
    }

    #[test]
    fn past_the_limit_every_second_answer_slips_and_the_rest_drop() {
        let rrl = rrl(3, 2);
        let ask = |client: &str| {
            rrl.check(
                client.parse().expect("address"),
                Some((&name("shop.cdn.test."), RecordType::A)),
                ResponseCode::NoError,
            )
        };
        let verdicts: Vec<Verdict> = (0..7).map(|_| ask("192.0.2.1")).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Send, Send, Send, Drop, Slip, Drop, Slip]);
        // The same /24 shares the limit; the next /24 has its own.
        assert_ne!(ask("192.0.2.200"), Send);
        assert_eq!(ask("192.0.3.1"), Send);
    }

    #[test]
    fn names_have_their_own_limits_but_nxdomains_share_one() {
        let rrl = rrl(1, 0);
        let client: IpAddr = "2001:db8::1".parse().expect("address");
        let ask = |text: &str, rcode| rrl.check(client, Some((&name(text), RecordType::A)), rcode);
        assert_eq!(ask("a.cdn.test.", ResponseCode::NoError), Verdict::Send);
        assert_eq!(ask("b.cdn.test.", ResponseCode::NoError), Verdict::Send);
        assert_eq!(ask("a.cdn.test.", ResponseCode::NoError), Verdict::Drop);
        assert_eq!(ask("x1.cdn.test.", ResponseCode::NXDomain), Verdict::Send);
        assert_eq!(ask("x2.cdn.test.", ResponseCode::NXDomain), Verdict::Drop);
        // The /56 is one client; another /56 is not.
        let other: IpAddr = "2001:db8:0:100::1".parse().expect("address");
        let same: IpAddr = "2001:db8:0:ff::1".parse().expect("address");
        let a = name("a.cdn.test.");
        assert_eq!(
            rrl.check(same, Some((&a, RecordType::A)), ResponseCode::NoError),
            Verdict::Drop
        );
        assert_eq!(
            rrl.check(other, Some((&a, RecordType::A)), ResponseCode::NoError),
            Verdict::Send
        );
    }

    #[test]
    fn disabled_it_sends_everything() {
        let rrl = Rrl::new(RrlSettings {
            enabled: false,
            ..RrlSettings::default()
        });
        let client: IpAddr = "192.0.2.1".parse().expect("address");
        for _ in 0..100 {
            assert_eq!(
                rrl.check(
                    client,
                    Some((&name("a.cdn.test."), RecordType::A)),
                    ResponseCode::NoError
                ),
                Verdict::Send
            );
        }
    }
}
