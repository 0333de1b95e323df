//! Phase 1, route and guard: the distribution by host, the behavior by
//! path, the forwarding-loop check, the native guards (client address,
//! header lists) and the distribution's share of plugin instances. What
//! passes becomes an [`Exchange`].

use std::sync::Arc;
use std::time::Duration;

use http::{header, StatusCode};
use parapet_host::{BodyAccess, Request as PluginRequest, RequestContext, RequestSession};

use super::exchange::{Exchange, PathAsReceived};
use super::viewer_request::read_body;
use super::{Connection, Served};
use crate::cache_key::purge_url;
use crate::edge::{Edge, Snapshot};
use crate::headers::{self, to_plugin};
use crate::peers::PEER_HEADER;
use crate::upstream::Body;
use crate::{forwarding, guards, paths};

/// The host a request is addressed to: `:authority` (HTTP/2, absolute
/// form) or `Host`.
pub(super) fn authority<B>(request: &http::Request<B>) -> Option<String> {
    request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
}

/// The answer to an ACME HTTP-01 validation of the controller's ACME
/// client (`GET /.well-known/acme-challenge/<token>` with an open token of
/// the distribution); other requests on that path go on to the origin.
fn acme_challenge(snapshot: &Snapshot, id: &str, request: &http::Request<Body>) -> Option<Served> {
    if request.method() != http::Method::GET {
        return None;
    }
    let token = request
        .uri()
        .path()
        .strip_prefix("/.well-known/acme-challenge/")?;
    let answer = snapshot.acme_challenges.answer(id, token)?;
    let response = http::Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(crate::upstream::full(answer.to_string()))
        .ok()?;
    Some(Served::new(response, None))
}

