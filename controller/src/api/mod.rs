//! The REST API (JSON over HTTP, axum): operators manage customers, tokens
//! and edges; customers manage their own distributions, plugins, KV data,
//! purges and logs. `/openapi.json` describes every route.

mod certificates;
mod deployments;
mod distributions;
mod jobs;
mod kv;
mod operator;
mod plugins;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{bearer, AuthError, Authenticator, Principal};
use crate::store::{Store, StoreError};

/// What every handler reaches.
pub struct AppState {
    /// Storage.
    pub store: Store,
    /// Token checks.
    pub auth: Authenticator,
    /// Heartbeat interval edges are told to keep.
    pub heartbeat_interval_ms: u64,
    /// Checks uploaded plugins, as an edge would load them.
    pub validator: Arc<parapet_host::PluginEngine>,
    /// Largest plugin upload, in bytes.
    pub max_plugin_bytes: usize,
    /// Each distribution's revision, for the edges' watchers.
    pub catalog: crate::catalog::Catalog,
    /// What customers' distributions may ask for and hold.
    pub settings: crate::settings::Settings,
    /// The operator's key sealing private keys; none: certificates cannot
    /// be uploaded.
    pub secret_key: Option<Arc<crate::secrets::SecretKey>>,
    /// The temporary directory of compiled plugins (when no other was
    /// given), held so it lives as long as the controller.
    pub compiled_scratch: Option<tempfile::TempDir>,
    /// Each customer's rate of changes (`[quotas]`
    /// `changes_per_minute_per_customer`).
    pub changes: governor::DefaultKeyedRateLimiter<String>,
}

/// Shared handle on [`AppState`].
pub type App = Arc<AppState>;

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong and, where it helps, what to do.
    pub message: String,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 404 for `what`.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read: the connection cannot be
            // reused, and the client must know before it tries.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                ApiError::new(StatusCode::CONFLICT, format!("{what} already exists"))
            }
            StoreError::Backend(reason) => {
                tracing::error!(%reason, "storage failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("storage unavailable, try again: {reason}"),
                )
            }
            corrupt @ StoreError::Corrupt { .. } => {
                tracing::error!(error = %corrupt, "corrupt document");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, corrupt.to_string())
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(e) => e.into(),
            AuthError::Suspended(_) => ApiError::forbidden(e.to_string()),
            _ => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl FromRequestParts<App> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        match caller(parts, app).await? {
            Principal::Edge(_) => Err(ApiError::forbidden(
                "edge credentials reach the gRPC API only",
            )),
            Principal::Monitor => Err(ApiError::forbidden(
                "a monitor token reads GET /v1/edges and GET /v1/groups only",
            )),
            Principal::Customer(customer) if changes(&parts.method) => {
                count_change(app, &customer)?;
                Ok(Principal::Customer(customer))
            }
            principal => Ok(principal),
        }
    }
}

/// Who the request's bearer token speaks for.
async fn caller(parts: &Parts, app: &App) -> ApiResult<Principal> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(app.auth.principal(bearer(header)?).await?)
}

/// A caller that may read the edges' state: the operator, or a monitor
/// token (which reaches nothing else).
pub struct EdgeReader;

impl FromRequestParts<App> for EdgeReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        match caller(parts, app).await? {
            Principal::Operator | Principal::Monitor => Ok(EdgeReader),
            _ => Err(ApiError::forbidden(
                "this needs an operator or monitor token",
            )),
        }
    }
}

/// Whether a call with `method` changes something (anything but reads).
fn changes(method: &axum::http::Method) -> bool {
    !matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    )
}

/// Counts a change of `customer`; 429 with `Retry-After` past its rate, so
/// one customer's stream of changes cannot keep the controller checking
/// plugins, and every edge relaunching them, for everyone else.
fn count_change(app: &App, customer: &str) -> ApiResult<()> {
    let key = customer.to_string();
    app.changes.check_key(&key).map_err(|not_until| {
        use governor::clock::Clock;
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let rate = app.settings.quotas.changes_per_minute_per_customer;
        tracing::warn!(customer, retry_after_s = seconds, "change refused: over the customer's rate");
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("customer `{customer}` made more than {rate} changes in a minute; retry in {seconds} s"),
            )
        }
    })
}

/// Only the operator may call.
pub fn require_operator(principal: &Principal) -> ApiResult<()> {
    match principal {
        Principal::Operator => Ok(()),
        _ => Err(ApiError::forbidden("this needs an operator token")),
    }
}

/// A JSON body whose errors name the field path: 400 `body.origin[0].url:
/// invalid type ...`, unknown fields included.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::bad_request(format!("invalid JSON: {inner}"))
            } else if path == "." {
                ApiError::bad_request(format!("invalid body: {inner}"))
            } else {
                ApiError::bad_request(format!("invalid body at `{path}`: {inner}"))
            }
        })?;
        Ok(JsonBody(value))
    }
}

/// Query parameters whose errors answer in JSON like every other error.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Parapet controller API", description = "Customers and operators manage the CDN. Every route takes `Authorization: Bearer <token>`."),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The REST router, with `/openapi.json`, `/healthz` and the web console
/// (`/console`, its cookies `Secure` when `tls`).
pub fn router(app: App, tls: bool) -> axum::Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(operator::routes())
        .merge(distributions::routes())
        .merge(plugins::routes())
        .merge(kv::routes())
        .merge(certificates::routes())
        .merge(jobs::routes())
        .merge(deployments::routes())
        .split_for_parts();
    let openapi = Arc::new(openapi);
    let body_limit = axum::extract::DefaultBodyLimit::max(app.max_plugin_bytes);
    let api = router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let openapi = openapi.clone();
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .layer(body_limit)
        .with_state(app.clone());
    // The console calls `api` in process: its calls are not counted twice.
    api.clone()
        .merge(crate::console::routes(app, api, tls))
        .layer(axum::middleware::from_fn(crate::metrics::count_requests))
        .layer(body_limit)
}
