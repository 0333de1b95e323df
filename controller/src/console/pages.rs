//! The pages every signed-in user has: distributions (versions, diff,
//! apply, blue/green), purge and prewarm with their progress, plugins and
//! logs. Each reads and changes through the API with the session's token.

use axum::extract::{Multipart, Path, Query};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Form;
use serde::Deserialize;
use serde_json::{json, Value};

use super::session::{self, Who, SESSION_COOKIE, SIGNIN_COOKIE};
use super::{page_error, see, Ctx, Shared, Signed};
use crate::auth::Principal;

/// The routes of this module.
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route(
            "/console/distributions",
            get(distributions).post(create_distribution),
        )
        .route("/console/distributions/{id}", get(distribution).post(apply))
        .route("/console/deployments", post(start_deployment))
        .route(
            "/console/deployments/{id}/{action}",
            post(finish_deployment),
        )
        .route("/console/purge", get(purge_form).post(purge))
        .route("/console/prewarm", post(prewarm))
        .route("/console/jobs", get(jobs))
        .route("/console/jobs/{id}", get(job))
        .route("/console/jobs/{id}/progress", get(job_progress))
        .route("/console/plugins", get(plugins).post(upload_plugin))
        .route("/console/logs", get(logs))
}

/// A form that carries only its CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

impl CsrfForm {
    /// The CSRF token the form carried.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

pub async fn signin_form(console: Ctx) -> Response {
    let csrf = session::random_hex();
    let mut page = console.render(
        StatusCode::OK,
        "signin.html",
        None,
        json!({ "signin_csrf": csrf }),
    );
    set_cookie(
        &mut page,
        &session::set_cookie(SIGNIN_COOKIE, Some(&csrf), console.secure),
    );
    page
}

pub async fn sign_in(console: Ctx, headers: HeaderMap, Form(form): Form<SignInForm>) -> Response {
    let expected = session::cookie_value(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !crate::auth::constant_time_eq(&expected, &form.csrf) {
        return page_error(
            StatusCode::FORBIDDEN,
            "this form's CSRF token is missing or wrong: reload the page and try again",
        );
    }
    let refused = |message: &str| {
        let csrf = session::random_hex();
        let mut page = console.render(
            StatusCode::UNAUTHORIZED,
            "signin.html",
            None,
            json!({ "signin_csrf": csrf, "error": message }),
        );
        set_cookie(
            &mut page,
            &session::set_cookie(SIGNIN_COOKIE, Some(&csrf), console.secure),
        );
        page
    };
    let token = form.token.trim().to_string();
    let who = match console.app.auth.principal(&token).await {
        Ok(Principal::Operator) => Who::Operator,
        Ok(Principal::Customer(id)) => Who::Customer(id),
        Ok(_) => return refused("the console signs in with a customer or operator token"),
        Err(e) => return refused(&e.to_string()),
    };
    tracing::info!(who = ?who, "console sign-in");
    let id = console.sessions.open(token, who);
    let mut page = see("/console/distributions");
    set_cookie(
        &mut page,
        &session::set_cookie(SESSION_COOKIE, Some(&id), console.secure),
    );
    set_cookie(
        &mut page,
        &session::set_cookie(SIGNIN_COOKIE, None, console.secure),
    );
    page
}

pub async fn sign_out(
    console: Ctx,
    headers: HeaderMap,
    Signed(s): Signed,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, &form.csrf) {
        return refused;
    }
    console.sessions.close(&headers);
    let mut page = see("/console/signin");
    set_cookie(
        &mut page,
        &session::set_cookie(SESSION_COOKIE, None, console.secure),
    );
    page
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = cookie.parse() {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, value);
    }
}

/// `{"error": ...}` page context, or the value.
fn or_error(result: Result<Value, String>) -> (Value, Option<String>) {
    match result {
        Ok(value) => (value, None),
        Err(e) => (Value::Null, Some(e)),
    }
}

