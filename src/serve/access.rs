//! Who may do what: HTTP Basic auth against an htpasswd file of bcrypt
//! entries (what `htpasswd -B` writes), optional anonymous reads, and a
//! read-only mode; plus the TLS configuration (rustls) of `--tls-cert` /
//! `--tls-key`. Credentials are never logged; a verified credential is
//! remembered by its BLAKE3 hash only, so bcrypt runs once per client
//! rather than once per request.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

use crate::error::{Error, Result};

/// The users of an htpasswd file.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    /// Reads an htpasswd file; every entry must be `user:$2y$...` (bcrypt).
    pub fn load(path: &Path) -> Result<Htpasswd> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{}:{}", path.display(), n + 1);
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| Error::invalid(&at, "expected USER:HASH"))?;
            if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
                return Err(Error::invalid(
                    &at,
                    format!("the entry of {user:?} is not bcrypt (write it with `htpasswd -B`)"),
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err(Error::invalid(
                path.display().to_string(),
                "no users (an empty htpasswd file would lock everyone out)",
            ));
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether an `Authorization` header carries valid Basic credentials.
    /// Slow the first time for a credential (bcrypt): call off the async
    /// threads.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(encoded) = authorization.and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        }) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let key = *blake3::hash(&decoded).as_bytes();
        if self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return true;
        }
        let Ok(text) = std::str::from_utf8(&decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        let ok = self
            .users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false));
        if ok && let Ok(mut v) = self.verified.lock() {
            v.insert(key);
        }
        ok
    }
}

/// Loads a PEM certificate chain and private key for HTTPS.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<tokio_rustls::rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::invalid(
                cert.display().to_string(),
                format!("not a PEM certificate chain: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(Error::invalid(
            cert.display().to_string(),
            "no certificate in the file",
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::invalid(
            key.display().to_string(),
            format!("not a PEM private key: {e}"),
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("TLS", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            Error::invalid(
                cert.display().to_string(),
                format!("certificate and key do not fit: {e}"),
            )
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
