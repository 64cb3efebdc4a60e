//! Which TLS servers the app trusts, and what a refused server presented.
//!
//! [`TrustStore`]: the system's root certificates plus the CAs the user chose to trust ("trust
//! this lab CA"), kept as PEM in `trusted-cas.pem` in the data folder. Every user agent gets a
//! [`Witness`]: a certificate verifier over the store that remembers the chain of the last
//! server it refused and why, so a failure can show the certificate (subject, issuer, validity,
//! fingerprint) and offer to trust the CA that issued it. Trusting a CA takes effect at once for
//! every user agent: the witnesses verify against the store's current roots.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::explain::failure;
use crate::state::{AppState, lock};
use crate::types::{
    CertificateDetails, CertificateProblem, CertificateTrouble, Failure, FailureKind,
};

/// The file of the CAs the user trusts, in the data folder.
pub const TRUSTED_CAS_FILE: &str = "trusted-cas.pem";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_failure(message: impl Into<String>, detail: impl std::fmt::Display) -> Failure {
    failure(FailureKind::Tls, message, detail.to_string())
}

/// The system's roots and the CAs the user trusts; shared by every user agent of the app.
pub struct TrustStore {
    path: PathBuf,
    system: Vec<CertificateDer<'static>>,
    extra: Mutex<Vec<CertificateDer<'static>>>,
    verifier: RwLock<Option<Arc<WebPkiServerVerifier>>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("path", &self.path)
            .field("system", &self.system.len())
            .field("extra", &lock(&self.extra).len())
            .finish()
    }
}

/// The webpki verifier over the system roots and the user's CAs; `None` when there is no root
/// at all (then every server is refused as untrusted).
fn build_verifier(
    system: &[CertificateDer<'static>],
    extra: &[CertificateDer<'static>],
) -> Result<Option<Arc<WebPkiServerVerifier>>, Failure> {
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(system.iter().cloned());
    if ignored > 0 {
        tracing::debug!(ignored, "unusable system root certificates");
    }
    for ca in extra {
        roots
            .add(ca.clone())
            .map_err(|e| tls_failure("A trusted CA certificate is not usable.", e))?;
    }
    if roots.is_empty() {
        return Ok(None);
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map(Some)
        .map_err(|e| tls_failure("The trusted certificates are not usable.", e))
}

impl TrustStore {
    /// Loads the system's roots and the user's trusted CAs from `dir/trusted-cas.pem`.
    pub fn open(dir: &Path) -> Result<TrustStore, Failure> {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system root certificate could not be loaded");
        }
        Self::with_system_roots(dir, found.certs)
    }

    /// Like [`TrustStore::open`] with the given system roots (tests use none).
    pub fn with_system_roots(
        dir: &Path,
        system: Vec<CertificateDer<'static>>,
    ) -> Result<TrustStore, Failure> {
        let path = dir.join(TRUSTED_CAS_FILE);
        let extra = match std::fs::read(&path) {
            Ok(bytes) => CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    tls_failure(
                        format!("The trusted CA file {} is damaged.", path.display()),
                        e,
                    )
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(tls_failure(
                    format!("The trusted CA file {} cannot be read.", path.display()),
                    e,
                ));
            }
        };
        let verifier = build_verifier(&system, &extra)?;
        Ok(TrustStore {
            path,
            system,
            extra: Mutex::new(extra),
            verifier: RwLock::new(verifier),
            provider: provider(),
        })
    }

    /// Trusts the CA certificate `pem` from now on (saved to the data folder). Refuses
    /// certificates that are not CAs. Returns the CA's details.
    pub fn trust(&self, pem: &str) -> Result<CertificateDetails, Failure> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| tls_failure("That is not a PEM certificate.", e))?;
        let details = describe(&der)
            .ok_or_else(|| tls_failure("That certificate cannot be read.", "x509"))?;
        if !details.is_ca {
            return Err(tls_failure(
                "That certificate is a server's, not a certificate authority's: it cannot be trusted as a CA.",
                &details.subject,
            ));
        }
        let mut extra = lock(&self.extra);
        if extra.iter().any(|c| c.as_ref() == der.as_ref()) {
            return Ok(details);
        }
        let mut candidate = extra.clone();
        candidate.push(der.clone().into_owned());
        let verifier = build_verifier(&self.system, &candidate)?;
        let text: String = candidate.iter().map(|c| to_pem(c)).collect();
        crate::persist::write_atomic(&self.path, text.as_bytes())?;
        *extra = candidate;
        *self
            .verifier
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = verifier;
        Ok(details)
    }

    /// The CAs the user trusts (not the system's).
    pub fn trusted(&self) -> Vec<CertificateDetails> {
        lock(&self.extra).iter().filter_map(describe).collect()
    }

    fn verifier(&self) -> Option<Arc<WebPkiServerVerifier>> {
        self.verifier
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A new witness (certificate verifier that remembers refusals) and the rustls client
    /// configuration using it.
    pub fn client(self: &Arc<Self>) -> Result<(Arc<Witness>, Arc<ClientConfig>), Failure> {
        let witness = Arc::new(Witness {
            store: self.clone(),
            refused: Mutex::new(None),
        });
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_failure("TLS is not available.", e))?
            .dangerous()
            .with_custom_certificate_verifier(witness.clone())
            .with_no_client_auth();
        Ok((witness, Arc::new(config)))
    }
}

