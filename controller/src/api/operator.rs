//! Operator routes: customers, tokens, edges and edge groups.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{require_operator, ApiError, ApiResult, App, EdgeReader, JsonBody};
use crate::auth::{new_token, Principal};
use crate::model::{
    now_ms, Customer, Distribution, Edge, EdgeGroup, EdgeStatus, Pop, TokenInfo, TokenKind,
    TokenRecord,
};
use crate::store::Collection;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_customer, list_customers))
        .routes(routes!(suspend_customer))
        .routes(routes!(resume_customer))
        .routes(routes!(issue_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(list_edges))
        .routes(routes!(remove_edge))
        .routes(routes!(list_groups))
        .routes(routes!(list_pops))
}

/// A new customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    /// Short id: lowercase letters, digits and `-`, 1 to 40 characters.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// Checks a short id (customers, distributions, plugins).
pub fn check_id(what: &str, id: &str) -> ApiResult<()> {
    let valid = !id.is_empty()
        && id.len() <= 40
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} `{id}` is not a valid id: use 1 to 40 lowercase letters, digits and inner `-`"
        )))
    }
}

#[utoipa::path(post, path = "/v1/customers", request_body = NewCustomer,
    responses((status = 201, body = Customer), (status = 409, description = "the id is taken")))]
async fn create_customer(
    State(app): State<App>,
    principal: Principal,
    JsonBody(new): JsonBody<NewCustomer>,
) -> ApiResult<(StatusCode, Json<Customer>)> {
    require_operator(&principal)?;
    check_id("customer", &new.id)?;
    let customer = Customer {
        id: new.id,
        name: new.name,
        suspended: false,
        created_ms: now_ms(),
    };
    app.store
        .insert(Collection::Customers, &customer.id, &customer)
        .await?;
    tracing::info!(customer = %customer.id, "customer created");
    Ok((StatusCode::CREATED, Json(customer)))
}

#[utoipa::path(get, path = "/v1/customers", responses((status = 200, body = [Customer])))]
async fn list_customers(
    State(app): State<App>,
    principal: Principal,
) -> ApiResult<Json<Vec<Customer>>> {
    require_operator(&principal)?;
    Ok(Json(app.store.find(Collection::Customers, &[]).await?))
}

async fn set_suspended(app: &App, id: &str, suspended: bool) -> ApiResult<Json<Customer>> {
    let updated = app
        .store
        .update(
            Collection::Customers,
            id,
            &[],
            &json!({ "suspended": suspended }),
        )
        .await?;
    if !updated {
        return Err(ApiError::not_found(format!("customer `{id}`")));
    }
    let customer = app
        .store
        .get(Collection::Customers, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("customer `{id}`")))?;
    // Edges drop (or take back) every distribution of the customer.
    let distributions: Vec<Distribution> = app
        .store
        .find(Collection::Distributions, &[("customer", json!(id))])
        .await?;
    let ids: Vec<String> = distributions.into_iter().map(|d| d.id).collect();
    crate::revision::bump(&app.store, &ids).await?;
    Ok(Json(customer))
}

#[utoipa::path(post, path = "/v1/customers/{customer}/suspend",
    params(("customer" = String, Path, description = "customer id")),
    responses((status = 200, body = Customer), (status = 404)))]
async fn suspend_customer(
    State(app): State<App>,
    principal: Principal,
    Path(customer): Path<String>,
) -> ApiResult<Json<Customer>> {
    require_operator(&principal)?;
    set_suspended(&app, &customer, true).await
}

#[utoipa::path(post, path = "/v1/customers/{customer}/resume",
    params(("customer" = String, Path, description = "customer id")),
    responses((status = 200, body = Customer), (status = 404)))]
async fn resume_customer(
    State(app): State<App>,
    principal: Principal,
    Path(customer): Path<String>,
) -> ApiResult<Json<Customer>> {
    require_operator(&principal)?;
    set_suspended(&app, &customer, false).await
}

/// A token to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The customer it speaks for; absent for an operator token.
    #[serde(default)]
    pub customer: Option<String>,
    /// A monitor token: reads the edge list and groups, nothing else
    /// (for the geo-DNS); not with `customer`.
    #[serde(default)]
    pub monitor: bool,
    /// What it is for.
    pub name: String,
}

