//! Sending requests and answering digest challenges (RFC 3261 §22, RFC 7616, RFC 8760).

use std::sync::Arc;

use tandem_net::{NetError, Target, TxOutcome};
use tandem_proto::auth::{AuthError, Credentials, DigestClient, parse_challenges};
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response, Uri};

use crate::account::Account;
use crate::error::{Result, UaError};
use crate::ua::Shared;

/// How many challenges one request may get answered before we give up (loops, stale storms).
const MAX_CHALLENGES: u32 = 6;

/// Which header a set of credentials goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthHeader {
    /// `Authorization` (answering a 401 `WWW-Authenticate`).
    Www,
    /// `Proxy-Authorization` (answering a 407 `Proxy-Authenticate`).
    Proxy,
}

/// Digest state of one account for one request stream (a registration, a call).
#[derive(Debug, Clone)]
pub(crate) struct AuthSession {
    digest: Option<DigestClient>,
    creds: Vec<(AuthHeader, Credentials)>,
}

impl AuthSession {
    /// A session answering challenges with the account's credentials (none without password).
    pub fn for_account(account: &Account) -> Self {
        AuthSession {
            digest: account
                .password
                .as_deref()
                .map(|p| DigestClient::new(account.auth_username(), p)),
            creds: Vec::new(),
        }
    }

    /// Replaces the request's Authorization/Proxy-Authorization headers with our credentials.
    pub fn apply(&self, request: &mut Request) {
        request.headers.remove(&HeaderName::Authorization);
        request.headers.remove(&HeaderName::ProxyAuthorization);
        for (kind, creds) in &self.creds {
            let name = match kind {
                AuthHeader::Www => HeaderName::Authorization,
                AuthHeader::Proxy => HeaderName::ProxyAuthorization,
            };
            request.headers.push(name, creds.to_string());
        }
    }

    /// Refreshes the stored credentials for a new request (next nonce count, same nonce):
    /// pre-emptive authentication of refreshes, so they need no extra round trip.
    pub fn preempt(&mut self, shared: &Shared, method: &str, uri: &str) {
        let Some(digest) = self.digest.as_mut() else {
            return;
        };
        let mut refreshed = Vec::with_capacity(self.creds.len());
        for (kind, old) in &self.creds {
            let cnonce = shared.token(16);
            if let Some(c) = digest.preemptive(&old.realm, method, uri, &cnonce) {
                refreshed.push((*kind, c));
            }
        }
        self.creds = refreshed;
    }

    /// Forgets stored credentials (e.g. for a request to another target).
    pub fn clear(&mut self) {
        self.creds.clear();
    }

    /// Answers the challenges of a 401/407 for the request `method uri`.
    pub fn on_challenge(
        &mut self,
        shared: &Shared,
        response: &Response,
        method: &str,
        uri: &str,
    ) -> Result<()> {
        let (kind, header) = if response.status == 407 {
            (AuthHeader::Proxy, HeaderName::ProxyAuthenticate)
        } else {
            (AuthHeader::Www, HeaderName::WwwAuthenticate)
        };
        let values: Vec<String> = response
            .headers
            .get_all(&header)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let challenges = parse_challenges(values.iter().map(String::as_str));
        let realm = challenges.first().map(|c| c.realm.clone());
        let Some(digest) = self.digest.as_mut() else {
            tracing::warn!(
                "challenged ({}) but no password is configured",
                response.status
            );
            return Err(UaError::AuthFailed { realm });
        };
        if challenges.is_empty() {
            return Err(UaError::Protocol(format!(
                "{} without a usable digest challenge",
                response.status
            )));
        }
        let cnonce = shared.token(16);
        let answered = digest
            .authorize_all(&challenges, method, uri, &cnonce, b"")
            .map_err(|e| match e {
                AuthError::CredentialsRejected { realm } => {
                    UaError::AuthFailed { realm: Some(realm) }
                }
                AuthError::NoSupportedChallenge => UaError::Protocol(format!(
                    "{} offers no digest challenge we support",
                    response.status
                )),
                other => UaError::Protocol(format!("cannot answer the challenge: {other}")),
            })?;
        for creds in answered {
            self.creds.retain(|(_, c)| c.realm != creds.realm);
            self.creds.push((kind, creds));
        }
        Ok(())
    }

    /// Tells the digest client our credentials were accepted (a non-401/407 final response).
    pub fn accepted(&mut self) {
        if let Some(d) = self.digest.as_mut() {
            d.accepted();
        }
    }
}

/// Maps a network error to a user-agent error.
pub(crate) fn net_error(e: NetError) -> UaError {
    match e {
        NetError::Closed => UaError::Closed,
        other => UaError::Network(other.to_string()),
    }
}

/// Increments the request's CSeq number (same method); returns the new number.
pub(crate) fn bump_cseq(request: &mut Request) -> Result<u32> {
    let cseq = request
        .headers
        .cseq()
        .map_err(|e| UaError::Protocol(format!("bad CSeq in our own request: {e}")))?;
    let next = cseq.seq.wrapping_add(1).max(1);
    request
        .headers
        .set(HeaderName::CSeq, format!("{next} {}", cseq.method));
    Ok(next)
}

