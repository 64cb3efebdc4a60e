//! The user agent: one network endpoint, a dispatcher task routing incoming requests to
//! dialogs, and the entry points for registration, calls and OPTIONS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_net::{Endpoint, EndpointConfig, Incoming, IncomingEvent, Target};
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response, Uri};
use tandem_proto::transaction::TxId;
use tandem_proto::{Flow, Transport};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::account::Account;
use crate::call::{Call, CallOptions, IncState, IncomingCall};
use crate::config::{UaConfig, local_ip_toward};
use crate::error::{Result, UaError};
use crate::history::History;
use crate::im::{ImState, MessageOutcome, OutgoingMessage, ReceivedMessage};
use crate::presence::{ListSubscription, PresenceSubscription, Publication, WinfoSubscription};
use crate::registration::{RegisterOptions, Registration};
use crate::request::{self, AuthSession};
use crate::transfer::ReplacesTarget;
use tandem_proto::simple::imdn::{Imdn, Notification};
use tandem_proto::simple::iscomposing::{ComposingState, IsComposing};
use tandem_proto::simple::pidf::{Availability, Presence};

/// Methods we accept (the `Allow` header).
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, MESSAGE";
/// Body types we accept (the `Accept` header).
pub(crate) const ACCEPT: &str = "application/sdp";
/// Extensions we support (the `Supported` header): Replaces (RFC 3891).
pub(crate) const SUPPORTED: &str = "replaces";
/// Capacity of the [`UaEvents`] queue; further incoming calls are refused while it is full.
const EVENT_QUEUE: usize = 64;
/// How often the host's interface addresses are compared (RFC 5626 / ICE restart triggers).
const NETWORK_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// The host's network as the user agent last saw it; a new value means it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkState {
    /// Increases by one on every change (0: as at start).
    pub generation: u64,
    /// The non-loopback interface addresses, sorted.
    pub addresses: Vec<IpAddr>,
}

/// The host's non-loopback interface addresses, sorted (empty when they cannot be listed).
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| !ip.is_loopback())
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list interface addresses");
            Vec::new()
        }
    };
    out.sort();
    out.dedup();
    out
}

/// Polls the interface addresses every [`NETWORK_POLL`] until the user agent is gone.
async fn watch_network(shared: std::sync::Weak<Shared>) {
    let mut ticker = tokio::time::interval(NETWORK_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = tokio::task::spawn_blocking(interface_addresses)
            .await
            .unwrap_or_default();
        shared.network_changed(Some(now));
    }
}

/// Something that happened at the user agent outside any call it placed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UaEvent {
    /// A new incoming INVITE: `ring()`, `accept()` or `reject()` it (dropping it answers 480).
    /// It may arrive while other calls are up (call waiting).
    IncomingCall(IncomingCall),
    /// The peer of call `transferred_call_id` asked us to transfer (REFER): this is the new
    /// call to the transfer target, already placed; the old call ends once it is answered.
    TransferCall {
        /// The new call (its events: `Ringing`, `Answered`, …).
        call: Call,
        /// The Call-ID of the call that was transferred.
        transferred_call_id: String,
    },
    /// An INVITE with Replaces (RFC 3891) took the place of call `replaced_call_id`: it was
    /// accepted with that call's account and devices, and the old call ends (`Replaced`).
    CallReplaced {
        /// The new, accepted call.
        call: Call,
        /// The Call-ID of the call it replaces.
        replaced_call_id: String,
    },
    /// An instant message (MESSAGE, RFC 3428), already answered 200; duplicates are dropped.
    Message(ReceivedMessage),
    /// An is-composing indication (RFC 3994) from `from`.
    Composing {
        /// The sender's URI.
        from: String,
        /// The indication.
        state: IsComposing,
    },
    /// A disposition notification (RFC 5438) about a message we sent.
    Imdn {
        /// The sender's URI (the recipient of our message).
        from: String,
        /// The notification.
        imdn: Imdn,
    },
}

/// The stream of [`UaEvent`]s of one user agent.
#[derive(Debug)]
pub struct UaEvents {
    rx: mpsc::Receiver<UaEvent>,
}

impl UaEvents {
    /// The next event; `None` once the user agent has shut down.
    pub async fn next(&mut self) -> Option<UaEvent> {
        self.rx.recv().await
    }
}

