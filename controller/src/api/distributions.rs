//! Distribution routes: apply a config (a new version), list, show,
//! versions, diff. A customer reaches its own distributions only; another
//! customer's look the same as missing ones (404).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::operator::check_id;
use super::{ApiError, ApiQuery, ApiResult, App, JsonBody};
use crate::auth::Principal;
use crate::distributions::{self, SpecError};
use crate::model::{Customer, Distribution, Version};
use crate::store::Collection;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(apply_distribution, get_distribution))
        .routes(routes!(list_distributions))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(diff_versions))
        .routes(routes!(distribution_status))
        .routes(routes!(distribution_traffic))
}

/// Which stretch of traffic.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TrafficQuery {
    /// The last this many minutes (default 60, at most a week: 10080).
    pub minutes: Option<u32>,
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}/traffic",
    params(("distribution" = String, Path, description = "distribution id"), TrafficQuery),
    responses((status = 200, body = [crate::traffic::TrafficPoint], description = "requests, hits, bytes and status classes per minute, every edge summed, oldest first (from the access log lines edges ship)"), (status = 404)))]
async fn distribution_traffic(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<TrafficQuery>,
) -> ApiResult<Json<Vec<crate::traffic::TrafficPoint>>> {
    owned(&app, &principal, &id).await?;
    let minutes = query.minutes.unwrap_or(60).clamp(1, 7 * 24 * 60);
    Ok(Json(
        crate::traffic::per_minute(&app.store, &id, minutes).await?,
    ))
}

/// How to apply a config.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ApplyQuery {
    /// The customer (operator tokens only).
    pub customer: Option<String>,
    /// Store the version without making it live, for a blue/green
    /// deployment (`POST /v1/deployments`).
    #[serde(default)]
    pub stage: bool,
    /// Let the domains overlap another customer's wildcard or names
    /// (operator tokens only; one name is never two distributions').
    #[serde(default)]
    pub claim_override: bool,
}

/// The customer a request acts for: the token's own, or for the operator
/// the `customer` query parameter.
pub async fn acting_customer(
    app: &App,
    principal: &Principal,
    on_behalf: Option<String>,
) -> ApiResult<String> {
    match (principal, on_behalf) {
        (Principal::Customer(own), None) => Ok(own.clone()),
        (Principal::Customer(own), Some(other)) if *own == other => Ok(other),
        (Principal::Customer(_), Some(_)) => Err(ApiError::forbidden(
            "a customer token acts for its own customer only",
        )),
        (Principal::Operator, Some(customer)) => {
            if app
                .store
                .get::<Customer>(Collection::Customers, &customer)
                .await?
                .is_none()
            {
                return Err(ApiError::not_found(format!("customer `{customer}`")));
            }
            Ok(customer)
        }
        (Principal::Operator, None) => Err(ApiError::bad_request(
            "operators name the customer: add `?customer=<id>`",
        )),
        (Principal::Edge(_) | Principal::Monitor, _) => Err(ApiError::forbidden(
            "this needs a customer or operator token",
        )),
    }
}

/// The distribution `id` if the caller may see it; 404 otherwise.
pub async fn owned(app: &App, principal: &Principal, id: &str) -> ApiResult<Distribution> {
    let distribution: Option<Distribution> = app.store.get(Collection::Distributions, id).await?;
    match distribution {
        Some(d) if matches!(principal, Principal::Operator) => Ok(d),
        Some(d) if matches!(principal, Principal::Customer(c) if *c == d.customer) => Ok(d),
        _ => Err(ApiError::not_found(format!("distribution `{id}`"))),
    }
}

/// A distribution and its live configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct DistributionView {
    /// The distribution.
    #[serde(flatten)]
    pub distribution: Distribution,
    /// The live version's configuration as submitted.
    #[schema(value_type = Object)]
    pub config: Value,
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Invalid(message) => ApiError::bad_request(message),
            SpecError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, message),
            SpecError::Store(e) => e.into(),
        }
    }
}

#[utoipa::path(put, path = "/v1/distributions/{distribution}",
    params(("distribution" = String, Path, description = "distribution id"), ApplyQuery),
    request_body(content = Object, description = "the distribution table of parapet-edge's configuration, without `id` and `customer`; plugins name uploaded plugins (`waf` or `waf@2`)"),
    responses((status = 201, body = DistributionView, description = "a new version, live unless staged"), (status = 400), (status = 409)))]
async fn apply_distribution(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ApplyQuery>,
    JsonBody(spec): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<DistributionView>)> {
    check_id("distribution", &id)?;
    if query.claim_override && !matches!(principal, Principal::Operator) {
        return Err(ApiError::forbidden(
            "claim_override: only the operator may let domains overlap another customer's",
        ));
    }
    let customer = acting_customer(&app, &principal, query.customer).await?;
    if let Some(existing) = app
        .store
        .get::<Distribution>(Collection::Distributions, &id)
        .await?
    {
        if existing.customer != customer {
            // Ids are global (they are DNS labels): refused, not hidden.
            return Err(ApiError::forbidden(format!(
                "distribution id `{id}` belongs to another customer; choose another"
            )));
        }
        if crate::deployments::active(&app.store, &id).await?.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("a deployment of `{id}` is in progress: promote or roll it back first"),
            ));
        }
    }
    let resolved = distributions::resolve(&app.store, &id, &customer, &spec).await?;
    crate::admission::admit(&app, &id, &customer, &resolved).await?;
    let distribution = distributions::apply(
        &app.store,
        &id,
        &customer,
        spec.clone(),
        resolved,
        distributions::ApplyMode {
            stage: query.stage,
            claim_override: query.claim_override,
        },
    )
    .await?;
    tracing::info!(distribution = %id, %customer, version = distribution.live_version, "distribution applied");
    Ok((
        StatusCode::CREATED,
        Json(DistributionView {
            distribution,
            config: spec,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}",
    params(("distribution" = String, Path, description = "distribution id")),
    responses((status = 200, body = DistributionView), (status = 404)))]
async fn get_distribution(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<DistributionView>> {
    let distribution = owned(&app, &principal, &id).await?;
    let live = distributions::version(&app.store, &id, distribution.live_version)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("version {} of `{id}`", distribution.live_version))
        })?;
    Ok(Json(DistributionView {
        distribution,
        config: live.spec,
    }))
}