/// A dialog-creating request from `account` to `target`: Max-Forwards, To, From (with
/// `local_tag`), Call-ID, CSeq 1 and `contact` when given; the caller adds the rest.
pub(crate) fn initial_request(
    method: Method,
    target: &Uri,
    account: &Account,
    aor: &Uri,
    local_tag: &str,
    call_id: &str,
    contact: Option<&str>,
) -> Request {
    let cseq = format!("1 {method}");
    let mut req = Request::new(method, target.clone());
    let h = &mut req.headers;
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::To, format!("<{target}>"));
    h.push(
        HeaderName::From,
        format!(
            "{};tag={local_tag}",
            name_addr_header(account.display_name.as_deref(), aor)
        ),
    );
    h.push(HeaderName::CallId, call_id.to_string());
    h.push(HeaderName::CSeq, cseq);
    if let Some(contact) = contact {
        h.push(HeaderName::Contact, contact.to_string());
    }
    req
}

/// `Ok` for a 2xx `response`, its status and reason as a rejection otherwise.
pub(crate) fn expect_2xx(response: &Response) -> Result<()> {
    if (200..300).contains(&response.status) {
        Ok(())
    } else {
        Err(UaError::rejected(response.status, response.reason.clone()))
    }
}

/// `"Display" <uri>` (or `<uri>`), quoting and escaping the display name.
pub(crate) fn name_addr_header(display: Option<&str>, uri: &Uri) -> String {
    match display.filter(|d| !d.is_empty()) {
        Some(d) => {
            let escaped: String = d
                .chars()
                .filter(|c| *c != '\r' && *c != '\n')
                .flat_map(|c| match c {
                    '"' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            format!("\"{escaped}\" <{uri}>")
        }
        None => format!("<{uri}>"),
    }
}

/// Adds our tag to a response's To header (RFC 3261 §8.2.6.2).
pub(crate) fn add_to_tag(response: &mut Response, tag: &str) {
    if let Ok(mut to) = response.headers.to()
        && to.tag().is_none()
    {
        to.set_tag(tag);
        response.headers.set(HeaderName::To, to.to_string());
    }
}

/// Sends a non-INVITE request and waits for its final response, answering 401/407
/// with `auth` (new CSeq each time). A 401/407 without `auth` fails with `AuthFailed`.
pub(crate) async fn send_non_invite(
    shared: &Arc<Shared>,
    request: Request,
    target: Target,
    auth: Option<&mut AuthSession>,
) -> Result<Response> {
    send_non_invite_on(shared, request, target, auth)
        .await
        .map(|(r, _)| r)
}

/// Like [`send_non_invite`], also returning the flow the final response came over (the
/// registration flow of RFC 5626).
pub(crate) async fn send_non_invite_on(
    shared: &Arc<Shared>,
    mut request: Request,
    target: Target,
    mut auth: Option<&mut AuthSession>,
) -> Result<(Response, Option<tandem_proto::Flow>)> {
    let method = request.method.to_string();
    let uri = request.uri.to_string();
    let mut challenges = 0;
    loop {
        if let Some(a) = auth.as_deref() {
            a.apply(&mut request);
        }
        let (response, flow) = final_response(shared, request.clone(), target.clone()).await?;
        if response.status == 401 || response.status == 407 {
            challenges += 1;
            let Some(a) = auth.as_deref_mut() else {
                return Err(UaError::AuthFailed { realm: None });
            };
            if challenges > MAX_CHALLENGES {
                return Err(UaError::AuthFailed { realm: None });
            }
            a.on_challenge(shared, &response, &method, &uri)?;
            bump_cseq(&mut request)?;
            continue;
        }
        if let Some(a) = auth.as_deref_mut() {
            a.accepted();
        }
        return Ok((response, flow));
    }
}

/// Logs a response a client transaction delivered.
pub(crate) fn log_outcome(outcome: &Option<TxOutcome>, flow: Option<tandem_proto::Flow>) {
    match outcome {
        Some(TxOutcome::Provisional(r)) | Some(TxOutcome::Final(r)) => {
            crate::ua::log_in(&Message::Response(r.clone()), flow);
        }
        Some(TxOutcome::Timeout) => tracing::debug!(target: "tandem::sip", "transaction timed out"),
        Some(TxOutcome::TransportError(e)) => {
            tracing::debug!(target: "tandem::sip", error = %e, "transport error");
        }
        _ => {}
    }
}

/// Runs one client transaction to its final response.
async fn final_response(
    shared: &Arc<Shared>,
    request: Request,
    target: Target,
) -> Result<(Response, Option<tandem_proto::Flow>)> {
    let mut tx = shared
        .endpoint
        .request(request, target)
        .await
        .map_err(net_error)?;
    crate::ua::log_out(&Message::Request(tx.request().clone()), tx.flow());
    loop {
        let outcome = tx.next().await;
        log_outcome(&outcome, tx.flow());
        match outcome {
            Some(TxOutcome::Provisional(_)) => continue,
            Some(TxOutcome::Final(r)) => return Ok((r, tx.flow())),
            Some(TxOutcome::Timeout) => return Err(UaError::Timeout),
            Some(TxOutcome::TransportError(e)) => return Err(UaError::Network(e)),
            Some(_) => continue,
            None => {
                return Err(UaError::Network(
                    "the transaction ended without a final response".into(),
                ));
            }
        }
    }
}
