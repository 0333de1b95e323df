//! The zone's contents and what it answers to one question: SOA and NS at
//! the apex, static records, PoP addresses for distribution names,
//! NXDOMAIN and NODATA with the SOA, REFUSED outside the zone.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

use crate::config::{PopConfig, Settings};
use crate::select::{Family, Health, Selector};

/// What the zone answers to one question.
#[derive(Debug, Default)]
pub struct Answer {
    /// The response code.
    pub rcode: ResponseCode,
    /// Whether the answer is authoritative (everything inside the zone).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section: the SOA of negative answers.
    pub authority: Vec<Record>,
    /// Additional section: nameserver addresses.
    pub additionals: Vec<Record>,
    /// PoPs named in the answer; non-empty only when the answer depended
    /// on the client's location.
    pub pops: Vec<String>,
    /// Whether the client's location was asked for.
    pub located: bool,
}

/// A name pattern relative to the zone; `*` matches one label.
#[derive(Debug)]
struct LabelPattern(Vec<Vec<u8>>);

impl LabelPattern {
    fn matches(&self, relative: &[&[u8]]) -> bool {
        self.0.len() == relative.len()
            && self
                .0
                .iter()
                .zip(relative)
                .all(|(p, l)| p.as_slice() == b"*" || p.eq_ignore_ascii_case(l))
    }

    /// Whether some name this pattern matches lies below `relative`.
    fn below(&self, relative: &[&[u8]]) -> bool {
        self.0.len() > relative.len() && {
            let tail = &self.0[self.0.len() - relative.len()..];
            LabelPattern(tail.to_vec()).matches(relative)
        }
    }
}

/// The zone, built from the settings and the PoPs; immutable once built
/// (a reload builds a new one).
#[derive(Debug)]
pub struct Zone {
    origin: LowerName,
    soa: Record,
    nameservers: Vec<Record>,
    statics: HashMap<LowerName, Vec<Record>>,
    distributions: Vec<LabelPattern>,
    selector: Selector,
    ttl: u32,
    answers: usize,
}

/// A zone that cannot be built: the settings field and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ZoneError {
    /// The field path in the settings (or `zone` for the zone name).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn zone_error(field: impl Into<String>, reason: impl std::fmt::Display) -> ZoneError {
    ZoneError {
        field: field.into(),
        reason: reason.to_string(),
    }
}

/// Parses `text` as an absolute name, or one relative to `origin` when it
/// has no final dot; `@` is the origin itself.
fn name_in(text: &str, origin: &Name, field: &str) -> Result<Name, ZoneError> {
    if text == "@" {
        return Ok(origin.clone());
    }
    let name = Name::from_ascii(text).map_err(|e| zone_error(field, format!("`{text}`: {e}")))?;
    if name.is_fqdn() {
        Ok(name)
    } else {
        name.append_domain(origin)
            .map_err(|e| zone_error(field, format!("`{text}`: {e}")))
    }
}

