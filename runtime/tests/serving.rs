//! Protocols (HTTP/1.1, h2c, TLS with SNI and ALPN h2), plugin chains at
//! the four hooks, streaming, and bad input.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config, edge, get, plugins_dir, raw, request, settle, Origin, Reply};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_on_plain_listeners() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    origin.set(
        "/h2",
        Reply::ok("over h2", &[("cache-control", "max-age=60")]),
    );
    let mut sender = h2c(edge.addr()).await;
    for expected in ["MISS", "HIT"] {
        let request = http::Request::get("http://example.test/h2")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = common::collect(sender.send_request(request).await.unwrap()).await;
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "over h2")
        );
        assert_eq!(response.cache(), expected);
        settle().await;
    }
}

/// An h2c (prior knowledge) connection to `addr`, driven in the background.
async fn h2c<B>(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

fn self_signed(
    dir: &std::path::Path,
    name: &str,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    rcgen::CertifiedKey<rcgen::KeyPair>,
) {
    let generated =
        rcgen::generate_simple_self_signed(vec![name.to_string(), format!("*.{name}")]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key, generated)
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    server_name: &str,
    trusted: &rcgen::Certificate,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(addr).await?;
    connector
        .connect(server_name.to_string().try_into().unwrap(), stream)
        .await
}

#[tokio::test]
async fn tls_picks_the_certificate_by_sni_negotiates_h2_and_reloads_certificates() {
    let origin = Origin::start().await;
    origin.set("/secure", Reply::ok("tls", &[]));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, generated) = self_signed(dir.path(), "example.test");
    let (other_cert, other_key, other) = self_signed(dir.path(), "other.test");
    let text = config(&origin.url(), "", "", "")
    .replace(
        "domains = [\"example.test\", \"*.example.test\"]",
        &format!(
            "domains = [\"example.test\", \"*.example.test\"]\ntls = {{ cert = \"{}\", key = \"{}\" }}",
            cert.display(),
            key.display()
        ),
    )
    .replace("address = \"127.0.0.1:0\"\n\n[admin]", "address = \"127.0.0.1:0\"\ntls = true\n\n[admin]");
    let text = format!(
        "{text}\n[[distribution]]\nid = \"other\"\ncustomer = \"b\"\ndomains = [\"other.test\"]\ntls = {{ cert = \"{}\", key = \"{}\" }}\n[[distribution.origin]]\nurl = \"{}\"\n[[distribution.behavior]]\npath = \"*\"\n",
        other_cert.display(),
        other_key.display(),
        origin.url()
    );
    let edge = edge(&text).await;
    let tls = tls_connect(edge.addr(), "www.example.test", &generated.cert)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let ok = http::Request::get("https://www.example.test/secure")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = common::collect(sender.send_request(ok).await.unwrap()).await;
    assert_eq!((response.status, response.text().as_str()), (200, "tls"));
    let misdirected = http::Request::get("https://other.test/secure")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = common::collect(sender.send_request(misdirected).await.unwrap()).await;
    assert_eq!(
        response.status, 421,
        "a connection for one name cannot serve another distribution"
    );
    let other_tls = tls_connect(edge.addr(), "other.test", &other.cert).await;
    assert!(other_tls.is_ok(), "the second distribution's certificate");
    assert!(
        tls_connect(edge.addr(), "unknown.invalid", &generated.cert)
            .await
            .is_err(),
        "no certificate for an unknown name"
    );
    // Replace example.test's certificate and reload: new handshakes see it.
    let (_, _, renewed) = self_signed(dir.path(), "example.test");
    common::admin_post(edge.admin(), "/reload", "secret", "").await;
    assert!(tls_connect(edge.addr(), "example.test", &renewed.cert)
        .await
        .is_ok());
    assert!(tls_connect(edge.addr(), "example.test", &generated.cert)
        .await
        .is_err());
}

