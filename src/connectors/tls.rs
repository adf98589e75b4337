//! TLS of the connectors (rustls with ring everywhere; no OpenSSL, no aws-lc).
//!
//! A connector file's `tls` table:
//! ```toml
//! tls = { enable = true, verify = true, cacertfile = "ca.pem", certfile = "client.pem", keyfile = "client.key" }
//! ```
//! - `enable`: TLS on. The webhook decides by its URL's scheme; the redis, SQL and mqtt
//!   connectors use TLS only with `enable = true` (other TLS keys without it are refused).
//! - `verify` (default true): check the server's certificate chain against the trusted CAs
//!   and its name against the host of `server`. **`verify = false` accepts any certificate,
//!   so anyone on the path can impersonate the server and read the traffic, credentials
//!   included: use it only to try things out.** (PostgreSQL: `sslmode=require` instead of
//!   `verify-full`; MySQL: `REQUIRED` instead of `VERIFY_IDENTITY`.)
//! - `cacertfile`: PEM file of the CA certificates to trust. Without it: Mozilla's roots
//!   (the `webpki-roots` crate). With it, redis and mqtt trust only these CAs; the webhook
//!   and the SQL connectors trust them besides Mozilla's roots (reqwest and sqlx always
//!   load those).
//! - `certfile` and `keyfile` (both or neither): PEM client certificate chain and private
//!   key (PKCS#8, PKCS#1 or SEC1), for servers that ask for one (mutual TLS).
//!
//! The files are read and checked when the connector file loads: an unreadable file, a PEM
//! without a certificate or key, or a key not matching the certificate is refused with the
//! position of its key in the file. Relative paths are relative to the working directory.
//! The name checked (and sent as SNI) is the host of `server`.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::file::TlsSettings;

/// The PEM files of a connector's `tls`, read (and checked) when the file loads.
#[derive(Clone, PartialEq, Default)]
pub struct TlsFiles {
    /// `cacertfile`'s text.
    pub ca_pem: Option<Vec<u8>>,
    /// `certfile`'s text.
    pub cert_pem: Option<Vec<u8>>,
    /// `keyfile`'s text.
    pub key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key's bytes.
        f.debug_struct("TlsFiles")
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("cert_pem", &self.cert_pem.as_ref().map(Vec::len))
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A refused `tls` setting: which key, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub key: &'static str,
    pub message: String,
}

fn refused(key: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        key,
        message: message.into(),
    }
}

/// The certificates of a PEM text (an error when there is none).
pub fn certs(pem: &[u8], what: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in {}: {e}", what.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate (`BEGIN CERTIFICATE`) in {}", what.display()));
    }
    Ok(certs)
}

/// The private key of a PEM text (the first one).
pub fn key(pem: &[u8], what: &Path) -> Result<PrivateKeyDer<'static>, String> {
    match rustls_pemfile::private_key(&mut &pem[..]) {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(format!("no private key (PKCS#8, PKCS#1 or SEC1) in {}", what.display())),
        Err(e) => Err(format!("bad PEM in {}: {e}", what.display())),
    }
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, Refused> {
    std::fs::read(path).map_err(|e| refused(key, format!("cannot read {}: {e}", path.display())))
}

/// Reads and checks the files of `tls` (the file loader calls it; errors name the key).
pub fn read(tls: &TlsSettings) -> Result<TlsFiles, Refused> {
    let mut files = TlsFiles::default();
    if let Some(ca) = &tls.cacertfile {
        let pem = read_file("cacertfile", ca)?;
        let certs = certs(&pem, ca).map_err(|m| refused("cacertfile", m))?;
        let mut store = tokio_rustls::rustls::RootCertStore::empty();
        for c in certs {
            store
                .add(c)
                .map_err(|e| refused("cacertfile", format!("not a CA certificate in {}: {e}", ca.display())))?;
        }
        files.ca_pem = Some(pem);
    }
    match (&tls.certfile, &tls.keyfile) {
        (None, None) => {}
        (Some(_), None) => return Err(refused("certfile", "a `certfile` needs a `keyfile`")),
        (None, Some(_)) => return Err(refused("keyfile", "a `keyfile` needs a `certfile`")),
        (Some(cert), Some(keyfile)) => {
            let cert_pem = read_file("certfile", cert)?;
            let chain = certs(&cert_pem, cert).map_err(|m| refused("certfile", m))?;
            let key_pem = read_file("keyfile", keyfile)?;
            let k = key(&key_pem, keyfile).map_err(|m| refused("keyfile", m))?;
            // Does the key sign for the certificate? (rustls checks when the config is built.)
            tokio_rustls::rustls::ClientConfig::builder()
                .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                .with_client_auth_cert(chain, k)
                .map_err(|e| refused("keyfile", format!("{} with {}: {e}", keyfile.display(), cert.display())))?;
            files.cert_pem = Some(cert_pem);
            files.key_pem = Some(key_pem);
        }
    }
    Ok(files)
}

/// For the redis, SQL and mqtt connectors: is TLS on? Other TLS keys without
/// `enable = true` are refused (they would silently do nothing).
pub fn enabled(tls: &TlsSettings) -> Result<bool, Refused> {
    match tls.enable {
        Some(true) => Ok(true),
        Some(false) => Ok(false),
        None if tls.cacertfile.is_some() => Err(refused("tls", "`cacertfile` without `enable = true`")),
        None if tls.certfile.is_some() => Err(refused("tls", "`certfile` without `enable = true`")),
        None if !tls.verify => Err(refused("tls", "`verify = false` without `enable = true`")),
        None => Ok(false),
    }
}