impl Zone {
    /// Builds the zone `zone` (e.g. `cdn.example.net`).
    pub fn build(zone: &str, settings: &Settings, pops: Vec<PopConfig>) -> Result<Self, ZoneError> {
        let origin =
            Name::from_ascii(zone).map_err(|e| zone_error("zone", format!("`{zone}`: {e}")))?;
        let mut origin = origin.to_lowercase();
        origin.set_fqdn(true);
        if origin.is_root() {
            return Err(zone_error("zone", "the root zone cannot be served"));
        }

        let soa = &settings.soa;
        let mname = name_in(soa.mname.as_deref().unwrap_or("ns1"), &origin, "soa.mname")?;
        let rname = name_in(
            soa.rname.as_deref().unwrap_or("hostmaster"),
            &origin,
            "soa.rname",
        )?;
        let serial = soa.serial.unwrap_or_else(|| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs());
            now.map(|s| s as u32).unwrap_or(1)
        });
        let seconds = |value: u32, field: &str| {
            i32::try_from(value).map_err(|_| zone_error(field, "must be below 2^31"))
        };
        let soa_record = Record::from_rdata(
            origin.clone(),
            soa.ttl,
            RData::SOA(SOA::new(
                mname.clone(),
                rname,
                serial,
                seconds(soa.refresh, "soa.refresh")?,
                seconds(soa.retry, "soa.retry")?,
                seconds(soa.expire, "soa.expire")?,
                soa.minimum,
            )),
        );

        let nameserver_names = if settings.nameservers.is_empty() {
            vec![mname]
        } else {
            settings
                .nameservers
                .iter()
                .enumerate()
                .map(|(i, ns)| name_in(ns, &origin, &format!("nameservers[{i}]")))
                .collect::<Result<_, _>>()?
        };
        let nameservers = nameserver_names
            .into_iter()
            .map(|ns| Record::from_rdata(origin.clone(), soa.ttl, RData::NS(NS(ns))))
            .collect();

        let mut statics: HashMap<LowerName, Vec<Record>> = HashMap::new();
        for (i, record) in settings.records.iter().enumerate() {
            let field = |f: &str| format!("record[{i}].{f}");
            let name = name_in(&record.name, &origin, &field("name"))?;
            if !origin.zone_of(&name) {
                return Err(zone_error(
                    field("name"),
                    format!("`{name}` is outside the zone {origin}"),
                ));
            }
            let record_type: RecordType = record
                .record_type
                .to_ascii_uppercase()
                .parse()
                .map_err(|e| zone_error(field("type"), format!("`{}`: {e}", record.record_type)))?;
            if matches!(record_type, RecordType::SOA | RecordType::NS) && name == origin {
                return Err(zone_error(
                    field("type"),
                    "the apex SOA and NS come from [soa] and nameservers",
                ));
            }
            let rdata = RData::try_from_str(record_type, &record.value)
                .map_err(|e| zone_error(field("value"), format!("`{}`: {e}", record.value)))?;
            statics
                .entry(LowerName::new(&name))
                .or_default()
                .push(Record::from_rdata(name, record.ttl, rdata));
        }
        for (name, records) in &statics {
            let cname = records.iter().any(|r| r.record_type() == RecordType::CNAME);
            if cname && records.len() > 1 {
                return Err(zone_error(
                    "record",
                    format!("{name} has a CNAME and other records"),
                ));
            }
        }

        let distributions = settings
            .distributions
            .iter()
            .enumerate()
            .map(|(i, pattern)| {
                let labels: Vec<Vec<u8>> =
                    pattern.split('.').map(|l| l.as_bytes().to_vec()).collect();
                if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
                    return Err(zone_error(
                        format!("distributions[{i}]"),
                        format!("`{pattern}` is not a relative name"),
                    ));
                }
                Ok(LabelPattern(labels))
            })
            .collect::<Result<_, _>>()?;

        for (i, id) in settings.default_pops.iter().enumerate() {
            if !pops.iter().any(|p| &p.id == id) {
                return Err(zone_error(
                    format!("default_pops[{i}]"),
                    format!("no PoP `{id}` in the PoPs file"),
                ));
            }
        }
        Ok(Zone {
            origin: LowerName::new(&origin),
            soa: soa_record,
            nameservers,
            statics,
            distributions,
            selector: Selector::new(pops, &settings.default_pops),
            ttl: settings.ttl,
            answers: settings.answers,
        })
    }

    /// The zone's name.
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// The PoP selector.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Answers one question. `locate` gives the client's position; it is
    /// called only for names answered by location.
    pub fn answer(
        &self,
        name: &LowerName,
        qtype: RecordType,
        qclass: DNSClass,
        health: &Health,
        locate: impl FnOnce() -> Option<(f64, f64)>,
    ) -> Answer {
        if qclass != DNSClass::IN || !self.origin.zone_of(name) {
            return Answer {
                rcode: ResponseCode::Refused,
                ..Answer::default()
            };
        }
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return Answer {
                rcode: ResponseCode::Refused,
                ..Answer::default()
            };
        }
        let mut answer = Answer {
            authoritative: true,
            ..Answer::default()
        };
        let name_owned = Name::from(name);
        if *name == self.origin {
            match qtype {
                RecordType::SOA | RecordType::ANY => answer.answers.push(self.soa.clone()),
                RecordType::NS => {
                    answer.answers = self.nameservers.clone();
                    answer.additionals = self.glue();
                }
                _ => self.static_answer(name, qtype, &mut answer),
            }
        } else if self.statics.contains_key(name) {
            self.static_answer(name, qtype, &mut answer);
        } else if self.is_distribution(name) {
            answer.located = true;
            let family = match qtype {
                RecordType::A | RecordType::ANY => Some(Family::V4),
                RecordType::AAAA => Some(Family::V6),
                _ => None,
            };
            if let Some(family) = family {
                for pop in self.selector.choose(locate(), family, self.answers, health) {
                    answer.pops.push(pop.config.id.clone());
                    for ip in pop.addresses(family) {
                        let rdata = match ip {
                            std::net::IpAddr::V4(v4) => RData::A(A(v4)),
                            std::net::IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                        };
                        answer.answers.push(Record::from_rdata(
                            name_owned.clone(),
                            self.ttl,
                            rdata,
                        ));
                    }
                }
            }
        } else if !self.has_names_below(name) {
            answer.rcode = ResponseCode::NXDomain;
        }
        // Minimal responses: the authority section only for negative answers.
        if answer.answers.is_empty() {
            answer.authority.push(self.negative_soa());
        }
        answer
    }

    fn static_answer(&self, name: &LowerName, qtype: RecordType, answer: &mut Answer) {
        let Some(records) = self.statics.get(name) else {
            return;
        };
        let wanted = |r: &&Record| {
            let t = r.record_type();
            t == qtype || t == RecordType::CNAME
        };
        answer.answers = match qtype {
            // RFC 8482: one RRset is a complete answer to ANY.
            RecordType::ANY => {
                let first = records[0].record_type();
                records
                    .iter()
                    .filter(|r| r.record_type() == first)
                    .cloned()
                    .collect()
            }
            _ => records.iter().filter(wanted).cloned().collect(),
        };
    }

    /// Addresses of in-zone nameservers, from the static records.
    fn glue(&self) -> Vec<Record> {
        self.nameservers
            .iter()
            .filter_map(|ns| match &ns.data {
                RData::NS(NS(target)) => self.statics.get(&LowerName::new(target)),
                _ => None,
            })
            .flatten()
            .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
            .cloned()
            .collect()
    }

    /// The SOA for a negative answer: its TTL is the lesser of its own and
    /// the minimum (RFC 2308).
    fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }

    /// The labels of `name` below the origin, outermost last.
    fn relative_labels<'a>(&self, name: &'a Name) -> Vec<&'a [u8]> {
        let depth = name.num_labels().saturating_sub(self.origin.num_labels()) as usize;
        name.iter().take(depth).collect()
    }

    fn is_distribution(&self, name: &LowerName) -> bool {
        let name = Name::from(name);
        let labels = self.relative_labels(&name);
        self.distributions.iter().any(|p| p.matches(&labels))
    }

    /// Whether `name` is an empty non-terminal: it has no records but names
    /// below it do, so the answer is NODATA rather than NXDOMAIN.
    fn has_names_below(&self, name: &LowerName) -> bool {
        let owned = Name::from(name);
        let labels = self.relative_labels(&owned);
        self.statics.keys().any(|s| s != name && name.zone_of(s))
            || self.distributions.iter().any(|p| p.below(&labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticRecord;

    fn pop(id: &str, lat: f64, lon: f64, ip: &str) -> PopConfig {
        PopConfig {
            id: id.into(),
            name: None,
            lat,
            lon,
            ipv4: vec![ip.parse().expect("ip")],
            ipv6: Vec::new(),
            enabled: true,
            weight: 1.0,
            capacity: None,
        }
    }

    fn zone(settings: Settings) -> Zone {
        let pops = vec![
            pop("tyo", 35.68, 139.69, "192.0.2.1"),
            pop("fra", 50.11, 8.68, "192.0.2.2"),
        ];
        Zone::build("cdn.example.net", &settings, pops).expect("zone")
    }

    fn static_record(name: &str, record_type: &str, value: &str) -> StaticRecord {
        StaticRecord {
            name: name.into(),
            record_type: record_type.into(),
            value: value.into(),
            ttl: 300,
        }
    }

    fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Answer {
        let name = LowerName::new(&Name::from_ascii(name).expect("name"));
        zone.answer(&name, qtype, DNSClass::IN, &Health::default(), || {
            Some((35.0, 135.0))
        })
    }

    fn types(records: &[Record]) -> Vec<RecordType> {
        records.iter().map(Record::record_type).collect()
    }

    #[test]
    fn apex_answers_soa_and_ns_with_glue() {
        let settings = Settings {
            records: vec![static_record("ns1", "A", "192.0.2.53")],
            ..Settings::default()
        };
        let zone = zone(settings);
        let soa = ask(&zone, "cdn.example.net.", RecordType::SOA);
        assert_eq!(soa.rcode, ResponseCode::NoError);
        assert!(soa.authoritative);
        assert_eq!(types(&soa.answers), [RecordType::SOA]);
        let ns = ask(&zone, "CDN.example.net.", RecordType::NS);
        assert_eq!(
            ns.answers[0].data,
            RData::NS(NS(Name::from_ascii("ns1.cdn.example.net.").expect("name")))
        );
        assert_eq!(types(&ns.additionals), [RecordType::A]);
        assert!(!ns.located);
    }

    #[test]
    fn distributions_get_the_nearest_pop() {
        let zone = zone(Settings::default());
        let answer = ask(&zone, "shop.cdn.example.net.", RecordType::A);
        assert_eq!(answer.pops, ["tyo"]);
        assert!(answer.located);
        assert_eq!(
            answer.answers[0].data,
            RData::A(A("192.0.2.1".parse().expect("ip")))
        );
        assert_eq!(answer.answers[0].ttl, 30);
        assert!(answer.authority.is_empty());
        // No PoP has IPv6: NODATA, with the SOA.
        let answer = ask(&zone, "shop.cdn.example.net.", RecordType::AAAA);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert!(answer.answers.is_empty());
        assert_eq!(types(&answer.authority), [RecordType::SOA]);
        assert_eq!(answer.authority[0].ttl, 60);
    }

    #[test]
    fn unknown_names_are_nxdomain_and_outside_names_refused() {
        let settings = Settings {
            distributions: vec!["*.edge".into()],
            records: vec![static_record("a.b", "TXT", "hello")],
            ..Settings::default()
        };
        let zone = zone(settings);
        let answer = ask(&zone, "x.y.cdn.example.net.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        assert_eq!(types(&answer.authority), [RecordType::SOA]);
        assert_eq!(
            ask(&zone, "shop.cdn.example.net.", RecordType::A).rcode,
            ResponseCode::NXDomain
        );
        assert_eq!(
            ask(&zone, "shop.edge.cdn.example.net.", RecordType::A).pops,
            ["tyo"]
        );
        // Empty non-terminals: NODATA.
        for name in ["b.cdn.example.net.", "edge.cdn.example.net."] {
            let answer = ask(&zone, name, RecordType::A);
            assert_eq!(answer.rcode, ResponseCode::NoError, "{name}");
            assert!(answer.answers.is_empty(), "{name}");
        }
        let answer = ask(&zone, "example.org.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::Refused);
        assert!(!answer.authoritative);
        let name = LowerName::new(&Name::from_ascii("cdn.example.net.").expect("name"));
        let chaos = zone.answer(
            &name,
            RecordType::SOA,
            DNSClass::CH,
            &Health::default(),
            || None,
        );
        assert_eq!(chaos.rcode, ResponseCode::Refused);
        assert_eq!(
            ask(&zone, "cdn.example.net.", RecordType::AXFR).rcode,
            ResponseCode::Refused
        );
    }

    #[test]
    fn any_gets_one_rrset() {
        let settings = Settings {
            records: vec![
                static_record("www", "TXT", "one"),
                static_record("www", "MX", "10 mail.example.net."),
            ],
            ..Settings::default()
        };
        let zone = zone(settings);
        assert_eq!(
            types(&ask(&zone, "www.cdn.example.net.", RecordType::ANY).answers),
            [RecordType::TXT]
        );
        assert_eq!(
            types(&ask(&zone, "cdn.example.net.", RecordType::ANY).answers),
            [RecordType::SOA]
        );
        assert_eq!(
            types(&ask(&zone, "shop.cdn.example.net.", RecordType::ANY).answers),
            [RecordType::A]
        );
        assert_eq!(
            types(&ask(&zone, "www.cdn.example.net.", RecordType::MX).answers),
            [RecordType::MX]
        );
    }

    #[test]
    fn static_cname_answers_every_type() {
        let settings = Settings {
            records: vec![static_record("docs", "CNAME", "shop.cdn.example.net.")],
            ..Settings::default()
        };
        let zone = zone(settings);
        let answer = ask(&zone, "docs.cdn.example.net.", RecordType::A);
        assert_eq!(types(&answer.answers), [RecordType::CNAME]);
        assert!(!answer.located);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let pops = || vec![pop("tyo", 35.68, 139.69, "192.0.2.1")];
        let cases = [
            (
                Settings {
                    records: vec![static_record("www", "A", "not-an-ip")],
                    ..Settings::default()
                },
                "record[0].value",
            ),
            (
                Settings {
                    records: vec![static_record("www", "BOGUS", "x")],
                    ..Settings::default()
                },
                "record[0].type",
            ),
            (
                Settings {
                    records: vec![static_record("www.example.org.", "A", "192.0.2.9")],
                    ..Settings::default()
                },
                "record[0].name: `www.example.org.` is outside the zone",
            ),
            (
                Settings {
                    records: vec![static_record("@", "NS", "ns9.example.org.")],
                    ..Settings::default()
                },
                "record[0].type: the apex SOA and NS",
            ),
            (
                Settings {
                    records: vec![
                        static_record("w", "CNAME", "x.example.org."),
                        static_record("w", "A", "192.0.2.9"),
                    ],
                    ..Settings::default()
                },
                "has a CNAME and other records",
            ),
            (
                Settings {
                    default_pops: vec!["lhr".into()],
                    ..Settings::default()
                },
                "default_pops[0]: no PoP `lhr`",
            ),
            (
                Settings {
                    distributions: vec!["a..b".into()],
                    ..Settings::default()
                },
                "distributions[0]: `a..b` is not a relative name",
            ),
        ];
        for (settings, expected) in cases {
            let error = Zone::build("cdn.example.net", &settings, pops())
                .expect_err(expected)
                .to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
        let error = Zone::build(".", &Settings::default(), pops())
            .expect_err("root")
            .to_string();
        assert!(error.contains("root zone"), "{error}");
    }
}