async fn distributions(console: Ctx, Signed(s): Signed) -> Response {
    let (list, error) = or_error(console.api.get(&s.token, "/v1/distributions").await.ok());
    console.render(
        StatusCode::OK,
        "distributions.html",
        Some(&s),
        json!({
            "distributions": list, "error": error, "format": "json", "config": NEW_CONFIG,
        }),
    )
}

/// What the new-distribution form starts with.
const NEW_CONFIG: &str = r#"{
  "domains": ["www.example.com"],
  "origin": [{"url": "https://origin.example.com"}],
  "behavior": [{"path": "*"}]
}"#;

/// A configuration as typed in the console.
#[derive(Deserialize)]
pub struct ApplyForm {
    #[serde(default)]
    csrf: String,
    /// Only when creating.
    #[serde(default)]
    id: String,
    /// Only the operator, when creating: for whom.
    #[serde(default)]
    customer: String,
    /// `json` or `toml`.
    #[serde(default)]
    format: String,
    config: String,
    /// Store without making it live (for a deployment).
    #[serde(default)]
    stage: Option<String>,
}

async fn create_distribution(
    console: Ctx,
    Signed(s): Signed,
    Form(form): Form<ApplyForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, &form.csrf) {
        return refused;
    }
    let id = form.id.trim().to_string();
    let customer = form.customer.trim().to_string();
    match submit(&console, &s.token, &id, &customer, &form).await {
        Ok(()) => see(&format!("/console/distributions/{id}")),
        Err((status, error)) => {
            let list = console
                .api
                .get(&s.token, "/v1/distributions")
                .await
                .ok()
                .unwrap_or(Value::Null);
            console.render(
                status,
                "distributions.html",
                Some(&s),
                json!({
                    "distributions": list, "id": id, "customer": customer, "format": form.format,
                    "config": form.config, "problem": problem(&form.config, &error),
                }),
            )
        }
    }
}

#[derive(Deserialize)]
pub struct DiffQuery {
    from: Option<u64>,
    to: Option<u64>,
}

async fn distribution(
    console: Ctx,
    Signed(s): Signed,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Response {
    distribution_page(&console, &s, &id, q, StatusCode::OK, None).await
}

/// The page of distribution `id`; `edit` the form as submitted and what
/// was wrong with it.
async fn distribution_page(
    console: &Shared,
    s: &session::Session,
    id: &str,
    q: DiffQuery,
    status: StatusCode,
    edit: Option<(&ApplyForm, String)>,
) -> Response {
    let answer = console
        .api
        .get(&s.token, &format!("/v1/distributions/{id}"))
        .await;
    if answer.status == StatusCode::NOT_FOUND {
        return page_error(StatusCode::NOT_FOUND, &answer.error());
    }
    let (view, error) = or_error(answer.ok());
    let versions = console
        .api
        .get(&s.token, &format!("/v1/distributions/{id}/versions"))
        .await
        .ok()
        .unwrap_or(Value::Null);
    let edges = console
        .api
        .get(&s.token, &format!("/v1/distributions/{id}/status"))
        .await
        .ok()
        .unwrap_or(Value::Null);
    let deployments: Vec<Value> = console
        .api
        .get(&s.token, "/v1/deployments")
        .await
        .ok()
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["distribution"] == id)
        .collect();
    let traffic = console
        .api
        .get(
            &s.token,
            &format!("/v1/distributions/{id}/traffic?minutes=60"),
        )
        .await
        .ok()
        .unwrap_or(Value::Null);
    let totals = traffic_totals(&traffic);
    let diff = match (q.from, q.to) {
        (Some(from), Some(to)) => Some(
            match console
                .api
                .get(
                    &s.token,
                    &format!("/v1/distributions/{id}/diff?from={from}&to={to}"),
                )
                .await
                .ok()
            {
                Ok(d) => side_by_side(d["diff"].as_str().unwrap_or_default()),
                Err(e) => json!([{ "error": e }]),
            },
        ),
        _ => None,
    };
    let (format, config, problem) = match edit {
        Some((form, error)) => (
            form.format.clone(),
            form.config.clone(),
            Some(problem(&form.config, &error)),
        ),
        None => (
            "json".to_string(),
            serde_json::to_string_pretty(&view["config"]).unwrap_or_default(),
            None,
        ),
    };
    console.render(
        status,
        "distribution.html",
        Some(s),
        json!({
            "id": id, "view": view, "error": error, "versions": versions, "edges": edges,
            "deployments": deployments, "diff": diff, "traffic": traffic, "totals": totals, "from": q.from, "to": q.to,
            "format": format, "config": config, "problem": problem,
        }),
    )
}

