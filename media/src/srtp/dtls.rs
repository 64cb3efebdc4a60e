//! DTLS-SRTP (RFC 5763/5764) on `rtc-dtls`, sans-IO: certificates and fingerprints, the
//! `a=setup` role negotiation, and a handshake driver that exports SRTP keys.

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, HandshakeConfig, VerifyPeerCertificateFn};
use rtc_dtls::crypto::{Certificate, CryptoPrivateKey};
use rtc_dtls::crypto_provider::RTCCryptoProvider;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use sha2::Digest as _;

use super::{CryptoSuite, SrtpContext, SrtpError};

/// RFC 5764 §4.2 exporter label.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// The (fake) transport addresses handed to `rtc-dtls`: the caller owns the real socket and
/// talks to exactly one peer, so any two distinct addresses will do.
const LOCAL_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1));
const PEER_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2));

/// How long a handshake may take before [`DtlsSrtp`] gives up, unless the caller sets another
/// limit with [`DtlsSrtp::set_handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// When a client sends its first flight again, counted from its first transmission, while the
/// peer has not answered. An answerer that is `a=setup:active` sends its ClientHello together
/// with the SDP answer, so the hello usually reaches the offerer before the answer does and is
/// dropped there; these copies hide that without waiting for the RFC 6347 1 s retransmission
/// timer, which runs unchanged beside them. The copies are byte-identical (same record
/// sequence numbers), so a server that already has the hello discards them as replays.
const EARLY_RESENDS: [Duration; 2] = [Duration::from_millis(150), Duration::from_millis(400)];

/// Which side of the DTLS handshake we take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsRole {
    /// We send the ClientHello (`a=setup:active`).
    Client,
    /// We wait for the ClientHello (`a=setup:passive`).
    Server,
}

/// The `a=setup` attribute values (RFC 4145 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetupAttr {
    /// `active`: this side initiates (DTLS client).
    Active,
    /// `passive`: this side accepts (DTLS server).
    Passive,
    /// `actpass`: either; only valid in an offer.
    ActPass,
    /// `holdconn`: no connection for now.
    HoldConn,
}

impl SetupAttr {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SetupAttr::Active => "active",
            SetupAttr::Passive => "passive",
            SetupAttr::ActPass => "actpass",
            SetupAttr::HoldConn => "holdconn",
        }
    }
}

impl fmt::Display for SetupAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SetupAttr {
    type Err = SrtpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        [
            SetupAttr::Active,
            SetupAttr::Passive,
            SetupAttr::ActPass,
            SetupAttr::HoldConn,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| SrtpError::BadSetup(format!("unknown a=setup value {s:?}")))
    }
}

impl DtlsRole {
    /// The `a=setup` an offerer sends: always `actpass` (RFC 5763 §5).
    pub fn offer_setup() -> SetupAttr {
        SetupAttr::ActPass
    }

    /// The `a=setup` we answer with to an offer carrying `offered`: `active` when the offerer
    /// allows it (RFC 5763 §5: the answerer SHOULD be active), `passive` when it is active.
    pub fn answer_setup(offered: SetupAttr) -> Result<SetupAttr, SrtpError> {
        match offered {
            SetupAttr::ActPass | SetupAttr::Passive => Ok(SetupAttr::Active),
            SetupAttr::Active => Ok(SetupAttr::Passive),
            SetupAttr::HoldConn => Err(SrtpError::BadSetup(
                "the offer says holdconn: no DTLS association".into(),
            )),
        }
    }

    /// Our DTLS role from the offer's and the answer's `a=setup` values; `we_offered` says
    /// which of the two is ours. For an absent attribute pass RFC 4145 §4's default, `active`
    /// (RFC 5763 §5: `actpass` in every offer, `active` or `passive` in the answer).
    pub fn from_setup(
        offer: SetupAttr,
        answer: SetupAttr,
        we_offered: bool,
    ) -> Result<DtlsRole, SrtpError> {
        let answerer = match (offer, answer) {
            (SetupAttr::HoldConn, _) | (_, SetupAttr::HoldConn) => {
                return Err(SrtpError::BadSetup("holdconn: no DTLS association".into()));
            }
            (_, SetupAttr::ActPass) => {
                return Err(SrtpError::BadSetup(
                    "the answer says actpass, which only an offer may".into(),
                ));
            }
            (SetupAttr::Active, SetupAttr::Active) => {
                return Err(SrtpError::BadSetup("both sides want to be active".into()));
            }
            (SetupAttr::Passive, SetupAttr::Passive) => {
                return Err(SrtpError::BadSetup("both sides want to be passive".into()));
            }
            (_, SetupAttr::Active) => DtlsRole::Client,
            (_, SetupAttr::Passive) => DtlsRole::Server,
        };
        Ok(if we_offered {
            answerer.opposite()
        } else {
            answerer
        })
    }

