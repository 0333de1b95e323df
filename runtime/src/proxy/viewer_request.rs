//! Phase 2, the viewer's request: its body read for the plugins when they
//! should see it, and the `on-viewer-request` chain, which may change the
//! request or answer it.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::BodyExt;
use parapet_host::{Flow, Request as PluginRequest};

use super::exchange::Exchange;
use super::Served;
use crate::headers::from_plugin;
use crate::upstream::{full, Body};

/// Largest request body read into memory for the viewer-request plugins.
const PLUGIN_REQUEST_BODY_LIMIT: u64 = 1 << 20;

/// Reads a request body into memory when the viewer-request plugins should
/// see it and it is small (within `timeout`, else 408); otherwise leaves
/// it to stream upstream.
pub(super) async fn read_body(
    parts: &http::request::Parts,
    body: Body,
    for_plugins: bool,
    timeout: Duration,
) -> Result<(Option<Bytes>, Option<Body>), Served> {
    let length = crate::headers::content_length(&parts.headers);
    // HTTP/2 has no Transfer-Encoding: whether a body follows is the
    // stream's business, not the headers'.
    if http_body::Body::is_end_stream(&body) {
        return Ok((None, None));
    }
    match length {
        Some(0) => Ok((Some(Bytes::new()), None)),
        Some(n) if for_plugins && n <= PLUGIN_REQUEST_BODY_LIMIT => {
            // hyper holds the body to its Content-Length.
            match tokio::time::timeout(timeout, body.collect()).await {
                Ok(Ok(collected)) => Ok((Some(collected.to_bytes()), None)),
                Ok(Err(e)) => Err(Served::error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )),
                Err(_) => {
                    let mut served = Served::error(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("the request body did not arrive within {timeout:?}"),
                    );
                    served
                        .response
                        .headers_mut()
                        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                    Err(served)
                }
            }
        }
        _ => Ok((None, Some(body))),
    }
}

impl Exchange {
    /// Runs the viewer-request chain on the request; `Some` when a plugin
    /// answered instead.
    pub(super) async fn viewer_request_chain(&mut self) -> Option<Response<Body>> {
        let snapshot = self.snapshot.clone();
        let chain = &snapshot.routes.distribution_at(self.dist_index).behaviors
            [self.behavior_index]
            .chains
            .on_viewer_request;
        let session = self.session.as_mut()?;
        let request = std::mem::replace(&mut self.request, placeholder_request());
        match session.on_viewer_request(chain, request).await {
            Flow::Continue(request) => {
                self.headers = from_plugin(&request.headers);
                self.request = request;
                None
            }
            Flow::Respond(answer) => Some(plugin_answer(answer)),
        }
    }
}

/// A plugin's answer as a response; never cached.
pub(super) fn plugin_answer(answer: parapet_host::Response) -> Response<Body> {
    let mut response = Response::new(full(answer.body.unwrap_or_default()));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *response.headers_mut() = from_plugin(&answer.headers);
    response
}

/// What stands in for the request while a chain holds it.
fn placeholder_request() -> PluginRequest {
    PluginRequest {
        method: String::new(),
        scheme: String::new(),
        authority: String::new(),
        path: String::new(),
        query: None,
        headers: Vec::new(),
        body: None,
    }
}