async fn apply(
    console: Ctx,
    Signed(s): Signed,
    Path(id): Path<String>,
    Form(form): Form<ApplyForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, &form.csrf) {
        return refused;
    }
    // The operator applies for the distribution's customer.
    let customer = match s.who {
        Who::Operator => console
            .api
            .get(&s.token, &format!("/v1/distributions/{id}"))
            .await
            .ok()
            .ok()
            .and_then(|v| v["customer"].as_str().map(str::to_string))
            .unwrap_or_default(),
        Who::Customer(_) => String::new(),
    };
    match submit(&console, &s.token, &id, &customer, &form).await {
        Ok(()) => see(&format!("/console/distributions/{id}")),
        Err((status, error)) => {
            distribution_page(
                &console,
                &s,
                &id,
                DiffQuery {
                    from: None,
                    to: None,
                },
                status,
                Some((&form, error)),
            )
            .await
        }
    }
}

/// Applies `form`'s configuration as distribution `id` (for `customer`
/// when the operator names one).
async fn submit(
    console: &Shared,
    token: &str,
    id: &str,
    customer: &str,
    form: &ApplyForm,
) -> Result<(), (StatusCode, String)> {
    let spec: Value = match form.format.as_str() {
        "toml" => toml::from_str(&form.config)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid TOML: {e}")))?,
        _ => serde_json::from_str(&form.config)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?,
    };
    let mut query = Vec::new();
    if !customer.is_empty() {
        query.push(format!("customer={}", url_escape(customer)));
    }
    if form.stage.is_some() {
        query.push("stage=true".to_string());
    }
    let path = format!("/v1/distributions/{}?{}", url_escape(id), query.join("&"));
    let answer = console.api.send(token, Method::PUT, &path, &spec).await;
    if answer.status.is_success() {
        Ok(())
    } else {
        Err((answer.status, answer.error()))
    }
}

/// The sums of traffic points: requests, hit ratio (percent, one decimal),
/// bytes, status classes.
fn traffic_totals(points: &Value) -> Value {
    let (mut requests, mut hits, mut bytes, mut statuses) = (0u64, 0u64, 0u64, [0u64; 5]);
    for point in points.as_array().into_iter().flatten() {
        requests += point["requests"].as_u64().unwrap_or(0);
        hits += point["hits"].as_u64().unwrap_or(0);
        bytes += point["bytes"].as_u64().unwrap_or(0);
        for (i, sum) in statuses.iter_mut().enumerate() {
            *sum += point["statuses"][i].as_u64().unwrap_or(0);
        }
    }
    let hit_ratio = if requests == 0 {
        0.0
    } else {
        (hits as f64 * 1000.0 / requests as f64).round() / 10.0
    };
    json!({ "requests": requests, "hit_ratio": hit_ratio, "bytes": bytes, "statuses": statuses })
}

