//! Message waiting indication (RFC 3842): subscribing to a voicemail account's message-summary.
//!
//! [`UserAgent::subscribe_mwi`] sends SUBSCRIBE `Event: message-summary` (RFC 6665) to the
//! account's own AoR (or another message account URI), refreshes it at 3/4 of the granted time,
//! re-subscribes after a termination the notifier allows a retry for, and reports every
//! `application/simple-message-summary` NOTIFY as an [`MwiEvent::Summary`].

use std::sync::Arc;
use std::time::Duration;

use tandem_net::Target;
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};
use tandem_proto::simple::message_summary::MessageSummary;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::account::Account;
use crate::call::request_next_hop;
use crate::error::{Result, UaError};
use crate::request::{AuthSession, initial_request};
use crate::ua::{DialogInput, DialogKey, Shared, UserAgent};

/// `application/simple-message-summary` (RFC 3842).
pub const MESSAGE_SUMMARY: &str = "application/simple-message-summary";
/// Subscription duration asked for, in seconds.
pub const MWI_EXPIRES: u32 = 3600;
/// First delay before re-subscribing after a failure; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Longest delay between re-subscriptions.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// What an MWI subscription reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MwiEvent {
    /// The mailbox state from a NOTIFY.
    Summary(MessageSummary),
    /// The subscription ended; it is re-established automatically unless `final_` is true.
    Terminated {
        /// The notifier's reason or our error.
        reason: Option<String>,
        /// True when no new attempt will be made (rejected, 4xx to SUBSCRIBE, bad credentials).
        final_: bool,
    },
}

impl MwiEvent {
    /// `(new, old)` voice message counts of a summary (0/0 when the NOTIFY had none).
    pub fn voice_counts(&self) -> Option<(u32, u32)> {
        match self {
            MwiEvent::Summary(s) => Some(s.voice.map_or((0, 0), |v| (v.new, v.old))),
            MwiEvent::Terminated { .. } => None,
        }
    }
}

/// A message-summary subscription; un-subscribes when dropped.
#[derive(Debug)]
pub struct MwiSubscription {
    events: mpsc::UnboundedReceiver<MwiEvent>,
    stop: mpsc::UnboundedSender<()>,
    task: Option<JoinHandle<()>>,
}

impl MwiSubscription {
    /// The next event; `None` after a final termination or [`MwiSubscription::unsubscribe`].
    pub async fn next(&mut self) -> Option<MwiEvent> {
        self.events.recv().await
    }

    /// Ends the subscription (SUBSCRIBE with Expires 0) and waits for the final NOTIFY.
    pub async fn unsubscribe(mut self) {
        let _ = self.stop.send(());
        if let Some(mut task) = self.task.take()
            && timeout(Duration::from_secs(10), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for MwiSubscription {
    fn drop(&mut self) {
        // The task un-subscribes by itself when this channel closes.
        let _ = self.stop.send(());
    }
}

impl UserAgent {
    /// Subscribes to the message summary of `message_account` (default: the account's own
    /// AoR) as `account` (RFC 3842); runs in the background until dropped.
    pub fn subscribe_mwi(
        &self,
        account: &Account,
        message_account: Option<Uri>,
    ) -> MwiSubscription {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (stop, stop_rx) = mpsc::unbounded_channel();
        let shared = Arc::clone(self.shared());
        let account = account.clone();
        let task = tokio::spawn(async move {
            let target = match message_account.map_or_else(|| account.aor(), Ok) {
                Ok(t) => t,
                Err(e) => {
                    let _ = events_tx.send(MwiEvent::Terminated {
                        reason: Some(e.to_string()),
                        final_: true,
                    });
                    return;
                }
            };
            run(shared, account, target, events_tx, stop_rx).await;
        });
        MwiSubscription {
            events,
            stop,
            task: Some(task),
        }
    }
}

/// How one subscription dialog ended.
enum Ended {
    Stop,
    Retry(Duration),
}

async fn run(
    shared: Arc<Shared>,
    account: Account,
    target: Uri,
    events: mpsc::UnboundedSender<MwiEvent>,
    mut stop: mpsc::UnboundedReceiver<()>,
) {
    let mut backoff = FIRST_RETRY;
    loop {
        match one_dialog(&shared, &account, &target, &events, &mut stop, &mut backoff).await {
            Ended::Stop => return,
            Ended::Retry(delay) => {
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = stop.recv() => return,
                }
            }
        }
    }
}

fn subscribe_headers(req: &mut Request, expires: u32, user_agent: &str) {
    let h = &mut req.headers;
    h.push(HeaderName::Event, "message-summary");
    h.push(HeaderName::Accept, MESSAGE_SUMMARY);
    h.push(HeaderName::Expires, expires.to_string());
    h.push(HeaderName::UserAgent, user_agent.to_owned());
}

fn refresh_delay(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs) * 3 / 4).max(Duration::from_secs(1))
}

