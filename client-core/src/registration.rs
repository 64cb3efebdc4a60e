//! Registration (RFC 3261 §10.2): REGISTER with digest, 423 handling, refresh before
//! expiry with the same Call-ID and increasing CSeq, and un-REGISTER.

use std::sync::Arc;
use std::time::Duration;

use tandem_net::Target;
use tandem_proto::msg::{ContactValue, HeaderName, Method, Request, Response, Uri};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::account::Account;
use crate::error::{Result, UaError};
use crate::request::{AuthSession, name_addr_header};
use crate::ua::Shared;

/// How many 423 Interval Too Brief answers one registration attempt follows.
const MAX_423: u32 = 3;
/// First delay before retrying a failed refresh; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Longest delay between refresh retries.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// Options for [`UserAgent::register_with`](crate::UserAgent::register_with).
#[derive(Debug, Clone, Default)]
pub struct RegisterOptions {
    /// Register this contact instead of our own (a third-party / foreign contact).
    pub contact: Option<Uri>,
    /// Expiry to ask for instead of the account's.
    pub expires: Option<u32>,
}

/// Something that happened to a registration after it was first granted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegEvent {
    /// A refresh was accepted; the binding now expires in `expires` seconds.
    Refreshed {
        /// Granted expiry in seconds.
        expires: u32,
    },
    /// A refresh failed; it is retried with back-off.
    RefreshFailed(UaError),
}

#[derive(Debug)]
struct RegState {
    account: Account,
    aor: Uri,
    registrar: Uri,
    contact: Uri,
    call_id: String,
    from_tag: String,
    cseq: u32,
    expires: u32,
    granted: u32,
    auth: AuthSession,
}

/// An active registration; refreshed in the background until [`Registration::unregister`].
///
/// Dropping it stops the refreshes without un-registering (the binding then expires).
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    state: Arc<Mutex<RegState>>,
    aor: Uri,
    contact: Uri,
    granted: u32,
    events: mpsc::UnboundedReceiver<RegEvent>,
    refresher: JoinHandle<()>,
}

impl Registration {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        account: Account,
        options: RegisterOptions,
    ) -> Result<Registration> {
        let aor = account.aor()?;
        let registrar = account.registrar_uri()?;
        let contact = match options.contact {
            Some(c) => c,
            None => shared.contact_uri(Some(&account.user)),
        };
        let expires = options.expires.unwrap_or(account.expires);
        let auth = AuthSession::for_account(&account);
        let mut state = RegState {
            account,
            aor: aor.clone(),
            registrar,
            contact: contact.clone(),
            call_id: shared.call_id(),
            from_tag: shared.tag(),
            cseq: 0,
            expires,
            granted: 0,
            auth,
        };
        if expires == 0 {
            return Err(UaError::Config(
                "a registration needs an expiry above 0".into(),
            ));
        }
        let granted = register_once(&shared, &mut state, expires).await?;
        let state = Arc::new(Mutex::new(state));
        let (tx, rx) = mpsc::unbounded_channel();
        let refresher = tokio::spawn(refresh_loop(shared.clone(), state.clone(), granted, tx));
        Ok(Registration {
            shared,
            state,
            aor,
            contact,
            granted,
            events: rx,
            refresher,
        })
    }

    /// The registered address-of-record.
    pub fn aor(&self) -> &Uri {
        &self.aor
    }

    /// The registered contact.
    pub fn contact(&self) -> &Uri {
        &self.contact
    }

    /// The expiry granted by the registrar to the first REGISTER, in seconds.
    pub fn expires(&self) -> u32 {
        self.granted
    }

    /// The next refresh event; `None` after the refresher stopped.
    pub async fn next_event(&mut self) -> Option<RegEvent> {
        self.events.recv().await
    }

    /// Stops refreshing and removes our binding (REGISTER with Expires: 0).
    pub async fn unregister(self) -> Result<()> {
        self.refresher.abort();
        let mut state = self.state.lock().await;
        let timeout = self.shared.config.shutdown_timeout;
        match tokio::time::timeout(timeout, register_once(&self.shared, &mut state, 0)).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(UaError::Timeout),
        }
    }

    /// Stops refreshing and leaves the binding at the registrar until it expires.
    pub fn keep(self) {
        self.refresher.abort();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// When to refresh a binding granted for `granted` seconds: before expiry by a margin
/// of half the interval, at most 32 s (RFC 3261 §10.2.4 leaves the margin to us).
pub(crate) fn refresh_delay(granted: u32) -> Duration {
    let total = Duration::from_secs(u64::from(granted));
    let margin = (total / 2).min(Duration::from_secs(32));
    total.saturating_sub(margin).max(Duration::from_millis(500))
}

async fn refresh_loop(
    shared: Arc<Shared>,
    state: Arc<Mutex<RegState>>,
    granted: u32,
    events: mpsc::UnboundedSender<RegEvent>,
) {
    let mut next = Instant::now() + refresh_delay(granted);
    let mut retry = FIRST_RETRY;
    loop {
        tokio::time::sleep_until(next).await;
        let mut st = state.lock().await;
        let expires = st.expires;
        let outcome = register_once(&shared, &mut st, expires).await;
        drop(st);
        match outcome {
            Ok(granted) => {
                retry = FIRST_RETRY;
                next = Instant::now() + refresh_delay(granted);
                if events
                    .send(RegEvent::Refreshed { expires: granted })
                    .is_err()
                {
                    tracing::trace!("registration events no longer read");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "registration refresh failed; retrying in {retry:?}");
                next = Instant::now() + retry;
                retry = (retry * 2).min(MAX_RETRY);
                let _ = events.send(RegEvent::RefreshFailed(e));
            }
        }
    }
}

/// Builds the REGISTER for the current state (next CSeq) asking for `expires`.
fn build_register(shared: &Shared, st: &mut RegState, expires: u32) -> Request {
    st.cseq += 1;
    let mut req = Request::new(Method::Register, st.registrar.clone());
    let h = &mut req.headers;
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::To, format!("<{}>", st.aor));
    h.push(
        HeaderName::From,
        format!(
            "{};tag={}",
            name_addr_header(st.account.display_name.as_deref(), &st.aor),
            st.from_tag
        ),
    );
    h.push(HeaderName::CallId, st.call_id.clone());
    h.push(HeaderName::CSeq, format!("{} REGISTER", st.cseq));
    h.push(HeaderName::Contact, format!("<{}>", st.contact));
    h.push(HeaderName::Expires, expires.to_string());
    h.push(HeaderName::Allow, crate::ua::ALLOW);
    h.push(HeaderName::UserAgent, shared.config.user_agent.clone());
    req
}

