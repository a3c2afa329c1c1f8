//! A client of Vizion's REST API: subscribing containers (references), reading them and
//! their updates, and unsubscribing.
//!
//! Every call carries the `X-API-Key` header, which never appears in logs, errors or
//! `Debug` output. Calls that can safely be repeated (`GET`, `DELETE`) are retried on
//! 5xx answers and network errors, with exponential backoff capped at
//! `max_retry_backoff`; every call is retried on 429, never sooner than Vizion's
//! `Retry-After`. A creation is not retried after a 5xx, since Vizion may have created
//! (and billed) the reference before failing.

mod model;
mod pacer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use self::model::parse_listing;
pub use self::model::{
    Created, NewReference, Page, PageInfo, Reference, ReferenceFilter, Subscribe, Unsubscribed,
};
use self::pacer::Pacer;
use crate::retry::RetryPolicy;
use crate::secret::{self, InlineSecret, SecretError};
use crate::telemetry::events::{UnsubscribeAnswerLost, VizionApiRequest, VizionApiRetrying};
use crate::telemetry::Metrics;

/// Vizion's production API.
pub const PRODUCTION_URL: &str = "https://prod.vizionapi.com";
/// Vizion's demo API (its own keys and references).
pub const DEMO_URL: &str = "https://demo.vizionapi.com";
/// The header that carries the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Most pages read from one listing, a guard against an answer that never ends.
const MAX_PAGES: u64 = 10_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VizionApiConfig {
    /// Where the API is: production, demo, or a test double.
    pub base_url: String,
    /// The API key, inline (prefer `api_key_env` or `api_key_file`).
    pub api_key: Option<InlineSecret>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// File holding the API key (e.g. a mounted Kubernetes Secret).
    pub api_key_file: Option<PathBuf>,
    /// The bridge's public webhook URL: the `callback_url` of references created with
    /// `vizion-bridge references create` unless `--callback-url` is given.
    pub callback_url: Option<String>,
    /// Longest a single request may take, answer included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest to wait for a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Retries after the first attempt (5xx and network errors on safe calls, 429 on all).
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Longest wait between two attempts. A `Retry-After` longer than this ends the
    /// call with the 429 instead of waiting.
    #[serde(with = "humantime_serde")]
    pub max_retry_backoff: Duration,
    /// Items asked for per page of a listing.
    pub page_size: u32,
}

impl Default for VizionApiConfig {
    fn default() -> Self {
        Self {
            base_url: PRODUCTION_URL.into(),
            api_key: None,
            api_key_env: None,
            api_key_file: None,
            callback_url: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 4,
            retry_backoff: Duration::from_millis(500),
            max_retry_backoff: Duration::from_secs(60),
            page_size: 100,
        }
    }
}

impl VizionApiConfig {
    /// Whether an API key is configured in any of its forms.
    pub fn has_key(&self) -> bool {
        self.api_key.is_some() || self.api_key_env.is_some() || self.api_key_file.is_some()
    }