/// A unified diff as side-by-side rows, each `{"old": {"kind", "text"},
/// "new": {...}}` (`kind`: `removed`, `added`, `""` for context, `hunk`
/// for a `@@` header spanning both; a side with no line is null): each run
/// of removed lines is paired, row by row, with the added lines after it.
fn side_by_side(diff: &str) -> Value {
    let mut rows = Vec::new();
    let (mut removed, mut added): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let side = |kind: &str, text: Option<&&str>| {
        text.map_or(Value::Null, |text| json!({ "kind": kind, "text": text }))
    };
    let flush = |removed: &mut Vec<&str>, added: &mut Vec<&str>, rows: &mut Vec<Value>| {
        for i in 0..removed.len().max(added.len()) {
            rows.push(json!({
                "old": side("removed", removed.get(i)),
                "new": side("added", added.get(i)),
            }));
        }
        removed.clear();
        added.clear();
    };
    for line in diff.lines() {
        if line.starts_with("---") || line.starts_with("+++") {
            continue;
        }
        match line.split_at_checked(1) {
            Some(("-", text)) => removed.push(text),
            Some(("+", text)) => added.push(text),
            _ => {
                flush(&mut removed, &mut added, &mut rows);
                if line.starts_with("@@") {
                    rows.push(json!({ "hunk": line }));
                } else {
                    let text = line.strip_prefix(' ').unwrap_or(line);
                    rows.push(
                        json!({ "old": side("", Some(&text)), "new": side("", Some(&text)) }),
                    );
                }
            }
        }
    }
    flush(&mut removed, &mut added, &mut rows);
    Value::Array(rows)
}

/// An API error and the line of `config` it concerns: `{"message",
/// "line", "lines": [{"number", "text", "here"}]}`.
fn problem(config: &str, message: &str) -> Value {
    let line = super::locate::line_of(config, message);
    let lines: Vec<Value> = match line {
        Some(line) => config
            .lines()
            .enumerate()
            .map(|(i, text)| (i + 1, text))
            .filter(|(n, _)| n.abs_diff(line) <= 3)
            .map(|(n, text)| json!({ "number": n, "text": text, "here": n == line }))
            .collect(),
        None => Vec::new(),
    };
    json!({ "message": message, "line": line, "lines": lines })
}

/// Percent-encodes a path segment or query value.
pub fn url_escape(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[derive(Deserialize)]
pub struct DeploymentForm {
    #[serde(default)]
    csrf: String,
    distribution: String,
    version: u64,
    group: String,
}

async fn start_deployment(
    console: Ctx,
    Signed(s): Signed,
    Form(form): Form<DeploymentForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, &form.csrf) {
        return refused;
    }
    let body =
        json!({ "distribution": form.distribution, "version": form.version, "group": form.group });
    let answer = console
        .api
        .send(&s.token, Method::POST, "/v1/deployments", &body)
        .await;
    after_change(
        answer,
        &format!("/console/distributions/{}", url_escape(&form.distribution)),
    )
}

async fn finish_deployment(
    console: Ctx,
    Signed(s): Signed,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, &form.csrf) {
        return refused;
    }
    if action != "promote" && action != "rollback" {
        return page_error(
            StatusCode::NOT_FOUND,
            "a deployment is promoted or rolled back",
        );
    }
    let answer = console
        .api
        .send(
            &s.token,
            Method::POST,
            &format!("/v1/deployments/{}/{action}", url_escape(&id)),
            &Value::Null,
        )
        .await;
    let distribution = answer.body["distribution"]
        .as_str()
        .map(url_escape)
        .unwrap_or_default();
    after_change(answer, &format!("/console/distributions/{distribution}"))
}

/// See `then` after a change that succeeded, else the API's error.
fn after_change(answer: super::api::Answer, then: &str) -> Response {
    if answer.status.is_success() {
        see(then)
    } else {
        page_error(answer.status, &answer.error())
    }
}

async fn purge_form(console: Ctx, Signed(s): Signed) -> Response {
    purge_page(&console, &s, StatusCode::OK, None).await
}

async fn purge_page(
    console: &Shared,
    s: &session::Session,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let list = console
        .api
        .get(&s.token, "/v1/distributions")
        .await
        .ok()
        .unwrap_or(Value::Null);
    console.render(
        status,
        "purge.html",
        Some(s),
        json!({ "distributions": list, "error": error }),
    )
}

#[derive(Deserialize)]
pub struct PurgeForm {
    #[serde(default)]
    csrf: String,
    distribution: String,
    /// `url`, `prefix`, `tag` or `everything`.
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    soft: Option<String>,
}

