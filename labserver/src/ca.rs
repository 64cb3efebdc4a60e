//! The lab certificate authority and the server certificate it issues.
//!
//! On first start [`LabCa::load_or_create`] makes a CA (`ca.pem`, `ca.key`) and a server
//! certificate signed by it (`server.pem`, `server.key`) in the given directory; later starts
//! reload them. The server certificate is re-issued by the same CA whenever it no longer
//! verifies for one of the wanted names (a new alias or local address) or is within
//! [`RENEW_BEFORE_DAYS`] of expiry. Private keys are written with mode 0600.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration as StdDuration, SystemTime};

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

/// File name of the CA certificate (PEM) in the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key (PEM, mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the server certificate (PEM) in the CA directory.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the server private key (PEM, mode 0600).
pub const SERVER_KEY_FILE: &str = "server.key";

/// How long a new CA certificate is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a new server certificate is valid.
pub const SERVER_VALIDITY_DAYS: i64 = 825;
/// A server certificate expiring sooner than this is re-issued at start.
pub const RENEW_BEFORE_DAYS: u64 = 30;

/// Errors from creating, loading or using the lab CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    InvalidPem {
        /// The file that could not be used.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Only one of the CA certificate and key exists: refuse to replace a CA that may be trusted.
    #[error(
        "{present} exists but {missing} does not; restore it, or delete both to create a new lab CA"
    )]
    IncompleteCa {
        /// The CA file that is present.
        present: PathBuf,
        /// The CA file that is missing.
        missing: PathBuf,
    },
    /// A host name cannot be put in a certificate.
    #[error("invalid host name for a certificate: {0:?}")]
    InvalidHostname(String),
    /// Generating a key or certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the certificate, key or configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The CA certificate could not be turned into a trust anchor.
    #[error("cannot build a certificate verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

/// The lab CA and the server certificate it issued, as loaded from (or written to) disk.
#[derive(Debug)]
pub struct LabCa {
    dir: PathBuf,
    ca_pem_path: PathBuf,
    ca_cert_pem: String,
    ca_cert_der: CertificateDer<'static>,
    server_cert_der: CertificateDer<'static>,
    server_key_der: PrivateKeyDer<'static>,
    server_names: Vec<String>,
}

impl LabCa {
    /// Loads the CA and server certificate from `dir`, creating whatever is missing; the
    /// server certificate covers `hostnames` plus `localhost`, 127.0.0.1, ::1 and every local
    /// IP address of the machine.
    pub fn load_or_create(dir: &Path, hostnames: &[String]) -> Result<LabCa, CaError> {
        create_private_dir(dir)?;
        let names = wanted_names(hostnames, &crate::config::local_ips());

        let ca_pem_path = dir.join(CA_CERT_FILE);
        let ca_key_path = dir.join(CA_KEY_FILE);
        let (ca_cert_pem, ca_key) = match (ca_pem_path.exists(), ca_key_path.exists()) {
            (true, true) => load_ca(&ca_pem_path, &ca_key_path)?,
            (false, false) => create_ca(&ca_pem_path, &ca_key_path, &names)?,
            (true, false) => {
                return Err(CaError::IncompleteCa {
                    present: ca_pem_path,
                    missing: ca_key_path,
                });
            }
            (false, true) => {
                return Err(CaError::IncompleteCa {
                    present: ca_key_path,
                    missing: ca_pem_path,
                });
            }
        };
        let ca_cert_der = first_cert(&ca_pem_path, ca_cert_pem.as_bytes())?;

        let server_pem_path = dir.join(SERVER_CERT_FILE);
        let server_key_path = dir.join(SERVER_KEY_FILE);
        let existing = load_server(&server_pem_path, &server_key_path)?;
        let (server_cert_der, server_key_der) = match existing {
            Some((cert, key)) if server_cert_is_current(&ca_cert_der, &cert, &key, &names) => {
                (cert, key)
            }
            _ => {
                tracing::info!(dir = %dir.display(), "issuing the lab server certificate");
                issue_server_cert(
                    &ca_cert_pem,
                    ca_key,
                    &names,
                    &server_pem_path,
                    &server_key_path,
                )?
            }
        };

        Ok(LabCa {
            dir: dir.to_path_buf(),
            ca_pem_path,
            ca_cert_pem,
            ca_cert_der,
            server_cert_der,
            server_key_der,
            server_names: names,
        })
    }

    /// Path of the CA certificate file (what softphones must trust).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The CA certificate in PEM form.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The CA certificate in DER form.
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_cert_der
    }

    /// The server certificate in DER form.
    pub fn server_cert_der(&self) -> &CertificateDer<'static> {
        &self.server_cert_der
    }

    /// The directory holding the CA and server files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The names (DNS names and IP addresses) the server certificate was checked or issued for.
    pub fn server_names(&self) -> &[String] {
        &self.server_names
    }

    /// A rustls server configuration presenting the server certificate (and the CA) with
    /// TLS 1.2 and 1.3 on the ring provider.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, CaError> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_cert_der.clone(), self.ca_cert_der.clone()],
                self.server_key_der.clone_key(),
            )?;
        Ok(Arc::new(config))
    }

    /// A rustls client configuration that trusts only the lab CA (for tests and the lab's
    /// own outgoing TLS).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, CaError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.root_store()?)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    fn root_store(&self) -> Result<RootCertStore, CaError> {
        root_store(&self.ca_cert_der)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(ca: &CertificateDer<'static>) -> Result<RootCertStore, CaError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    Ok(roots)
}

