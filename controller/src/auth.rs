//! Tokens and who they speak for. A token is `pp<kind>_<id>_<secret>`; only
//! its SHA-256 is stored, so a leaked database does not leak tokens.

use sha2::{Digest, Sha256};

use crate::model::{now_ms, TokenKind, TokenRecord};
use crate::store::{Collection, Store, StoreError};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: reaches everything.
    Operator,
    /// A customer: reaches its own data only.
    Customer(String),
    /// An edge: reaches the edge API only.
    Edge(String),
    /// Reads the edge list and groups only.
    Monitor,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    /// Unknown or malformed token.
    #[error("invalid token")]
    Invalid,
    /// The token was revoked.
    #[error("token {0} was revoked")]
    Revoked(String),
    /// The token's customer is suspended.
    #[error("customer {0} is suspended")]
    Suspended(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `bytes` bytes from the OS's random source, in hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the OS random source works");
    hex::encode(buffer)
}

/// A new token of `kind`: its record (to store) and the token (to show
/// once).
pub fn new_token(
    kind: TokenKind,
    customer: Option<String>,
    edge: Option<String>,
    name: &str,
) -> (TokenRecord, String) {
    let prefix = match kind {
        TokenKind::Operator => "ppo",
        TokenKind::Customer => "ppc",
        TokenKind::Edge => "ppe",
        TokenKind::Monitor => "ppm",
    };
    let id = random_hex(4);
    let token = format!("{prefix}_{id}_{}", random_hex(24));
    let record = TokenRecord {
        hash: hash_token(&token),
        id: format!("tok_{id}"),
        kind,
        customer,
        edge,
        name: name.to_string(),
        created_ms: now_ms(),
        revoked: false,
    };
    (record, token)
}

/// Revokes a stored token: it no longer authenticates.
pub async fn revoke(store: &Store, record: &TokenRecord) -> Result<(), StoreError> {
    store
        .update(
            Collection::Tokens,
            &record.hash,
            &[],
            &serde_json::json!({ "revoked": true }),
        )
        .await?;
    Ok(())
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}

/// Checks tokens against the bootstrap operator token and the store.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    operator_hash: String,
    /// `None`: no edge may register.
    bootstrap_hash: Option<String>,
}

impl Authenticator {
    /// `operator_token` is `PARAPET_ADMIN_TOKEN`; edges register with
    /// `bootstrap_token`, and none can without one (it never defaults to
    /// the operator's token: every edge holds it).
    pub fn new(store: Store, operator_token: &str, bootstrap_token: Option<&str>) -> Self {
        Authenticator {
            store,
            operator_hash: hash_token(operator_token),
            bootstrap_hash: bootstrap_token.filter(|t| !t.is_empty()).map(hash_token),
        }
    }

    /// Whether edges may register at all (a bootstrap token is set).
    pub fn takes_new_edges(&self) -> bool {
        self.bootstrap_hash.is_some()
    }

    /// Whether `token` is the edge bootstrap token.
    pub fn is_bootstrap(&self, token: &str) -> bool {
        match &self.bootstrap_hash {
            Some(hash) => !token.is_empty() && constant_time_eq(&hash_token(token), hash),
            None => false,
        }
    }

    /// Who `token` speaks for.
    pub async fn principal(&self, token: &str) -> Result<Principal, AuthError> {
        let hash = hash_token(token);
        if constant_time_eq(&hash, &self.operator_hash) {
            return Ok(Principal::Operator);
        }
        let record: TokenRecord = self
            .store
            .get(Collection::Tokens, &hash)
            .await?
            .ok_or(AuthError::Invalid)?;
        if record.revoked {
            return Err(AuthError::Revoked(record.id));
        }
        match record.kind {
            TokenKind::Operator => Ok(Principal::Operator),
            TokenKind::Monitor => Ok(Principal::Monitor),
            TokenKind::Edge => record.edge.map(Principal::Edge).ok_or(AuthError::Invalid),
            TokenKind::Customer => {
                let customer = record.customer.ok_or(AuthError::Invalid)?;
                let suspended = self
                    .store
                    .get::<crate::model::Customer>(Collection::Customers, &customer)
                    .await?
                    .is_none_or(|c| c.suspended);
                if suspended {
                    return Err(AuthError::Suspended(customer));
                }
                Ok(Principal::Customer(customer))
            }
        }
    }
}

/// Compares two strings (digests, CSRF tokens) without an early exit.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_only_as_hashes() {
        let (record, token) = new_token(TokenKind::Customer, Some("acme".into()), None, "ci");
        assert!(token.starts_with("ppc_"));
        assert_eq!(record.hash, hash_token(&token));
        assert!(!record.hash.contains(&token[4..12]));
        let (_, other) = new_token(TokenKind::Customer, Some("acme".into()), None, "ci");
        assert_ne!(token, other);
    }

    #[test]
    fn bearer_headers_are_parsed() {
        assert_eq!(bearer(Some("Bearer abc")).expect("ok"), "abc");
        assert_eq!(bearer(Some("bearer  abc ")).expect("ok"), "abc");
        assert!(matches!(bearer(None), Err(AuthError::Missing)));
        assert!(matches!(bearer(Some("Basic abc")), Err(AuthError::Missing)));
        assert!(matches!(bearer(Some("Bearer ")), Err(AuthError::Missing)));
    }

    #[test]
    fn an_empty_bootstrap_token_registers_nobody() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::embedded(dir.path()).expect("store");
        let open = Authenticator::new(store.clone(), "admin", Some(""));
        assert!(!open.is_bootstrap(""));
        assert!(!open.takes_new_edges());
        let none = Authenticator::new(store.clone(), "admin", None);
        assert!(!none.is_bootstrap("admin"), "never the operator's token");
        let set = Authenticator::new(store, "admin", Some("edges"));
        assert!(set.takes_new_edges());
        assert!(set.is_bootstrap("edges"));
        assert!(!set.is_bootstrap("admin"));
        assert!(!set.is_bootstrap("edges "));
    }
}