#[tokio::test]
async fn plugin_chains_run_at_all_four_hooks_and_their_answers_are_not_cached() {
    let origin = Origin::start().await;
    let plugins = plugins_dir();
    let extra = format!(
        r#"
[[distribution.plugin]]
name = "waf"
wasm = "{waf}"
[[distribution.plugin]]
name = "rewrite"
wasm = "{rewrite}"
config = {{ rules = [{{ match = "prefix", from = "/old", to = "/new", redirect = 301 }}] }}
[[distribution.plugin]]
name = "headers"
wasm = "{headers}"
config = {{ response = {{ strip = ["server"], security_headers = true }} }}
[[distribution.plugin]]
name = "ab"
wasm = "{ab}"
config = {{ paths = ["/page*"], variants = [{{ name = "new", weight = 100, prefix = "/variants/new" }}] }}
"#,
        ab = plugins.join("ab-test.wasm").display(),
        waf = plugins.join("waf.wasm").display(),
        rewrite = plugins.join("rewrite.wasm").display(),
        headers = plugins.join("header-filter.wasm").display(),
    );
    let behavior = r#"viewer_request = ["waf", "rewrite", "ab"]
origin_request = ["ab"]
origin_response = ["ab"]
viewer_response = ["ab", "headers"]"#;
    let edge = edge(&config(&origin.url(), "", behavior, &extra)).await;
    origin.set(
        "/variants/new/page",
        Reply::ok(
            "new page",
            &[("cache-control", "max-age=60"), ("server", "origin/1.0")],
        ),
    );
    let miss = get(edge.addr(), "/page").await;
    assert_eq!(
        (miss.status, miss.cache(), miss.text().as_str()),
        (200, "MISS", "new page")
    );
    assert!(
        miss.header("set-cookie").starts_with("ab_bucket=new"),
        "viewer-response set the cookie"
    );
    assert!(
        miss.header("vary").contains("x-ab-variant"),
        "origin-response added vary"
    );
    assert_eq!(miss.header("server"), "", "viewer-response strips server");
    assert!(
        !miss.header("x-content-type-options").is_empty(),
        "security headers added"
    );
    assert_eq!(
        origin.last("/variants/new/page").headers["x-ab-variant"],
        "new",
        "origin-request chain rewrote the path"
    );
    settle().await;
    let hit = get(edge.addr(), "/page").await;
    assert_eq!(hit.cache(), "HIT");
    assert_eq!(hit.header("server"), "", "viewer-response runs on hits too");
    let blocked = get(edge.addr(), "/page?id=1%27%20OR%201=1--").await;
    assert_eq!(blocked.status, 403, "{}", blocked.text());
    let again = get(edge.addr(), "/page?id=1%27%20OR%201=1--").await;
    assert_eq!(again.status, 403);
    assert_eq!(again.cache(), "", "plugin answers are not cache results");
    let redirect = get(edge.addr(), "/old/x").await;
    assert_eq!(
        (redirect.status, redirect.header("location")),
        (301, "/new/x")
    );
    assert_eq!(origin.hits("/variants/new/page"), 1);
}

#[tokio::test]
async fn a_large_body_streams_to_the_viewer_before_the_origin_finishes() {
    // A raw origin that sends half the body, then waits for the test.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = listener.local_addr().unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
        let half = vec![b'a'; 512 << 10];
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\ncache-control: max-age=60\r\n\r\n",
            )
            .await
            .unwrap();
        stream.write_all(&half).await.unwrap();
        let _ = released.await;
        stream.write_all(&half).await.unwrap();
    });
    let edge = edge(&config(&format!("http://{origin_addr}"), "", "", "")).await;
    let stream = TcpStream::connect(edge.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/stream")
        .header("host", "example.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .expect("headers arrive while the origin is still sending")
        .unwrap();
    let mut body = response.into_body();
    let mut received = 0;
    while received < 256 << 10 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the first half arrives before the origin sends the rest")
            .unwrap()
            .unwrap();
        received += frame.into_data().map_or(0, |d| d.len());
    }
    release.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(received + rest.len(), 1 << 20);
    settle().await;
    let hit = get(edge.addr(), "/stream").await;
    assert_eq!(
        (hit.cache(), hit.body.len()),
        ("HIT", 1 << 20),
        "stored once complete"
    );
}

