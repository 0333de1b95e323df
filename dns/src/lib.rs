//! `parapet-dns`: the authoritative server of the CDN zone. For
//! `<distribution>.<zone>` it answers the addresses of the nearest healthy
//! PoP to the client, located from EDNS Client Subnet or the resolver's
//! address in a MaxMind-format database.

pub mod config;
pub mod controller;
pub mod geo;
pub mod handler;
pub mod metrics;
pub mod rrl;
pub mod select;
pub mod state;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};

use crate::handler::Handler;
use crate::state::{Sources, State};

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to start.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The data sources.
    pub sources: Sources,
    /// UDP and TCP address (port 0: any free port, the same for both).
    pub listen: SocketAddr,
    /// `/metrics` and `/healthz`; overrides the settings file's.
    pub metrics: Option<SocketAddr>,
    /// UDP worker threads, each with its own socket (SO_REUSEPORT) and
    /// single-threaded runtime; 0 is one per CPU.
    pub workers: usize,
    /// PoP health from parapet-controller.
    pub controller: Option<controller::ControllerSource>,
}

/// A running server.
pub struct Running {
    /// The address queries are answered on, UDP and TCP.
    pub address: SocketAddr,
    /// The metrics listener's address.
    pub metrics: Option<SocketAddr>,
    /// The data, for reloads.
    pub state: Arc<State>,
    /// The TCP listener, on the caller's runtime.
    tcp: Server<Handler>,
    /// The UDP workers and the sender that stops them.
    workers: Vec<std::thread::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
    controller_task: Option<tokio::task::JoinHandle<()>>,
    rrl_task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops answering and waits for queries in flight.
    pub async fn shutdown(mut self) {
        self.rrl_task.abort();
        for task in [self.metrics_task.take(), self.controller_task.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        let _ = self.stop.send(true);
        if let Err(e) = self.tcp.shutdown_gracefully().await {
            tracing::warn!(error = %e, "the TCP listener stopped with an error");
        }
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
    }
}

/// Loads the data and starts answering; must run inside a tokio runtime.
pub async fn launch(options: LaunchOptions) -> anyhow::Result<Running> {
    let (state, settings) = State::load(options.sources)?;
    let state = Arc::new(state);
    let controller = match options.controller {
        Some(source) => Some((source.client()?, source)),
        None => None,
    };
    let (udp, address) = bind_udp(options.listen, options.workers)?;
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on TCP {address}"))?;
    listener.set_nonblocking(true)?;
    let mut tcp = Server::new(Handler::new(state.clone()));
    tcp.register_listener(
        tokio::net::TcpListener::from_std(listener)?,
        TCP_IDLE_TIMEOUT,
        64,
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = udp
        .into_iter()
        .enumerate()
        .map(|(i, socket)| start_worker(i, socket, Handler::new(state.clone()), stopped.clone()))
        .collect::<anyhow::Result<_>>()?;

    let (metrics, metrics_task) = match options.metrics.or(settings.metrics) {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen for metrics on {address}"))?;
            let bound = listener.local_addr()?;
            (
                Some(bound),
                Some(tokio::spawn(parapet_telemetry::serve(listener))),
            )
        }
        None => {
            parapet_telemetry::prometheus();
            (None, None)
        }
    };
    let controller_task = controller
        .map(|(client, source)| tokio::spawn(controller::follow(state.clone(), source, client)));
    let rrl_task = tokio::spawn(forget_idle_clients(state.clone()));
    Ok(Running {
        address,
        metrics,
        state,
        tcp,
        workers,
        stop,
        metrics_task,
        controller_task,
        rrl_task,
    })
}

/// Keeps the rate limiter's table to recent clients.
async fn forget_idle_clients(state: Arc<State>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        state.rrl().forget_idle();
    }
}

/// A UDP worker: its own thread and single-threaded runtime, so that a
/// query is received, answered and sent on one core without handing
/// tasks between threads.
fn start_worker(
    index: usize,
    socket: std::net::UdpSocket,
    handler: Handler,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a UDP worker's runtime")?;
    std::thread::Builder::new()
        .name(format!("dns-udp-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let mut server = Server::new(handler);
                match tokio::net::UdpSocket::from_std(socket) {
                    Ok(socket) => server.register_socket(socket),
                    Err(e) => {
                        tracing::error!(error = %e, "a UDP worker cannot use its socket");
                        return;
                    }
                }
                let _ = stopped.wait_for(|stop| *stop).await;
                if let Err(e) = server.shutdown_gracefully().await {
                    tracing::warn!(error = %e, "a UDP worker stopped with an error");
                }
            })
        })
        .context("cannot start a UDP worker thread")
}

/// Binds `count` UDP sockets (one per CPU for 0) sharing one port with
/// SO_REUSEPORT, so that each has its own receive loop. A plain bind comes
/// first, so a port another program holds is refused.
fn bind_udp(
    listen: SocketAddr,
    count: usize,
) -> anyhow::Result<(Vec<std::net::UdpSocket>, SocketAddr)> {
    let count = match count {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let open = |address: SocketAddr| -> std::io::Result<std::net::UdpSocket> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        Ok(socket.into())
    };
    let probe = std::net::UdpSocket::bind(listen)
        .with_context(|| format!("cannot listen on UDP {listen}"))?;
    let address = probe.local_addr()?;
    drop(probe);
    let sockets = (0..count)
        .map(|_| open(address).with_context(|| format!("cannot listen on UDP {address}")))
        .collect::<anyhow::Result<_>>()?;
    Ok((sockets, address))
}
