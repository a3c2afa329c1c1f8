//! The Vizion REST endpoints (`/references…`, `/carriers`) and the simulator's own
//! admin surface (`/_sim/…`, not part of Vizion's API).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::callbacks::Deliverer;
use crate::journey::{self, Rng, CARRIERS};
use crate::store::{Id, NewReference, Reference, ReferenceFilter, Store, StoreError, Trigger};

pub struct AppState {
    pub store: Arc<Store>,
    pub deliverer: Arc<Deliverer>,
    pub api_key: SecretString,
    pub rate_limit: Option<RateLimit>,
    /// A `DELETE` of an inactive reference answers `404` instead of `200`.
    pub forget_unsubscribed: bool,
    pub faults: Mutex<Faults>,
}

/// At most `requests` per `window`, counted in fixed windows.
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
    state: Mutex<(Instant, u32)>,
}

impl RateLimit {
    pub fn new(requests: u32, window: Duration) -> Self {
        Self {
            requests,
            window,
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// `Err(wait)` when the request is over the limit.
    fn admit(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(state.0) >= self.window {
            *state = (now, 0);
        }
        if state.1 >= self.requests {
            return Err(self.window.saturating_sub(now.duration_since(state.0)));
        }
        state.1 += 1;
        Ok(())
    }
}

/// Injected API failures, so that clients' retries can be exercised.
pub struct Faults {
    /// Fraction of API requests answered with `status`.
    pub fail_rate: f64,
    /// The next this many API requests fail, whatever the rate.
    pub fail_next: u32,
    /// The next this many API requests (after those of `fail_next`) are carried out,
    /// but answered with `status`: the client cannot tell that they took effect, as
    /// when an answer is lost on its way back.
    pub lose_answer_next: u32,
    pub status: u16,
    pub rng: Rng,
}

/// What an injected failure does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Refused with this status before it is carried out.
    Refuse(u16),
    /// Carried out, then answered with this status instead of its result.
    LoseAnswer(u16),
}

impl Faults {
    fn roll(&mut self) -> Option<Fault> {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Some(Fault::Refuse(self.status));
        }
        if self.lose_answer_next > 0 {
            self.lose_answer_next -= 1;
            return Some(Fault::LoseAnswer(self.status));
        }
        (self.fail_rate > 0.0 && self.rng.unit() < self.fail_rate)
            .then_some(Fault::Refuse(self.status))
    }
}

fn injected(status: u16) -> ApiError {
    ApiError::Injected(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid X-API-Key header is required")]
    Unauthorized,
    #[error("reference not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    BadQuery(String),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("rate limit exceeded; retry later")]
    RateLimited { retry_after: Duration },
    #[error("simulated failure")]
    Injected(StatusCode),
}

#[derive(Serialize)]
struct MessageBody_<'a> {
    message: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Injected(status) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code()).json(MessageBody_ {
            message: &self.to_string(),
        });
        if let ApiError::RateLimited { retry_after } = self {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(why) => ApiError::Conflict(why),
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_sim")
            .route("/health", web::get().to(sim_health))
            .route("/deliveries", web::get().to(sim_deliveries))
            .route("/requests", web::get().to(sim_requests))
            .route("/references/{id}", web::get().to(sim_reference))
            .route("/references/{id}/advance", web::post().to(sim_advance))
            .route("/references/{id}/check", web::post().to(sim_check))
            .route("/faults", web::post().to(sim_faults)),
    )
    .service(
        web::scope("")
            .wrap(from_fn(vizion_gate))
            .route("/references", web::post().to(create_reference))
            .route("/references", web::get().to(list_references))
            .route("/references/{id}", web::get().to(get_reference))
            .route("/references/{id}", web::delete().to(delete_reference))
            .route("/references/{id}/updates", web::get().to(list_updates))
            .route("/carriers", web::get().to(list_carriers))
            .default_service(web::to(|| async {
                HttpResponse::NotFound().json(MessageBody_ {
                    message: "not found",
                })
            })),
    );
}

/// API key, rate limit and injected failures, in that order, for every Vizion
/// endpoint; and a record of each request for `GET /_sim/requests`.
async fn vizion_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("the state is registered")
        .clone();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let admitted = admit(&state, req.request());
    let response = match admitted {
        Err(error) => {
            if let ApiError::Unauthorized = error {
                tracing::warn!(%method, %path, "refused: missing or wrong API key");
            }
            req.into_response(error.error_response())
                .map_into_right_body()
        }
        Ok(Some(lost_with)) => {
            let done = next.call(req).await?;
            tracing::info!(%method, %path, status = done.status().as_u16(), "carried out; answer replaced by an injected failure");
            let (request, _) = done.into_parts();
            ServiceResponse::new(request, injected(lost_with).error_response())
                .map_into_right_body()
        }
        Ok(None) => next.call(req).await?.map_into_left_body(),
    };
    let status = response.status().as_u16();
    state.store.record_request(&method, &path, status);
    tracing::info!(%method, %path, status, "api request");
    Ok(response)
}

