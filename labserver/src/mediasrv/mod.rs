//! Media server: voicemail with MWI, audio conferences, IVR and click-to-call, as a SIP UA of its own behind the proxy.
//!
//! The media server has its own [`tandem_net::Endpoint`] (UDP on the lab's first SIP listen IP,
//! `[mediasrv] port`) whose address the proxy trusts ([`Authenticator::trust_internal`]). The
//! proxy routes to it requests for the service users of a local domain:
//!
//! | Request-URI user | service |
//! |---|---|
//! | `voicemail`, `vm` | voicemail retrieval ([`voicemail`]) |
//! | `vm-<user>` | voicemail deposit into `<user>`'s mailbox ([`voicemail`]) |
//! | `conf-<room>` | [`conference::handle`] (INVITE) / [`conference::handle_request`] (other methods) |
//! | `ivr`, `ivr-<menu>` | [`ivr::handle`] |
//!
//! and SUBSCRIBE `Event: message-summary` for a local user (MWI, RFC 3842). Requests reach the
//! media server only from the proxy (anything else is refused with 403), so the proxy's digest
//! authentication covers them.
//!
//! Every new INVITE becomes a [`Leg`] (see [`leg`]): the offer is already negotiated, the
//! service handler decides to [`Leg::answer`] or [`Leg::reject`] it. Services that need
//! in-dialog requests of dialogs they create themselves (SUBSCRIBE dialogs, outgoing calls) use
//! [`MediaCtx::register_dialog`]; outgoing requests go through the proxy ([`MediaCtx::proxy_flow`]).

pub mod api;
pub mod conference;
pub mod ivr;
pub mod leg;
pub mod prompts;
pub mod smtp;
pub mod voicemail;

pub use leg::{Leg, LegError, LegEvent, PlayDone, PlayOutcome, PlayResult};

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};
use tandem_net::{Endpoint, EndpointConfig, IncomingEvent};
use tandem_proto::msg::{HeaderName, Host, Method, Request, Response, Uri};
use tandem_proto::transaction::{TxConfig, TxId};
use tandem_proto::{Flow, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::authn::Authenticator;
use crate::ca::LabCa;
use crate::config::LabConfig;
use crate::location::Location;
use crate::proxy::Proxy;
use crate::registrar::LocalDomains;
use crate::store::Store;

/// The `[mediasrv]` section: the media server's SIP and RTP sockets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaServerConfig {
    /// Run the media server (default true).
    pub enabled: bool,
    /// UDP port of the media server's SIP socket on the lab's first SIP listen IP (0 = any).
    pub port: u16,
    /// Address put into SDP and bound for RTP (default: the SIP listen IP, or the first
    /// non-loopback IPv4 address when that is unspecified).
    pub rtp_ip: Option<IpAddr>,
    /// Most calls (legs) at once; more INVITEs are answered 503.
    pub max_legs: usize,
    /// A leg whose peer sends no RTP for this long reports [`LegEvent::RtpTimeout`].
    pub rtp_timeout_secs: u64,
}

impl Default for MediaServerConfig {
    fn default() -> Self {
        MediaServerConfig {
            enabled: true,
            port: 0,
            rtp_ip: None,
            max_legs: 500,
            rtp_timeout_secs: 30,
        }
    }
}