#[utoipa::path(get, path = "/v1/distributions", responses((status = 200, body = [Distribution])))]
async fn list_distributions(
    State(app): State<App>,
    principal: Principal,
) -> ApiResult<Json<Vec<Distribution>>> {
    let distributions = match &principal {
        Principal::Customer(customer) => {
            app.store
                .find(Collection::Distributions, &[("customer", json!(customer))])
                .await?
        }
        _ => app.store.find(Collection::Distributions, &[]).await?,
    };
    Ok(Json(distributions))
}

/// A version as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummary {
    /// Version number.
    pub version: u64,
    /// Creation time.
    pub created_ms: i64,
    /// Whether edges serve it (outside a deployment's group).
    pub live: bool,
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}/versions",
    params(("distribution" = String, Path, description = "distribution id")),
    responses((status = 200, body = [VersionSummary]), (status = 404)))]
async fn list_versions(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<VersionSummary>>> {
    let distribution = owned(&app, &principal, &id).await?;
    let versions = distributions::versions(&app.store, &id).await?;
    Ok(Json(
        versions
            .iter()
            .map(|v| VersionSummary {
                version: v.version,
                created_ms: v.created_ms,
                live: v.version == distribution.live_version,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}/versions/{version}",
    params(("distribution" = String, Path, description = "distribution id"), ("version" = u64, Path, description = "version number")),
    responses((status = 200, body = Version), (status = 404)))]
async fn get_version(
    State(app): State<App>,
    principal: Principal,
    Path((id, number)): Path<(String, u64)>,
) -> ApiResult<Json<Version>> {
    owned(&app, &principal, &id).await?;
    let version = distributions::version(&app.store, &id, number)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("version {number} of `{id}`")))?;
    Ok(Json(version))
}

/// Which versions to compare.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DiffQuery {
    /// The older version.
    pub from: u64,
    /// The newer version.
    pub to: u64,
}

/// A unified diff.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffView {
    /// Unified diff of the submitted configs (pretty JSON).
    pub diff: String,
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}/diff",
    params(("distribution" = String, Path, description = "distribution id"), DiffQuery),
    responses((status = 200, body = DiffView), (status = 404)))]
async fn diff_versions(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> ApiResult<Json<DiffView>> {
    owned(&app, &principal, &id).await?;
    let load = |n: u64| {
        let app = app.clone();
        let id = id.clone();
        async move {
            distributions::version(&app.store, &id, n)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("version {n} of `{id}`")))
        }
    };
    let (from, to) = (load(query.from).await?, load(query.to).await?);
    Ok(Json(DiffView {
        diff: distributions::diff(&from, &to),
    }))
}

/// One edge's state of a distribution.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeApplyState {
    /// Edge id.
    pub edge: String,
    /// Edge name.
    pub name: String,
    /// PoP.
    pub pop: String,
    /// Edge group.
    pub group: String,
    /// Serving, with a recent heartbeat.
    pub healthy: bool,
    /// The version it serves; none until its heartbeat reported it (0:
    /// nothing: it never loaded there).
    pub version: Option<u64>,
    /// A newer version that did not load there.
    pub failed_version: Option<u64>,
    /// Why it did not load.
    pub error: Option<String>,
}

/// Where a distribution stands on every edge.
#[derive(Debug, Serialize, ToSchema)]
pub struct DistributionStatus {
    /// Distribution id.
    pub distribution: String,
    /// The version edges serve outside a deployment's group.
    pub live_version: u64,
    /// The newest version.
    pub latest_version: u64,
    /// Each registered edge.
    pub edges: Vec<EdgeApplyState>,
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}/status",
    params(("distribution" = String, Path, description = "distribution id")),
    responses((status = 200, body = DistributionStatus, description = "which version each edge serves, or why one did not load"), (status = 404)))]
async fn distribution_status(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<DistributionStatus>> {
    let distribution = owned(&app, &principal, &id).await?;
    let mut reported: std::collections::HashMap<String, crate::model::AppliedStatus> =
        crate::edges::statuses_of(&app.store, &id)
            .await?
            .into_iter()
            .collect();
    let edges = crate::edges::list(&app.store, app.heartbeat_interval_ms)
        .await?
        .into_iter()
        .map(|status| {
            let applied = reported.remove(&status.edge.id);
            EdgeApplyState {
                edge: status.edge.id,
                name: status.edge.name,
                pop: status.edge.pop,
                group: status.edge.group,
                healthy: status.healthy,
                version: applied.as_ref().map(|a| a.version),
                failed_version: applied.as_ref().and_then(|a| a.failed_version),
                error: applied.and_then(|a| a.error),
            }
        })
        .collect();
    Ok(Json(DistributionStatus {
        distribution: distribution.id,
        live_version: distribution.live_version,
        latest_version: distribution.latest_version,
        edges,
    }))
}
