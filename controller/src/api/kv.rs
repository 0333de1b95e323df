//! KV routes: the key-value data plugins read, per distribution.

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
use crate::model::KvEntry;
use crate::store::Collection;

/// Longest key, in bytes.
const MAX_KEY: usize = 512;
/// Largest value, in bytes.
const MAX_VALUE: usize = 64 * 1024;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(put_entry, get_entry, delete_entry))
        .routes(routes!(list_entries))
}

/// A value to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewValue {
    /// The value (up to 64 KiB).
    pub value: String,
}

fn check_key(key: &str) -> ApiResult<()> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(ApiError::bad_request(format!(
            "a key has 1 to {MAX_KEY} bytes"
        )));
    }
    Ok(())
}

/// Refuses (413) an entry that would take the distribution's KV data past
/// the operator's quotas: it all reaches every edge with the distribution.
async fn check_quota(app: &App, distribution: &str, key: &str, value_len: usize) -> ApiResult<()> {
    let quotas = &app.settings.quotas;
    let others: Vec<KvEntry> = app
        .store
        .find(Collection::Kv, &[("distribution", json!(distribution))])
        .await?;
    let others: Vec<&KvEntry> = others.iter().filter(|e| e.key != key).collect();
    let too_much = |what: String| Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, what));
    if others.len() + 1 > quotas.kv_entries_per_distribution {
        return too_much(format!(
            "distribution `{distribution}` has {} KV entries, the operator's limit ([quotas] kv_entries_per_distribution)",
            others.len()
        ));
    }
    let bytes: usize = others
        .iter()
        .map(|e| e.key.len() + e.value.len())
        .sum::<usize>()
        + key.len()
        + value_len;
    if bytes > quotas.kv_bytes_per_distribution {
        return too_much(format!(
            "distribution `{distribution}`'s KV data would be {bytes} bytes, above the operator's limit of {} ([quotas] kv_bytes_per_distribution)",
            quotas.kv_bytes_per_distribution
        ));
    }
    Ok(())
}

#[utoipa::path(put, path = "/v1/distributions/{distribution}/kv/{key}",
    params(("distribution" = String, Path, description = "distribution id"), ("key" = String, Path, description = "key")),
    request_body = NewValue,
    responses((status = 200, body = KvEntry), (status = 400), (status = 404), (status = 413, description = "past the KV quotas")))]
async fn put_entry(
    State(app): State<App>,
    principal: Principal,
    Path((distribution, key)): Path<(String, String)>,
    JsonBody(new): JsonBody<NewValue>,
) -> ApiResult<Json<KvEntry>> {
    owned(&app, &principal, &distribution).await?;
    check_key(&key)?;
    if new.value.len() > MAX_VALUE {
        return Err(ApiError::bad_request(format!(
            "value: longer than {MAX_VALUE} bytes"
        )));
    }
    check_quota(&app, &distribution, &key, new.value.len()).await?;
    let entry = KvEntry {
        distribution: distribution.clone(),
        key: key.clone(),
        value: new.value,
    };
    app.store
        .put(Collection::Kv, &KvEntry::id(&distribution, &key), &entry)
        .await?;
    crate::revision::bump(&app.store, std::slice::from_ref(&distribution)).await?;
    Ok(Json(entry))
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}/kv/{key}",
    params(("distribution" = String, Path, description = "distribution id"), ("key" = String, Path, description = "key")),
    responses((status = 200, body = KvEntry), (status = 404)))]
async fn get_entry(
    State(app): State<App>,
    principal: Principal,
    Path((distribution, key)): Path<(String, String)>,
) -> ApiResult<Json<KvEntry>> {
    owned(&app, &principal, &distribution).await?;
    app.store
        .get(Collection::Kv, &KvEntry::id(&distribution, &key))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("key `{key}`")))
}

#[utoipa::path(delete, path = "/v1/distributions/{distribution}/kv/{key}",
    params(("distribution" = String, Path, description = "distribution id"), ("key" = String, Path, description = "key")),
    responses((status = 200, body = KvEntry, description = "the entry removed"), (status = 404)))]
async fn delete_entry(
    State(app): State<App>,
    principal: Principal,
    Path((distribution, key)): Path<(String, String)>,
) -> ApiResult<Json<KvEntry>> {
    owned(&app, &principal, &distribution).await?;
    let id = KvEntry::id(&distribution, &key);
    let entry: KvEntry = app
        .store
        .get(Collection::Kv, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("key `{key}`")))?;
    app.store.delete(Collection::Kv, &id).await?;
    crate::revision::bump(&app.store, std::slice::from_ref(&distribution)).await?;
    Ok(Json(entry))
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}/kv",
    params(("distribution" = String, Path, description = "distribution id")),
    responses((status = 200, body = [KvEntry]), (status = 404)))]
async fn list_entries(
    State(app): State<App>,
    principal: Principal,
    Path(distribution): Path<String>,
) -> ApiResult<Json<Vec<KvEntry>>> {
    owned(&app, &principal, &distribution).await?;
    Ok(Json(
        app.store
            .find(Collection::Kv, &[("distribution", json!(distribution))])
            .await?,
    ))
}
