//! What the cache stores: a response with its RFC 9111 policy, freshness
//! windows and purge metadata, or the list of `Vary` fields of a URL whose
//! variants are stored under their own keys.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_cache_semantics::CachePolicy;
use serde::{Deserialize, Serialize};

/// A cache entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Entry {
    /// A stored response.
    Object(Box<CachedObject>),
    /// The response for this key varies on these request fields (lower-case
    /// names); each variant is stored under [`variant_key`].
    Variants(Vec<String>),
    /// Parts of a response (`206` answers), stored under the response's
    /// key with a `parts` suffix.
    Parts(Box<super::parts::Parts>),
}

/// A stored response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedObject {
    /// Status code.
    #[serde(with = "http_serde::status_code")]
    pub status: StatusCode,
    /// The headers a viewer gets (hop-by-hop and cache-targeted fields
    /// removed).
    #[serde(with = "http_serde::header_map")]
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The RFC 9111 policy, for the age and revalidation.
    pub policy: CachePolicy,
    /// When it was stored or last revalidated (milliseconds since the
    /// epoch).
    pub stored_at_ms: u64,
    /// Freshness from `stored_at_ms`, in milliseconds.
    pub ttl_ms: u64,
    /// `stale-while-revalidate` window after the TTL, in milliseconds.
    pub stale_while_revalidate_ms: u64,
    /// `stale-if-error` window after the TTL, in milliseconds.
    pub stale_if_error_ms: u64,
    /// Marked stale by a light purge.
    pub invalidated: bool,
    /// What purges select it by.
    pub meta: PurgeMeta,
}

/// What purges select an object by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeMeta {
    /// The distribution that stored it.
    pub distribution: String,
    /// Host and path, e.g. `www.example.com/img/a.png` (with `?query`
    /// when it has one).
    pub url: String,
    /// `Surrogate-Key` tags.
    pub tags: Vec<String>,
}

/// How an object may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    /// Fresh: serve it.
    Fresh,
    /// Stale but inside `stale-while-revalidate`: serve it and refresh in
    /// the background.
    StaleWhileRevalidate,
    /// Stale: revalidate first (it may still be served if the upstream
    /// fails within `stale-if-error`).
    Stale,
}

impl CachedObject {
    /// How the object may be used at `now`.
    pub fn usability(&self, now: SystemTime) -> Usability {
        let age = self.resident_ms(now);
        if !self.invalidated && age < self.ttl_ms {
            Usability::Fresh
        } else if self.invalidated || age < self.ttl_ms + self.stale_while_revalidate_ms {
            // A light purge asks for a refresh but lets the old copy be
            // served meanwhile.
            Usability::StaleWhileRevalidate
        } else {
            Usability::Stale
        }
    }

    /// Whether it may stand in for an upstream error at `now`.
    pub fn usable_on_error(&self, now: SystemTime) -> bool {
        self.resident_ms(now) < self.ttl_ms + self.stale_if_error_ms
    }

    /// The `Age` to send: what the upstream said plus the time stored.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.policy.age(now)
    }

    /// Freshness left at `now` (zero once stale).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        Duration::from_millis(self.ttl_ms.saturating_sub(self.resident_ms(now)))
    }

    /// How long it has been stale at `now` (zero while fresh).
    pub fn staleness(&self, now: SystemTime) -> Duration {
        Duration::from_millis(self.resident_ms(now).saturating_sub(self.ttl_ms))
    }

    fn resident_ms(&self, now: SystemTime) -> u64 {
        millis(now).saturating_sub(self.stored_at_ms)
    }
}

/// Milliseconds since the epoch.
pub fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The key of one variant of `key`: the values of the `vary` fields in
/// `request` appended in order, each in a normal form (see
/// `normal_value`) so that equivalent requests share a variant.
pub fn variant_key(key: &str, vary: &[String], request: &HeaderMap) -> String {
    let mut out = String::with_capacity(key.len() + 32);
    out.push_str(key);
    for name in vary {
        out.push('\u{2}');
        out.push_str(&normal_value(name, request));
    }
    out
}

