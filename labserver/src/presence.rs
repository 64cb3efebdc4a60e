//! The presence agent of the lab (RFC 3856, RFC 3903, RFC 6665, RFC 3857, RFC 5025).
//!
//! For local presentities the lab server is the event state compositor and the notifier:
//! - PUBLISH (`Event: presence`, `application/pidf+xml`): initial, refresh (`SIP-If-Match`, no
//!   body), modify (`SIP-If-Match` with a body) and remove (`Expires: 0`); answers carry `SIP-ETag`
//!   and `Expires`; an unknown entity tag is 412, a too short expiry 423 with `Min-Expires`,
//!   another package 489, another body type 415. Only the presentity itself may publish (403).
//!   The publications of a presentity (one per device) are composed with
//!   [`tandem_proto::simple::pidf::compose`], oldest first.
//! - SUBSCRIBE for `presence` and `presence.winfo` creates a dialog (`proto::dialog`); the answer
//!   is 200 (active) or 202 (pending) and a NOTIFY follows at once, then on every change, on a
//!   refresh, and a final one (`terminated`) on unsubscribe (`Expires: 0`) or expiry. A NOTIFY
//!   answered 481 or 408, or lost, removes the subscription.
//! - Authorization: the presentity's pres-rules document (XCAP `pres-rules`, document `index`)
//!   decides per watcher (its authenticated identity): allow → active with the composed state;
//!   polite-block → active with a document showing the presentity offline (`closed`); confirm
//!   (also the default without a matching rule) → pending, no state, and a watcher-info NOTIFY to
//!   the presentity's `presence.winfo` subscribers; block → the NOTIFY says
//!   `terminated;reason=rejected`. A blocked or pending watcher never receives a state document.
//!   Every change of the pres-rules re-evaluates the presentity's subscriptions.
//! - Resource lists (RFC 4662): a SUBSCRIBE with `Supported: eventlist` to a list URI of the
//!   watcher (a `<service>` of their XCAP `rls-services` document, or `sip:<user>-buddies@domain`
//!   for their whole `resource-lists` document; see [`crate::rls`]) is answered 200 with
//!   `Require: eventlist`, and its NOTIFYs carry `multipart/related` bodies: an RLMI root with
//!   every member (full state, version incremented per NOTIFY) and a PIDF part per member the
//!   watcher may see, each member decided by that member's pres-rules as if the watcher had
//!   subscribed to it directly (pending and rejected members have no state part; URIs the lab
//!   does not serve are `terminated;reason=noresource`). A change of a member's state or rules,
//!   or of the owner's list documents, sends a new NOTIFY.
//! - Everything is in memory (a restart loses it; watchers re-subscribe, publishers re-publish,
//!   as RFC 6665/3903 allow) and bounded: per-user and global caps, 503 beyond.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tandem_net::{Endpoint, Target, TxOutcome};
use tandem_proto::dialog::{Dialog, DialogId};
use tandem_proto::msg::{HeaderName, Method, NameAddr, Request, Response};
use tandem_proto::simple::pidf::{self, Presence as PidfDocument};
use tandem_proto::simple::pres_rules::{Ruleset, SubHandling};
use tandem_proto::simple::watcherinfo::{
    State as WinfoState, Watcher, WatcherEvent, WatcherInfo, WatcherList, WatcherStatus,
};
use tandem_proto::transaction::TxId;
use tandem_proto::{Flow, Transport};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::authn::{AuthRole, Authenticator, Identity};
use crate::ca::LabCa;
use crate::config::LabConfig;
use crate::location::unix_now;
use crate::registrar::{LocalDomains, reply};
use crate::rls::{self, Member, MemberState, ServiceList};
use crate::store::Store;
use crate::xcap::{
    AUID_PRES_RULES, AUID_RESOURCE_LISTS, AUID_RLS_SERVICES, ChangeHook, PRES_RULES_DOCUMENT,
    XcapChange, XcapError, XcapServer, XcapSettings,
};

/// The presence event package (RFC 3856).
pub const EVENT_PRESENCE: &str = "presence";
/// The watcher-information template package for presence (RFC 3857).
pub const EVENT_PRESENCE_WINFO: &str = "presence.winfo";
/// The PIDF MIME type.
pub const MIME_PIDF: &str = "application/pidf+xml";
/// The watcher-info MIME type.
pub const MIME_WATCHERINFO: &str = "application/watcherinfo+xml";

const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// `[presence]` settings of `lab.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Whether the lab is the presence agent for its users; default true (false: PUBLISH and
    /// SUBSCRIBE are proxied to the users' devices like any request).
    pub enabled: bool,
    /// Shorter requested expiries get 423; default 60.
    pub min_expires: u32,
    /// Longer requested expiries are shortened to this; default 3600.
    pub max_expires: u32,
    /// Expiry of a PUBLISH or SUBSCRIBE without `Expires`; default 3600.
    pub default_expires: u32,
    /// Most publications (devices) per presentity; default 16.
    pub max_publications_per_user: usize,
    /// Most subscriptions to one presentity (and from one watcher); default 128.
    pub max_subscriptions_per_user: usize,
    /// Most publications in all; default 10000.
    pub max_publications: usize,
    /// Most subscriptions in all; default 20000.
    pub max_subscriptions: usize,
}

impl Default for PresenceConfig {
    fn default() -> PresenceConfig {
        PresenceConfig {
            enabled: true,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_publications_per_user: 16,
            max_subscriptions_per_user: 128,
            max_publications: 10_000,
            max_subscriptions: 20_000,
        }
    }
}

impl PresenceConfig {
    /// Checks the values: `Err` with what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_expires == 0 || self.min_expires > self.max_expires {
            return Err(format!(
                "presence.min_expires ({}) must be at least 1 and at most presence.max_expires ({})",
                self.min_expires, self.max_expires
            ));
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            return Err(format!(
                "presence.default_expires ({}) must lie between min_expires and max_expires",
                self.default_expires
            ));
        }
        if self.max_publications == 0 || self.max_subscriptions == 0 {
            return Err(
                "presence.max_publications and max_subscriptions must be at least 1".into(),
            );
        }
        Ok(())
    }
}

