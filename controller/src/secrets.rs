//! The operator's secret key, which seals what the controller must keep
//! but nobody may read from its store: customers' private keys and the
//! ACME account key. AES-256-GCM (ring), a random nonce per seal, and the
//! record's identity as associated data, so a sealed value copied onto
//! another record does not open.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Why a key or a sealed value was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file or value is not a key.
    #[error("{0}")]
    BadKey(String),
    /// A sealed value does not open with this key (another key, another
    /// record, or altered).
    #[error("a sealed value does not open with the operator's key (was the key changed?)")]
    Unopenable,
}

/// The operator's key.
pub struct SecretKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key from its text form: 32 bytes in base64 (`openssl rand
    /// -base64 32`).
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = BASE64.decode(text.trim()).map_err(|e| {
            SecretError::BadKey(format!(
                "the secret key is not base64 ({e}); make one with `openssl rand -base64 32`"
            ))
        })?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| {
            SecretError::BadKey(format!(
                "the secret key has {} bytes, not 32; make one with `openssl rand -base64 32`",
                bytes.len()
            ))
        })?;
        Ok(SecretKey {
            key: LessSafeKey::new(unbound),
        })
    }

    /// The key in `path`.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SecretError::BadKey(format!("cannot read {}: {e}", path.display())))?;
        Self::from_base64(&text)
            .map_err(|e| SecretError::BadKey(format!("{}: {e}", path.display())))
    }

    /// A new random key, in its text form.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system's random source works");
        BASE64.encode(bytes)
    }

    /// `plain` sealed for the record named `context`, as base64.
    pub fn seal(&self, plain: &[u8], context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM seals any length the store can hold");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        BASE64.encode(out)
    }

    /// What [`SecretKey::seal`] sealed for `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SecretError> {
        let bytes = BASE64.decode(sealed).map_err(|_| SecretError::Unopenable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Unopenable);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Unopenable)?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| SecretError::Unopenable)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_record() {
        let key = SecretKey::from_base64(&SecretKey::generate()).unwrap();
        let sealed = key.seal(b"-----BEGIN PRIVATE KEY-----", "certificate:shop");
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(
            key.open(&sealed, "certificate:shop").unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(matches!(
            key.open(&sealed, "certificate:other"),
            Err(SecretError::Unopenable)
        ));
        let other = SecretKey::from_base64(&SecretKey::generate()).unwrap();
        assert!(matches!(
            other.open(&sealed, "certificate:shop"),
            Err(SecretError::Unopenable)
        ));
    }

    #[test]
    fn keys_of_the_wrong_size_or_form_are_refused_with_the_remedy() {
        let short = SecretKey::from_base64("c2hvcnQ=").unwrap_err().to_string();
        assert!(short.contains("5 bytes, not 32"), "{short}");
        let garbage = SecretKey::from_base64("not base64!")
            .unwrap_err()
            .to_string();
        assert!(garbage.contains("openssl rand -base64 32"), "{garbage}");
    }
}