    /// What is wrong with these settings, one sentence each; a key is checked when one
    /// is configured ([`require_key`](Self::require_key) when something will call the API).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => problems.push(
                "`vizion_api.base_url` must be an http(s) URL such as \"https://prod.vizionapi.com\""
                    .into(),
            ),
        }
        if let Some(url) = &self.callback_url {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                problems.push("`vizion_api.callback_url` must be an http(s) URL".into());
            }
        }
        if self.page_size == 0 || self.page_size > 1000 {
            problems.push("`vizion_api.page_size` must be between 1 and 1000".into());
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            problems.push("`vizion_api.timeout` and `connect_timeout` must be above 0".into());
        }
        if self.has_key() {
            problems.extend(self.key_problem());
        }
        problems
    }

    /// What stops the API from being called when no key is configured (a configured
    /// one is checked by [`validate`](Self::validate)).
    pub fn require_key(&self) -> Vec<String> {
        if self.has_key() {
            return Vec::new();
        }
        self.key_problem().into_iter().collect()
    }

    fn key_problem(&self) -> Option<String> {
        self.key()
            .err()
            .map(|e| format!("`vizion_api.api_key`: {e}"))
    }

    fn key(&self) -> Result<secrecy::SecretString, SecretError> {
        secret::resolve(
            "api_key",
            self.api_key.as_ref(),
            self.api_key_env.as_deref(),
            self.api_key_file.as_deref(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Vizion answered with an error status.
    #[error("Vizion answered {status} to {operation}: {message}")]
    Status {
        operation: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
        /// An earlier attempt of the same call got no usable answer (a 5xx, or a
        /// connection lost after sending), so it may have taken effect.
        after_unanswered_attempt: bool,
    },
    #[error("cannot reach Vizion for {operation}: {reason}")]
    Transport { operation: String, reason: String },
    #[error("Vizion's answer to {operation} is not what was expected: {reason}")]
    Decode { operation: String, reason: String },
    #[error("the Vizion API key: {0}")]
    Key(#[from] SecretError),
    #[error("{0}")]
    Config(String),
}

impl ApiError {
    /// The HTTP status Vizion answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What a call returned: the body and the address that answered.
struct Answer {
    body: bytes::Bytes,
    peer: Option<SocketAddr>,
}

/// A Vizion API client. Cheap to clone; clones share connections and the pacing.
#[derive(Clone)]
pub struct VizionApi {
    http: reqwest::Client,
    base: Url,
    max_retries: u32,
    /// The waits between attempts; its maximum also caps a `Retry-After`.
    retry: RetryPolicy,
    page_size: u32,
    pacer: std::sync::Arc<Pacer>,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for VizionApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VizionApi")
            .field("base_url", &self.base.as_str())
            .field("api_key", &secret::REDACTED)
            .finish_non_exhaustive()
    }
}

impl VizionApi {
    /// Builds a client; fails when the base URL or the key is unusable.
    pub fn new(config: &VizionApiConfig) -> Result<Self, ApiError> {
        let mut base = Url::parse(&config.base_url)
            .map_err(|e| ApiError::Config(format!("`vizion_api.base_url`: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let key = config.key()?;
        let mut key = HeaderValue::from_str(key.expose_secret()).map_err(|_| {
            ApiError::Config("`vizion_api.api_key` holds characters a header cannot".into())
        })?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY_HEADER, key);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("vizion-bridge/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ApiError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            max_retries: config.max_retries,
            retry: RetryPolicy::unbounded(config.retry_backoff, config.max_retry_backoff),
            page_size: config.page_size,
            pacer: std::sync::Arc::new(Pacer::new(None)),
            metrics: None,
        })
    }

    /// Spaces this client's requests so that at most `per_second` start each second.
    pub fn with_rate_limit(mut self, per_second: f64) -> Self {
        let interval = (per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / per_second));
        self.pacer = std::sync::Arc::new(Pacer::new(interval));
        self
    }

    /// Counts this client's calls in `vizion_bridge_vizion_api_requests_total`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `POST /references`: subscribes a container or a bill of lading.
    pub async fn create_reference(&self, new: &NewReference) -> Result<Created, ApiError> {
        let answer = self
            .call(Method::POST, "create", "references", &[], Some(new))
            .await?;
        decode("create", &answer.body)
    }

    /// `GET /references/{id}`.
    pub async fn get_reference(&self, id: &str) -> Result<Reference, ApiError> {
        let path = format!("references/{}", segment(id));
        let answer = self
            .call(Method::GET, "get", &path, &[], None::<&()>)
            .await?;
        decode("get", &answer.body)
    }

    /// `DELETE /references/{id}`: stops tracking a reference.
    ///
    /// A `404` to a retry, after an attempt whose answer was lost, is a success: that
    /// attempt removed the reference.
    pub async fn unsubscribe(&self, id: &str) -> Result<Unsubscribed, ApiError> {
        let path = format!("references/{}", segment(id));
        let answer = match self
            .call(Method::DELETE, "unsubscribe", &path, &[], None::<&()>)
            .await
        {
            Ok(answer) => answer,
            Err(ApiError::Status {
                status: 404,
                after_unanswered_attempt: true,
                ..
            }) => {
                UnsubscribeAnswerLost { reference_id: id }.emit();
                return Ok(Unsubscribed { message: None });
            }
            Err(e) => return Err(e),
        };
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Unsubscribed { message: None });
        }
        decode("unsubscribe", &answer.body)
    }

    /// One page (from 1) of `GET /references`, newest first.
    pub async fn list_references(
        &self,
        filter: &ReferenceFilter,
        page: u64,
    ) -> Result<Page<Reference>, ApiError> {
        let mut query = filter.query();
        query.extend(self.page_query(page));
        let answer = self
            .call(Method::GET, "list", "references", &query, None::<&()>)
            .await?;
        parse_listing(&answer.body).map_err(|e| decode_error("list", e))
    }

    /// Every page of `GET /references`; `on_page` hears of each page as it arrives.
    pub async fn list_all_references(
        &self,
        filter: &ReferenceFilter,
        mut on_page: impl FnMut(&Page<Reference>),
    ) -> Result<Vec<Reference>, ApiError> {
        let mut all = Vec::new();
        for number in 1..=MAX_PAGES {
            let page = self.list_references(filter, number).await?;
            on_page(&page);
            let more = page.has_next(self.page_size);
            all.extend(page.items);
            if !more {
                break;
            }
        }
        Ok(all)
    }

    /// One page (from 1) of `GET /references/{id}/updates`, newest first, each update
    /// exactly as Vizion sent it.
    pub async fn list_updates_page(
        &self,
        reference_id: &str,
        page: u64,
    ) -> Result<(Page<Box<RawValue>>, Option<SocketAddr>), ApiError> {
        let path = format!("references/{}/updates", segment(reference_id));
        let query = self.page_query(page);
        let answer = self
            .call(Method::GET, "updates", &path, &query, None::<&()>)
            .await?;
        let page = parse_listing(&answer.body).map_err(|e| decode_error("updates", e))?;
        Ok((page, answer.peer))
    }

    /// Every update of a reference, oldest first, each exactly as Vizion sent it, with
    /// the address that answered.
    pub async fn list_updates(
        &self,
        reference_id: &str,
    ) -> Result<(Vec<Box<RawValue>>, Option<SocketAddr>), ApiError> {
        let mut all = Vec::new();
        let mut peer = None;
        for number in 1..=MAX_PAGES {
            let (page, answered_by) = self.list_updates_page(reference_id, number).await?;
            peer = peer.or(answered_by);
            let more = page.has_next(self.page_size);
            all.extend(page.items);
            if !more {
                break;
            }
        }
        all.reverse();
        Ok((all, peer))
    }

    fn page_query(&self, page: u64) -> [(&'static str, String); 3] {
        [
            ("include_metadata", "true".into()),
            ("limit", self.page_size.to_string()),
            ("page", page.to_string()),
        ]
    }

    async fn call(
        &self,
        method: Method,
        operation: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
    ) -> Result<Answer, ApiError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| ApiError::Config(format!("cannot build the URL of {operation}: {e}")))?;
        let describe = format!("{method} /{path}");
        // A creation that failed with a 5xx may still have happened: only a 429 (refused
        // before any work) is safe to repeat.
        let repeatable = method != Method::POST;
        let mut attempt = 0;
        let mut waits = self.retry.backoff();
        let mut unanswered = false;
        loop {
            self.pacer.wait().await;
            let mut request = self.http.request(method.clone(), url.clone()).query(query);
            if let Some(body) = body {
                request = request.json(body);
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let peer = response.remote_addr();
                    let body = response.bytes().await.map_err(|e| ApiError::Transport {
                        operation: describe.clone(),
                        reason: e.without_url().to_string(),
                    })?;
                    self.count(operation, "ok");
                    return Ok(Answer { body, peer });
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    let text = response.text().await.unwrap_or_default();
                    let error = ApiError::Status {
                        operation: describe.clone(),
                        status: status.as_u16(),
                        message: error_message(status, &text),
                        retry_after,
                        after_unanswered_attempt: unanswered,
                    };
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || (status.is_server_error() && repeatable);
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        if let Some(wait) = retry_after {
                            // Every request of this client waits, not just this one; but
                            // never longer than a retry may wait, so that one answer
                            // cannot stop polling and unsubscribing for a day.
                            self.pacer.hold_for(wait.min(self.retry.max));
                        }
                    }
                    self.count(operation, status.as_str());
                    unanswered |= status.is_server_error();
                    (error, retryable, retry_after)
                }
                Err(e) => {
                    let retryable = repeatable || e.is_connect();
                    // A request that never connected was never sent.
                    unanswered |= !e.is_connect();
                    self.count(operation, "transport_error");
                    let error = ApiError::Transport {
                        operation: describe.clone(),
                        reason: e.without_url().to_string(),
                    };
                    (error, retryable, None)
                }
            };
            let (error, retryable, retry_after) = failure;
            if !retryable || attempt >= self.max_retries {
                return Err(error);
            }
            let backoff = waits.next_delay();
            let wait = match retry_after {
                Some(asked) if asked > self.retry.max => return Err(error),
                Some(asked) => asked.max(backoff),
                None => backoff,
            };
            VizionApiRetrying {
                operation: &describe,
                attempt: attempt + 1,
                wait,
                error: &error,
            }
            .emit();
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    fn count(&self, operation: &str, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.emit(VizionApiRequest { operation, outcome });
        }
    }
}

