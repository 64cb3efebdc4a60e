//! Conference rosters: a subscription to a conference URI's `conference` event package (RFC 4575
//! over RFC 6665). Each NOTIFY's `application/conference-info+xml` document (full or partial) is
//! merged into the roster kept here ([`ConferenceInfo::apply`]) and reported whole; the
//! subscription is refreshed at 3/4 of its lifetime and re-established after a termination the
//! notifier allows (`deactivated`, `timeout`, `probation`, `giveup`, or a transient failure).

use std::sync::Arc;
use std::time::Duration;

use tandem_net::Target;
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, Method, NameAddr, Request, Response, Uri};
use tandem_proto::simple::conference_info::{CONTENT_TYPE, ConferenceInfo};
use tandem_proto::transaction::TxId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::account::Account;
use crate::call::request_next_hop;
use crate::error::{Result, UaError};
use crate::presence::SubscriptionState;
use crate::request::{AuthSession, initial_request};
use crate::ua::{DialogInput, DialogKey, Shared, UserAgent};

/// The subscription lifetime asked for, in seconds.
pub const CONFERENCE_EXPIRES: u32 = 600;
/// First delay before re-subscribing; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Longest delay between attempts.
const MAX_RETRY: Duration = Duration::from_secs(120);

/// What a conference subscription reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConferenceEvent {
    /// The roster after a NOTIFY (partial notifications already merged in).
    Roster(Box<ConferenceInfo>),
    /// The subscription ended; it is re-established automatically unless `final_` is true.
    Terminated {
        /// The notifier's reason or our error.
        reason: Option<String>,
        /// True when no new attempt will be made.
        final_: bool,
    },
}

/// A subscription to a conference's roster; ends (un-subscribing) when dropped or on
/// [`ConferenceSubscription::unsubscribe`].
#[derive(Debug)]
pub struct ConferenceSubscription {
    events: mpsc::UnboundedReceiver<ConferenceEvent>,
    stop: mpsc::UnboundedSender<()>,
    task: JoinHandle<()>,
}

impl ConferenceSubscription {
    /// The next event; `None` after a final termination or un-subscription.
    pub async fn next(&mut self) -> Option<ConferenceEvent> {
        self.events.recv().await
    }

    /// Ends the subscription (SUBSCRIBE with Expires 0) and waits (bounded) for the final NOTIFY.
    pub async fn unsubscribe(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if timeout(Duration::from_secs(10), &mut task).await.is_err() {
            task.abort();
        }
    }
}

