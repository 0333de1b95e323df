//! Prometheus metrics and the query log, and the HTTP listener that
//! serves `/metrics` and `/healthz`.

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::routing::get;
use axum::Router;
use hickory_proto::op::LowerQuery;
use hickory_proto::rr::rdata::opt::ClientSubnet;
use hickory_server::net::xfer::Protocol;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// One answered query, as the metrics and the query log see it.
pub struct QueryRecord<'a> {
    /// The resolver's (or client's) address.
    pub client: SocketAddr,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// The question, when the request had one.
    pub query: Option<&'a LowerQuery>,
    /// The question's type, or `-`.
    pub qtype: &'a str,
    /// The response code sent.
    pub rcode: &'a str,
    /// Whether the answer was truncated to fit UDP.
    pub truncated: bool,
    /// The request's EDNS Client Subnet.
    pub subnet: Option<ClientSubnet>,
    /// The ECS scope answered.
    pub scope: u8,
    /// PoPs named in the answer.
    pub pops: &'a [String],
}

impl QueryRecord<'_> {
    /// Counts the query; logs it when `log` is set.
    pub fn record(&self, log: bool) {
        let protocol = match self.protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            _ => "other",
        };
        let ecs = if self.subnet.is_some() { "yes" } else { "no" };
        metrics::counter!(
            "parapet_dns_queries_total",
            "qtype" => self.qtype.to_string(),
            "rcode" => self.rcode.to_string(),
            "protocol" => protocol,
            "ecs" => ecs,
        )
        .increment(1);
        for pop in self.pops {
            metrics::counter!("parapet_dns_pop_answers_total", "pop" => pop.clone()).increment(1);
        }
        if self.truncated {
            metrics::counter!("parapet_dns_truncated_total").increment(1);
        }
        if log {
            tracing::info!(
                target: "parapet_dns::query",
                client = %self.client,
                protocol,
                name = %self.query.map(|q| q.name().to_string()).unwrap_or_default(),
                qtype = self.qtype,
                rcode = self.rcode,
                truncated = self.truncated,
                ecs = %self.subnet.map(|s| format!("{}/{}", s.addr(), s.source_prefix())).unwrap_or_default(),
                scope = self.scope,
                pops = %self.pops.join(","),
                "query"
            );
        }
    }
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder installed first (tests embedding several
        // servers): this one's handle still renders what it records.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    prometheus();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|| async {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    prometheus().render(),
                )
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics listener failed");
    }
}
