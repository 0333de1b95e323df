//! The viewer listeners: TCP accept loops, TLS with SNI certificates, and
//! hyper serving HTTP/1.1 and HTTP/2 (by ALPN over TLS, by prior knowledge
//! in plain text) under the configured header size and time limits, with a
//! bounded graceful shutdown.
//!
//! Serving is thread-per-core, as nginx does it: each worker thread runs its
//! own single-threaded tokio runtime with its own `SO_REUSEPORT` socket per
//! listener, so the kernel spreads connections and a connection's tasks
//! never migrate between threads (no cross-thread wake-ups on the hot
//! path). The admin API and background work run on the caller's runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::edge::Edge;
use crate::proxy::{self, Connection};
use crate::upstream::BoxError;
use parapet_config::{ListenerConfig, ServerConfig};

/// A started edge: its bound addresses and the means to stop it.
pub struct Running {
    /// The viewer listeners' addresses, in configuration order.
    pub listeners: Vec<SocketAddr>,
    /// The admin listener's address.
    pub admin: Option<SocketAddr>,
    /// The shared state.
    pub edge: Arc<Edge>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// Binds every listener of the edge's configuration and starts serving.
pub async fn start(edge: Arc<Edge>) -> anyhow::Result<Running> {
    let snapshot = edge.snapshot();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let count = match snapshot.config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // Every worker's sockets, bound up front: the first of each listener
    // fixes the port (`:0` in tests), the others share it.
    let mut listeners = Vec::new();
    let mut sockets: Vec<Vec<std::net::TcpListener>> = (0..count).map(|_| Vec::new()).collect();
    for listener in &snapshot.config.listeners {
        let mut address = listener.address;
        if address.port() != 0 {
            // SO_REUSEPORT would let a second edge on this port share the
            // traffic silently; a plain bind first says "in use" instead.
            std::net::TcpListener::bind(address)
                .with_context(|| format!("cannot listen on {address}"))?;
        }
        for worker in sockets.iter_mut() {
            let socket = reuseport_listener(address)
                .with_context(|| format!("cannot listen on {address}"))?;
            address = socket.local_addr()?;
            worker.push(socket);
        }
        listeners.push(address);
    }
    // Each listener's connection limit, split evenly among the workers
    // (each accepts on its own socket, so each holds its part).
    let per_worker = snapshot.config.server.max_connections.div_ceil(count);
    let mut workers = Vec::new();
    for (index, sockets) in sockets.into_iter().enumerate() {
        let edge = edge.clone();
        let limits: Vec<ConnectionLimit> = (0..sockets.len())
            .map(|_| Arc::new(Semaphore::new(per_worker)))
            .collect();
        let stopped = stopped.clone();
        let config = snapshot.config.clone();
        let worker = std::thread::Builder::new()
            .name(format!("parapet-worker-{index}"))
            .spawn(move || serve_worker(sockets, &config, &limits, edge, stopped))
            .context("starting a worker thread")?;
        workers.push(worker);
    }
    let admin = match &snapshot.config.admin {
        Some(config) => {
            let socket = TcpListener::bind(config.address)
                .await
                .with_context(|| format!("cannot listen on {} (admin)", config.address))?;
            let address = socket.local_addr()?;
            tasks.spawn(admin::serve(socket, edge.clone(), stopped.clone()));
            Some(address)
        }
        None => None,
    };
    edge.set_bound(listeners.iter().copied().chain(admin).collect());
    Ok(Running {
        listeners,
        admin,
        edge,
        stop,
        tasks,
        workers,
    })
}

/// A listening socket with `SO_REUSEPORT`, so each worker can have its own.
fn reuseport_listener(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// One worker thread: a single-threaded runtime serving its sockets until
/// the edge stops, then draining its connections.
fn serve_worker(
    sockets: Vec<std::net::TcpListener>,
    config: &parapet_config::EdgeConfig,
    limits: &[ConnectionLimit],
    edge: Arc<Edge>,
    stopped: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "a worker cannot start its runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let mut loops = JoinSet::new();
        for ((socket, listener), open) in sockets.into_iter().zip(&config.listeners).zip(limits) {
            let socket = match TcpListener::from_std(socket) {
                Ok(socket) => socket,
                Err(e) => {
                    tracing::error!(error = %e, "a worker cannot register its socket");
                    continue;
                }
            };
            let tls = listener
                .tls
                .then(|| TlsAcceptor::from(crate::tls::server_config(edge.tls.clone())));
            loops.spawn(accept_loop(
                socket,
                listener.clone(),
                tls,
                edge.clone(),
                config.server.clone(),
                open.clone(),
                stopped.clone(),
            ));
        }
        while loops.join_next().await.is_some() {}
    });
}

