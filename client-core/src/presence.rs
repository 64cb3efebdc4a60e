//! Presence: publication of our state (PUBLISH, RFC 3903, PIDF RFC 3863 + RPID RFC 4480)
//! with SIP-ETag refresh/modify/remove, and subscriptions (SUBSCRIBE/NOTIFY, RFC 6665) to
//! the `presence` (RFC 3856) and `presence.winfo` (RFC 3857/3858) event packages, refreshed
//! before expiry and re-established after termination as RFC 6665 §4.1.3 allows; and
//! subscriptions to resource lists (RFC 4662: `Supported: eventlist`, NOTIFYs with a
//! `multipart/related` body of RLMI + one PIDF part per resource).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_net::Target;
use tandem_proto::dialog::Dialog;
use tandem_proto::msg::{HeaderName, Method, Request, Response, Uri};
use tandem_proto::simple::multipart;
use tandem_proto::simple::pidf::{self, Availability, Presence};
use tandem_proto::simple::rlmi::{InstanceState, Rlmi};
use tandem_proto::simple::watcherinfo::WatcherInfo;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::account::Account;
use crate::call::request_next_hop;
use crate::error::{Result, UaError};
use crate::request::{AuthSession, expect_2xx, initial_request};
use crate::ua::{DialogInput, DialogKey, Shared};

/// `application/pidf+xml` (RFC 3863).
pub const PIDF: &str = "application/pidf+xml";
/// `application/watcherinfo+xml` (RFC 3858).
pub const WATCHERINFO: &str = "application/watcherinfo+xml";
/// `application/rlmi+xml` (RFC 4662).
pub const RLMI: &str = "application/rlmi+xml";
/// `multipart/related` (RFC 2387), the body type of resource-list NOTIFYs.
pub const MULTIPART_RELATED: &str = "multipart/related";
/// Default publication and subscription expiry asked for, in seconds.
pub const PRESENCE_EXPIRES: u32 = 600;
/// How many 423 Interval Too Brief answers one request follows.
const MAX_423: u32 = 3;
/// First delay before retrying a failed refresh or re-subscription; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Longest delay between retries.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// When to refresh something granted for `secs` seconds: at 3/4 of it, at least 1 s away.
fn refresh_delay(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs) * 3 / 4).max(Duration::from_secs(1))
}

/// Something that happened to a publication in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishEvent {
    /// A refresh was accepted; the publication now expires in `expires` seconds.
    Refreshed {
        /// Granted expiry in seconds.
        expires: u32,
    },
    /// The server had forgotten our entity tag (412): the full state was published again.
    Republished,
    /// A refresh failed; it is retried with back-off.
    RefreshFailed(UaError),
}

#[derive(Debug)]
struct PubState {
    account: Account,
    aor: Uri,
    auth: AuthSession,
    etag: Option<String>,
    expires: u32,
    document: Bytes,
    refresh_at: Instant,
}

/// Our published presence (RFC 3903): refreshed in the background until
/// [`Publication::remove`]; dropping it stops refreshing (the state then expires).
#[derive(Debug)]
pub struct Publication {
    shared: Arc<Shared>,
    state: Arc<Mutex<PubState>>,
    events: mpsc::UnboundedReceiver<PublishEvent>,
    refresher: JoinHandle<()>,
}