/// The rustls 0.22 client config of the MQTT bridge (rumqttc 0.24 uses tokio-rustls 0.25).
pub fn mqtt_client_config(tls: &TlsSettings) -> Result<Arc<rumqttc::tokio_rustls::rustls::ClientConfig>, String> {
    use rumqttc::tokio_rustls::rustls;
    let builder = rustls::ClientConfig::builder();
    let builder = if tls.verify {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.files.ca_pem {
            Some(pem) => {
                for c in certs(pem, tls.cacertfile.as_deref().unwrap_or(Path::new("cacertfile")))? {
                    roots.add(c).map_err(|e| format!("not a CA certificate: {e}"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny022(rustls::crypto::ring::default_provider())))
    };
    let config = match (&tls.files.cert_pem, &tls.files.key_pem) {
        (Some(c), Some(k)) => {
            let chain = certs(c, tls.certfile.as_deref().unwrap_or(Path::new("certfile")))?;
            let key = key(k, tls.keyfile.as_deref().unwrap_or(Path::new("keyfile")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `verify = false` for rustls 0.22: any certificate is accepted (the handshake signatures
/// are still checked, so the peer holds the key of the certificate it shows).
#[derive(Debug)]
struct AcceptAny022(rumqttc::tokio_rustls::rustls::crypto::CryptoProvider);

impl rumqttc::tokio_rustls::rustls::client::danger::ServerCertVerifier for AcceptAny022 {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rumqttc::tokio_rustls::rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rumqttc::tokio_rustls::rustls::pki_types::UnixTime,
    ) -> Result<rumqttc::tokio_rustls::rustls::client::danger::ServerCertVerified, rumqttc::tokio_rustls::rustls::Error>
    {
        Ok(rumqttc::tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rumqttc::tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        rumqttc::tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        rumqttc::tokio_rustls::rustls::Error,
    > {
        rumqttc::tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rumqttc::tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        rumqttc::tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        rumqttc::tokio_rustls::rustls::Error,
    > {
        rumqttc::tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rumqttc::tokio_rustls::rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        let key_path = dir.join("client.key");
        std::fs::write(&key_path, ca.key_pair.serialize_pem()).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        let other_key = dir.join("other.key");
        std::fs::write(&other_key, other.key_pair.serialize_pem()).unwrap();
        (ca_path, key_path, other_key)
    }

    #[test]
    fn files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, key, other_key) = pem_files(dir.path());
        let mut t = TlsSettings {
            enable: Some(true),
            verify: true,
            cacertfile: Some(ca.clone()),
            ..TlsSettings::default()
        };
        let files = read(&t).unwrap();
        assert!(files.ca_pem.is_some());
        t.files = files;
        assert!(mqtt_client_config(&t).is_ok());
        t.verify = false;
        assert!(mqtt_client_config(&t).is_ok());

        t.cacertfile = Some(dir.path().join("missing.pem"));
        let e = read(&t).unwrap_err();
        assert_eq!(e.key, "cacertfile");
        assert!(e.message.contains("cannot read"), "{e:?}");
        t.cacertfile = Some(key.clone());
        let e = read(&t).unwrap_err();
        assert!(e.message.contains("no certificate"), "{e:?}");

        t.cacertfile = None;
        t.certfile = Some(ca.clone());
        assert_eq!(read(&t).unwrap_err().key, "certfile");
        t.keyfile = Some(other_key);
        let e = read(&t).unwrap_err();
        assert_eq!(e.key, "keyfile", "{e:?}");
        t.keyfile = Some(ca.clone());
        assert!(read(&t).unwrap_err().message.contains("no private key"));
        t.keyfile = Some(key);
        let files = read(&t).unwrap();
        assert!(files.key_pem.is_some());
        assert!(!format!("{files:?}").contains("PRIVATE"));
        t.files = files;
        assert!(mqtt_client_config(&t).is_ok());
    }

    #[test]
    fn every_connector_type_takes_a_client_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, key, _) = pem_files(dir.path());
        let tls = format!(
            "tls = {{ enable = true, cacertfile = \"{0}\", certfile = \"{0}\", keyfile = \"{1}\" }}\n",
            ca.display(),
            key.display()
        );
        let sql = "server = \"h\"\ndatabase = \"d\"\nusername = \"u\"\n";
        for (ty, rest) in [
            ("webhook", "url = \"https://h/\"\n"),
            ("redis", ""),
            ("postgres", sql),
            ("mysql", sql),
            ("mqtt", ""),
        ] {
            let text = format!("type = \"{ty}\"\n{rest}{tls}");
            let d = crate::connectors::file::load_str(Path::new("connectors/c.toml"), &text)
                .unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert_eq!(d.kind, ty);
        }
    }

    #[test]
    fn other_keys_need_enable() {
        let mut t = TlsSettings {
            verify: true,
            ..TlsSettings::default()
        };
        assert_eq!(enabled(&t), Ok(false));
        t.cacertfile = Some("ca.pem".into());
        assert!(enabled(&t).is_err());
        t.enable = Some(true);
        assert_eq!(enabled(&t), Ok(true));
        t.enable = Some(false);
        assert_eq!(enabled(&t), Ok(false));
    }
}