#[tokio::test]
async fn oversized_heads_slow_heads_and_smuggling_are_refused() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    origin.set("/", Reply::ok("root", &[]));
    let huge = format!(
        "GET / HTTP/1.1\r\nhost: example.test\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let answer = raw(edge.addr(), huge.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    let started = Instant::now();
    let slow = raw(
        edge.addr(),
        b"GET / HTTP/1.1\r\nhost: exa",
        Duration::from_secs(5),
    )
    .await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "closed after the 1 s header timeout, took {waited:?}"
    );
    assert!(!slow.contains("200 OK"), "{slow}");
    for (attempt, why) in [
        (&b"POST / HTTP/1.1\r\nhost: example.test\r\ntransfer-encoding: gzip\r\n\r\n"[..], "TE without chunked"),
        (b"POST / HTTP/1.1\r\nhost: example.test\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcd", "two lengths"),
        (b"POST / HTTP/1.0\r\nhost: example.test\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", "TE in HTTP/1.0"),
    ] {
        let answer = raw(edge.addr(), attempt, Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{why}: {answer:.80}");
    }
    // Both framings: Transfer-Encoding wins, the connection closes after the
    // response, and the request hidden behind the body is never served.
    let smuggled = raw(
        edge.addr(),
        b"POST / HTTP/1.1\r\nhost: example.test\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nhost: example.test\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        smuggled.matches("HTTP/1.1 ").count(),
        1,
        "one response, then close: {smuggled}"
    );
    assert!(smuggled.contains("connection: close"), "{smuggled}");
    assert_eq!(
        origin.hits("/hidden"),
        0,
        "the smuggled request never reached the origin"
    );
    assert_eq!(
        origin.hits("/"),
        1,
        "only the POST whose framing was settled reached the origin"
    );
    let fine = get(edge.addr(), "/").await;
    assert_eq!(fine.status, 200, "the edge still serves");
}

#[tokio::test]
async fn unknown_hosts_get_404_naming_the_host() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    let answer = request(edge.addr(), "GET", "nobody.invalid", "/", &[]).await;
    assert_eq!(answer.status, 404);
    assert!(
        answer
            .text()
            .contains("no distribution serves host `nobody.invalid`"),
        "{}",
        answer.text()
    );
    let wildcard = request(edge.addr(), "GET", "img.example.test", "/", &[]).await;
    assert_eq!(wildcard.status, 404, "the origin's 404 for /");
    assert_eq!(origin.hits("/"), 1, "a wildcard domain reaches the origin");
}

#[tokio::test]
async fn a_refused_origin_is_502_and_a_hanging_one_504() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let edge_refused = edge(&config(&closed_url, "", "", "")).await;
    let refused = get(edge_refused.addr(), "/").await;
    assert_eq!(refused.status, 502);
    // The body names the kind of failure and the request id, never the
    // upstream's address or the error chain (those are logged).
    let text = refused.text();
    assert!(
        text.contains("the origin could not be reached (request "),
        "{text}"
    );
    assert!(
        !text.contains(&closed_url[7..]) && !text.contains("127.0.0.1"),
        "{text}"
    );
    let origin = Origin::start().await;
    origin.set(
        "/hang",
        Reply::ok("late", &[]).delayed(Duration::from_secs(3)),
    );
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    let started = Instant::now();
    let hanging = get(edge.addr(), "/hang").await;
    assert_eq!(hanging.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the 1 s read timeout applies"
    );
    let text = hanging.text();
    assert!(
        text.contains("the origin did not answer in time (request "),
        "{text}"
    );
    assert!(!text.contains("127.0.0.1"), "{text}");
}

#[tokio::test]
async fn ip_deny_lists_answer_403() {
    let origin = Origin::start().await;
    let edge = edge(&config(
        &origin.url(),
        "",
        "ip_deny = [\"127.0.0.0/8\"]",
        "",
    ))
    .await;
    let denied = get(edge.addr(), "/").await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.text().contains("127.0.0.1 is not allowed"),
        "{}",
        denied.text()
    );
    assert_eq!(origin.hits("/"), 0);
}