async fn purge(console: Ctx, Signed(s): Signed, Form(form): Form<PurgeForm>) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, &form.csrf) {
        return refused;
    }
    let mut body = json!({ "distribution": form.distribution, "soft": form.soft.is_some() });
    match form.kind.as_str() {
        "everything" => body["everything"] = json!(true),
        kind @ ("url" | "prefix" | "tag") => body[kind] = json!(form.value.trim()),
        _ => {
            return purge_page(
                &console,
                &s,
                StatusCode::BAD_REQUEST,
                Some("choose what to purge: a URL, a prefix, a tag or everything".into()),
            )
            .await
        }
    }
    started(
        &console,
        &s,
        console
            .api
            .send(&s.token, Method::POST, "/v1/purges", &body)
            .await,
    )
    .await
}

#[derive(Deserialize)]
pub struct PrewarmForm {
    #[serde(default)]
    csrf: String,
    distribution: String,
    urls: String,
}

async fn prewarm(console: Ctx, Signed(s): Signed, Form(form): Form<PrewarmForm>) -> Response {
    if let Some(refused) = console.csrf_refusal(&s, &form.csrf) {
        return refused;
    }
    let urls: Vec<&str> = form.urls.split_whitespace().collect();
    let body = json!({ "distribution": form.distribution, "urls": urls });
    started(
        &console,
        &s,
        console
            .api
            .send(&s.token, Method::POST, "/v1/prewarms", &body)
            .await,
    )
    .await
}

/// The job page of a job the API started, or the form with its error.
async fn started(console: &Shared, s: &session::Session, answer: super::api::Answer) -> Response {
    let status = answer.status;
    match answer.ok() {
        Ok(job) => see(&format!(
            "/console/jobs/{}",
            job["id"].as_str().map(url_escape).unwrap_or_default()
        )),
        Err(error) => purge_page(console, s, status, Some(error)).await,
    }
}

async fn jobs(console: Ctx, Signed(s): Signed) -> Response {
    let (mut list, error) = or_error(console.api.get(&s.token, "/v1/jobs").await.ok());
    if let Some(jobs) = list.as_array_mut() {
        jobs.retain(|job| work_kind(&job["work"]) != "compact");
        jobs.sort_by_key(|job| std::cmp::Reverse(job["created_ms"].as_i64()));
        for job in jobs.iter_mut() {
            job["kind"] = json!(work_kind(&job["work"]));
        }
    }
    console.render(
        StatusCode::OK,
        "jobs.html",
        Some(&s),
        json!({ "jobs": list, "error": error }),
    )
}

async fn job(console: Ctx, Signed(s): Signed, Path(id): Path<String>) -> Response {
    match job_context(&console, &s, &id).await {
        Ok(context) => console.render(StatusCode::OK, "job.html", Some(&s), context),
        Err(answer) => answer,
    }
}

/// The live part of the job page (htmx polls it; 286 stops the polling
/// once every edge has acknowledged or the job failed).
async fn job_progress(console: Ctx, Signed(s): Signed, Path(id): Path<String>) -> Response {
    match job_context(&console, &s, &id).await {
        Ok(context) => {
            let finished = matches!(context["job"]["status"].as_str(), Some("done" | "failed"));
            let mut page = console.render(StatusCode::OK, "job_progress.html", Some(&s), context);
            if finished {
                *page.status_mut() = StatusCode::from_u16(286).unwrap_or(StatusCode::OK);
            }
            page
        }
        Err(answer) => answer,
    }
}

/// The job, each edge's part named by the edge's name and PoP.
async fn job_context(console: &Shared, s: &session::Session, id: &str) -> Result<Value, Response> {
    let answer = console
        .api
        .get(&s.token, &format!("/v1/jobs/{}", url_escape(id)))
        .await;
    let status = answer.status;
    let mut job = answer.ok().map_err(|e| page_error(status, &e))?;
    job["kind"] = json!(work_kind(&job["work"]));
    let distribution = job["distribution"].as_str().unwrap_or_default().to_string();
    let edges = console
        .api
        .get(
            &s.token,
            &format!("/v1/distributions/{}/status", url_escape(&distribution)),
        )
        .await
        .ok()
        .unwrap_or(Value::Null);
    if let Some(parts) = job["edges"].as_array_mut() {
        for part in parts {
            let known = edges["edges"]
                .as_array()
                .and_then(|all| all.iter().find(|e| e["edge"] == part["edge"]));
            if let Some(edge) = known {
                part["name"] = edge["name"].clone();
                part["pop"] = edge["pop"].clone();
            }
        }
    }
    Ok(json!({ "job": job }))
}