/// Routes and guards `request`: the exchange that serves it, or the answer
/// that refuses it.
pub(super) async fn admit(
    edge: &Arc<Edge>,
    snapshot: &Arc<Snapshot>,
    connection: &Arc<Connection>,
    request: http::Request<Body>,
    number: u64,
) -> Result<Exchange, Served> {
    let Some(host) = authority(&request) else {
        return Err(Served::error(
            StatusCode::BAD_REQUEST,
            "the request names no host (no Host header or :authority)",
        ));
    };
    check_host_agreement(&request).map_err(|why| Served::error(StatusCode::BAD_REQUEST, why))?;
    // Framing conflicts are settled by hyper before this point (RFC 9112
    // 6.3): a non-chunked Transfer-Encoding or differing Content-Lengths are
    // refused with 400; with both Transfer-Encoding and Content-Length, the
    // length is dropped and the connection closed after the response, so
    // nothing can be smuggled behind the body.
    let Some((dist_index, dist)) = snapshot.routes.find(&host) else {
        if let Some(unavailable) = snapshot.routes.unavailable(&host) {
            return Err(Served::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "distribution `{}` is not available on this edge: its configuration did not load",
                    unavailable.id
                ),
            )
            .of(&unavailable.id));
        }
        return Err(Served::error(
            StatusCode::NOT_FOUND,
            format!("no distribution serves host `{host}`"),
        ));
    };
    if let Some(name) = &connection.server_name {
        if snapshot.routes.find(name).map(|(i, _)| i) != Some(dist_index) {
            return Err(Served::error(
                StatusCode::MISDIRECTED_REQUEST,
                format!("this TLS connection is for `{name}`, which does not serve host `{host}`"),
            ));
        }
    }
    let id = &dist.config.id;
    if let Some(answer) = acme_challenge(snapshot, id, &request) {
        return Err(answer.of(id));
    }
    // Behaviors, guards and plugins see the normalised path; the origin
    // gets the one received unless the distribution asks otherwise.
    let received = request.uri().path();
    let path = paths::normalize(received).into_owned();
    let path_as_received =
        (path != received && !dist.config.normalize_upstream_path).then(|| PathAsReceived {
            normalized: path.clone(),
            received: received.to_string(),
        });
    let Some(behavior_index) = dist.behavior_index(&path) else {
        return Err(Served::error(StatusCode::NOT_FOUND, "no behavior matches the path").of(id));
    };
    let behavior = &dist.behaviors[behavior_index];
    // Only a configured peer may ask this edge to serve a key as its owner.
    let from_peer = request.headers().contains_key(PEER_HEADER)
        && snapshot
            .peers
            .as_ref()
            .is_some_and(|ring| ring.is_member(connection.client.ip()));
    let (mut parts, body) = request.into_parts();
    let sender = forwarding::admit(
        &mut parts.headers,
        connection.client.ip(),
        from_peer,
        &snapshot.config.server,
    );
    if headers::via_contains(&parts.headers, &edge.pop_id) && !from_peer {
        return Err(Served::error(
            StatusCode::LOOP_DETECTED,
            format!(
                "forwarding loop: the request already passed through parapet-{}",
                edge.pop_id
            ),
        ));
    }
    let client = sender.client;
    if !guards::ip_allowed(&behavior.config, client) {
        return Err(Served::error(
            StatusCode::FORBIDDEN,
            format!("client address {client} is not allowed here"),
        )
        .of(id)
        .for_client(client));
    }
    guards::filter_request_headers(&behavior.config, &mut parts.headers);
    let scheme = sender
        .trusted
        .then(|| forwarding::forwarded_scheme(&parts.headers))
        .flatten()
        .unwrap_or(if connection.tls { "https" } else { "http" });
    let chains = &behavior.chains;
    let any_plugins = !(chains.on_viewer_request.is_empty()
        && chains.on_origin_request.is_empty()
        && chains.on_origin_response.is_empty()
        && chains.on_viewer_response.is_empty());
    let body_timeout = Duration::from_millis(snapshot.config.server.body_timeout_ms);
    let (body, streamed) = read_body(
        &parts,
        body,
        !chains.on_viewer_request.is_empty(),
        body_timeout,
    )
    .await
    .map_err(|served| served.of(id).for_client(client))?;
    let viewer_url = purge_url(
        &behavior.config.cache.key,
        &parapet_config::domains::host_name(&host),
        &path,
        parts.uri.query(),
    );
    let request = PluginRequest {
        method: parts.method.to_string(),
        scheme: scheme.to_string(),
        authority: host,
        path,
        query: parts.uri.query().map(str::to_string),
        // Filled from `headers` when plugins run (see `Exchange::headers`).
        headers: if any_plugins {
            to_plugin(&parts.headers)
        } else {
            Vec::new()
        },
        body: body.map(|b| b.to_vec()),
    };
    // Each plugin the chains use is one instance of the pool, held until
    // the request ends: counted against the distribution's share.
    let plugin_share = if any_plugins {
        let share = edge.shares.of(id, snapshot.config.shares);
        match share.plugin_instances(id, chains.distinct_plugins()) {
            Ok(permit) => Some(permit),
            Err(exhausted) => {
                return Err(Served::error(StatusCode::SERVICE_UNAVAILABLE, exhausted)
                    .of(id)
                    .for_client(client))
            }
        }
    } else {
        None
    };
    let session = any_plugins.then(|| {
        RequestSession::new(RequestContext {
            request_id: edge.request_id(number),
            pop_id: edge.pop_id.clone(),
            client_ip: client,
            geo: edge.geo.clone(),
            request_body: if streamed.is_some() {
                BodyAccess::Streamed
            } else {
                BodyAccess::Held
            },
        })
    });
    Ok(Exchange {
        edge: edge.clone(),
        snapshot: snapshot.clone(),
        connection: connection.clone(),
        dist_index,
        behavior_index,
        original: session.as_ref().map(|_| request.clone()),
        session,
        request,
        headers: parts.headers,
        streamed,
        from_peer,
        sender,
        path_as_received,
        background: false,
        viewer_url,
        ticket: None,
        number,
        _plugin_share: plugin_share,
        body_share: None,
    })
}

/// Refuses a request whose `Host` disagrees with its target's authority
/// (absolute-form, HTTP/2 `:authority`) or that has several: routing, the
/// cache key and the origin must all see one host.
fn check_host_agreement<B>(request: &http::Request<B>) -> Result<(), String> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return match request.headers().contains_key(header::HOST) {
            true => Err("the request has more than one Host header".into()),
            false => Ok(()),
        };
    };
    match request.uri().authority() {
        Some(target)
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(target.as_str().as_bytes()) =>
        {
            Err(format!(
                "the Host header `{}` disagrees with the request's authority `{target}`",
                String::from_utf8_lossy(host.as_bytes())
            ))
        }
        _ => Ok(()),
    }
}