impl UserAgent {
    /// Subscribes to the roster of the conference at `room` (e.g. `sip:conf-lab@domain`) as
    /// `account`.
    pub fn subscribe_conference(&self, account: &Account, room: Uri) -> ConferenceSubscription {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (stop, stop_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(
            Arc::clone(self.shared()),
            account.clone(),
            room,
            events_tx,
            stop_rx,
        ));
        ConferenceSubscription { events, stop, task }
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

async fn run(
    shared: Arc<Shared>,
    account: Account,
    room: Uri,
    events: mpsc::UnboundedSender<ConferenceEvent>,
    mut stop: mpsc::UnboundedReceiver<()>,
) {
    let mut backoff = FIRST_RETRY;
    loop {
        match one_dialog(&shared, &account, &room, &events, &mut stop, &mut backoff).await {
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

fn subscribe_headers(req: &mut Request, expires: u32, ua: &str) {
    req.headers.push(HeaderName::Event, "conference");
    req.headers.push(HeaderName::Accept, CONTENT_TYPE);
    req.headers.push(HeaderName::Expires, expires.to_string());
    req.headers.push(HeaderName::UserAgent, ua.to_string());
}

async fn one_dialog(
    shared: &Arc<Shared>,
    account: &Account,
    room: &Uri,
    events: &mpsc::UnboundedSender<ConferenceEvent>,
    stop: &mut mpsc::UnboundedReceiver<()>,
    backoff: &mut Duration,
) -> Ended {
    let aor = match account.aor() {
        Ok(a) => a,
        Err(e) => {
            let _ = events.send(ConferenceEvent::Terminated {
                reason: Some(e.to_string()),
                final_: true,
            });
            return Ended::Stop;
        }
    };
    let call_id = shared.call_id();
    let local_tag = shared.tag();
    let key = DialogKey {
        call_id: call_id.clone(),
        local_tag: local_tag.clone(),
    };
    let (in_tx, mut input) = mpsc::unbounded_channel();
    shared.add_dialog(key.clone(), in_tx);
    let contact = format!("<{}>", shared.contact_uri(Some(&account.user)));
    let mut req = initial_request(
        Method::Subscribe,
        room,
        account,
        &aor,
        &local_tag,
        &call_id,
        Some(&contact),
    );
    subscribe_headers(&mut req, CONFERENCE_EXPIRES, &shared.config.user_agent);
    let mut auth = AuthSession::for_account(account);
    let result = shared
        .send(
            req.clone(),
            Target::Uri(account.next_hop(room)),
            Some(&mut auth),
        )
        .await;
    let ended = match result {
        Err(e) => {
            let final_ = matches!(
                e,
                UaError::AuthFailed { .. } | UaError::Config(_) | UaError::Closed
            );
            let _ = events.send(ConferenceEvent::Terminated {
                reason: Some(e.to_string()),
                final_,
            });
            let delay = *backoff;
            *backoff = (*backoff * 2).min(MAX_RETRY);
            if final_ {
                Ended::Stop
            } else {
                Ended::Retry(delay)
            }
        }
        Ok(r) if !(200..300).contains(&r.status) => {
            let retry_after = r
                .headers
                .get_str(&HeaderName::RetryAfter)
                .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok());
            let transient = matches!(r.status, 408 | 480 | 500 | 503 | 504);
            let final_ = retry_after.is_none() && !transient;
            let _ = events.send(ConferenceEvent::Terminated {
                reason: Some(format!("{} {}", r.status, r.reason)),
                final_,
            });
            if final_ {
                Ended::Stop
            } else {
                let delay = retry_after
                    .map(|s| Duration::from_secs(u64::from(s)))
                    .unwrap_or(*backoff);
                *backoff = (*backoff * 2).min(MAX_RETRY);
                Ended::Retry(delay)
            }
        }
        Ok(r) => {
            *backoff = FIRST_RETRY;
            let mut sub = Established {
                shared,
                events,
                auth,
                dialog: None,
                roster: ConferenceInfo::default(),
            };
            sub.run(&req, &r, &contact, stop, &mut input).await
        }
    };
    shared.remove_dialog(&key);
    ended
}

/// An established subscription dialog.
struct Established<'a> {
    shared: &'a Arc<Shared>,
    events: &'a mpsc::UnboundedSender<ConferenceEvent>,
    auth: AuthSession,
    dialog: Option<Dialog>,
    roster: ConferenceInfo,
}

impl Established<'_> {
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
                tracing::warn!("unusable 2xx to the conference SUBSCRIBE: {e}");
                None
            }
        };
        let granted = response
            .headers
            .expires()
            .ok()
            .flatten()
            .unwrap_or(CONFERENCE_EXPIRES);
        let mut refresh_at = Instant::now() + refresh_delay(granted);
        loop {
            tokio::select! {
                _ = stop.recv() => {
                    let _ = self.resubscribe(0).await;
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
                        let _ = self.events.send(ConferenceEvent::Terminated {
                            reason: state.reason.clone(),
                            final_: retry.is_none(),
                        });
                        return retry.map_or(Ended::Stop, Ended::Retry);
                    }
                    if let Some(e) = state.expires {
                        refresh_at = refresh_at.min(Instant::now() + refresh_delay(e));
                    }
                }
                _ = sleep_until(refresh_at) => {
                    match self.resubscribe(CONFERENCE_EXPIRES).await {
                        Ok(r) if (200..300).contains(&r.status) => {
                            let granted = r.headers.expires().ok().flatten().unwrap_or(CONFERENCE_EXPIRES);
                            refresh_at = Instant::now() + refresh_delay(granted);
                        }
                        other => {
                            let reason = match other {
                                Ok(r) => format!("refresh got {} {}", r.status, r.reason),
                                Err(e) => format!("refresh failed: {e}"),
                            };
                            let _ = self.events.send(ConferenceEvent::Terminated {
                                reason: Some(reason),
                                final_: false,
                            });
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
        subscribe_headers(&mut req, expires, &self.shared.config.user_agent);
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

    /// Answers a NOTIFY and reports its roster; returns its subscription state when it parsed.
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
            tracing::debug!("conference NOTIFY refused: {e}");
            respond(500, "Out of Order");
            return None;
        }
        let event = request
            .headers
            .get_str(&HeaderName::Event)
            .and_then(|e| e.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase());
        if event.as_deref() != Some("conference") {
            respond(489, "Bad Event");
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
        let content_type = request
            .headers
            .content_type()
            .map(crate::im::base_type)
            .unwrap_or_default();
        if content_type != CONTENT_TYPE {
            respond(415, "Unsupported Media Type");
            return None;
        }
        match ConferenceInfo::parse(&request.body) {
            Ok(info) => {
                respond(200, "OK");
                if self.roster.apply(info) {
                    let _ = self
                        .events
                        .send(ConferenceEvent::Roster(Box::new(self.roster.clone())));
                }
                Some(state)
            }
            Err(e) => {
                tracing::warn!("unreadable conference-info in NOTIFY: {e}");
                respond(400, "Bad conference-info");
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
        assert!(retry_for(Some("timeout"), None).unwrap() < Duration::from_secs(1));
        assert_eq!(refresh_delay(600), Duration::from_secs(450));
        assert_eq!(refresh_delay(0), Duration::from_secs(1));
    }
}
