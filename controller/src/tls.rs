//! TLS for the REST and gRPC listeners: the operator's certificate chain
//! and key (PEM files) and, for mutual TLS, the authority whose client
//! certificates edges must present on gRPC. The files are read again on
//! [`ListenerTls::reload`] (SIGHUP), and connections already open keep
//! the certificate they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Where the listeners' TLS material is.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Edges must present a client certificate issued by this authority
    /// (PEM) on gRPC; none: no client certificates are asked for.
    pub edge_client_ca: Option<PathBuf>,
}

/// The TLS configurations of the two listeners, swappable in place.
#[derive(Clone)]
pub struct ListenerTls {
    files: TlsFiles,
    /// REST: HTTP/2 or HTTP/1.1, no client certificate.
    pub rest: RustlsConfig,
    /// gRPC: HTTP/2, with the edges' client certificates when asked for.
    pub grpc: RustlsConfig,
}

impl ListenerTls {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let (rest, grpc) = configs(&files)?;
        Ok(ListenerTls {
            files,
            rest: RustlsConfig::from_config(rest),
            grpc: RustlsConfig::from_config(grpc),
        })
    }

    /// Reads the files again and uses them for new connections; on an
    /// error the previous certificates stay.
    pub fn reload(&self) -> anyhow::Result<()> {
        let (rest, grpc) = configs(&self.files)?;
        self.rest.reload_from_config(rest);
        self.grpc.reload_from_config(grpc);
        Ok(())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The REST and gRPC server configurations from `files`.
fn configs(files: &TlsFiles) -> anyhow::Result<(Arc<ServerConfig>, Arc<ServerConfig>)> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key in {}", files.key.display()))?;
    let builder = || {
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")
    };
    let mut rest = builder()?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .with_context(|| {
            format!(
                "{} and {} do not make a certificate and its key",
                files.cert.display(),
                files.key.display()
            )
        })?;
    rest.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let grpc_builder = match &files.edge_client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(ca)? {
                roots
                    .add(certificate)
                    .with_context(|| format!("{}: not a CA certificate", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .with_context(|| format!("{}: cannot verify clients with it", ca.display()))?;
            builder()?.with_client_cert_verifier(verifier)
        }
        None => builder()?.with_no_client_auth(),
    };
    let mut grpc = grpc_builder
        .with_single_cert(chain, key)
        .context("the gRPC listener's certificate")?;
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(rest), Arc::new(grpc)))
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{}: no certificate in it",
        path.display()
    );
    Ok(chain)
}
