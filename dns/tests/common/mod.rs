//! Shared pieces of the geo-DNS tests: a server started in-process on
//! loopback, hickory's DNS client over UDP and TCP, and raw sockets for
//! bytes no client would send.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use parapet_dns::controller::ControllerSource;
use parapet_dns::state::Sources;
use parapet_dns::{launch, LaunchOptions, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Four PoPs: Tokyo, Frankfurt, New York, San Francisco.
pub const POPS: &str = r#"
[[pop]]
id = "tyo"
lat = 35.68
lon = 139.69
ipv4 = ["192.0.2.1"]
ipv6 = ["2001:db8::1"]

[[pop]]
id = "fra"
lat = 50.11
lon = 8.68
ipv4 = ["192.0.2.2"]
ipv6 = ["2001:db8::2"]

[[pop]]
id = "nyc"
lat = 40.71
lon = -74.0
ipv4 = ["192.0.2.3"]

[[pop]]
id = "sfo"
lat = 37.77
lon = -122.42
ipv4 = ["192.0.2.4"]
"#;

/// The zone every test serves.
pub const ZONE: &str = "cdn.example.net";

/// Subnets DB-IP's City Lite (2023-04) places in Tokyo (/23 network) and
/// Frankfurt am Main (/21 network).
pub const TOKYO_SUBNET: &str = "126.0.0.0/24";
pub const FRANKFURT_SUBNET: &str = "212.227.0.0/24";

/// `target/testdata/<name>`, made by `make testdata`.
pub fn testdata(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/testdata")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make testdata`",
        path.display()
    );
    path
}

/// DB-IP's City Lite database.
pub fn dbip() -> PathBuf {
    testdata("dbip-city-lite.mmdb")
}

/// A server on loopback with its files in a temporary directory.
pub struct TestDns {
    pub running: Running,
    pub address: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestDns {
    /// Starts a server for `ZONE` with `pops`, optional settings and GeoIP
    /// database, and a metrics listener.
    pub async fn start(pops: &str, settings: Option<&str>, geoip: Option<PathBuf>) -> TestDns {
        Self::start_with(pops, settings, geoip, None).await
    }

    /// Starts a server that also follows a controller's edge list.
    pub async fn start_with(
        pops: &str,
        settings: Option<&str>,
        geoip: Option<PathBuf>,
        controller: Option<ControllerSource>,
    ) -> TestDns {
        let dir = tempfile::tempdir().expect("temp dir");
        let pops_path = dir.path().join("pops.toml");
        std::fs::write(&pops_path, pops).expect("write pops");
        let config = settings.map(|text| {
            let path = dir.path().join("dns.toml");
            std::fs::write(&path, text).expect("write settings");
            path
        });
        let running = launch(LaunchOptions {
            sources: Sources {
                zone: ZONE.into(),
                pops: pops_path,
                config,
                geoip,
                query_log: false,
            },
            listen: "127.0.0.1:0".parse().expect("address"),
            metrics: Some("127.0.0.1:0".parse().expect("address")),
            workers: 2,
            controller,
        })
        .await
        .expect("parapet-dns starts");
        let address = running.address;
        TestDns {
            running,
            address,
            dir,
        }
    }
}

/// UDP or TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A question as a client sends it.
pub fn question(name: &str, qtype: RecordType, subnet: Option<&str>) -> Message {
    let mut message = Message::query();
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some(subnet) = subnet {
        let (address, prefix) = subnet.split_once('/').expect("a/len");
        let subnet = ClientSubnet::new(
            address.parse().expect("ip"),
            prefix.parse().expect("len"),
            0,
        );
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
    }
    message.set_edns(edns);
    message
}

/// Sends `message` with hickory's client and returns the answer.
pub async fn exchange(address: SocketAddr, transport: Transport, message: Message) -> Message {
    let provider = TokioRuntimeProvider::new();
    let request = DnsRequest::new(message, DnsRequestOptions::default());
    let response = match transport {
        Transport::Udp => {
            let stream = UdpClientStream::builder(address, provider)
                .with_timeout(Some(Duration::from_secs(5)))
                .build();
            let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
            tokio::spawn(background);
            client.send(request).next().await
        }
        Transport::Tcp => {
            let (connect, handle) =
                TcpClientStream::new(address, None, Some(Duration::from_secs(5)), provider);
            let stream = connect.await.expect("TCP connection");
            let (client, background) = Client::<TokioRuntimeProvider>::new(stream, handle);
            tokio::spawn(background);
            client.send(request).next().await
        }
    };
    response
        .expect("a response")
        .expect("a valid response")
        .into_message()
}

/// Asks `name`/`qtype`, optionally with a client subnet.
pub async fn ask(
    address: SocketAddr,
    transport: Transport,
    name: &str,
    qtype: RecordType,
    subnet: Option<&str>,
) -> Message {
    exchange(address, transport, question(name, qtype, subnet)).await
}

/// The addresses in the answer section, as text.
pub fn addresses(message: &Message) -> Vec<String> {
    addresses_in(&message.answers)
}

/// The addresses among `records`, as text.
pub fn addresses_in(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The response's ECS option: (address, source prefix, scope prefix).
pub fn echoed_subnet(message: &Message) -> Option<(String, u8, u8)> {
    match message.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr().to_string(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// The response code, including EDNS's extended bits.
pub fn rcode(message: &Message) -> ResponseCode {
    message.metadata.response_code
}

/// Sends raw bytes over UDP; the answer, or `None` after 1 s of silence.
pub async fn raw_udp(address: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    socket.send_to(bytes, address).await.expect("send");
    let mut buffer = vec![0u8; 65_535];
    match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer)).await {
        Ok(Ok(n)) => Some(buffer[..n].to_vec()),
        _ => None,
    }
}

/// Sends raw bytes over TCP with the two-byte length prefix; the answer,
/// or `None` when the server closes or stays silent for 1 s.
pub async fn raw_tcp(address: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.expect("write");
    let read = async {
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await.ok()?;
        let mut body = vec![0u8; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut body).await.ok()?;
        Some(body)
    };
    tokio::time::timeout(Duration::from_secs(1), read)
        .await
        .ok()
        .flatten()
}

/// Fetches the Prometheus text from the server's metrics listener.
pub async fn metrics(dns: &TestDns) -> String {
    let address = dns.running.metrics.expect("metrics listener");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}