/// Why the media server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaServerError {
    /// A socket could not be bound.
    #[error("media server: {0}")]
    Io(#[from] std::io::Error),
    /// The SIP endpoint could not be started.
    #[error("media server SIP endpoint: {0}")]
    Net(#[from] tandem_net::NetError),
    /// The proxy has no UDP listener to route through.
    #[error("media server: the lab server has no UDP SIP listener")]
    NoUdpListener,
    /// The store failed (voicemail tables).
    #[error("media server store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What the service handlers share: configuration, store, the SIP endpoint and the proxy.
pub struct MediaCtx {
    config: Arc<LabConfig>,
    store: Store,
    endpoint: Endpoint,
    proxy_flow: Flow,
    proxy_addrs: Vec<SocketAddr>,
    media_ip: IpAddr,
    locals: Arc<LocalDomains>,
    location: Location,
    authn: Arc<Authenticator>,
    dialogs: DialogRegistry,
    limits: Mutex<usize>,
    mwi: OnceLock<Arc<voicemail::Mwi>>,
    dtls_cert: OnceLock<Option<tandem_media::srtp::DtlsCertificate>>,
    closing: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for MediaCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaCtx")
            .field("proxy_flow", &self.proxy_flow)
            .field("media_ip", &self.media_ip)
            .finish_non_exhaustive()
    }
}

impl MediaCtx {
    /// The whole lab configuration (`[conference]`, `[ivr]`, `[voicemail]`, …).
    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// The lab's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The media server's own SIP endpoint (send requests with `Target::Flow(ctx.proxy_flow())`).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The proxy's UDP flow: every request the media server originates goes there first.
    pub fn proxy_flow(&self) -> Flow {
        self.proxy_flow
    }

    /// The proxy as a loose-route URI (`sip:IP:PORT;lr`), for a Route header if wanted.
    pub fn proxy_uri(&self) -> Uri {
        let mut uri = Uri::sip(None, Host::from(self.proxy_flow.remote.ip()), None);
        uri.port = Some(self.proxy_flow.remote.port());
        uri.set_param("lr", None);
        uri
    }

    /// The lab's SIP domain.
    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    /// The address RTP sockets are bound to and written into SDP.
    pub fn media_ip(&self) -> IpAddr {
        self.media_ip
    }

    /// Our Contact URI for `user` (`sip:user@IP:PORT;transport=udp`).
    pub fn contact(&self, user: &str) -> Uri {
        self.endpoint.contact_uri(Transport::Udp, Some(user))
    }

    /// `sip:user@domain` for a user of the lab's domain.
    pub fn aor(&self, user: &str) -> Uri {
        Uri::sip(Some(user), Host::Domain(self.config.domain.clone()), None)
    }

    /// Which hosts and domains are the lab's own.
    pub fn locals(&self) -> &LocalDomains {
        &self.locals
    }

    /// The registered bindings (MWI to a user's devices, "is the user online").
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Digest authentication against the users table (e.g. for the HTTP API).
    pub fn authn(&self) -> &Arc<Authenticator> {
        &self.authn
    }

    /// True when `source` is the proxy (only the proxy may send requests to the media server).
    pub fn is_from_proxy(&self, source: SocketAddr) -> bool {
        self.proxy_addrs.contains(&source)
    }

    /// Routes in-dialog requests (and ACKs, CANCELs of a pending INVITE) of the dialog
    /// `(call_id, local_tag)` to the returned inbox until it is dropped. Use it for dialogs a
    /// service creates itself: SUBSCRIBE dialogs it accepts, calls it originates.
    pub fn register_dialog(&self, call_id: &str, local_tag: &str) -> DialogInbox {
        self.dialogs.register(call_id, local_tag)
    }

    /// The MWI notifier (message-summary subscriptions and unsolicited NOTIFYs).
    pub fn mwi(&self) -> Option<&Arc<voicemail::Mwi>> {
        self.mwi.get()
    }

    /// The media server's DTLS-SRTP certificate (generated on first use; `None` if that failed).
    pub(crate) fn dtls_cert(&self) -> Option<&tandem_media::srtp::DtlsCertificate> {
        self.dtls_cert
            .get_or_init(|| match tandem_media::srtp::DtlsCertificate::generate() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "media server: no DTLS certificate, DTLS-SRTP offers get 488");
                    None
                }
            })
            .as_ref()
    }

    /// Counts a leg in; false (and nothing counted) when `[mediasrv] max_legs` are up.
    fn acquire_leg(&self) -> bool {
        let mut n = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        if *n >= self.config.mediasrv.max_legs.max(1) {
            return false;
        }
        *n += 1;
        true
    }

    fn release_leg(&self) {
        let mut n = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
    }

    /// Becomes true when the media server shuts down: every leg hangs up.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Legs currently up.
    pub fn active_legs(&self) -> usize {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request that arrived in a server transaction of the media server's endpoint.
#[derive(Debug, Clone)]
pub struct ServerRequest {
    /// The server transaction: answer with `ctx.endpoint().respond(tx, …)`.
    pub tx: TxId,
    /// The request.
    pub request: Request,
    /// Where it came from (the proxy).
    pub flow: Flow,
}

/// What the dispatcher hands to a registered dialog.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DialogMessage {
    /// An in-dialog request (answer it on its `tx`).
    Request(ServerRequest),
    /// The ACK for our 2xx.
    Ack(Request),
    /// A CANCEL of the dialog's pending INVITE (already answered 200; answer the INVITE 487).
    Cancel,
}