#[tokio::test]
async fn https_origins_are_verified_against_the_configured_ca_file() {
    // A TLS origin with a certificate for 127.0.0.1 from its own CA.
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("origin-ca.pem");
    std::fs::write(&ca_file, generated.cert.pem()).unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key)
    .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"over tls"),
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    let url = format!("https://{origin_addr}");
    let trusted = config(&url, "", "", "").replace(
        "connect_timeout_ms = 500",
        &format!(
            "connect_timeout_ms = 500\nca_file = \"{}\"",
            ca_file.display()
        ),
    );
    let edge_trusting = edge(&trusted).await;
    let answer = get(edge_trusting.addr(), "/").await;
    assert_eq!((answer.status, answer.text().as_str()), (200, "over tls"));
    let edge_untrusting = edge(&config(&url, "", "", "")).await;
    let refused = get(edge_untrusting.addr(), "/").await;
    assert_eq!(
        refused.status,
        502,
        "an unknown CA is refused: {}",
        refused.text()
    );
    // Why (the certificate) is in the log only.
    let text = refused.text();
    assert!(text.contains("could not be reached (request "), "{text}");
    assert!(!text.contains("certificate"), "{text}");
}

#[tokio::test]
async fn an_idempotent_request_is_retried_when_a_pooled_connection_was_closed() {
    // The first connection answers one request, then closes on the second
    // without answering (a keep-alive timeout racing the request).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut connections = 0;
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            connections += 1;
            let first = connections == 1;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let Ok(n) = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nok")
                        .await
                        .unwrap();
                    if first {
                        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
                        return; // drops the connection with the request unanswered
                    }
                }
            });
        }
    });
    let edge = edge(&config(&format!("http://{origin_addr}"), "", "", "")).await;
    assert_eq!(get(edge.addr(), "/one").await.status, 200);
    let second = get(edge.addr(), "/two").await;
    assert_eq!(
        (second.status, second.text().as_str()),
        (200, "ok"),
        "retried on a new connection"
    );
}

#[tokio::test]
async fn a_background_refresh_replays_the_request_chains() {
    let origin = Origin::start().await;
    let extra = format!(
        r#"
[[distribution.plugin]]
name = "ab"
wasm = "{}"
config = {{ variants = [{{ name = "new", weight = 100, prefix = "/variants/new" }}] }}
"#,
        plugins_dir().join("ab-test.wasm").display()
    );
    let behavior =
        "viewer_request = [\"ab\"]\norigin_request = [\"ab\"]\norigin_response = [\"ab\"]";
    let edge = edge(&config(&origin.url(), "", behavior, &extra)).await;
    let path = "/variants/new/page";
    origin.set(
        path,
        Reply::ok(
            "v1",
            &[("cache-control", "max-age=1, stale-while-revalidate=30")],
        ),
    );
    assert_eq!(get(edge.addr(), "/page").await.text(), "v1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set(path, Reply::ok("v2", &[("cache-control", "max-age=60")]));
    let stale = get(edge.addr(), "/page").await;
    assert_eq!((stale.cache(), stale.text().as_str()), ("STALE", "v1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = get(edge.addr(), "/page").await;
    assert_eq!((fresh.cache(), fresh.text().as_str()), ("HIT", "v2"));
    assert_eq!(
        origin.hits(path),
        2,
        "the refresh went to the variant's path"
    );
    assert_eq!(origin.hits("/page"), 0);
}

#[tokio::test]
async fn an_h2_request_body_without_content_length_reaches_the_origin() {
    let origin = Origin::start().await;
    origin.set("/upload", Reply::ok("stored", &[]));
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    let mut sender = h2c(edge.addr()).await;
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(2);
    tokio::spawn(async move {
        tx.send_data(Bytes::from_static(b"part one, "))
            .await
            .unwrap();
        tx.send_data(Bytes::from_static(b"part two")).await.unwrap();
    });
    let request = http::Request::post("http://example.test/upload")
        .body(body)
        .unwrap();
    let answer = common::collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!((answer.status, answer.cache()), (200, "BYPASS"));
    assert_eq!(&origin.last("/upload").body[..], b"part one, part two");
}

#[tokio::test]
async fn the_peer_mark_from_a_viewer_does_not_bypass_loop_detection() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    let looped = request(
        edge.addr(),
        "GET",
        "example.test",
        "/",
        &[("via", "1.1 parapet-test1"), ("x-parapet-peer", "1")],
    )
    .await;
    assert_eq!(looped.status, 508);
    assert_eq!(origin.hits("/"), 0);
}