impl Drop for Publication {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// Sends one PUBLISH for `st` (with `body` or as a refresh), following 423s; returns the
/// final response and records the new entity tag and expiry on success.
async fn publish_once(
    shared: &Arc<Shared>,
    st: &mut PubState,
    body: Option<Bytes>,
    expires: u32,
) -> Result<Response> {
    let mut expires = expires;
    let mut too_brief = 0;
    loop {
        let mut req = initial_request(
            Method::Publish,
            &st.aor,
            &st.account,
            &st.aor,
            &shared.tag(),
            &shared.call_id(),
            None,
        );
        let h = &mut req.headers;
        h.push(HeaderName::parse("Event"), "presence");
        h.push(HeaderName::Expires, expires.to_string());
        if let Some(etag) = &st.etag {
            h.push(HeaderName::parse("SIP-If-Match"), etag.clone());
        }
        h.push(HeaderName::UserAgent, shared.config.user_agent.clone());
        if let Some(b) = &body {
            h.push(HeaderName::ContentType, PIDF);
            req.body = b.clone();
        }
        let hop = st.account.next_hop(&st.aor);
        let response = shared
            .send(req, Target::Uri(hop), Some(&mut st.auth))
            .await?;
        if response.status == 423 && too_brief < MAX_423 {
            too_brief += 1;
            let min = response
                .headers
                .get_str(&HeaderName::parse("Min-Expires"))
                .and_then(|v| v.trim().parse::<u32>().ok());
            match min {
                Some(m) if m > expires => {
                    expires = m;
                    continue;
                }
                _ => return Ok(response),
            }
        }
        if (200..300).contains(&response.status) {
            if let Some(etag) = response.headers.get_str(&HeaderName::parse("SIP-ETag")) {
                st.etag = Some(etag.trim().to_string());
            }
            let granted = response.headers.expires().ok().flatten().unwrap_or(expires);
            st.expires = granted;
            st.refresh_at = Instant::now() + refresh_delay(granted);
        }
        return Ok(response);
    }
}

/// Publishes `document`, with a fresh publication when the server forgot our entity tag.
async fn publish_document(shared: &Arc<Shared>, st: &mut PubState, document: Bytes) -> Result<()> {
    let expires = st.account_expires();
    let response = publish_once(shared, st, Some(document.clone()), expires).await?;
    let response = if response.status == 412 {
        st.etag = None;
        publish_once(shared, st, Some(document.clone()), expires).await?
    } else {
        response
    };
    expect_2xx(&response)?;
    if st.etag.is_none() {
        return Err(UaError::Protocol(
            "a 2xx to PUBLISH without SIP-ETag".into(),
        ));
    }
    st.document = document;
    Ok(())
}

impl PubState {
    fn account_expires(&self) -> u32 {
        if self.expires == 0 {
            PRESENCE_EXPIRES
        } else {
            self.expires.max(PRESENCE_EXPIRES)
        }
    }
}

impl Publication {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        account: Account,
        presence: Presence,
    ) -> Result<Publication> {
        let aor = account.aor()?;
        let mut st = PubState {
            auth: AuthSession::for_account(&account),
            account,
            aor,
            etag: None,
            expires: PRESENCE_EXPIRES,
            document: Bytes::new(),
            refresh_at: Instant::now(),
        };
        publish_document(&shared, &mut st, Bytes::from(presence.to_xml())).await?;
        let state = Arc::new(Mutex::new(st));
        let (events_tx, events) = mpsc::unbounded_channel();
        let refresher = tokio::spawn(refresh_loop(shared.clone(), state.clone(), events_tx));
        Ok(Publication {
            shared,
            state,
            events,
            refresher,
        })
    }

    /// The current entity tag (SIP-ETag) of the publication.
    pub async fn etag(&self) -> Option<String> {
        self.state.lock().await.etag.clone()
    }

    /// The expiry granted by the server for the current publication, in seconds.
    pub async fn expires(&self) -> u32 {
        self.state.lock().await.expires
    }

    /// Replaces the published state (PUBLISH with SIP-If-Match and a new body).
    pub async fn modify(&self, availability: Availability, note: Option<&str>) -> Result<()> {
        let mut st = self.state.lock().await;
        let entity = st.aor.to_string();
        let doc = availability.to_presence(&entity, note);
        publish_document(&self.shared, &mut st, Bytes::from(doc.to_xml())).await
    }

    /// Replaces the published state with any PIDF document.
    pub async fn modify_presence(&self, presence: &Presence) -> Result<()> {
        let mut st = self.state.lock().await;
        publish_document(&self.shared, &mut st, Bytes::from(presence.to_xml())).await
    }

    /// Removes the publication (PUBLISH with Expires 0) and stops refreshing.
    pub async fn remove(self) -> Result<()> {
        self.refresher.abort();
        let mut st = self.state.lock().await;
        if st.etag.is_none() {
            return Ok(());
        }
        let response = publish_once(&self.shared, &mut st, None, 0).await?;
        st.etag = None;
        // 412: the server already forgot it, which is what we wanted.
        if (200..300).contains(&response.status) || response.status == 412 {
            Ok(())
        } else {
            Err(UaError::rejected(response.status, response.reason))
        }
    }

    /// The next background event (refreshes, failures); `None` once stopped.
    pub async fn next_event(&mut self) -> Option<PublishEvent> {
        self.events.recv().await
    }
}

async fn refresh_loop(
    shared: Arc<Shared>,
    state: Arc<Mutex<PubState>>,
    events: mpsc::UnboundedSender<PublishEvent>,
) {
    let mut retry = FIRST_RETRY;
    loop {
        let at = state.lock().await.refresh_at;
        sleep_until(at).await;
        let mut st = state.lock().await;
        if Instant::now() < st.refresh_at {
            continue; // modified meanwhile: a later refresh time
        }
        let expires = st.account_expires();
        let outcome = match publish_once(&shared, &mut st, None, expires).await {
            Ok(r) if (200..300).contains(&r.status) => Ok(PublishEvent::Refreshed {
                expires: st.expires,
            }),
            Ok(r) if r.status == 412 => {
                st.etag = None;
                let doc = st.document.clone();
                publish_document(&shared, &mut st, doc)
                    .await
                    .map(|()| PublishEvent::Republished)
            }
            Ok(r) => Err(UaError::rejected(r.status, r.reason)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(ev) => {
                retry = FIRST_RETRY;
                let _ = events.send(ev);
            }
            Err(e) => {
                tracing::warn!(aor = %st.aor, "presence refresh failed: {e}");
                st.refresh_at = Instant::now() + retry;
                retry = (retry * 2).min(MAX_RETRY);
                let _ = events.send(PublishEvent::RefreshFailed(e));
            }
        }
    }
}

/// The state of a subscription from a NOTIFY's `Subscription-State` (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    /// `active`, `pending`, `terminated` (or an extension value), lowercased.
    pub state: String,
    /// `expires=` in seconds.
    pub expires: Option<u32>,
    /// `reason=` (terminated): deactivated, probation, rejected, timeout, giveup, noresource, ….
    pub reason: Option<String>,
    /// `retry-after=` in seconds.
    pub retry_after: Option<u32>,
}

