use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::KeyConfig;
use crate::secret::{self, SecretError};

/// One resolved secret.
pub struct SigningKey {
    pub key_id: Option<String>,
    secret: SecretString,
}

impl SigningKey {
    pub fn new(key_id: Option<String>, secret: SecretString) -> Self {
        Self { key_id, secret }
    }

    /// Whether `mac` is HMAC-SHA256 of `message` under this key, compared in constant time.
    pub(crate) fn signed(&self, message: &[u8], mac: &[u8]) -> bool {
        let mut hmac = self.hmac();
        hmac.update(message);
        hmac.verify_slice(mac).is_ok()
    }

    /// An HMAC-SHA256 under this key, for a message fed in pieces; finish it with
    /// `verify_slice`, which compares in constant time.
    pub(crate) fn hmac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.secret_bytes()).expect("HMAC takes keys of any length")
    }

    pub(crate) fn secret_bytes(&self) -> &[u8] {
        self.secret.expose_secret().as_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// The configured secrets. Several may be active at once so that a secret can be
/// rotated by configuring the old and the new one side by side.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    pub fn new(keys: Vec<SigningKey>) -> Self {
        Self { keys }
    }

    pub fn from_config(configs: &[KeyConfig]) -> Result<Self, SecretError> {
        let keys = configs
            .iter()
            .map(|c| {
                let secret = secret::resolve(
                    "secret",
                    c.secret.as_ref(),
                    c.secret_env.as_deref(),
                    c.secret_file.as_deref(),
                )?;
                Ok(SigningKey::new(c.key_id.clone(), secret))
            })
            .collect::<Result<_, SecretError>>()?;
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn all(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The keys to try for a signature that names `key_id`: the keys carrying that id
    /// when there are any, otherwise every key.
    pub fn candidates<'k>(
        &'k self,
        key_id: Option<&str>,
    ) -> impl Iterator<Item = &'k SigningKey> + 'k {
        // Borrow the id from the ring itself, so the iterator outlives the request.
        let named: Option<&'k str> = key_id.and_then(|id| {
            self.keys
                .iter()
                .find_map(|k| k.key_id.as_deref().filter(|known| *known == id))
        });
        self.keys
            .iter()
            .filter(move |k| named.is_none() || k.key_id.as_deref() == named)
    }
}