/// The retry rule of RFC 6665 §4.1.3 for a `terminated` reason.
fn retry_for(reason: Option<&str>, retry_after: Option<u32>) -> Option<Duration> {
    let after = retry_after.map(|s| Duration::from_secs(u64::from(s)));
    match reason {
        Some("rejected" | "noresource" | "invariant") => None,
        Some("probation" | "giveup") => Some(after.unwrap_or(Duration::from_secs(30))),
        _ => Some(after.unwrap_or(Duration::from_millis(200))),
    }
}

/// The parts of a `Subscription-State` header (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SubState {
    /// `active`, `pending`, `terminated`, lowercased.
    state: String,
    /// `expires=` in seconds.
    expires: Option<u32>,
    /// `reason=`, lowercased.
    reason: Option<String>,
    /// `retry-after=` in seconds.
    retry_after: Option<u32>,
}

/// Parses a `Subscription-State` value.
fn subscription_state(value: &str) -> SubState {
    let mut parts = value.split(';');
    let state = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let (mut expires, mut reason, mut retry) = (None, None, None);
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "expires" => expires = v.parse().ok(),
            "reason" => reason = Some(v.to_ascii_lowercase()),
            "retry-after" => retry = v.parse().ok(),
            _ => {}
        }
    }
    SubState {
        state,
        expires,
        reason,
        retry_after: retry,
    }
}

async fn one_dialog(
    shared: &Arc<Shared>,
    account: &Account,
    target: &Uri,
    events: &mpsc::UnboundedSender<MwiEvent>,
    stop: &mut mpsc::UnboundedReceiver<()>,
    backoff: &mut Duration,
) -> Ended {
    let aor = match account.aor() {
        Ok(a) => a,
        Err(e) => {
            let _ = events.send(MwiEvent::Terminated {
                reason: Some(e.to_string()),
                final_: true,
            });
            return Ended::Stop;
        }
    };
    let key = DialogKey {
        call_id: shared.call_id(),
        local_tag: shared.tag(),
    };
    let (in_tx, mut input) = mpsc::unbounded_channel();
    shared.add_dialog(key.clone(), in_tx);
    let contact = format!("<{}>", shared.contact_uri(Some(&account.user)));
    let mut req = initial_request(
        Method::Subscribe,
        target,
        account,
        &aor,
        &key.local_tag,
        &key.call_id,
        Some(&contact),
    );
    subscribe_headers(&mut req, MWI_EXPIRES, &shared.config.user_agent);
    let mut auth = AuthSession::for_account(account);
    let sent = shared
        .send(
            req.clone(),
            Target::Uri(account.next_hop(target)),
            Some(&mut auth),
        )
        .await;
    let ended = match sent {
        Err(e) => {
            let final_ = matches!(
                e,
                UaError::AuthFailed { .. } | UaError::Config(_) | UaError::Closed
            );
            let _ = events.send(MwiEvent::Terminated {
                reason: Some(e.to_string()),
                final_,
            });
            if final_ {
                Ended::Stop
            } else {
                let delay = *backoff;
                *backoff = (*backoff * 2).min(MAX_RETRY);
                Ended::Retry(delay)
            }
        }
        Ok(r) if !(200..300).contains(&r.status) => {
            let transient = matches!(r.status, 408 | 480 | 500 | 503 | 504);
            let _ = events.send(MwiEvent::Terminated {
                reason: Some(format!("{} {}", r.status, r.reason)),
                final_: !transient,
            });
            if transient {
                let delay = *backoff;
                *backoff = (*backoff * 2).min(MAX_RETRY);
                Ended::Retry(delay)
            } else {
                Ended::Stop
            }
        }
        Ok(r) => {
            *backoff = FIRST_RETRY;
            established(shared, &req, &r, &contact, auth, events, stop, &mut input).await
        }
    };
    shared.remove_dialog(&key);
    ended
}

/// Answers one request of our dialog; the NOTIFY's subscription state when it was one.
fn on_request(
    shared: &Shared,
    dialog: &mut Option<Dialog>,
    tx: tandem_proto::transaction::TxId,
    request: &Request,
    events: &mpsc::UnboundedSender<MwiEvent>,
) -> Option<SubState> {
    let respond = |status: u16, reason: &str| {
        let mut r = Response::for_request(request, status);
        r.reason = reason.to_owned();
        shared.respond(tx, r);
    };
    if request.method != Method::Notify {
        respond(405, "Method Not Allowed");
        return None;
    }
    if let Some(d) = dialog.as_mut()
        && d.matches_request(request)
        && d.check_request(request).is_err()
    {
        respond(500, "Out of Order");
        return None;
    }
    let Some(state) = request
        .headers
        .get_str(&HeaderName::SubscriptionState)
        .map(subscription_state)
        .filter(|s| !s.state.is_empty())
    else {
        respond(400, "Missing Subscription-State");
        return None;
    };
    if !request.body.is_empty() {
        match MessageSummary::parse(&request.body) {
            Ok(summary) => {
                respond(200, "OK");
                let _ = events.send(MwiEvent::Summary(summary));
            }
            Err(e) => {
                tracing::debug!("unreadable message-summary: {e}");
                respond(400, "Bad Message Summary");
                return None;
            }
        }
    } else {
        respond(200, "OK");
    }
    Some(state)
}

