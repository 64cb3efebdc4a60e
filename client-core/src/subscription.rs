//! The subscriber side of an RFC 6665 event subscription, shared by the event packages that
//! keep one subscription in the background (message summary, conference roster).
//!
//! [`spawn`] sends the initial SUBSCRIBE, answers the NOTIFYs of the dialog (the [`Package`]
//! reads their bodies), refreshes at 3/4 of the granted time, re-subscribes after a termination
//! the notifier allows a retry for (RFC 6665 §4.1.3) or a transient failure (with a doubling
//! back-off), and un-subscribes (Expires 0, waiting for the final NOTIFY) when stopped.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tandem_net::Target;
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};
use tandem_proto::transaction::TxId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::account::Account;
use crate::call::request_next_hop;
use crate::error::{Result, UaError};
use crate::presence::SubscriptionState;
use crate::request::{AuthSession, initial_request};
use crate::ua::{DialogInput, DialogKey, Shared};

/// First delay before re-subscribing after a failure; doubles up to [`Package::MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// A status and reason phrase to refuse a NOTIFY with.
pub(crate) type Refusal = (u16, &'static str);

/// One event package as a subscriber sees it.
pub(crate) trait Package: Send + 'static {
    /// What the subscription reports to its owner.
    type Event: Send + 'static;
    /// The `Event` header value.
    const EVENT: &'static str;
    /// The `Accept` header value.
    const ACCEPT: &'static str;
    /// The subscription lifetime asked for, in seconds.
    const EXPIRES: u32;
    /// Longest delay between re-subscriptions after failures.
    const MAX_RETRY: Duration;
    /// Whether a `Retry-After` in a failure response to the initial SUBSCRIBE makes it worth
    /// trying again (after that delay) rather than final.
    const HONOURS_RETRY_AFTER: bool;

    /// The event that reports the end of a subscription dialog.
    fn terminated(reason: Option<String>, final_: bool) -> Self::Event;

    /// Checks a NOTIFY of the dialog before its `Subscription-State` is read.
    fn check_notify(&self, _request: &Request) -> std::result::Result<(), Refusal> {
        Ok(())
    }

    /// Reads the non-empty body of an accepted NOTIFY: the event to report, or the refusal.
    fn on_body(&mut self, request: &Request) -> std::result::Result<Option<Self::Event>, Refusal>;
}

/// A running subscription: its events, and the way to end it. Un-subscribes when dropped.
pub(crate) struct Handle<E> {
    events: mpsc::UnboundedReceiver<E>,
    stop: mpsc::UnboundedSender<()>,
    task: Option<JoinHandle<()>>,
}

impl<E> fmt::Debug for Handle<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field(
                "running",
                &self.task.as_ref().is_some_and(|t| !t.is_finished()),
            )
            .finish()
    }
}

impl<E> Handle<E> {
    /// The next event; `None` after a final termination or an un-subscription.
    pub(crate) async fn next(&mut self) -> Option<E> {
        self.events.recv().await
    }