impl Running {
    /// Stops accepting, lets in-flight requests finish within the grace
    /// period, then returns.
    pub async fn shutdown(mut self) {
        self.edge.draining.store(true, Ordering::Relaxed);
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        for worker in self.workers {
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
        self.edge.cache.close().await;
    }
}

/// A worker's part of one listener's limit of open connections.
type ConnectionLimit = Arc<Semaphore>;

async fn accept_loop(
    socket: TcpListener,
    listener: ListenerConfig,
    tls: Option<TlsAcceptor>,
    edge: Arc<Edge>,
    limits: ServerConfig,
    open: ConnectionLimit,
    stopped: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(&limits));
    let mut connections = JoinSet::new();
    let mut stop = stopped.clone();
    loop {
        // Past the listener's limit, connections wait in the backlog.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (stream, client) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next() => continue,
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = ConnectionTask {
            edge: edge.clone(),
            builder: builder.clone(),
            client,
            handshake_timeout: Duration::from_millis(limits.header_timeout_ms),
            idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
            stopped: stopped.clone(),
            _permit: permit,
        };
        let proxy_protocol = listener.proxy_protocol;
        if proxy_protocol && !is_trusted(&limits.trusted_proxies, client) {
            tracing::warn!(%client, "PROXY protocol listener: connection from an address not in server.trusted_proxies closed");
            continue;
        }
        connections.spawn(connection.run(stream, tls.clone(), proxy_protocol));
    }
    drop(socket);
    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// Whether `client` is one of `networks`.
fn is_trusted(networks: &[ipnet::IpNet], client: SocketAddr) -> bool {
    let ip = crate::forwarding::canonical(client.ip());
    networks.iter().any(|net| net.contains(&ip))
}

fn http_builder(limits: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms))
        .max_buf_size(limits.max_header_bytes.max(8192));
    let mut http2 = builder.http2();
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(limits.h2_max_concurrent_streams);
    if limits.h2_keepalive_interval_ms > 0 {
        http2
            .keep_alive_interval(Duration::from_millis(limits.h2_keepalive_interval_ms))
            .keep_alive_timeout(Duration::from_millis(limits.h2_keepalive_timeout_ms));
    }
    builder
}

/// One accepted connection.
struct ConnectionTask {
    edge: Arc<Edge>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    client: SocketAddr,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    stopped: watch::Receiver<bool>,
    /// Its place under the listener's connection limit.
    _permit: OwnedSemaphorePermit,
}

impl ConnectionTask {
    /// Reads the PROXY header if the listener takes one, does the TLS
    /// handshake on TLS listeners, then serves HTTP until the connection
    /// ends, idles out or the edge stops.
    async fn run(mut self, mut stream: TcpStream, tls: Option<TlsAcceptor>, proxy_protocol: bool) {
        if proxy_protocol {
            let header = tokio::time::timeout(
                self.handshake_timeout,
                crate::proxy_protocol::read_header(&mut stream),
            )
            .await;
            match header {
                Ok(Ok(Some(viewer))) => self.client = viewer,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(client = %self.client, error = %e, "PROXY header refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %self.client, "PROXY header timed out");
                    return;
                }
            }
        }
        let Some(acceptor) = tls else {
            return self.serve(stream, false, None).await;
        };
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let server_name = tls.get_ref().1.server_name().map(str::to_string);
                self.serve(tls, true, server_name).await;
            }
            Ok(Err(e)) => {
                tracing::debug!(client = %self.client, error = %e, "TLS handshake failed")
            }
            Err(_) => tracing::debug!(client = %self.client, "TLS handshake timed out"),
        }
    }

    async fn serve<I>(mut self, io: I, tls: bool, server_name: Option<String>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connection = Arc::new(Connection {
            client: self.client,
            tls,
            server_name,
        });
        let activity = Arc::new(Activity::default());
        let edge = self.edge.clone();
        let service = {
            let activity = activity.clone();
            service_fn(move |request: http::Request<Incoming>| {
                let edge = edge.clone();
                let connection = connection.clone();
                let busy = activity.begin();
                async move {
                    let request =
                        request.map(|body| body.map_err(|e| -> BoxError { Box::new(e) }).boxed());
                    let response = proxy::handle(edge, connection, request).await;
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let served = self
            .builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let mut served = std::pin::pin!(served);
        // Closing starts once: on idling out or the edge stopping, the
        // connection finishes what is in flight, then ends.
        let mut closing = false;
        let result = loop {
            tokio::select! {
                result = served.as_mut() => break result,
                _ = activity.idle_for(self.idle_timeout), if !closing => {
                    closing = true;
                    served.as_mut().graceful_shutdown();
                }
                _ = self.stopped.changed(), if !closing => {
                    closing = true;
                    served.as_mut().graceful_shutdown();
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(client = %self.client, error = %e, "connection ended with an error");
        }
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    /// When the connection opened.
    opened: Instant,
    /// When the last request ended, in nanoseconds after `opened`.
    idle_since_ns: std::sync::atomic::AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: Default::default(),
            opened: Instant::now(),
            idle_since_ns: Default::default(),
        }
    }
}

/// A request in flight; its drop records the end.
struct Busy(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let since =
                self.opened + Duration::from_nanos(self.idle_since_ns.load(Ordering::Relaxed));
            let deadline = since + timeout;
            if self.in_flight.load(Ordering::Relaxed) == 0 && Instant::now() >= deadline {
                return;
            }
            let wake = if self.in_flight.load(Ordering::Relaxed) == 0 {
                deadline
            } else {
                Instant::now() + timeout
            };
            tokio::time::sleep_until(wake.into()).await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let since = self.0.opened.elapsed().as_nanos() as u64;
        self.0.idle_since_ns.store(since, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
