//! The upstream client: pooled keep-alive connections (HTTP/1.1, and h2 by
//! ALPN over TLS) to origins, shields and peers, with connect and response
//! timeouts and one retry of an idempotent request when a pooled connection
//! turned out to be stale. Every connection is held to the address policy
//! (`[upstream]`): an IP literal before connecting, a name's addresses when
//! it is resolved, and the connected address itself, so a name that
//! resolves (or changes) to a refused address is refused too.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parapet_config::network::AddressPolicy;
use tokio::net::TcpStream;

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

/// What sets pooled clients apart: the CA file, the connect timeout and
/// whether HTTP/2 is offered.
type ClientKey = (Option<PathBuf>, Duration, bool);

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
    /// The address policy refuses the target's address.
    #[error("{target}: {reason}")]
    Refused {
        /// The target.
        target: String,
        /// Which address, and why.
        reason: String,
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

type HttpsClient = Client<HttpsConnector<GuardedConnector>, Body>;

/// The address policy as the configuration in service has it.
type SharedPolicy = Arc<ArcSwap<AddressPolicy>>;

/// Pooled clients, one per TLS trust and connect-timeout setting.
pub struct Upstream {
    clients: Mutex<HashMap<ClientKey, HttpsClient>>,
    policy: SharedPolicy,
}

impl Upstream {
    /// A client pool held to `policy`; connections are made on first use.
    pub fn new(policy: AddressPolicy) -> Arc<Self> {
        Arc::new(Upstream {
            clients: Mutex::default(),
            policy: Arc::new(ArcSwap::from_pointee(policy)),
        })
    }

    /// Holds connections made from now on to `policy` (a reload).
    pub fn set_policy(&self, policy: AddressPolicy) {
        self.policy.store(Arc::new(policy));
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
        // HTTP/2 carries one authority, the target's (`:authority`); a
        // `Host` differing from it is malformed there (RFC 9113, 8.3.1),
        // so such requests (the shield's and peers', routed by the
        // viewer's host) go over HTTP/1.1.
        let http2 = request
            .headers
            .get(http::header::HOST)
            .is_none_or(|host| names_authority(host, &target.base));
        let checked = self
            .check_literal(target)
            .and_then(|()| self.client(target, http2));
        let target = target.clone();
        Box::pin(async move { send(checked?, &target, request).await })
    }

    /// Refuses a target whose host is an address the policy refuses,
    /// before any connection is made (names are checked as they resolve).
    fn check_literal(&self, target: &Target) -> Result<(), UpstreamError> {
        let host = target.base.host().unwrap_or_default();
        let port = target
            .base
            .port_u16()
            .unwrap_or(match target.base.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
        self.policy
            .load()
            .check_host(host, port)
            .map_err(|reason| refused(target, reason))
    }

    /// The pooled client for `target`, offering HTTP/2 when `http2`.
    fn client(&self, target: &Target, http2: bool) -> Result<HttpsClient, UpstreamError> {
        let key = (target.ca_file.clone(), target.connect_timeout, http2);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = new_client(target, http2, &self.policy)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn refused(target: &Target, reason: String) -> UpstreamError {
    UpstreamError::Refused {
        target: target.base.to_string(),
        reason,
    }
}

/// A connection refused by the address policy.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AddressRefused(String);

/// Resolves names to the addresses the policy allows; a name with none
/// left is refused.
#[derive(Clone)]
struct GuardedResolver {
    inner: GaiResolver,
    policy: SharedPolicy,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.load_full();
        let lookup = self.inner.call(name.clone());
        Box::pin(async move {
            let mut refusals = Vec::new();
            let allowed: Vec<SocketAddr> = lookup
                .await?
                .filter(|addr| match policy.check_ip(addr.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refusals.push(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() && !refusals.is_empty() {
                let why = format!("`{}` resolves to {}", name.as_str(), refusals.join("; "));
                return Err(Box::new(AddressRefused(why)) as BoxError);
            }
            Ok(allowed.into_iter())
        })
    }
}

/// Connects, then checks the connected address itself (an IP literal, or
/// one of the edge's own listeners, which resolving cannot tell) before
/// anything is sent.
#[derive(Clone)]
struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    policy: SharedPolicy,
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connect = self.inner.call(uri);
        let policy = self.policy.clone();
        Box::pin(async move {
            let stream = connect.await?;
            let peer = stream.inner().peer_addr()?;
            policy
                .load()
                .check(peer)
                .map_err(|why| Box::new(AddressRefused(why)) as BoxError)?;
            Ok(stream)
        })
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
        Ok(Err(e)) if e.is_connect() => Err(match refusal(&e) {
            Some(reason) => UpstreamError::Refused {
                target: name,
                reason,
            },
            None => UpstreamError::Connect {
                target: name,
                reason: error_chain(&e),
            },
        }),
        Ok(Err(e)) => Err(UpstreamError::Failed {
            target: name,
            reason: error_chain(&e),
        }),
    }
}

/// The address policy's refusal among an error's causes.
fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<AddressRefused>() {
            return Some(refused.0.clone());
        }
        source = cause.source();
    }
    None
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

/// Whether `host` (a `Host` value) is `base`'s authority.
fn names_authority(host: &http::HeaderValue, base: &Uri) -> bool {
    base.authority().is_some_and(|authority| {
        authority
            .as_str()
            .as_bytes()
            .eq_ignore_ascii_case(host.as_bytes())
    })
}

fn new_client(
    target: &Target,
    http2: bool,
    policy: &SharedPolicy,
) -> Result<HttpsClient, UpstreamError> {
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
    let mut http = HttpConnector::new_with_resolver(GuardedResolver {
        inner: GaiResolver::new(),
        policy: policy.clone(),
    });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(target.connect_timeout));
    let guarded = GuardedConnector {
        inner: http,
        policy: policy.clone(),
    };
    let protocols = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let connector = if http2 {
        protocols.enable_http2().wrap_connector(guarded)
    } else {
        protocols.wrap_connector(guarded)
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use parapet_config::network::UpstreamConfig;
    use tower_service::Service;

    use super::*;

    fn resolver(allow: &[&str]) -> GuardedResolver {
        let config = UpstreamConfig {
            allow_networks: allow.iter().map(|n| n.parse().expect("network")).collect(),
        };
        GuardedResolver {
            inner: GaiResolver::new(),
            policy: Arc::new(ArcSwap::from_pointee(AddressPolicy::new(
                &config,
                Vec::new(),
            ))),
        }
    }

    /// A name is checked by what it resolves to: `localhost` (from
    /// /etc/hosts) is refused unless loopback is allowed.
    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_refused() {
        let name = Name::from_str("localhost").expect("name");
        let refused = resolver(&[]).call(name.clone()).await.expect_err("refused");
        let why = refusal(refused.as_ref()).expect("a policy refusal");
        assert!(why.starts_with("`localhost` resolves to"), "{why}");
        assert!(why.contains("loopback"), "{why}");
        let allowed: Vec<SocketAddr> = resolver(&["127.0.0.0/8", "::1/128"])
            .call(name)
            .await
            .expect("allowed")
            .collect();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()) && !allowed.is_empty());
    }
}
