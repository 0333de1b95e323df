//! Customers' TLS certificates, one per distribution, uploaded or issued
//! by the controller's ACME client ([`crate::acme`]). An upload is checked
//! the way a browser would judge it (the chain links up, the key matches,
//! the names cover every domain of the distribution, the dates are
//! current), the private key is sealed with the operator's key
//! ([`crate::secrets`]) before it is stored, and edges receive it with
//! the distribution (see `crate::snapshot`).

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::model::now_ms;
use crate::secrets::{SecretError, SecretKey};
use crate::store::{Collection, Store, StoreError};

/// Renewal of an ACME certificate starts this many days before it
/// expires (Let's Encrypt's certificates last 90 days; its own client
/// renews at 30 days left), or at a third of its lifetime left for a
/// certificate shorter than 90 days.
pub const RENEW_BEFORE_DAYS: i64 = 30;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// When renewal of `issued` starts (ms since the epoch).
pub fn renews_from(issued: &Issued) -> i64 {
    let lifetime = issued.not_after_ms - issued.not_before_ms;
    issued.not_after_ms - (RENEW_BEFORE_DAYS * DAY_MS).min(lifetime / 3)
}

/// A distribution's certificate, as stored (key: the distribution id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// The distribution.
    pub distribution: String,
    /// Its customer.
    pub customer: String,
    /// Issued and renewed by the controller's ACME client.
    pub acme: bool,
    /// The certificate in use, if any yet.
    pub issued: Option<Issued>,
    /// HTTP-01 challenges the edges answer while an ACME order is open.
    #[serde(default)]
    pub challenges: Vec<Challenge>,
    /// Why the last ACME attempt failed.
    pub acme_error: Option<String>,
    /// ACME attempts that failed in a row (they space out retries).
    #[serde(default)]
    pub acme_failures: u32,
    /// No ACME attempt before this time (ms since the epoch).
    #[serde(default)]
    pub acme_not_before_ms: i64,
    /// Last change.
    pub updated_ms: i64,
}

/// A certificate and its sealed key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issued {
    /// The chain, PEM, leaf first.
    pub chain_pem: String,
    /// The private key (PEM), sealed with the operator's key.
    pub key_sealed: String,
    /// The DNS names of the leaf.
    pub names: Vec<String>,
    /// Validity (ms since the epoch).
    pub not_before_ms: i64,
    /// Expiry (ms since the epoch).
    pub not_after_ms: i64,
    /// SHA-256 of the leaf (hex).
    pub sha256: String,
    /// Issued by the ACME client (not uploaded).
    #[serde(default)]
    pub by_acme: bool,
}

/// An HTTP-01 challenge: `/.well-known/acme-challenge/{token}` answers
/// `key_authorization`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The token (the last path segment).
    pub token: String,
    /// The answer.
    pub key_authorization: String,
}

/// A certificate as the API shows it (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CertificateInfo {
    /// The distribution.
    pub distribution: String,
    /// Its customer.
    pub customer: String,
    /// Where the certificate served comes from: `uploaded`, or `acme`
    /// (issued, or pending with none uploaded).
    pub source: String,
    /// The leaf's DNS names (none while an ACME certificate is pending).
    pub names: Vec<String>,
    /// Validity start (ms since the epoch).
    pub not_before_ms: Option<i64>,
    /// Expiry (ms since the epoch).
    pub not_after_ms: Option<i64>,
    /// Whole days until expiry (negative: expired).
    pub days_left: Option<i64>,
    /// ACME: when renewal starts (ms since the epoch).
    pub renews_from_ms: Option<i64>,
    /// SHA-256 of the leaf (hex).
    pub sha256: Option<String>,
    /// ACME: why the last attempt failed.
    pub acme_error: Option<String>,
    /// The chain (PEM, leaf first); public.
    pub chain_pem: Option<String>,
}

impl CertificateRecord {
    /// The record as the API shows it, at `now` (ms).
    pub fn info(&self, now: i64) -> CertificateInfo {
        let issued = self.issued.as_ref();
        CertificateInfo {
            distribution: self.distribution.clone(),
            customer: self.customer.clone(),
            source: match issued {
                Some(issued) if !issued.by_acme => "uploaded",
                _ if self.acme => "acme",
                _ => "uploaded",
            }
            .into(),
            names: issued.map(|i| i.names.clone()).unwrap_or_default(),
            not_before_ms: issued.map(|i| i.not_before_ms),
            not_after_ms: issued.map(|i| i.not_after_ms),
            days_left: issued.map(|i| (i.not_after_ms - now).div_euclid(DAY_MS)),
            renews_from_ms: issued.filter(|_| self.acme).map(renews_from),
            sha256: issued.map(|i| i.sha256.clone()),
            acme_error: self.acme_error.clone(),
            chain_pem: issued.map(|i| i.chain_pem.clone()),
        }
    }
}