impl SubscriptionState {
    /// Parses a `Subscription-State` header value.
    pub fn parse(value: &str) -> Option<SubscriptionState> {
        let mut parts = value.split(';');
        let state = parts.next()?.trim().to_ascii_lowercase();
        if state.is_empty() {
            return None;
        }
        let mut s = SubscriptionState {
            state,
            expires: None,
            reason: None,
            retry_after: None,
        };
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "expires" => s.expires = v.parse().ok(),
                "reason" => s.reason = Some(v.to_ascii_lowercase()),
                "retry-after" => s.retry_after = v.parse().ok(),
                _ => {}
            }
        }
        Some(s)
    }
}

/// What a presence subscription reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PresenceEvent {
    /// The presentity's state (from a NOTIFY with a PIDF body).
    State(Presence),
    /// The subscription awaits the presentity's authorization.
    Pending,
    /// The subscription ended; it is re-established automatically unless `final_` is true.
    Terminated {
        /// The reason given by the notifier (or our error), if any.
        reason: Option<String>,
        /// When the notifier allows a new attempt, in seconds.
        retry_after: Option<u32>,
        /// True when no new attempt will be made (rejected, noresource, 4xx to SUBSCRIBE).
        final_: bool,
    },
}

/// What a watcher-info subscription reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WinfoEvent {
    /// A watcher-info document (full or partial state, as its `state` says).
    Info(WatcherInfo),
    /// The subscription awaits authorization.
    Pending,
    /// The subscription ended (see [`PresenceEvent::Terminated`]).
    Terminated {
        /// The reason given by the notifier (or our error), if any.
        reason: Option<String>,
        /// When the notifier allows a new attempt, in seconds.
        retry_after: Option<u32>,
        /// True when no new attempt will be made.
        final_: bool,
    },
}

/// Which event package a subscription is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Package {
    Presence,
    Winfo,
    /// `presence` of a resource list (RFC 4662).
    List,
}

impl Package {
    fn event(self) -> &'static str {
        match self {
            Package::Presence | Package::List => "presence",
            Package::Winfo => "presence.winfo",
        }
    }
    fn accept(self) -> &'static str {
        match self {
            Package::Presence => PIDF,
            Package::Winfo => WATCHERINFO,
            Package::List => "multipart/related, application/rlmi+xml, application/pidf+xml",
        }
    }
}

/// What the subscription task reports, before typing per package.
#[derive(Debug)]
enum RawEvent {
    Body {
        content_type: String,
        body: Bytes,
    },
    Pending,
    Terminated {
        reason: Option<String>,
        retry_after: Option<u32>,
        final_: bool,
    },
}

/// A commands to the subscription task.
#[derive(Debug)]
enum Command {
    Unsubscribe,
}

