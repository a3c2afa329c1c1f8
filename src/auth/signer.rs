//! Produces the headers Vizion sends, for `vizion-bridge sign`: a person can then try
//! the service with curl.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The signed headers, ready to print as `name: value` lines.
pub struct SignedHeaders {
    pub digest: String,
    pub signature: String,
}

/// Signs `body` for a POST to `path` with the default `http-signature` reading.
pub fn sign(
    secret: &[u8],
    key_id: Option<&str>,
    path: &str,
    created: i64,
    expires: i64,
    body: &[u8],
) -> SignedHeaders {
    let digest = format!("SHA-256={}", hex::encode(Sha256::digest(body)));
    let signing_string = format!(
        "(request-target): post {path}\n(created): {created}\n(expires): {expires}\ndigest: {digest}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(signing_string.as_bytes());
    let mac = hex::encode(mac.finalize().into_bytes());
    let key_id = key_id
        .map(|id| format!("keyId=\"{id}\","))
        .unwrap_or_default();
    let signature = format!(
        "{key_id}algorithm=\"hmac-sha256\",created={created},expires={expires},headers=\"(request-target) (created) (expires) digest\",signature=\"{mac}\""
    );
    SignedHeaders { digest, signature }
}
