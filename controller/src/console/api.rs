//! The console's way to the REST API: in-process requests to the same
//! router API clients reach, with the session's token, so every rule
//! (tenancy, validation, rate limits) is the API's own.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// An API answer: its status and JSON body (`null` when it had none).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: Value,
}

impl Answer {
    /// The body when the call succeeded, else the API's error message.
    pub fn ok(self) -> Result<Value, String> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(self.error())
        }
    }

    /// The API's `error` message (or the status when there was none).
    pub fn error(&self) -> String {
        self.body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("the API answered {}", self.status))
    }
}

/// The REST API, called in process.
#[derive(Clone)]
pub struct Api {
    router: axum::Router,
}

impl Api {
    /// Calls through `router` (the REST routes, state applied).
    pub fn new(router: axum::Router) -> Self {
        Api { router }
    }

    /// `GET path` with `token`.
    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.call(token, Method::GET, path, None).await
    }

    /// `method path` with `token` and a JSON `body`.
    pub async fn send(&self, token: &str, method: Method, path: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.call(token, method, path, Some(("application/json", bytes)))
            .await
    }

    /// `POST path` with `token` and raw `bytes`.
    pub async fn upload(&self, token: &str, path: &str, bytes: Vec<u8>) -> Answer {
        self.call(
            token,
            Method::POST,
            path,
            Some(("application/octet-stream", bytes)),
        )
        .await
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let request = match request.body(body) {
            Ok(request) => request,
            Err(e) => return failure(format!("cannot call the API at {path}: {e}")),
        };
        let Ok(response) = self.router.clone().oneshot(request).await;
        let status = response.status();
        let bytes = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return failure(format!("reading the API's answer to {path}: {e}")),
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer { status, body }
    }
}

fn failure(message: String) -> Answer {
    Answer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: serde_json::json!({ "error": message }),
    }
}
