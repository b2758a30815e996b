//! The TLS listener's certificate: loaded from the files named in the config and swapped on every
//! successful reload, so renewing a certificate needs no restart.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora_rustls::sign::CertifiedKey;
use pingora_rustls::{ClientHello, CryptoProvider, ResolvesServerCert};

/// Reads a PEM certificate chain and private key into a key rustls can serve.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    pingora_rustls::install_default_crypto_provider();
    let (certs, key_der) = pingora_rustls::load_certs_and_key_files(
        &cert.display().to_string(),
        &key.display().to_string(),
    )
    .map_err(|e| format!("cannot read the certificate or key: {e}"))?
    .ok_or_else(|| {
        format!(
            "no certificate in \"{}\" or no private key in \"{}\" (PEM expected)",
            cert.display(),
            key.display()
        )
    })?;
    let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider installed")?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("unsupported private key in \"{}\": {e}", key.display()))?;
    let ck = CertifiedKey::new(certs, signing_key);
    ck.keys_match()
        .map_err(|e| format!("the private key does not match the certificate: {e}"))?;
    Ok(Arc::new(ck))
}

/// Serves whatever certificate the active config loaded.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        CertResolver {
            current: ArcSwap::new(key),
        }
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
