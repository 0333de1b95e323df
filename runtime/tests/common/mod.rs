//! Shared pieces of the edge's integration tests: a real origin server on
//! loopback whose answers each test sets, an edge started in-process from a
//! TOML configuration, and HTTP clients (HTTP/1.1, h2c, raw TCP).
#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use headers::HeaderMapExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parapet_config::EdgeConfig;
use parapet_edge::server::Running;
use parapet_edge::{launch, LaunchOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the origin answers for a path.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer a single `Range` with `206` and that part of the body.
    pub ranges: bool,
    /// Send the body in two chunks without a `Content-Length`.
    pub chunked: bool,
    /// With `chunked`, wait this long between the two chunks.
    pub pause: Duration,
}

impl Reply {
    /// 200 with `body` and these headers.
    pub fn ok(body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Self {
        Reply {
            status: 200,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
            delay: Duration::ZERO,
            ranges: false,
            chunked: false,
            pause: Duration::ZERO,
        }
    }

    /// The same reply, its body chunked (no `Content-Length`).
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// The same reply, chunked, with `pause` between its two chunks.
    pub fn trickled(mut self, pause: Duration) -> Self {
        self.chunked = true;
        self.pause = pause;
        self
    }

    /// The same reply, answering a single `Range` with its part.
    pub fn with_ranges(mut self) -> Self {
        self.ranges = true;
        self
    }

    /// The same reply after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request the origin received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct OriginState {
    replies: HashMap<String, Reply>,
    seen: Vec<Seen>,
}

/// A real HTTP/1.1 origin on loopback.
#[derive(Clone)]
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<Mutex<OriginState>>,
}