    /// The other role.
    pub fn opposite(self) -> DtlsRole {
        match self {
            DtlsRole::Client => DtlsRole::Server,
            DtlsRole::Server => DtlsRole::Client,
        }
    }

    /// The `a=setup` value that announces this role in an answer.
    pub fn setup_attr(self) -> SetupAttr {
        match self {
            DtlsRole::Client => SetupAttr::Active,
            DtlsRole::Server => SetupAttr::Passive,
        }
    }
}

/// Hash functions allowed in `a=fingerprint` that we can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FingerprintHash {
    Sha256,
    Sha384,
    Sha512,
}

impl FingerprintHash {
    fn name(self) -> &'static str {
        match self {
            FingerprintHash::Sha256 => "sha-256",
            FingerprintHash::Sha384 => "sha-384",
            FingerprintHash::Sha512 => "sha-512",
        }
    }

    fn digest(self, der: &[u8]) -> Vec<u8> {
        match self {
            FingerprintHash::Sha256 => sha2::Sha256::digest(der).to_vec(),
            FingerprintHash::Sha384 => sha2::Sha384::digest(der).to_vec(),
            FingerprintHash::Sha512 => sha2::Sha512::digest(der).to_vec(),
        }
    }
}

/// A parsed `a=fingerprint` value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    hash: FingerprintHash,
    digest: Vec<u8>,
}

impl Fingerprint {
    fn parse(value: &str) -> Result<Self, SrtpError> {
        let bad = |why: &str| SrtpError::BadFingerprint(format!("{value}: {why}"));
        let mut parts = value.split_ascii_whitespace();
        let (Some(name), Some(hex_part), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected `HASH XX:XX:...`"));
        };
        let hash = match name.to_ascii_lowercase().as_str() {
            "sha-256" => FingerprintHash::Sha256,
            "sha-384" => FingerprintHash::Sha384,
            "sha-512" => FingerprintHash::Sha512,
            _ => return Err(bad("unsupported hash function")),
        };
        let digest = hex_part
            .split(':')
            .map(|byte| {
                if byte.len() == 2 {
                    u8::from_str_radix(byte, 16).map_err(|_| bad("not hex"))
                } else {
                    Err(bad("each byte must be two hex digits"))
                }
            })
            .collect::<Result<Vec<u8>, _>>()?;
        if digest.len() != hash.digest(&[]).len() {
            return Err(bad("wrong digest length"));
        }
        Ok(Fingerprint { hash, digest })
    }

    fn of(hash: FingerprintHash, der: &[u8]) -> Self {
        Fingerprint {
            hash,
            digest: hash.digest(der),
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hash.name())?;
        f.write_str(" ")?;
        for (i, b) in self.digest.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Our DTLS identity: a self-signed ECDSA P-256 certificate and its key.
#[derive(Clone)]
pub struct DtlsCertificate {
    cert: Certificate,
    /// PKCS#8 DER of the private key, for [`DtlsCertificate::to_pem`].
    key_der: Vec<u8>,
    fingerprint: String,
}

impl fmt::Debug for DtlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsCertificate")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn provider() -> Result<Arc<dyn RTCCryptoProvider>, SrtpError> {
    rtc_dtls::crypto_provider::default_provider().map_err(|e| SrtpError::Crypto(e.to_string()))
}

fn cert_error(e: impl fmt::Display) -> SrtpError {
    SrtpError::Certificate(e.to_string())
}

impl DtlsCertificate {
    /// Generates a fresh self-signed ECDSA P-256 certificate.
    pub fn generate() -> Result<Self, SrtpError> {
        let key_pair =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_error)?;
        let params =
            rcgen::CertificateParams::new(vec!["tandem".to_owned()]).map_err(cert_error)?;
        let cert = params.self_signed(&key_pair).map_err(cert_error)?;
        Self::from_parts(cert.der().to_vec(), &key_pair)
    }

