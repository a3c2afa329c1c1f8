use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use crate::ingest::IngestState;

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 while updates can be made durable (every sink can take writes, or
/// in a spool mode the spool has room) and no shutdown has begun.
pub async fn readyz(state: web::Data<IngestState>) -> HttpResponse {
    let shutting_down = state.shutdown.is_shutting_down();
    let sinks: Map<String, Value> = state
        .delivery
        .sink_states()
        .into_iter()
        .map(|(name, ready)| {
            (
                name.to_owned(),
                json!(if ready { "ready" } else { "not_ready" }),
            )
        })
        .collect();
    let ready = !shutting_down && state.delivery.is_ready();
    let mut body = json!({
        "status": if ready { "ready" } else if shutting_down { "shutting_down" } else { "not_ready" },
        "sinks": sinks,
    });
    if let Some(spool) = state.delivery.spool_state() {
        body["delivery_mode"] = json!(state.delivery.mode().as_str());
        body["spool"] = json!(spool);
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
