//! Accounts: an address-of-record with its credentials, proxy and transport.

use std::fmt;
use std::str::FromStr;

use tandem_media::srtp::SrtpPolicy;
use tandem_proto::Transport;
use tandem_proto::msg::Uri;

use crate::error::{Result, UaError};

/// Default registration expiry asked for, in seconds.
pub const DEFAULT_EXPIRES: u32 = 3600;

/// One SIP account: who we are (AoR), how we authenticate and where requests go.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The AoR user part (`alice` in `sip:alice@tandem.lab`).
    pub user: String,
    /// The AoR domain (`tandem.lab`, or an IP literal with an optional port).
    pub domain: String,
    /// The digest username, when it differs from `user`.
    pub auth_user: Option<String>,
    /// The digest password; without it a challenge fails with `AuthFailed`.
    pub password: Option<String>,
    /// The display name put in From headers.
    pub display_name: Option<String>,
    /// The outbound proxy / registrar every request is sent to (else RFC 3263 on the domain).
    pub proxy: Option<Uri>,
    /// The transport for requests of this account.
    pub transport: Transport,
    /// The registration expiry to ask for, in seconds.
    pub expires: u32,
    /// Media encryption policy: off, optional (best effort) or mandatory.
    pub srtp: SrtpPolicy,
    /// How SRTP keys are exchanged when `srtp` is not off: SDES `a=crypto` or DTLS-SRTP.
    pub srtp_keying: SrtpKeying,
    /// Codec preference, most preferred first (`opus`, `pcma`, `pcmu`, `g722`); empty: all
    /// supported codecs in the default order. Codecs not listed are not offered.
    pub codecs: Vec<String>,
    /// The MSRP relay (RFC 4976) for chat and file sessions: an `msrps://host:port;tcp` or
    /// `msrp://host:port;tcp` URI, authenticated with this account's digest credentials.
    pub msrp_relay: Option<String>,
    /// ICE on (default): offers carry candidates and REGISTER Contacts the `+sip.ice` tag (RFC 5768).
    pub ice: bool,
    /// The STUN server (`host:port`) for server-reflexive ICE candidates (default: the TURN
    /// server when one is set).
    pub stun: Option<String>,
    /// The TURN server and credentials for relay ICE candidates.
    pub turn: Option<crate::nat::turn::TurnConfig>,
    /// Which ICE candidates calls may use (`relay` forces media through TURN).
    pub ice_policy: crate::nat::ice::IcePolicy,
    /// RFC 5626 outbound on (default): the REGISTER Contact carries `+sip.instance`, `reg-id`
    /// and `;ob`, and the flow is kept alive and re-registered when it fails.
    pub outbound: bool,
    /// The `+sip.instance` URN (e.g. `urn:uuid:…`); default derived from the AoR and the machine.
    pub instance: Option<String>,
    /// Keep-alive interval override in seconds (default: the registrar's `Flow-Timer`, else 25 s).
    pub keepalive_secs: Option<u32>,
}

/// How SRTP keys are exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SrtpKeying {
    /// SDES: keys in `a=crypto` lines (RFC 4568), RTP/SAVP (or RTP/AVP when optional).
    #[default]
    Sdes,
    /// DTLS-SRTP (RFC 5763/5764): UDP/TLS/RTP/SAVP with `a=fingerprint` and `a=setup`.
    Dtls,
}

impl SrtpKeying {
    /// The lowercase name (`sdes`, `dtls`).
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpKeying::Sdes => "sdes",
            SrtpKeying::Dtls => "dtls",
        }
    }
}

impl fmt::Display for SrtpKeying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SrtpKeying {
    type Err = UaError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sdes" => Ok(SrtpKeying::Sdes),
            "dtls" | "dtls-srtp" => Ok(SrtpKeying::Dtls),
            other => Err(UaError::Config(format!(
                "unknown SRTP keying {other:?} (expected sdes or dtls)"
            ))),
        }
    }
}

