//! Is this webhook authentic? Every check here runs on the raw request (method, target,
//! headers, body bytes) before anything parses the body, and compares secrets in
//! constant time.

mod body_hmac;
mod config;
mod digest;
mod http_signature;
mod keys;
pub mod signer;
mod token;

use actix_web::http::header::HeaderMap;

pub use config::{AuthConfig, KeyConfig, Mode, Scheme};
pub use keys::{KeyRing, SigningKey};

/// The parts of a request that authentication looks at.
#[derive(Clone, Copy)]
pub struct RequestParts<'a> {
    /// Upper- or lower-case HTTP method as received.
    pub method: &'a str,
    /// Path and query string as received, e.g. `/webhooks/vizion?token=…`.
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Current time in Unix seconds (a parameter so that tests can fix it).
    pub now: i64,
}

/// Why a request failed authentication. The names are the `reason` label of
/// `vizion_bridge_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    MissingSignature,
    MalformedSignature,
    UnknownAlgorithm,
    Expired,
    NotYetValid,
    UnsignedHeader,
    MissingSignedHeader,
    MissingDigest,
    MalformedDigest,
    BadDigest,
    BadSignature,
    MissingToken,
    BadToken,
}

impl FailureReason {
    pub const ALL: [FailureReason; 13] = [
        FailureReason::MissingSignature,
        FailureReason::MalformedSignature,
        FailureReason::UnknownAlgorithm,
        FailureReason::Expired,
        FailureReason::NotYetValid,
        FailureReason::UnsignedHeader,
        FailureReason::MissingSignedHeader,
        FailureReason::MissingDigest,
        FailureReason::MalformedDigest,
        FailureReason::BadDigest,
        FailureReason::BadSignature,
        FailureReason::MissingToken,
        FailureReason::BadToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::MissingSignature => "missing_signature",
            FailureReason::MalformedSignature => "malformed_signature",
            FailureReason::UnknownAlgorithm => "unknown_algorithm",
            FailureReason::Expired => "expired",
            FailureReason::NotYetValid => "not_yet_valid",
            FailureReason::UnsignedHeader => "unsigned_header",
            FailureReason::MissingSignedHeader => "missing_signed_header",
            FailureReason::MissingDigest => "missing_digest",
            FailureReason::MalformedDigest => "malformed_digest",
            FailureReason::BadDigest => "bad_digest",
            FailureReason::BadSignature => "bad_signature",
            FailureReason::MissingToken => "missing_token",
            FailureReason::BadToken => "bad_token",
        }
    }
}

/// A failed check: the reason, and a short explanation that is safe to log and to
/// return to the sender (it never contains a secret or a computed MAC).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct AuthFailure {
    pub reason: FailureReason,
    pub detail: &'static str,
}

impl AuthFailure {
    pub(crate) fn new(reason: FailureReason, detail: &'static str) -> Self {
        Self { reason, detail }
    }
}

/// What authentication concluded about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authentication is switched off (`mode = "off"` or `scheme = "none"`).
    NotChecked,
    /// Authentic; `key_id` names the secret that matched, when it has an id.
    Verified { key_id: Option<String> },
    /// Not authentic. In `shadow` mode the caller lets it through but still reports it.
    Failed(AuthFailure),
}

/// Checks requests against the configured scheme and secrets.
pub struct Authenticator {
    scheme: Scheme,
    mode: Mode,
    keys: KeyRing,
    config: AuthConfig,
}

impl Authenticator {
    pub fn new(config: AuthConfig, keys: KeyRing) -> Self {
        Self {
            scheme: config.scheme,
            mode: config.mode,
            keys,
            config,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn verify(&self, request: &RequestParts<'_>) -> Verdict {
        if self.mode == Mode::Off || self.scheme == Scheme::None {
            return Verdict::NotChecked;
        }
        let result = match self.scheme {
            Scheme::HttpSignature => self.verify_http_signature(request),
            Scheme::BodyHmac => self.verify_body_hmac(request),
            Scheme::Auto => {
                let header = &self.config.http_signature.header;
                if http_signature::looks_like_http_signature(request.headers, header) {
                    self.verify_http_signature(request)
                } else if body_hmac::could_be_a_delivery(request.body) {
                    self.verify_body_hmac(request)
                } else {
                    // Both readings share the secrets, so an HTTP signature's signing
                    // string, posted as a body with the captured MAC, would pass as a
                    // body HMAC. A signing string never starts with `{`; a delivery does.
                    Err(AuthFailure::new(
                        FailureReason::BadSignature,
                        "with scheme auto, a body HMAC is accepted only on a JSON object",
                    ))
                }
            }
            Scheme::StaticHeader => {
                token::verify_static_header(&self.config.static_header.name, request, &self.keys)
            }
            Scheme::QueryToken => {
                token::verify_query_token(&self.config.query_token.param, request, &self.keys)
            }
            Scheme::None => unreachable!("handled above"),
        };
        match result {
            Ok(key) => Verdict::Verified {
                key_id: key.key_id.clone(),
            },
            Err(failure) => Verdict::Failed(failure),
        }
    }

    fn verify_http_signature(
        &self,
        request: &RequestParts<'_>,
    ) -> Result<&SigningKey, AuthFailure> {
        http_signature::verify(
            &self.config.http_signature,
            self.config.clock_skew.as_secs() as i64,
            request,
            &self.keys,
        )
    }

    fn verify_body_hmac(&self, request: &RequestParts<'_>) -> Result<&SigningKey, AuthFailure> {
        body_hmac::verify(&self.config.body_hmac, request, &self.keys)
    }
}

/// The signature header's value as text: `missing_signature` when absent,
/// `malformed_signature` when it is not text.
pub(crate) fn signature_header<'r>(
    request: &RequestParts<'r>,
    name: &str,
) -> Result<&'r str, AuthFailure> {
    request
        .headers
        .get(name)
        .ok_or(AuthFailure::new(
            FailureReason::MissingSignature,
            "no signature header",
        ))?
        .to_str()
        .map_err(|_| {
            AuthFailure::new(
                FailureReason::MalformedSignature,
                "signature header is not text",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::events::{AUTH_FAILURE_REASONS, COUNTED_AUTH_MODES};

    /// The series of `vizion_bridge_auth_failures_total` made at start are those the
    /// failures count in.
    #[test]
    fn the_metrics_know_every_failure_reason_and_every_mode_that_checks() {
        assert_eq!(
            AUTH_FAILURE_REASONS,
            FailureReason::ALL.map(FailureReason::as_str)
        );
        assert_eq!(
            COUNTED_AUTH_MODES,
            [Mode::Enforce.as_str(), Mode::Shadow.as_str()]
        );
    }
}