/// What a job does (`purge`, `prewarm`, `compact`): its work's tag.
fn work_kind(work: &Value) -> &str {
    match work {
        Value::String(kind) => kind,
        Value::Object(fields) => fields.keys().next().map_or("", String::as_str),
        _ => "",
    }
}

async fn plugins(console: Ctx, Signed(s): Signed) -> Response {
    plugins_page(&console, &s, StatusCode::OK, None).await
}

/// The plugins page; `verdict` what the last upload came to.
async fn plugins_page(
    console: &Shared,
    s: &session::Session,
    status: StatusCode,
    verdict: Option<Value>,
) -> Response {
    let (mut list, error) = or_error(console.api.get(&s.token, "/v1/plugins").await.ok());
    // Where each plugin is used: the live configurations naming it.
    let distributions = console
        .api
        .get(&s.token, "/v1/distributions")
        .await
        .ok()
        .unwrap_or(Value::Null);
    let mut uses: Vec<(String, String, String)> = Vec::new();
    for d in distributions.as_array().into_iter().flatten() {
        let id = d["id"].as_str().unwrap_or_default();
        let view = console
            .api
            .get(&s.token, &format!("/v1/distributions/{}", url_escape(id)))
            .await
            .ok()
            .unwrap_or(Value::Null);
        // `plugin[].wasm` names an uploaded plugin, `name` or `name@version`.
        for plugin in view["config"]["plugin"].as_array().into_iter().flatten() {
            if let Some(wasm) = plugin["wasm"].as_str() {
                let name = wasm.split('@').next().unwrap_or(wasm).to_string();
                uses.push((
                    d["customer"].as_str().unwrap_or_default().to_string(),
                    name,
                    id.to_string(),
                ));
            }
        }
    }
    if let Some(versions) = list.as_array_mut() {
        for version in versions {
            let (customer, name) = (version["customer"].clone(), version["name"].clone());
            let mut used: Vec<&str> = uses
                .iter()
                .filter(|(c, n, _)| customer == c.as_str() && name == n.as_str())
                .map(|(_, _, d)| d.as_str())
                .collect();
            used.dedup();
            version["used_by"] = json!(used);
        }
    }
    console.render(
        status,
        "plugins.html",
        Some(s),
        json!({ "plugins": list, "error": error, "verdict": verdict }),
    )
}

async fn upload_plugin(console: Ctx, Signed(s): Signed, mut multipart: Multipart) -> Response {
    let (mut csrf, mut name, mut customer, mut bytes) =
        (String::new(), String::new(), String::new(), Vec::new());
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                return page_error(
                    e.status(),
                    &format!("the upload could not be read: {}", e.body_text()),
                )
            }
        };
        let field_name = field.name().unwrap_or_default().to_string();
        let data = match field.bytes().await {
            Ok(data) => data,
            Err(e) => {
                return page_error(
                    e.status(),
                    &format!("the upload could not be read: {}", e.body_text()),
                )
            }
        };
        match field_name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&data).into_owned(),
            "name" => name = String::from_utf8_lossy(&data).trim().to_string(),
            "customer" => customer = String::from_utf8_lossy(&data).trim().to_string(),
            "file" => bytes = data.to_vec(),
            _ => {}
        }
    }
    if let Some(refused) = console.csrf_refusal(&s, &csrf) {
        return refused;
    }
    let mut path = format!("/v1/plugins/{}", url_escape(&name));
    if !customer.is_empty() {
        path.push_str(&format!("?customer={}", url_escape(&customer)));
    }
    let answer = console.api.upload(&s.token, &path, bytes).await;
    let status = answer.status;
    let verdict = match answer.ok() {
        Ok(version) => json!({ "accepted": true, "version": version }),
        Err(error) => json!({ "accepted": false, "error": error }),
    };
    plugins_page(
        &console,
        &s,
        if status.is_success() {
            StatusCode::OK
        } else {
            status
        },
        Some(verdict),
    )
    .await
}