/// The machinery shared by presence and watcher-info subscriptions.
#[derive(Debug)]
struct SubscriptionCore {
    events: mpsc::UnboundedReceiver<RawEvent>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl SubscriptionCore {
    fn start(shared: Arc<Shared>, account: Account, target: Uri, package: Package) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_subscription(
            shared,
            account,
            target,
            package,
            events_tx,
            commands_rx,
        ));
        SubscriptionCore {
            events,
            commands,
            task,
        }
    }

    async fn unsubscribe(self) {
        let _ = self.commands.send(Command::Unsubscribe);
        let mut task = self.task;
        if timeout(Duration::from_secs(10), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// A subscription to a presentity's state (RFC 3856); un-subscribes when dropped.
#[derive(Debug)]
pub struct PresenceSubscription {
    core: SubscriptionCore,
}

impl PresenceSubscription {
    pub(crate) fn start(shared: Arc<Shared>, account: Account, target: Uri) -> Self {
        PresenceSubscription {
            core: SubscriptionCore::start(shared, account, target, Package::Presence),
        }
    }

    /// The next event; `None` after a final termination or un-subscription.
    pub async fn next(&mut self) -> Option<PresenceEvent> {
        loop {
            let ev = self.core.events.recv().await?;
            return Some(match ev {
                RawEvent::Body { content_type, body } => {
                    if crate::im::base_type(&content_type) != PIDF {
                        tracing::debug!(%content_type, "presence NOTIFY body ignored");
                        continue;
                    }
                    match pidf::parse(&body) {
                        Ok(p) => PresenceEvent::State(p),
                        Err(e) => {
                            tracing::warn!("unreadable PIDF in NOTIFY: {e}");
                            continue;
                        }
                    }
                }
                RawEvent::Pending => PresenceEvent::Pending,
                RawEvent::Terminated {
                    reason,
                    retry_after,
                    final_,
                } => PresenceEvent::Terminated {
                    reason,
                    retry_after,
                    final_,
                },
            });
        }
    }

    /// Ends the subscription (SUBSCRIBE with Expires 0) and waits for the final NOTIFY.
    pub async fn unsubscribe(self) {
        self.core.unsubscribe().await;
    }
}

/// A subscription to our own watcher list (RFC 3857); un-subscribes when dropped.
#[derive(Debug)]
pub struct WinfoSubscription {
    core: SubscriptionCore,
}

impl WinfoSubscription {
    pub(crate) fn start(shared: Arc<Shared>, account: Account, target: Uri) -> Self {
        WinfoSubscription {
            core: SubscriptionCore::start(shared, account, target, Package::Winfo),
        }
    }

    /// The next event; `None` after a final termination or un-subscription.
    pub async fn next(&mut self) -> Option<WinfoEvent> {
        loop {
            let ev = self.core.events.recv().await?;
            return Some(match ev {
                RawEvent::Body { content_type, body } => {
                    if crate::im::base_type(&content_type) != WATCHERINFO {
                        continue;
                    }
                    match WatcherInfo::parse(&body) {
                        Ok(w) => WinfoEvent::Info(w),
                        Err(e) => {
                            tracing::warn!("unreadable watcher-info in NOTIFY: {e}");
                            continue;
                        }
                    }
                }
                RawEvent::Pending => WinfoEvent::Pending,
                RawEvent::Terminated {
                    reason,
                    retry_after,
                    final_,
                } => WinfoEvent::Terminated {
                    reason,
                    retry_after,
                    final_,
                },
            });
        }
    }

    /// Ends the subscription (SUBSCRIBE with Expires 0) and waits for the final NOTIFY.
    pub async fn unsubscribe(self) {
        self.core.unsubscribe().await;
    }
}

/// The state of one resource of a list, from an RLMI `<resource>` and its PIDF part.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResource {
    /// The resource's URI.
    pub uri: String,
    /// Its first `<name>`, if the list gives one.
    pub name: Option<String>,
    /// The state of the RLS's subscription to it (`Pending` while the resource has not
    /// authorized us; `Terminated` with a reason when refused or gone).
    pub instance: InstanceState,
    /// Why the instance was terminated, if it was.
    pub reason: Option<String>,
    /// Its presence document, when the NOTIFY carried one.
    pub presence: Option<Presence>,
}

/// One resource-list NOTIFY (RFC 4662): the list's meta-information and the resources it
/// reported (all of them when `full_state`, else only those that changed).
#[derive(Debug, Clone, PartialEq)]
pub struct ListState {
    /// The list's URI.
    pub uri: String,
    /// RLMI version (increments per NOTIFY of the subscription).
    pub version: u32,
    /// Whether this NOTIFY has the full state of the list.
    pub full_state: bool,
    /// The resources reported.
    pub resources: Vec<ListResource>,
}

/// What a resource-list subscription reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ListEvent {
    /// A list NOTIFY (or, from a notifier that treated the URI as a single presentity, a
    /// one-resource list built from a plain PIDF NOTIFY).
    State(ListState),
    /// The subscription awaits authorization.
    Pending,
    /// The subscription ended (see [`PresenceEvent::Terminated`]).
    Terminated {
        /// The reason given by the notifier (or our error), if any.
        reason: Option<String>,
        /// When the notifier allows a new attempt, in seconds.
        retry_after: Option<u32>,
        /// True when no new attempt will be made.
        final_: bool,
    },
}

/// Why a resource-list NOTIFY body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListBodyError {
    /// The body type is neither `multipart/related`, RLMI nor PIDF.
    #[error("unexpected list NOTIFY body type {0}")]
    UnexpectedType(String),
    /// A `multipart/related` body without a boundary parameter.
    #[error("multipart/related without a boundary")]
    NoBoundary,
    /// The multipart body, the RLMI root or a PIDF part is malformed.
    #[error("malformed list NOTIFY body: {0}")]
    Malformed(String),
}

/// A Content-ID without angle brackets or spaces.
fn bare_cid(cid: &str) -> &str {
    cid.trim().trim_start_matches('<').trim_end_matches('>')
}

