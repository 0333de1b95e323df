//! The upstream client: pooled keep-alive connections (HTTP/1.1, and h2 by
//! ALPN over TLS) to origins, shields and peers, with connect and response
//! timeouts and one retry of an idempotent request when a pooled connection
//! turned out to be stale.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Errors from bodies of any source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type the edge sends, upstream and to viewers.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Where a request goes: a base URL and how patiently.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Scheme and authority, e.g. `https://origin.example.com:8443`.
    pub base: Uri,
    /// Extra CA certificates (PEM) trusted for this target.
    pub ca_file: Option<PathBuf>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed until the response headers arrive.
    pub read_timeout: Duration,
}

/// A request for upstream, before it is bound to a target.
pub struct UpstreamRequest {
    /// Method.
    pub method: Method,
    /// Path and query, e.g. `/a/b?c=d`.
    pub path_and_query: String,
    /// Headers, already prepared for forwarding (see `headers`).
    pub headers: HeaderMap,
    /// The body.
    pub body: RequestBody,
}

/// A request body: replayable when held in memory, not when streamed.
pub enum RequestBody {
    /// In memory (possibly empty): may be sent again on a retry.
    Buffered(Bytes),
    /// Streamed from the viewer: sent once.
    Streamed(Body),
}

/// Why an upstream gave no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be made (refused, unreachable, TLS).
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// The target.
        target: String,
        /// The cause.
        reason: String,
    },
    /// No response headers within the read timeout.
    #[error("{target} did not answer within {timeout:?}")]
    Timeout {
        /// The target.
        target: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The exchange failed after the connection was made.
    #[error("request to {target} failed: {reason}")]
    Failed {
        /// The target.
        target: String,
        /// The cause.
        reason: String,
    },
    /// The target could not be configured (bad CA file, bad URL).
    #[error("{0}")]
    Setup(String),
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Pooled clients, one per TLS trust and connect-timeout setting.
#[derive(Default)]
pub struct Upstream {
    clients: Mutex<HashMap<(Option<PathBuf>, Duration), HttpsClient>>,
}

impl Upstream {
    /// A client pool; connections are made on first use.
    pub fn new() -> Arc<Self> {
        Arc::new(Upstream::default())
    }

    /// Sends `request` to `target`. An idempotent request with a buffered
    /// body is sent once more if the first attempt failed after connecting
    /// (a pooled connection the peer had closed).
    ///
    /// The future is boxed as `Send` here, where the compiler can prove it;
    /// inside callers' `async fn`s it cannot (rust-lang/rust#110338).
    pub fn send(
        &self,
        target: &Target,
        request: UpstreamRequest,
    ) -> BoxFuture<'static, Result<Response<Incoming>, UpstreamError>> {
        let client = self.client(target);
        let target = target.clone();
        Box::pin(async move { send(client?, &target, request).await })
    }

    fn client(&self, target: &Target) -> Result<HttpsClient, UpstreamError> {
        let key = (target.ca_file.clone(), target.connect_timeout);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = new_client(target)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

async fn send(
    client: HttpsClient,
    target: &Target,
    request: UpstreamRequest,
) -> Result<Response<Incoming>, UpstreamError> {
    let uri = target_uri(target, &request.path_and_query)?;
    // Only a buffered body of an idempotent request can be sent twice;
    // only then are method and headers kept for a second attempt.
    let retry = match &request.body {
        RequestBody::Buffered(bytes) if request.method.is_idempotent() => Some((
            request.method.clone(),
            request.headers.clone(),
            bytes.clone(),
        )),
        _ => None,
    };
    let UpstreamRequest {
        method,
        headers,
        body,
        ..
    } = request;
    let first = attempt(&client, target, build(uri.clone(), method, headers, body)).await;
    match (first, retry) {
        (Err(UpstreamError::Failed { .. }), Some((method, headers, bytes))) => {
            let again = build(uri, method, headers, RequestBody::Buffered(bytes));
            attempt(&client, target, again).await
        }
        (result, _) => result,
    }
}

fn target_uri(target: &Target, path_and_query: &str) -> Result<Uri, UpstreamError> {
    let mut parts = target.base.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|e| UpstreamError::Setup(format!("bad path `{path_and_query}`: {e}")))?,
    );
    Uri::from_parts(parts).map_err(|e| UpstreamError::Setup(e.to_string()))
}

fn build(uri: Uri, method: Method, headers: HeaderMap, body: RequestBody) -> Request<Body> {
    let body = match body {
        RequestBody::Buffered(bytes) if bytes.is_empty() => empty(),
        RequestBody::Buffered(bytes) => full(bytes),
        RequestBody::Streamed(body) => body,
    };
    let mut out = Request::new(body);
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    out
}

async fn attempt(
    client: &HttpsClient,
    target: &Target,
    request: Request<Body>,
) -> Result<Response<Incoming>, UpstreamError> {
    let name = target.base.to_string();
    match tokio::time::timeout(target.read_timeout, client.request(request)).await {
        Err(_) => Err(UpstreamError::Timeout {
            target: name,
            timeout: target.read_timeout,
        }),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect {
            target: name,
            reason: error_chain(&e),
        }),
        Ok(Err(e)) => Err(UpstreamError::Failed {
            target: name,
            reason: error_chain(&e),
        }),
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn new_client(target: &Target) -> Result<HttpsClient, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &target.ca_file {
        for cert in crate::tls::read_certs(path).map_err(UpstreamError::Setup)? {
            roots
                .add(cert)
                .map_err(|e| UpstreamError::Setup(format!("{}: {e}", path.display())))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| UpstreamError::Setup(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(target.connect_timeout));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}