    /// Loads a certificate and its PKCS#8 private key from PEM (`PRIVATE KEY` and
    /// `CERTIFICATE` blocks in any order, as written by [`DtlsCertificate::to_pem`] or OpenSSL).
    pub fn from_pem(pem: &str) -> Result<Self, SrtpError> {
        let blocks = pem_blocks(pem)?;
        let key_der = blocks
            .iter()
            .find(|(tag, _)| tag == "PRIVATE KEY" || tag == "PRIVATE_KEY")
            .map(|(_, der)| der.clone())
            .ok_or_else(|| cert_error("no PKCS#8 PRIVATE KEY block"))?;
        let cert_der = blocks
            .iter()
            .find(|(tag, _)| tag == "CERTIFICATE")
            .map(|(_, der)| der.clone())
            .ok_or_else(|| cert_error("no CERTIFICATE block"))?;
        let key_pair = rcgen::KeyPair::try_from(key_der.as_slice()).map_err(cert_error)?;
        Self::from_parts(cert_der, &key_pair)
    }

    /// The private key and the certificate as standard PEM, to keep one identity across runs.
    pub fn to_pem(&self) -> String {
        let mut out = pem_block("PRIVATE KEY", &self.key_der);
        if let Some(der) = self.cert.certificate.first() {
            out.push_str(&pem_block("CERTIFICATE", der.as_ref()));
        }
        out
    }

    fn from_parts(cert_der: Vec<u8>, key_pair: &rcgen::KeyPair) -> Result<Self, SrtpError> {
        let provider = provider()?;
        let private_key =
            CryptoPrivateKey::from_key_pair(key_pair, provider.crypto()).map_err(cert_error)?;
        let fingerprint = Fingerprint::of(FingerprintHash::Sha256, &cert_der).to_string();
        Ok(DtlsCertificate {
            cert: Certificate {
                certificate: vec![cert_der.into()],
                private_key,
            },
            key_der: key_pair.serialize_der(),
            fingerprint,
        })
    }

    /// The `a=fingerprint` value: `sha-256 AB:CD:...` (RFC 8122).
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

/// One PEM block with 64-column base64.
fn pem_block(tag: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}

/// The (tag, DER) blocks of a PEM text.
fn pem_blocks(pem: &str) -> Result<Vec<(String, Vec<u8>)>, SrtpError> {
    use base64::Engine as _;
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in pem.lines().map(str::trim) {
        if let Some(tag) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((tag.to_owned(), String::new()));
        } else if let Some(tag) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            let (open, body) = current
                .take()
                .ok_or_else(|| cert_error(format!("PEM END {tag} without BEGIN")))?;
            if open != tag {
                return Err(cert_error(format!("PEM BEGIN {open} ended by END {tag}")));
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|e| cert_error(format!("PEM {tag}: {e}")))?;
            blocks.push((open, der));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
        }
    }
    if blocks.is_empty() {
        return Err(cert_error("no PEM blocks"));
    }
    Ok(blocks)
}

/// What the peer-certificate callback saw, shared with the driver.
#[derive(Debug, Default)]
struct PeerCheck {
    /// The fingerprint of a certificate that did not match, if one was presented.
    mismatch: Option<String>,
}

/// A DTLS-SRTP association over one media flow, without I/O: feed it received DTLS datagrams
/// and timeouts, send what [`DtlsSrtp::poll_transmit`] returns, and take the keyed
/// [`SrtpContext`] from [`DtlsSrtp::poll_result`] once the handshake has finished.
pub struct DtlsSrtp {
    role: DtlsRole,
    endpoint: Endpoint,
    expected: Fingerprint,
    check: Arc<Mutex<PeerCheck>>,
    transmits: VecDeque<Vec<u8>>,
    result: Option<Result<SrtpContext, SrtpError>>,
    finished: bool,
    started: Instant,
    /// A client's first flight as sent, for the early resends.
    first_flight: Vec<Vec<u8>>,
    /// When the first flight is sent again (ascending) while the peer is silent.
    early_resends: VecDeque<Instant>,
    /// A DTLS datagram has arrived from the peer: no more early resends.
    heard_peer: bool,
    /// The whole handshake must be done by then. `rtc-dtls` can lose its retransmission timer
    /// (a handshake datagram that does not complete a flight disarms it), so this bound is what
    /// guarantees a result.
    deadline: Instant,
}