impl Account {
    /// An account for `user@domain` over UDP with no password, proxy or display name, plain
    /// RTP and all supported codecs.
    pub fn new(user: impl Into<String>, domain: impl Into<String>) -> Self {
        Account {
            user: user.into(),
            domain: domain.into(),
            auth_user: None,
            password: None,
            display_name: None,
            proxy: None,
            transport: Transport::Udp,
            expires: DEFAULT_EXPIRES,
            srtp: SrtpPolicy::Off,
            srtp_keying: SrtpKeying::Sdes,
            codecs: Vec::new(),
            msrp_relay: None,
            ice: true,
            stun: None,
            turn: None,
            ice_policy: crate::nat::ice::IcePolicy::All,
            outbound: true,
            instance: None,
            keepalive_secs: None,
        }
    }

    /// The digest username: `auth_user`, else `user`.
    pub fn auth_username(&self) -> &str {
        self.auth_user.as_deref().unwrap_or(&self.user)
    }

    /// The address-of-record, `sip:user@domain` (`sips:` over TLS is not implied).
    pub fn aor(&self) -> Result<Uri> {
        if self.user.is_empty() {
            return Err(UaError::Config("the account has no user".into()));
        }
        parse_uri(&format!("sip:{}@{}", self.user, self.domain))
    }

    /// The registrar's URI, `sip:domain` (the Request-URI of REGISTER).
    pub fn registrar_uri(&self) -> Result<Uri> {
        if self.domain.is_empty() {
            return Err(UaError::Config("the account has no domain".into()));
        }
        parse_uri(&format!("sip:{}", self.domain))
    }

    /// Where a request with this Request-URI is sent: the proxy if set, else the URI itself,
    /// in both cases with our transport made explicit unless the URI names one.
    pub fn next_hop(&self, request_uri: &Uri) -> Uri {
        let mut hop = self.proxy.clone().unwrap_or_else(|| {
            let mut u = request_uri.clone();
            u.user = None;
            u.password = None;
            u.headers.clear();
            u
        });
        with_transport(&mut hop, self.transport);
        hop
    }

    /// Turns what a user typed as a call target (`bob`, `bob@host`, `sip:bob@host`, `tel:+1…`)
    /// into a URI, using the account's domain when no host is given.
    pub fn target_uri(&self, input: &str) -> Result<Uri> {
        let input = input.trim();
        if input.is_empty() {
            return Err(UaError::Config("empty target URI".into()));
        }
        let lower = input.to_ascii_lowercase();
        if lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("tel:") {
            return parse_uri(input);
        }
        if input.contains('@') {
            return parse_uri(&format!("sip:{input}"));
        }
        if self.domain.is_empty() {
            return Err(UaError::Config(format!(
                "target {input:?} has no host and the account has no domain"
            )));
        }
        parse_uri(&format!("sip:{input}@{}", self.domain))
    }
}

/// Parses `sip:…`/`sips:…` or a bare `host[:port]` (taken as `sip:host[:port]`) as a proxy URI.
pub fn parse_proxy(input: &str) -> Result<Uri> {
    let input = input.trim();
    let lower = input.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        parse_uri(input)
    } else {
        parse_uri(&format!("sip:{input}"))
    }
}

/// Parses a URI, mapping the parse error to a configuration error.
pub fn parse_uri(text: &str) -> Result<Uri> {
    Uri::parse(text).map_err(|e| UaError::Config(format!("invalid URI {text:?}: {e}")))
}

/// Adds `;transport=` for `transport` unless the URI already names one or is `sips:` over TLS,
/// so RFC 3263 resolution uses the account's transport rather than picking another one.
pub(crate) fn with_transport(uri: &mut Uri, transport: Transport) {
    if uri.transport_param().is_some() {
        return;
    }
    if transport == Transport::Tls && uri.scheme == tandem_proto::msg::Scheme::Sips {
        return;
    }
    uri.set_param("transport", Some(transport.uri_param()));
}
