//! Deployment routes: start a blue/green rollout, promote, roll back,
//! status.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::distributions::owned;
use super::{ApiError, ApiResult, App, JsonBody};
use crate::auth::Principal;
use crate::deployments::{self, DeployError};
use crate::model::Deployment;
use crate::store::Collection;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(start_deployment, list_deployments))
        .routes(routes!(get_deployment))
        .routes(routes!(promote_deployment))
        .routes(routes!(rollback_deployment))
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, message),
            DeployError::NotFound(what) => ApiError::not_found(what),
            DeployError::Store(e) => e.into(),
        }
    }
}

/// A rollout to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeployment {
    /// Distribution id.
    pub distribution: String,
    /// The version to roll out.
    pub version: u64,
    /// The edge group that gets it first.
    pub group: String,
}

async fn visible(app: &App, principal: &Principal, id: &str) -> ApiResult<Deployment> {
    let deployment: Deployment = app
        .store
        .get(Collection::Deployments, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("deployment `{id}`")))?;
    match principal {
        Principal::Customer(c) if *c != deployment.customer => {
            Err(ApiError::not_found(format!("deployment `{id}`")))
        }
        _ => Ok(deployment),
    }
}

#[utoipa::path(post, path = "/v1/deployments", request_body = NewDeployment,
    responses((status = 201, body = Deployment), (status = 404), (status = 409)))]
async fn start_deployment(
    State(app): State<App>,
    principal: Principal,
    JsonBody(new): JsonBody<NewDeployment>,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let distribution = owned(&app, &principal, &new.distribution).await?;
    let deployment = deployments::start(&app.store, &distribution, new.version, &new.group).await?;
    tracing::info!(deployment = %deployment.id, group = %deployment.group, version = deployment.to_version, "deployment started");
    Ok((StatusCode::CREATED, Json(deployment)))
}

#[utoipa::path(get, path = "/v1/deployments", responses((status = 200, body = [Deployment])))]
async fn list_deployments(
    State(app): State<App>,
    principal: Principal,
) -> ApiResult<Json<Vec<Deployment>>> {
    let mut all: Vec<Deployment> = match &principal {
        Principal::Customer(c) => {
            app.store
                .find(Collection::Deployments, &[("customer", json!(c))])
                .await?
        }
        _ => app.store.find(Collection::Deployments, &[]).await?,
    };
    all.sort_by_key(|d| d.created_ms);
    Ok(Json(all))
}

#[utoipa::path(get, path = "/v1/deployments/{deployment}",
    params(("deployment" = String, Path, description = "deployment id")),
    responses((status = 200, body = Deployment), (status = 404)))]
async fn get_deployment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Deployment>> {
    Ok(Json(visible(&app, &principal, &id).await?))
}

#[utoipa::path(post, path = "/v1/deployments/{deployment}/promote",
    params(("deployment" = String, Path, description = "deployment id")),
    responses((status = 200, body = Deployment), (status = 404), (status = 409)))]
async fn promote_deployment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Deployment>> {
    let deployment = visible(&app, &principal, &id).await?;
    let done = deployments::finish(&app.store, &deployment, true).await?;
    tracing::info!(deployment = %id, "deployment promoted");
    Ok(Json(done))
}

#[utoipa::path(post, path = "/v1/deployments/{deployment}/rollback",
    params(("deployment" = String, Path, description = "deployment id")),
    responses((status = 200, body = Deployment), (status = 404), (status = 409)))]
async fn rollback_deployment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Deployment>> {
    let deployment = visible(&app, &principal, &id).await?;
    let done = deployments::finish(&app.store, &deployment, false).await?;
    tracing::info!(deployment = %id, "deployment rolled back");
    Ok(Json(done))
}
