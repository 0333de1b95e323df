//! Phase 6, the answer: from a stored object (conditionals, ranges, HEAD),
//! with the viewer-facing headers (`X-Cache`, `Via`, cache-targeted fields
//! kept only for other edges), through the `on-viewer-response` chain, with
//! framing recomputed.

use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use parapet_host::{BodyAccess, Flow, Hook};

use super::exchange::Exchange;
use super::viewer_request::plugin_answer;
use super::{CacheStatus, Served};
use crate::cache::object::CachedObject;
use crate::cache::respond;
use crate::headers::{self, from_plugin, to_plugin};
use crate::upstream::{full, Body};

/// A plain-text error answer.
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("parapet: {message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl Exchange {
    /// Answers from a stored object, through the viewer-response chain.
    pub(super) async fn answer_from(
        &mut self,
        object: &CachedObject,
        status: CacheStatus,
    ) -> Served {
        let method = self.method();
        let answer = respond::answer(object, &method, &self.headers, SystemTime::now());
        self.answer_stored(answer, status).await
    }

    /// Answers with `answer`, built from the cache, through the
    /// viewer-response chain.
    pub(super) async fn answer_stored(
        &mut self,
        answer: respond::StoredAnswer,
        status: CacheStatus,
    ) -> Served {
        let limit = (self.behavior().chains).body_limit(Hook::OnViewerResponse);
        let shown = self.method() != Method::HEAD && answer.body.len() <= limit;
        if shown {
            if let Some(refused) = self.hold_body_for_plugins(answer.body.len()) {
                return refused;
            }
        }
        let plugin_body = shown.then(|| answer.body.clone());
        self.finish(
            answer.status,
            answer.headers,
            full(answer.body),
            plugin_body,
            status,
        )
        .await
    }

    /// Finishes a response: `X-Cache` and `Via`, then the viewer-response
    /// chain, then framing. The plugins get `body_bytes` as the body; when
    /// it is `None` and the response has a body, they are told it was
    /// withheld (it streams), and a body they return replaces it.
    pub(super) async fn finish(
        &mut self,
        status: StatusCode,
        mut headers: HeaderMap,
        body: Body,
        body_bytes: Option<Bytes>,
        cache: CacheStatus,
    ) -> Served {
        // Only other edges of the CDN (a peer, an edge of
        // `downstream_edges`, or one with the tier secret) keep the
        // cache-targeted fields; a viewer's `Via` claims nothing.
        if !self.sender.edge {
            headers::strip_for_viewer(&mut headers);
        }
        headers.insert("x-cache", HeaderValue::from_static(cache.as_str()));
        headers::append_via(&mut headers, &self.edge.pop_id);
        let snapshot = self.snapshot.clone();
        let chain = &snapshot.routes.distribution_at(self.dist_index).behaviors
            [self.behavior_index]
            .chains
            .on_viewer_response;
        let bodiless = self.method() == Method::HEAD || headers::status_has_no_body(status);
        let (Some(session), false) = (&mut self.session, chain.is_empty() || self.background)
        else {
            let mut response = Response::new(body);
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            return Served::new(response, Some(cache));
        };
        let access = match (&body_bytes, bodiless) {
            (None, false) => BodyAccess::Streamed,
            _ => BodyAccess::Held,
        };
        let given = parapet_host::Response {
            status: status.as_u16(),
            headers: to_plugin(&headers),
            body: body_bytes.map(|b| b.to_vec()),
        };
        let had_body = given.body.clone();
        match session
            .on_viewer_response(chain, &self.request, given, access)
            .await
        {
            Flow::Respond(answer) => Served::new(plugin_answer(answer), Some(cache)),
            Flow::Continue(changed) => {
                let mut out_headers = from_plugin(&changed.headers);
                let body = if changed.body.is_some() && changed.body != had_body {
                    full(changed.body.unwrap_or_default())
                } else {
                    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
                        out_headers.insert(header::CONTENT_LENGTH, length.clone());
                    }
                    body
                };
                let mut response = Response::new(body);
                *response.status_mut() = StatusCode::from_u16(changed.status).unwrap_or(status);
                *response.headers_mut() = out_headers;
                Served::new(response, Some(cache))
            }
        }
    }
}