async fn in_dialog_subscribe(
    shared: &Arc<Shared>,
    dialog: &mut Dialog,
    auth: &mut AuthSession,
    expires: u32,
) -> Result<Response> {
    let mut req = dialog.new_request(Method::Subscribe);
    subscribe_headers(&mut req, expires, &shared.config.user_agent);
    auth.preempt(shared, "SUBSCRIBE", &req.uri.to_string());
    let hop = Target::Uri(request_next_hop(&req, shared.transport));
    let response = shared.send(req, hop, Some(auth)).await?;
    if let Ok(c) = response.headers.cseq() {
        dialog.local_seq = dialog.local_seq.max(c.seq);
    }
    dialog.update_from_response(&response);
    Ok(response)
}

#[allow(clippy::too_many_arguments)]
async fn established(
    shared: &Arc<Shared>,
    request: &Request,
    response: &Response,
    contact: &str,
    mut auth: AuthSession,
    events: &mpsc::UnboundedSender<MwiEvent>,
    stop: &mut mpsc::UnboundedReceiver<()>,
    input: &mut mpsc::UnboundedReceiver<DialogInput>,
) -> Ended {
    let mut dialog = Dialog::from_uac(request, response).ok();
    if let Some(d) = dialog.as_mut() {
        d.confirm();
        if let Ok(c) = response.headers.cseq() {
            d.local_seq = d.local_seq.max(c.seq);
        }
        d.local_contact = NameAddr::parse(contact).ok();
    }
    let granted = response
        .headers
        .expires()
        .ok()
        .flatten()
        .unwrap_or(MWI_EXPIRES);
    let mut refresh_at = Instant::now() + refresh_delay(granted);
    loop {
        tokio::select! {
            _ = stop.recv() => {
                if let Some(d) = dialog.as_mut() {
                    let _ = in_dialog_subscribe(shared, d, &mut auth, 0).await;
                }
                // Take the final NOTIFY so the notifier is not left retransmitting.
                let deadline = Instant::now() + Duration::from_secs(2);
                while let Ok(Some(DialogInput::Request { tx, request })) =
                    timeout(deadline.saturating_duration_since(Instant::now()), input.recv()).await
                {
                    if on_request(shared, &mut dialog, tx, &request, events)
                        .is_some_and(|s| s.state == "terminated")
                    {
                        break;
                    }
                }
                return Ended::Stop;
            }
            msg = input.recv() => {
                let Some(msg) = msg else { return Ended::Retry(FIRST_RETRY) };
                let DialogInput::Request { tx, request } = msg else { continue };
                let Some(sub) = on_request(shared, &mut dialog, tx, &request, events) else {
                    continue;
                };
                if sub.state == "terminated" {
                    let retry = retry_for(sub.reason.as_deref(), sub.retry_after);
                    let _ = events.send(MwiEvent::Terminated {
                        reason: sub.reason,
                        final_: retry.is_none(),
                    });
                    return match retry {
                        Some(d) => Ended::Retry(d),
                        None => Ended::Stop,
                    };
                }
                if let Some(e) = sub.expires {
                    let at = Instant::now() + refresh_delay(e);
                    refresh_at = refresh_at.min(at);
                }
            }
            _ = sleep_until(refresh_at) => {
                let Some(d) = dialog.as_mut() else { return Ended::Retry(FIRST_RETRY) };
                match in_dialog_subscribe(shared, d, &mut auth, MWI_EXPIRES).await {
                    Ok(r) if (200..300).contains(&r.status) => {
                        let granted = r.headers.expires().ok().flatten().unwrap_or(MWI_EXPIRES);
                        refresh_at = Instant::now() + refresh_delay(granted);
                    }
                    other => {
                        let reason = match other {
                            Ok(r) => format!("refresh got {} {}", r.status, r.reason),
                            Err(e) => format!("refresh failed: {e}"),
                        };
                        let _ = events.send(MwiEvent::Terminated { reason: Some(reason), final_: false });
                        return Ended::Retry(Duration::from_millis(200));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_state_and_retry_rules() {
        let s = subscription_state("terminated;reason=Probation;retry-after=30");
        assert_eq!(
            s,
            SubState {
                state: "terminated".into(),
                expires: None,
                reason: Some("probation".into()),
                retry_after: Some(30)
            }
        );
        let s = subscription_state("Active;expires=600");
        assert_eq!((s.state.as_str(), s.expires), ("active", Some(600)));
        assert_eq!(retry_for(Some("rejected"), None), None);
        assert_eq!(
            retry_for(Some("giveup"), Some(7)),
            Some(Duration::from_secs(7))
        );
        assert!(retry_for(Some("timeout"), None).is_some());
        assert_eq!(refresh_delay(3600), Duration::from_secs(2700));
    }

    #[test]
    fn voice_counts() {
        let s = MessageSummary::parse(b"Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n")
            .unwrap();
        assert_eq!(MwiEvent::Summary(s).voice_counts(), Some((2, 8)));
        assert_eq!(
            MwiEvent::Summary(MessageSummary::default()).voice_counts(),
            Some((0, 0))
        );
    }
}