/// The names the server certificate must cover: the given host names, then `localhost`,
/// the loopback addresses and the local IPs, without duplicates (IPs compared as addresses,
/// DNS names case-insensitively), in that order.
fn wanted_names(hostnames: &[String], local_ips: &[IpAddr]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    let fixed = [
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let all = hostnames
        .iter()
        .cloned()
        .chain(fixed)
        .chain(local_ips.iter().map(IpAddr::to_string));
    for name in all {
        let name = name.trim().trim_start_matches('[').trim_end_matches(']');
        if name.is_empty() {
            continue;
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            if !ips.contains(&ip) {
                ips.push(ip);
                names.push(ip.to_string());
            }
        } else {
            let lower = name.to_ascii_lowercase();
            if !names.contains(&lower) {
                names.push(lower);
            }
        }
    }
    names
}

fn san_for(name: &str) -> Result<SanType, CaError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let ia5 = name
        .to_owned()
        .try_into()
        .map_err(|_| CaError::InvalidHostname(name.to_owned()))?;
    Ok(SanType::DnsName(ia5))
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    // Positive and non-zero (RFC 5280 §4.1.2.2).
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn create_ca(
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
) -> Result<(String, KeyPair), CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let label = names.first().map(String::as_str).unwrap_or("localhost");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tandem lab");
    dn.push(DnType::CommonName, format!("Tandem lab CA ({label})"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_public(cert_path, pem.as_bytes())?;
    tracing::info!(path = %cert_path.display(), "created a new lab CA");
    Ok((pem, key))
}

fn load_ca(cert_path: &Path, key_path: &Path) -> Result<(String, KeyPair), CaError> {
    let pem = read_string(cert_path)?;
    tighten_permissions(key_path)?;
    let key_pem = read_string(key_path)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::InvalidPem {
        path: key_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok((pem, key))
}

fn load_server(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>, CaError> {
    if !cert_path.exists() || !key_path.exists() {
        return Ok(None);
    }
    tighten_permissions(key_path)?;
    let cert_pem = read_string(cert_path)?;
    let key_pem = read_string(key_path)?;
    let Ok(cert) = first_cert(cert_path, cert_pem.as_bytes()) else {
        tracing::warn!(path = %cert_path.display(), "unreadable server certificate: re-issuing");
        return Ok(None);
    };
    let Ok(key) = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) else {
        tracing::warn!(path = %key_path.display(), "unreadable server key: re-issuing");
        return Ok(None);
    };
    Ok(Some((cert, key)))
}

/// Whether an existing server certificate was issued by this CA, matches its key, verifies
/// for every wanted name now, and will still verify [`RENEW_BEFORE_DAYS`] from now.
fn server_cert_is_current(
    ca: &CertificateDer<'static>,
    cert: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
    names: &[String],
) -> bool {
    let keys_match = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key.clone_key())
                .is_ok()
        })
        .unwrap_or(false);
    if !keys_match {
        tracing::info!("server key does not match its certificate");
        return false;
    }
    let Ok(roots) = root_store(ca) else {
        return false;
    };
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build()
    else {
        return false;
    };
    let now = SystemTime::now();
    let later = now + StdDuration::from_secs(RENEW_BEFORE_DAYS * 24 * 3600);
    for name in names {
        let Ok(server_name) = ServerName::try_from(name.clone()) else {
            continue;
        };
        for at in [now, later] {
            let Some(unix) = unix_time(at) else {
                return false;
            };
            if let Err(err) = verifier.verify_server_cert(cert, &[], &server_name, &[], unix) {
                tracing::info!(%name, %err, "server certificate needs re-issuing");
                return false;
            }
        }
    }
    true
}

fn unix_time(at: SystemTime) -> Option<UnixTime> {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(UnixTime::since_unix_epoch)
}

fn issue_server_cert(
    ca_cert_pem: &str,
    ca_key: KeyPair,
    names: &[String],
    cert_path: &Path,
    key_path: &Path,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), CaError> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tandem lab");
    dn.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("localhost"),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| san_for(n))
        .collect::<Result<Vec<_>, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SERVER_VALIDITY_DAYS);
    params.serial_number = Some(random_serial());
    let cert = params.signed_by(&key, &issuer)?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_public(cert_path, cert.pem().as_bytes())?;
    let key_der =
        PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| CaError::InvalidPem {
            path: key_path.to_path_buf(),
            reason: e.to_owned(),
        })?;
    Ok((cert.der().clone(), key_der))
}

fn first_cert(path: &Path, pem: &[u8]) -> Result<CertificateDer<'static>, CaError> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| CaError::InvalidPem {
            path: path.to_path_buf(),
            reason: "no certificate found".to_owned(),
        })?
        .map_err(|e| CaError::InvalidPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn read_string(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_err(dir))
}

/// Writes a file readable by its owner only, atomically (temporary file, then rename).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    write_atomic(path, contents, 0o600)
}

/// Writes a world-readable file atomically.
fn write_public(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    write_atomic(path, contents, 0o644)
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    #[cfg(unix)]
    {
        // The mode given to open() only applies to a new file and is masked by the umask.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp))?;
    }
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Makes an existing private key file owner-only if it is readable by others.
fn tighten_permissions(path: &Path) -> Result<(), CaError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "private key was readable by others: setting mode 0600");
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_names_dedupes_and_adds_loopback() {
        let local: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let names = wanted_names(
            &[
                "Tandem.Lab".to_owned(),
                "tandem.lab".to_owned(),
                "[::1]".to_owned(),
                String::new(),
            ],
            &local,
        );
        assert_eq!(
            names,
            vec!["tandem.lab", "::1", "localhost", "127.0.0.1", "192.0.2.7"]
        );
    }

    #[test]
    fn san_for_rejects_non_ascii() {
        assert!(matches!(san_for("10.0.0.1"), Ok(SanType::IpAddress(_))));
        assert!(matches!(san_for("lab.example"), Ok(SanType::DnsName(_))));
        assert!(san_for("läb.example").is_err());
    }
}
