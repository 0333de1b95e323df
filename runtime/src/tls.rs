//! TLS termination: the certificate for each connection is chosen by SNI
//! from the distributions' certificates (PEM files, or in controller mode
//! as the controller sent them), else the edge's own tier certificate
//! (`[tier_tls]`, for shields' and peers' clients); a configuration reload
//! swaps the certificates without touching open connections.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use parapet_config::{ConfigError, EdgeConfig};

/// Certificates by host name, as one configuration names them.
#[derive(Debug, Default, Clone)]
pub struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Parent of a `*.` domain → its certificate.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Certificate of the `*` distribution, for any other name.
    any: Option<Arc<CertifiedKey>>,
    /// The edge's own certificate (`[tier_tls]`): for handshakes without
    /// SNI, and names it covers that no distribution claims.
    tier: Option<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Loads the certificate of every distribution that has one, and the
    /// edge's own. Relative paths are resolved against `base_dir`.
    pub fn load(config: &EdgeConfig, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut certificates = Self::tier(config, base_dir)?;
        for (d, dist) in config.distributions.iter().enumerate() {
            let Some(tls) = &dist.tls else { continue };
            let key = certified_key(&base_dir.join(&tls.cert), &base_dir.join(&tls.key)).map_err(
                |reason| ConfigError {
                    file: None,
                    field: format!("distribution[{d}].tls"),
                    reason,
                },
            )?;
            certificates.add(&dist.domains, key);
        }
        Ok(certificates)
    }

    /// The edge's own certificate (`[tier_tls]`) only, if it has one.
    pub fn tier(config: &EdgeConfig, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut certificates = Certificates::default();
        if let (Some(cert), Some(key)) = (&config.tier_tls.cert, &config.tier_tls.key) {
            let key =
                certified_key(&base_dir.join(cert), &base_dir.join(key)).map_err(|reason| {
                    ConfigError {
                        file: None,
                        field: "tier_tls".into(),
                        reason,
                    }
                })?;
            certificates.tier = Some(key);
        }
        Ok(certificates)
    }

    /// Serves `key` to handshakes naming any of `domains` (`*.parent`
    /// wildcards and `*` included).
    pub fn add(&mut self, domains: &[String], key: Arc<CertifiedKey>) {
        for domain in domains {
            let domain = domain.to_ascii_lowercase();
            if domain == "*" {
                self.any = Some(key.clone());
                continue;
            }
            match domain.strip_prefix("*.") {
                Some(parent) => self.wildcard.insert(parent.to_string(), key.clone()),
                None => self.exact.insert(domain, key.clone()),
            };
        }
    }

    /// The certificate for a handshake naming `server_name` (SNI), or none.
    fn for_handshake(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        match server_name {
            Some(name) => self.find(name),
            None => self.tier.clone(),
        }
    }

    /// The certificate for `server_name`.
    fn find(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        self.exact
            .get(&name)
            .cloned()
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent).cloned()
            })
            .or_else(|| self.tier.clone().filter(|tier| covers(tier, &name)))
            .or_else(|| self.any.clone())
    }
}

/// Whether `certified`'s leaf certificate is valid for `name`.
fn covers(certified: &CertifiedKey, name: &str) -> bool {
    let (Some(leaf), Ok(name)) = (
        certified.cert.first(),
        rustls::pki_types::ServerName::try_from(name),
    ) else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// The resolver the TLS listeners keep for their lifetime; reloads replace
/// what it resolves from.
#[derive(Debug)]
pub struct SniResolver {
    certificates: ArcSwap<Certificates>,
}

impl SniResolver {
    /// A resolver over `certificates`.
    pub fn new(certificates: Certificates) -> Arc<Self> {
        Arc::new(SniResolver {
            certificates: ArcSwap::from_pointee(certificates),
        })
    }

    /// Serves `certificates` to new handshakes from now on.
    pub fn replace(&self, certificates: Certificates) {
        self.certificates.store(Arc::new(certificates));
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A name nothing here covers: the handshake fails
        // (`unrecognised_name`), as there is no right certificate to show.
        self.certificates.load().for_handshake(hello.server_name())
    }
}

/// A rustls server configuration resolving certificates with `resolver`,
/// offering h2 and HTTP/1.1 by ALPN.
pub fn server_config(resolver: Arc<SniResolver>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default protocol versions")
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Reads the certificates of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs = read_certs(cert)?;
    let pem = read(key)?;
    with_key(certs, &pem).map_err(|e| match e {
        KeyError::Unreadable(why) => format!("{}: {why}", key.display()),
        KeyError::Mismatch(why) => {
            format!("{} does not match {}: {why}", key.display(), cert.display())
        }
    })
}

/// A certificate chain and key given as PEM (controller mode).
pub fn certified_key_from_pem(chain: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let certs = rustls_pemfile::certs(&mut &chain[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the chain is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the chain".into());
    }
    with_key(certs, key).map_err(|e| match e {
        KeyError::Unreadable(why) => format!("the private key: {why}"),
        KeyError::Mismatch(why) => format!("the private key does not match: {why}"),
    })
}

enum KeyError {
    Unreadable(String),
    Mismatch(String),
}

fn with_key(
    certs: Vec<CertificateDer<'static>>,
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, KeyError> {
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| KeyError::Unreadable(e.to_string()))?
        .ok_or_else(|| KeyError::Unreadable("no private key in it".into()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| KeyError::Unreadable(e.to_string()))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|e| KeyError::Mismatch(e.to_string()))?;
    Ok(Arc::new(certified))
}