fn to_pem(der: &CertificateDer<'_>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.as_ref().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (n >> (18 - 6 * i)) & 63;
                b64.push(char::from(ALPHABET[index as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// What a refused server presented, and why it was refused.
#[derive(Debug, Clone)]
struct Refusal {
    server: String,
    chain: Vec<CertificateDer<'static>>,
    error: rustls::Error,
}

/// A certificate verifier over the [`TrustStore`] that remembers the last server it refused.
pub struct Witness {
    store: Arc<TrustStore>,
    refused: Mutex<Option<Refusal>>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").finish_non_exhaustive()
    }
}

impl Witness {
    /// Forgets the last refusal (before a new attempt).
    pub fn clear(&self) {
        lock(&self.refused).take();
    }

    /// What the last refused server presented, explained; `None` when nothing was refused
    /// since the last [`Witness::clear`].
    pub fn take_problem(&self) -> Option<CertificateProblem> {
        let refusal = lock(&self.refused).take()?;
        Some(problem_of(&refusal))
    }
}

impl ServerCertVerifier for Witness {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = match self.store.verifier() {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        if let Err(error) = &result {
            let chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
            *lock(&self.refused) = Some(Refusal {
                server: server_name.to_str().into_owned(),
                chain,
                error: error.clone(),
            });
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.store.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.store.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Subject, issuer, validity and fingerprint of a DER certificate (`None` when unreadable).
pub fn describe(der: &CertificateDer<'_>) -> Option<CertificateDetails> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let validity = cert.validity();
    let fingerprint = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let subject = cert.subject().to_string();
    let issuer = cert.issuer().to_string();
    Some(CertificateDetails {
        self_signed: subject == issuer,
        subject,
        issuer,
        not_before: validity.not_before.to_datetime().date().to_string(),
        not_after: validity.not_after.to_datetime().date().to_string(),
        sha256: fingerprint,
        is_ca: cert.is_ca(),
        pem: to_pem(der),
    })
}

fn problem_of(refusal: &Refusal) -> CertificateProblem {
    let described: Vec<CertificateDetails> = refusal.chain.iter().filter_map(describe).collect();
    let trouble = match &refusal.error {
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                CertificateTrouble::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                CertificateTrouble::NotYetValid
            }
            CertificateError::UnknownIssuer => CertificateTrouble::Untrusted,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                CertificateTrouble::WrongName
            }
            _ => CertificateTrouble::Other,
        },
        _ => CertificateTrouble::Other,
    };
    // The CA the user may trust: the chain's CA certificate (the lab sends its CA after the
    // server certificate), or a self-signed server certificate… which is not a CA, so none.
    let ca = if trouble == CertificateTrouble::Untrusted {
        described.iter().skip(1).rev().find(|c| c.is_ca).cloned()
    } else {
        None
    };
    CertificateProblem {
        trouble,
        server: refusal.server.clone(),
        error: refusal.error.to_string(),
        certificate: described.first().cloned(),
        ca,
    }
}

/// The words for a refused certificate, for the failure's message.
pub fn explain_problem(problem: &CertificateProblem, server: &str) -> String {
    let who = problem
        .certificate
        .as_ref()
        .map(|c| format!(" (\"{}\", issued by \"{}\")", c.subject, c.issuer))
        .unwrap_or_default();
    match problem.trouble {
        CertificateTrouble::Expired => format!(
            "The secure connection to {server} failed: its certificate{who} expired on {}. The server's administrator must renew it.",
            problem
                .certificate
                .as_ref()
                .map(|c| c.not_after.as_str())
                .unwrap_or("an earlier date")
        ),
        CertificateTrouble::NotYetValid => format!(
            "The secure connection to {server} failed: its certificate{who} is only valid from {}. Check this computer's clock.",
            problem
                .certificate
                .as_ref()
                .map(|c| c.not_before.as_str())
                .unwrap_or("a later date")
        ),
        CertificateTrouble::Untrusted if problem.ca.is_some() => format!(
            "The secure connection to {server} failed: its certificate{who} comes from a certificate authority this app does not trust. If this is your lab server, trust its lab CA."
        ),
        CertificateTrouble::Untrusted => format!(
            "The secure connection to {server} failed: its certificate{who} comes from a certificate authority this app does not trust, and the server did not send that authority's certificate."
        ),
        CertificateTrouble::WrongName => format!(
            "The secure connection to {server} failed: its certificate{who} is for another name ({}). Check the server address.",
            problem.server
        ),
        CertificateTrouble::Other => format!(
            "The secure connection to {server} failed: its certificate{who} was refused ({}).",
            problem.error
        ),
    }
}

impl AppState {
    /// Command `trust_ca`: trusts a CA certificate (PEM) from now on, for every account
    /// ("trust this lab CA"). Returns its details.
    pub fn trust_ca(&self, pem: &str) -> Result<CertificateDetails, Failure> {
        self.inner.trust.trust(pem)
    }

    /// Command `list_trusted_cas`: the CAs the user chose to trust.
    pub fn list_trusted_cas(&self) -> Vec<CertificateDetails> {
        self.inner.trust.trusted()
    }
}
