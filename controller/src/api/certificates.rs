//! Certificate routes: upload a distribution's certificate and key, opt
//! into automatic (ACME) certificates, show, list, remove. The private key
//! goes in and is never shown again.

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
use crate::certificates::{self, CertificateError, CertificateInfo, CertificateRecord};
use crate::model::now_ms;
use crate::store::Collection;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(
            upload_certificate,
            get_certificate,
            remove_certificate
        ))
        .routes(routes!(request_acme_certificate))
        .routes(routes!(list_certificates))
}

/// A certificate to upload.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateUpload {
    /// The chain (PEM): the leaf first, then each issuer.
    pub certificate: String,
    /// Its private key (PEM); stored sealed with the operator's key and
    /// never shown again.
    pub private_key: String,
}

impl std::fmt::Debug for CertificateUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateUpload")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

impl From<CertificateError> for ApiError {
    fn from(e: CertificateError) -> Self {
        match e {
            CertificateError::Invalid(message) => ApiError::bad_request(message),
            CertificateError::NoSecretKey(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            }
            CertificateError::Store(e) => e.into(),
        }
    }
}

/// The certificate of distribution `id`, if the caller may see it; 404
/// otherwise.
async fn existing(app: &App, principal: &Principal, id: &str) -> ApiResult<CertificateRecord> {
    owned(app, principal, id).await?;
    certificates::get(&app.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("a certificate for `{id}`")))
}

/// The live domains of `id`.
async fn domains(app: &App, id: &str) -> ApiResult<Vec<String>> {
    crate::acme::live_domains(&app.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("distribution `{id}`")))
}

#[utoipa::path(put, path = "/v1/distributions/{distribution}/certificate",
    params(("distribution" = String, Path, description = "distribution id")),
    request_body = CertificateUpload,
    responses((status = 200, body = CertificateInfo, description = "the certificate, served by the edges from their next configuration"),
        (status = 400, description = "the chain, key, names or dates are wrong, or the chain (64 KiB, 10 certificates) or key (16 KiB) too large; the message says which"),
        (status = 404), (status = 503, description = "the controller has no secret key to seal private keys with")))]
async fn upload_certificate(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
    JsonBody(upload): JsonBody<CertificateUpload>,
) -> ApiResult<Json<CertificateInfo>> {
    let distribution = owned(&app, &principal, &id).await?;
    let secret = app
        .secret_key
        .clone()
        .ok_or_else(certificates::no_secret_key)?;
    let domains = domains(&app, &id).await?;
    let checked = certificates::check(&upload.certificate, &upload.private_key, &domains, now_ms())
        .map_err(ApiError::bad_request)?;
    let mut record = certificates::new_record(&id, &distribution.customer, false);
    record.issued = Some(checked.seal(&upload.private_key, &id, &secret, false));
    certificates::put(&app.store, &record).await?;
    tracing::info!(distribution = %id, customer = %distribution.customer, "certificate uploaded");
    Ok(Json(record.info(now_ms())))
}

#[utoipa::path(post, path = "/v1/distributions/{distribution}/certificate/acme",
    params(("distribution" = String, Path, description = "distribution id")),
    responses((status = 202, body = CertificateInfo, description = "the controller orders the certificate at once and renews it; an uploaded one serves meanwhile"),
        (status = 400, description = "a domain is a wildcard, or the operator has no ACME directory"),
        (status = 404)))]
async fn request_acme_certificate(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<CertificateInfo>)> {
    let distribution = owned(&app, &principal, &id).await?;
    if app.settings.acme.is_none() {
        return Err(ApiError::bad_request(
            "this controller has no ACME directory ([acme] in its settings): upload a certificate instead",
        ));
    }
    crate::acme::refuse_wildcards(&domains(&app, &id).await?).map_err(ApiError::bad_request)?;
    let mut record = certificates::get(&app.store, &id)
        .await?
        .unwrap_or_else(|| certificates::new_record(&id, &distribution.customer, true));
    record.acme = true;
    record.acme_error = None;
    record.acme_failures = 0;
    record.acme_not_before_ms = 0;
    record.updated_ms = now_ms();
    certificates::put(&app.store, &record).await?;
    tracing::info!(distribution = %id, customer = %distribution.customer, "automatic certificate requested");
    Ok((StatusCode::ACCEPTED, Json(record.info(now_ms()))))
}

#[utoipa::path(get, path = "/v1/distributions/{distribution}/certificate",
    params(("distribution" = String, Path, description = "distribution id")),
    responses((status = 200, body = CertificateInfo), (status = 404)))]
async fn get_certificate(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<CertificateInfo>> {
    let record = existing(&app, &principal, &id).await?;
    Ok(Json(record.info(now_ms())))
}

#[utoipa::path(delete, path = "/v1/distributions/{distribution}/certificate",
    params(("distribution" = String, Path, description = "distribution id")),
    responses((status = 200, body = CertificateInfo, description = "the certificate removed (edges stop serving it; ACME renewals stop)"), (status = 404)))]
async fn remove_certificate(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<CertificateInfo>> {
    let record = existing(&app, &principal, &id).await?;
    certificates::remove(&app.store, &id).await?;
    tracing::info!(distribution = %id, "certificate removed");
    Ok(Json(record.info(now_ms())))
}

#[utoipa::path(get, path = "/v1/certificates",
    responses((status = 200, body = [CertificateInfo], description = "the caller's certificates (the operator: everyone's), with days left")))]
async fn list_certificates(
    State(app): State<App>,
    principal: Principal,
) -> ApiResult<Json<Vec<CertificateInfo>>> {
    let records: Vec<CertificateRecord> = match &principal {
        Principal::Customer(customer) => {
            app.store
                .find(Collection::Certificates, &[("customer", json!(customer))])
                .await?
        }
        _ => certificates::all(&app.store).await?,
    };
    let now = now_ms();
    let mut infos: Vec<CertificateInfo> = records.iter().map(|r| r.info(now)).collect();
    infos.sort_by(|a, b| a.distribution.cmp(&b.distribution));
    Ok(Json(infos))
}