type DialogKey = (String, String);

/// The table of dialogs that want their in-dialog requests.
#[derive(Clone, Default)]
struct DialogRegistry {
    inner: Arc<Mutex<RegistryInner>>,
}

#[derive(Default)]
struct RegistryInner {
    next_id: u64,
    by_key: HashMap<DialogKey, (u64, mpsc::UnboundedSender<DialogMessage>)>,
    /// Pending INVITE server transactions → dialog key (CANCEL matching).
    invites: HashMap<TxId, DialogKey>,
}

impl DialogRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, call_id: &str, local_tag: &str) -> DialogInbox {
        let (tx, rx) = mpsc::unbounded_channel();
        let key = (call_id.to_owned(), local_tag.to_owned());
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.by_key.insert(key.clone(), (id, tx));
        DialogInbox {
            registry: self.clone(),
            key,
            id,
            rx,
        }
    }

    fn deliver(&self, key: &DialogKey, msg: DialogMessage) -> bool {
        let inner = self.lock();
        match inner.by_key.get(key) {
            Some((_, tx)) => tx.send(msg).is_ok(),
            None => false,
        }
    }

    fn watch_invite(&self, tx: TxId, key: DialogKey) {
        self.lock().invites.insert(tx, key);
    }

    fn invite_done(&self, tx: TxId) {
        self.lock().invites.remove(&tx);
    }

    fn cancel(&self, invite_tx: TxId) -> bool {
        let key = self.lock().invites.get(&invite_tx).cloned();
        match key {
            Some(key) => self.deliver(&key, DialogMessage::Cancel),
            None => false,
        }
    }
}

/// The in-dialog requests of one registered dialog; dropping it unregisters the dialog.
pub struct DialogInbox {
    registry: DialogRegistry,
    key: DialogKey,
    id: u64,
    rx: mpsc::UnboundedReceiver<DialogMessage>,
}

impl std::fmt::Debug for DialogInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialogInbox")
            .field("call_id", &self.key.0)
            .field("local_tag", &self.key.1)
            .finish()
    }
}

impl DialogInbox {
    /// The next message for this dialog; `None` once the media server stops.
    pub async fn recv(&mut self) -> Option<DialogMessage> {
        self.rx.recv().await
    }

    /// A message if one is waiting.
    pub fn try_recv(&mut self) -> Option<DialogMessage> {
        self.rx.try_recv().ok()
    }

    /// Also deliver a CANCEL of the INVITE server transaction `tx` to this inbox.
    pub fn watch_invite(&self, tx: TxId) {
        self.registry.watch_invite(tx, self.key.clone());
    }

    /// Stops watching the INVITE transaction `tx` (it has its final response).
    pub fn invite_done(&self, tx: TxId) {
        self.registry.invite_done(tx);
    }
}

impl Drop for DialogInbox {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if inner
            .by_key
            .get(&self.key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            inner.by_key.remove(&self.key);
        }
        inner.invites.retain(|_, k| k != &self.key);
    }
}

/// Which service a Request-URI user names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// `voicemail@` / `vm@`: the caller's own mailbox (retrieval).
    VoicemailRetrieval,
    /// `vm-<user>@`: leave a message for `<user>`.
    VoicemailDeposit(String),
    /// `conf-<room>@`.
    Conference(String),
    /// `ivr@` (`None`) or `ivr-<menu>@`.
    Ivr(Option<String>),
}