/// Reads a resource-list NOTIFY body (RFC 4662 §5): `multipart/related` with an RLMI root part
/// (the `start` part, else the first) and a part per resource instance, referenced by `cid`.
/// A plain PIDF body becomes a one-resource list; a bare RLMI body a list without states.
pub fn parse_list_body(
    content_type: &str,
    body: &[u8],
) -> std::result::Result<ListState, ListBodyError> {
    let base = crate::im::base_type(content_type);
    if base == PIDF {
        let p = pidf::parse(body).map_err(|e| ListBodyError::Malformed(e.to_string()))?;
        return Ok(ListState {
            uri: p.entity.clone(),
            version: 0,
            full_state: true,
            resources: vec![ListResource {
                uri: p.entity.clone(),
                name: None,
                instance: InstanceState::Active,
                reason: None,
                presence: Some(p),
            }],
        });
    }
    let (rlmi, parts) = if base == RLMI {
        (
            Rlmi::parse(body).map_err(|e| ListBodyError::Malformed(e.to_string()))?,
            Vec::new(),
        )
    } else if base == MULTIPART_RELATED {
        let boundary = multipart::content_type_param(content_type, "boundary")
            .ok_or(ListBodyError::NoBoundary)?;
        let parts = multipart::parse(body, &boundary)
            .map_err(|e| ListBodyError::Malformed(e.to_string()))?;
        let start = multipart::content_type_param(content_type, "start");
        let root_index = start
            .as_deref()
            .and_then(|s| {
                parts
                    .iter()
                    .position(|p| p.content_id().map(bare_cid) == Some(bare_cid(s)))
            })
            .unwrap_or(0);
        let root = parts
            .get(root_index)
            .ok_or_else(|| ListBodyError::Malformed("no parts".into()))?;
        if crate::im::base_type(root.content_type()) != RLMI {
            return Err(ListBodyError::Malformed(format!(
                "root part is {}, not RLMI",
                root.content_type()
            )));
        }
        let rlmi = Rlmi::parse(&root.body).map_err(|e| ListBodyError::Malformed(e.to_string()))?;
        (rlmi, parts)
    } else {
        return Err(ListBodyError::UnexpectedType(base));
    };
    let mut resources = Vec::with_capacity(rlmi.resources.len());
    for r in &rlmi.resources {
        // The most useful instance: an active one with a state, else the first.
        let instance = r
            .instances
            .iter()
            .find(|i| i.state == InstanceState::Active && i.cid.is_some())
            .or_else(|| r.instances.first());
        let presence = match instance.and_then(|i| i.cid.as_deref()) {
            Some(cid) => {
                let part = parts
                    .iter()
                    .find(|p| p.content_id().map(bare_cid) == Some(bare_cid(cid)));
                match part {
                    Some(p) if crate::im::base_type(p.content_type()) == PIDF => {
                        Some(pidf::parse(&p.body).map_err(|e| {
                            ListBodyError::Malformed(format!("PIDF of {}: {e}", r.uri))
                        })?)
                    }
                    Some(_) => None,
                    None => {
                        return Err(ListBodyError::Malformed(format!(
                            "no part with Content-ID {cid} for {}",
                            r.uri
                        )));
                    }
                }
            }
            None => None,
        };
        resources.push(ListResource {
            uri: r.uri.clone(),
            name: r.names.first().map(|n| n.text.clone()),
            instance: instance.map_or(InstanceState::Pending, |i| i.state.clone()),
            reason: instance.and_then(|i| i.reason.clone()),
            presence,
        });
    }
    Ok(ListState {
        uri: rlmi.uri,
        version: rlmi.version,
        full_state: rlmi.full_state,
        resources,
    })
}

/// A subscription to a resource list (RFC 4662, `presence` with `Supported: eventlist`);
/// un-subscribes when dropped.
#[derive(Debug)]
pub struct ListSubscription {
    core: SubscriptionCore,
}

impl ListSubscription {
    pub(crate) fn start(shared: Arc<Shared>, account: Account, list: Uri) -> Self {
        ListSubscription {
            core: SubscriptionCore::start(shared, account, list, Package::List),
        }
    }

    /// The next event; `None` after a final termination or un-subscription.
    pub async fn next(&mut self) -> Option<ListEvent> {
        loop {
            let ev = self.core.events.recv().await?;
            return Some(match ev {
                RawEvent::Body { content_type, body } => {
                    match parse_list_body(&content_type, &body) {
                        Ok(state) => ListEvent::State(state),
                        Err(e) => {
                            tracing::warn!("unreadable resource-list NOTIFY: {e}");
                            continue;
                        }
                    }
                }
                RawEvent::Pending => ListEvent::Pending,
                RawEvent::Terminated {
                    reason,
                    retry_after,
                    final_,
                } => ListEvent::Terminated {
                    reason,
                    retry_after,
                    final_,
                },
            });
        }
    }

    /// Ends the subscription (SUBSCRIBE with Expires 0) and waits for the final NOTIFY.
    pub async fn unsubscribe(self) {
        self.core.unsubscribe().await;
    }
}