/// Identifies a dialog (or a call being set up) on our side: Call-ID and our tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DialogKey {
    pub call_id: String,
    pub local_tag: String,
}

/// Input routed by the dispatcher to the task owning a dialog.
#[derive(Debug)]
pub(crate) enum DialogInput {
    /// An in-dialog request in a server transaction.
    Request { tx: TxId, request: Request },
    /// An ACK for a 2xx we sent.
    Ack { request: Request },
    /// A response no client transaction matched (a late 2xx to our INVITE).
    StrayResponse { response: Response },
    /// An INVITE with Replaces naming this dialog.
    Replace {
        incoming: IncomingCall,
        replaces: ReplacesTarget,
    },
}

/// An incoming INVITE not yet answered with a final response (for CANCEL).
#[derive(Debug)]
pub(crate) struct PendingInvite {
    pub request: Request,
    pub local_tag: String,
    pub state: Arc<watch::Sender<IncState>>,
}

#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub dialogs: HashMap<DialogKey, mpsc::UnboundedSender<DialogInput>>,
    pub pending_invites: HashMap<TxId, PendingInvite>,
}

/// State shared by the user agent, its dispatcher, registrations and calls.
#[derive(Debug)]
pub(crate) struct Shared {
    pub endpoint: Endpoint,
    pub config: UaConfig,
    pub transport: Transport,
    pub local_ip: IpAddr,
    rng: Mutex<StdRng>,
    routes: Mutex<Routes>,
    ua_events: Mutex<Option<mpsc::Sender<UaEvent>>>,
    im: Mutex<ImState>,
    history: Option<History>,
    /// Received messages go through one writer task, so they are recorded in arrival order.
    history_tx: Option<mpsc::UnboundedSender<crate::history::MessageRecord>>,
    /// The host's interface addresses; registrations re-register and calls restart ICE on change.
    network: watch::Sender<NetworkState>,
}

impl Shared {
    /// Subscribes to changes of the host's network (interface addresses).
    pub fn network_changes(&self) -> watch::Receiver<NetworkState> {
        self.network.subscribe()
    }

    /// Records the current interface addresses (`None`: a change reported from outside, e.g. by
    /// the OS); subscribers are woken when they differ from the last ones (or always for `None`).
    pub fn network_changed(&self, addresses: Option<Vec<IpAddr>>) {
        self.network.send_if_modified(|state| {
            let addresses = match addresses {
                Some(a) if a == state.addresses => return false,
                Some(a) => a,
                None => state.addresses.clone(),
            };
            tracing::info!(?addresses, previous = ?state.addresses, "network changed");
            state.addresses = addresses;
            state.generation += 1;
            true
        });
    }

    fn rng(&self) -> MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The instant-messaging state (duplicate suppression, known accounts).
    pub fn im(&self) -> MutexGuard<'_, ImState> {
        self.im.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The history database, when configured.
    pub fn history(&self) -> Option<History> {
        self.history.clone()
    }

    /// Queues a received message for the history (in arrival order); no-op without history.
    pub fn record_received(&self, record: crate::history::MessageRecord) {
        if let Some(tx) = &self.history_tx {
            let _ = tx.send(record);
        }
    }

    /// A random token of `len` lowercase alphanumerics from the seeded RNG.
    pub fn token(&self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = self.rng();
        (0..len)
            .map(|_| {
                let i = rng.random_range(0..ALPHABET.len());
                char::from(ALPHABET.get(i).copied().unwrap_or(b'x'))
            })
            .collect()
    }

    /// A fresh From/To tag.
    pub fn tag(&self) -> String {
        self.token(12)
    }

    /// A fresh Call-ID (`random@our-host`).
    pub fn call_id(&self) -> String {
        format!("{}@{}", self.token(20), self.host())
    }

    /// A fresh RFC 3261 branch for requests we send outside a transaction (ACK for 2xx).
    pub fn branch(&self) -> String {
        format!("z9hG4bK{}", self.token(16))
    }

    /// A random 32-bit number (SDP session ids, initial CSeq).
    pub fn random_u32(&self) -> u32 {
        self.rng().random()
    }