/// `Ok(Some(status))`: carry the request out, then answer `status` instead.
fn admit(state: &AppState, req: &HttpRequest) -> Result<Option<u16>, ApiError> {
    let given = req
        .headers()
        .get("x-api-key")
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let expected = state.api_key.expose_secret().as_bytes();
    if given.is_empty() || !bool::from(given.ct_eq(expected)) {
        return Err(ApiError::Unauthorized);
    }
    if let Some(limit) = &state.rate_limit {
        limit
            .admit()
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    }
    let fault = state
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .roll();
    match fault {
        Some(Fault::Refuse(status)) => Err(injected(status)),
        Some(Fault::LoseAnswer(status)) => Ok(Some(status)),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------
// Vizion endpoints
// ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct CreateBody {
    container_id: Option<String>,
    bill_of_lading: Option<String>,
    booking_number: Option<String>,
    carrier_code: Option<String>,
    carrier_scac: Option<String>,
    scac: Option<String>,
    callback_url: Option<String>,
    webhooks: Option<Vec<WebhookBody>>,
}

#[derive(Debug, Deserialize)]
struct WebhookBody {
    #[serde(default)]
    events: Vec<String>,
    callback_url: String,
}

#[derive(Serialize)]
struct Created {
    message: String,
    reference: Reference,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn valid_callback(url: String) -> Result<String, ApiError> {
    match reqwest::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(url),
        _ => Err(ApiError::Invalid(format!(
            "callback_url must be an http or https URL, got {url:?}"
        ))),
    }
}

async fn create_reference(
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::Invalid(format!("the body is not a valid reference request: {e}"))
    })?;
    let created = create(&state.store, body)?;
    Ok(HttpResponse::Created().json(created))
}

/// Creates the references of one `POST /references` body (also used to preload).
pub fn create_from_json(store: &Store, body: &[u8]) -> Result<Reference, ApiError> {
    let body: CreateBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::Invalid(format!("not a valid reference request: {e}")))?;
    Ok(create(store, body)?.reference)
}

fn create(store: &Store, body: CreateBody) -> Result<Created, ApiError> {
    let container_id = non_empty(body.container_id).map(|c| c.to_ascii_uppercase());
    let bill_of_lading = non_empty(body.bill_of_lading).map(|b| b.to_ascii_uppercase());
    let booking_number = non_empty(body.booking_number);
    let carrier_code = non_empty(body.carrier_code)
        .or(non_empty(body.carrier_scac))
        .or(non_empty(body.scac));
    let webhook_url = body.webhooks.unwrap_or_default().into_iter().find_map(|w| {
        (w.events.is_empty() || w.events.iter().any(|e| e == "reference_update"))
            .then_some(w.callback_url)
    });
    let callback_url = non_empty(body.callback_url.or(webhook_url))
        .map(valid_callback)
        .transpose()?;

    if let Some(container) = &container_id {
        if !journey::is_container_number(container) {
            return Err(ApiError::Invalid(format!(
                "container_id {container:?} is not a container number (four letters, the last U, J or Z, then seven digits)"
            )));
        }
    }
    let carrier = match &carrier_code {
        Some(code) => Some(journey::carrier_by_code(code).ok_or_else(|| {
            ApiError::Invalid(format!("carrier_code {code:?} is not a supported carrier"))
        })?),
        None => None,
    };

    match (container_id, bill_of_lading, carrier) {
        (None, None, _) => Err(ApiError::Invalid(
            "container_id or bill_of_lading is required".into(),
        )),
        (None, Some(_), None) => Err(ApiError::Invalid(
            "carrier_code is required to track a bill of lading".into(),
        )),
        // A bill of lading alone: the parent, then one child per container on it.
        (None, Some(bill), Some(carrier)) => {
            let parent = store.create(NewReference {
                container_id: None,
                bill_of_lading: Some(bill.clone()),
                booking_number: booking_number.clone(),
                carrier: Some(carrier),
                auto_carrier: false,
                callback_url: callback_url.clone(),
                parent_reference_id: None,
                is_parent: true,
            });
            let containers = store.bill_of_lading_size();
            for _ in 0..containers {
                store.create(NewReference {
                    container_id: Some(store.new_container_number(carrier)),
                    bill_of_lading: Some(bill.clone()),
                    booking_number: booking_number.clone(),
                    carrier: Some(carrier),
                    auto_carrier: false,
                    callback_url: callback_url.clone(),
                    parent_reference_id: Some(parent.id.clone()),
                    is_parent: false,
                });
            }
            tracing::info!(reference_id = %parent.id, containers, "bill of lading reference created");
            Ok(Created {
                message: format!(
                    "Bill of lading reference created, with {containers} container references"
                ),
                reference: parent,
            })
        }
        (Some(container), bill, carrier) => {
            let auto_carrier = carrier.is_none();
            let found = carrier.or_else(|| journey::carrier_for_container(&container));
            let Some(carrier) = found else {
                let reference = store.create_not_found(container, callback_url);
                tracing::info!(reference_id = %reference.id, "auto carrier identification found no carrier");
                return Ok(Created {
                    message: "Reference created; no supported carrier has this container".into(),
                    reference,
                });
            };
            let reference = store.create(NewReference {
                container_id: Some(container),
                bill_of_lading: bill,
                booking_number,
                carrier: Some(carrier),
                auto_carrier,
                callback_url,
                parent_reference_id: None,
                is_parent: false,
            });
            tracing::info!(reference_id = %reference.id, auto_carrier, "reference created");
            Ok(Created {
                message: "Reference created successfully".into(),
                reference,
            })
        }
    }
}