/// A request field's value as the variants compare it (RFC 9110 5.3,
/// 12.5): its lines joined as one list, white space around members and
/// parameters dropped; for the `Accept-*` fields, whose tokens are
/// case-insensitive, lower-cased, and their members ordered by quality
/// (members of equal quality keep their order; for `Accept-Encoding`,
/// whose order means nothing, by name).
fn normal_value(name: &str, request: &HeaderMap) -> String {
    let members = request
        .get_all(name)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .flat_map(|line| {
            line.split(',')
                .map(|member| {
                    member
                        .split(';')
                        .map(str::trim)
                        .collect::<Vec<_>>()
                        .join(";")
                })
                .filter(|member| !member.is_empty())
                .collect::<Vec<_>>()
        });
    let mut members: Vec<String> = match name {
        "accept-encoding" | "accept-language" | "accept-charset" => {
            members.map(|m| m.to_ascii_lowercase()).collect()
        }
        _ => return members.collect::<Vec<_>>().join(","),
    };
    if name == "accept-encoding" {
        members.sort();
    }
    // Highest quality first; a stable sort keeps ties in their order.
    members.sort_by(|a, b| quality(b).total_cmp(&quality(a)));
    members.join(",")
}

/// The `q` parameter of a list member (1 without one).
fn quality(member: &str) -> f32 {
    member
        .split(';')
        .skip(1)
        .find_map(|param| param.strip_prefix("q="))
        .and_then(|q| q.parse().ok())
        .unwrap_or(1.0)
}

/// The `Vary` field names of a response (lower-case), or `None` for
/// `Vary: *`, which matches no later request.
pub fn vary_fields(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for value in headers.get_all(http::header::VARY) {
        for name in String::from_utf8_lossy(value.as_bytes()).split(',') {
            let name = name.trim().to_ascii_lowercase();
            if name == "*" {
                return None;
            }
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ_by_the_vary_fields_only() {
        let mut a = HeaderMap::new();
        a.insert("accept-encoding", "gzip".parse().unwrap());
        a.insert("user-agent", "x".parse().unwrap());
        let mut b = a.clone();
        b.insert("user-agent", "y".parse().unwrap());
        let vary = vec!["accept-encoding".to_string()];
        assert_eq!(variant_key("k", &vary, &a), variant_key("k", &vary, &b));
        b.insert("accept-encoding", "br".parse().unwrap());
        assert_ne!(variant_key("k", &vary, &a), variant_key("k", &vary, &b));
    }

    #[test]
    fn equivalent_requests_share_a_variant() {
        let key = |name: &str, values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            variant_key("k", &[name.to_string()], &h)
        };
        let lang = key("accept-language", &["en-US,fr;q=0.5"]);
        assert_eq!(lang, key("accept-language", &["fr; q=0.5 , EN-us"]));
        assert_eq!(lang, key("accept-language", &["en-us", "fr;q=0.5"]));
        assert_ne!(lang, key("accept-language", &["fr,en-US;q=0.5"]));
        let enc = key("accept-encoding", &["gzip, br"]);
        assert_eq!(enc, key("accept-encoding", &["BR,gzip"]));
        assert_ne!(enc, key("accept-encoding", &["gzip"]));
        // Other fields: only white space is normalised, case is kept.
        assert_eq!(key("x-ver", &["a , b"]), key("x-ver", &["a,b"]));
        assert_ne!(key("x-ver", &["A"]), key("x-ver", &["a"]));
    }

    #[test]
    fn vary_fields_are_lower_case_and_star_means_none() {
        let mut h = HeaderMap::new();
        h.append("vary", "Accept-Encoding, Accept".parse().unwrap());
        h.append("vary", "accept".parse().unwrap());
        assert_eq!(vary_fields(&h).unwrap(), ["accept-encoding", "accept"]);
        h.insert("vary", "*".parse().unwrap());
        assert_eq!(vary_fields(&h), None);
    }
}
