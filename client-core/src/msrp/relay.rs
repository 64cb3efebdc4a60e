//! Using an MSRP relay (RFC 4976): connect, AUTH with the SIP account's digest credentials,
//! and learn the Use-Path that goes in front of our own URI in `a=path`.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tandem_proto::auth::DigestClient;
use tandem_proto::msrp::message::EXPIRES;
use tandem_proto::msrp::report::auth_request;
use tandem_proto::msrp::{Message, MsrpUri, Response};
use tokio::time::{Instant, timeout_at};

use super::MsrpError;
use super::conn::Connection;
use crate::account::Account;

/// The authorization lifetime we ask for (relays shorten it to their maximum): a day, so that
/// sessions rarely outlive it.
const ASKED_EXPIRES: u32 = 86_400;
/// Time allowed for each AUTH transaction.
const AUTH_TIMEOUT: Duration = Duration::from_secs(15);

/// An authenticated connection to our relay.
#[derive(Debug)]
pub(crate) struct RelayBinding {
    /// The connection (the session's traffic goes over it).
    pub conn: Connection,
    /// The relay's path for us (goes before our URI in `a=path` and To-Path).
    pub use_path: Vec<MsrpUri>,
    /// Our own URI on this connection.
    pub local: MsrpUri,
    /// How long the relay keeps the path, in seconds (when it said).
    pub expires: Option<u32>,
    /// What refreshes the authorization before it expires.
    pub refresher: Refresher,
}

/// Refreshes our relay authorization (a new AUTH at three quarters of its lifetime).
#[derive(Debug)]
pub(crate) struct Refresher {
    relay: MsrpUri,
    local: MsrpUri,
    digest: Option<DigestClient>,
    use_path: Vec<MsrpUri>,
    expires: Option<u32>,
    granted: Instant,
}

impl Refresher {
    /// When the next AUTH is due (`None`: the relay gave no lifetime).
    pub fn due(&self) -> Option<Instant> {
        let secs = u64::from(self.expires?);
        Some(self.granted + Duration::from_secs((secs * 3 / 4).max(10)))
    }

    /// The refreshing AUTH: with credentials for `challenges` (a 401), else pre-emptive
    /// credentials from the last challenge when we have them.
    pub fn request(
        &mut self,
        rng: &mut StdRng,
        challenges: Option<&[tandem_proto::auth::Challenge]>,
    ) -> Result<tandem_proto::msrp::Request, MsrpError> {
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let uri = self.relay.to_string();
        let creds = match (self.digest.as_mut(), challenges) {
            (Some(d), Some(ch)) => Some(
                d.authorize(ch, "AUTH", &uri, &cnonce)
                    .map_err(|_| MsrpError::RelayAuth)?,
            ),
            (None, Some(_)) => return Err(MsrpError::RelayAuth),
            (Some(_), None) | (None, None) => None,
        };
        let mut request = auth_request(rng, &self.relay, &self.local, creds.as_ref());
        request.headers.push(EXPIRES, ASKED_EXPIRES.to_string());
        Ok(request)
    }

    /// Takes the relay's 200: a new lifetime (the path must stay the same).
    pub fn granted(&mut self, response: &Response) -> Result<(), MsrpError> {
        if let Ok(Some(path)) = response.headers.use_path()
            && path != self.use_path
        {
            // The peer knows only the old path, which lives until its own expiry; moving the
            // session would take a re-INVITE with the new path.
            tracing::warn!(
                old = %MsrpUri::format_list(&self.use_path),
                new = %MsrpUri::format_list(&path),
                "the MSRP relay issued a new path on refresh; the session keeps the old one"
            );
            return Ok(());
        }
        if let Some(d) = self.digest.as_mut() {
            d.accepted();
        }
        self.expires = response.headers.expires().ok().flatten().or(self.expires);
        self.granted = Instant::now();
        Ok(())
    }
}

