//! Page-mode instant messages (RFC 3428): MESSAGE with `text/plain` or `message/cpim`
//! (RFC 3862), disposition notifications (IMDN, RFC 5438) and is-composing indications
//! (RFC 3994), with duplicate suppression for messages a store-and-forward server redelivers.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tandem_net::Target;
use tandem_proto::msg::{HeaderName, Method, Request, Response, Uri};
use tandem_proto::simple::cpim::CpimMessage;
use tandem_proto::simple::imdn::{Disposition, Imdn, Notification};
use tandem_proto::simple::iscomposing::{ComposingState, IsComposing};
use tandem_proto::simple::time::format_rfc3339;
use tandem_proto::transaction::TxId;

use crate::account::Account;
use crate::error::{Result, UaError};
use crate::request::{AuthSession, expect_2xx, initial_request, name_addr_header};
use crate::ua::{Shared, UaEvent};

/// `text/plain; charset=utf-8`.
pub const TEXT_PLAIN: &str = "text/plain;charset=utf-8";
/// `message/cpim` (RFC 3862).
pub const MESSAGE_CPIM: &str = "message/cpim";
/// `message/imdn+xml` (RFC 5438).
pub const MESSAGE_IMDN: &str = "message/imdn+xml";
/// `application/im-iscomposing+xml` (RFC 3994).
pub const ISCOMPOSING: &str = "application/im-iscomposing+xml";
/// The `Accept` header value sent with a 415 to a MESSAGE we cannot read.
pub const MESSAGE_ACCEPT: &str = "text/plain, message/cpim, application/im-iscomposing+xml";
/// The header a store-and-forward lab server puts on redelivered messages (stable per message).
pub const STORED_ID_HEADER: &str = "Tandem-Stored-Id";
/// How many recent message ids are remembered for duplicate suppression.
const DEDUPE_CAPACITY: usize = 4096;
/// Largest MESSAGE body we accept (RFC 3428 §8 advises 1300 bytes on UDP; TCP may carry more).
const MAX_BODY: usize = 1024 * 1024;

/// A message to send with [`UserAgent::send_message`](crate::UserAgent::send_message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The content type of `body` (the inner type when `cpim` is set).
    pub content_type: String,
    /// The content.
    pub body: Bytes,
    /// Wrap the content in `message/cpim` (required for IMDN requests).
    pub cpim: bool,
    /// Dispositions to ask for (`imdn.Disposition-Notification`); only with `cpim`.
    pub imdn: Vec<Disposition>,
}

impl OutgoingMessage {
    /// A plain `text/plain` message.
    pub fn text(text: impl Into<String>) -> Self {
        OutgoingMessage {
            content_type: TEXT_PLAIN.into(),
            body: Bytes::from(text.into()),
            cpim: false,
            imdn: Vec::new(),
        }
    }

    /// A `message/cpim` message wrapping `text/plain`, asking for the given notifications.
    pub fn cpim_text(text: impl Into<String>, imdn: &[Disposition]) -> Self {
        OutgoingMessage {
            content_type: TEXT_PLAIN.into(),
            body: Bytes::from(text.into()),
            cpim: true,
            imdn: imdn.to_vec(),
        }
    }

    /// A message with any content type, sent as is.
    pub fn raw(content_type: impl Into<String>, body: impl Into<Bytes>) -> Self {
        OutgoingMessage {
            content_type: content_type.into(),
            body: body.into(),
            cpim: false,
            imdn: Vec::new(),
        }
    }
}

/// How a sent message was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOutcome {
    /// The 2xx status (200 delivered, 202 accepted for later delivery).
    pub status: u16,
    /// Its reason phrase.
    pub reason: String,
    /// True for 202 Accepted: a server stored the message for an offline recipient.
    pub stored: bool,
    /// The message's identity: the CPIM `imdn.Message-ID`, else the Call-ID.
    pub message_id: String,
    /// The Call-ID of the MESSAGE.
    pub call_id: String,
    /// When it was sent (RFC 3339 UTC).
    pub datetime: String,
}

