//! The operator's pages: customers (create, suspend, resume), tokens
//! (issue, revoke) and edges (health, heartbeat age, revision, load, cache
//! use, removal) with a map of the PoPs.

use axum::extract::Path;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Form;
use serde::Deserialize;
use serde_json::{json, Value};

use super::pages::CsrfForm;
use super::{page_error, see, Ctx, Shared, SignedOperator};

/// The routes of this module.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/console/customers", get(customers).post(create_customer))
        .route("/console/customers/{id}/{action}", post(customer_standing))
        .route("/console/tokens", get(tokens).post(issue_token))
        .route("/console/tokens/{id}/revoke", post(revoke_token))
        .route("/console/edges", get(edges))
        .route("/console/edges/{id}/remove", post(remove_edge))
}

async fn customers(console: Ctx, SignedOperator(s): SignedOperator) -> Response {
    let answer = console.api.get(&s.token, "/v1/customers").await;
    let (list, error) = match answer.ok() {
        Ok(list) => (list, None),
        Err(e) => (Value::Null, Some(e)),
    };
    console.render(
        StatusCode::OK,
        "customers.html",
        Some(&s),
        json!({ "customers": list, "error": error }),
    )
}

#[derive(Deserialize)]
pub struct NewCustomerForm {
    #[serde(default)]
    csrf: String,
    id: String,
    name: String,
}

async fn create_customer(
    console: Ctx,
    SignedOperator(s): SignedOperator,
    Form(form): Form<NewCustomerForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, &form.csrf) {
        return refused;
    }
    let body = json!({ "id": form.id.trim(), "name": form.name.trim() });
    changed(
        console
            .api
            .send(&s.token, Method::POST, "/v1/customers", &body)
            .await,
        "/console/customers",
    )
}

async fn customer_standing(
    console: Ctx,
    SignedOperator(s): SignedOperator,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, form.csrf()) {
        return refused;
    }
    if action != "suspend" && action != "resume" {
        return page_error(StatusCode::NOT_FOUND, "a customer is suspended or resumed");
    }
    let path = format!("/v1/customers/{}/{action}", super::pages::url_escape(&id));
    changed(
        console
            .api
            .send(&s.token, Method::POST, &path, &Value::Null)
            .await,
        "/console/customers",
    )
}

async fn tokens(console: Ctx, SignedOperator(s): SignedOperator) -> Response {
    tokens_page(&console, &s, StatusCode::OK, None).await
}

/// The tokens page; `issued` a token just issued (shown once) or why not.
async fn tokens_page(
    console: &Shared,
    s: &super::session::Session,
    status: StatusCode,
    issued: Option<Value>,
) -> Response {
    let (list, error) = match console.api.get(&s.token, "/v1/tokens").await.ok() {
        Ok(list) => (list, None),
        Err(e) => (Value::Null, Some(e)),
    };
    let customers = console
        .api
        .get(&s.token, "/v1/customers")
        .await
        .ok()
        .unwrap_or(Value::Null);
    console.render(
        status,
        "tokens.html",
        Some(s),
        json!({
            "tokens": list, "customers": customers, "error": error, "issued": issued,
        }),
    )
}

#[derive(Deserialize)]
pub struct NewTokenForm {
    #[serde(default)]
    csrf: String,
    name: String,
    /// A customer id, `monitor`, or empty for an operator token.
    #[serde(default)]
    customer: String,
}

async fn issue_token(
    console: Ctx,
    SignedOperator(s): SignedOperator,
    Form(form): Form<NewTokenForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, &form.csrf) {
        return refused;
    }
    let body = match form.customer.trim() {
        "" => json!({ "name": form.name }),
        "monitor" => json!({ "name": form.name, "monitor": true }),
        customer => json!({ "name": form.name, "customer": customer }),
    };
    let answer = console
        .api
        .send(&s.token, Method::POST, "/v1/tokens", &body)
        .await;
    let status = answer.status;
    let issued = match answer.ok() {
        Ok(token) => json!({ "token": token["token"], "id": token["id"] }),
        Err(error) => json!({ "error": error }),
    };
    tokens_page(&console, &s, status, Some(issued)).await
}

async fn revoke_token(
    console: Ctx,
    SignedOperator(s): SignedOperator,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, form.csrf()) {
        return refused;
    }
    let path = format!("/v1/tokens/{}", super::pages::url_escape(&id));
    changed(
        console
            .api
            .send(&s.token, Method::DELETE, &path, &Value::Null)
            .await,
        "/console/tokens",
    )
}

async fn edges(console: Ctx, SignedOperator(s): SignedOperator) -> Response {
    let (mut list, error) = match console.api.get(&s.token, "/v1/edges").await.ok() {
        Ok(list) => (list, None),
        Err(e) => (Value::Null, Some(e)),
    };
    let groups = console
        .api
        .get(&s.token, "/v1/groups")
        .await
        .ok()
        .unwrap_or(Value::Null);
    let now = crate::model::now_ms();
    if let Some(edges) = list.as_array_mut() {
        for edge in edges {
            let last = edge["last_heartbeat_ms"].as_i64().unwrap_or(0);
            edge["heartbeat_age_s"] =
                json!(((now - last).max(0) as f64 / 1000.0 * 10.0).round() / 10.0);
        }
    }
    let pops = console
        .api
        .get(&s.token, "/v1/pops")
        .await
        .ok()
        .unwrap_or(Value::Null);
    console.render(
        StatusCode::OK,
        "edges.html",
        Some(&s),
        json!({
            "edges": list, "groups": groups, "pops": pops, "error": error,
        }),
    )
}

async fn remove_edge(
    console: Ctx,
    SignedOperator(s): SignedOperator,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, form.csrf()) {
        return refused;
    }
    let path = format!("/v1/edges/{}", super::pages::url_escape(&id));
    changed(
        console
            .api
            .send(&s.token, Method::DELETE, &path, &Value::Null)
            .await,
        "/console/edges",
    )
}

/// Back to `then` after a change, or the API's error.
fn changed(answer: super::api::Answer, then: &str) -> Response {
    if answer.status.is_success() {
        see(then)
    } else {
        page_error(answer.status, &answer.error())
    }
}
