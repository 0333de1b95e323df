//! Customer certificates end to end, every part a real process: a
//! certificate uploaded with `parapet cert upload` is served by the edge
//! for its domain (SNI), kept owner-only with the edge's snapshot, and
//! replaced without dropping open connections; `parapet cert acme` has the
//! controller obtain one from a real ACME server (Let's Encrypt's Pebble),
//! whose HTTP-01 validation the edge answers, in place of an uploaded one;
//! a domain that does not reach the edges fails with the server's reason.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parapet_e2e::cluster::Cluster;
use parapet_e2e::tls::TestCa;
use parapet_e2e::{eventually, free_port, log_of, wait_for_port, Process};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A TLS connection to `address` naming `name`, trusting `roots_pem`.
async fn connect(
    address: SocketAddr,
    name: &str,
    roots_pem: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_certs(roots_pem) {
        roots.add(cert).expect("a root certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(address).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_string()).expect("a name"), tcp)
        .await
}

fn rustls_pki_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// The leaf certificate the server presented on `stream`.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .expect("a certificate")
        .clone()
        .into_owned()
}

/// The first certificate in a PEM file.
fn leaf_of(file: &Path) -> CertificateDer<'static> {
    rustls_pki_certs(&std::fs::read(file).expect("the certificate")).remove(0)
}

