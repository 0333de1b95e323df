//! Purge, prewarm and job routes, and recent logs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::distributions::owned;
use super::{ApiError, ApiQuery, ApiResult, App, JsonBody};
use crate::auth::Principal;
use crate::jobs::{self, JobView};
use crate::model::{Distribution, Job, LogRecord, PurgeTarget, Work};
use crate::store::Collection;
use parapet_config::domains::{serves, split_url};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(purge))
        .routes(routes!(prewarm))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(recent_logs))
}

/// A purge: one of `url`, `prefix`, `tag`, `everything`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Distribution id.
    pub distribution: String,
    /// One URL (`host/path?query`, or a full URL) on the distribution's
    /// domains.
    #[serde(default)]
    pub url: Option<String>,
    /// A `host/path` prefix on one of the distribution's domains.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A Surrogate-Key tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// The whole distribution.
    #[serde(default)]
    pub everything: bool,
    /// Mark stale instead of deleting.
    #[serde(default)]
    pub soft: bool,
}

#[utoipa::path(post, path = "/v1/purges", request_body = PurgeRequest,
    responses((status = 202, body = JobView, description = "queued; follow it at /v1/jobs/{id}"), (status = 400), (status = 404)))]
async fn purge(
    State(app): State<App>,
    principal: Principal,
    JsonBody(request): JsonBody<PurgeRequest>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let distribution = owned(&app, &principal, &request.distribution).await?;
    let mut targets = Vec::new();
    if let Some(url) = request.url {
        on_domains(&distribution, "url", &url)?;
        targets.push(PurgeTarget::Url(url));
    }
    if let Some(prefix) = request.prefix {
        on_domains(&distribution, "prefix", &prefix)?;
        targets.push(PurgeTarget::Prefix(prefix));
    }
    if let Some(tag) = request.tag {
        targets.push(PurgeTarget::Tag(tag));
    }
    if request.everything {
        targets.push(PurgeTarget::Everything);
    }
    if targets.len() != 1 {
        return Err(ApiError::bad_request(
            "give exactly one of `url`, `prefix`, `tag` or `everything`",
        ));
    }
    let work = Work::Purge {
        target: targets.remove(0),
        soft: request.soft,
    };
    let job = jobs::create(&app.store, &distribution.customer, &distribution.id, work).await?;
    tracing::info!(job = %job.id, distribution = %distribution.id, "purge queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(jobs::view(&app.store, job).await?),
    ))
}

/// URLs to fetch ahead of demand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrewarmRequest {
    /// Distribution id.
    pub distribution: String,
    /// Full URLs on the distribution's domains (at most 1000).
    pub urls: Vec<String>,
}

#[utoipa::path(post, path = "/v1/prewarms", request_body = PrewarmRequest,
    responses((status = 202, body = JobView), (status = 400), (status = 404)))]
async fn prewarm(
    State(app): State<App>,
    principal: Principal,
    JsonBody(request): JsonBody<PrewarmRequest>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let distribution = owned(&app, &principal, &request.distribution).await?;
    if request.urls.is_empty() {
        return Err(ApiError::bad_request("urls: at least one URL is needed"));
    }
    if request.urls.len() > MAX_PREWARM_URLS {
        return Err(ApiError::bad_request(format!(
            "urls: at most {MAX_PREWARM_URLS} URLs per prewarm (got {}); split them into several jobs",
            request.urls.len()
        )));
    }
    for (i, url) in request.urls.iter().enumerate() {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ApiError::bad_request(format!(
                "urls[{i}]: `{url}` is not an http(s) URL"
            )));
        }
        on_domains(&distribution, &format!("urls[{i}]"), url)?;
    }
    let work = Work::Prewarm { urls: request.urls };
    let job = jobs::create(&app.store, &distribution.customer, &distribution.id, work).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(jobs::view(&app.store, job).await?),
    ))
}

/// Most URLs one prewarm job fetches (what an edge carries out per order).
pub const MAX_PREWARM_URLS: usize = 1000;

/// Refuses (400, naming `field`) a URL or prefix whose host is not one of
/// the distribution's domains: a customer purges and prewarms its own
/// names only.
fn on_domains(distribution: &Distribution, field: &str, url: &str) -> ApiResult<()> {
    let (host, _, _) = split_url(url);
    if distribution.domains.iter().any(|d| serves(d, &host)) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "{field}: `{url}` is not on a domain of distribution `{}` ({})",
        distribution.id,
        distribution.domains.join(", ")
    )))
}

#[utoipa::path(get, path = "/v1/jobs", responses((status = 200, body = [Job])))]
async fn list_jobs(State(app): State<App>, principal: Principal) -> ApiResult<Json<Vec<Job>>> {
    let mut all: Vec<Job> = match &principal {
        Principal::Customer(c) => {
            app.store
                .find(Collection::Jobs, &[("customer", json!(c))])
                .await?
        }
        _ => app.store.find(Collection::Jobs, &[]).await?,
    };
    all.sort_by_key(|j| std::cmp::Reverse(j.created_ms));
    Ok(Json(all))
}

#[utoipa::path(get, path = "/v1/jobs/{job}",
    params(("job" = String, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 404)))]
async fn get_job(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let job: Job = app
        .store
        .get(Collection::Jobs, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job `{id}`")))?;
    if let Principal::Customer(c) = &principal {
        if *c != job.customer {
            return Err(ApiError::not_found(format!("job `{id}`")));
        }
    }
    Ok(Json(jobs::view(&app.store, job).await?))
}

/// How many lines.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LogQuery {
    /// Newest first, at most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}/logs",
    params(("distribution" = String, Path, description = "distribution id"), LogQuery),
    responses((status = 200, body = [LogRecord]), (status = 404)))]
async fn recent_logs(
    State(app): State<App>,
    principal: Principal,
    Path(distribution): Path<String>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> ApiResult<Json<Vec<LogRecord>>> {
    owned(&app, &principal, &distribution).await?;
    let lines = app
        .store
        .find_newest(
            Collection::Logs,
            &[("distribution", json!(distribution))],
            "timestamp_ms",
            query.limit.unwrap_or(100).min(1000),
        )
        .await?;
    Ok(Json(lines))
}