impl Service {
    /// The service a Request-URI user part names, if any.
    pub fn from_user(user: &str) -> Option<Service> {
        let lower = user.to_ascii_lowercase();
        if lower == "voicemail" || lower == "vm" {
            return Some(Service::VoicemailRetrieval);
        }
        if lower.strip_prefix("vm-").is_some_and(|r| !r.is_empty()) {
            return Some(Service::VoicemailDeposit(user[3..].to_owned()));
        }
        if lower.starts_with("conf-") && user.len() > 5 {
            return Some(Service::Conference(user[5..].to_owned()));
        }
        if lower == "ivr" {
            return Some(Service::Ivr(None));
        }
        if lower.starts_with("ivr-") && user.len() > 4 {
            return Some(Service::Ivr(Some(user[4..].to_owned())));
        }
        None
    }
}

/// A running media server.
pub struct MediaServer {
    addrs: Vec<(String, SocketAddr)>,
    ctx: Arc<MediaCtx>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

/// What the media server needs from the rest of the lab server.
pub struct MediaServerDeps<'a> {
    /// The whole configuration.
    pub config: &'a LabConfig,
    /// The store (voicemail metadata, rooms).
    pub store: &'a Store,
    /// The lab CA (TLS for the HTTP API).
    pub ca: &'a LabCa,
    /// Digest authentication against the users table.
    pub authn: Arc<Authenticator>,
    /// The proxy (voicemail on no answer, busy, not registered).
    pub proxy: &'a Arc<Proxy>,
    /// Registered bindings (MWI to a user's devices).
    pub location: Location,
    /// Which domains are ours.
    pub locals: Arc<LocalDomains>,
}