impl fmt::Debug for DtlsSrtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsSrtp")
            .field("role", &self.role)
            .field("expected", &self.expected.to_string())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl DtlsSrtp {
    /// Starts an association in `role` with our certificate, checking the peer against the
    /// `a=fingerprint` value from its SDP. A client sends its ClientHello at once.
    pub fn new(
        role: DtlsRole,
        cert: DtlsCertificate,
        remote_fingerprint: String,
    ) -> Result<Self, SrtpError> {
        Self::new_at(role, cert, remote_fingerprint, Instant::now())
    }

    /// As [`DtlsSrtp::new`], with the current time given by the caller (virtual clocks).
    pub fn new_at(
        role: DtlsRole,
        cert: DtlsCertificate,
        remote_fingerprint: String,
        now: Instant,
    ) -> Result<Self, SrtpError> {
        let expected = Fingerprint::parse(&remote_fingerprint)?;
        let check = Arc::new(Mutex::new(PeerCheck::default()));
        let config = Arc::new(handshake_config(role, cert, &expected, &check)?);
        let mut endpoint = match role {
            DtlsRole::Client => Endpoint::new(LOCAL_ADDR, TransportProtocol::UDP, None),
            DtlsRole::Server => {
                Endpoint::new(LOCAL_ADDR, TransportProtocol::UDP, Some(config.clone()))
            }
        };
        if role == DtlsRole::Client {
            endpoint
                .connect(now, PEER_ADDR, config, None)
                .map_err(|e| SrtpError::Dtls(e.to_string()))?;
        }
        let mut me = DtlsSrtp {
            role,
            endpoint,
            expected,
            check,
            transmits: VecDeque::new(),
            result: None,
            finished: false,
            started: now,
            first_flight: Vec::new(),
            early_resends: VecDeque::new(),
            heard_peer: false,
            deadline: now + DEFAULT_HANDSHAKE_TIMEOUT,
        };
        me.collect_transmits();
        if role == DtlsRole::Client {
            me.first_flight = me.transmits.iter().cloned().collect();
            me.early_resends = EARLY_RESENDS.iter().map(|d| now + *d).collect();
        }
        Ok(me)
    }

    /// Limits the handshake to `timeout` from when this association was created.
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.deadline = self.started + timeout;
    }

    /// Our role.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// True once the handshake has succeeded or failed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Feeds one received DTLS datagram (RFC 7983: first byte 20..=63).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if !matches!(datagram.first(), Some(20..=63)) || datagram.len() < 13 {
            tracing::debug!(len = datagram.len(), "ignoring a datagram that is not DTLS");
            return;
        }
        self.heard_peer = true;
        self.early_resends.clear();
        let read = self
            .endpoint
            .read(now, PEER_ADDR, None, BytesMut::from(datagram));
        self.collect_transmits();
        match read {
            Ok(events) => {
                for event in events {
                    match event {
                        EndpointEvent::HandshakeComplete => self.on_complete(),
                        EndpointEvent::PeerClosed => {
                            self.fail(SrtpError::Dtls("the peer closed the association".into()))
                        }
                        EndpointEvent::ApplicationData(_) => {}
                        _ => {}
                    }
                }
            }
            Err(e) => {
                // A datagram whose record lengths do not add up is dropped like any other
                // unparsable record (RFC 6347 §4.1.2.7); rtc-dtls drops bad records itself.
                let malformed = matches!(e, rtc_shared::error::Error::ErrInvalidPacketLength);
                if self.finished || malformed {
                    tracing::debug!(error = %e, "DTLS datagram dropped");
                } else {
                    let err = self.failure(e.to_string());
                    self.fail(err);
                }
            }
        }
    }

    /// Datagrams to send to the peer, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// When [`DtlsSrtp::handle_timeout`] is next due (a handshake retransmission or the
    /// handshake deadline, or an early resend of a client's first flight); `None` once the
    /// handshake has a result.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let mut next = match self.endpoint.poll_timeout(&PEER_ADDR) {
            Some(t) => t.min(self.deadline),
            None => self.deadline,
        };
        if let Some(&resend) = self.early_resends.front() {
            next = next.min(resend);
        }
        Some(next)
    }

    /// Retransmits the current flight when its timer has expired; gives up (an error result)
    /// when `rtc-dtls` has exhausted its retransmissions.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        if now >= self.deadline {
            self.fail(SrtpError::DtlsTimeout);
            return;
        }
        let mut resend = false;
        while self.early_resends.front().is_some_and(|t| *t <= now) {
            self.early_resends.pop_front();
            resend = true;
        }
        if resend && !self.heard_peer {
            tracing::debug!("DTLS peer silent: first flight sent again");
            self.transmits.extend(self.first_flight.iter().cloned());
        }
        let res = self.endpoint.handle_timeout(PEER_ADDR, now);
        self.collect_transmits();
        if let Err(e) = res {
            match e {
                // No association yet: a server still waiting for its first ClientHello.
                rtc_shared::error::Error::InvalidRemoteAddress(_) => {}
                _ => {
                    tracing::debug!(error = %e, "DTLS handshake gave up");
                    self.fail(SrtpError::DtlsTimeout);
                }
            }
        }
    }

    /// The outcome of the handshake, once: the keyed SRTP context or why it failed.
    pub fn poll_result(&mut self) -> Option<Result<SrtpContext, SrtpError>> {
        self.result.take()
    }

    fn collect_transmits(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            self.transmits.push_back(t.message.to_vec());
        }
    }

    fn fail(&mut self, err: SrtpError) {
        if !self.finished {
            self.finished = true;
            self.result = Some(Err(err));
        }
    }

    /// The error for a failed handshake, naming a fingerprint mismatch when that was the cause.
    fn failure(&self, detail: String) -> SrtpError {
        let mismatch = self.check.lock().ok().and_then(|c| c.mismatch.clone());
        match mismatch {
            Some(actual) => SrtpError::FingerprintMismatch {
                expected: self.expected.to_string(),
                actual,
            },
            None => SrtpError::Dtls(detail),
        }
    }

    fn on_complete(&mut self) {
        if self.finished {
            return;
        }
        let outcome = self.export();
        self.finished = true;
        self.result = Some(outcome);
    }

    fn export(&self) -> Result<SrtpContext, SrtpError> {
        let state = self
            .endpoint
            .get_connection_state(PEER_ADDR)
            .ok_or_else(|| SrtpError::Dtls("association vanished".into()))?;
        // Check the fingerprint again on the final state: the callback is the early check,
        // this one guarantees no handshake completes without it.
        let der = state
            .peer_certificates
            .first()
            .ok_or_else(|| SrtpError::Dtls("the peer presented no certificate".into()))?;
        let actual = Fingerprint::of(self.expected.hash, der);
        if actual.digest != self.expected.digest {
            return Err(SrtpError::FingerprintMismatch {
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let suite = match state.srtp_protection_profile() {
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => CryptoSuite::AesCm128HmacSha1_80,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => CryptoSuite::AesCm128HmacSha1_32,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => CryptoSuite::AeadAes128Gcm,
            _ => return Err(SrtpError::NoSrtpProfile),
        };
        let len = 2 * (suite.key_len() + suite.salt_len());
        let material = state
            .export_keying_material(EXPORTER_LABEL, &[], len)
            .map_err(|e| SrtpError::Dtls(format!("keying material export: {e}")))?;
        let keys = split_keying_material(suite, material.as_ref(), self.role)?;
        SrtpContext::from_keys(
            suite,
            keys.local_key,
            keys.local_salt,
            keys.remote_key,
            keys.remote_salt,
        )
    }
}

/// Master keys and salts for both directions, borrowed from the exported keying material.
#[derive(Debug, PartialEq, Eq)]
struct SplitKeys<'a> {
    local_key: &'a [u8],
    local_salt: &'a [u8],
    remote_key: &'a [u8],
    remote_salt: &'a [u8],
}

/// Splits RFC 5764 §4.2 keying material, `client_write_key | server_write_key |
/// client_write_salt | server_write_salt`, into our sending and the peer's sending keys.
fn split_keying_material(
    suite: CryptoSuite,
    material: &[u8],
    role: DtlsRole,
) -> Result<SplitKeys<'_>, SrtpError> {
    let (key_len, salt_len) = (suite.key_len(), suite.salt_len());
    if material.len() != 2 * (key_len + salt_len) {
        return Err(SrtpError::Dtls(format!(
            "keying material of {} bytes, {suite} needs {}",
            material.len(),
            2 * (key_len + salt_len)
        )));
    }
    let (client_key, rest) = material.split_at(key_len);
    let (server_key, rest) = rest.split_at(key_len);
    let (client_salt, server_salt) = rest.split_at(salt_len);
    Ok(match role {
        DtlsRole::Client => SplitKeys {
            local_key: client_key,
            local_salt: client_salt,
            remote_key: server_key,
            remote_salt: server_salt,
        },
        DtlsRole::Server => SplitKeys {
            local_key: server_key,
            local_salt: server_salt,
            remote_key: client_key,
            remote_salt: client_salt,
        },
    })
}