fn parse_id(raw: &str) -> Result<Id, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| ApiError::NotFound)
}

async fn get_reference(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let reference = state.store.get(&parse_id(&id)?)?;
    Ok(HttpResponse::Ok().json(reference))
}

async fn delete_reference(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    if state.forget_unsubscribed && !state.store.get(&id)?.active {
        return Err(ApiError::NotFound);
    }
    let was_active = state.store.deactivate(&id, "customer_unsubscribed")?;
    tracing::info!(reference_id = %id, was_active, "reference unsubscribed");
    let message = if was_active {
        "Reference unsubscribed successfully"
    } else {
        "Reference was already inactive"
    };
    Ok(HttpResponse::Ok().json(MessageBody_ { message }))
}

async fn list_updates(
    state: web::Data<AppState>,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(req.query_string())?;
    let updates = state.store.updates(&parse_id(&id)?)?;
    Ok(query.page.respond(updates))
}

async fn list_references(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = Query::parse(req.query_string())?;
    let references = state.store.list(&query.filter);
    Ok(query.page.respond(references))
}

async fn list_carriers() -> HttpResponse {
    let carriers: Vec<_> = CARRIERS
        .iter()
        .map(|c| serde_json::json!({"code": c.scac, "name": c.name, "scac": c.scac}))
        .collect();
    HttpResponse::Ok().json(carriers)
}

/// `include_metadata`, `limit` (default 25) and `page` (from 1).
struct Page {
    include_metadata: bool,
    limit: usize,
    page: usize,
}

#[derive(Serialize)]
struct Metadata {
    page: usize,
    page_count: usize,
    per_page: usize,
    item_count: usize,
}

impl Page {
    fn respond<T: Serialize>(&self, items: Vec<T>) -> HttpResponse {
        let item_count = items.len();
        let data: Vec<T> = items
            .into_iter()
            .skip((self.page - 1).saturating_mul(self.limit))
            .take(self.limit)
            .collect();
        if !self.include_metadata {
            return HttpResponse::Ok().json(data);
        }
        HttpResponse::Ok().json(serde_json::json!({
            "data": data,
            "metadata": Metadata {
                page: self.page,
                page_count: item_count.div_ceil(self.limit),
                per_page: self.limit,
                item_count,
            },
        }))
    }
}

struct Query {
    page: Page,
    filter: ReferenceFilter,
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::BadQuery(format!("{key} must be true or false"))),
    }
}

fn parse_positive(key: &str, value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::BadQuery(format!("{key} must be a whole number of at least 1")))
}

