//! Automatic certificates: for distributions that opt in, the worker (the
//! lease holder) orders a certificate from the operator's ACME directory
//! (`[acme]` in the settings file) with instant-acme, and renews it
//! [`certificates::RENEW_BEFORE_DAYS`] days before expiry (see
//! [`certificates::renews_from`]) or when the distribution's domains
//! change. HTTP-01 challenges are answered by the edges: each is
//! put on the distribution's certificate record, which reaches every edge
//! with the distribution; the ACME server is told to validate once every
//! healthy edge serves the new revision.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::certificates::{self, CertificateRecord, Challenge, Issued};
use crate::model::{now_ms, Distribution};
use crate::secrets::SecretKey;
use crate::store::{Collection, Store, StoreError};

/// The `[acme]` table of the settings file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSettings {
    /// The ACME directory URL, e.g.
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// Contact for the account, e.g. `mailto:ops@example.net`.
    #[serde(default)]
    pub contact: Option<String>,
    /// The authority (PEM) of the directory's TLS certificate, for a
    /// private ACME server; default: the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// How long edges get to serve a challenge before the ACME server is told
/// to validate anyway.
const EDGE_WAIT: Duration = Duration::from_secs(30);
/// How long an order may take to validate, and to issue.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

/// The ACME client of this controller.
pub struct Issuer {
    settings: AcmeSettings,
    secret: Arc<SecretKey>,
    heartbeat_interval_ms: u64,
    account: tokio::sync::OnceCell<Account>,
}

/// A stored ACME account (key: the directory URL's SHA-256).
#[derive(Serialize, Deserialize)]
struct AccountRecord {
    directory: String,
    /// The account's credentials (JSON), sealed with the operator's key.
    credentials_sealed: String,
}

impl Issuer {
    /// A client of `settings.directory`, keeping its account key sealed
    /// with `secret`; edges heartbeat every `heartbeat_interval_ms`.
    pub fn new(settings: AcmeSettings, secret: Arc<SecretKey>, heartbeat_interval_ms: u64) -> Self {
        Issuer {
            settings,
            secret,
            heartbeat_interval_ms,
            account: tokio::sync::OnceCell::new(),
        }
    }

    /// Issues or renews every certificate that is due; failures are kept
    /// on the record (shown by `parapet cert list`) and retried later,
    /// further apart each time.
    pub async fn pass(&self, store: &Store) -> Result<(), StoreError> {
        let now = now_ms();
        for record in certificates::all(store).await? {
            if !record.acme || record.acme_not_before_ms > now {
                continue;
            }
            let Some(domains) = live_domains(store, &record.distribution).await? else {
                continue;
            };
            if !due(&record, &domains, now) {
                continue;
            }
            tracing::info!(distribution = %record.distribution, ?domains, "ordering a certificate");
            let outcome = self.issue(store, &record, &domains).await;
            // The record may have changed meanwhile (removed, uploaded).
            let Some(mut latest) = certificates::get(store, &record.distribution).await? else {
                continue;
            };
            latest.challenges.clear();
            latest.updated_ms = now_ms();
            match outcome {
                Ok(issued) if latest.acme => {
                    tracing::info!(distribution = %record.distribution, not_after_ms = issued.not_after_ms, "certificate issued");
                    latest.issued = Some(issued);
                    latest.acme_error = None;
                    latest.acme_failures = 0;
                    latest.acme_not_before_ms = 0;
                }
                Ok(_) => {}
                Err(why) => {
                    tracing::warn!(distribution = %record.distribution, error = %why, "certificate order failed");
                    latest.acme_failures += 1;
                    latest.acme_error = Some(why);
                    // 1, 2, 4 ... minutes, at most six hours.
                    let wait = 60_000i64 << latest.acme_failures.min(9).saturating_sub(1);
                    latest.acme_not_before_ms = now_ms() + wait.min(6 * 3600 * 1000);
                }
            }
            certificates::put(store, &latest).await?;
        }
        Ok(())
    }

    /// One order for `domains`: challenges published to the edges,
    /// validated, the certificate fetched and checked.
    async fn issue(
        &self,
        store: &Store,
        record: &CertificateRecord,
        domains: &[String],
    ) -> Result<Issued, String> {
        let account = self.account(store).await?;
        let identifiers: Vec<Identifier> =
            domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("the ACME server refused the order: {e}"))?;