/// An instant message we received (already answered 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The sender's URI (From, or the CPIM From when it is a SIP URI).
    pub from: String,
    /// The sender's display name, when given.
    pub from_display: Option<String>,
    /// The recipient URI (To).
    pub to: String,
    /// The content type of `body` (the inner type of a CPIM message).
    pub content_type: String,
    /// The content (unwrapped from CPIM).
    pub body: Bytes,
    /// Its identity: `imdn.Message-ID`, else `Tandem-Stored-Id`, else the Call-ID.
    pub message_id: String,
    /// The notifications the sender asked for (CPIM `imdn.Disposition-Notification`).
    pub imdn_requested: Vec<Disposition>,
    /// The CPIM DateTime, else the SIP Date header, when present.
    pub datetime: Option<String>,
    /// The lab server's stored-message id when it was stored and forwarded.
    pub stored_id: Option<String>,
    /// The Call-ID of the MESSAGE.
    pub call_id: String,
    /// Whether it came wrapped in `message/cpim`.
    pub cpim: bool,
}

impl ReceivedMessage {
    /// The body as text, for `text/*` content.
    pub fn text(&self) -> Option<String> {
        base_type(&self.content_type)
            .starts_with("text/")
            .then(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// Per-UA IM state: recently seen message ids and the accounts known for auto-IMDN.
#[derive(Debug, Default)]
pub(crate) struct ImState {
    seen: HashSet<String>,
    order: VecDeque<String>,
    accounts: Vec<Account>,
}

impl ImState {
    /// Records `key`; false when it was already seen.
    fn first_time(&mut self, key: &str) -> bool {
        if self.seen.contains(key) {
            return false;
        }
        self.seen.insert(key.to_string());
        self.order.push_back(key.to_string());
        while self.order.len() > DEDUPE_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// Remembers an account (for notifications sent on its behalf).
    pub fn remember_account(&mut self, account: &Account) {
        self.accounts
            .retain(|a| !(a.user == account.user && a.domain == account.domain));
        self.accounts.push(account.clone());
        if self.accounts.len() > 64 {
            self.accounts.remove(0);
        }
    }

    /// The account whose AoR is `uri` (user and host compared), if known.
    fn account_for(&self, uri: &Uri) -> Option<Account> {
        let user = uri.user.as_deref()?;
        self.accounts
            .iter()
            .find(|a| {
                a.user == user
                    && a.domain
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .eq_ignore_ascii_case(&uri.host.to_string())
            })
            .or_else(|| self.accounts.iter().find(|a| a.user == user))
            .cloned()
    }
}

/// The media type without parameters, lowercased.
pub(crate) fn base_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Now as an RFC 3339 UTC date-time.
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    format_rfc3339(secs)
}

/// Builds and sends one out-of-dialog MESSAGE; returns the final response.
async fn send_raw(
    shared: &Arc<Shared>,
    account: &Account,
    to: &Uri,
    content_type: &str,
    body: Bytes,
    call_id: &str,
) -> Result<Response> {
    let aor = account.aor()?;
    let mut req = initial_request(
        Method::Message,
        to,
        account,
        &aor,
        &shared.tag(),
        call_id,
        None,
    );
    let h = &mut req.headers;
    h.push(HeaderName::ContentType, content_type.to_string());
    h.push(HeaderName::UserAgent, shared.config.user_agent.clone());
    req.body = body;
    let mut auth = AuthSession::for_account(account);
    shared
        .send(req, Target::Uri(account.next_hop(to)), Some(&mut auth))
        .await
}

/// Sends a message (see [`UserAgent::send_message`](crate::UserAgent::send_message)).
pub(crate) async fn send_message(
    shared: &Arc<Shared>,
    account: &Account,
    to: Uri,
    message: OutgoingMessage,
) -> Result<MessageOutcome> {
    shared.im().remember_account(account);
    if message.body.len() > MAX_BODY {
        return Err(UaError::Config(format!(
            "message body of {} bytes exceeds {MAX_BODY}",
            message.body.len()
        )));
    }
    if !message.imdn.is_empty() && !message.cpim {
        return Err(UaError::Config(
            "IMDN requests need a message/cpim message".into(),
        ));
    }
    let call_id = shared.call_id();
    let datetime = now_rfc3339();
    let (content_type, body, message_id) = if message.cpim {
        let aor = account.aor()?;
        let message_id = shared.token(20);
        let mut cpim = CpimMessage::new(
            &name_addr_header(account.display_name.as_deref(), &aor),
            &format!("<{to}>"),
            Some(&datetime),
            &message.content_type,
            message.body.clone(),
        );
        cpim.set_imdn(&message_id, &message.imdn);
        (MESSAGE_CPIM.to_string(), cpim.to_bytes(), message_id)
    } else {
        (
            message.content_type.clone(),
            message.body.clone(),
            call_id.clone(),
        )
    };
    let mut outcome = MessageOutcome {
        status: 0,
        reason: String::new(),
        stored: false,
        message_id,
        call_id: call_id.clone(),
        datetime,
    };
    // Recorded before sending, so a notification racing the 2xx finds the row.
    let history = shared.history();
    if let Some(h) = &history {
        let record = crate::history::MessageRecord::outgoing(
            account,
            &to,
            &message.content_type,
            &message.body,
            &outcome,
        );
        if let Err(e) = h.record_message(&record).await {
            tracing::warn!("cannot record a sent message in the history: {e}");
        }
    }
    let result = send_raw(shared, account, &to, &content_type, body, &call_id).await;
    let final_status = match &result {
        Ok(r) if (200..300).contains(&r.status) => {
            if r.status == 202 {
                "stored"
            } else {
                "sent"
            }
        }
        _ => "failed",
    };
    if let Some(h) = &history
        && let Err(e) = h
            .advance_message_status(&outcome.message_id, "sending", final_status)
            .await
    {
        tracing::warn!("cannot update a sent message in the history: {e}");
    }
    let response = result?;
    expect_2xx(&response)?;
    outcome.status = response.status;
    outcome.reason = response.reason.clone();
    outcome.stored = response.status == 202;
    Ok(outcome)
}

/// Sends an is-composing indication (see [`UserAgent::send_composing`](crate::UserAgent::send_composing)).
pub(crate) async fn send_composing(
    shared: &Arc<Shared>,
    account: &Account,
    to: Uri,
    state: ComposingState,
    refresh: Option<u32>,
) -> Result<()> {
    let mut doc = match state {
        ComposingState::Active => IsComposing::active(refresh),
        ComposingState::Idle => IsComposing::idle(),
    };
    doc.lastactive = Some(now_rfc3339());
    let call_id = shared.call_id();
    let response = send_raw(
        shared,
        account,
        &to,
        ISCOMPOSING,
        Bytes::from(doc.to_xml()),
        &call_id,
    )
    .await?;
    expect_2xx(&response)
}

/// Sends a disposition notification about `message` to its sender.
pub(crate) async fn send_imdn(
    shared: &Arc<Shared>,
    account: &Account,
    message: &ReceivedMessage,
    notification: Notification,
) -> Result<()> {
    let doc = Imdn {
        recipient_uri: Some(account.aor()?.to_string()),
        ..Imdn::new(
            &message.message_id,
            message.datetime.as_deref().unwrap_or(""),
            notification,
        )
    };
    if !message.imdn_requested.contains(&doc.disposition()) {
        return Err(UaError::Config(format!(
            "the message did not ask for a {} notification",
            doc.disposition().as_str()
        )));
    }
    let to = crate::account::parse_uri(&message.from)?;
    let aor = account.aor()?;
    let mut cpim = CpimMessage::new(
        &name_addr_header(account.display_name.as_deref(), &aor),
        &format!("<{to}>"),
        Some(&now_rfc3339()),
        MESSAGE_IMDN,
        Bytes::from(doc.to_xml()),
    );
    // RFC 5438 §7.1.1: a notification has its own Message-ID and asks for nothing.
    cpim.set_imdn(&shared.token(20), &[]);
    cpim.content_headers
        .push(("Content-Disposition".into(), "notification".into()));
    let call_id = shared.call_id();
    let response = send_raw(
        shared,
        account,
        &to,
        MESSAGE_CPIM,
        cpim.to_bytes(),
        &call_id,
    )
    .await?;
    expect_2xx(&response)
}

/// The history status a notification sets on the message it is about.
pub(crate) fn imdn_status(n: &Notification) -> &'static str {
    use tandem_proto::simple::imdn::{DeliveryStatus, DisplayStatus, ProcessingStatus};
    match n {
        Notification::Delivery(DeliveryStatus::Delivered) => "delivered",
        Notification::Delivery(_) => "delivery-failed",
        Notification::Display(DisplayStatus::Displayed) => "displayed",
        Notification::Display(_) => "display-failed",
        Notification::Processing(ProcessingStatus::Processed) => "processed",
        Notification::Processing(ProcessingStatus::Stored) => "stored",
        Notification::Processing(_) => "processing-failed",
    }
}

/// What an incoming MESSAGE turned out to be.
enum Incoming {
    Message(ReceivedMessage),
    Composing { from: String, state: IsComposing },
    Imdn { from: String, imdn: Imdn },
}

/// Parses an isComposing document (RFC 3994) sent by `from`; 400 when malformed.
fn composing(from: String, body: &[u8]) -> std::result::Result<Incoming, (u16, String)> {
    let state =
        IsComposing::parse(body).map_err(|e| (400, format!("Bad isComposing Document ({e})")))?;
    Ok(Incoming::Composing { from, state })
}

/// Answers `request` with `status` and a reason.
fn answer(shared: &Shared, tx: TxId, request: &Request, status: u16, reason: &str) {
    let mut r = Response::for_request(request, status);
    r.reason = reason.into();
    if status == 415 {
        r.headers.push(HeaderName::Accept, MESSAGE_ACCEPT);
    }
    if request.headers.to().ok().is_some_and(|t| t.tag().is_none()) {
        crate::request::add_to_tag(&mut r, &shared.tag());
    }
    shared.respond(tx, r);
}

/// Handles an out-of-dialog MESSAGE: 200 and an event, 415 for content we do not take, 400
/// for malformed content; a duplicate is answered 200 and dropped.
pub(crate) fn on_message(shared: &Arc<Shared>, tx: TxId, request: Request) {
    let parsed = match classify(&request) {
        Ok(p) => p,
        Err((status, reason)) => {
            tracing::debug!(status, %reason, "refusing a MESSAGE");
            answer(shared, tx, &request, status, &reason);
            return;
        }
    };
    if let Incoming::Message(m) = &parsed {
        let mut keys: Vec<String> = [m.stored_id.as_ref(), Some(&m.message_id)]
            .into_iter()
            .flatten()
            .map(|id| format!("{}\u{0}{id}", m.from))
            .collect();
        keys.dedup();
        let mut im = shared.im();
        let fresh: Vec<bool> = keys.iter().map(|k| im.first_time(k)).collect();
        if fresh.iter().any(|f| !f) {
            drop(im);
            tracing::debug!(message_id = %m.message_id, "duplicate MESSAGE dropped");
            answer(shared, tx, &request, 200, "OK");
            return;
        }
    }
    answer(shared, tx, &request, 200, "OK");
    match parsed {
        Incoming::Message(m) => {
            let auto = shared.config.auto_delivery_imdn
                && m.imdn_requested.contains(&Disposition::PositiveDelivery);
            shared.record_received(crate::history::MessageRecord::incoming(&m));
            if auto {
                let shared2 = shared.clone();
                let m2 = m.clone();
                tokio::spawn(async move {
                    let account = crate::account::parse_uri(&m2.to)
                        .ok()
                        .and_then(|to| shared2.im().account_for(&to));
                    match account {
                        Some(a) => {
                            let n = Notification::Delivery(
                                tandem_proto::simple::imdn::DeliveryStatus::Delivered,
                            );
                            if let Err(e) = send_imdn(&shared2, &a, &m2, n).await {
                                tracing::debug!("delivery notification not sent: {e}");
                            }
                        }
                        None => tracing::debug!(
                            to = %m2.to,
                            "no known account for a delivery notification"
                        ),
                    }
                });
            }
            shared.emit_ua(UaEvent::Message(m));
        }
        Incoming::Composing { from, state } => {
            shared.emit_ua(UaEvent::Composing { from, state });
        }
        Incoming::Imdn { from, imdn } => {
            if let Some(h) = shared.history() {
                let status = imdn_status(&imdn.notification);
                let id = imdn.message_id.clone();
                tokio::spawn(async move {
                    if let Err(e) = h.set_message_status(&id, status).await {
                        tracing::warn!("cannot record a notification: {e}");
                    }
                });
            }
            shared.emit_ua(UaEvent::Imdn { from, imdn });
        }
    }
}

/// Parses an incoming MESSAGE into what it carries, or the error status to answer.
fn classify(request: &Request) -> std::result::Result<Incoming, (u16, String)> {
    let bad = |s: &str| (400u16, s.to_string());
    let from = request.headers.from().map_err(|_| bad("Bad From Header"))?;
    let to = request.headers.to().map_err(|_| bad("Bad To Header"))?;
    let call_id = request
        .headers
        .call_id()
        .map_err(|_| bad("Bad Call-ID"))?
        .to_string();
    if request.body.len() > MAX_BODY {
        return Err((413, "Request Entity Too Large".into()));
    }
    let content_type = request
        .headers
        .content_type()
        .map(str::to_string)
        .unwrap_or_default();
    let stored_id = request
        .headers
        .get_str(&HeaderName::parse(STORED_ID_HEADER))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let date = request
        .headers
        .get_str(&HeaderName::parse("Date"))
        .map(str::to_string);
    let from_uri = from.uri.to_string();
    let ty = base_type(&content_type);
    let mut message = ReceivedMessage {
        from: from_uri.clone(),
        from_display: from.display.clone(),
        to: to.uri.to_string(),
        content_type: content_type.clone(),
        body: request.body.clone(),
        message_id: stored_id.clone().unwrap_or_else(|| call_id.clone()),
        imdn_requested: Vec::new(),
        datetime: date,
        stored_id,
        call_id,
        cpim: false,
    };
    match ty.as_str() {
        t if t.starts_with("text/") => Ok(Incoming::Message(message)),
        ISCOMPOSING => composing(from_uri, &request.body),
        MESSAGE_CPIM => {
            let cpim = CpimMessage::parse(&request.body)
                .map_err(|e| (400, format!("Bad CPIM Message ({e})")))?;
            let inner = cpim.content_type.clone().unwrap_or_default();
            let inner_ty = base_type(&inner);
            match inner_ty.as_str() {
                MESSAGE_IMDN => {
                    let imdn = Imdn::parse(&cpim.body)
                        .map_err(|e| (400, format!("Bad IMDN Document ({e})")))?;
                    Ok(Incoming::Imdn {
                        from: from_uri,
                        imdn,
                    })
                }
                ISCOMPOSING => composing(from_uri, &cpim.body),
                t if t.starts_with("text/") => {
                    if let Some(id) = cpim.imdn_message_id() {
                        message.message_id = id.to_string();
                    }
                    message.imdn_requested = cpim.imdn_disposition_notification();
                    if cpim.datetime.is_some() {
                        message.datetime = cpim.datetime.clone();
                    }
                    message.content_type = inner;
                    message.body = cpim.body.clone();
                    message.cpim = true;
                    Ok(Incoming::Message(message))
                }
                _ => Err((415, "Unsupported Media Type".into())),
            }
        }
        _ => Err((415, "Unsupported Media Type".into())),
    }
}