    /// Ends the subscription (SUBSCRIBE with Expires 0) and waits (bounded) for the final NOTIFY.
    pub(crate) async fn unsubscribe(mut self) {
        let _ = self.stop.send(());
        if let Some(mut task) = self.task.take()
            && timeout(Duration::from_secs(10), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl<E> Drop for Handle<E> {
    fn drop(&mut self) {
        // The task un-subscribes by itself on this signal (or when the channel closes).
        let _ = self.stop.send(());
    }
}

/// Starts subscribing to `target` (the account's own AoR when `None`) as `account` with the
/// package state `package`.
pub(crate) fn spawn<P: Package>(
    shared: Arc<Shared>,
    account: Account,
    target: Option<Uri>,
    package: P,
) -> Handle<P::Event> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (stop, stop_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let target = match target.map_or_else(|| account.aor(), Ok) {
            Ok(t) => t,
            Err(e) => {
                let _ = events_tx.send(P::terminated(Some(e.to_string()), true));
                return;
            }
        };
        let mut sub = Subscriber {
            shared,
            account,
            target,
            events: events_tx,
            stop: stop_rx,
            package,
            backoff: FIRST_RETRY,
        };
        sub.run().await;
    });
    Handle {
        events,
        stop,
        task: Some(task),
    }
}

/// How one subscription dialog ended.
enum Ended {
    Stop,
    Retry(Duration),
}

/// RFC 6665 §4.1.3: whether (and when) a terminated subscription may be tried again.
fn retry_for(reason: Option<&str>, retry_after: Option<u32>) -> Option<Duration> {
    let after = retry_after.map(|s| Duration::from_secs(u64::from(s)));
    match reason {
        Some("rejected" | "noresource" | "invariant") => None,
        Some("probation" | "giveup") => Some(after.unwrap_or(Duration::from_secs(30))),
        _ => Some(after.unwrap_or(Duration::from_millis(200))),
    }
}

/// When to refresh something granted for `secs` seconds.
fn refresh_delay(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs) * 3 / 4).max(Duration::from_secs(1))
}

/// The headers of every SUBSCRIBE of package `P`.
fn subscribe_headers<P: Package>(req: &mut Request, expires: u32, user_agent: &str) {
    let h = &mut req.headers;
    h.push(HeaderName::Event, P::EVENT);
    h.push(HeaderName::Accept, P::ACCEPT);
    h.push(HeaderName::Expires, expires.to_string());
    h.push(HeaderName::UserAgent, user_agent.to_owned());
}

/// The state of the background task across dialogs.
struct Subscriber<P: Package> {
    shared: Arc<Shared>,
    account: Account,
    target: Uri,
    events: mpsc::UnboundedSender<P::Event>,
    stop: mpsc::UnboundedReceiver<()>,
    package: P,
    backoff: Duration,
}

impl<P: Package> Subscriber<P> {
    async fn run(&mut self) {
        loop {
            match self.one_dialog().await {
                Ended::Stop => return,
                Ended::Retry(delay) => {
                    tokio::select! {
                        _ = sleep(delay) => {}
                        _ = self.stop.recv() => return,
                    }
                }
            }
        }
    }

    fn report_end(&self, reason: String, final_: bool) {
        let _ = self.events.send(P::terminated(Some(reason), final_));
    }

    /// The current back-off delay; doubles the next one.
    fn next_backoff(&mut self) -> Duration {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(P::MAX_RETRY);
        delay
    }

    async fn one_dialog(&mut self) -> Ended {
        let shared = Arc::clone(&self.shared);
        let aor = match self.account.aor() {
            Ok(a) => a,
            Err(e) => {
                self.report_end(e.to_string(), true);
                return Ended::Stop;
            }
        };
        let key = DialogKey {
            call_id: shared.call_id(),
            local_tag: shared.tag(),
        };
        let (in_tx, mut input) = mpsc::unbounded_channel();
        shared.add_dialog(key.clone(), in_tx);
        let contact = format!("<{}>", shared.contact_uri(Some(&self.account.user)));
        let mut req = initial_request(
            Method::Subscribe,
            &self.target,
            &self.account,
            &aor,
            &key.local_tag,
            &key.call_id,
            Some(&contact),
        );
        subscribe_headers::<P>(&mut req, P::EXPIRES, &shared.config.user_agent);
        let mut auth = AuthSession::for_account(&self.account);
        let sent = shared
            .send(
                req.clone(),
                Target::Uri(self.account.next_hop(&self.target)),
                Some(&mut auth),
            )
            .await;
        let ended = match sent {
            Err(e) => {
                let final_ = matches!(
                    e,
                    UaError::AuthFailed { .. } | UaError::Config(_) | UaError::Closed
                );
                self.report_end(e.to_string(), final_);
                if final_ {
                    Ended::Stop
                } else {
                    Ended::Retry(self.next_backoff())
                }
            }
            Ok(r) if !(200..300).contains(&r.status) => {
                let retry_after = if P::HONOURS_RETRY_AFTER {
                    r.headers
                        .get_str(&HeaderName::RetryAfter)
                        .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok())
                } else {
                    None
                };
                let transient = matches!(r.status, 408 | 480 | 500 | 503 | 504);
                let final_ = retry_after.is_none() && !transient;
                self.report_end(format!("{} {}", r.status, r.reason), final_);
                if final_ {
                    Ended::Stop
                } else {
                    let backoff = self.next_backoff();
                    Ended::Retry(retry_after.map_or(backoff, |s| Duration::from_secs(u64::from(s))))
                }
            }
            Ok(r) => {
                self.backoff = FIRST_RETRY;
                let mut dialog = Established {
                    shared: &shared,
                    events: &self.events,
                    package: &mut self.package,
                    auth,
                    dialog: None,
                };
                dialog
                    .run(&req, &r, &contact, &mut self.stop, &mut input)
                    .await
            }
        };
        shared.remove_dialog(&key);
        ended
    }
}