/// Errors starting the presence agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The XCAP server could not start.
    #[error("XCAP: {0}")]
    Xcap(#[from] XcapError),
    /// The XCAP TLS configuration could not be built from the lab CA.
    #[error("XCAP TLS: {0}")]
    Tls(#[from] crate::ca::CaError),
    /// The digest settings are invalid.
    #[error("XCAP authentication: {0}")]
    Authn(#[from] crate::authn::AuthnError),
}

/// The presence agent and the XCAP server, as started by the lab server.
pub struct Presence {
    agent: Option<Arc<Agent>>,
    xcap: Mutex<Option<XcapServer>>,
    xcap_addr: Option<SocketAddr>,
    sweeper: Option<JoinHandle<()>>,
}

/// The package a subscription is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Package {
    Presence,
    Winfo,
}

impl Package {
    fn parse(event: &str) -> Option<Package> {
        let name = event.split(';').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case(EVENT_PRESENCE) {
            Some(Package::Presence)
        } else if name.eq_ignore_ascii_case(EVENT_PRESENCE_WINFO) {
            Some(Package::Winfo)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Package::Presence => EVENT_PRESENCE,
            Package::Winfo => EVENT_PRESENCE_WINFO,
        }
    }
}

/// The `id` parameter of an Event header value.
fn event_id(event: &str) -> Option<String> {
    event.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("id")
            .then(|| v.trim().to_string())
    })
}

/// The state of a subscription (RFC 6665 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubState {
    Active,
    Pending,
    /// Ends with the next NOTIFY, carrying this reason.
    Terminated(&'static str),
}

struct Publication {
    etag: String,
    document: PidfDocument,
    expires_at: Instant,
    /// Publication order (for composition: oldest first).
    seq: u64,
}

/// What a resource-list subscription stands for.
struct ListSub {
    /// The list URI (the subscription's resource).
    uri: String,
    members: Vec<Member>,
    /// Per member: its canonical AoR when it is an existing user of the lab.
    local: Vec<Option<String>>,
    /// Per member: the member's pres-rules decision for the watcher (local members only).
    decisions: Vec<Option<SubHandling>>,
    /// RLMI version of the next NOTIFY.
    version: u32,
}

impl ListSub {
    /// The decision for `resource` when it is a member.
    fn handling_of(&self, resource: &str) -> Option<SubHandling> {
        self.local
            .iter()
            .position(|l| l.as_deref() == Some(resource))
            .and_then(|i| self.decisions.get(i).copied().flatten())
    }
}

struct Subscription {
    id: String,
    dialog: Dialog,
    package: Package,
    /// The presentity (canonical AoR).
    resource: String,
    /// The watcher's identity (`sip:user@domain`).
    watcher: String,
    display_name: Option<String>,
    event_id: Option<String>,
    handling: SubHandling,
    state: SubState,
    /// The watcher-info event that led to the current state.
    last_event: WatcherEvent,
    created: Instant,
    expires_at: Instant,
    flow: Flow,
    /// Watcher-info document version (RFC 3858 §4.4), per subscription.
    version: u32,
    wake: Arc<Notify>,
    /// Set for a resource-list subscription (RFC 4662).
    list: Option<ListSub>,
}

impl Subscription {
    /// The presentities whose changes this subscription follows: its resource, and the local
    /// members of a list.
    fn keys(&self) -> Vec<String> {
        let mut keys = vec![self.resource.clone()];
        if let Some(l) = &self.list {
            for m in l.local.iter().flatten() {
                if !keys.contains(m) {
                    keys.push(m.clone());
                }
            }
        }
        keys
    }
}

#[derive(Default)]
struct AgentState {
    publications: HashMap<String, Vec<Publication>>,
    publication_count: usize,
    subscriptions: HashMap<DialogId, Subscription>,
    /// Presentity → subscriptions to it (both packages).
    by_resource: HashMap<String, HashSet<DialogId>>,
    next_seq: u64,
}

impl AgentState {
    fn index(&mut self, id: &DialogId, keys: &[String]) {
        for k in keys {
            self.by_resource
                .entry(k.clone())
                .or_default()
                .insert(id.clone());
        }
    }

    fn unindex(&mut self, id: &DialogId, keys: &[String]) {
        for k in keys {
            if let Some(set) = self.by_resource.get_mut(k) {
                set.remove(id);
                if set.is_empty() {
                    self.by_resource.remove(k);
                }
            }
        }
    }

    fn insert_subscription(&mut self, sub: Subscription) {
        let id = sub.dialog.id.clone();
        self.index(&id, &sub.keys());
        self.subscriptions.insert(id, sub);
    }

    fn remove_subscription(&mut self, id: &DialogId) -> Option<Subscription> {
        let sub = self.subscriptions.remove(id)?;
        self.unindex(id, &sub.keys());
        Some(sub)
    }

    /// The state a list subscription reports for each member.
    fn member_states(&self, list: &ListSub) -> Vec<(Member, MemberState)> {
        list.members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let local = list.local.get(i).cloned().flatten();
                let decision = list.decisions.get(i).copied().flatten();
                let state = match (local, decision) {
                    (Some(aor), Some(SubHandling::Allow)) => {
                        MemberState::Active(self.composed(&aor))
                    }
                    (Some(aor), Some(SubHandling::PoliteBlock)) => {
                        MemberState::Active(PidfDocument::closed(&aor))
                    }
                    (Some(_), Some(SubHandling::Block)) => MemberState::Terminated("rejected"),
                    (Some(_), _) => MemberState::Pending,
                    (None, _) => MemberState::Terminated("noresource"),
                };
                (m.clone(), state)
            })
            .collect()
    }

    /// Wakes the senders of the subscriptions to `resource` of `package`.
    fn wake(&self, resource: &str, package: Package) {
        for id in self.by_resource.get(resource).into_iter().flatten() {
            if let Some(s) = self.subscriptions.get(id)
                && s.package == package
            {
                s.wake.notify_one();
            }
        }
    }

    fn composed(&self, resource: &str) -> PidfDocument {
        match self.publications.get(resource) {
            Some(pubs) if !pubs.is_empty() => {
                let mut ordered: Vec<&Publication> = pubs.iter().collect();
                ordered.sort_by_key(|p| p.seq);
                let docs: Vec<PidfDocument> = ordered.iter().map(|p| p.document.clone()).collect();
                pidf::compose(resource, &docs)
            }
            _ => PidfDocument::closed(resource),
        }
    }

    fn watcher_info(&self, resource: &str, version: u32) -> WatcherInfo {
        let now = Instant::now();
        let mut watchers: Vec<Watcher> = self
            .by_resource
            .get(resource)
            .into_iter()
            .flatten()
            .filter_map(|id| self.subscriptions.get(id))
            .filter(|s| s.package == Package::Presence)
            .map(|s| Watcher {
                id: s.id.clone(),
                status: match (&s.list, &s.state) {
                    (_, SubState::Terminated(_)) => WatcherStatus::Terminated,
                    (Some(l), _) => match l.handling_of(resource) {
                        Some(SubHandling::Allow | SubHandling::PoliteBlock) => {
                            WatcherStatus::Active
                        }
                        Some(SubHandling::Block) => WatcherStatus::Terminated,
                        _ => WatcherStatus::Pending,
                    },
                    (None, SubState::Active) => WatcherStatus::Active,
                    (None, SubState::Pending) => WatcherStatus::Pending,
                },
                event: s.last_event,
                uri: s.watcher.clone(),
                display_name: s.display_name.clone(),
                lang: None,
                duration_subscribed: Some(now.duration_since(s.created).as_secs()),
                expiration: Some(s.expires_at.saturating_duration_since(now).as_secs()),
            })
            .collect();
        watchers.sort_by(|a, b| a.id.cmp(&b.id));
        WatcherInfo {
            version,
            state: WinfoState::Full,
            lists: vec![WatcherList {
                resource: resource.to_string(),
                package: EVENT_PRESENCE.to_string(),
                watchers,
            }],
        }
    }
}

