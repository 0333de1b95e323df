//! Response rate limiting over real UDP: one client prefix floods the
//! server; past its rate it gets every second answer empty and truncated
//! and nothing for the others, while another prefix keeps getting every
//! answer, and the flooding prefix still gets full answers over TCP.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinEncodable;

const SHOP: &str = "shop.cdn.example.net.";

/// What came back for a flood of `count` queries from `from`.
#[derive(Debug, Default)]
struct Tally {
    full: usize,
    truncated: usize,
}

/// Sends the A query for `SHOP` with `id` from `socket` to `server`.
async fn send_query(socket: &tokio::net::UdpSocket, server: SocketAddr, id: u16) {
    let mut message = question(SHOP, RecordType::A, None);
    message.metadata.id = id;
    socket
        .send_to(&message.to_bytes().expect("encodes"), server)
        .await
        .expect("send");
}

/// Sends `count` A queries for `SHOP` from `from` in ten batches 100 ms
/// apart (a second of flood), then reads the answers until 500 ms of
/// silence (the socket's buffer holds them meanwhile).
async fn flood(server: SocketAddr, from: &str, count: u16) -> Tally {
    let socket = tokio::net::UdpSocket::bind(from).await.expect("bind");
    for id in 0..count {
        if id > 0 && id % (count / 10) == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        send_query(&socket, server, id).await;
    }
    let mut tally = Tally::default();
    let mut ids = HashSet::new();
    let mut buffer = vec![0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buffer)).await
    {
        let answer = Message::from_vec(&buffer[..n]).expect("an answer decodes");
        assert!(ids.insert(answer.metadata.id), "one answer per query");
        if answer.metadata.truncation {
            assert!(answer.answers.is_empty(), "a slipped answer is empty");
            tally.truncated += 1;
        } else {
            assert!(!addresses(&answer).is_empty());
            tally.full += 1;
        }
    }
    tally
}

/// Asks `SHOP` once from `from` over UDP: whether a full answer came.
async fn answered_from(server: SocketAddr, from: &str, id: u16) -> bool {
    let socket = tokio::net::UdpSocket::bind(from).await.expect("bind");
    send_query(&socket, server, id).await;
    let mut buffer = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer)).await {
        Ok(Ok(n)) => {
            let answer = Message::from_vec(&buffer[..n]).expect("decodes");
            !answer.metadata.truncation && !addresses(&answer).is_empty()
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_prefix_is_limited_and_another_prefix_gets_every_answer() {
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    let server = dns.address;
    // The victim asks 15 times during the second of flood, within its own
    // rate (20 a second by default).
    let (attacker, victim) = tokio::join!(flood(server, "127.0.0.1:0", 400), async {
        let mut answered = 0;
        for id in 0..15 {
            answered += usize::from(answered_from(server, "127.0.1.1:0", id).await);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        answered
    });
    assert_eq!(victim, 15, "the other prefix gets every answer");
    // 20 at once (the burst), then 20 a second as it refills.
    assert!(
        (20..=45).contains(&attacker.full),
        "{attacker:?}: the attacker's prefix gets about its rate"
    );
    // Every second answer past the limit slips, the rest are dropped.
    let limited = 400 - attacker.full;
    assert!(
        attacker.truncated.abs_diff(limited / 2) <= 1,
        "{attacker:?}: half the limited answers slip"
    );
    // TCP is never limited.
    let over_tcp = ask(server, Transport::Tcp, SHOP, RecordType::A, None).await;
    assert!(!addresses(&over_tcp).is_empty());
    let text = metrics(&dns).await;
    for expected in [
        "parapet_dns_rrl_total{action=\"dropped\"}",
        "parapet_dns_rrl_total{action=\"slipped\"}",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_configurable_and_can_be_turned_off() {
    let dns = TestDns::start(POPS, Some("[rrl]\nenabled = false\n"), Some(dbip())).await;
    let all = flood(dns.address, "127.0.0.1:0", 200).await;
    assert_eq!((all.full, all.truncated), (200, 0), "{all:?}");

    let dns = TestDns::start(
        POPS,
        Some("[rrl]\nresponses_per_second = 5\nslip = 1\n"),
        Some(dbip()),
    )
    .await;
    let limited = flood(dns.address, "127.0.0.1:0", 100).await;
    // 5 at once, then 5 a second over the second of flood.
    assert!((5..=12).contains(&limited.full), "{limited:?}");
    assert_eq!(
        limited.full + limited.truncated,
        100,
        "slip 1: all truncated"
    );
}
