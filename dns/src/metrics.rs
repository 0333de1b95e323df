//! The queries' Prometheus metrics and the query log (served by
//! `parapet_telemetry`).

use std::net::SocketAddr;

use hickory_proto::op::LowerQuery;
use hickory_proto::rr::rdata::opt::ClientSubnet;
use hickory_proto::rr::RecordType;
use hickory_server::net::xfer::Protocol;

/// One answered query, as the metrics and the query log see it.
pub struct QueryRecord<'a> {
    /// The resolver's (or client's) address.
    pub client: SocketAddr,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// The question, when the request had one.
    pub query: Option<&'a LowerQuery>,
    /// The question's type as [`qtype_label`] names it, or `-`.
    pub qtype: &'static str,
    /// The response code sent.
    pub rcode: &'a str,
    /// Whether the answer was truncated to fit UDP.
    pub truncated: bool,
    /// The request's EDNS Client Subnet.
    pub subnet: Option<ClientSubnet>,
    /// The ECS scope answered.
    pub scope: u8,
    /// PoPs named in the answer.
    pub pops: &'a [String],
}

/// The `qtype` label of a question's type: its name for the types a
/// CDN zone is asked about, `other` for the rest, so queries cannot add
/// label values (and series) of their choosing.
pub fn qtype_label(qtype: RecordType) -> &'static str {
    match qtype {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::ANY => "ANY",
        RecordType::AXFR => "AXFR",
        RecordType::CAA => "CAA",
        RecordType::CNAME => "CNAME",
        RecordType::DNSKEY => "DNSKEY",
        RecordType::DS => "DS",
        RecordType::HTTPS => "HTTPS",
        RecordType::IXFR => "IXFR",
        RecordType::MX => "MX",
        RecordType::NS => "NS",
        RecordType::PTR => "PTR",
        RecordType::SOA => "SOA",
        RecordType::SRV => "SRV",
        RecordType::SVCB => "SVCB",
        RecordType::TXT => "TXT",
        _ => "other",
    }
}

impl QueryRecord<'_> {
    /// Counts the query; logs it when `log` is set.
    pub fn record(&self, log: bool) {
        let protocol = match self.protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            _ => "other",
        };
        let ecs = if self.subnet.is_some() { "yes" } else { "no" };
        metrics::counter!(
            "parapet_dns_queries_total",
            "qtype" => self.qtype,
            "rcode" => self.rcode.to_string(),
            "protocol" => protocol,
            "ecs" => ecs,
        )
        .increment(1);
        for pop in self.pops {
            metrics::counter!("parapet_dns_pop_answers_total", "pop" => pop.clone()).increment(1);
        }
        if self.truncated {
            metrics::counter!("parapet_dns_truncated_total").increment(1);
        }
        if log {
            tracing::info!(
                target: "parapet_dns::query",
                client = %self.client,
                protocol,
                name = %self.query.map(|q| q.name().to_string()).unwrap_or_default(),
                qtype = self.qtype,
                rcode = self.rcode,
                truncated = self.truncated,
                ecs = %self.subnet.map(|s| format!("{}/{}", s.addr(), s.source_prefix())).unwrap_or_default(),
                scope = self.scope,
                pops = %self.pops.join(","),
                "query"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::RecordType;

    #[test]
    fn query_types_outside_the_known_set_are_other() {
        assert_eq!(super::qtype_label(RecordType::AAAA), "AAAA");
        assert_eq!(super::qtype_label(RecordType::Unknown(65_280)), "other");
        assert_eq!(super::qtype_label(RecordType::NULL), "other");
    }
}