/// The IP to use for SIP and RTP when the listener is bound to an unspecified address.
fn concrete_ip(ip: IpAddr) -> IpAddr {
    if !ip.is_unspecified() {
        return ip;
    }
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        for iface in ifaces {
            let addr = iface.ip();
            if addr.is_ipv4() && !addr.is_loopback() {
                return addr;
            }
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

impl MediaServer {
    /// Starts the media server when `[mediasrv]` enables it.
    pub async fn start(deps: MediaServerDeps<'_>) -> Result<Option<MediaServer>, MediaServerError> {
        if !deps.config.mediasrv.enabled {
            return Ok(None);
        }
        let proxy_endpoint = deps.proxy.endpoint();
        let Some(proxy_udp) = proxy_endpoint.local_addr(Transport::Udp) else {
            // The proxy trusts the media server by its exact UDP source address.
            tracing::warn!("media server disabled: the lab server has no UDP SIP listener");
            return Ok(None);
        };
        let sip_ip = concrete_ip(proxy_udp.ip());
        let proxy_target = SocketAddr::new(sip_ip, proxy_udp.port());
        let mut proxy_addrs: Vec<SocketAddr> = proxy_endpoint
            .local_addrs()
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        proxy_addrs.push(proxy_target);
        let media_ip = deps.config.mediasrv.rtp_ip.unwrap_or(sip_ip);
        let (endpoint, mut incoming) = Endpoint::bind(EndpointConfig {
            udp: vec![SocketAddr::new(sip_ip, deps.config.mediasrv.port)],
            tx: TxConfig {
                seed: rand::random(),
                user_agent: Some(format!("Tandem-Lab-Media/{}", env!("CARGO_PKG_VERSION"))),
                ..TxConfig::default()
            },
            ..EndpointConfig::default()
        })
        .await?;
        let own = endpoint
            .local_addr(Transport::Udp)
            .ok_or(MediaServerError::NoUdpListener)?;
        deps.authn.trust_internal(own);
        let ctx = Arc::new(MediaCtx {
            config: Arc::new(deps.config.clone()),
            store: deps.store.clone(),
            endpoint,
            proxy_flow: Flow {
                transport: Transport::Udp,
                remote: proxy_target,
            },
            proxy_addrs,
            media_ip,
            locals: Arc::clone(&deps.locals),
            location: deps.location.clone(),
            authn: Arc::clone(&deps.authn),
            dialogs: DialogRegistry::default(),
            limits: Mutex::new(0),
            mwi: OnceLock::new(),
            dtls_cert: OnceLock::new(),
            closing: tokio::sync::watch::channel(false).0,
        });
        let mwi = voicemail::Mwi::start(&ctx);
        let _ = ctx.mwi.set(Arc::clone(&mwi));
        voicemail::recover(&ctx).await;
        deps.proxy
            .set_media_routing(crate::proxy::MediaRouting::new(
                own,
                deps.config.voicemail.clone(),
                deps.store.clone(),
            ));
        let dctx = Arc::clone(&ctx);
        let dispatcher = tokio::spawn(async move {
            while let Some(event) = incoming.next().await {
                dispatch(&dctx, event);
            }
        });
        Ok(Some(MediaServer {
            addrs: vec![("mediasrv".to_owned(), own)],
            ctx,
            dispatcher: Mutex::new(Some(dispatcher)),
        }))
    }

    /// `(key, address)` pairs for the ready line, e.g. `("api", 127.0.0.1:8088)`.
    pub fn ready_fields(&self) -> Vec<(String, SocketAddr)> {
        self.addrs.clone()
    }

    /// The shared context (tests, the HTTP API).
    pub fn ctx(&self) -> &Arc<MediaCtx> {
        &self.ctx
    }

    /// Ends every call (BYE, media stopped) and every MWI subscription (final NOTIFY), waiting
    /// up to 2 s; call it while the proxy still forwards requests.
    pub async fn hang_up_all(&self) {
        if let Some(mwi) = self.ctx.mwi() {
            mwi.stop();
        }
        self.ctx.closing.send_replace(true);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.ctx.active_legs() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Ends every call and closes the sockets.
    pub async fn shutdown(&self) {
        let handle = self
            .dispatcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.hang_up_all().await;
        self.ctx.endpoint.shutdown().await;
        if let Some(h) = handle {
            h.abort();
        }
    }
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        if let Some(h) = self
            .dispatcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
    }
}

/// A response to `request` with `status`, our To tag `tag` (when it has none) and a reason.
pub fn response_with_tag(request: &Request, status: u16, reason: &str, tag: &str) -> Response {
    let mut r = Response::for_request(request, status);
    r.reason = reason.to_owned();
    let has_tag = request.headers.to().is_ok_and(|t| t.tag().is_some());
    if !has_tag
        && status > 100
        && let Ok(mut to) = request.headers.to()
    {
        to.set_tag(tag);
        r.headers.set(HeaderName::To, to.to_string());
    }
    r
}

/// The `Subscription-State` of a NOTIFY (RFC 6665 §4.1.3): `terminated;reason=timeout`, or
/// `active` with the seconds left until `expires_at`.
pub fn subscription_state(terminated: bool, expires_at: tokio::time::Instant) -> String {
    if terminated {
        "terminated;reason=timeout".to_owned()
    } else {
        let left = expires_at
            .saturating_duration_since(tokio::time::Instant::now())
            .as_secs();
        format!("active;expires={left}")
    }
}

/// A fresh random tag or identifier (hex).
pub fn random_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn dialog_key(request: &Request) -> Option<DialogKey> {
    let call_id = request.headers.call_id().ok()?.to_owned();
    let tag = request.headers.to().ok()?.tag()?.to_owned();
    Some((call_id, tag))
}

fn dispatch(ctx: &Arc<MediaCtx>, event: IncomingEvent) {
    match event {
        IncomingEvent::Request { tx, request, flow } => on_request(ctx, tx, request, flow),
        IncomingEvent::Ack { request, .. } => {
            if let Some(key) = dialog_key(&request) {
                ctx.dialogs.deliver(&key, DialogMessage::Ack(request));
            }
        }
        IncomingEvent::Cancel {
            tx,
            invite_tx,
            request,
            ..
        } => {
            let matched = invite_tx.is_some_and(|itx| ctx.dialogs.cancel(itx));
            let (status, reason) = if matched {
                (200, "OK")
            } else {
                (481, "Call/Transaction Does Not Exist")
            };
            ctx.endpoint.respond(
                tx,
                response_with_tag(&request, status, reason, &random_tag()),
            );
        }
        _ => {}
    }
}

fn on_request(ctx: &Arc<MediaCtx>, tx: TxId, request: Request, flow: Flow) {
    let reply = |status: u16, reason: &str| {
        ctx.endpoint.respond(
            tx,
            response_with_tag(&request, status, reason, &random_tag()),
        );
    };
    if !ctx.is_from_proxy(flow.remote) {
        reply(403, "Only Through The Proxy");
        return;
    }
    if let Some(key) = dialog_key(&request) {
        let req = ServerRequest {
            tx,
            request: request.clone(),
            flow,
        };
        if !ctx.dialogs.deliver(&key, DialogMessage::Request(req)) {
            reply(481, "Call/Transaction Does Not Exist");
        }
        return;
    }
    let service = request.uri.user.as_deref().and_then(Service::from_user);
    match request.method {
        Method::Invite => {
            let Some(service) = service else {
                reply(404, "Not Found");
                return;
            };
            if !ctx.acquire_leg() {
                let mut r = response_with_tag(&request, 503, "Service Unavailable", &random_tag());
                r.headers.push(HeaderName::RetryAfter, "5");
                ctx.endpoint.respond(tx, r);
                return;
            }
            let guard = LegSlot(Arc::clone(ctx));
            let leg = match Leg::incoming(Arc::clone(ctx), tx, request.clone(), flow) {
                Ok(leg) => leg,
                Err((status, reason)) => {
                    drop(guard);
                    reply(status, &reason);
                    return;
                }
            };
            let ctx = Arc::clone(ctx);
            tokio::spawn(async move {
                let _guard = guard;
                match service {
                    Service::VoicemailRetrieval => voicemail::retrieve(ctx, leg).await,
                    Service::VoicemailDeposit(user) => voicemail::deposit(ctx, leg, user).await,
                    Service::Conference(room) => conference::handle(ctx, leg, room).await,
                    Service::Ivr(menu) => ivr::handle(ctx, leg, menu).await,
                }
            });
        }
        Method::Subscribe => {
            let event = request
                .headers
                .get_str(&HeaderName::Event)
                .map(|e| {
                    e.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            match (&service, event.as_str()) {
                (_, "message-summary") => match ctx.mwi() {
                    Some(mwi) => mwi.subscribe(ServerRequest { tx, request, flow }),
                    None => reply(503, "Service Unavailable"),
                },
                (Some(Service::Conference(room)), _) => {
                    let room = room.clone();
                    conference::handle_request(
                        Arc::clone(ctx),
                        ServerRequest { tx, request, flow },
                        room,
                    );
                }
                _ => {
                    let mut r = response_with_tag(&request, 489, "Bad Event", &random_tag());
                    r.headers
                        .push(HeaderName::Other("Allow-Events".into()), "message-summary");
                    ctx.endpoint.respond(tx, r);
                }
            }
        }
        Method::Options => {
            let mut r = response_with_tag(&request, 200, "OK", &random_tag());
            r.headers.push(
                HeaderName::Allow,
                "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, SUBSCRIBE, NOTIFY, REFER",
            );
            r.headers.push(HeaderName::Accept, "application/sdp");
            ctx.endpoint.respond(tx, r);
        }
        _ => match service {
            Some(Service::Conference(room)) => conference::handle_request(
                Arc::clone(ctx),
                ServerRequest { tx, request, flow },
                room,
            ),
            _ => reply(405, "Method Not Allowed"),
        },
    }
}

/// Releases a leg slot when the service task ends.
struct LegSlot(Arc<MediaCtx>);

impl Drop for LegSlot {
    fn drop(&mut self) {
        self.0.release_leg();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert_eq!(
            Service::from_user("voicemail"),
            Some(Service::VoicemailRetrieval)
        );
        assert_eq!(Service::from_user("VM"), Some(Service::VoicemailRetrieval));
        assert_eq!(
            Service::from_user("vm-alice"),
            Some(Service::VoicemailDeposit("alice".into()))
        );
        assert_eq!(
            Service::from_user("conf-lab1"),
            Some(Service::Conference("lab1".into()))
        );
        assert_eq!(Service::from_user("ivr"), Some(Service::Ivr(None)));
        assert_eq!(
            Service::from_user("ivr-sales"),
            Some(Service::Ivr(Some("sales".into())))
        );
        assert_eq!(Service::from_user("conf-"), None);
        assert_eq!(Service::from_user("vm-"), None);
        assert_eq!(Service::from_user("alice"), None);
    }
}