fn handshake_config(
    role: DtlsRole,
    cert: DtlsCertificate,
    expected: &Fingerprint,
    check: &Arc<Mutex<PeerCheck>>,
) -> Result<HandshakeConfig, SrtpError> {
    let expected = expected.clone();
    let check = Arc::clone(check);
    // Self-signed certificates: no CA chain, the SDP fingerprint is the trust anchor
    // (RFC 5763 §5), so chain verification is off and this callback decides.
    let verify: VerifyPeerCertificateFn = Arc::new(move |raw_certs, _chains| {
        let Some(der) = raw_certs.first() else {
            return Err(rtc_shared::error::Error::Other(
                "the peer presented no certificate".into(),
            ));
        };
        let actual = Fingerprint::of(expected.hash, der);
        let matched = actual.digest == expected.digest;
        if !matched && let Ok(mut c) = check.lock() {
            c.mismatch = Some(actual.to_string());
        }
        if matched {
            Ok(())
        } else {
            Err(rtc_shared::error::Error::Other(format!(
                "certificate fingerprint {actual} does not match the SDP's {expected}"
            )))
        }
    });
    let builder = ConfigBuilder::default()
        .with_crypto_provider(provider()?)
        .with_certificates(vec![cert.cert])
        .with_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
        ])
        .with_insecure_skip_verify(true)
        .with_verify_peer_certificate(Some(verify));
    let builder = match role {
        DtlsRole::Client => builder,
        // The server must see the client's certificate to check its fingerprint.
        DtlsRole::Server => builder.with_client_auth(ClientAuthType::RequireAnyClientCert),
    };
    builder
        .build(role == DtlsRole::Client, None)
        .map_err(|e| SrtpError::Dtls(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_srtp::config::Config;

    /// Our split agrees with rtc-srtp's own RFC 5764 splitter for both roles and every suite.
    #[test]
    fn keying_material_split_matches_rtc_srtp() {
        for suite in CryptoSuite::ALL {
            let len = 2 * (suite.key_len() + suite.salt_len());
            let material: Vec<u8> = (0..len as u8).collect();
            for role in [DtlsRole::Client, DtlsRole::Server] {
                let ours = split_keying_material(suite, &material, role).unwrap();
                let mut theirs = Config {
                    profile: suite.profile(),
                    ..Default::default()
                };
                theirs
                    .set_session_keys_from_keying_material(&material, role == DtlsRole::Client)
                    .unwrap();
                assert_eq!(ours.local_key, theirs.keys.local_master_key.as_slice());
                assert_eq!(ours.local_salt, theirs.keys.local_master_salt.as_slice());
                assert_eq!(ours.remote_key, theirs.keys.remote_master_key.as_slice());
                assert_eq!(ours.remote_salt, theirs.keys.remote_master_salt.as_slice());
            }
            // Client write key first, then server write key, then the two salts.
            let client = split_keying_material(suite, &material, DtlsRole::Client).unwrap();
            assert_eq!(client.local_key[0], 0);
            assert_eq!(client.remote_key[0] as usize, suite.key_len());
            assert_eq!(client.local_salt[0] as usize, 2 * suite.key_len());
            assert!(split_keying_material(suite, &material[1..], DtlsRole::Client).is_err());
        }
    }

    #[test]
    fn fingerprint_parses_and_formats() {
        let text = format!("sha-256 {}", vec!["AB"; 32].join(":"));
        let f = Fingerprint::parse(&text).unwrap();
        assert_eq!(f.to_string(), text);
        let lower = Fingerprint::parse(&text.to_ascii_lowercase().replace("sha", "SHA")).unwrap();
        assert_eq!(lower, f);
        assert!(Fingerprint::parse("sha-256 AB:CD").is_err());
        assert!(Fingerprint::parse("md5 AB:CD").is_err());
        assert!(Fingerprint::parse("sha-256").is_err());
        assert!(Fingerprint::parse(&format!("sha-256 {}", vec!["G1"; 32].join(":"))).is_err());
        assert!(Fingerprint::parse(&format!("sha-256 {}", vec!["ABC"; 32].join(":"))).is_err());
    }
}
