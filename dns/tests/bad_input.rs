//! Bad input over the network: malformed and truncated packets, odd
//! opcodes, EDNS versions and client subnets. Each gets a precise answer
//! (or silence where answering would help an attacker), and the server
//! keeps answering.

mod common;

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;

const SHOP: &str = "shop.cdn.example.net.";

/// The answer to raw bytes, decoded.
async fn answer(
    address: std::net::SocketAddr,
    transport: Transport,
    bytes: &[u8],
) -> Option<Message> {
    let raw = match transport {
        Transport::Udp => raw_udp(address, bytes).await,
        Transport::Tcp => raw_tcp(address, bytes).await,
    }?;
    Some(Message::from_vec(&raw).expect("the server's answer decodes"))
}

/// The server still answers a good question.
async fn still_answers(dns: &TestDns) {
    for transport in [Transport::Udp, Transport::Tcp] {
        let answer = ask(
            dns.address,
            transport,
            SHOP,
            RecordType::A,
            Some(TOKYO_SUBNET),
        )
        .await;
        assert_eq!(addresses(&answer), ["192.0.2.1"], "{transport:?}");
    }
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        bytes.extend_from_slice(&count.to_be_bytes());
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_silence() {
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    let good = question(SHOP, RecordType::A, None)
        .to_vec()
        .expect("encode");
    for transport in [Transport::Udp, Transport::Tcp] {
        // Shorter than a header: nothing to answer to.
        assert!(
            answer(dns.address, transport, b"\x12\x34\x01")
                .await
                .is_none(),
            "{transport:?}"
        );
        // A header promising a question that is not there.
        let formerr = answer(dns.address, transport, &header(7, 0x0100, [1, 0, 0, 0])).await;
        let formerr = formerr.expect("an answer");
        assert_eq!(formerr.metadata.id, 7);
        assert_eq!(
            formerr.metadata.response_code,
            ResponseCode::FormErr,
            "{transport:?}"
        );
        // The question cut off halfway.
        let cut = answer(dns.address, transport, &good[..good.len() - 15])
            .await
            .expect("an answer");
        assert_eq!(
            cut.metadata.response_code,
            ResponseCode::FormErr,
            "{transport:?}"
        );
        // A name label running past the end.
        let mut runaway = header(8, 0x0100, [1, 0, 0, 0]);
        runaway.extend_from_slice(b"\x3fshort");
        let runaway = answer(dns.address, transport, &runaway)
            .await
            .expect("an answer");
        assert_eq!(runaway.metadata.response_code, ResponseCode::FormErr);
        // A compression pointer to itself.
        let mut looped = header(9, 0x0100, [1, 0, 0, 0]);
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let looped = answer(dns.address, transport, &looped)
            .await
            .expect("an answer");
        assert_eq!(looped.metadata.response_code, ResponseCode::FormErr);
        // Random bytes.
        let noise: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = answer(dns.address, transport, &noise).await;
    }
    still_answers(&dns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_questions_are_formerr() {
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    let mut message = question(SHOP, RecordType::A, None);
    let second = message.queries[0].clone();
    message.add_query(second);
    let answer = exchange(dns.address, Transport::Udp, message).await;
    assert_eq!(rcode(&answer), ResponseCode::FormErr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_not_answered_and_other_opcodes_are_notimp() {
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    // A message marked as a response is never answered (no reflection).
    let mut response = question(SHOP, RecordType::A, None);
    response.metadata.message_type = MessageType::Response;
    assert!(raw_udp(dns.address, &response.to_vec().expect("encode"))
        .await
        .is_none());
    for op_code in [OpCode::Notify, OpCode::Update, OpCode::Status] {
        let mut message = question("cdn.example.net.", RecordType::SOA, None);
        message.metadata.op_code = op_code;
        let answer = exchange(dns.address, Transport::Udp, message).await;
        assert_eq!(rcode(&answer), ResponseCode::NotImp, "{op_code:?}");
    }
    still_answers(&dns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_edns_versions_get_badvers() {
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    let mut message = question(SHOP, RecordType::A, None);
    if let Some(edns) = message.edns.as_mut() {
        edns.set_version(1);
    }
    let answer = exchange(dns.address, Transport::Udp, message).await;
    // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
    assert_eq!(u16::from(rcode(&answer)), u16::from(ResponseCode::BADVERS));
    assert!(answer.answers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_subnets_are_formerr() {
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    // The ECS option by hand: IPv4 with a source prefix of 40 bits.
    let mut bytes = question(SHOP, RecordType::A, None)
        .to_vec()
        .expect("encode");
    let option: [u8; 13] = [0, 8, 0, 9, 0, 1, 40, 0, 126, 0, 0, 0, 0];
    // The OPT record ends the message: grow its RDLENGTH and append.
    let rdlength_at = bytes.len() - 2;
    let rdlength =
        u16::from_be_bytes([bytes[rdlength_at], bytes[rdlength_at + 1]]) + option.len() as u16;
    bytes[rdlength_at..].copy_from_slice(&rdlength.to_be_bytes());
    bytes.extend_from_slice(&option);
    let answer = Message::from_vec(&raw_udp(dns.address, &bytes).await.expect("an answer"))
        .expect("decodes");
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    // An unknown address family (3).
    let mut bytes = question(SHOP, RecordType::A, None)
        .to_vec()
        .expect("encode");
    let option: [u8; 8] = [0, 8, 0, 4, 0, 3, 0, 0];
    let rdlength =
        u16::from_be_bytes([bytes[rdlength_at], bytes[rdlength_at + 1]]) + option.len() as u16;
    bytes[rdlength_at..].copy_from_slice(&rdlength.to_be_bytes());
    bytes.extend_from_slice(&option);
    let answer = raw_udp(dns.address, &bytes)
        .await
        .map(|raw| Message::from_vec(&raw).expect("decodes"));
    let code = answer.map(|a| a.metadata.response_code);
    assert_eq!(code, Some(ResponseCode::FormErr));
    still_answers(&dns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_client_that_stops_mid_message_does_not_block_others() {
    use tokio::io::AsyncWriteExt;
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    let mut stalled = tokio::net::TcpStream::connect(dns.address)
        .await
        .expect("connect");
    // Announces 200 bytes, sends 3.
    stalled.write_all(&[0, 200, 1, 2, 3]).await.expect("write");
    still_answers(&dns).await;
    drop(stalled);
}