impl Query {
    fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::BadQuery(format!("the query string is malformed: {e}")))?;
        let mut page = Page {
            include_metadata: false,
            limit: 25,
            page: 1,
        };
        let mut filter = ReferenceFilter {
            active: true,
            ..Default::default()
        };
        // Repeated keys and comma-separated values both add to a filter.
        let values = |v: &str| -> Vec<String> {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        for (key, value) in &pairs {
            let key = key.trim_end_matches("[]");
            match key {
                "include_metadata" => page.include_metadata = parse_bool(key, value)?,
                "limit" => page.limit = parse_positive(key, value)?,
                "page" => page.page = parse_positive(key, value)?,
                "active" => filter.active = parse_bool(key, value)?,
                "container_id" => filter.container_ids.extend(values(value)),
                "bill_of_lading" => filter.bills_of_lading.extend(values(value)),
                "booking_number" => filter.booking_numbers.extend(values(value)),
                "carrier_code" => filter.carrier_codes.extend(values(value)),
                "callback_urls" | "callback_url" => filter.callback_urls.extend(values(value)),
                "last_update_status" => filter.last_update_statuses.extend(values(value)),
                "deactivate_reason" => filter.deactivate_reasons.extend(values(value)),
                _ => {}
            }
        }
        if filter.callback_urls.len() > 5 {
            return Err(ApiError::BadQuery(
                "callback_urls takes at most 5 URLs".into(),
            ));
        }
        Ok(Self { page, filter })
    }
}

// ---------------------------------------------------------------------------------
// Simulator-only admin surface
// ---------------------------------------------------------------------------------

async fn sim_health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    reference_id: Option<String>,
}

async fn sim_deliveries(
    state: web::Data<AppState>,
    query: web::Query<DeliveriesQuery>,
) -> HttpResponse {
    HttpResponse::Ok().json(state.store.deliveries(query.reference_id.as_deref()))
}

#[derive(Deserialize)]
struct RequestsQuery {
    method: Option<String>,
    path: Option<String>,
}

async fn sim_requests(
    state: web::Data<AppState>,
    query: web::Query<RequestsQuery>,
) -> HttpResponse {
    let requests: Vec<_> = state
        .store
        .requests()
        .into_iter()
        .filter(|r| {
            query
                .method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&r.method))
        })
        .filter(|r| query.path.as_ref().is_none_or(|p| *p == r.path))
        .collect();
    HttpResponse::Ok().json(requests)
}

async fn sim_reference(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.store.journey_state(&parse_id(&id)?)?))
}

/// Plays the next journey step now and delivers it before answering.
async fn sim_advance(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let pending = state.store.play_step(&id, Trigger::Advance)?;
    let delivery = match pending {
        Some(pending) => Some(state.deliverer.deliver(&state.store, pending).await),
        None => None,
    };
    let latest = state.store.updates(&id)?.into_iter().next();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "reference_id": id,
        "update_id": latest.as_ref().map(|u| u.id.clone()),
        "milestone": latest.as_ref().and_then(|u| u.payload.milestones.iter().rev().find(|m| m.planned == Some(false)).map(|m| m.description.clone())),
        "delivery": delivery,
    })))
}

/// Runs the scheduled check now: a failed delivery is retried at once.
async fn sim_check(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let delivery = match state.store.take_retry(&id)? {
        Some(pending) => Some(state.deliverer.deliver(&state.store, pending).await),
        None => None,
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "reference_id": id,
        "delivery": delivery,
    })))
}

#[derive(Deserialize, Serialize)]
struct FaultsBody {
    #[serde(default)]
    fail_next: u32,
    #[serde(default)]
    lose_answer_next: u32,
    status: Option<u16>,
    fail_rate: Option<f64>,
}

/// Makes the next `fail_next` API requests fail with `status`, the next
/// `lose_answer_next` after them take effect but answer `status` (and optionally
/// changes the random failure rate).
async fn sim_faults(
    state: web::Data<AppState>,
    body: web::Json<FaultsBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if let Some(status) = body.status {
        if StatusCode::from_u16(status).is_err() || status < 400 {
            return Err(ApiError::Invalid(
                "status must be an HTTP error status".into(),
            ));
        }
    }
    if body.fail_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return Err(ApiError::Invalid(
            "fail_rate must be between 0 and 1".into(),
        ));
    }
    let mut faults = state.faults.lock().unwrap_or_else(|e| e.into_inner());
    faults.fail_next = body.fail_next;
    faults.lose_answer_next = body.lose_answer_next;
    if let Some(status) = body.status {
        faults.status = status;
    }
    if let Some(rate) = body.fail_rate {
        faults.fail_rate = rate;
    }
    Ok(HttpResponse::Ok().json(FaultsBody {
        fail_next: faults.fail_next,
        lose_answer_next: faults.lose_answer_next,
        status: Some(faults.status),
        fail_rate: Some(faults.fail_rate),
    }))
}
