//! The web console on the REST listener (`/console`): pages for customers
//! and the operator, rendered on the server (minijinja), with htmx for the
//! live parts. It signs in with a token and then calls the REST API in
//! process with it ([`api::Api`]), so it enforces exactly the API's rules.
//!
//! Every page carries a strict Content-Security-Policy (scripts and styles
//! from `/console/static` only), every form a CSRF token, and the session
//! cookie is `HttpOnly` and `SameSite=Strict`.

mod api;
mod locate;
mod operator;
mod pages;
mod plugin_cost;
mod session;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::Serialize;

use crate::api::App;
pub use api::Api;
use session::{Session, Sessions, Who};

/// What the console's handlers share.
pub struct Console {
    api: Api,
    app: App,
    sessions: Sessions,
    templates: Environment<'static>,
    /// Served over TLS: cookies are `Secure`.
    secure: bool,
}

/// Shared handle on [`Console`].
type Shared = Arc<Console>;

/// The policy of every console answer: nothing inline, nothing from
/// elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The templates, built into the binary.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../console/templates/base.html"),
    ),
    (
        "signin.html",
        include_str!("../../console/templates/signin.html"),
    ),
    (
        "distributions.html",
        include_str!("../../console/templates/distributions.html"),
    ),
    (
        "editor.html",
        include_str!("../../console/templates/editor.html"),
    ),
    (
        "distribution.html",
        include_str!("../../console/templates/distribution.html"),
    ),
    (
        "purge.html",
        include_str!("../../console/templates/purge.html"),
    ),
    (
        "jobs.html",
        include_str!("../../console/templates/jobs.html"),
    ),
    ("job.html", include_str!("../../console/templates/job.html")),
    (
        "job_progress.html",
        include_str!("../../console/templates/job_progress.html"),
    ),
    (
        "plugins.html",
        include_str!("../../console/templates/plugins.html"),
    ),
    (
        "plugin_cost.html",
        include_str!("../../console/templates/plugin_cost.html"),
    ),
    (
        "logs.html",
        include_str!("../../console/templates/logs.html"),
    ),
    (
        "customers.html",
        include_str!("../../console/templates/customers.html"),
    ),
    (
        "tokens.html",
        include_str!("../../console/templates/tokens.html"),
    ),
    (
        "edges.html",
        include_str!("../../console/templates/edges.html"),
    ),
];

/// Static files: (name, content type, bytes).
const STATIC: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css",
        include_bytes!("../../console/static/console.css"),
    ),
    (
        "console.js",
        "text/javascript",
        include_bytes!("../../console/static/console.js"),
    ),
    (
        "htmx.min.js",
        "text/javascript",
        include_bytes!("../../console/vendor/htmx-2.0.11.min.js"),
    ),
    (
        "uPlot.min.js",
        "text/javascript",
        include_bytes!("../../console/vendor/uPlot-1.6.32.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css",
        include_bytes!("../../console/vendor/uPlot-1.6.32.min.css"),
    ),
    (
        "world.svg",
        "image/svg+xml",
        include_bytes!("../../console/vendor/world-110m.svg"),
    ),
];

/// The console's routes, calling the API through `api` (the REST routes
/// with their state); `secure` when the listener serves TLS.
pub fn routes(app: App, api: axum::Router, secure: bool) -> axum::Router {
    let templates = templates();
    let console = Arc::new(Console {
        api: Api::new(api),
        app,
        sessions: Sessions::default(),
        templates,
        secure,
    });
    axum::Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/distributions") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/distributions") }),
        )
        .route("/console/static/{file}", get(static_file))
        .route(
            "/console/signin",
            get(pages::signin_form).post(pages::sign_in),
        )
        .route("/console/signout", post(pages::sign_out))
        .merge(pages::routes())
        .merge(plugin_cost::routes())
        .merge(operator::routes())
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(console)
}

/// The templates, parsed (they are part of the binary: a bad one is a
/// bug, caught by the tests).
fn templates() -> Environment<'static> {
    let mut templates = Environment::new();
    for (name, source) in TEMPLATES {
        templates
            .add_template(name, source)
            .unwrap_or_else(|e| panic!("console template {name}: {e:#}"));
    }
    templates.add_filter("time", pages::format_time);
    templates
}

