use actix_web::{web, HttpResponse};

use crate::telemetry::Metrics;

/// `GET /metrics` on the metrics listener: Prometheus text format.
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