/// The SIP side of the presence agent.
struct Agent {
    settings: PresenceConfig,
    domain: String,
    endpoint: Endpoint,
    store: Store,
    authn: Arc<Authenticator>,
    locals: Arc<LocalDomains>,
    state: Mutex<AgentState>,
}

impl Presence {
    /// Starts the presence agent (unless `[presence] enabled = false`) and the XCAP server
    /// (unless `[xcap] enabled = false`) on the listeners' address.
    pub async fn start(
        config: &LabConfig,
        store: &Store,
        ca: &LabCa,
        endpoint: &Endpoint,
        locals: Arc<LocalDomains>,
        authn: Arc<Authenticator>,
    ) -> Result<Presence, PresenceError> {
        let agent = config.presence.enabled.then(|| {
            Arc::new(Agent {
                settings: config.presence.clone(),
                domain: config.domain.clone(),
                endpoint: endpoint.clone(),
                store: store.clone(),
                authn,
                locals,
                state: Mutex::new(AgentState::default()),
            })
        });
        let xcap = if config.xcap.enabled {
            let mut listeners: Vec<SocketAddr> = Vec::new();
            for transport in [Transport::Tls, Transport::Tcp, Transport::Udp] {
                listeners.extend(
                    endpoint
                        .local_addrs()
                        .into_iter()
                        .filter(|(t, _)| *t == transport)
                        .map(|(_, a)| a),
                );
            }
            let configured: Vec<SocketAddr> = config
                .listen
                .tls
                .iter()
                .chain(&config.listen.tcp)
                .chain(&config.listen.udp)
                .copied()
                .collect();
            let mut bind = config.xcap.bind_addr(&configured);
            if let Some(actual) = listeners.first() {
                bind.set_ip(actual.ip());
            }
            let algorithms = config
                .auth
                .algorithms
                .iter()
                .map(|a| crate::authn::parse_algorithm(a))
                .collect::<Result<Vec<_>, _>>()?;
            let hook: ChangeHook = match &agent {
                Some(agent) => {
                    let agent = Arc::clone(agent);
                    Arc::new(move |change: XcapChange| {
                        if change.auid == AUID_PRES_RULES && change.document == PRES_RULES_DOCUMENT
                        {
                            let agent = Arc::clone(&agent);
                            tokio::spawn(async move {
                                agent.rules_changed(&format!("sip:{}", change.xui)).await
                            });
                        } else if change.auid == AUID_RESOURCE_LISTS
                            || change.auid == AUID_RLS_SERVICES
                        {
                            let agent = Arc::clone(&agent);
                            tokio::spawn(async move {
                                agent.lists_changed(&format!("sip:{}", change.xui)).await
                            });
                        }
                    })
                }
                None => Arc::new(|_change: XcapChange| {}),
            };
            let mut local_hosts = config.local_domains();
            local_hosts.extend(listeners.iter().map(|a| a.ip().to_string()));
            Some(
                XcapServer::start(
                    XcapSettings {
                        bind,
                        realm: config.realm().to_string(),
                        domain: config.domain.clone(),
                        local_hosts,
                        algorithms,
                        nonce_secret: crate::authn::nonce_secret(store).await,
                        nonce_lifetime: Duration::from_secs(config.auth.nonce_lifetime_secs.max(1)),
                        max_document_bytes: config.xcap.max_document_bytes,
                        max_documents_per_user: config.xcap.max_documents_per_user,
                    },
                    store.clone(),
                    ca.server_config()?,
                    hook,
                )
                .await?,
            )
        } else {
            None
        };
        let sweeper = agent.as_ref().map(|agent| {
            let agent = Arc::clone(agent);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    agent.sweep(Instant::now());
                }
            })
        });
        Ok(Presence {
            agent,
            xcap_addr: xcap.as_ref().map(|x| x.local_addr()),
            xcap: Mutex::new(xcap),
            sweeper,
        })
    }

    /// The XCAP server's address, when it runs.
    pub fn xcap_addr(&self) -> Option<SocketAddr> {
        self.xcap_addr
    }

    /// Whether the presence agent answers `request` itself: a PUBLISH or SUBSCRIBE for the
    /// `presence` or `presence.winfo` package addressed to a user of a local domain.
    pub fn handles(&self, request: &Request) -> bool {
        let Some(agent) = &self.agent else {
            return false;
        };
        if !matches!(request.method, Method::Publish | Method::Subscribe) {
            return false;
        }
        if agent.locals.canonical_aor(&request.uri).is_none() {
            return false;
        }
        match request.headers.get_str(&HeaderName::Event) {
            Some(e) => Package::parse(e).is_some() || request.method == Method::Publish,
            // A PUBLISH without Event is ours to refuse (489); a SUBSCRIBE without Event is
            // for the `PINT` default package (RFC 6665 §8.2.1): not presence, so proxied.
            None => request.method == Method::Publish,
        }
    }

    /// Answers a request for which [`Presence::handles`] returned true.
    pub fn dispatch(&self, tx: TxId, request: Request, flow: Flow) {
        let Some(agent) = &self.agent else {
            return;
        };
        let agent = Arc::clone(agent);
        tokio::spawn(async move {
            let response = agent.handle(&request, flow, tx).await;
            if let Some(r) = response {
                agent.endpoint.respond(tx, r);
            }
        });
    }

    /// Stops the expiry timer and the XCAP server. No final NOTIFYs are sent: the state is in
    /// memory only, and watchers re-subscribe when their refresh gets 481 from the next run.
    pub async fn shutdown(&self) {
        if let Some(s) = &self.sweeper {
            s.abort();
        }
        let xcap = self.xcap.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(x) = xcap {
            x.shutdown().await;
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(s) = self.sweeper.take() {
            s.abort();
        }
    }
}