/// How a subscription attempt or dialog ended.
enum Ended {
    /// Stop for good (unsubscribed, dropped, or final termination).
    Stop,
    /// Subscribe again after this delay.
    Retry(Duration),
}

/// The retry decision of RFC 6665 §4.1.3 for a `terminated` reason.
fn retry_for(reason: Option<&str>, retry_after: Option<u32>) -> Option<Duration> {
    let after = retry_after.map(|s| Duration::from_secs(u64::from(s)));
    match reason {
        Some("rejected") | Some("noresource") | Some("invariant") => None,
        Some("probation") | Some("giveup") => Some(after.unwrap_or(Duration::from_secs(30))),
        // deactivated, timeout, no reason or an unknown one: at once (or when told).
        _ => Some(after.unwrap_or(Duration::from_millis(200))),
    }
}

async fn run_subscription(
    shared: Arc<Shared>,
    account: Account,
    target: Uri,
    package: Package,
    events: mpsc::UnboundedSender<RawEvent>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = FIRST_RETRY;
    loop {
        let outcome = one_dialog(
            &shared,
            &account,
            &target,
            package,
            &events,
            &mut commands,
            &mut backoff,
        )
        .await;
        match outcome {
            Ended::Stop => return,
            Ended::Retry(delay) => {
                tokio::select! {
                    _ = sleep(delay) => {}
                    cmd = commands.recv() => match cmd {
                        Some(Command::Unsubscribe) | None => return,
                    },
                }
            }
        }
    }
}

/// Builds a SUBSCRIBE's package headers.
fn package_headers(req: &mut Request, package: Package, expires: u32, ua: &str) {
    let h = &mut req.headers;
    h.push(HeaderName::parse("Event"), package.event());
    h.push(HeaderName::Accept, package.accept());
    h.push(HeaderName::Expires, expires.to_string());
    h.push(HeaderName::UserAgent, ua.to_string());
    if package == Package::List {
        h.push(HeaderName::Supported, "eventlist");
    }
}

/// Sends an in-dialog SUBSCRIBE; keeps the dialog's CSeq in step with challenges.
async fn in_dialog_subscribe(
    shared: &Arc<Shared>,
    dialog: &mut Dialog,
    auth: &mut AuthSession,
    package: Package,
    expires: u32,
) -> Result<Response> {
    let mut req = dialog.new_request(Method::Subscribe);
    package_headers(&mut req, package, expires, &shared.config.user_agent);
    let method = req.method.to_string();
    let uri = req.uri.to_string();
    auth.preempt(shared, &method, &uri);
    let hop = Target::Uri(request_next_hop(&req, shared.transport));
    let response = shared.send(req, hop, Some(auth)).await?;
    if let Ok(c) = response.headers.cseq() {
        dialog.local_seq = dialog.local_seq.max(c.seq);
    }
    dialog.update_from_response(&response);
    Ok(response)
}

/// Handles one NOTIFY of our dialog: answers it and reports what it says. Returns the
/// subscription state when it parsed.
fn on_notify(
    shared: &Shared,
    dialog: &mut Option<Dialog>,
    tx: tandem_proto::transaction::TxId,
    request: &Request,
    events: &mpsc::UnboundedSender<RawEvent>,
) -> Option<SubscriptionState> {
    if request.method != Method::Notify {
        let mut r = Response::for_request(request, 405);
        r.reason = "Method Not Allowed".into();
        r.headers.push(HeaderName::Allow, "NOTIFY");
        shared.respond(tx, r);
        return None;
    }
    if let Some(d) = dialog.as_mut()
        && d.matches_request(request)
        && let Err(e) = d.check_request(request)
    {
        let mut r = Response::for_request(request, 500);
        r.reason = "Out of Order".into();
        tracing::debug!("NOTIFY refused: {e}");
        shared.respond(tx, r);
        return None;
    }
    let state = request
        .headers
        .get_str(&HeaderName::parse("Subscription-State"))
        .and_then(SubscriptionState::parse);
    let Some(state) = state else {
        let mut r = Response::for_request(request, 400);
        r.reason = "Missing Subscription-State".into();
        shared.respond(tx, r);
        return None;
    };
    let mut ok = Response::for_request(request, 200);
    ok.reason = "OK".into();
    shared.respond(tx, ok);
    if state.state == "pending" {
        let _ = events.send(RawEvent::Pending);
    }
    if !request.body.is_empty() {
        let content_type = request
            .headers
            .content_type()
            .unwrap_or_default()
            .to_string();
        let _ = events.send(RawEvent::Body {
            content_type,
            body: request.body.clone(),
        });
    }
    Some(state)
}