/// An established subscription dialog.
struct Established<'a, P: Package> {
    shared: &'a Arc<Shared>,
    events: &'a mpsc::UnboundedSender<P::Event>,
    package: &'a mut P,
    auth: AuthSession,
    dialog: Option<Dialog>,
}

impl<P: Package> Established<'_, P> {
    async fn run(
        &mut self,
        request: &Request,
        response: &Response,
        contact: &str,
        stop: &mut mpsc::UnboundedReceiver<()>,
        input: &mut mpsc::UnboundedReceiver<DialogInput>,
    ) -> Ended {
        self.dialog = match Dialog::from_uac(request, response) {
            Ok(mut d) => {
                d.confirm();
                if let Ok(c) = response.headers.cseq() {
                    d.local_seq = d.local_seq.max(c.seq);
                }
                d.local_contact = NameAddr::parse(contact).ok();
                Some(d)
            }
            Err(e) => {
                tracing::warn!("unusable 2xx to the {} SUBSCRIBE: {e}", P::EVENT);
                None
            }
        };
        let granted = response
            .headers
            .expires()
            .ok()
            .flatten()
            .unwrap_or(P::EXPIRES);
        let mut refresh_at = Instant::now() + refresh_delay(granted);
        loop {
            tokio::select! {
                _ = stop.recv() => {
                    let _ = self.resubscribe(0).await;
                    // Take the final NOTIFY so the notifier is not left retransmitting.
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while let Ok(Some(msg)) =
                        timeout(deadline.saturating_duration_since(Instant::now()), input.recv()).await
                    {
                        if let DialogInput::Request { tx, request } = msg
                            && self.on_notify(tx, &request).is_some_and(|s| s.state == "terminated")
                        {
                            break;
                        }
                    }
                    return Ended::Stop;
                }
                msg = input.recv() => {
                    let Some(msg) = msg else { return Ended::Retry(FIRST_RETRY) };
                    let DialogInput::Request { tx, request } = msg else { continue };
                    let Some(state) = self.on_notify(tx, &request) else { continue };
                    if state.state == "terminated" {
                        let retry = retry_for(state.reason.as_deref(), state.retry_after);
                        let _ = self.events.send(P::terminated(state.reason, retry.is_none()));
                        return retry.map_or(Ended::Stop, Ended::Retry);
                    }
                    if let Some(e) = state.expires {
                        refresh_at = refresh_at.min(Instant::now() + refresh_delay(e));
                    }
                }
                _ = sleep_until(refresh_at) => {
                    match self.resubscribe(P::EXPIRES).await {
                        Ok(r) if (200..300).contains(&r.status) => {
                            let granted = r.headers.expires().ok().flatten().unwrap_or(P::EXPIRES);
                            refresh_at = Instant::now() + refresh_delay(granted);
                        }
                        other => {
                            let reason = match other {
                                Ok(r) => format!("refresh got {} {}", r.status, r.reason),
                                Err(e) => format!("refresh failed: {e}"),
                            };
                            let _ = self.events.send(P::terminated(Some(reason), false));
                            return Ended::Retry(Duration::from_millis(200));
                        }
                    }
                }
            }
        }
    }

    /// An in-dialog SUBSCRIBE (refresh, or Expires 0 to end).
    async fn resubscribe(&mut self, expires: u32) -> Result<Response> {
        let Some(dialog) = self.dialog.as_mut() else {
            return Err(UaError::Protocol("no subscription dialog".into()));
        };
        let mut req = dialog.new_request(Method::Subscribe);
        subscribe_headers::<P>(&mut req, expires, &self.shared.config.user_agent);
        let (method, uri) = (req.method.to_string(), req.uri.to_string());
        self.auth.preempt(self.shared, &method, &uri);
        let hop = Target::Uri(request_next_hop(&req, self.shared.transport));
        let response = self.shared.send(req, hop, Some(&mut self.auth)).await?;
        if let Ok(c) = response.headers.cseq() {
            dialog.local_seq = dialog.local_seq.max(c.seq);
        }
        dialog.update_from_response(&response);
        Ok(response)
    }

    /// Answers one request of the dialog and reports what its body says; returns the
    /// subscription state of a NOTIFY that was accepted.
    fn on_notify(&mut self, tx: TxId, request: &Request) -> Option<SubscriptionState> {
        let respond = |status: u16, reason: &str| {
            let mut r = Response::for_request(request, status);
            r.reason = reason.into();
            if status == 405 {
                r.headers.push(HeaderName::Allow, "NOTIFY");
            }
            self.shared.respond(tx, r);
        };
        if request.method != Method::Notify {
            respond(405, "Method Not Allowed");
            return None;
        }
        if let Some(d) = self.dialog.as_mut()
            && d.matches_request(request)
            && let Err(e) = d.check_request(request)
        {
            tracing::debug!("{} NOTIFY refused: {e}", P::EVENT);
            respond(500, "Out of Order");
            return None;
        }
        if let Err((status, reason)) = self.package.check_notify(request) {
            respond(status, reason);
            return None;
        }
        let Some(state) = request
            .headers
            .get_str(&HeaderName::SubscriptionState)
            .and_then(SubscriptionState::parse)
        else {
            respond(400, "Missing Subscription-State");
            return None;
        };
        if request.body.is_empty() {
            respond(200, "OK");
            return Some(state);
        }
        match self.package.on_body(request) {
            Ok(event) => {
                respond(200, "OK");
                if let Some(event) = event {
                    let _ = self.events.send(event);
                }
                Some(state)
            }
            Err((status, reason)) => {
                respond(status, reason);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rules() {
        assert_eq!(retry_for(Some("noresource"), None), None);
        assert_eq!(retry_for(Some("rejected"), Some(3)), None);
        assert_eq!(
            retry_for(Some("giveup"), Some(9)),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            retry_for(Some("probation"), None),
            Some(Duration::from_secs(30))
        );
        assert!(retry_for(Some("timeout"), None).unwrap() < Duration::from_secs(1));
        assert_eq!(refresh_delay(3600), Duration::from_secs(2700));
        assert_eq!(refresh_delay(600), Duration::from_secs(450));
        assert_eq!(refresh_delay(0), Duration::from_secs(1));
    }

    #[test]
    fn subscription_state_header() {
        let s = SubscriptionState::parse("terminated;reason=Probation;retry-after=30").unwrap();
        assert_eq!(
            s,
            SubscriptionState {
                state: "terminated".into(),
                expires: None,
                reason: Some("probation".into()),
                retry_after: Some(30)
            }
        );
        let s = SubscriptionState::parse("Active;expires=600").unwrap();
        assert_eq!((s.state.as_str(), s.expires), ("active", Some(600)));
        assert_eq!(SubscriptionState::parse(" ;expires=5"), None);
    }
}