impl Agent {
    fn clamp_expires(&self, requested: Option<u32>) -> Result<u32, u32> {
        let e = requested.unwrap_or(self.settings.default_expires);
        if e == 0 {
            return Ok(0);
        }
        if e < self.settings.min_expires {
            return Err(self.settings.min_expires);
        }
        Ok(e.min(self.settings.max_expires))
    }

    fn too_brief(&self, request: &Request, min: u32) -> Response {
        let mut r = reply(request, 423, "Interval Too Brief");
        r.headers.push(HeaderName::MinExpires, min.to_string());
        r
    }

    /// Authenticates the sender: the watcher/publisher identity `sip:user@domain`.
    async fn identify(&self, request: &Request, flow: Flow) -> Result<String, Response> {
        match self
            .authn
            .authenticate(request, AuthRole::Proxy, flow.remote.ip())
            .await
        {
            Ok(Identity::User(u)) => Ok(format!("sip:{u}@{}", self.domain)),
            Ok(Identity::Trusted) => {
                let from = request
                    .headers
                    .from()
                    .map_err(|_| reply(request, 400, "Bad From"))?;
                Ok(self
                    .locals
                    .canonical_aor(&from.uri)
                    .unwrap_or_else(|| from.uri.to_string()))
            }
            Err(challenge) => Err(*challenge),
        }
    }

    async fn handle(
        self: &Arc<Self>,
        request: &Request,
        flow: Flow,
        _tx: TxId,
    ) -> Option<Response> {
        let Some(resource) = self.locals.canonical_aor(&request.uri) else {
            return Some(reply(request, 404, "Not Found"));
        };
        let identity = match self.identify(request, flow).await {
            Ok(i) => i,
            Err(r) => return Some(r),
        };
        if request.method == Method::Subscribe {
            let in_dialog = request.headers.to().ok().is_some_and(|t| t.tag().is_some());
            if in_dialog {
                // A refresh or un-subscription: the dialog decides (481 when unknown).
                return self.subscribe(request, flow, &resource, &identity).await;
            }
            let presence = request
                .headers
                .get_str(&HeaderName::Event)
                .and_then(Package::parse)
                == Some(Package::Presence);
            if presence
                && supports_eventlist(request)
                && let Some(members) = self.resolve_list(&identity, &resource).await
            {
                return self
                    .subscribe_list(request, flow, &resource, &identity, members)
                    .await;
            }
        }
        let user = resource
            .strip_prefix("sip:")
            .and_then(|r| r.split('@').next())
            .unwrap_or("");
        match self.authn.user_exists(user).await {
            Ok(true) => {}
            Ok(false) => return Some(reply(request, 404, "Not Found")),
            Err(e) => {
                tracing::warn!(error = %e, "user lookup failed");
                let mut r = reply(request, 500, "Server Internal Error");
                r.headers.push(HeaderName::RetryAfter, "5");
                return Some(r);
            }
        }
        match request.method {
            Method::Publish => Some(self.publish(request, &resource, &identity)),
            _ => self.subscribe(request, flow, &resource, &identity).await,
        }
    }

    fn publish(&self, request: &Request, resource: &str, identity: &str) -> Response {
        let event = request.headers.get_str(&HeaderName::Event);
        if event.and_then(Package::parse) != Some(Package::Presence) {
            let mut r = reply(request, 489, "Bad Event");
            r.headers
                .push(HeaderName::Other("Allow-Events".into()), EVENT_PRESENCE);
            return r;
        }
        if identity != resource {
            return reply(request, 403, "Only the presentity may publish");
        }
        let expires = match request.headers.expires() {
            Ok(e) => e,
            Err(_) => return reply(request, 400, "Bad Expires"),
        };
        let expires = match self.clamp_expires(expires) {
            Ok(e) => e,
            Err(min) => return self.too_brief(request, min),
        };
        let if_match = request
            .headers
            .get_str(&HeaderName::Other("SIP-If-Match".into()))
            .map(|s| s.trim().to_string());
        let document = if request.body.is_empty() {
            None
        } else {
            let ct = request.headers.content_type().map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
            if ct.as_deref() != Some(MIME_PIDF) {
                let mut r = reply(request, 415, "Unsupported Media Type");
                r.headers.push(HeaderName::Accept, MIME_PIDF);
                return r;
            }
            match pidf::parse(&request.body) {
                Ok(d) => Some(d),
                Err(e) => {
                    let mut r = reply(request, 400, "Bad PIDF");
                    r.headers.push(
                        HeaderName::Other("Warning".into()),
                        format!("399 lab \"{e}\""),
                    );
                    return r;
                }
            }
        };
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let etag;
        match if_match {
            None => {
                let Some(document) = document else {
                    return reply(request, 400, "Initial PUBLISH without a body");
                };
                if expires == 0 {
                    return reply(request, 400, "Initial PUBLISH with Expires 0");
                }
                let per_user = state.publications.get(resource).map_or(0, Vec::len);
                if per_user >= self.settings.max_publications_per_user
                    || state.publication_count >= self.settings.max_publications
                {
                    let mut r = reply(request, 503, "Too Many Publications");
                    r.headers.push(HeaderName::RetryAfter, "60");
                    return r;
                }
                etag = new_token();
                state.next_seq += 1;
                let seq = state.next_seq;
                state
                    .publications
                    .entry(resource.to_string())
                    .or_default()
                    .push(Publication {
                        etag: etag.clone(),
                        document,
                        expires_at: now + Duration::from_secs(u64::from(expires)),
                        seq,
                    });
                state.publication_count += 1;
                state.wake(resource, Package::Presence);
            }
            Some(old) => {
                let Some(pubs) = state.publications.get_mut(resource) else {
                    return reply(request, 412, "Conditional Request Failed");
                };
                let Some(index) = pubs.iter().position(|p| p.etag == old) else {
                    return reply(request, 412, "Conditional Request Failed");
                };
                if expires == 0 {
                    pubs.remove(index);
                    if pubs.is_empty() {
                        state.publications.remove(resource);
                    }
                    state.publication_count = state.publication_count.saturating_sub(1);
                    state.wake(resource, Package::Presence);
                    let mut r = reply(request, 200, "OK");
                    r.headers.push(HeaderName::Expires, "0");
                    return r;
                }
                etag = new_token();
                let changed = document.is_some();
                if let Some(p) = pubs.get_mut(index) {
                    p.etag = etag.clone();
                    p.expires_at = now + Duration::from_secs(u64::from(expires));
                    if let Some(d) = document {
                        p.document = d;
                    }
                }
                if changed {
                    state.next_seq += 1;
                    let seq = state.next_seq;
                    if let Some(p) = state
                        .publications
                        .get_mut(resource)
                        .and_then(|v| v.get_mut(index))
                    {
                        p.seq = seq;
                    }
                    state.wake(resource, Package::Presence);
                }
            }
        }
        drop(state);
        let mut r = reply(request, 200, "OK");
        r.headers.push(HeaderName::Other("SIP-ETag".into()), etag);
        r.headers.push(HeaderName::Expires, expires.to_string());
        r
    }