/// A token just issued: the secret is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    /// The token's details.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The token itself; it cannot be shown again.
    pub token: String,
}

#[utoipa::path(post, path = "/v1/tokens", request_body = NewToken,
    responses((status = 201, body = IssuedToken), (status = 404, description = "no such customer")))]
async fn issue_token(
    State(app): State<App>,
    principal: Principal,
    JsonBody(new): JsonBody<NewToken>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    require_operator(&principal)?;
    let kind = match &new.customer {
        Some(_) if new.monitor => {
            return Err(ApiError::bad_request(
                "a monitor token reads the edges of every customer: give `monitor` or `customer`, not both",
            ))
        }
        Some(customer) => {
            if app
                .store
                .get::<Customer>(Collection::Customers, customer)
                .await?
                .is_none()
            {
                return Err(ApiError::not_found(format!("customer `{customer}`")));
            }
            TokenKind::Customer
        }
        None if new.monitor => TokenKind::Monitor,
        None => TokenKind::Operator,
    };
    let (record, token) = new_token(kind, new.customer, None, &new.name);
    app.store
        .insert(Collection::Tokens, &record.hash, &record)
        .await?;
    tracing::info!(token = %record.id, kind = ?kind, "token issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            info: TokenInfo::from(&record),
            token,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, body = [TokenInfo])))]
async fn list_tokens(
    State(app): State<App>,
    principal: Principal,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    require_operator(&principal)?;
    let records: Vec<TokenRecord> = app.store.find(Collection::Tokens, &[]).await?;
    let mut tokens: Vec<TokenInfo> = records
        .iter()
        .filter(|r| r.kind != TokenKind::Edge)
        .map(TokenInfo::from)
        .collect();
    tokens.sort_by_key(|t| t.created_ms);
    Ok(Json(tokens))
}

#[utoipa::path(delete, path = "/v1/tokens/{token}",
    params(("token" = String, Path, description = "public token id, `tok_...`")),
    responses((status = 200, body = TokenInfo), (status = 404)))]
async fn revoke_token(
    State(app): State<App>,
    principal: Principal,
    Path(token): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    require_operator(&principal)?;
    let records: Vec<TokenRecord> = app
        .store
        .find(Collection::Tokens, &[("id", json!(token))])
        .await?;
    let Some(mut record) = records.into_iter().next() else {
        return Err(ApiError::not_found(format!("token `{token}`")));
    };
    crate::auth::revoke(&app.store, &record).await?;
    record.revoked = true;
    tracing::info!(token = %record.id, "token revoked");
    Ok(Json(TokenInfo::from(&record)))
}

#[utoipa::path(get, path = "/v1/edges", responses((status = 200, body = [EdgeStatus])))]
async fn list_edges(
    State(app): State<App>,
    _reader: EdgeReader,
) -> ApiResult<Json<Vec<EdgeStatus>>> {
    Ok(Json(
        crate::edges::list(&app.store, app.heartbeat_interval_ms).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/edges/{edge}",
    params(("edge" = String, Path, description = "edge id or name")),
    responses((status = 200, body = Edge, description = "removed: its credential revoked, jobs no longer wait for it"), (status = 404)))]
async fn remove_edge(
    State(app): State<App>,
    principal: Principal,
    Path(edge): Path<String>,
) -> ApiResult<Json<Edge>> {
    require_operator(&principal)?;
    crate::edges::remove(&app.store, &edge)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("edge `{edge}`")))
}

#[utoipa::path(get, path = "/v1/pops",
    responses((status = 200, body = [Pop], description = "every PoP placed in the settings (`[pops]`) or with a registered edge, with its edges' health")))]
async fn list_pops(State(app): State<App>, _reader: EdgeReader) -> ApiResult<Json<Vec<Pop>>> {
    Ok(Json(
        crate::edges::pops(&app.store, app.heartbeat_interval_ms, &app.settings.pops).await?,
    ))
}

#[utoipa::path(get, path = "/v1/groups", responses((status = 200, body = [EdgeGroup])))]
async fn list_groups(
    State(app): State<App>,
    _reader: EdgeReader,
) -> ApiResult<Json<Vec<EdgeGroup>>> {
    Ok(Json(
        crate::edges::groups(&app.store, app.heartbeat_interval_ms).await?,
    ))
}
