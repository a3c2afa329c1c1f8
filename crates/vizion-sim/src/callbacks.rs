//! Delivery of updates to callback URLs, signed the way Vizion signs them, and the
//! clock that plays journeys and retries failed deliveries at the next check.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use vizion_bridge::auth::signer;

use crate::store::{DeliveryOutcome, DeliveryRecord, PendingDelivery, Store};

/// How deliveries are signed.
pub struct Signing {
    /// `None`: deliveries go out unsigned.
    pub secret: Option<SecretString>,
    pub key_id: Option<String>,
    /// `expires` minus `created` in the signature.
    pub ttl: Duration,
}

pub struct Deliverer {
    client: reqwest::Client,
    signing: Signing,
}

impl Deliverer {
    pub fn new(signing: Signing, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("vizion-sim/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        Self { client, signing }
    }

    /// POSTs the update and records the outcome in the store.
    pub async fn deliver(&self, store: &Store, delivery: PendingDelivery) -> DeliveryRecord {
        let outcome = self.post(&delivery).await;
        let record = store.finish_delivery(&delivery, &outcome);
        match (&record.status, &record.error) {
            (Some(status), _) => tracing::info!(
                reference_id = %record.reference_id,
                update_id = %record.update_id,
                url = %record.url,
                trigger = record.trigger.as_str(),
                status,
                delivered = record.delivered,
                "callback delivery"
            ),
            (None, error) => tracing::warn!(
                reference_id = %record.reference_id,
                update_id = %record.update_id,
                url = %record.url,
                trigger = record.trigger.as_str(),
                error = error.as_deref().unwrap_or(""),
                delivered = false,
                "callback delivery"
            ),
        }
        record
    }

    async fn post(&self, delivery: &PendingDelivery) -> DeliveryOutcome {
        let body = serde_json::to_vec(&delivery.update).expect("an update serializes");
        let url = match reqwest::Url::parse(&delivery.callback_url) {
            Ok(url) => url,
            Err(e) => {
                return DeliveryOutcome {
                    status: None,
                    error: Some(format!("invalid callback URL: {e}")),
                }
            }
        };
        let mut request = self
            .client
            .post(url.clone())
            .header("content-type", "application/json");
        if let Some(secret) = &self.signing.secret {
            let target = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            let expires = created + self.signing.ttl.as_secs() as i64;
            let signed = signer::sign(
                secret.expose_secret().as_bytes(),
                self.signing.key_id.as_deref(),
                &target,
                created,
                expires,
                &body,
            );
            request = request
                .header("digest", signed.digest)
                .header("x-vizion-signature", signed.signature);
        }
        match request.body(body).send().await {
            Ok(response) => DeliveryOutcome {
                status: Some(response.status().as_u16()),
                error: None,
            },
            Err(e) => DeliveryOutcome {
                status: None,
                error: Some(describe(&e)),
            },
        }
    }
}

/// A reqwest error with its causes, without the URL (whose query may hold a token).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Plays due journey steps and due retries, forever. Each delivery runs on its own
/// task so that a slow callback does not hold up the others.
pub async fn run_clock(store: Arc<Store>, deliverer: Arc<Deliverer>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        for delivery in store.take_due(Instant::now()) {
            let store = store.clone();
            let deliverer = deliverer.clone();
            tokio::spawn(async move {
                deliverer.deliver(&store, delivery).await;
            });
        }
    }
}