    /// The watcher's decision from the presentity's pres-rules (Confirm without a document).
    async fn decide(&self, resource: &str, watcher: &str) -> SubHandling {
        let xui = resource.strip_prefix("sip:").unwrap_or(resource);
        match self
            .store
            .xcap_get(AUID_PRES_RULES, xui, PRES_RULES_DOCUMENT)
            .await
        {
            Ok(Some(doc)) => match Ruleset::parse(&doc.body) {
                Ok(rules) => rules.decide_at(watcher, unix_now()),
                Err(e) => {
                    tracing::warn!(%resource, error = %e, "stored pres-rules unreadable");
                    SubHandling::Confirm
                }
            },
            Ok(None) => SubHandling::Confirm,
            Err(e) => {
                tracing::warn!(%resource, error = %e, "pres-rules lookup failed");
                SubHandling::Confirm
            }
        }
    }

    async fn subscribe(
        self: &Arc<Self>,
        request: &Request,
        flow: Flow,
        resource: &str,
        identity: &str,
    ) -> Option<Response> {
        let Some(package) = request
            .headers
            .get_str(&HeaderName::Event)
            .and_then(Package::parse)
        else {
            let mut r = reply(request, 489, "Bad Event");
            r.headers.push(
                HeaderName::Other("Allow-Events".into()),
                format!("{EVENT_PRESENCE}, {EVENT_PRESENCE_WINFO}"),
            );
            return Some(r);
        };
        let mime = match package {
            Package::Presence => MIME_PIDF,
            Package::Winfo => MIME_WATCHERINFO,
        };
        let accepts = request.headers.values(&HeaderName::Accept);
        if !accepts.is_empty()
            && !accepts.iter().any(|a| {
                let t = a.split(';').next().unwrap_or("").trim();
                t.eq_ignore_ascii_case(mime)
                    || t == "*/*"
                    || t.eq_ignore_ascii_case("application/*")
            })
        {
            let mut r = reply(request, 406, "Not Acceptable");
            r.headers.push(HeaderName::Accept, mime);
            return Some(r);
        }
        let expires = match request.headers.expires() {
            Ok(e) => e,
            Err(_) => return Some(reply(request, 400, "Bad Expires")),
        };
        let expires = match self.clamp_expires(expires) {
            Ok(e) => e,
            Err(min) => return Some(self.too_brief(request, min)),
        };
        let to_tag = request
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if let Some(tag) = to_tag {
            return Some(self.refresh(request, flow, &tag, expires));
        }
        if package == Package::Winfo && identity != resource {
            return Some(reply(
                request,
                403,
                "Only the presentity may watch its watchers",
            ));
        }
        let handling = match package {
            Package::Presence => self.decide(resource, identity).await,
            Package::Winfo => SubHandling::Allow,
        };
        let local_tag = new_token();
        let mut dialog = match Dialog::from_uas(request, &local_tag) {
            Ok(d) => d,
            Err(_) => return Some(reply(request, 400, "Missing or bad Contact")),
        };
        let user = resource
            .strip_prefix("sip:")
            .and_then(|r| r.split('@').next())
            .unwrap_or("");
        dialog.local_contact = Some(NameAddr::new(
            self.endpoint.contact_uri(flow.transport, Some(user)),
        ));
        dialog.confirm();
        let state = match handling {
            SubHandling::Allow | SubHandling::PoliteBlock => SubState::Active,
            SubHandling::Confirm => SubState::Pending,
            SubHandling::Block => SubState::Terminated("rejected"),
        };
        let state = if expires == 0 {
            // A fetch (RFC 6665 §4.4.3): one NOTIFY with the current state, then over.
            match state {
                SubState::Active => SubState::Terminated("timeout"),
                other => other,
            }
        } else {
            state
        };
        let display_name = request.headers.from().ok().and_then(|f| f.display.clone());
        let sub = Subscription {
            id: format!("w{}", new_token()),
            dialog,
            package,
            resource: resource.to_string(),
            watcher: identity.to_string(),
            display_name,
            event_id: request
                .headers
                .get_str(&HeaderName::Event)
                .and_then(event_id),
            handling,
            last_event: match &state {
                SubState::Terminated("rejected") => WatcherEvent::Rejected,
                _ => WatcherEvent::Subscribe,
            },
            state: state.clone(),
            created: Instant::now(),
            expires_at: Instant::now() + Duration::from_secs(u64::from(expires)),
            flow,
            version: 0,
            wake: Arc::new(Notify::new()),
            list: None,
        };
        let key = sub.dialog.id.clone();
        let wake = Arc::clone(&sub.wake);
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let to_resource = st.by_resource.get(resource).map_or(0, HashSet::len);
            let from_watcher = st
                .subscriptions
                .values()
                .filter(|s| s.watcher == identity)
                .count();
            if st.subscriptions.len() >= self.settings.max_subscriptions
                || to_resource >= self.settings.max_subscriptions_per_user
                || from_watcher >= self.settings.max_subscriptions_per_user
            {
                let mut r = reply(request, 503, "Too Many Subscriptions");
                r.headers.push(HeaderName::RetryAfter, "60");
                return Some(r);
            }
            st.insert_subscription(sub);
            if package == Package::Presence && !matches!(state, SubState::Terminated(_)) {
                st.wake(resource, Package::Winfo);
            }
        }
        let status = if state == SubState::Pending { 202 } else { 200 };
        let mut r = Response::for_request(request, status);
        r.reason = if status == 202 { "Accepted" } else { "OK" }.to_string();
        set_to_tag(&mut r, &local_tag);
        r.headers.push(HeaderName::Expires, expires.to_string());
        r.headers.push(
            HeaderName::Contact,
            NameAddr::new(self.endpoint.contact_uri(flow.transport, Some(user))).to_string(),
        );
        // The response goes first; the sender task then sends the initial NOTIFY.
        let tx_response = r;
        let agent = Arc::clone(self);
        tokio::spawn(async move { agent.sender(key, wake).await });
        Some(tx_response)
    }

    /// Whether two URIs name the same resource of the lab (canonical AoRs when both are local).
    fn same_resource(&self, a: &str, b: &str) -> bool {
        let canon = |u: &str| {
            tandem_proto::msg::Uri::parse(u)
                .ok()
                .and_then(|uri| self.locals.canonical_aor(&uri))
        };
        match (canon(a), canon(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a.eq_ignore_ascii_case(b),
        }
    }

    /// The members of `owner`'s list `list_uri` (see [`crate::rls`]); `None` when it is not one
    /// of their lists.
    async fn resolve_list(&self, owner: &str, list_uri: &str) -> Option<Vec<Member>> {
        let owner_xui = owner.strip_prefix("sip:").unwrap_or(owner);
        let services = match self
            .store
            .xcap_get(AUID_RLS_SERVICES, owner_xui, PRES_RULES_DOCUMENT)
            .await
        {
            Ok(doc) => doc,
            Err(e) => {
                tracing::warn!(%owner, error = %e, "rls-services lookup failed");
                None
            }
        };
        let service = services.and_then(|doc| {
            rls::find_service(&doc.body, list_uri, |a, b| self.same_resource(a, b)).unwrap_or_else(
                |e| {
                    tracing::warn!(%owner, error = %e, "stored rls-services unreadable");
                    None
                },
            )
        });
        let (document, list) = match service {
            Some(ServiceList::Inline(members)) => return Some(members),
            Some(ServiceList::Reference {
                xui,
                document,
                list,
            }) => {
                if !xui.eq_ignore_ascii_case(owner_xui) {
                    tracing::debug!(%owner, %xui, "rls-services reference to another user's list ignored");
                    return Some(Vec::new());
                }
                (document, list)
            }
            None => {
                let (owner_user, owner_domain) = owner_xui.split_once('@')?;
                let (list_user, list_domain) = list_uri
                    .strip_prefix("sip:")
                    .unwrap_or(list_uri)
                    .split_once('@')?;
                let buddies = format!("{owner_user}{}", rls::BUDDIES_SUFFIX);
                if list_user != buddies || !list_domain.eq_ignore_ascii_case(owner_domain) {
                    return None;
                }
                (PRES_RULES_DOCUMENT.to_string(), None)
            }
        };
        match self
            .store
            .xcap_get(AUID_RESOURCE_LISTS, owner_xui, &document)
            .await
        {
            Ok(Some(doc)) => Some(
                rls::members_of_document(&doc.body, list.as_deref()).unwrap_or_else(|e| {
                    tracing::warn!(%owner, error = %e, "stored resource-lists unreadable");
                    Vec::new()
                }),
            ),
            Ok(None) => Some(Vec::new()),
            Err(e) => {
                tracing::warn!(%owner, error = %e, "resource-lists lookup failed");
                Some(Vec::new())
            }
        }
    }

    /// For each member: its canonical AoR when it is an existing lab user, and the member's
    /// decision about `watcher`.
    async fn member_decisions(
        &self,
        members: &[Member],
        watcher: &str,
    ) -> (Vec<Option<String>>, Vec<Option<SubHandling>>) {
        let mut local = Vec::with_capacity(members.len());
        let mut decisions = Vec::with_capacity(members.len());
        for m in members {
            let aor = tandem_proto::msg::Uri::parse(&m.uri)
                .ok()
                .and_then(|u| self.locals.canonical_aor(&u));
            let user = aor
                .as_deref()
                .and_then(|a| a.strip_prefix("sip:"))
                .and_then(|a| a.split('@').next())
                .unwrap_or("")
                .to_string();
            let exists = aor.is_some() && matches!(self.authn.user_exists(&user).await, Ok(true));
            match aor.filter(|_| exists) {
                Some(aor) => {
                    decisions.push(Some(self.decide(&aor, watcher).await));
                    local.push(Some(aor));
                }
                None => {
                    decisions.push(None);
                    local.push(None);
                }
            }
        }
        (local, decisions)
    }

    /// A new resource-list subscription of `identity` to its list `resource`.
    async fn subscribe_list(
        self: &Arc<Self>,
        request: &Request,
        flow: Flow,
        resource: &str,
        identity: &str,
        members: Vec<Member>,
    ) -> Option<Response> {
        let expires = match request.headers.expires() {
            Ok(e) => e,
            Err(_) => return Some(reply(request, 400, "Bad Expires")),
        };
        let expires = match self.clamp_expires(expires) {
            Ok(e) => e,
            Err(min) => return Some(self.too_brief(request, min)),
        };
        let (local, decisions) = self.member_decisions(&members, identity).await;
        let local_tag = new_token();
        let mut dialog = match Dialog::from_uas(request, &local_tag) {
            Ok(d) => d,
            Err(_) => return Some(reply(request, 400, "Missing or bad Contact")),
        };
        let list_user = resource
            .strip_prefix("sip:")
            .and_then(|r| r.split('@').next())
            .unwrap_or("");
        let contact = self.endpoint.contact_uri(flow.transport, Some(list_user));
        dialog.local_contact = Some(NameAddr::new(contact.clone()));
        dialog.confirm();
        let state = if expires == 0 {
            SubState::Terminated("timeout")
        } else {
            SubState::Active
        };
        let sub = Subscription {
            id: format!("l{}", new_token()),
            dialog,
            package: Package::Presence,
            resource: resource.to_string(),
            watcher: identity.to_string(),
            display_name: request.headers.from().ok().and_then(|f| f.display.clone()),
            event_id: request
                .headers
                .get_str(&HeaderName::Event)
                .and_then(event_id),
            handling: SubHandling::Allow,
            last_event: WatcherEvent::Subscribe,
            state,
            created: Instant::now(),
            expires_at: Instant::now() + Duration::from_secs(u64::from(expires)),
            flow,
            version: 0,
            wake: Arc::new(Notify::new()),
            list: Some(ListSub {
                uri: resource.to_string(),
                members,
                local,
                decisions,
                version: 0,
            }),
        };
        let key = sub.dialog.id.clone();
        let wake = Arc::clone(&sub.wake);
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let from_watcher = st
                .subscriptions
                .values()
                .filter(|s| s.watcher == identity)
                .count();
            if st.subscriptions.len() >= self.settings.max_subscriptions
                || from_watcher >= self.settings.max_subscriptions_per_user
            {
                let mut r = reply(request, 503, "Too Many Subscriptions");
                r.headers.push(HeaderName::RetryAfter, "60");
                return Some(r);
            }
            let members: Vec<String> = sub
                .list
                .iter()
                .flat_map(|l| l.local.iter().flatten().cloned())
                .collect();
            st.insert_subscription(sub);
            for m in &members {
                st.wake(m, Package::Winfo);
            }
        }
        let mut r = Response::for_request(request, 200);
        r.reason = "OK".to_string();
        set_to_tag(&mut r, &local_tag);
        r.headers.push(HeaderName::Expires, expires.to_string());
        r.headers.push(HeaderName::Require, "eventlist");
        r.headers
            .push(HeaderName::Contact, NameAddr::new(contact).to_string());
        let agent = Arc::clone(self);
        tokio::spawn(async move { agent.sender(key, wake).await });
        Some(r)
    }

    /// Re-reads the lists of `owner` after one of their list documents changed.
    async fn lists_changed(&self, owner: &str) {
        let subs: Vec<(DialogId, String)> = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.subscriptions
                .values()
                .filter(|s| s.watcher == owner && s.list.is_some())
                .map(|s| (s.dialog.id.clone(), s.resource.clone()))
                .collect()
        };
        for (id, uri) in subs {
            let members = self.resolve_list(owner, &uri).await.unwrap_or_default();
            let (local, decisions) = self.member_decisions(&members, owner).await;
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(sub) = st.subscriptions.get(&id) else {
                continue;
            };
            let old_keys = sub.keys();
            st.unindex(&id, &old_keys);
            if let Some(sub) = st.subscriptions.get_mut(&id)
                && let Some(list) = sub.list.as_mut()
            {
                list.members = members;
                list.local = local;
                list.decisions = decisions;
                sub.wake.notify_one();
            }
            if let Some(keys) = st.subscriptions.get(&id).map(Subscription::keys) {
                st.index(&id, &keys);
            }
        }
    }

    fn refresh(&self, request: &Request, flow: Flow, to_tag: &str, expires: u32) -> Response {
        let (Ok(call_id), Ok(from)) = (request.headers.call_id(), request.headers.from()) else {
            return reply(request, 400, "Bad Request");
        };
        let key = DialogId {
            call_id: call_id.to_string(),
            local_tag: to_tag.to_string(),
            remote_tag: from.tag().unwrap_or_default().to_string(),
        };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sub) = st.subscriptions.get_mut(&key) else {
            return reply(request, 481, "Subscription Does Not Exist");
        };
        if sub.dialog.check_request(request).is_err() {
            return reply(request, 500, "CSeq Out of Order");
        }
        sub.flow = flow;
        if let Ok(contacts) = request.headers.contacts()
            && let Some(tandem_proto::msg::ContactValue::Addr(a)) = contacts.into_iter().next()
        {
            sub.dialog.remote_target = a.uri;
        }
        let resource = sub.resource.clone();
        let package = sub.package;
        if expires == 0 {
            if !matches!(sub.state, SubState::Terminated(_)) {
                sub.state = SubState::Terminated("timeout");
                sub.last_event = WatcherEvent::Timeout;
            }
        } else {
            sub.expires_at = Instant::now() + Duration::from_secs(u64::from(expires));
        }
        sub.wake.notify_one();
        if package == Package::Presence && expires == 0 {
            st.wake(&resource, Package::Winfo);
        }
        drop(st);
        let mut r = reply(request, 200, "OK");
        r.headers.push(HeaderName::Expires, expires.to_string());
        r
    }

    /// Re-evaluates the subscriptions to `resource` after its pres-rules changed.
    async fn rules_changed(&self, resource: &str) {
        let watchers: Vec<(DialogId, String)> = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.by_resource
                .get(resource)
                .into_iter()
                .flatten()
                .filter_map(|id| st.subscriptions.get(id))
                .filter(|s| s.package == Package::Presence && s.list.is_none())
                .map(|s| (s.dialog.id.clone(), s.watcher.clone()))
                .collect()
        };
        let list_watchers: Vec<(DialogId, String)> = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.by_resource
                .get(resource)
                .into_iter()
                .flatten()
                .filter_map(|id| st.subscriptions.get(id))
                .filter(|s| s.list.is_some())
                .map(|s| (s.dialog.id.clone(), s.watcher.clone()))
                .collect()
        };
        for (id, watcher) in list_watchers {
            let handling = self.decide(resource, &watcher).await;
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(sub) = st.subscriptions.get_mut(&id)
                && let Some(list) = sub.list.as_mut()
            {
                let mut changed = false;
                for (l, d) in list.local.iter().zip(list.decisions.iter_mut()) {
                    if l.as_deref() == Some(resource) && *d != Some(handling) {
                        *d = Some(handling);
                        changed = true;
                    }
                }
                if changed {
                    sub.wake.notify_one();
                    st.wake(resource, Package::Winfo);
                }
            }
        }
        let mut decisions = Vec::with_capacity(watchers.len());
        for (id, watcher) in watchers {
            decisions.push((id, self.decide(resource, &watcher).await));
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut winfo_changed = false;
        for (id, handling) in decisions {
            let Some(sub) = st.subscriptions.get_mut(&id) else {
                continue;
            };
            if matches!(sub.state, SubState::Terminated(_)) || sub.handling == handling {
                continue;
            }
            sub.handling = handling;
            let (state, event) = match handling {
                SubHandling::Allow | SubHandling::PoliteBlock => {
                    (SubState::Active, WatcherEvent::Approved)
                }
                SubHandling::Confirm => (SubState::Pending, WatcherEvent::Subscribe),
                SubHandling::Block => (SubState::Terminated("rejected"), WatcherEvent::Rejected),
            };
            if sub.state != state {
                winfo_changed = true;
                sub.last_event = event;
            }
            sub.state = state;
            sub.wake.notify_one();
        }
        if winfo_changed {
            st.wake(resource, Package::Winfo);
        }
    }

    /// Expires stale publications and subscriptions.
    fn sweep(&self, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed: Vec<String> = Vec::new();
        let mut removed = 0;
        for (resource, pubs) in st.publications.iter_mut() {
            let before = pubs.len();
            pubs.retain(|p| p.expires_at > now);
            if pubs.len() != before {
                removed += before - pubs.len();
                changed.push(resource.clone());
            }
        }
        st.publications.retain(|_, v| !v.is_empty());
        st.publication_count = st.publication_count.saturating_sub(removed);
        for r in &changed {
            st.wake(r, Package::Presence);
        }
        let mut winfo: HashSet<String> = HashSet::new();
        for sub in st.subscriptions.values_mut() {
            if sub.expires_at <= now && !matches!(sub.state, SubState::Terminated(_)) {
                sub.state = SubState::Terminated("timeout");
                sub.last_event = WatcherEvent::Timeout;
                sub.wake.notify_one();
                if sub.package == Package::Presence {
                    winfo.insert(sub.resource.clone());
                }
            }
        }
        for r in &winfo {
            st.wake(r, Package::Winfo);
        }
    }

    /// Builds the next NOTIFY of a subscription from the current state; `None` when the
    /// subscription is gone. The bool says the NOTIFY is the last one (the subscription has been
    /// removed).
    fn next_notify(&self, key: &DialogId) -> Option<(Request, Target, bool)> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let sub = st.subscriptions.get(key)?;
        let now = Instant::now();
        let remaining = sub.expires_at.saturating_duration_since(now).as_secs();
        let (state_header, terminal) = match &sub.state {
            SubState::Active => (format!("active;expires={remaining}"), false),
            SubState::Pending => (format!("pending;expires={remaining}"), false),
            SubState::Terminated(reason) => (format!("terminated;reason={reason}"), true),
        };
        if let Some(list) = &sub.list {
            let body = match &sub.state {
                SubState::Active => {
                    let states = st.member_states(list);
                    match rls::notify_body(&list.uri, list.version, &states, &new_token()) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            tracing::warn!(list = %list.uri, error = %e, "list NOTIFY body");
                            None
                        }
                    }
                }
                _ => None,
            };
            let sub = st.subscriptions.get_mut(key)?;
            if let (Some(l), true) = (sub.list.as_mut(), body.is_some()) {
                l.version = l.version.wrapping_add(1);
            }
            let mut request = sub.dialog.new_request(Method::Notify);
            let mut event = EVENT_PRESENCE.to_string();
            if let Some(id) = &sub.event_id {
                event.push_str(&format!(";id={id}"));
            }
            request.headers.push(HeaderName::Event, event);
            request
                .headers
                .push(HeaderName::SubscriptionState, state_header);
            if let Some((content_type, bytes)) = body {
                request.headers.push(HeaderName::Require, "eventlist");
                request.headers.push(HeaderName::ContentType, content_type);
                request.body = bytes;
            }
            let target = if sub.dialog.route_set.is_empty() && sub.flow.transport.is_reliable() {
                Target::Flow(sub.flow)
            } else {
                Target::Uri(request.uri.clone())
            };
            if terminal {
                st.remove_subscription(key);
            }
            return Some((request, target, terminal));
        }
        let body: Option<(String, &'static str)> = match (sub.package, &sub.state) {
            (Package::Presence, SubState::Active) => {
                let doc = if sub.handling == SubHandling::PoliteBlock {
                    PidfDocument::closed(&sub.resource)
                } else {
                    st.composed(&sub.resource)
                };
                Some((doc.to_xml(), MIME_PIDF))
            }
            // A fetch ends with the state it asked for.
            (Package::Presence, SubState::Terminated("timeout"))
                if sub.last_event == WatcherEvent::Subscribe =>
            {
                let doc = if sub.handling == SubHandling::PoliteBlock {
                    PidfDocument::closed(&sub.resource)
                } else {
                    st.composed(&sub.resource)
                };
                Some((doc.to_xml(), MIME_PIDF))
            }
            (Package::Winfo, SubState::Active) => {
                let version = sub.version;
                Some((
                    st.watcher_info(&sub.resource, version).to_xml(),
                    MIME_WATCHERINFO,
                ))
            }
            _ => None,
        };
        let sub = st.subscriptions.get_mut(key)?;
        if sub.package == Package::Winfo && body.is_some() {
            sub.version = sub.version.wrapping_add(1);
        }
        let mut request = sub.dialog.new_request(Method::Notify);
        let mut event = sub.package.name().to_string();
        if let Some(id) = &sub.event_id {
            event.push_str(&format!(";id={id}"));
        }
        request.headers.push(HeaderName::Event, event);
        request
            .headers
            .push(HeaderName::SubscriptionState, state_header);
        if let Some((text, mime)) = body {
            request.headers.push(HeaderName::ContentType, mime);
            request.body = bytes::Bytes::from(text);
        }
        let target = if sub.dialog.route_set.is_empty() && sub.flow.transport.is_reliable() {
            Target::Flow(sub.flow)
        } else {
            Target::Uri(request.uri.clone())
        };
        if terminal {
            st.remove_subscription(key);
        }
        Some((request, target, terminal))
    }

    /// Sends the NOTIFYs of one subscription, one at a time, each with the state current when
    /// it is built (changes during a transaction coalesce into the next NOTIFY).
    async fn sender(self: Arc<Self>, key: DialogId, wake: Arc<Notify>) {
        // The initial NOTIFY.
        wake.notify_one();
        loop {
            wake.notified().await;
            let Some((request, target, terminal)) = self.next_notify(&key) else {
                return;
            };
            let failed = match self.endpoint.request(request, target).await {
                Ok(mut tx) => loop {
                    match tx.next().await {
                        Some(TxOutcome::Provisional(_)) => continue,
                        Some(TxOutcome::Final(r)) => break matches!(r.status, 408 | 481),
                        Some(TxOutcome::Timeout) | Some(TxOutcome::TransportError(_)) | None => {
                            break true;
                        }
                        Some(_) => continue,
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "NOTIFY could not be sent");
                    true
                }
            };
            if terminal {
                return;
            }
            if failed {
                // RFC 6665 §4.2.2: the watcher is gone.
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(sub) = st.remove_subscription(&key)
                    && sub.package == Package::Presence
                {
                    st.wake(&sub.resource, Package::Winfo);
                }
                return;
            }
        }
    }
}

