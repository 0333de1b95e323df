//! Plugin routes: upload a component (checked with the edge host's own
//! validation), list, delete when no distribution uses it.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::distributions::{acting_customer, ApplyQuery};
use super::operator::check_id;
use super::{ApiError, ApiQuery, ApiResult, App};
use crate::auth::Principal;
use crate::model::{now_ms, Distribution, PluginVersion};
use crate::store::Collection;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(upload_plugin, delete_plugin))
        .routes(routes!(list_plugins))
        .routes(routes!(plugin_cost))
}

/// Which plugin's cost, over which stretch.
#[derive(Debug, Deserialize, IntoParams)]
pub struct CostQuery {
    /// The customer (operator tokens only).
    pub customer: Option<String>,
    /// The last this many minutes (default 60, at most a week: 10080).
    pub minutes: Option<u32>,
}

#[utoipa::path(get, path = "/v1/plugins/{plugin}/cost",
    params(("plugin" = String, Path, description = "plugin name"), CostQuery),
    responses((status = 200, body = [crate::plugin_costs::PluginCostPoint], description = "requests, instantiation and hook microseconds, peak memory and failures per minute, every version, distribution and edge summed, oldest first (from what edges report with their heartbeats)"),
        (status = 404, description = "no such plugin")))]
async fn plugin_cost(
    State(app): State<App>,
    principal: Principal,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<CostQuery>,
) -> ApiResult<Json<Vec<crate::plugin_costs::PluginCostPoint>>> {
    let customer = acting_customer(&app, &principal, query.customer).await?;
    if versions_of(&app, &customer, &name).await?.is_empty() {
        return Err(ApiError::not_found(format!("plugin `{name}`")));
    }
    let minutes = query.minutes.unwrap_or(60);
    Ok(Json(
        crate::plugin_costs::per_minute(&app.store, &customer, &name, minutes).await?,
    ))
}

/// A request body read whole, whose rejections answer in JSON like every
/// other error. A body announced larger than the limit is refused (413)
/// before it is read.
pub struct RawBody(pub Bytes);

/// Every stored version of a customer's plugin.
async fn versions_of(app: &App, customer: &str, name: &str) -> ApiResult<Vec<PluginVersion>> {
    Ok(app
        .store
        .find(
            Collection::Plugins,
            &[("customer", json!(customer)), ("name", json!(name))],
        )
        .await?)
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the upload is larger than this controller accepts (--max-plugin-mib)",
    )
}

impl FromRequest<App> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &App) -> Result<Self, Self::Rejection> {
        let announced = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if announced.is_some_and(|length| length > app.max_plugin_bytes) {
            return Err(too_large());
        }
        Bytes::from_request(request, app)
            .await
            .map(RawBody)
            .map_err(|e| {
                let status = e.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::new(status, e.body_text())
                }
            })
    }
}

#[utoipa::path(post, path = "/v1/plugins/{plugin}",
    params(("plugin" = String, Path, description = "plugin name"), ApplyQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "a parapet:plugin component"),
    responses((status = 201, body = PluginVersion, description = "a new version"),
        (status = 200, body = PluginVersion, description = "the same bytes as the newest version"),
        (status = 400, description = "not a valid parapet:plugin component, with the reason"),
        (status = 413, description = "too large")))]
async fn upload_plugin(
    State(app): State<App>,
    principal: Principal,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<ApplyQuery>,
    RawBody(bytes): RawBody,
) -> ApiResult<(StatusCode, Json<PluginVersion>)> {
    check_id("plugin", &name)?;
    let customer = acting_customer(&app, &principal, query.customer).await?;
    let validator = app.validator.clone();
    let checked = bytes.clone();
    let sha256 = tokio::task::spawn_blocking(move || validator.validate(&checked))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::bad_request(format!("not a valid plugin: {e}")))?;
    let versions = versions_of(&app, &customer, &name).await?;
    let newest = versions.iter().max_by_key(|v| v.version);
    if let Some(newest) = newest.filter(|v| v.sha256 == sha256) {
        return Ok((StatusCode::OK, Json(newest.clone())));
    }
    app.store
        .backend()
        .put_blob(&PluginVersion::blob(&sha256), &bytes)
        .await?;
    let plugin = PluginVersion {
        customer: customer.clone(),
        name: name.clone(),
        version: newest.map_or(1, |v| v.version + 1),
        sha256,
        size: bytes.len() as u64,
        created_ms: now_ms(),
    };
    app.store
        .insert(
            Collection::Plugins,
            &PluginVersion::key(&customer, &name, plugin.version),
            &plugin,
        )
        .await?;
    tracing::info!(%customer, plugin = %name, version = plugin.version, sha256 = %plugin.sha256, "plugin uploaded");
    Ok((StatusCode::CREATED, Json(plugin)))
}

#[utoipa::path(get, path = "/v1/plugins", responses((status = 200, body = [PluginVersion])))]
async fn list_plugins(
    State(app): State<App>,
    principal: Principal,
) -> ApiResult<Json<Vec<PluginVersion>>> {
    let mut plugins: Vec<PluginVersion> = match &principal {
        Principal::Customer(c) => {
            app.store
                .find(Collection::Plugins, &[("customer", json!(c))])
                .await?
        }
        _ => app.store.find(Collection::Plugins, &[]).await?,
    };
    plugins
        .sort_by(|a, b| (&a.customer, &a.name, a.version).cmp(&(&b.customer, &b.name, b.version)));
    Ok(Json(plugins))
}

#[utoipa::path(delete, path = "/v1/plugins/{plugin}",
    params(("plugin" = String, Path, description = "plugin name"), ApplyQuery),
    responses((status = 200, body = [PluginVersion], description = "the versions deleted"), (status = 404), (status = 409, description = "a distribution uses it")))]
async fn delete_plugin(
    State(app): State<App>,
    principal: Principal,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<ApplyQuery>,
) -> ApiResult<Json<Vec<PluginVersion>>> {
    let customer = acting_customer(&app, &principal, query.customer).await?;
    let versions = versions_of(&app, &customer, &name).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("plugin `{name}`")));
    }
    let distributions: Vec<Distribution> = app
        .store
        .find(Collection::Distributions, &[("customer", json!(customer))])
        .await?;
    let rolling = crate::deployments::rolling(&app.store).await?;
    for distribution in &distributions {
        let mut in_service = vec![distribution.live_version, distribution.latest_version];
        in_service.extend(
            rolling
                .iter()
                .filter(|d| d.distribution == distribution.id)
                .map(|d| d.to_version),
        );
        for number in in_service {
            let Some(version) =
                crate::distributions::version(&app.store, &distribution.id, number).await?
            else {
                continue;
            };
            if versions.iter().any(|p| version.plugins.contains(&p.sha256)) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "plugin `{name}` is used by distribution `{}` (version {number})",
                        distribution.id
                    ),
                ));
            }
        }
    }
    for version in &versions {
        app.store
            .delete(
                Collection::Plugins,
                &PluginVersion::key(&customer, &name, version.version),
            )
            .await?;
        let still_used: Vec<PluginVersion> = app
            .store
            .find(Collection::Plugins, &[("sha256", json!(version.sha256))])
            .await?;
        if still_used.is_empty() {
            app.store
                .backend()
                .delete_blob(&PluginVersion::blob(&version.sha256))
                .await?;
        }
    }
    tracing::info!(%customer, plugin = %name, "plugin deleted");
    Ok(Json(versions))
}