/// Headers every console answer carries.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn static_file(Path(file): Path<String>) -> Response {
    match STATIC.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

/// A signed-in request: its session (others are sent to sign in).
pub struct Signed(Session);

impl FromRequestParts<Shared> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Self, Response> {
        // A token revoked, or a customer suspended, since sign-in ends
        // the session.
        let session = match console.sessions.find(&parts.headers) {
            Some(session) if console.app.auth.principal(&session.token).await.is_ok() => {
                Some(session)
            }
            Some(_) => {
                console.sessions.close(&parts.headers);
                None
            }
            None => None,
        };
        match session {
            Some(session) => Ok(Signed(session)),
            // htmx follows redirects in place: tell it to load the page.
            None if parts.headers.contains_key("hx-request") => Err((
                [("hx-redirect", "/console/signin")],
                StatusCode::UNAUTHORIZED,
            )
                .into_response()),
            None => Err(Redirect::to("/console/signin").into_response()),
        }
    }
}

/// A signed-in operator's request.
pub struct SignedOperator(Session);

impl FromRequestParts<Shared> for SignedOperator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Self, Response> {
        let Signed(session) = Signed::from_request_parts(parts, console).await?;
        if session.who != Who::Operator {
            return Err(page_error(
                StatusCode::FORBIDDEN,
                "this page is the operator's",
            ));
        }
        Ok(SignedOperator(session))
    }
}

impl Console {
    /// Renders `template` for `session` with `context` (a serializable
    /// map), at `status`.
    fn render(
        &self,
        status: StatusCode,
        template: &str,
        session: Option<&Session>,
        context: impl Serialize,
    ) -> Response {
        let who = session.map(|s| match &s.who {
            Who::Operator => "operator".to_string(),
            Who::Customer(id) => id.clone(),
        });
        let operator = session.is_some_and(|s| s.who == Who::Operator);
        let rendered = self.templates.get_template(template).and_then(|t| {
            t.render(minijinja::context! {
                who => who,
                operator => operator,
                csrf => session.map(|s| s.csrf.clone()),
                ..minijinja::Value::from_serialize(&context)
            })
        });
        match rendered {
            Ok(html) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(template, error = format!("{e:#}"), "console page failed");
                page_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "this page failed to render",
                )
            }
        }
    }

    /// The 403 for a form whose `csrf` is not `session`'s CSRF token.
    fn csrf_refusal(&self, session: &Session, csrf: &str) -> Option<Response> {
        if session.csrf_matches(csrf) {
            None
        } else {
            tracing::warn!("console form without its CSRF token refused");
            Some(page_error(
                StatusCode::FORBIDDEN,
                "this form's CSRF token is missing or wrong: reload the page and try again",
            ))
        }
    }
}

/// A plain error page.
fn page_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// See `/console/...` after a change.
fn see(path: &str) -> Response {
    Redirect::to(path).into_response()
}

/// The state extractor for the console's handlers.
type Ctx = State<Shared>;

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_edges_page_renders_edges_groups_and_pops() {
        let edge = crate::model::EdgeStatus {
            edge: crate::model::Edge {
                id: "edge_1".into(),
                name: "blue-1".into(),
                pop: "fra".into(),
                role: "edge".into(),
                group: "blue".into(),
                version: "0.1.0".into(),
                registered_ms: 0,
                last_heartbeat_ms: 0,
                config_revision: 3,
                requests_per_second: 1.5,
                cache_bytes: 3 << 20,
                cache_objects: 1,
                serving: true,
            },
            healthy: true,
        };
        let page = super::templates()
            .get_template("edges.html")
            .and_then(|t| {
                t.render(json!({
                    "edges": [serde_json::to_value(&edge).unwrap()],
                    "groups": [{"name": "blue", "edges": 1, "healthy": 1, "pops": ["fra"], "deployments": []}],
                    "pops": [
                        {"id": "fra", "name": "Frankfurt", "lat": 50.11, "lon": 8.68, "edges": 1, "healthy": 1},
                        {"id": "nyc", "name": null, "lat": null, "lon": null, "edges": 1, "healthy": 0},
                    ],
                    "who": "operator", "operator": true, "csrf": "c",
                }))
            })
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            page.contains("blue-1") && page.contains("3.0 MiB") && page.contains("1/1 healthy"),
            "{page}"
        );
    }
}