/// One subscription dialog from the initial SUBSCRIBE to its end.
async fn one_dialog(
    shared: &Arc<Shared>,
    account: &Account,
    target: &Uri,
    package: Package,
    events: &mpsc::UnboundedSender<RawEvent>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    backoff: &mut Duration,
) -> Ended {
    let aor = match account.aor() {
        Ok(a) => a,
        Err(e) => {
            let _ = events.send(RawEvent::Terminated {
                reason: Some(e.to_string()),
                retry_after: None,
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
        target,
        account,
        &aor,
        &local_tag,
        &call_id,
        Some(&contact),
    );
    package_headers(
        &mut req,
        package,
        PRESENCE_EXPIRES,
        &shared.config.user_agent,
    );
    let mut auth = AuthSession::for_account(account);
    let result = shared
        .send(
            req.clone(),
            Target::Uri(account.next_hop(target)),
            Some(&mut auth),
        )
        .await;
    let ended = match result {
        Err(e) => {
            let delay = *backoff;
            *backoff = (*backoff * 2).min(MAX_RETRY);
            let final_ = matches!(
                e,
                UaError::AuthFailed { .. } | UaError::Config(_) | UaError::Closed
            );
            let _ = events.send(RawEvent::Terminated {
                reason: Some(e.to_string()),
                retry_after: None,
                final_,
            });
            if final_ {
                Ended::Stop
            } else {
                Ended::Retry(delay)
            }
        }
        Ok(response) if !(200..300).contains(&response.status) => {
            let retry_after = response
                .headers
                .get_str(&HeaderName::parse("Retry-After"))
                .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok());
            let transient = matches!(response.status, 408 | 480 | 500 | 503 | 504);
            let final_ = retry_after.is_none() && !transient;
            let _ = events.send(RawEvent::Terminated {
                reason: Some(format!("{} {}", response.status, response.reason)),
                retry_after,
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
        Ok(response) => {
            *backoff = FIRST_RETRY;
            established(
                shared, package, &req, &response, contact, auth, events, commands, &mut input,
            )
            .await
        }
    };
    shared.remove_dialog(&key);
    ended
}

/// Runs an established subscription dialog: NOTIFYs, refreshes, termination, unsubscribe.
#[allow(clippy::too_many_arguments)]
async fn established(
    shared: &Arc<Shared>,
    package: Package,
    request: &Request,
    response: &Response,
    contact: String,
    mut auth: AuthSession,
    events: &mpsc::UnboundedSender<RawEvent>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    input: &mut mpsc::UnboundedReceiver<DialogInput>,
) -> Ended {
    let mut dialog = match Dialog::from_uac(request, response) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!("unusable 2xx to SUBSCRIBE: {e}");
            None
        }
    };
    if let Some(d) = dialog.as_mut() {
        d.confirm();
        if let Ok(c) = response.headers.cseq() {
            d.local_seq = d.local_seq.max(c.seq);
        }
        d.local_contact = tandem_proto::msg::NameAddr::parse(&contact).ok();
    }
    let granted = response
        .headers
        .expires()
        .ok()
        .flatten()
        .unwrap_or(PRESENCE_EXPIRES);
    let mut refresh_at = Instant::now() + refresh_delay(granted);
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let _ = cmd; // Unsubscribe or the handle was dropped: end it either way.
                if let Some(d) = dialog.as_mut() {
                    let _ = in_dialog_subscribe(shared, d, &mut auth, package, 0).await;
                }
                // Take the final NOTIFY (terminated) so the notifier is not left retrying.
                let deadline = Instant::now() + Duration::from_secs(2);
                while let Ok(Some(DialogInput::Request { tx, request })) =
                    timeout(deadline.saturating_duration_since(Instant::now()), input.recv()).await
                {
                    if let Some(s) = on_notify(shared, &mut dialog, tx, &request, events)
                        && s.state == "terminated"
                    {
                        break;
                    }
                }
                return Ended::Stop;
            }
            msg = input.recv() => {
                let Some(msg) = msg else { return Ended::Retry(FIRST_RETRY) };
                let DialogInput::Request { tx, request } = msg else { continue };
                let Some(state) = on_notify(shared, &mut dialog, tx, &request, events) else {
                    continue;
                };
                if state.state == "terminated" {
                    let retry = retry_for(state.reason.as_deref(), state.retry_after);
                    let _ = events.send(RawEvent::Terminated {
                        reason: state.reason.clone(),
                        retry_after: state.retry_after,
                        final_: retry.is_none(),
                    });
                    return match retry {
                        Some(d) => Ended::Retry(d),
                        None => Ended::Stop,
                    };
                }
                if let Some(e) = state.expires {
                    // The notifier may shorten the subscription (RFC 6665 §4.1.2.3).
                    let at = Instant::now() + refresh_delay(e);
                    if at < refresh_at {
                        refresh_at = at;
                    }
                }
            }
            _ = sleep_until(refresh_at) => {
                let Some(d) = dialog.as_mut() else { return Ended::Retry(FIRST_RETRY) };
                match in_dialog_subscribe(shared, d, &mut auth, package, PRESENCE_EXPIRES).await {
                    Ok(r) if (200..300).contains(&r.status) => {
                        let granted = r.headers.expires().ok().flatten().unwrap_or(PRESENCE_EXPIRES);
                        refresh_at = Instant::now() + refresh_delay(granted);
                    }
                    other => {
                        let reason = match other {
                            Ok(r) => format!("refresh got {} {}", r.status, r.reason),
                            Err(e) => format!("refresh failed: {e}"),
                        };
                        let _ = events.send(RawEvent::Terminated {
                            reason: Some(reason),
                            retry_after: None,
                            final_: false,
                        });
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
    fn subscription_state_header() {
        let s = SubscriptionState::parse("terminated;reason=probation;retry-after=30").unwrap();
        assert_eq!(s.state, "terminated");
        assert_eq!(s.reason.as_deref(), Some("probation"));
        assert_eq!(s.retry_after, Some(30));
        let s = SubscriptionState::parse("Active ; expires=600").unwrap();
        assert_eq!((s.state.as_str(), s.expires), ("active", Some(600)));
        assert!(SubscriptionState::parse("").is_none());
        assert!(SubscriptionState::parse(";expires=1").is_none());
        let s = SubscriptionState::parse("pending;expires=abc").unwrap();
        assert_eq!(s.expires, None);
    }

    #[test]
    fn rfc6665_retry_rules() {
        assert_eq!(retry_for(Some("rejected"), None), None);
        assert_eq!(retry_for(Some("noresource"), Some(5)), None);
        assert_eq!(
            retry_for(Some("probation"), None),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_for(Some("giveup"), Some(7)),
            Some(Duration::from_secs(7))
        );
        assert!(retry_for(Some("deactivated"), None).unwrap() < Duration::from_secs(1));
        assert!(retry_for(None, None).unwrap() < Duration::from_secs(1));
        assert_eq!(refresh_delay(600), Duration::from_secs(450));
        assert_eq!(refresh_delay(1), Duration::from_secs(1));
    }

    #[test]
    fn list_body_multipart_rlmi_and_pidf() {
        use tandem_proto::simple::multipart::{Part, build, content_type};
        use tandem_proto::simple::rlmi::{Instance, Name, Resource};
        let rlmi = Rlmi {
            uri: "sip:alice-buddies@example.com".into(),
            version: 3,
            full_state: true,
            names: vec![],
            resources: vec![
                Resource {
                    uri: "sip:bob@example.com".into(),
                    names: vec![Name {
                        lang: None,
                        text: "Bob".into(),
                    }],
                    instances: vec![Instance {
                        id: "i1".into(),
                        state: InstanceState::Active,
                        cid: Some("bob-part@example.com".into()),
                        reason: None,
                    }],
                },
                Resource {
                    uri: "sip:carol@example.com".into(),
                    names: vec![],
                    instances: vec![Instance {
                        id: "i2".into(),
                        state: InstanceState::Pending,
                        cid: None,
                        reason: None,
                    }],
                },
            ],
        };
        let bob = Availability::Busy.to_presence("sip:bob@example.com", Some("lunch"));
        let parts = vec![
            Part::new(RLMI, Some("root@example.com"), rlmi.to_xml()),
            Part::new(PIDF, Some("bob-part@example.com"), bob.to_xml()),
        ];
        let body = build(&parts, "b0undary42").unwrap();
        let ct = content_type("b0undary42", RLMI, Some("root@example.com"));
        let state = parse_list_body(&ct, &body).unwrap();
        assert_eq!(state.uri, "sip:alice-buddies@example.com");
        assert_eq!((state.version, state.full_state), (3, true));
        assert_eq!(state.resources.len(), 2);
        let b = &state.resources[0];
        assert_eq!(b.name.as_deref(), Some("Bob"));
        assert_eq!(
            b.presence.as_ref().map(|p| p.availability()),
            Some(Availability::Busy)
        );
        let c = &state.resources[1];
        assert_eq!(
            (c.instance.clone(), c.presence.is_none()),
            (InstanceState::Pending, true)
        );

        // A cid that names no part, a missing boundary, and a foreign type are errors.
        let broken = build(&parts[..1], "b0undary42").unwrap();
        assert!(matches!(
            parse_list_body(&ct, &broken),
            Err(ListBodyError::Malformed(_))
        ));
        assert_eq!(
            parse_list_body("multipart/related;type=\"application/rlmi+xml\"", &body),
            Err(ListBodyError::NoBoundary)
        );
        assert!(matches!(
            parse_list_body("text/plain", b"hi"),
            Err(ListBodyError::UnexpectedType(_))
        ));
        // A plain PIDF NOTIFY is a one-resource list.
        let single = parse_list_body(PIDF, bob.to_xml().as_bytes()).unwrap();
        assert_eq!(single.resources.len(), 1);
        assert_eq!(single.resources[0].uri, "sip:bob@example.com");
    }
}
