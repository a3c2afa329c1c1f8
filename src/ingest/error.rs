//! Every way a webhook can fail, and the one place where each becomes an HTTP answer.

use std::time::Duration;

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::AuthFailure;
use crate::delivery::DeliveryError;
use crate::ingest::BodyReadsFull;
use crate::telemetry::events::WebhookFailure;
use crate::telemetry::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the source address is not allowed to send webhooks")]
    Forbidden,
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the content type must be JSON")]
    UnsupportedMediaType,
    #[error("the body did not arrive within {0:?}")]
    BodyTimedOut(Duration),
    #[error("the body could not be read: {0}")]
    BrokenBody(String),
    #[error("authentication failed: {0}")]
    Unauthorized(AuthFailure),
    #[error("too many webhooks in progress; retry later")]
    Overloaded { retry_after: Duration },
    #[error("{bound}; retry later")]
    BodyReadsFull {
        bound: BodyReadsFull,
        retry_after: Duration,
    },
    #[error("the service is shutting down; retry later")]
    ShuttingDown { retry_after: Duration },
    #[error("the update could not be stored; retry later")]
    Unavailable {
        #[source]
        cause: DeliveryError,
        retry_after: Duration,
    },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

impl IngestError {
    pub fn outcome(&self) -> Outcome {
        match self {
            IngestError::Forbidden => Outcome::Forbidden,
            IngestError::TooLarge { .. } => Outcome::TooLarge,
            IngestError::UnsupportedMediaType => Outcome::UnsupportedMediaType,
            IngestError::BodyTimedOut(_) | IngestError::BrokenBody(_) => Outcome::BadRequest,
            IngestError::Unauthorized(_) => Outcome::Unauthorized,
            IngestError::Unavailable { cause, .. } if cause.is_spool_full() => Outcome::SpoolFull,
            IngestError::Overloaded { .. } | IngestError::Unavailable { .. } => {
                Outcome::Unavailable
            }
            IngestError::BodyReadsFull { .. } => Outcome::BodyReadsFull,
            IngestError::ShuttingDown { .. } => Outcome::ShuttingDown,
        }
    }

    /// What the webhook's log line says of it.
    pub fn failure(&self) -> WebhookFailure<'_> {
        match self {
            IngestError::Unavailable { cause, .. } => WebhookFailure::NotStored { cause },
            IngestError::Unauthorized(failure) => WebhookFailure::Rejected {
                error: self,
                auth_reason: Some(failure.reason.as_str()),
            },
            error => WebhookFailure::Rejected {
                error,
                auth_reason: None,
            },
        }
    }

    /// The machine-readable `error` code of the answer.
    fn code(&self) -> &'static str {
        match self {
            IngestError::Forbidden => "forbidden",
            IngestError::TooLarge { .. } => "payload_too_large",
            IngestError::UnsupportedMediaType => "unsupported_media_type",
            IngestError::BodyTimedOut(_) => "request_timeout",
            IngestError::BrokenBody(_) => "bad_request",
            IngestError::Unauthorized(_) => "unauthorized",
            IngestError::Overloaded { .. } => "overloaded",
            IngestError::BodyReadsFull { .. } => "body_reads_full",
            IngestError::ShuttingDown { .. } => "shutting_down",
            IngestError::Unavailable { cause, .. } if cause.is_spool_full() => "spool_full",
            IngestError::Unavailable { .. } => "unavailable",
        }
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngestError::Forbidden => StatusCode::FORBIDDEN,
            IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::BodyTimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            IngestError::BrokenBody(_) => StatusCode::BAD_REQUEST,
            IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            // Never a 4xx for our own trouble: a sender that does not retry 4xx would
            // lose the update.
            IngestError::Overloaded { .. }
            | IngestError::Unavailable { .. }
            | IngestError::BodyReadsFull { .. }
            | IngestError::ShuttingDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let IngestError::Overloaded { retry_after }
        | IngestError::Unavailable { retry_after, .. }
        | IngestError::BodyReadsFull { retry_after, .. }
        | IngestError::ShuttingDown { retry_after } = self
        {
            response.insert_header((RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1))));
        }
        if matches!(
            self,
            IngestError::BodyTimedOut(_)
                | IngestError::TooLarge { .. }
                | IngestError::BrokenBody(_)
                | IngestError::BodyReadsFull { .. }
                | IngestError::ShuttingDown { .. }
        ) {
            // The rest of the body was not read (or, shutting down, the connection is
            // about to close): the connection cannot be reused.
            response.force_close();
        }
        response.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        })
    }
}