    /// Our host for Call-IDs, Via and SDP: the public host or the local IP.
    pub fn host(&self) -> String {
        match &self.config.public_host {
            Some(h) => h.clone(),
            None => match self.local_ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            },
        }
    }

    /// The Via sent-by (`host:port`) for requests we send over `transport` ourselves.
    pub fn sent_by(&self, transport: Transport) -> String {
        let port = self
            .endpoint
            .local_addr(transport)
            .or_else(|| self.endpoint.local_addrs().first().map(|(_, a)| *a))
            .map_or(transport.default_port(), |a| a.port());
        format!("{}:{port}", self.host())
    }

    /// Our contact URI over the UA's transport, with a user part.
    pub fn contact_uri(&self, user: Option<&str>) -> Uri {
        self.endpoint.contact_uri(self.transport, user)
    }

    /// Sends a response in server transaction `tx` (logged with `-v`).
    pub fn respond(&self, tx: TxId, response: Response) {
        log_out(&Message::Response(response.clone()), None);
        self.endpoint.respond(tx, response);
    }

    /// Sends a message outside any transaction (the ACK for a 2xx), logged with `-v`.
    pub fn send_stateless(&self, message: Message, flow: Flow) {
        log_out(&message, Some(flow));
        self.endpoint.send_stateless(message, flow);
    }

    /// Routes in-dialog input for `key` to `tx` until [`Shared::remove_dialog`].
    pub fn add_dialog(&self, key: DialogKey, tx: mpsc::UnboundedSender<DialogInput>) {
        self.routes().dialogs.insert(key, tx);
    }

    /// Queues a UA event; when nobody takes events (or the queue is full) it is dropped
    /// (a call in it hangs up) and false is returned.
    pub fn emit_ua(&self, event: UaEvent) -> bool {
        let sender = self
            .ua_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match sender {
            Some(s) => match s.try_send(event) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("UA event dropped: {e}");
                    false
                }
            },
            None => false,
        }
    }

    /// Stops routing input for `key`.
    pub fn remove_dialog(&self, key: &DialogKey) {
        self.routes().dialogs.remove(key);
    }

    /// Sends an in-dialog (or out-of-dialog) request and waits for its final response,
    /// answering digest challenges with `auth` when given.
    pub async fn send(
        self: &Arc<Self>,
        request: Request,
        target: Target,
        auth: Option<&mut AuthSession>,
    ) -> Result<Response> {
        request::send_non_invite(self, request, target, auth).await
    }
}

/// A SIP user agent over one network endpoint; cheap to clone.
#[derive(Debug, Clone)]
pub struct UserAgent {
    shared: Arc<Shared>,
    dispatcher: Arc<JoinHandle<()>>,
}

