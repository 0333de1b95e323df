//! Geo answers over the network: parapet-dns on loopback, queried with
//! hickory's client over UDP and TCP, locating clients in DB-IP's City
//! Lite database.

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const SHOP: &str = "shop.cdn.example.net.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokyo_and_frankfurt_subnets_get_their_pops_with_the_scope_echoed() {
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let tokyo = ask(
            dns.address,
            transport,
            SHOP,
            RecordType::A,
            Some(TOKYO_SUBNET),
        )
        .await;
        assert_eq!(rcode(&tokyo), ResponseCode::NoError);
        assert!(tokyo.metadata.authoritative);
        assert_eq!(addresses(&tokyo), ["192.0.2.1"], "{transport:?}");
        assert_eq!(tokyo.answers[0].ttl, 30);
        // DB-IP's network for 126.0.0.0 is a /23: the answer holds for all of it.
        assert_eq!(
            echoed_subnet(&tokyo),
            Some(("126.0.0.0".into(), 24, 23)),
            "{transport:?}"
        );

        let frankfurt = ask(
            dns.address,
            transport,
            SHOP,
            RecordType::A,
            Some(FRANKFURT_SUBNET),
        )
        .await;
        assert_eq!(addresses(&frankfurt), ["192.0.2.2"], "{transport:?}");
        assert_eq!(
            echoed_subnet(&frankfurt),
            Some(("212.227.0.0".into(), 24, 21))
        );
    }
    // IPv6: 2001:200::/40 is in Fujisawa, near Tokyo.
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::AAAA,
        Some("2001:200::/48"),
    )
    .await;
    assert_eq!(addresses(&answer), ["2001:db8::1"]);
    assert_eq!(echoed_subnet(&answer), Some(("2001:200::".into(), 48, 40)));
    // Any name under the zone is a distribution; names are case-insensitive.
    let answer = ask(
        dns.address,
        Transport::Udp,
        "Other.CDN.example.net.",
        RecordType::A,
        Some(FRANKFURT_SUBNET),
    )
    .await;
    assert_eq!(addresses(&answer), ["192.0.2.2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_marked_down_is_skipped() {
    let pops = POPS.replacen(
        "ipv6 = [\"2001:db8::1\"]",
        "ipv6 = [\"2001:db8::1\"]\nenabled = false",
        1,
    );
    let dns = TestDns::start(&pops, Some("answers = 2\n"), Some(dbip())).await;
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some(TOKYO_SUBNET),
    )
    .await;
    // From Tokyo, San Francisco (8 280 km) then Frankfurt (9 330 km).
    assert_eq!(addresses(&answer), ["192.0.2.4", "192.0.2.2"]);
    // For AAAA only Frankfurt is left.
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::AAAA,
        Some(TOKYO_SUBNET),
    )
    .await;
    assert_eq!(addresses(&answer), ["2001:db8::2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_pop_is_down_the_defaults_are_answered() {
    let pops = POPS.replace("ipv4 = [", "enabled = false\nipv4 = [");
    let dns = TestDns::start(&pops, Some("default_pops = [\"nyc\"]\n"), Some(dbip())).await;
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some(TOKYO_SUBNET),
    )
    .await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert_eq!(addresses(&answer), ["192.0.2.3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_ecs_are_located_by_source_address() {
    let settings = "default_pops = [\"sfo\"]\nanswers = 1\n";
    let dns = TestDns::start(POPS, Some(settings), Some(dbip())).await;
    // 127.0.0.1 is in no database: the defaults, and no ECS in the answer.
    let answer = ask(dns.address, Transport::Udp, SHOP, RecordType::A, None).await;
    assert_eq!(addresses(&answer), ["192.0.2.4"]);
    assert_eq!(echoed_subnet(&answer), None);
    // Source prefix 0 asks that the client's address not be used: the
    // resolver's address is, and the scope is 0 (RFC 7871 §7.1.2).
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some("126.0.0.0/0"),
    )
    .await;
    assert_eq!(addresses(&answer), ["192.0.2.4"]);
    assert_eq!(echoed_subnet(&answer).map(|s| (s.1, s.2)), Some((0, 0)));
    // Answers that do not depend on location carry scope 0.
    let answer = ask(
        dns.address,
        Transport::Udp,
        "cdn.example.net.",
        RecordType::SOA,
        Some(TOKYO_SUBNET),
    )
    .await;
    assert_eq!(echoed_subnet(&answer), Some(("126.0.0.0".into(), 24, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_geoip_database_everyone_gets_the_defaults() {
    let dns = TestDns::start(
        POPS,
        Some("default_pops = [\"fra\", \"tyo\"]\nanswers = 2\n"),
        None,
    )
    .await;
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some(TOKYO_SUBNET),
    )
    .await;
    assert_eq!(addresses(&answer), ["192.0.2.2", "192.0.2.1"]);
    assert_eq!(echoed_subnet(&answer).map(|s| s.2), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn country_level_locations_use_the_country_centroid() {
    // In the small test database 100.64.1.0/24 has a country (DE) and no
    // coordinates.
    let dns = TestDns::start(POPS, None, Some(testdata("geo-test.mmdb"))).await;
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some("100.64.1.0/24"),
    )
    .await;
    assert_eq!(addresses(&answer), ["192.0.2.2"]);
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some("203.0.113.0/24"),
    )
    .await;
    assert_eq!(addresses(&answer), ["192.0.2.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_soa_ns_and_negative_answers() {
    let settings = r#"
nameservers = ["ns1", "ns2.example.org."]

[soa]
serial = 2026112201
minimum = 45

[[record]]
name = "ns1"
type = "A"
value = "192.0.2.53"

[[record]]
name = "www"
type = "CNAME"
value = "shop.cdn.example.net."
"#;
    let dns = TestDns::start(POPS, Some(settings), Some(dbip())).await;
    let soa = ask(
        dns.address,
        Transport::Udp,
        "cdn.example.net.",
        RecordType::SOA,
        None,
    )
    .await;
    assert!(soa.metadata.authoritative);
    match &soa.answers[0].data {
        RData::SOA(data) => {
            assert_eq!(data.serial, 2026112201);
            assert_eq!(data.mname.to_string(), "ns1.cdn.example.net.");
            assert_eq!(data.rname.to_string(), "hostmaster.cdn.example.net.");
        }
        other => panic!("not an SOA: {other:?}"),
    }
    let ns = ask(
        dns.address,
        Transport::Tcp,
        "cdn.example.net.",
        RecordType::NS,
        None,
    )
    .await;
    let names: Vec<String> = ns.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(names, ["ns1.cdn.example.net.", "ns2.example.org."]);
    assert_eq!(addresses_in(&ns.additionals), ["192.0.2.53"]);

    // NXDOMAIN with the SOA in authority, its TTL the negative TTL.
    let missing = ask(
        dns.address,
        Transport::Udp,
        "a.b.cdn.example.net.",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(rcode(&missing), ResponseCode::NXDomain);
    assert!(missing.answers.is_empty());
    assert_eq!(missing.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(missing.authorities[0].ttl, 45);
    // NODATA: the name exists, the type does not.
    let nodata = ask(dns.address, Transport::Udp, SHOP, RecordType::MX, None).await;
    assert_eq!(rcode(&nodata), ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    // A static CNAME answers every type.
    let cname = ask(
        dns.address,
        Transport::Udp,
        "www.cdn.example.net.",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(cname.answers[0].record_type(), RecordType::CNAME);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_zone_other_classes_and_transfers_are_refused() {
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    for name in ["example.org.", "net.", "xcdn.example.net."] {
        let answer = ask(dns.address, Transport::Udp, name, RecordType::A, None).await;
        assert_eq!(rcode(&answer), ResponseCode::Refused, "{name}");
        assert!(!answer.metadata.authoritative, "{name}");
    }
    let mut chaos = question("cdn.example.net.", RecordType::TXT, None);
    chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    assert_eq!(
        rcode(&exchange(dns.address, Transport::Udp, chaos).await),
        ResponseCode::Refused
    );
    let axfr = ask(
        dns.address,
        Transport::Tcp,
        "cdn.example.net.",
        RecordType::AXFR,
        None,
    )
    .await;
    assert_eq!(rcode(&axfr), ResponseCode::Refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_gets_a_minimal_answer() {
    let dns = TestDns::start(POPS, Some("answers = 2\n"), Some(dbip())).await;
    let answer = ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::ANY,
        Some(TOKYO_SUBNET),
    )
    .await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    // One RRset (RFC 8482): the A records, no AAAA.
    assert!(
        answer
            .answers
            .iter()
            .all(|r| r.record_type() == RecordType::A),
        "{answer:?}"
    );
    assert_eq!(addresses(&answer).len(), 2);
    let apex = ask(
        dns.address,
        Transport::Udp,
        "cdn.example.net.",
        RecordType::ANY,
        None,
    )
    .await;
    assert_eq!(apex.answers.len(), 1);
    assert_eq!(apex.answers[0].record_type(), RecordType::SOA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_udp_answers_are_truncated_and_complete_over_tcp() {
    // 120 addresses: 16 bytes each compressed, about 1 950 bytes.
    let many: Vec<String> = (1..=120).map(|i| format!("\"198.18.0.{i}\"")).collect();
    let pops = format!(
        "[[pop]]\nid = \"big\"\nlat = 0.0\nlon = 0.0\nipv4 = [{}]\n",
        many.join(", ")
    );
    let dns = TestDns::start(&pops, None, None).await;

    // Without EDNS a UDP answer may hold 512 bytes.
    let mut plain = question(SHOP, RecordType::A, None);
    plain.edns = None;
    let answer = hickory_proto::op::Message::from_vec(
        &raw_udp(dns.address, &plain.to_vec().expect("encode"))
            .await
            .expect("answer"),
    )
    .expect("decodes");
    assert!(answer.metadata.truncation, "TC must be set");
    // With EDNS 4096 the server still keeps to 1232 bytes.
    let big = question(SHOP, RecordType::A, None);
    let bytes = raw_udp(dns.address, &big.to_vec().expect("encode"))
        .await
        .expect("answer");
    assert!(bytes.len() <= 1232, "{}", bytes.len());
    assert!(
        hickory_proto::op::Message::from_vec(&bytes)
            .expect("decodes")
            .metadata
            .truncation
    );

    let full = ask(dns.address, Transport::Tcp, SHOP, RecordType::A, None).await;
    assert!(!full.metadata.truncation);
    assert_eq!(addresses(&full).len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_queries_by_type_rcode_pop_and_ecs() {
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    ask(
        dns.address,
        Transport::Udp,
        SHOP,
        RecordType::A,
        Some(TOKYO_SUBNET),
    )
    .await;
    ask(
        dns.address,
        Transport::Udp,
        "nope.example.org.",
        RecordType::AAAA,
        None,
    )
    .await;
    // Types of the querier's choosing share one label value.
    for private_use in [65_280, 65_281, 65_282] {
        ask(
            dns.address,
            Transport::Udp,
            SHOP,
            RecordType::Unknown(private_use),
            None,
        )
        .await;
    }
    let text = metrics(&dns).await;
    for expected in [
        "parapet_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\",protocol=\"udp\",ecs=\"yes\"}",
        "parapet_dns_queries_total{qtype=\"AAAA\",rcode=\"REFUSED\",protocol=\"udp\",ecs=\"no\"}",
        "parapet_dns_queries_total{qtype=\"other\",rcode=\"NOERROR\",protocol=\"udp\",ecs=\"no\"} 3",
        "parapet_dns_pop_answers_total{pop=\"tyo\"}",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert!(!text.contains("TYPE65"), "{text}");
}