impl Origin {
    /// Starts an origin; unknown paths get 404.
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(OriginState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin { addr, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the reply for `path` (path and query).
    pub fn set(&self, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .replies
            .insert(path.to_string(), reply);
    }

    /// How many requests reached `path` (path and query).
    pub fn hits(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The last request received for `path`.
    pub fn last(&self, path: &str) -> Seen {
        self.seen()
            .into_iter()
            .rev()
            .find(|s| s.path == path)
            .unwrap_or_else(|| panic!("no request for {path} reached the origin"))
    }
}

/// What the test origin sends as a body.
type OriginBody = BoxBody<Bytes, Infallible>;

fn full_body(bytes: impl Into<Bytes>) -> OriginBody {
    Full::new(bytes.into()).boxed()
}

async fn answer(state: &Mutex<OriginState>, request: Request<Incoming>) -> Response<OriginBody> {
    // The body is read first, so tests can see what reached the origin.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request = Request::from_parts(parts, ());
    let reply = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen {
            method: request.method().to_string(),
            path: path.clone(),
            headers: request.headers().clone(),
            body,
        });
        state.replies.get(&path).cloned()
    };
    let Some(reply) = reply else {
        let mut response = Response::new(full_body(Bytes::from_static(b"not found")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    tokio::time::sleep(reply.delay).await;
    let etag = reply
        .headers
        .iter()
        .find(|(n, _)| n == "etag")
        .map(|(_, v)| v.clone());
    let if_none_match = request
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    let mut response = if etag.is_some() && if_none_match == etag.as_deref() {
        let mut response = Response::new(full_body(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else if let Some((first, last)) = reply
        .ranges
        .then(|| one_range(&request, &reply.body))
        .flatten()
    {
        let part = reply.body.slice(first as usize..=last as usize);
        let mut response = Response::new(full_body(part));
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        response.headers_mut().typed_insert(
            headers::ContentRange::bytes(first..=last, reply.body.len() as u64).unwrap(),
        );
        response
    } else if reply.chunked {
        let half = reply.body.len() / 2;
        let (first, second) = (reply.body.slice(..half), reply.body.slice(half..));
        let chunks = [(first, Duration::ZERO), (second, reply.pause)];
        let chunks = futures_util::StreamExt::then(
            futures_util::stream::iter(chunks),
            |(chunk, pause)| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, Infallible>(Frame::data(chunk))
            },
        );
        let body = StreamBody::new(chunks).boxed();
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
        response
    } else {
        let mut response = Response::new(full_body(reply.body.clone()));
        *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
        response
    };
    for (name, value) in &reply.headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

/// The one satisfiable range a request asks of `body`, as first and last
/// byte.
fn one_range(request: &Request<()>, body: &Bytes) -> Option<(u64, u64)> {
    let range: headers::Range = request.headers().typed_get()?;
    let length = body.len() as u64;
    let mut ranges = range.satisfiable_ranges(length);
    let (start, end) = ranges.next()?;
    let first = match start {
        std::ops::Bound::Included(s) => s,
        _ => 0,
    };
    let last = match end {
        std::ops::Bound::Included(e) => e.min(length - 1),
        _ => length - 1,
    };
    (ranges.next().is_none() && first <= last).then_some((first, last))
}

/// A started edge with its configuration file.
pub struct TestEdge {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl TestEdge {
    /// The first viewer listener.
    pub fn addr(&self) -> SocketAddr {
        self.running.listeners[0]
    }

    /// The admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.running
            .admin
            .expect("the test config has an admin listener")
    }
}

/// The example plugins built by `make plugins`.
pub fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
}

/// A minimal configuration: listener and admin on free ports, one
/// distribution `site` for `example.test` in front of `origin`, and
/// `extra` appended (more behaviors, plugins, settings of the default
/// behavior go in `behavior`).
pub fn config(origin: &str, top: &str, behavior: &str, extra: &str) -> String {
    format!(
        r#"{top}
[pop]
id = "test1"

[[listener]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"
token = "secret"

[cache]
memory_bytes = 67108864
max_object_bytes = 1048576

[server]
header_timeout_ms = 1000
shutdown_grace_ms = 2000
collapse_wait_ms = 5000

[upstream]
allow_networks = ["127.0.0.0/8"]

[[distribution]]
id = "site"
customer = "acme"
domains = ["example.test", "*.example.test"]

[[distribution.origin]]
url = "{origin}"
connect_timeout_ms = 500
read_timeout_ms = 1000

{extra}

[[distribution.behavior]]
path = "*"
{behavior}
"#
    )
}

/// Starts an edge in-process from configuration text.
pub async fn edge(text: &str) -> TestEdge {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("edge.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = EdgeConfig::from_file(&config_path).unwrap();
    let running = launch(LaunchOptions {
        config,
        config_path: Some(config_path.clone()),
        access_log: false,
        compiled_plugins_dir: None,
    })
    .await
    .unwrap();
    TestEdge {
        running,
        dir,
        config_path,
    }
}

/// An answer, fully read.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }

    /// The `X-Cache` value.
    pub fn cache(&self) -> &str {
        self.header("x-cache")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` to `addr` with `Host: host` and `headers` over a
/// fresh HTTP/1.1 connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = sender
        .send_request(builder.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    collect(response).await
}

/// Requests `path` on `host` until it is a HIT, for up to 5 s: stores
/// finish after their response does, and a fixed pause loses that race on
/// a loaded machine.
pub async fn until_hit_on(edge: SocketAddr, host: &str, path: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while request(edge, "GET", host, path, &[]).await.cache() != "HIT" {
        assert!(
            std::time::Instant::now() < deadline,
            "{host}{path} never became a HIT"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET path` for `example.test`.
pub async fn get(addr: SocketAddr, path: &str) -> Got {
    request(addr, "GET", "example.test", path, &[]).await
}

/// Reads a response whole.
pub async fn collect(response: Response<Incoming>) -> Got {
    let (parts, body) = response.into_parts();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Writes raw bytes on a new connection and reads until the server closes
/// it or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Calls the admin API: `POST path` with a JSON body and a bearer token.
pub async fn admin_post(addr: SocketAddr, path: &str, token: &str, json: &str) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::post(path)
        .header("host", "admin")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap();
    collect(sender.send_request(request).await.unwrap()).await
}

/// Waits until the cache has written what was stored to disk and the
/// tee tasks are done.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}