impl UserAgent {
    /// The state shared with the UA's tasks (for the subscriptions of other modules).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Binds the endpoint per `config` and starts the dispatcher.
    pub async fn new(config: UaConfig) -> Result<(UserAgent, UaEvents)> {
        let transport = config.transport;
        let local_ip = if config.listen.ip().is_unspecified() {
            local_ip_toward(config.route_hint)
        } else {
            config.listen.ip()
        };
        let public_host = config.public_host.clone().or_else(|| {
            config.listen.ip().is_unspecified().then(|| match local_ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            })
        });
        let mut tx = config.tx.clone();
        let mut seed_rng = StdRng::seed_from_u64(config.seed);
        tx.seed = seed_rng.random();
        if tx.user_agent.is_none() {
            tx.user_agent = Some(config.user_agent.clone());
        }
        let mut ep = EndpointConfig {
            tls_client: config.tls_client.clone(),
            public_host: public_host.clone(),
            tx,
            dns: config.dns,
            keepalive: config.keepalive,
            ..EndpointConfig::default()
        };
        match transport {
            Transport::Udp => ep.udp.push(config.listen),
            Transport::Tcp => ep.tcp.push(config.listen),
            // We have no server certificate: incoming requests reuse our TLS connection.
            // A UDP socket on the listen address gives Contact/Via a local address.
            Transport::Tls => ep.udp.push(config.listen),
        }
        let (endpoint, incoming) = Endpoint::bind(ep)
            .await
            .map_err(|e| UaError::Network(format!("cannot bind {}: {e}", config.listen)))?;
        let history = match &config.history {
            Some(path) => Some(
                History::open(path)
                    .await
                    .map_err(|e| UaError::Config(format!("history {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let mut config = config;
        config.public_host = public_host;
        let shared = Arc::new(Shared {
            endpoint,
            config,
            transport,
            local_ip,
            rng: Mutex::new(seed_rng),
            routes: Mutex::new(Routes::default()),
            ua_events: Mutex::new(None),
            im: Mutex::new(ImState::default()),
            history_tx: history.clone().map(|h| {
                let (tx, mut rx) = mpsc::unbounded_channel::<crate::history::MessageRecord>();
                tokio::spawn(async move {
                    while let Some(record) = rx.recv().await {
                        if let Err(e) = h.record_message(&record).await {
                            tracing::warn!("cannot record a received message: {e}");
                        }
                    }
                });
                tx
            }),
            history,
            network: watch::channel(NetworkState {
                generation: 0,
                addresses: interface_addresses(),
            })
            .0,
        });
        tokio::spawn(watch_network(Arc::downgrade(&shared)));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        *shared.ua_events.lock().unwrap_or_else(|p| p.into_inner()) = Some(events_tx.clone());
        let dispatcher = tokio::spawn(dispatch(shared.clone(), incoming, events_tx));
        Ok((
            UserAgent {
                shared,
                dispatcher: Arc::new(dispatcher),
            },
            UaEvents { rx: events_rx },
        ))
    }

    /// The transport of this user agent.
    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    /// The bound SIP listener address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared
            .endpoint
            .local_addr(self.shared.transport)
            .or_else(|| self.shared.endpoint.local_addrs().first().map(|(_, a)| *a))
    }

    /// The local IP used for Contact, Via and media.
    pub fn local_ip(&self) -> IpAddr {
        self.shared.local_ip
    }

    /// Our contact URI for `user` (what [`UserAgent::register`] registers).
    pub fn contact_uri(&self, user: Option<&str>) -> Uri {
        self.shared.contact_uri(user)
    }

    /// The underlying network endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// Changes of the host's network (interface addresses, polled every 2 s): registrations
    /// re-register by themselves; calls use it to restart ICE.
    pub fn network_changes(&self) -> watch::Receiver<NetworkState> {
        self.shared.network_changes()
    }

    /// Reports a network change seen outside (e.g. the OS's connectivity callback on a phone):
    /// registrations re-register at once and `network_changes` subscribers are woken.
    pub fn notify_network_change(&self) {
        self.shared.network_changed(None);
    }

    /// Registers our contact for `account` and keeps it refreshed (RFC 3261 §10.2).
    pub async fn register(&self, account: &Account) -> Result<Registration> {
        self.shared.im().remember_account(account);
        Registration::start(
            self.shared.clone(),
            account.clone(),
            RegisterOptions::default(),
        )
        .await
    }

    /// Registers with options (e.g. a foreign contact) and keeps it refreshed.
    pub async fn register_with(
        &self,
        account: &Account,
        options: RegisterOptions,
    ) -> Result<Registration> {
        Registration::start(self.shared.clone(), account.clone(), options).await
    }

    /// Places a call from `account` to `target`; returns once the INVITE is sent.
    pub async fn call(&self, account: &Account, target: Uri, options: CallOptions) -> Result<Call> {
        crate::call::place(
            self.shared.clone(),
            account.clone(),
            target,
            options,
            Vec::new(),
            None,
        )
        .await
    }

    /// Sends an instant message (MESSAGE, RFC 3428) from `account` to `to` through the
    /// account's proxy; Ok for a 2xx (202: stored for later delivery), else `Rejected`.
    pub async fn send_message(
        &self,
        account: &Account,
        to: Uri,
        message: OutgoingMessage,
    ) -> Result<MessageOutcome> {
        crate::im::send_message(&self.shared, account, to, message).await
    }

    /// Sends an is-composing indication (RFC 3994) to `to`.
    pub async fn send_composing(
        &self,
        account: &Account,
        to: Uri,
        state: ComposingState,
        refresh: Option<u32>,
    ) -> Result<()> {
        crate::im::send_composing(&self.shared, account, to, state, refresh).await
    }

    /// Sends a disposition notification (RFC 5438) about `message` to its sender; fails with
    /// `Config` when the message did not ask for that disposition.
    pub async fn send_imdn(
        &self,
        account: &Account,
        message: &ReceivedMessage,
        notification: Notification,
    ) -> Result<()> {
        crate::im::send_imdn(&self.shared, account, message, notification).await
    }

    /// Publishes `availability` (and a note) for `account` (PUBLISH, RFC 3903); the
    /// publication is refreshed in the background until removed.
    pub async fn publish(
        &self,
        account: &Account,
        availability: Availability,
        note: Option<&str>,
    ) -> Result<Publication> {
        let entity = account.aor()?.to_string();
        Publication::start(
            self.shared.clone(),
            account.clone(),
            availability.to_presence(&entity, note),
        )
        .await
    }

    /// Publishes any PIDF document for `account`.
    pub async fn publish_presence(
        &self,
        account: &Account,
        presence: Presence,
    ) -> Result<Publication> {
        Publication::start(self.shared.clone(), account.clone(), presence).await
    }

    /// Subscribes to `target`'s presence (RFC 3856) as `account`; the subscription runs in
    /// the background (refreshed, re-established after termination) until dropped.
    pub fn subscribe_presence(&self, account: &Account, target: Uri) -> PresenceSubscription {
        PresenceSubscription::start(self.shared.clone(), account.clone(), target)
    }

    /// Subscribes to the resource list `list` (RFC 4662: `presence` with `Supported: eventlist`,
    /// NOTIFYs with RLMI and a PIDF part per resource) as `account`; runs in the background
    /// like [`UserAgent::subscribe_presence`] until dropped.
    pub fn subscribe_list(&self, account: &Account, list: Uri) -> ListSubscription {
        ListSubscription::start(self.shared.clone(), account.clone(), list)
    }

    /// Subscribes to our own watcher list (RFC 3857, `presence.winfo`) as `account`.
    pub fn subscribe_winfo(&self, account: &Account) -> Result<WinfoSubscription> {
        let aor = account.aor()?;
        Ok(WinfoSubscription::start(
            self.shared.clone(),
            account.clone(),
            aor,
        ))
    }

    /// Lets the UA send notifications (automatic delivery IMDNs) as `account` for messages
    /// addressed to its AoR (done by `register` and `send_message` too).
    pub fn add_account(&self, account: &Account) {
        self.shared.im().remember_account(account);
    }

    /// The history database, when [`UaConfig::history`] is set.
    pub fn history(&self) -> Option<History> {
        self.shared.history()
    }

    /// Sends OPTIONS to `target` (directly, RFC 3263) and returns its final response.
    pub async fn options(&self, target: Uri) -> Result<Response> {
        self.options_inner(None, target).await
    }

    /// Sends OPTIONS to `target` as `account` (through its proxy, answering challenges); an
    /// account without user sends as `anonymous`.
    pub async fn options_as(&self, account: &Account, target: Uri) -> Result<Response> {
        self.options_inner(Some(account), target).await
    }

    async fn options_inner(&self, account: Option<&Account>, target: Uri) -> Result<Response> {
        let shared = &self.shared;
        let account = account.filter(|a| !a.user.is_empty() || a.proxy.is_some());
        let from = match account.filter(|a| !a.user.is_empty()) {
            Some(a) => request::name_addr_header(a.display_name.as_deref(), &a.aor()?),
            None => format!("<sip:anonymous@{}>", shared.host()),
        };
        let mut req = Request::new(Method::Options, target.clone());
        let h = &mut req.headers;
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::To, format!("<{target}>"));
        h.push(HeaderName::From, format!("{from};tag={}", shared.tag()));
        h.push(HeaderName::CallId, shared.call_id());
        h.push(HeaderName::CSeq, format!("{} OPTIONS", 1));
        h.push(
            HeaderName::Contact,
            format!(
                "<{}>",
                shared.contact_uri(account.map(|a| a.user.as_str()).filter(|u| !u.is_empty()))
            ),
        );
        h.push(HeaderName::Accept, ACCEPT);
        h.push(HeaderName::UserAgent, shared.config.user_agent.clone());
        let hop = match account {
            Some(a) => a.next_hop(&target),
            None => {
                let mut hop = target.clone();
                hop.user = None;
                hop.password = None;
                crate::account::with_transport(&mut hop, shared.transport);
                hop
            }
        };
        let mut auth = account.map(AuthSession::for_account);
        shared.send(req, Target::Uri(hop), auth.as_mut()).await
    }

    /// Stops the dispatcher and closes the endpoint. Hang up calls and unregister first.
    pub async fn shutdown(&self) {
        self.shared
            .ua_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.dispatcher.abort();
        self.shared.endpoint.shutdown().await;
    }
}

/// Logs a SIP message we send (target `tandem::sip`, debug level: what `-v` shows).
pub(crate) fn log_out(message: &Message, flow: Option<Flow>) {
    if tracing::enabled!(target: "tandem::sip", tracing::Level::DEBUG) {
        let text = message.to_bytes();
        let to = flow.map_or_else(|| "its transaction".to_string(), |f| f.to_string());
        tracing::debug!(target: "tandem::sip", "--> to {to}\n{}", String::from_utf8_lossy(&text));
    }
}

/// Logs a SIP message we received (target `tandem::sip`, debug level).
pub(crate) fn log_in(message: &Message, flow: Option<Flow>) {
    if tracing::enabled!(target: "tandem::sip", tracing::Level::DEBUG) {
        let text = message.to_bytes();
        let from = flow.map_or_else(|| "its transaction".to_string(), |f| f.to_string());
        tracing::debug!(target: "tandem::sip", "<-- from {from}\n{}", String::from_utf8_lossy(&text));
    }
}

/// Routes every incoming event to its dialog, answers what needs no dialog.
async fn dispatch(shared: Arc<Shared>, mut incoming: Incoming, events: mpsc::Sender<UaEvent>) {
    while let Some(event) = incoming.next().await {
        match &event {
            IncomingEvent::Request { request, flow, .. }
            | IncomingEvent::Ack { request, flow }
            | IncomingEvent::Cancel { request, flow, .. } => {
                log_in(&Message::Request(request.clone()), Some(*flow));
            }
            IncomingEvent::StrayResponse { response, flow } => {
                log_in(&Message::Response(response.clone()), Some(*flow));
            }
            _ => {}
        }
        match event {
            IncomingEvent::Request { tx, request, flow } => {
                on_request(&shared, &events, tx, request, flow);
            }
            IncomingEvent::Ack { request, .. } => {
                if let Some(key) = key_for_request(&request) {
                    let sender = shared.routes().dialogs.get(&key).cloned();
                    match sender {
                        Some(s) => {
                            let _ = s.send(DialogInput::Ack { request });
                        }
                        None => tracing::debug!(call_id = %key.call_id, "ACK for no dialog"),
                    }
                }
            }
            IncomingEvent::Cancel {
                tx,
                invite_tx,
                request,
                ..
            } => on_cancel(&shared, tx, invite_tx, &request),
            IncomingEvent::StrayResponse { response, .. } => {
                let key = response.headers.call_id().ok().and_then(|call_id| {
                    let from = response.headers.from().ok()?;
                    Some(DialogKey {
                        call_id: call_id.to_string(),
                        local_tag: from.tag()?.to_string(),
                    })
                });
                let sender = key.and_then(|k| shared.routes().dialogs.get(&k).cloned());
                match sender {
                    Some(s) => {
                        let _ = s.send(DialogInput::StrayResponse { response });
                    }
                    None => tracing::debug!(status = response.status, "stray response dropped"),
                }
            }
            IncomingEvent::Timeout { tx } => {
                if let Some(p) = shared.routes().pending_invites.remove(&tx) {
                    p.state.send_replace(IncState::Failed);
                }
                tracing::debug!(%tx, "server INVITE transaction timed out without ACK");
            }
            _ => {}
        }
    }
    tracing::debug!("endpoint closed; dispatcher stops");
}

/// The dialog key of an in-dialog request (Call-ID and our tag, which is its To tag).
fn key_for_request(request: &Request) -> Option<DialogKey> {
    let call_id = request.headers.call_id().ok()?.to_string();
    let to = request.headers.to().ok()?;
    Some(DialogKey {
        call_id,
        local_tag: to.tag()?.to_string(),
    })
}

fn on_request(
    shared: &Arc<Shared>,
    events: &mpsc::Sender<UaEvent>,
    tx: TxId,
    request: Request,
    flow: Flow,
) {
    let has_to_tag = request
        .headers
        .to()
        .ok()
        .is_some_and(|to| to.tag().is_some());
    if let Some(r) = precheck(&request) {
        shared.respond(tx, r);
        return;
    }
    if has_to_tag {
        let key = key_for_request(&request);
        let sender = key.and_then(|k| shared.routes().dialogs.get(&k).cloned());
        let undelivered = match sender {
            Some(s) => match s.send(DialogInput::Request { tx, request }) {
                Ok(()) => None,
                Err(mpsc::error::SendError(DialogInput::Request { request, .. })) => Some(request),
                Err(_) => None,
            },
            None => Some(request),
        };
        if let Some(request) = undelivered {
            // RFC 3261 §12.2.2: a request for a dialog we do not know.
            if request.method == Method::Options {
                shared.respond(tx, options_response(shared, &request));
            } else {
                let mut r = Response::for_request(&request, 481);
                r.reason = "Call/Transaction Does Not Exist".into();
                shared.respond(tx, r);
            }
        }
        return;
    }
    match request.method {
        Method::Invite => {
            if is_merged(shared, &request) {
                // RFC 3261 §8.2.2.2: the same INVITE reached us twice (forking): 482.
                let mut r = Response::for_request(&request, 482);
                r.reason = "Loop Detected".into();
                shared.respond(tx, r);
                return;
            }
            let replaces = request
                .headers
                .get_str(&HeaderName::Other("Replaces".into()))
                .map(str::to_string);
            if let Some(value) = replaces {
                on_replaces(shared, tx, request, flow, &value);
                return;
            }
            if !shared.config.call_waiting && !shared.routes().dialogs.is_empty() {
                let mut r = Response::for_request(&request, 486);
                r.reason = "Busy Here".into();
                shared.respond(tx, r);
                return;
            }
            let call = IncomingCall::new(shared.clone(), tx, request, flow);
            if let Err(e) = events.try_send(UaEvent::IncomingCall(call)) {
                // Dropping the call answers it (480 Temporarily Unavailable).
                tracing::warn!("incoming call refused: nobody takes UA events ({e})");
            }
        }
        Method::Options => shared.respond(tx, options_response(shared, &request)),
        Method::Message => crate::im::on_message(shared, tx, request),
        Method::Bye | Method::Update | Method::Info | Method::Prack | Method::Notify => {
            let mut r = Response::for_request(&request, 481);
            r.reason = "Call/Transaction Does Not Exist".into();
            shared.respond(tx, r);
        }
        Method::Refer => {
            // Only REFER inside a call (a transfer) is supported.
            let mut r = Response::for_request(&request, 403);
            r.reason = "Out-of-dialog REFER Not Supported".into();
            shared.respond(tx, r);
        }
        Method::Extension(_) => {
            let mut r = Response::for_request(&request, 501);
            r.reason = "Not Implemented".into();
            r.headers.push(HeaderName::Allow, ALLOW);
            shared.respond(tx, r);
        }
        _ => {
            let mut r = Response::for_request(&request, 405);
            r.reason = "Method Not Allowed".into();
            r.headers.push(HeaderName::Allow, ALLOW);
            shared.respond(tx, r);
        }
    }
}

/// Whether an INVITE without To tag has the From tag, Call-ID and CSeq of one we are
/// already handling in another transaction (a merged request).
fn is_merged(shared: &Shared, request: &Request) -> bool {
    let (Ok(call_id), Ok(from), Ok(cseq)) = (
        request.headers.call_id(),
        request.headers.from(),
        request.headers.cseq(),
    ) else {
        return false;
    };
    let from_tag = from.tag();
    shared.routes().pending_invites.values().any(|p| {
        let h = &p.request.headers;
        h.call_id().is_ok_and(|c| c == call_id)
            && h.from().is_ok_and(|f| f.tag() == from_tag)
            && h.cseq().is_ok_and(|c| c.seq == cseq.seq)
    })
}

/// RFC 3261 §8.2.2.1, §8.2.2.3 and §8.2.3: requests with a Request-URI scheme we do not
/// know (416), needing extensions we lack (420) or carrying a
/// body we cannot read (415) are refused before any dialog processing.
fn precheck(request: &Request) -> Option<Response> {
    if let Err(e) = tandem_proto::msg::check_request_uri_scheme(request)
        && request.method != Method::Ack
    {
        let mut r = Response::for_request(request, 416);
        r.reason = "Unsupported URI Scheme".into();
        tracing::debug!(error = %e, "refusing a request");
        return Some(r);
    }
    let required: Vec<String> = request
        .headers
        .values(&HeaderName::Require)
        .into_iter()
        .filter(|ext| {
            // A resource-list NOTIFY (RFC 4662 §5) requires `eventlist`; list subscriptions read it.
            let list_notify =
                request.method == Method::Notify && ext.trim().eq_ignore_ascii_case("eventlist");
            !list_notify
                && !SUPPORTED
                    .split(',')
                    .any(|ours| ours.trim().eq_ignore_ascii_case(ext.trim()))
        })
        .collect();
    if !required.is_empty() && !matches!(request.method, Method::Ack | Method::Cancel) {
        let mut r = Response::for_request(request, 420);
        r.reason = "Bad Extension".into();
        r.headers.push(HeaderName::Unsupported, required.join(", "));
        return Some(r);
    }
    let sdp = request.headers.content_type().is_none_or(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(ACCEPT))
    });
    let carries_session = matches!(request.method, Method::Invite | Method::Update);
    if carries_session && !request.body.is_empty() && !sdp {
        let mut r = Response::for_request(request, 415);
        r.reason = "Unsupported Media Type".into();
        r.headers.push(HeaderName::Accept, ACCEPT);
        return Some(r);
    }
    None
}