/// Whether the request says `Supported: eventlist` (RFC 4662 §4.1).
fn supports_eventlist(request: &Request) -> bool {
    request
        .headers
        .values(&HeaderName::Supported)
        .iter()
        .any(|v| v.trim().eq_ignore_ascii_case("eventlist"))
}

fn set_to_tag(response: &mut Response, tag: &str) {
    let Ok(mut to) = response.headers.to() else {
        return;
    };
    if to.tag().is_none() {
        to.set_tag(tag);
        response.headers.set(HeaderName::To, to.to_string());
    }
}

fn new_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_event_ids() {
        assert_eq!(Package::parse("presence"), Some(Package::Presence));
        assert_eq!(Package::parse("Presence;id=7"), Some(Package::Presence));
        assert_eq!(Package::parse("presence.winfo"), Some(Package::Winfo));
        assert_eq!(Package::parse("dialog"), None);
        assert_eq!(Package::parse(""), None);
        assert_eq!(event_id("presence;id=7").as_deref(), Some("7"));
        assert_eq!(event_id("presence"), None);
    }

    #[test]
    fn config_validation() {
        assert!(PresenceConfig::default().validate().is_ok());
        let bad = PresenceConfig {
            min_expires: 0,
            ..PresenceConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = PresenceConfig {
            default_expires: 10,
            ..PresenceConfig::default()
        };
        assert!(bad.validate().is_err());
        let cfg = LabConfig::from_toml_str(
            "[presence]\nmin_expires = 5\n[xcap]\nport = 9443\nenabled = true\n",
        )
        .unwrap();
        assert_eq!(cfg.presence.min_expires, 5);
        assert_eq!(cfg.xcap.port, Some(9443));
        assert!(LabConfig::from_toml_str("[xcap]\nprot = 1\n").is_err());
    }
}