/// One registration exchange (with digest and 423 handling); returns the granted expiry.
async fn register_once(shared: &Arc<Shared>, st: &mut RegState, expires: u32) -> Result<u32> {
    let mut expires = expires;
    let mut too_brief = 0;
    loop {
        let req = build_register(shared, st, expires);
        let uri = st.registrar.to_string();
        st.auth.preempt(shared, "REGISTER", &uri);
        let target = Target::Uri(st.account.next_hop(&st.registrar));
        let response = shared.send(req, target, Some(&mut st.auth)).await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                // Our stored credentials may be what was refused: start afresh next time.
                if matches!(e, UaError::AuthFailed { .. }) {
                    st.auth.clear();
                }
                return Err(e);
            }
        };
        if let Ok(cseq) = response.headers.cseq() {
            st.cseq = st.cseq.max(cseq.seq);
        }
        match response.status {
            200..=299 => {
                if expires == 0 {
                    return Ok(0);
                }
                let granted = granted_expiry(&response, &st.contact).unwrap_or(expires);
                if granted == 0 {
                    return Err(UaError::Protocol(
                        "the registrar granted our contact no time (expires=0)".into(),
                    ));
                }
                st.granted = granted;
                return Ok(granted);
            }
            423 if expires != 0 && too_brief < MAX_423 => {
                too_brief += 1;
                let min = response
                    .headers
                    .get_str(&HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > expires => {
                        tracing::info!(min, "423 Interval Too Brief: retrying with Min-Expires");
                        expires = min;
                        st.expires = min;
                    }
                    _ => return Err(UaError::rejected(423, response.reason.clone())),
                }
            }
            status => return Err(UaError::rejected(status, response.reason.clone())),
        }
    }
}

/// The expiry the registrar granted our contact: its Contact `expires` param, else Expires.
fn granted_expiry(response: &Response, ours: &Uri) -> Option<u32> {
    let contacts = response.headers.contacts().unwrap_or_default();
    for c in &contacts {
        if let ContactValue::Addr(addr) = c
            && same_contact(&addr.uri, ours)
            && let Some(e) = addr.expires()
        {
            return Some(e);
        }
    }
    response.headers.expires().ok().flatten()
}

/// Whether a contact in a 200 is ours (URI equivalence, tolerating re-ordered params).
fn same_contact(theirs: &Uri, ours: &Uri) -> bool {
    theirs.equivalent(ours)
        || (theirs.user == ours.user && theirs.host == ours.host && theirs.port == ours.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margins() {
        assert_eq!(refresh_delay(3600), Duration::from_secs(3568));
        assert_eq!(refresh_delay(60), Duration::from_secs(30));
        assert_eq!(refresh_delay(2), Duration::from_secs(1));
        assert_eq!(refresh_delay(0), Duration::from_millis(500));
    }
}