/// Parses a relay URI (`msrps://host:port;tcp`).
pub fn parse_relay(text: &str) -> Result<MsrpUri, MsrpError> {
    let uri = MsrpUri::parse(text.trim())
        .map_err(|e| MsrpError::Config(format!("MSRP relay {text:?}: {e}")))?;
    if uri.session_id.is_some() {
        return Err(MsrpError::Config(format!(
            "MSRP relay {text:?} must not have a session id"
        )));
    }
    Ok(uri)
}

/// Waits for the response to transaction `tid`, skipping anything else.
async fn response_to(
    conn: &mut Connection,
    tid: &str,
    deadline: Instant,
) -> Result<Response, MsrpError> {
    loop {
        let msg = timeout_at(deadline, conn.recv())
            .await
            .map_err(|_| MsrpError::Relay("the relay did not answer AUTH".into()))?;
        match msg {
            Some(Ok(Message::Response(r))) if r.transaction_id == tid => return Ok(r),
            Some(Ok(other)) => {
                tracing::debug!(
                    tid = other.transaction_id(),
                    "ignoring an MSRP message during AUTH"
                );
            }
            Some(Err(reason)) => return Err(MsrpError::Relay(reason)),
            None => return Err(MsrpError::Relay("the relay connection closed".into())),
        }
    }
}

/// Connects to `relay` and authenticates as `account` (RFC 4976 §5.1); our URI gets `session_id`.
pub(crate) async fn bind(
    relay: &MsrpUri,
    account: &Account,
    tls: Option<&Arc<rustls::ClientConfig>>,
    session_id: &str,
) -> Result<RelayBinding, MsrpError> {
    let mut conn = Connection::connect(relay, tls).await?;
    let local = MsrpUri::new(
        relay.secure,
        &uri_host(conn.local.ip()),
        conn.local.port(),
        session_id,
    );
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut digest = account
        .password
        .as_deref()
        .map(|p| DigestClient::new(account.auth_username(), p));
    let mut credentials = None;
    for _ in 0..3 {
        let mut request = auth_request(&mut rng, relay, &local, credentials.as_ref());
        request.headers.push(EXPIRES, ASKED_EXPIRES.to_string());
        conn.send(request.to_bytes()).await?;
        let r = response_to(
            &mut conn,
            &request.transaction_id,
            Instant::now() + AUTH_TIMEOUT,
        )
        .await?;
        match r.status {
            200 => {
                let use_path = r
                    .headers
                    .use_path()
                    .map_err(|e| MsrpError::Relay(format!("bad Use-Path: {e}")))?
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| MsrpError::Relay("the relay's 200 has no Use-Path".into()))?;
                let expires = r.headers.expires().ok().flatten();
                if let Some(d) = digest.as_mut() {
                    d.accepted();
                }
                let refresher = Refresher {
                    relay: relay.clone(),
                    local: local.clone(),
                    digest,
                    use_path: use_path.clone(),
                    expires,
                    granted: Instant::now(),
                };
                return Ok(RelayBinding {
                    conn,
                    use_path,
                    local,
                    expires,
                    refresher,
                });
            }
            401 => {
                let Some(d) = digest.as_mut() else {
                    return Err(MsrpError::RelayAuth);
                };
                let challenges = r.headers.challenges();
                let cnonce = format!("{:016x}", rand::random::<u64>());
                let creds = d
                    .authorize(&challenges, "AUTH", &relay.to_string(), &cnonce)
                    .map_err(|_| MsrpError::RelayAuth)?;
                credentials = Some(creds);
            }
            423 => {
                return Err(MsrpError::Relay(
                    "the relay refused our AUTH lifetime (423)".into(),
                ));
            }
            status => {
                return Err(MsrpError::Relay(format!(
                    "the relay answered AUTH with {status}"
                )));
            }
        }
    }
    Err(MsrpError::RelayAuth)
}

/// An IP as a URI host (IPv6 in brackets).
pub(crate) fn uri_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    }
}