/// `GET /page.html` for `host` on an open connection (kept alive): the
/// response text up to the page's end.
async fn get_page(stream: &mut TlsStream<TcpStream>, host: &str) -> String {
    let request = format!("GET /page.html HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("</p>") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .expect("reads");
        assert!(
            read > 0,
            "the connection closed: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&received).to_string()
}

/// Customer `customer` with distribution `id` for `domain`; its token.
async fn site(cluster: &Cluster, customer: &str, id: &str, domain: &str) -> String {
    let token = cluster.customer(customer).await;
    apply(cluster, &token, id, domain).await;
    token
}

/// Distribution `id` for `domain`, of `token`'s customer, in front of the
/// cluster's origin.
async fn apply(cluster: &Cluster, token: &str, id: &str, domain: &str) {
    let (status, body) = cluster
        .call(
            "PUT",
            &format!("/v1/distributions/{id}"),
            Some(token),
            Some(json!({
                "domains": [domain],
                "origin": [{"url": cluster.origin}],
                "behavior": [{"path": "*"}],
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Customer `acme` with distribution `shop` for `shop.example`; its token.
async fn shop(cluster: &Cluster) -> String {
    site(cluster, "acme", "shop", "shop.example").await
}

/// `parapet cert upload` of `files` for `dist` as `token`.
fn upload(cluster: &Cluster, token: &str, dist: &str, files: &parapet_e2e::tls::PemFiles) {
    let home = cluster.dir.path().join("home");
    let (code, out, err) = cluster.cli(
        &home,
        token,
        &[
            "cert",
            "upload",
            dist,
            "--cert",
            &files.cert.to_string_lossy(),
            "--key",
            &files.key.to_string_lossy(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(dist), "{out}");
}

/// An edge named `fra-1` with a plain and a TLS listener.
fn tls_edge(cluster: &Cluster, port: u16, tls_port: u16) -> Process {
    let mut args = cluster.edge_args("fra-1", "default", port);
    args.extend(["--listen-tls".to_string(), format!("127.0.0.1:{tls_port}")]);
    let client = cluster.ca.issue(&["fra-1"], "fra-1");
    args.extend(cluster.edge_tls_args(Some(&client)));
    let edge = cluster.spawn_edge("fra-1", &args);
    wait_for_port(([127, 0, 0, 1], tls_port).into(), 30);
    edge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_certificates_are_served_by_sni_and_swapped_without_dropping_connections() {
    let cluster = Cluster::start(None, 500);
    let token = shop(&cluster).await;
    let home = cluster.dir.path().join("home");
    let (port, tls_port) = (free_port(), free_port());
    let _edge = tls_edge(&cluster, port, tls_port);
    let tls_address: SocketAddr = ([127, 0, 0, 1], tls_port).into();
    let roots = std::fs::read(&cluster.ca.ca_file).expect("CA");

    // Another customer's site; acme's certificate names it too, which
    // must change nothing for it: certificates serve their own
    // distribution's domains only.
    let other = site(&cluster, "globex", "other", "other.example").await;
    let others = cluster.ca.issue(&["other.example"], "other");
    upload(&cluster, &other, "other", &others);
    let first = cluster
        .ca
        .issue(&["shop.example", "other.example"], "shop-first");
    upload(&cluster, &token, "shop", &first);

    let mut open = eventually(30, "the edge to serve the uploaded certificate", || async {
        let stream = connect(tls_address, "shop.example", &roots).await.ok()?;
        (presented(&stream) == leaf_of(&first.cert)).then_some(stream)
    })
    .await;
    let page = get_page(&mut open, "shop.example").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    // The edge keeps the certificate with its snapshot, owner-only.
    let kept = cluster.dir.path().join("fra-1/distributions/shop.json");
    let mode = std::fs::metadata(&kept).expect("kept").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", kept.display());
    assert!(std::fs::read_to_string(&kept)
        .unwrap()
        .contains("PRIVATE KEY"));

    let second = cluster
        .ca
        .issue(&["shop.example", "other.example"], "shop-second");
    upload(&cluster, &token, "shop", &second);
    eventually(30, "new handshakes to get the new certificate", || async {
        let stream = connect(tls_address, "shop.example", &roots).await.ok()?;
        (presented(&stream) == leaf_of(&second.cert)).then_some(())
    })
    .await;
    // The connection opened before the swap still serves.
    let page = get_page(&mut open, "shop.example").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert_eq!(presented(&open), leaf_of(&first.cert));
    let mut theirs = connect(tls_address, "other.example", &roots)
        .await
        .expect("other.example");
    assert_eq!(
        presented(&theirs),
        leaf_of(&others.cert),
        "acme's certificate took globex's name"
    );
    let page = get_page(&mut theirs, "other.example").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    let (code, out, err) = cluster.cli(&home, &token, &["cert", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("shop "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("uploaded") && row.contains("shop.example"),
        "{out}"
    );
    assert!(out.lines().next().unwrap().contains("DAYS_LEFT"), "{out}");

    let (code, out, err) = cluster.cli(&home, &token, &["cert", "rm", "shop"]);
    assert_eq!(code, 0, "{out}{err}");
    eventually(
        30,
        "handshakes for the name to fail once removed",
        || async {
            connect(tls_address, "shop.example", &roots)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

/// Pebble (Let's Encrypt's ACME test server) with its mock DNS answering
/// 127.0.0.1 for every name, validating HTTP-01 on `http_port`.
struct Pebble {
    _dns: Process,
    _pebble: Process,
    /// The ACME directory URL.
    directory: String,
    /// The authority of the directory's TLS certificate.
    tls_ca: TestCa,
    management: String,
    /// The mock DNS's management API.
    dns_management: String,
}

impl Pebble {
    fn start(dir: &Path, http_port: u16) -> Pebble {
        let (dns_port, management_port, dns_management) = (free_port(), free_port(), free_port());
        let dns = Process::start(
            "challtestsrv",
            Path::new("pebble-challtestsrv"),
            &[
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_management}"),
            ]
            .map(String::from),
            &[],
            dir,
        );
        let tls_ca = TestCa::new(dir, "pebble-ca");
        let server = tls_ca.issue(&["127.0.0.1", "localhost"], "pebble");
        let port = free_port();
        let config = dir.join("pebble.json");
        std::fs::write(
            &config,
            json!({"pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": server.cert,
                "privateKey": server.key,
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }})
            .to_string(),
        )
        .expect("pebble config");
        let pebble = Process::start(
            "pebble",
            Path::new("pebble"),
            &[
                "-config",
                &config.to_string_lossy(),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ]
            .map(String::from),
            &[
                ("PEBBLE_VA_NOSLEEP", "1".to_string()),
                ("PEBBLE_WFE_NONCEREJECT", "0".to_string()),
            ],
            dir,
        );
        wait_for_port(([127, 0, 0, 1], port).into(), 30);
        wait_for_port(([127, 0, 0, 1], management_port).into(), 30);
        Pebble {
            _dns: dns,
            _pebble: pebble,
            directory: format!("https://127.0.0.1:{port}/dir"),
            tls_ca,
            management: format!("https://127.0.0.1:{management_port}"),
            dns_management: format!("http://127.0.0.1:{dns_management}"),
        }
    }

    /// Points `host` at `address` in the mock DNS (instead of 127.0.0.1).
    async fn point(&self, host: &str, address: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/add-a", self.dns_management))
            .json(&json!({"host": format!("{host}."), "addresses": [address]}))
            .send()
            .await
            .expect("the mock DNS answers");
        assert_eq!(response.status(), 200);
    }

    /// The root that signs Pebble's certificates (made at its start).
    async fn issuing_root(&self) -> Vec<u8> {
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&self.tls_ca.ca_file).unwrap())
                    .unwrap(),
            )
            .build()
            .expect("client");
        let response = http
            .get(format!("{}/roots/0", self.management))
            .send()
            .await
            .expect("Pebble's management answers");
        assert_eq!(response.status(), 200);
        response.bytes().await.expect("the root").to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_obtains_a_certificate_by_acme_validated_through_the_edge() {
    let pebble_dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let pebble = Pebble::start(pebble_dir.path(), port);
    let acme = format!(
        "[acme]\ndirectory = \"{}\"\ncontact = \"mailto:ops@example.net\"\nca_file = \"{}\"\n",
        pebble.directory,
        pebble.tls_ca.ca_file.display()
    );
    let cluster = Cluster::start_with_settings(None, 500, move |_| acme);
    let token = shop(&cluster).await;
    let tls_port = free_port();
    let _edge = tls_edge(&cluster, port, tls_port);

    // An uploaded certificate serves until the ACME one is issued, which
    // is ordered at once, not at the uploaded one's renewal time.
    let uploaded = cluster.ca.issue(&["shop.example"], "shop-uploaded");
    upload(&cluster, &token, "shop", &uploaded);
    let home = cluster.dir.path().join("home");
    let (code, out, err) = cluster.cli(&home, &token, &["cert", "acme", "shop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("uploaded"), "{out}");

    let info: Value = eventually(120, "the ACME certificate", || async {
        let (status, body) = cluster
            .call(
                "GET",
                "/v1/distributions/shop/certificate",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        if let Some(error) = body["acme_error"].as_str() {
            panic!(
                "the order failed: {error}\n{}\n{}",
                log_of(cluster.log_dir(), "controller"),
                log_of(pebble_dir.path(), "pebble")
            );
        }
        (body["source"] == "acme" && body["names"] == json!(["shop.example"])).then_some(body)
    })
    .await;
    assert_eq!(info["source"], "acme");
    let renews_from = info["renews_from_ms"].as_i64().expect("a renewal time");
    assert!(
        renews_from < info["not_after_ms"].as_i64().unwrap(),
        "{info}"
    );

    let root = pebble.issuing_root().await;
    let tls_address: SocketAddr = ([127, 0, 0, 1], tls_port).into();
    let mut stream = eventually(30, "the edge to serve the ACME certificate", || async {
        connect(tls_address, "shop.example", &root).await.ok()
    })
    .await;
    let page = get_page(&mut stream, "shop.example").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // A domain that does not point at the edges: the order fails, and
    // the record says why; the other certificate is untouched.
    apply(&cluster, &token, "ghost", "ghost.example").await;
    pebble.point("ghost.example", "127.0.0.9").await;
    let (code, out, err) = cluster.cli(&home, &token, &["cert", "acme", "ghost"]);
    assert_eq!(code, 0, "{out}{err}");
    let error = eventually(60, "the failed order's error", || async {
        let (_, body) = cluster
            .call(
                "GET",
                "/v1/distributions/ghost/certificate",
                Some(&token),
                None,
            )
            .await;
        body["acme_error"].as_str().map(str::to_string)
    })
    .await;
    assert!(
        error.starts_with("validation failed")
            && error.contains("ghost.example")
            && error.contains("127.0.0.9"),
        "{error}"
    );
    let (code, out, _) = cluster.cli(&home, &token, &["cert", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("validation failed"), "{out}");
    let (_, shop) = cluster
        .call(
            "GET",
            "/v1/distributions/shop/certificate",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(shop["sha256"], info["sha256"]);

    // The challenges are gone once the order completed.
    let kept = cluster.dir.path().join("fra-1/distributions/shop.json");
    eventually(10, "the challenge to be withdrawn", || async {
        let kept: Value = serde_json::from_slice(&std::fs::read(&kept).ok()?).ok()?;
        (kept["acme_challenges"] == json!({})).then_some(())
    })
    .await;
}