/// What [`check`] found in an upload.
pub struct Checked {
    /// The chain, as given.
    pub chain_pem: String,
    /// The leaf's DNS names.
    pub names: Vec<String>,
    /// Validity start (ms).
    pub not_before_ms: i64,
    /// Expiry (ms).
    pub not_after_ms: i64,
    /// SHA-256 of the leaf (hex).
    pub sha256: String,
}

impl Checked {
    /// The stored form, the key sealed for `distribution`; `by_acme`: the
    /// ACME client obtained it.
    pub fn seal(
        self,
        key_pem: &str,
        distribution: &str,
        secret: &SecretKey,
        by_acme: bool,
    ) -> Issued {
        Issued {
            chain_pem: self.chain_pem,
            key_sealed: secret.seal(key_pem.as_bytes(), &context(distribution)),
            names: self.names,
            not_before_ms: self.not_before_ms,
            not_after_ms: self.not_after_ms,
            sha256: self.sha256,
            by_acme,
        }
    }
}

/// What a sealed key is bound to.
fn context(distribution: &str) -> String {
    format!("certificate:{distribution}")
}

/// The private key of `issued` (for the edges).
pub fn open_key(
    issued: &Issued,
    distribution: &str,
    secret: &SecretKey,
) -> Result<String, SecretError> {
    let plain = secret.open(&issued.key_sealed, &context(distribution))?;
    String::from_utf8(plain).map_err(|_| SecretError::Unopenable)
}

/// The most a chain may hold, in PEM bytes and in certificates: every edge
/// keeps every distribution's chain, so one customer's upload may not be
/// the size of many (public chains are 2 to 4 certificates, under 8 KiB).
pub const MAX_CHAIN_BYTES: usize = 64 * 1024;
/// See [`MAX_CHAIN_BYTES`].
pub const MAX_CHAIN_CERTIFICATES: usize = 10;
/// The most a private key may hold, in PEM bytes (an RSA 8192 key is
/// about 6.4 KiB).
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Checks a chain (PEM, leaf first) and its private key (PEM) for a
/// distribution serving `domains`, at `now` (ms). The message says what
/// is wrong, naming the field (`certificate` or `private_key`).
pub fn check(
    chain_pem: &str,
    key_pem: &str,
    domains: &[String],
    now: i64,
) -> Result<Checked, String> {
    if chain_pem.len() > MAX_CHAIN_BYTES {
        return Err(format!(
            "certificate: {} bytes, more than the {MAX_CHAIN_BYTES} a chain may have",
            chain_pem.len()
        ));
    }
    if key_pem.len() > MAX_KEY_BYTES {
        return Err(format!(
            "private_key: {} bytes, more than the {MAX_KEY_BYTES} a key may have",
            key_pem.len()
        ));
    }
    let ders: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate: not PEM: {e}"))?;
    if ders.is_empty() {
        return Err("certificate: no `-----BEGIN CERTIFICATE-----` block in it".into());
    }
    if ders.len() > MAX_CHAIN_CERTIFICATES {
        return Err(format!(
            "certificate: {} blocks, more than the {MAX_CHAIN_CERTIFICATES} a chain may have (the leaf, then its issuers)",
            ders.len()
        ));
    }
    let parsed: Vec<X509Certificate<'_>> = ders
        .iter()
        .enumerate()
        .map(|(i, der)| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, cert)| cert)
                .map_err(|e| {
                    format!(
                        "certificate: block {} is not an X.509 certificate: {e}",
                        i + 1
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    for (i, pair) in parsed.windows(2).enumerate() {
        let (child, issuer) = (&pair[0], &pair[1]);
        if child.issuer() != issuer.subject()
            || child.verify_signature(Some(issuer.public_key())).is_err()
        {
            return Err(format!(
                "certificate: block {} did not issue block {}: give the leaf first, then each issuer in order",
                i + 2,
                i + 1
            ));
        }
    }
    let leaf = &parsed[0];

    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| format!("private_key: not PEM: {e}"))?
        .ok_or("private_key: no `-----BEGIN ... PRIVATE KEY-----` block in it")?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("private_key: not a usable key: {e}"))?;
    rustls::sign::CertifiedKey::new(ders.clone(), signing)
        .keys_match()
        .map_err(|_| "private_key: does not match the certificate's public key".to_string())?;

    let names: Vec<String> = leaf
        .subject_alternative_name()
        .map_err(|e| format!("certificate: its subjectAltName does not parse: {e}"))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(
            "certificate: it names no DNS name (subjectAltName); browsers ignore the common name"
                .into(),
        );
    }
    let end_entity = webpki::EndEntityCert::try_from(&ders[0])
        .map_err(|e| format!("certificate: not a usable end-entity certificate: {e:?}"))?;
    for domain in domains {
        let domain = domain.to_ascii_lowercase();
        let covered = if domain.starts_with("*.") {
            names.contains(&domain)
        } else {
            ServerName::try_from(domain.as_str())
                .is_ok_and(|name| end_entity.verify_is_valid_for_subject_name(&name).is_ok())
        };
        if !covered {
            return Err(format!(
                "certificate: it does not cover the distribution's domain `{domain}` (it names {})",
                names.join(", ")
            ));
        }
    }

    let validity = leaf.validity();
    let not_before_ms = validity.not_before.timestamp() * 1000;
    let not_after_ms = validity.not_after.timestamp() * 1000;
    if now < not_before_ms {
        return Err(format!(
            "certificate: not valid before {}",
            validity.not_before
        ));
    }
    if now > not_after_ms {
        return Err(format!("certificate: expired on {}", validity.not_after));
    }
    Ok(Checked {
        chain_pem: chain_pem.to_string(),
        names,
        not_before_ms,
        not_after_ms,
        sha256: hex::encode(Sha256::digest(&ders[0])),
    })
}