fn decode<T: DeserializeOwned>(operation: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| decode_error(operation, e))
}

fn decode_error(operation: &str, e: serde_json::Error) -> ApiError {
    ApiError::Decode {
        operation: operation.to_owned(),
        reason: e.to_string(),
    }
}

/// One URL path segment, so that an id cannot reach another path.
fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let left = when - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

/// What Vizion said, from a JSON `message` (or `error`, `detail`), else the text.
fn error_message(status: StatusCode, text: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| {
            ["message", "error", "detail", "errors"]
                .iter()
                .find_map(|key| match value.get(key)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                })
        });
    let message = from_json.unwrap_or_else(|| text.trim().to_owned());
    let message: String = message.chars().take(300).collect();
    if message.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(segment("d7d86c23-b74f"), "d7d86c23-b74f");
        assert_eq!(segment("../carriers?x=1"), "..%2Fcarriers%3Fx%3D1");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }

    #[test]
    fn error_messages_come_from_the_answer() {
        assert_eq!(
            error_message(
                StatusCode::NOT_FOUND,
                r#"{"message":"Reference not found"}"#
            ),
            "Reference not found"
        );
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, ""), "Bad Gateway");
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, "upstream down\n"),
            "upstream down"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = VizionApiConfig {
            api_key: Some(InlineSecret::new("k")),
            retry_backoff: Duration::from_millis(100),
            max_retry_backoff: Duration::from_millis(500),
            ..VizionApiConfig::default()
        };
        let api = VizionApi::new(&config).unwrap();
        let mut backoff = api.retry.backoff();
        let waits: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn the_key_never_prints() {
        let config = VizionApiConfig {
            api_key: Some(InlineSecret::new("hunter2-key")),
            ..VizionApiConfig::default()
        };
        let api = VizionApi::new(&config).unwrap();
        assert!(!format!("{api:?}").contains("hunter2-key"));
        assert!(!format!("{config:?}").contains("hunter2-key"));
        assert!(!toml::to_string(&config).unwrap().contains("hunter2-key"));
    }

    #[test]
    fn a_missing_key_is_named() {
        let config = VizionApiConfig {
            api_key_env: Some("VIZION_BRIDGE_TEST_NO_SUCH_KEY".into()),
            ..VizionApiConfig::default()
        };
        let problems = config.validate();
        crate::config::assert_names(&problems, "VIZION_BRIDGE_TEST_NO_SUCH_KEY");
        assert!(VizionApiConfig::default().validate().is_empty());
        assert!(!VizionApiConfig::default().require_key().is_empty());
    }
}