/// The 200 to an OPTIONS: our capabilities.
pub(crate) fn options_response(shared: &Shared, request: &Request) -> Response {
    let mut r = Response::for_request(request, 200);
    r.reason = "OK".into();
    if request.headers.to().ok().is_some_and(|t| t.tag().is_none()) {
        request::add_to_tag(&mut r, &shared.tag());
    }
    r.headers.push(HeaderName::Allow, ALLOW);
    r.headers.push(HeaderName::Accept, ACCEPT);
    r.headers.push(HeaderName::Supported, SUPPORTED);
    r.headers.push(
        HeaderName::Contact,
        format!("<{}>", shared.contact_uri(None)),
    );
    r.headers
        .push(HeaderName::Server, shared.config.user_agent.clone());
    r
}

fn on_cancel(shared: &Arc<Shared>, tx: TxId, invite_tx: Option<TxId>, cancel: &Request) {
    let pending =
        invite_tx.and_then(|id| shared.routes().pending_invites.remove(&id).map(|p| (id, p)));
    let Some((invite_tx, pending)) = pending else {
        let mut r = Response::for_request(cancel, 481);
        r.reason = "Call/Transaction Does Not Exist".into();
        shared.respond(tx, r);
        return;
    };
    let mut ok = Response::for_request(cancel, 200);
    ok.reason = "OK".into();
    shared.respond(tx, ok);
    let cancelled = pending.state.send_if_modified(|s| {
        if *s == IncState::Pending {
            *s = IncState::Cancelled;
            true
        } else {
            false
        }
    });
    if cancelled {
        let mut r = Response::for_request(&pending.request, 487);
        r.reason = "Request Terminated".into();
        request::add_to_tag(&mut r, &pending.local_tag);
        shared.respond(invite_tx, r);
    }
}

/// An INVITE with Replaces (RFC 3891 §3): handed to the dialog it names, else 481 (400 for a
/// malformed header).
fn on_replaces(shared: &Arc<Shared>, tx: TxId, request: Request, flow: Flow, value: &str) {
    let Some(replaces) = ReplacesTarget::parse(value) else {
        let mut r = Response::for_request(&request, 400);
        r.reason = "Bad Replaces Header".into();
        shared.respond(tx, r);
        return;
    };
    let key = DialogKey {
        call_id: replaces.call_id.clone(),
        local_tag: replaces.to_tag.clone(),
    };
    let sender = shared.routes().dialogs.get(&key).cloned();
    let incoming = IncomingCall::new(shared.clone(), tx, request, flow);
    let undelivered = match sender {
        Some(s) => match s.send(DialogInput::Replace { incoming, replaces }) {
            Ok(()) => None,
            Err(mpsc::error::SendError(DialogInput::Replace { incoming, .. })) => Some(incoming),
            Err(_) => None,
        },
        None => Some(incoming),
    };
    if let Some(incoming) = undelivered {
        let _ = incoming.reject(481);
    }
}