/// Why a certificate change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The upload is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// The controller cannot keep private keys (503).
    #[error("{0}")]
    NoSecretKey(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The refusal when the controller has no secret key.
pub fn no_secret_key() -> CertificateError {
    CertificateError::NoSecretKey(
        "this controller keeps no private keys: the operator must start it with \
         --secret-key-file (or PARAPET_SECRET_KEY)"
            .into(),
    )
}

/// The certificate record of `distribution`.
pub async fn get(
    store: &Store,
    distribution: &str,
) -> Result<Option<CertificateRecord>, StoreError> {
    store.get(Collection::Certificates, distribution).await
}

/// Stores `record` and has the edges pick it up.
pub async fn put(store: &Store, record: &CertificateRecord) -> Result<(), StoreError> {
    store
        .put(Collection::Certificates, &record.distribution, record)
        .await?;
    crate::revision::bump(store, std::slice::from_ref(&record.distribution)).await?;
    Ok(())
}

/// Removes the certificate of `distribution`; whether there was one.
pub async fn remove(store: &Store, distribution: &str) -> Result<bool, StoreError> {
    let removed = store.delete(Collection::Certificates, distribution).await?;
    if removed {
        crate::revision::bump(store, &[distribution.to_string()]).await?;
    }
    Ok(removed)
}

/// Checks that a distribution's certificate can serve `domains` (a new
/// version of it): an uploaded one must cover them; an ACME one is
/// issued again, but cannot be for a wildcard.
pub async fn check_domains(
    store: &Store,
    distribution: &str,
    domains: &[String],
) -> Result<(), CertificateError> {
    let Some(record) = get(store, distribution).await? else {
        return Ok(());
    };
    if record.acme {
        return crate::acme::refuse_wildcards(domains)
            .map_err(|why| CertificateError::Invalid(format!("domains: {why}")));
    }
    let Some(issued) = record.issued else {
        return Ok(());
    };
    let uncovered = domains.iter().find(|domain| {
        let domain = domain.to_ascii_lowercase();
        !issued.names.iter().any(|name| covers(name, &domain))
    });
    match uncovered {
        Some(domain) => Err(CertificateError::Invalid(format!(
            "domains: the distribution's certificate does not cover `{domain}` (it names {}); \
             upload one that does first, or remove it",
            issued.names.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Whether certificate name `name` (maybe `*.parent`) covers `domain`.
fn covers(name: &str, domain: &str) -> bool {
    if name == domain {
        return true;
    }
    match (name.strip_prefix("*."), domain.split_once('.')) {
        (Some(parent), Some((label, rest))) => label != "*" && rest == parent,
        _ => false,
    }
}

/// Every certificate record (for the metrics and the ACME worker).
pub async fn all(store: &Store) -> Result<Vec<CertificateRecord>, StoreError> {
    store.find(Collection::Certificates, &[]).await
}

/// Sets `parapet_certificate_expiry_timestamp_seconds{distribution}`
/// for each certificate in `records`.
pub fn export_expiry(records: &[CertificateRecord]) {
    for record in records {
        if let Some(issued) = &record.issued {
            metrics::gauge!("parapet_certificate_expiry_timestamp_seconds",
                "distribution" => record.distribution.clone())
            .set(issued.not_after_ms as f64 / 1000.0);
        }
    }
}

/// A record for a new upload or ACME opt-in.
pub fn new_record(distribution: &str, customer: &str, acme: bool) -> CertificateRecord {
    CertificateRecord {
        distribution: distribution.to_string(),
        customer: customer.to_string(),
        acme,
        issued: None,
        challenges: Vec::new(),
        acme_error: None,
        acme_failures: 0,
        acme_not_before_ms: 0,
        updated_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn wildcard_names_cover_one_label() {
        assert!(covers("shop.example", "shop.example"));
        assert!(covers("*.example", "shop.example"));
        assert!(!covers("*.example", "a.shop.example"));
        assert!(!covers("*.example", "example"));
        assert!(covers("*.example", "*.example"));
        assert!(!covers("*.shop.example", "*.example"));
    }
}
