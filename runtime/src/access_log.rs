//! The access log: one JSON line per request in the edge's own log
//! (`target: parapet::access`) and, in controller mode, a record shipped to
//! the controller through a bounded queue that drops lines, never requests.

use std::net::IpAddr;
use std::time::Duration;

use http::{Method, StatusCode};

/// Counter of access log lines the controller never got, by reason:
/// `queue_full` (more than the queue holds) or `not_shipped` (the
/// controller refused or could not be reached).
pub const LOG_LINES_DROPPED: &str = "parapet_access_log_lines_dropped_total";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One access log record, for shipping.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// Distribution id.
    pub distribution: String,
    /// When the request finished (ms since the epoch).
    pub timestamp_ms: i64,
    /// The log line (JSON object).
    pub json: String,
}

/// What the log says of one request.
pub struct Line<'a> {
    /// The viewer's address.
    pub client: IpAddr,
    /// The request method.
    pub method: &'a Method,
    /// The host it was addressed to.
    pub host: &'a str,
    /// The request target as received.
    pub uri: &'a str,
    /// The answer's status.
    pub status: StatusCode,
    /// The cache result (`HIT`, `MISS`, … or `NONE`).
    pub cache: &'static str,
    /// The distribution that served it, if one did.
    pub distribution: Option<&'a str>,
    /// Time to the answer's head.
    pub elapsed: Duration,
    /// This PoP's id.
    pub pop: &'a str,
    /// The answer body's length, when known at its head.
    pub bytes: Option<u64>,
}

impl Line<'_> {
    /// Writes the line to the edge's log.
    pub fn log(&self) {
        tracing::info!(
            target: "parapet::access",
            client = %self.client,
            method = %self.method,
            host = %self.host,
            uri = %self.uri,
            status = self.status.as_u16(),
            cache = self.cache,
            distribution = self.distribution.unwrap_or("-"),
            duration_ms = self.elapsed.as_secs_f64() * 1000.0,
        );
    }

    /// Queues the line for the controller (lines of requests no
    /// distribution served are not shipped); a full queue drops it and
    /// counts the drop.
    pub fn ship(&self, sink: &tokio::sync::mpsc::Sender<AccessRecord>) {
        let Some(distribution) = self.distribution else {
            return;
        };
        let json = serde_json::json!({
            "client": self.client.to_string(),
            "method": self.method.as_str(),
            "host": self.host,
            "uri": self.uri,
            "status": self.status.as_u16(),
            "cache": self.cache,
            "duration_ms": self.elapsed.as_secs_f64() * 1000.0,
            "pop": self.pop,
            "bytes": self.bytes,
        });
        let queued = sink.try_send(AccessRecord {
            distribution: distribution.to_string(),
            timestamp_ms: now_ms(),
            json: json.to_string(),
        });
        if queued.is_err() {
            metrics::counter!(LOG_LINES_DROPPED, "reason" => "queue_full").increment(1);
        }
    }
}
