//! `POST /webhooks/vizion`: source check → size limit → body read (bounded per client)
//! → authentication → parse → dedup → durable write → answer.

use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::ConnectionType;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;
use time::OffsetDateTime;
use tracing::{field, Instrument};

use crate::auth::{Mode, RequestParts, Verdict};
use crate::clock;
use crate::events::Provenance;
use crate::ingest::body::{self, BodyError};
use crate::ingest::{IngestError, IngestState};
use crate::pipeline::{self, Arrival};
use crate::telemetry::events::{AuthFailed, WebhookHandled, WebhookStarted};
use crate::telemetry::Outcome;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a successful request ended as.
struct Answer {
    outcome: Outcome,
    body: serde_json::Value,
}

pub async fn receive_webhook(
    request: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<IngestState>,
) -> HttpResponse {
    let started = Instant::now();
    state.metrics.emit(WebhookStarted);
    let request_id = request_id(&request);
    let span = tracing::info_span!(
        "webhook",
        request_id = %request_id,
        client = field::Empty,
        update_id = field::Empty,
        outcome = field::Empty,
        latency_ms = field::Empty,
    );
    // Once the shutdown drains, a request still running when its answer is due is
    // answered 503 before its connection is closed; whatever it was writing may still
    // land, but nothing was acknowledged.
    let result = tokio::select! {
        biased;
        result = handle(&request, &mut payload, &state, &request_id)
            .instrument(span.clone()) => result,
        () = state.shutdown.answer_deadline() => Err(IngestError::ShuttingDown {
            retry_after: state.retry_after,
        }),
    };

    let outcome = match &result {
        Ok(answer) => answer.outcome,
        Err(error) => error.outcome(),
    };
    let elapsed = started.elapsed();
    span.record("outcome", outcome.as_str());
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| {
        state.metrics.emit(WebhookHandled {
            outcome,
            duration: elapsed,
            failure: result.as_ref().err().map(IngestError::failure),
        })
    });

    let mut response = match result {
        Ok(answer) => HttpResponse::Ok().json(answer.body),
        Err(error) => error.error_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if state.shutdown.is_shutting_down() {
        // The listener closes soon: a next request belongs on a new connection, which
        // the drain sees arriving (a request on a kept-alive one it would not).
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    response
}

async fn handle(
    request: &HttpRequest,
    payload: &mut web::Payload,
    state: &IngestState,
    request_id: &str,
) -> Result<Answer, IngestError> {
    let span = tracing::Span::current();
    // Read once: a reload meanwhile does not change how this request is judged.
    let live = state.live.load_full();

    // 1. Source.
    let peer = request.peer_addr().map(|a| a.ip());
    let client = peer
        .and_then(|peer| live.sources.client_address(peer, request.headers()))
        .ok_or(IngestError::Forbidden)?;
    span.record("client", field::display(client));
    if !live.sources.is_allowed(client) {
        return Err(IngestError::Forbidden);
    }

    if state.shutdown.is_draining() {
        return Err(IngestError::ShuttingDown {
            retry_after: state.retry_after,
        });
    }

    // 2. Size and type, from the headers alone.
    let declared_len = declared_length(request);
    if declared_len.is_some_and(|len| len > state.max_body_bytes) {
        return Err(IngestError::TooLarge {
            limit: state.max_body_bytes,
        });
    }
    if !content_type_is_json(request) {
        return Err(IngestError::UnsupportedMediaType);
    }

    // A body still arriving holds a place of its own, bounded per client, not a
    // webhook's: slow senders cannot hold up webhooks whose body is in.
    let body_read = state
        .body_reads
        .admit(client)
        .map_err(|bound| IngestError::BodyReadsFull {
            bound,
            retry_after: state.retry_after,
        })?;
    let body = body::read_limited(
        payload,
        state.max_body_bytes,
        state.body_read_timeout,
        declared_len,
    )
    .await
    .map_err(|e| match e {
        BodyError::TooLarge => IngestError::TooLarge {
            limit: state.max_body_bytes,
        },
        BodyError::TimedOut => IngestError::BodyTimedOut(state.body_read_timeout),
        BodyError::Broken(reason) => IngestError::BrokenBody(reason),
    })?;
    drop(body_read);

    // Bounded concurrency: the permit lives until the answer is decided.
    let _permit =
        state
            .inflight
            .clone()
            .try_acquire_owned()
            .map_err(|_| IngestError::Overloaded {
                retry_after: state.retry_after,
            })?;

    // 3. Authentication, on the raw bytes.
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path(), |pq| pq.as_str());
    let verdict = live.auth.verify(&RequestParts {
        method: request.method().as_str(),
        path_and_query,
        headers: request.headers(),
        body: &body,
        now: clock::unix_seconds() as i64,
    });
    let key_id = match verdict {
        Verdict::Verified { key_id } => key_id,
        Verdict::NotChecked => None,
        Verdict::Failed(failure) => {
            let mode = live.auth.mode();
            state.metrics.emit(AuthFailed {
                reason: failure.reason.as_str(),
                mode: mode.as_str(),
                detail: failure.detail,
                refused: mode == Mode::Enforce,
            });
            if mode == Mode::Enforce {
                return Err(IngestError::Unauthorized(failure));
            }
            None
        }
    };

    // 4. Parse, then 5. deliver.
    let arrival = Arrival {
        body,
        provenance: Provenance::Webhook {
            request_id: request_id.to_owned(),
            client_ip: client,
            key_id,
            traceparent: traceparent(request),
        },
        received_at: OffsetDateTime::now_utc(),
    };
    let taken = state
        .pipeline
        .take(arrival)
        .await
        .map_err(|cause| unavailable(state, cause))?;
    Ok(answer(taken))
}