#[derive(Deserialize)]
pub struct LogFilter {
    #[serde(default)]
    distribution: String,
    /// A status (`404`) or class (`5xx`).
    #[serde(default)]
    status: String,
    #[serde(default)]
    prefix: String,
    /// `HIT`, `MISS`, ...
    #[serde(default)]
    cache: String,
}

async fn logs(console: Ctx, Signed(s): Signed, Query(filter): Query<LogFilter>) -> Response {
    let distributions = console
        .api
        .get(&s.token, "/v1/distributions")
        .await
        .ok()
        .unwrap_or(Value::Null);
    let (lines, error) = if filter.distribution.is_empty() {
        (Vec::new(), None)
    } else {
        let path = format!(
            "/v1/distributions/{}/logs?limit=1000",
            url_escape(&filter.distribution)
        );
        match console.api.get(&s.token, &path).await.ok() {
            Ok(lines) => (
                lines
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|l| log_matches(&filter, &l["line"]))
                    .take(200)
                    .cloned()
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e)),
        }
    };
    console.render(StatusCode::OK, "logs.html", Some(&s), json!({
        "distributions": distributions, "lines": lines, "error": error,
        "filter": { "distribution": filter.distribution, "status": filter.status, "prefix": filter.prefix, "cache": filter.cache },
    }))
}

/// Whether access log `line` passes `filter`.
fn log_matches(filter: &LogFilter, line: &Value) -> bool {
    let status = line["status"]
        .as_u64()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let status_ok = match filter.status.trim() {
        "" => true,
        class if class.len() == 3 && class.ends_with("xx") => status.starts_with(&class[..1]),
        exact => status == exact,
    };
    let path = line["uri"].as_str().unwrap_or_default();
    let cache = line["cache"].as_str().unwrap_or_default();
    status_ok
        && path.starts_with(filter.prefix.trim())
        && (filter.cache.is_empty() || cache.eq_ignore_ascii_case(filter.cache.trim()))
}

/// A template filter: milliseconds since the epoch as UTC
/// `YYYY-MM-DD HH:MM:SS`.
pub fn format_time(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unified_diff_pairs_removed_and_added_lines_side_by_side() {
        let diff = "--- v1\n+++ v2\n@@ -1,4 +1,4 @@\n a\n-b\n-c\n+B\n d\n+e\n";
        let side = |kind: &str, text: &str| json!({"kind": kind, "text": text});
        assert_eq!(
            super::side_by_side(diff),
            json!([
                {"hunk": "@@ -1,4 +1,4 @@"},
                {"old": side("", "a"), "new": side("", "a")},
                {"old": side("removed", "b"), "new": side("added", "B")},
                {"old": side("removed", "c"), "new": null},
                {"old": side("", "d"), "new": side("", "d")},
                {"old": null, "new": side("added", "e")},
            ])
        );
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_796_601_600_000), "2026-12-07 00:00:00");
        assert_eq!(
            format_time(951_782_400_000 + 3_661_000),
            "2000-02-29 01:01:01"
        );
    }

    #[test]
    fn log_filters_take_statuses_classes_prefixes_and_cache_results() {
        let line = json!({"status": 404, "uri": "/shop/a", "cache": "MISS"});
        let filter = |status: &str, prefix: &str, cache: &str| LogFilter {
            distribution: "d".into(),
            status: status.into(),
            prefix: prefix.into(),
            cache: cache.into(),
        };
        assert!(log_matches(&filter("", "", ""), &line));
        assert!(log_matches(&filter("4xx", "/shop", "miss"), &line));
        assert!(log_matches(&filter("404", "", ""), &line));
        assert!(!log_matches(&filter("5xx", "", ""), &line));
        assert!(!log_matches(&filter("", "/blog", ""), &line));
        assert!(!log_matches(&filter("", "", "HIT"), &line));
    }
}