        let mut challenges = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| format!("cannot read an authorization: {e}"))?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            let identifier = authorization.identifier().to_string();
            let challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| {
                    format!("the ACME server offers no HTTP-01 challenge for `{identifier}`")
                })?;
            challenges.push(Challenge {
                token: challenge.token.clone(),
                key_authorization: challenge.key_authorization().as_str().to_string(),
            });
        }
        self.publish(store, &record.distribution, &challenges)
            .await?;

        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| format!("cannot read an authorization: {e}"))?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut challenge) = authorization.challenge(ChallengeType::Http01) {
                challenge
                    .set_ready()
                    .await
                    .map_err(|e| format!("the ACME server refused the challenge: {e}"))?;
            }
        }
        let retries = RetryPolicy::new().timeout(ORDER_TIMEOUT);
        let status = order
            .poll_ready(&retries)
            .await
            .map_err(|e| format!("validation failed: {e}"))?;
        if status != OrderStatus::Ready {
            return Err(validation_failure(&mut order, status).await);
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalizing the order: {e}"))?;
        let chain_pem = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| format!("fetching the certificate: {e}"))?;
        let checked = certificates::check(&chain_pem, &key_pem, domains, now_ms())
            .map_err(|e| format!("the issued certificate is unusable: {e}"))?;
        Ok(checked.seal(&key_pem, &record.distribution, &self.secret, true))
    }

    /// Puts `challenges` on the distribution's record and waits (at most
    /// [`EDGE_WAIT`]) until every healthy edge serves that revision.
    async fn publish(
        &self,
        store: &Store,
        distribution: &str,
        challenges: &[Challenge],
    ) -> Result<(), String> {
        let stored = |e: StoreError| format!("storing the challenges: {e}");
        let mut record = certificates::get(store, distribution)
            .await
            .map_err(stored)?
            .ok_or("the certificate was removed meanwhile")?;
        record.challenges = challenges.to_vec();
        store
            .put(Collection::Certificates, distribution, &record)
            .await
            .map_err(stored)?;
        let revision = crate::revision::bump(store, &[distribution.to_string()])
            .await
            .map_err(stored)?;
        let deadline = tokio::time::Instant::now() + EDGE_WAIT;
        loop {
            let edges = crate::edges::list(store, self.heartbeat_interval_ms)
                .await
                .map_err(stored)?;
            let behind = edges
                .iter()
                .filter(|e| e.healthy && e.edge.config_revision < revision)
                .count();
            if behind == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(%distribution, behind, "edges did not take the ACME challenge in time; validating anyway");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The ACME account: as stored, or created and stored.
    async fn account(&self, store: &Store) -> Result<Account, String> {
        self.account
            .get_or_try_init(|| async {
                let id = hex::encode(Sha256::digest(self.settings.directory.as_bytes()));
                let context = format!("acme-account:{id}");
                let builder = || match &self.settings.ca_file {
                    Some(ca) => Account::builder_with_root(ca)
                        .map_err(|e| format!("[acme] ca_file {}: {e}", ca.display())),
                    None => Account::builder().map_err(|e| format!("ACME client: {e}")),
                };
                let stored: Option<AccountRecord> = store
                    .get(Collection::AcmeAccounts, &id)
                    .await
                    .map_err(|e| format!("reading the ACME account: {e}"))?;
                if let Some(stored) = stored {
                    let json = self
                        .secret
                        .open(&stored.credentials_sealed, &context)
                        .map_err(|e| format!("the stored ACME account: {e}"))?;
                    let credentials: AccountCredentials = serde_json::from_slice(&json)
                        .map_err(|e| format!("the stored ACME account: {e}"))?;
                    return builder()?
                        .from_credentials(credentials)
                        .await
                        .map_err(|e| format!("reaching {}: {e}", self.settings.directory));
                }
                let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
                let (account, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.settings.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| {
                        format!("creating an account at {}: {e}", self.settings.directory)
                    })?;
                let json = serde_json::to_vec(&credentials)
                    .map_err(|e| format!("keeping the ACME account: {e}"))?;
                let record = AccountRecord {
                    directory: self.settings.directory.clone(),
                    credentials_sealed: self.secret.seal(&json, &context),
                };
                store
                    .put(Collection::AcmeAccounts, &id, &record)
                    .await
                    .map_err(|e| format!("keeping the ACME account: {e}"))?;
                tracing::info!(directory = %self.settings.directory, "ACME account created");
                Ok(account)
            })
            .await
            .cloned()
    }
}

/// Why an order did not become ready, with each challenge's error.
async fn validation_failure(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        let identifier = authorization.identifier().to_string();
        for challenge in &authorization.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(format!("{identifier}: {problem}"));
            }
        }
    }
    if reasons.is_empty() {
        format!("the order ended {status:?}")
    } else {
        format!("validation failed: {}", reasons.join("; "))
    }
}

/// Whether `record` needs a new certificate for `domains` at `now`: it
/// has none from ACME yet (an uploaded one only serves until then), its
/// domains changed, or its renewal time came.
fn due(record: &CertificateRecord, domains: &[String], now: i64) -> bool {
    match &record.issued {
        Some(issued) if issued.by_acme => {
            let names: BTreeSet<&str> = issued.names.iter().map(String::as_str).collect();
            let wanted: BTreeSet<&str> = domains.iter().map(String::as_str).collect();
            names != wanted || now >= certificates::renews_from(issued)
        }
        _ => true,
    }
}

/// The domains of `distribution`'s live version (lowercase), if it exists.
pub async fn live_domains(
    store: &Store,
    distribution: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    let Some(found) = store
        .get::<Distribution>(Collection::Distributions, distribution)
        .await?
    else {
        return Ok(None);
    };
    let version = crate::distributions::version(store, distribution, found.live_version).await?;
    Ok(version.map(|v| crate::distributions::domains_of(&v)))
}

/// Why `domains` cannot have an ACME certificate: HTTP-01 cannot prove a
/// wildcard.
pub fn refuse_wildcards(domains: &[String]) -> Result<(), String> {
    match domains.iter().find(|d| d.starts_with("*.")) {
        Some(wildcard) => Err(format!(
            "`{wildcard}`: ACME certificates are validated over HTTP (HTTP-01), which cannot prove a wildcard; upload a certificate instead"
        )),
        None => Ok(()),
    }
}