/// The answer to a body the pipeline took.
fn answer(taken: pipeline::Outcome) -> Answer {
    match taken {
        pipeline::Outcome::Accepted { id } => Answer {
            outcome: Outcome::Accepted,
            body: json!({ "status": "accepted", "id": id }),
        },
        pipeline::Outcome::Duplicate { id, reason: None } => Answer {
            outcome: Outcome::Duplicate,
            body: json!({ "status": "duplicate", "id": id }),
        },
        pipeline::Outcome::Duplicate {
            reason: Some(reason),
            ..
        } => Answer {
            outcome: Outcome::Duplicate,
            body: json!({ "status": "duplicate", "reason": reason }),
        },
        pipeline::Outcome::DeadLettered { reason, id } => Answer {
            outcome: Outcome::DeadLettered,
            body: json!({ "status": "dead_lettered", "reason": reason, "id": id }),
        },
    }
}

fn unavailable(state: &IngestState, cause: crate::delivery::DeliveryError) -> IngestError {
    IngestError::Unavailable {
        cause,
        retry_after: state.retry_after,
    }
}

/// The caller's `x-request-id` when it is a sane token, else a new one.
fn request_id(request: &HttpRequest) -> String {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The sender's W3C `traceparent` when it is well formed (version 00:
/// `00-<32 hex>-<16 hex>-<2 hex>`), so that nothing else is passed on to consumers.
fn traceparent(request: &HttpRequest) -> Option<String> {
    let value = request.headers().get("traceparent")?.to_str().ok()?;
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let well_formed = parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1] != "0".repeat(32)
        && parts[2] != "0".repeat(16);
    well_formed.then(|| value.to_owned())
}

fn declared_length(request: &HttpRequest) -> Option<usize> {
    request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// No content type, `application/json`, or any `…/…+json`.
fn content_type_is_json(request: &HttpRequest) -> bool {
    let Some(value) = request.headers().get(CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some((_, subtype)) => subtype == "json" || subtype.ends_with("+json"),
        None => false,
    }
}
