use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::KeyRing;
use crate::secret::InlineSecret;

/// How a webhook proves it is authentic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// HMAC HTTP signature in `x-vizion-signature` plus a `digest` header.
    HttpSignature,
    /// HMAC of the raw body in one header.
    BodyHmac,
    /// `http-signature` when the header carries `signature="…"`, else `body-hmac`.
    Auto,
    /// One static header compared with the configured secrets.
    StaticHeader,
    /// A token in the callback URL's query string.
    QueryToken,
    /// No authentication (local development only).
    None,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::HttpSignature => "http-signature",
            Scheme::BodyHmac => "body-hmac",
            Scheme::Auto => "auto",
            Scheme::StaticHeader => "static-header",
            Scheme::QueryToken => "query-token",
            Scheme::None => "none",
        }
    }
}

/// What happens when a check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Reject with 401.
    Enforce,
    /// Check, count and log, but accept: for a first rollout against real traffic.
    Shadow,
    /// Do not check.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
            Mode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub scheme: Scheme,
    pub mode: Mode,
    /// Allowed clock difference when checking `created` and `expires`.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// The shared secrets (several, with key ids, to rotate without downtime).
    pub secrets: Vec<KeyConfig>,
    pub http_signature: HttpSignatureConfig,
    pub body_hmac: BodyHmacConfig,
    pub static_header: StaticHeaderConfig,
    pub query_token: QueryTokenConfig,
}

impl AuthConfig {
    /// What is wrong with these settings, one sentence each, including a secret that
    /// cannot be read.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let signature = &self.http_signature;
        if matches!(self.scheme, Scheme::HttpSignature | Scheme::Auto)
            && !signature
                .required_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&signature.digest_header))
        {
            problems.push(format!(
                "`auth.http_signature.required_headers` must include the digest header `{}`: \
                 without it a signature does not bind the body",
                signature.digest_header
            ));
        }
        match KeyRing::from_config(&self.secrets) {
            Err(e) => problems.push(format!("`auth.secrets`: {e}")),
            Ok(keys) => {
                let needs_secrets = self.mode != Mode::Off && self.scheme != Scheme::None;
                if needs_secrets && keys.is_empty() {
                    problems.push(format!(
                        "`auth.secrets` is empty: scheme `{}` needs at least one secret",
                        self.scheme.as_str()
                    ));
                }
            }
        }
        problems
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            scheme: Scheme::HttpSignature,
            mode: Mode::Enforce,
            clock_skew: Duration::from_secs(300),
            secrets: Vec::new(),
            http_signature: HttpSignatureConfig::default(),
            body_hmac: BodyHmacConfig::default(),
            static_header: StaticHeaderConfig::default(),
            query_token: QueryTokenConfig::default(),
        }
    }
}

/// One secret; `key_id` selects it when a signature names that key.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<InlineSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSignatureConfig {
    /// Header that carries the signature parameters.
    pub header: String,
    /// Header that carries the body digest.
    pub digest_header: String,
    /// Entries that the signature's `headers` list must contain. `digest` ties the
    /// body to the signature; without it a captured signature could carry any body.
    pub required_headers: Vec<String>,
}

impl Default for HttpSignatureConfig {
    fn default() -> Self {
        Self {
            header: "x-vizion-signature".into(),
            digest_header: "digest".into(),
            required_headers: vec!["digest".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BodyHmacConfig {
    /// Header that carries HEX or base64 of HMAC-SHA256(secret, body).
    pub header: String,
    /// Optional prefix before the value, such as `sha256=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl Default for BodyHmacConfig {
    fn default() -> Self {
        Self {
            header: "x-vizion-signature".into(),
            prefix: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticHeaderConfig {
    /// Header whose whole value must equal one of the secrets, e.g. `authorization`
    /// with a secret `Bearer …`.
    pub name: String,
}

impl Default for StaticHeaderConfig {
    fn default() -> Self {
        Self {
            name: "authorization".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryTokenConfig {
    /// Query parameter of the callback URL that carries the token.
    pub param: String,
}

impl Default for QueryTokenConfig {
    fn default() -> Self {
        Self {
            param: "token".into(),
        }
    }
}
