//! The authenticating, record-routing, forking stateful proxy.
//!
//! RFC 3261 §16: request validation happens in the server dispatcher; here are Route
//! preprocessing (§16.4), authentication and authorization of out-of-dialog requests,
//! target determination through the [`Location`] service (§16.5), forwarding with parallel
//! forking (§16.6), response selection and forwarding (§16.7), CANCEL handling (§16.10), the
//! INVITE timeout, stateless forwarding of ACKs for 2xx and stray 2xx retransmissions, loop
//! detection keys and call detail records.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_net::{ClientTx, Endpoint, Target, TxOutcome};
use tandem_proto::msg::{HeaderName, Message, Method, Request, Response, Scheme, Uri};
use tandem_proto::transaction::TxId;
use tandem_proto::{Flow, Transport};
use tokio::sync::{mpsc, oneshot, watch};

use crate::authn::{AuthRole, Authenticator, Identity};
use crate::location::{Location, unix_now, unix_now_ms};
use crate::registrar::{LocalDomains, ensure_to_tag, is_sip_scheme, reply};
use crate::store::{Binding, Cdr, Store};

/// How long to wait for the downstream 487s after the caller's CANCEL before answering 487 ourselves.
const CANCEL_GRACE: Duration = Duration::from_secs(4);
/// Capacity of the CDR write queue; writes beyond it are dropped with a warning.
const CDR_QUEUE: usize = 4096;
/// Maximum number of answered calls whose CDR waits for the BYE.
const MAX_LIVE_CDRS: usize = 100_000;
/// Loop-detection entries kept per generation.
const LOOP_GENERATION: usize = 32_768;
/// After the no-answer timeout, how long the cancelled branches may take before the call goes to
/// voicemail anyway (a 2xx racing the CANCEL within it still connects the callee).
const DIVERT_GRACE: Duration = Duration::from_secs(2);

/// Proxy policy settings (from `[proxy]` and `[limits]`).
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Time an INVITE may go without a final response before the branches are cancelled.
    pub invite_timeout: Duration,
    /// Insert Record-Route in dialog-creating requests.
    pub record_route: bool,
    /// Maximum parallel branches per request.
    pub max_forks: usize,
    /// Maximum INVITE transactions the proxy keeps call state for at once.
    pub max_calls: usize,
}

/// One place a request is forwarded to.
#[derive(Debug, Clone)]
struct BranchTarget {
    /// The Request-URI of the branch.
    uri: Uri,
    /// Where to send it.
    target: Target,
    /// Where to try next if `target` fails at the transport level before any response.
    fallback: Option<Target>,
    /// The transport we expect the branch to leave on (for Record-Route).
    transport: Transport,
    /// A local user's binding (errors map to 480 rather than 503).
    local: bool,
    /// Replace the Request-URI with `uri` (retargeting) or keep it (routing by Route).
    retarget: bool,
}

enum BranchEvent {
    Provisional(Response),
    Final(usize, Response),
    Done,
}

/// What a call (INVITE server transaction) is told from outside.
struct CallEntry {
    cancel: watch::Sender<bool>,
}

/// Per-call accounting for CDRs.
#[derive(Debug, Clone)]
struct CallInfo {
    call_id: String,
    caller: String,
    callee: String,
    start_at: i64,
}

/// The stateful proxy.
pub struct Proxy {
    settings: ProxySettings,
    endpoint: Endpoint,
    location: Location,
    authn: Arc<Authenticator>,
    locals: Arc<LocalDomains>,
    calls: Mutex<HashMap<TxId, CallEntry>>,
    loops: LoopGuard,
    cdrs: CdrLog,
    im: std::sync::OnceLock<Arc<crate::im::Im>>,
    media: std::sync::OnceLock<MediaRouting>,
    relay: std::sync::OnceLock<crate::media_relay::MediaRelay>,
}

/// How the proxy reaches the media server: its address, for the service users
/// (`voicemail@`, `vm-<user>@`, `conf-*@`, `ivr*@`) and message-summary subscriptions, and the
/// voicemail policy (no answer, busy, not registered).
#[derive(Debug, Clone)]
pub struct MediaRouting {
    addr: std::net::SocketAddr,
    voicemail: crate::mediasrv::voicemail::VoicemailConfig,
    store: Store,
}

impl MediaRouting {
    /// Routing to the media server's UDP socket `addr` with the `[voicemail]` policy.
    pub fn new(
        addr: std::net::SocketAddr,
        voicemail: crate::mediasrv::voicemail::VoicemailConfig,
        store: Store,
    ) -> MediaRouting {
        MediaRouting {
            addr,
            voicemail,
            store,
        }
    }

    fn branch(&self, uri: Uri) -> BranchTarget {
        BranchTarget {
            uri,
            target: Target::Flow(Flow {
                transport: Transport::Udp,
                remote: self.addr,
            }),
            fallback: None,
            transport: Transport::Udp,
            local: true,
            retarget: true,
        }
    }
}

impl Proxy {
    /// A proxy forwarding through `endpoint`, with CDRs written to `store`.
    pub fn new(
        settings: ProxySettings,
        endpoint: Endpoint,
        location: Location,
        authn: Arc<Authenticator>,
        locals: Arc<LocalDomains>,
        store: Store,
    ) -> Proxy {
        Proxy {
            settings,
            endpoint,
            location,
            authn,
            locals,
            calls: Mutex::new(HashMap::new()),
            loops: LoopGuard::default(),
            cdrs: CdrLog::new(store),
            im: std::sync::OnceLock::new(),
            media: std::sync::OnceLock::new(),
            relay: std::sync::OnceLock::new(),
        }
    }

    /// Sends service users and message-summary subscriptions to the media server (set once).
    pub fn set_media_routing(&self, routing: MediaRouting) {
        let _ = self.media.set(routing);
    }

    /// The endpoint the proxy forwards through (the lab's SIP listeners).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Hands MESSAGEs for offline users to the store-and-forward service (set once).
    pub fn set_im(&self, im: Arc<crate::im::Im>) {
        let _ = self.im.set(im);
    }

    /// Waits until every call record produced so far is written to the store.
    pub async fn flush_cdrs(&self) {
        self.cdrs.flush().await;
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<TxId, CallEntry>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when `request` carries a Via we inserted with a loop key equal to the request's
    /// current one: it was forwarded by us before and came back unchanged (RFC 3261 §16.3 step 4).
    pub fn is_loop(&self, request: &Request) -> bool {
        let Ok(vias) = request.headers.vias() else {
            return false;
        };
        let mut key = None;
        for via in vias {
            let ours = self.locals.is_local_host(&via.host)
                && self
                    .endpoint
                    .local_addrs()
                    .iter()
                    .any(|(_, a)| Some(a.port()) == via.port.or(Some(5060)));
            if !ours {
                continue;
            }
            let Some(branch) = via.branch() else {
                continue;
            };
            if let Some(stored) = self.loops.get(branch) {
                let k = *key.get_or_insert_with(|| loop_key(request));
                if stored == k {
                    return true;
                }
            }
        }
        false
    }

    /// Takes a request (not ACK/CANCEL) from the server transaction `tx` and proxies it in a new task.
    pub fn dispatch(self: &Arc<Self>, tx: TxId, request: Request, flow: Flow) {
        let mut cancel_rx = None;
        if request.method == Method::Invite {
            let mut calls = self.calls();
            if calls.len() >= self.settings.max_calls {
                drop(calls);
                let mut r = reply(&request, 503, "Service Unavailable");
                r.headers.push(HeaderName::RetryAfter, "5");
                self.endpoint.respond(tx, r);
                return;
            }
            let (cancel, rx) = watch::channel(false);
            calls.insert(tx, CallEntry { cancel });
            cancel_rx = Some(rx);
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let cancel = cancel_rx.unwrap_or_else(|| watch::channel(false).1);
            this.process(tx, request, flow, cancel).await;
            this.calls().remove(&tx);
        });
    }

    /// Handles a CANCEL: answers it and cancels the branches of the INVITE it matches.
    pub fn handle_cancel(&self, tx: TxId, invite_tx: Option<TxId>, request: &Request) {
        let Some(invite_tx) = invite_tx else {
            self.endpoint
                .respond(tx, reply(request, 481, "Call/Transaction Does Not Exist"));
            return;
        };
        self.endpoint.respond(tx, reply(request, 200, "OK"));
        let calls = self.calls();
        if let Some(entry) = calls.get(&invite_tx) {
            let _ = entry.cancel.send(true);
        }
    }

    /// Forwards an ACK for a 2xx statelessly along its Route set (loose routing).
    pub async fn handle_ack(&self, mut request: Request, flow: Flow) {
        let popped = self.preprocess_routes(&mut request);
        if !popped && !self.is_registered_contact(&request.uri) {
            tracing::debug!(uri = %request.uri, "ACK not routed through us: dropped");
            return;
        }
        if !decrement_max_forwards(&mut request) {
            return;
        }
        let Some(hop) = self.next_hop(&request) else {
            return;
        };
        self.relay_ack(&mut request);
        let flow_out = match hop.target {
            Target::Flow(f) => f,
            Target::Uri(uri) => match self.endpoint.resolve(&uri).await {
                Ok(flows) => match flows.first() {
                    Some(f) => *f,
                    None => return,
                },
                Err(e) => {
                    tracing::debug!(error = %e, "ACK next hop did not resolve");
                    return;
                }
            },
        };
        let branch = format!("z9hG4bK{:016x}", hash_of(&(loop_key(&request), flow)));
        let sent_by = self.sent_by(flow_out.transport);
        request.headers.push_front(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={}",
                flow_out.transport.via_token(),
                sent_by,
                branch
            ),
        );
        self.endpoint
            .send_stateless(Message::Request(request), flow_out);
    }

    /// Forwards a stray response (a 2xx retransmission after the client transaction ended)
    /// statelessly to the next Via, if the top Via is ours.
    pub fn handle_stray_response(&self, mut response: Response) {
        let Ok(vias) = response.headers.vias() else {
            return;
        };
        let Some(top) = vias.first() else {
            return;
        };
        if !self.locals.is_local_host(&top.host) || vias.len() < 2 {
            return;
        }
        let is_2xx_invite = (200..300).contains(&response.status)
            && response
                .headers
                .cseq()
                .is_ok_and(|c| c.method == Method::Invite);
        if !is_2xx_invite {
            return;
        }
        strip_top_via(&mut response);
        self.relay_stray_response(&mut response);
        self.endpoint.respond_stateless(response);
    }

    fn sent_by(&self, transport: Transport) -> String {
        let uri = self.endpoint.contact_uri(transport, None);
        uri.host_port()
    }

    fn record_route_uri(&self, transport: Transport) -> String {
        let mut uri = self.endpoint.contact_uri(transport, None);
        uri.user = None;
        uri.set_param("transport", Some(transport.uri_param()));
        uri.set_param("lr", None);
        format!("<{uri}>")
    }

    fn is_registered_contact(&self, uri: &Uri) -> bool {
        self.location
            .find_contact(&uri.to_string(), unix_now())
            .is_some()
    }

    /// §16.4: strict-router fix-up and removal of our own Route values; true if one was ours.
    fn preprocess_routes(&self, request: &mut Request) -> bool {
        let Ok(mut routes) = request.headers.routes() else {
            return false;
        };
        let mut changed = false;
        if self.locals.is_us(&request.uri) && request.uri.user.is_none() && !routes.is_empty() {
            // The previous hop was a strict router: the last Route is the real Request-URI.
            if let Some(last) = routes.pop() {
                request.uri = last.uri;
                changed = true;
            }
        }
        let mut popped = false;
        while routes.first().is_some_and(|r| self.locals.is_us(&r.uri)) {
            routes.remove(0);
            popped = true;
            changed = true;
        }
        if changed {
            request.headers.remove(&HeaderName::Route);
            for r in &routes {
                request.headers.push(HeaderName::Route, r.to_string());
            }
        }
        popped
    }

    /// Where a request that is routed (not retargeted) goes: the top Route, else the Request-URI.
    fn next_hop(&self, request: &Request) -> Option<BranchTarget> {
        let routes = request.headers.routes().unwrap_or_default();
        let uri = match routes.first() {
            Some(r) => r.uri.clone(),
            None => request.uri.clone(),
        };
        if !is_sip_scheme(&uri) {
            return None;
        }
        let (target, fallback, transport) = self.targets_for_uri(&uri, None);
        Some(BranchTarget {
            uri: request.uri.clone(),
            target,
            fallback,
            transport,
            local: false,
            retarget: false,
        })
    }

    /// The send targets for a URI: the registered stream flow and the contact itself, in the
    /// order to try them, with the transport we expect to use.
    ///
    /// The flow comes first when the contact is the flow's own address, asks for it (`;ob`,
    /// RFC 5626 reg-id) or is a TLS contact (clients rarely listen for TLS); otherwise the
    /// contact comes first (a third-party contact registered over someone else's connection)
    /// and the flow is the fallback.
    pub(crate) fn targets_for_uri(
        &self,
        uri: &Uri,
        binding: Option<&Binding>,
    ) -> (Target, Option<Target>, Transport) {
        let found;
        let binding = match binding {
            Some(b) => Some(b),
            None => {
                found = self.location.find_contact(&uri.to_string(), unix_now());
                found.as_ref()
            }
        };
        let by_uri = Target::Uri(uri.clone());
        if let Some(route) = Self::udp_flow_targets(uri, binding) {
            return route;
        }
        let Some((flow, b)) = binding
            .and_then(|b| b.flow.as_deref().and_then(parse_flow).map(|f| (f, b)))
            .filter(|(f, _)| f.transport.is_reliable())
        else {
            return (by_uri, None, uri_transport(uri));
        };
        let contact_is_flow = uri.port == Some(flow.remote.port())
            && uri.host == tandem_proto::msg::Host::from(flow.remote.ip());
        let prefer_flow = contact_is_flow
            || b.is_nated()
            || uri.has_param("ob")
            || b.reg_id.is_some()
            || uri_transport(uri) == Transport::Tls;
        if prefer_flow {
            (Target::Flow(flow), Some(by_uri), flow.transport)
        } else {
            (by_uri, Some(Target::Flow(flow)), uri_transport(uri))
        }
    }

    /// NAT handling for a binding registered over UDP: its flow only (NATed or outbound UAs),
    /// or its Contact with the flow as fallback; `None` for other bindings (see
    /// [`crate::nat::udp_flow_preference`]).
    fn udp_flow_targets(
        uri: &Uri,
        binding: Option<&Binding>,
    ) -> Option<(Target, Option<Target>, Transport)> {
        let b = binding?;
        let flow = b.flow_addr().filter(|f| f.transport == Transport::Udp)?;
        match crate::nat::udp_flow_preference(uri, b, flow)? {
            true => Some((Target::Flow(flow), None, Transport::Udp)),
            false => Some((
                Target::Uri(uri.clone()),
                Some(Target::Flow(flow)),
                uri_transport(uri),
            )),
        }
    }

    async fn process(
        self: &Arc<Self>,
        tx: TxId,
        mut request: Request,
        flow: Flow,
        cancel: watch::Receiver<bool>,
    ) {
        crate::nat::fix_request_contact(&mut request, flow);
        let original = request.clone();
        let popped = self.preprocess_routes(&mut request);
        let in_dialog = request
            .headers
            .to()
            .is_ok_and(|to| to.tag().is_some_and(|t| !t.is_empty()));

        if in_dialog && (popped || self.is_registered_contact(&request.uri)) {
            // Loose-routed in-dialog request (or one addressed to a registered contact):
            // forwarded without authentication.
            if !decrement_max_forwards(&mut request) {
                self.endpoint
                    .respond(tx, reply(&original, 483, "Too Many Hops"));
                return;
            }
            if request.method == Method::Bye
                && let Ok(call_id) = request.headers.call_id()
            {
                self.cdrs.ended(call_id);
                self.relay_bye(&request);
            }
            let Some(hop) = self.next_hop(&request) else {
                self.endpoint
                    .respond(tx, reply(&original, 416, "Unsupported URI Scheme"));
                return;
            };
            self.forward(tx, &original, request, flow, vec![hop], cancel, None, None)
                .await;
            return;
        }

        // Out-of-dialog (or not routed through us): authenticate (the lab's own UAs are trusted).
        let identity = match if self.authn.is_internal(flow.remote) {
            Ok(Identity::Trusted)
        } else {
            self.authn
                .authenticate(&request, AuthRole::Proxy, flow.remote.ip())
                .await
        } {
            Ok(id) => id,
            Err(challenge) => {
                self.endpoint.respond(tx, *challenge);
                return;
            }
        };
        if let Identity::User(user) = &identity {
            let from_ok = request.headers.from().is_ok_and(|from| {
                from.uri.user.as_deref() == Some(user.as_str())
                    && self.locals.is_local_host(&from.uri.host)
            });
            if !from_ok {
                self.endpoint
                    .respond(tx, reply(&original, 403, "From Does Not Match Credentials"));
                return;
            }
        }
        self.authn.strip_credentials(&mut request);

        if !decrement_max_forwards(&mut request) {
            self.endpoint
                .respond(tx, reply(&original, 483, "Too Many Hops"));
            return;
        }

        let call = if request.method == Method::Invite && !in_dialog {
            request.headers.call_id().ok().map(|cid| CallInfo {
                call_id: cid.to_string(),
                caller: request
                    .headers
                    .from()
                    .ok()
                    .map(|f| self.aor_of(&f.uri))
                    .unwrap_or_default(),
                callee: self.aor_of(&request.uri),
                start_at: unix_now_ms(),
            })
        } else {
            None
        };

        if let Some(im) = self.im.get()
            && let Some(r) = im.intercept(&request).await
        {
            self.endpoint.respond(tx, r);
            return;
        }
        let voicemail = self.voicemail_for(&request, in_dialog).await;
        let targets = match self.determine_targets(&request, &identity).await {
            Ok(t) => t,
            Err((480, _)) if voicemail.is_some() => {
                // A user of ours with a mailbox but no device registered: straight to voicemail.
                let divert = voicemail.map(|(media, uri)| media.branch(uri));
                self.forward(
                    tx,
                    &original,
                    request,
                    flow,
                    divert.into_iter().collect(),
                    cancel,
                    call,
                    None,
                )
                .await;
                return;
            }
            Err((status, reason)) => {
                if let Some(im) = self.im.get()
                    && let Some(r) = im.offline(&request, &[status]).await
                {
                    self.endpoint.respond(tx, r);
                    return;
                }
                if let Some(call) = &call {
                    self.cdrs
                        .finished(call, None, Some(status), cause_for(status, false));
                }
                self.endpoint.respond(tx, reply(&original, status, reason));
                return;
            }
        };
        self.relay_anchor(&request, flow, &targets);
        let Some((media, vm_uri)) = voicemail else {
            self.forward(tx, &original, request, flow, targets, cancel, call, None)
                .await;
            return;
        };
        let no_answer = Duration::from_secs(media.voicemail.no_answer_secs.max(1));
        let divert_request = request.clone();
        let diverted = self
            .forward(
                tx,
                &original,
                request,
                flow,
                targets,
                cancel.clone(),
                call.clone(),
                Some(no_answer),
            )
            .await;
        if diverted {
            tracing::debug!(uri = %original.uri, "no answer, busy or unreachable: to voicemail");
            let branch = media.branch(vm_uri);
            self.forward(
                tx,
                &original,
                divert_request,
                flow,
                vec![branch],
                cancel,
                call,
                None,
            )
            .await;
        }
    }

    /// The mailbox an INVITE falls back to (the media server routing and `vm-<user>` URI): an
    /// out-of-dialog INVITE to an existing local user whose voicemail is enabled.
    async fn voicemail_for(
        &self,
        request: &Request,
        in_dialog: bool,
    ) -> Option<(MediaRouting, Uri)> {
        if request.method != Method::Invite || in_dialog {
            return None;
        }
        let media = self.media.get()?;
        if !media.voicemail.enabled || !self.is_our_domain(&request.uri) {
            return None;
        }
        if request.headers.routes().is_ok_and(|r| !r.is_empty()) {
            return None;
        }
        let user = request.uri.user.as_deref().filter(|u| !u.is_empty())?;
        if crate::mediasrv::Service::from_user(user).is_some()
            || self
                .location
                .find_contact(&request.uri.to_string(), unix_now())
                .is_some()
        {
            return None;
        }
        if !self.authn.user_exists(user).await.unwrap_or(false) {
            return None;
        }
        match media.store.voicemail_enabled(user).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "voicemail settings lookup failed");
                return None;
            }
        }
        let uri = Uri::sip(
            Some(&format!("vm-{user}")),
            tandem_proto::msg::Host::Domain(self.locals.domain().to_owned()),
            None,
        );
        Some((media.clone(), uri))
    }

    /// The canonical AoR text of a URI: `sip:user@domain` (local domains canonicalised).
    fn aor_of(&self, uri: &Uri) -> String {
        self.locals.canonical_aor(uri).unwrap_or_else(|| uri.aor())
    }

    /// §16.5: the branches for an out-of-dialog request, or the error status to answer.
    async fn determine_targets(
        &self,
        request: &Request,
        identity: &Identity,
    ) -> Result<Vec<BranchTarget>, (u16, &'static str)> {
        let uri = &request.uri;
        if !is_sip_scheme(uri) {
            return Err((416, "Unsupported URI Scheme"));
        }
        let now = unix_now();
        // Explicit Route set left after our own: follow it.
        if request
            .headers
            .routes()
            .map(|r| !r.is_empty())
            .unwrap_or(false)
        {
            return self
                .next_hop(request)
                .map(|h| vec![h])
                .ok_or((416, "Unsupported URI Scheme"));
        }
        // A registered contact (e.g. a request to a GRUU-like contact): straight there.
        if let Some(b) = self.location.find_contact(&uri.to_string(), now) {
            let (target, fallback, transport) = self.targets_for_uri(uri, Some(&b));
            return Ok(vec![BranchTarget {
                uri: uri.clone(),
                target,
                fallback,
                transport,
                local: true,
                retarget: false,
            }]);
        }
        if self.is_our_domain(uri)
            && let Some(media) = self.media.get()
            && (uri
                .user
                .as_deref()
                .is_some_and(|u| crate::mediasrv::Service::from_user(u).is_some())
                || is_message_summary(request))
        {
            // The media server's service users, and MWI subscriptions to a local user.
            return Ok(vec![media.branch(uri.clone())]);
        }
        if self.is_our_domain(uri) {
            let Some(aor) = self.locals.canonical_aor(uri) else {
                return Err((404, "Not Found"));
            };
            let bindings = self.location.lookup(&aor, now);
            if bindings.is_empty() {
                let user = uri.user.clone().unwrap_or_default();
                return match self.authn.user_exists(&user).await {
                    Ok(true) => Err((480, "Temporarily Unavailable")),
                    Ok(false) => Err((404, "Not Found")),
                    Err(e) => {
                        tracing::warn!(error = %e, "user lookup failed");
                        Err((500, "Server Internal Error"))
                    }
                };
            }
            let mut out = Vec::new();
            for b in bindings.iter().take(self.settings.max_forks.max(1)) {
                let Ok(contact) = Uri::parse(&b.contact) else {
                    continue;
                };
                let (target, fallback, transport) = self.targets_for_uri(&contact, Some(b));
                out.push(BranchTarget {
                    uri: contact,
                    target,
                    fallback,
                    transport,
                    local: true,
                    retarget: true,
                });
            }
            if out.is_empty() {
                return Err((480, "Temporarily Unavailable"));
            }
            return Ok(out);
        }
        // A foreign domain: never an open relay.
        match identity {
            Identity::User(_) | Identity::Trusted => Ok(vec![BranchTarget {
                uri: uri.clone(),
                target: Target::Uri(uri.clone()),
                fallback: None,
                transport: uri_transport(uri),
                local: false,
                retarget: false,
            }]),
        }
    }

    /// True when a Request-URI names a user of ours: a local host and no port or one of ours (a
    /// local IP with another port is some UA's contact on this machine).
    fn is_our_domain(&self, uri: &Uri) -> bool {
        if !self.locals.is_local_host(&uri.host) {
            return false;
        }
        match uri.port {
            None => true,
            Some(p) => self
                .endpoint
                .local_addrs()
                .iter()
                .any(|(_, a)| a.port() == p),
        }
    }

    /// Builds one outgoing request per target, sends them, and relays responses (§16.6, §16.7).
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        tx: TxId,
        original: &Request,
        request: Request,
        in_flow: Flow,
        targets: Vec<BranchTarget>,
        mut cancel: watch::Receiver<bool>,
        call: Option<CallInfo>,
        voicemail_after: Option<Duration>,
    ) -> bool {
        let is_invite = request.method == Method::Invite;
        let voicemail = is_invite && voicemail_after.is_some();
        let dialog_creating = matches!(
            request.method,
            Method::Invite | Method::Subscribe | Method::Refer
        ) && original.headers.to().is_ok_and(|t| t.tag().is_none());
        let key = loop_key(original);
        let (ev_tx, mut ev_rx) = mpsc::channel::<BranchEvent>(64);
        let (cancel_branches, branch_cancel_rx) = watch::channel(false);
        let mut finals: Vec<Option<Response>> = vec![None; targets.len()];
        let mut live = 0usize;

        if *cancel.borrow() {
            self.relay_call_failed(&request);
            self.endpoint
                .respond(tx, reply(original, 487, "Request Terminated"));
            if let Some(call) = &call {
                self.cdrs
                    .finished(call, None, Some(487), "cancelled".into());
            }
            return false;
        }

        let mut relay_legs: Vec<Option<RelayLeg>> = vec![None; targets.len()];
        let mut relay_vias: HashMap<String, usize> = HashMap::new();
        for (i, t) in targets.iter().enumerate() {
            let mut branch = request.clone();
            if t.retarget {
                branch.uri = t.uri.clone();
            }
            if let Some(slot) = relay_legs.get_mut(i) {
                *slot = self.relay_request(&mut branch, t);
            }
            if dialog_creating && self.settings.record_route {
                // RFC 5658: two Record-Routes when the two sides use different transports
                // or IP families (each side must reach the one facing it).
                for rr in self.record_routes(in_flow, t) {
                    branch.headers.push_front(HeaderName::RecordRoute, rr);
                }
            }
            let sent = match (
                self.endpoint
                    .request(branch.clone(), t.target.clone())
                    .await,
                &t.fallback,
            ) {
                (Ok(ctx), fallback) => Ok((ctx, fallback.clone().map(|f| (branch, f)))),
                (Err(e), Some(fallback)) => {
                    tracing::debug!(error = %e, target = %t.uri, "first target failed, trying the fallback");
                    self.endpoint
                        .request(branch, fallback.clone())
                        .await
                        .map(|ctx| (ctx, None))
                }
                (Err(e), None) => Err(e),
            };
            match sent {
                Ok((ctx, fallback)) => {
                    if let Some(b) = ctx
                        .request()
                        .headers
                        .top_via()
                        .ok()
                        .and_then(|v| v.branch().map(str::to_string))
                    {
                        relay_vias.insert(b.clone(), i);
                        self.loops.insert(b, key);
                    }
                    live += 1;
                    tokio::spawn(run_branch(
                        i,
                        ctx,
                        self.endpoint.clone(),
                        branch_cancel_rx.clone(),
                        ev_tx.clone(),
                        t.local,
                        fallback,
                    ));
                }
                Err(e) => {
                    tracing::debug!(error = %e, target = %t.uri, "branch could not be sent");
                    let status = if t.local { 480 } else { 503 };
                    if let Some(slot) = finals.get_mut(i) {
                        *slot = Some(Response::for_request(original, status));
                    }
                }
            }
        }
        drop(ev_tx);

        let deadline = tokio::time::Instant::now()
            + match voicemail_after {
                Some(after) if voicemail => after,
                _ => self.settings.invite_timeout,
            };
        // Set when the call goes to voicemail: the branches are being cancelled.
        let mut diverting = false;
        let mut divert_deadline: Option<tokio::time::Instant> = None;
        let mut cancel_deadline: Option<tokio::time::Instant> = None;
        let mut final_sent: Option<u16> = None;
        let mut provisional_seen = false;
        let mut caller_cancelled = false;
        let mut timed_out = false;
        let mut released = false;
        let mut cancel_closed = false;

        loop {
            if final_sent.is_some() && !released {
                // A CANCEL can no longer change anything: free the call slot now rather than
                // when the last branch ends (answered INVITE branches live on for 2xx retransmissions).
                self.calls().remove(&tx);
                released = true;
            }
            if final_sent.is_none() && finals.iter().all(Option::is_some) {
                let statuses: Vec<u16> = finals.iter().flatten().map(|r| r.status).collect();
                if voicemail
                    && !caller_cancelled
                    && (diverting || statuses.iter().all(|s| diverts_to_voicemail(*s)))
                {
                    let _ = cancel_branches.send(true);
                    return true;
                }
                let stored = match self.im.get() {
                    Some(im) if !is_invite => im.offline(&request, &statuses).await,
                    _ => None,
                };
                let best = stored.unwrap_or_else(|| best_response(&finals, original));
                let status = best.status;
                self.endpoint.respond(tx, best);
                final_sent = Some(status);
                if is_invite && status >= 300 {
                    self.relay_call_failed(&request);
                }
                if let Some(call) = &call {
                    self.cdrs.finished(
                        call,
                        None,
                        Some(status),
                        cause_for(status, caller_cancelled),
                    );
                }
            }
            if live == 0 {
                if diverting && final_sent.is_none() {
                    return true;
                }
                break;
            }
            tokio::select! {
                ev = ev_rx.recv() => match ev {
                    None => break,
                    Some(BranchEvent::Done) => live = live.saturating_sub(1),
                    Some(BranchEvent::Provisional(mut r)) => {
                        if r.status > 100 && final_sent.is_none() {
                            provisional_seen = true;
                            let leg = relay_leg_of(&r, &relay_vias, &relay_legs);
                            self.relay_response(leg, &mut r);
                            strip_top_via(&mut r);
                            self.endpoint.respond(tx, r);
                        }
                    }
                    Some(BranchEvent::Final(i, mut r)) => {
                        let first = finals.get(i).is_some_and(Option::is_none);
                        self.relay_response(relay_legs.get(i).and_then(Option::as_ref), &mut r);
                        strip_top_via(&mut r);
                        if (200..300).contains(&r.status) {
                            // Record the answer before the 2xx leaves, so that a BYE racing
                            // right behind the ACK finds the call.
                            let answered_now = final_sent.is_none();
                            if answered_now && let Some(call) = &call {
                                self.cdrs.answered(call, r.status);
                            }
                            match final_sent {
                                None | Some(200..=299) => self.endpoint.respond(tx, r.clone()),
                                Some(_) => self.endpoint.respond_stateless(r.clone()),
                            }
                            if answered_now {
                                final_sent = Some(r.status);
                            }
                            if is_invite {
                                let _ = cancel_branches.send(true);
                            }
                            if first && let Some(slot) = finals.get_mut(i) {
                                *slot = Some(r);
                            }
                        } else if first {
                            if is_invite && r.status >= 600 {
                                let _ = cancel_branches.send(true);
                            }
                            if let Some(slot) = finals.get_mut(i) {
                                *slot = Some(r);
                            }
                        }
                    }
                },
                _ = sleep_until_opt(divert_deadline), if diverting && final_sent.is_none() => {
                    // The cancelled branches did not all answer in time: go to voicemail anyway.
                    return true;
                }
                _ = tokio::time::sleep_until(deadline), if is_invite && final_sent.is_none() && !timed_out => {
                    timed_out = true;
                    let _ = cancel_branches.send(true);
                    if voicemail && !caller_cancelled {
                        diverting = true;
                        divert_deadline = Some(tokio::time::Instant::now() + DIVERT_GRACE);
                        continue;
                    }
                    let (status, reason) = if provisional_seen {
                        (480, "Temporarily Unavailable")
                    } else {
                        (408, "Request Timeout")
                    };
                    self.endpoint.respond(tx, reply(original, status, reason));
                    final_sent = Some(status);
                    self.relay_call_failed(&request);
                    if let Some(call) = &call {
                        self.cdrs.finished(call, None, Some(status), "no-answer".into());
                    }
                }
                changed = cancel.changed(), if !caller_cancelled && !cancel_closed && final_sent.is_none() => {
                    if changed.is_err() {
                        // No CANCEL can come any more (non-INVITE, or the call slot is gone).
                        cancel_closed = true;
                    } else if *cancel.borrow() {
                        caller_cancelled = true;
                        let _ = cancel_branches.send(true);
                        cancel_deadline = Some(tokio::time::Instant::now() + CANCEL_GRACE);
                    }
                }
                _ = sleep_until_opt(cancel_deadline), if final_sent.is_none() && cancel_deadline.is_some() => {
                    self.endpoint.respond(tx, reply(original, 487, "Request Terminated"));
                    final_sent = Some(487);
                    self.relay_call_failed(&request);
                    if let Some(call) = &call {
                        self.cdrs.finished(call, None, Some(487), "cancelled".into());
                    }
                }
            }
        }
        if final_sent.is_none() {
            // Every branch ended without a final response (should not happen): answer anyway.
            let best = best_response(&finals, original);
            let status = best.status;
            self.endpoint.respond(tx, best);
            if let Some(call) = &call {
                self.cdrs.finished(
                    call,
                    None,
                    Some(status),
                    cause_for(status, caller_cancelled),
                );
            }
        }
        if is_invite && final_sent.is_none_or(|s| s >= 300) {
            self.relay_call_failed(&request);
        }
        false
    }
}

/// The relay context of one branch of a forwarded request: the anchored call, the callee
/// branch, and which side sent the request.
#[derive(Debug, Clone)]
struct RelayLeg {
    id: crate::media_relay::DialogId,
    branch: u32,
    sender: crate::media_relay::Side,
    initial_invite: bool,
}

/// The relay leg of a provisional response: by the Via branch of the request it answers.
fn relay_leg_of<'a>(
    response: &Response,
    vias: &HashMap<String, usize>,
    legs: &'a [Option<RelayLeg>],
) -> Option<&'a RelayLeg> {
    let via = response.headers.top_via().ok()?;
    let index = *vias.get(via.branch()?)?;
    legs.get(index)?.as_ref()
}

/// The SDP body of a message, if it has one that parses.
fn sdp_body(
    headers: &tandem_proto::msg::Headers,
    body: &[u8],
) -> Option<tandem_proto::sdp::SessionDescription> {
    if body.is_empty() {
        return None;
    }
    let is_sdp = headers.content_type().is_none_or(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
    });
    if !is_sdp {
        return None;
    }
    tandem_proto::sdp::SessionDescription::parse_bytes(body).ok()
}

/// The IP of a host, when it is a literal.
fn host_ip(host: &tandem_proto::msg::Host) -> Option<std::net::IpAddr> {
    match host {
        tandem_proto::msg::Host::V4(ip) => Some(std::net::IpAddr::V4(*ip)),
        tandem_proto::msg::Host::V6(ip) => Some(std::net::IpAddr::V6(*ip)),
        tandem_proto::msg::Host::Domain(_) => None,
    }
}

/// Record-Route across IP families (the IPv4 <-> IPv6 calls the media relay carries).
impl Proxy {
    /// The Record-Route values for a request from `in_flow` leaving on branch `t`, in the order
    /// they are pushed (the caller's side first): one, or two when the sides differ in
    /// transport or IP family (RFC 5658).
    fn record_routes(&self, in_flow: Flow, t: &BranchTarget) -> Vec<String> {
        let in_family = in_flow.remote.ip().is_ipv4();
        let out_ip = match &t.target {
            Target::Flow(f) => Some(f.remote.ip()),
            Target::Uri(u) => host_ip(&u.host),
        };
        let out_family = out_ip.map_or(in_family, |ip| ip.is_ipv4());
        let mut out = vec![self.record_route_uri_in(in_flow.transport, in_family)];
        if t.transport != in_flow.transport || out_family != in_family {
            out.push(self.record_route_uri_in(t.transport, out_family));
        }
        out
    }

    /// [`Self::record_route_uri`] on a listener of the given family (`true` = IPv4) when the
    /// default one is an address of the other family and such a listener exists.
    fn record_route_uri_in(&self, transport: Transport, ipv4: bool) -> String {
        let default = self.endpoint.contact_uri(transport, None);
        let wrong_family = host_ip(&default.host).is_some_and(|ip| ip.is_ipv4() != ipv4);
        let listener = self
            .endpoint
            .local_addrs()
            .into_iter()
            .find(|(t, a)| *t == transport && a.is_ipv4() == ipv4 && !a.ip().is_unspecified())
            .map(|(_, a)| a);
        match listener {
            Some(a) if wrong_family => {
                let mut uri = Uri::sip(None, tandem_proto::msg::Host::from(a.ip()), Some(a.port()));
                uri.set_param("transport", Some(transport.uri_param()));
                uri.set_param("lr", None);
                format!("<{uri}>")
            }
            _ => self.record_route_uri(transport),
        }
    }
}

/// Media relay hooks: the anchoring decision and the SDP rewriting of anchored dialogs
/// (see [`crate::media_relay`]).
impl Proxy {
    /// Anchors NATed and IPv4 <-> IPv6 calls on `relay` (set once).
    pub fn set_media_relay(&self, relay: crate::media_relay::MediaRelay) {
        let _ = self.relay.set(relay);
    }

    /// The registered binding a branch target is, if any (by contact, else among the
    /// bindings of the request's AoR).
    fn relay_binding(&self, request: &Request, t: &BranchTarget) -> Option<Binding> {
        let now = unix_now();
        if let Some(b) = self.location.find_contact(&t.uri.to_string(), now) {
            return Some(b);
        }
        let aor = self.locals.canonical_aor(&request.uri)?;
        self.location
            .lookup(&aor, now)
            .into_iter()
            .find(|b| Uri::parse(&b.contact).is_ok_and(|u| u == t.uri))
    }

    /// What the decision rule needs to know about a callee, and its signalling address.
    fn relay_party(
        &self,
        request: &Request,
        t: &BranchTarget,
    ) -> (crate::media_relay::PartyInfo, Option<std::net::IpAddr>) {
        let binding = self.relay_binding(request, t);
        let flow_ip = binding
            .as_ref()
            .and_then(Binding::flow_addr)
            .map(|f| f.remote.ip())
            .or(match &t.target {
                Target::Flow(f) => Some(f.remote.ip()),
                Target::Uri(_) => None,
            })
            .or_else(|| host_ip(&t.uri.host));
        let info = crate::media_relay::PartyInfo {
            nated: binding.as_ref().is_some_and(Binding::is_nated),
            family: flow_ip.map(crate::media_relay::Family::of),
            ice: binding.as_ref().is_some_and(|b| b.has_feature("+sip.ice")),
        };
        (info, flow_ip)
    }

    /// The initial INVITE's offer: anchors the call when the decision rule says so.
    fn relay_anchor(&self, request: &Request, flow: Flow, targets: &[BranchTarget]) {
        use crate::media_relay::{
            DialogId, Family, PartyInfo, caller_is_nated, sdp, should_anchor,
        };
        let Some(relay) = self.relay.get() else {
            return;
        };
        if request.method != Method::Invite {
            return;
        }
        let Some(offer) = sdp_body(&request.headers, &request.body) else {
            return;
        };
        let (Ok(call_id), Ok(from)) = (request.headers.call_id(), request.headers.from()) else {
            return;
        };
        let Some(tag) = from.tag().filter(|t| !t.is_empty()) else {
            return;
        };
        let source = flow.remote.ip();
        let via_host = request
            .headers
            .top_via()
            .ok()
            .and_then(|v| host_ip(&v.host));
        let contact_host = request
            .headers
            .contacts()
            .ok()
            .and_then(|c| match c.first() {
                Some(tandem_proto::msg::ContactValue::Addr(na)) => host_ip(&na.uri.host),
                _ => None,
            });
        let caller = PartyInfo {
            nated: caller_is_nated(source, via_host, contact_host, Some(&offer)),
            family: Some(Family::of(source)),
            ice: sdp::has_ice(&offer),
        };
        let callees: Vec<PartyInfo> = targets
            .iter()
            .map(|t| self.relay_party(request, t).0)
            .collect();
        // ICE can only join the two ends when the offer has candidates in every callee's
        // family (an IPv6-only caller cannot reach an IPv4-only callee without the relay), and,
        // for a NATed caller, a candidate beyond its private host addresses (a client with no
        // STUN or TURN server configured offers only those).
        let ice_usable = sdp::has_ice(&offer)
            && callees
                .iter()
                .filter_map(|c| c.family)
                .all(|f| offer_has_candidates_in(&offer, f, false))
            && (!caller.nated || offer_has_candidates_in(&offer, Family::of(source), true));
        if !should_anchor(relay.mode(), caller, &callees, ice_usable) {
            return;
        }
        let id = DialogId {
            call_id: call_id.to_owned(),
            caller_tag: tag.to_owned(),
        };
        if let Err(e) = relay.anchor(id, source, &offer) {
            tracing::warn!(error = %e, call_id, "media relay refused the call");
        }
    }

    /// A request leaving on branch `t`: the relay leg its responses belong to (a new callee
    /// branch for the initial INVITE of an anchored call), with its SDP rewritten.
    fn relay_request(&self, branch: &mut Request, t: &BranchTarget) -> Option<RelayLeg> {
        use crate::media_relay::Side;
        let relay = self.relay.get()?;
        let call_id = branch.headers.call_id().ok()?.to_owned();
        let from_tag = branch.headers.from().ok()?.tag()?.to_owned();
        let to_tag = branch
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned))
            .filter(|t| !t.is_empty());
        let (id, sender) = relay.find(&call_id, &from_tag, to_tag.as_deref())?;
        let initial_invite = to_tag.is_none() && branch.method == Method::Invite;
        let leg = if initial_invite {
            let (party, flow_ip) = self.relay_party(branch, t);
            relay.add_branch(&id, party.family, flow_ip).ok()?
        } else {
            let callee_tag = match sender {
                Side::Caller => to_tag.as_deref(),
                _ => Some(from_tag.as_str()),
            };
            relay.branch_for(&id, callee_tag)?
        };
        if let Some(mut sdp) = sdp_body(&branch.headers, &branch.body) {
            match relay.rewrite(&id, sender, leg, &mut sdp) {
                Ok(()) => branch.body = bytes::Bytes::from(sdp.to_string()),
                Err(e) => tracing::warn!(error = %e, call_id, "relay could not rewrite an SDP"),
            }
        }
        Some(RelayLeg {
            id,
            branch: leg,
            sender,
            initial_invite,
        })
    }

    /// A response on a relay leg: its SDP is rewritten; for the initial INVITE, a 2xx confirms
    /// the branch and a failure releases it.
    fn relay_response(&self, leg: Option<&RelayLeg>, response: &mut Response) {
        let (Some(relay), Some(leg)) = (self.relay.get(), leg) else {
            return;
        };
        if leg.initial_invite
            && response.status > 100
            && let Some(tag) = response
                .headers
                .to()
                .ok()
                .and_then(|t| t.tag().map(str::to_owned))
        {
            relay.set_callee_tag(&leg.id, leg.branch, &tag);
        }
        if response.status < 300
            && let Some(mut sdp) = sdp_body(&response.headers, &response.body)
        {
            match relay.rewrite(&leg.id, leg.sender.other(), leg.branch, &mut sdp) {
                Ok(()) => response.body = bytes::Bytes::from(sdp.to_string()),
                Err(e) => tracing::warn!(error = %e, "relay could not rewrite an answer"),
            }
        }
        if leg.initial_invite {
            if (200..300).contains(&response.status) {
                relay.confirm(&leg.id, leg.branch);
            } else if response.status >= 300 {
                relay.release_branch(&leg.id, leg.branch);
            }
        }
    }

    /// The anchored call and callee branch of an in-dialog message, with the side of its From.
    fn relay_dialog(
        &self,
        headers: &tandem_proto::msg::Headers,
    ) -> Option<(crate::media_relay::DialogId, crate::media_relay::Side, u32)> {
        use crate::media_relay::Side;
        let relay = self.relay.get()?;
        let call_id = headers.call_id().ok()?;
        let from_tag = headers.from().ok()?.tag()?.to_owned();
        let to_tag = headers.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let (id, side) = relay.find(call_id, &from_tag, to_tag.as_deref())?;
        let callee_tag = match side {
            Side::Caller => to_tag,
            _ => Some(from_tag),
        };
        let branch = relay.branch_for(&id, callee_tag.as_deref())?;
        Some((id, side, branch))
    }

    /// An ACK for a 2xx carrying an SDP (the answer to an offer in the 2xx).
    fn relay_ack(&self, request: &mut Request) {
        let Some(relay) = self.relay.get() else {
            return;
        };
        let Some((id, side, branch)) = self.relay_dialog(&request.headers) else {
            return;
        };
        if let Some(mut sdp) = sdp_body(&request.headers, &request.body)
            && relay.rewrite(&id, side, branch, &mut sdp).is_ok()
        {
            request.body = bytes::Bytes::from(sdp.to_string());
        }
    }

    /// A 2xx retransmission forwarded statelessly: rewritten like the first one.
    fn relay_stray_response(&self, response: &mut Response) {
        let Some(relay) = self.relay.get() else {
            return;
        };
        let Some((id, side, branch)) = self.relay_dialog(&response.headers) else {
            return;
        };
        if let Some(mut sdp) = sdp_body(&response.headers, &response.body)
            && relay.rewrite(&id, side.other(), branch, &mut sdp).is_ok()
        {
            response.body = bytes::Bytes::from(sdp.to_string());
        }
    }

    /// A BYE: the anchored call (or the forked dialog it ends) is released.
    fn relay_bye(&self, request: &Request) {
        use crate::media_relay::Side;
        let Some(relay) = self.relay.get() else {
            return;
        };
        let Some((id, side, _)) = self.relay_dialog(&request.headers) else {
            return;
        };
        let tag = match side {
            Side::Caller => request
                .headers
                .to()
                .ok()
                .and_then(|t| t.tag().map(str::to_owned)),
            _ => request
                .headers
                .from()
                .ok()
                .and_then(|f| f.tag().map(str::to_owned)),
        };
        relay.bye(&id, tag.as_deref());
    }

    /// The initial INVITE got a failure final response (or was cancelled): its session ends
    /// unless a 2xx confirmed it.
    fn relay_call_failed(&self, request: &Request) {
        let Some(relay) = self.relay.get() else {
            return;
        };
        if request
            .headers
            .to()
            .is_ok_and(|t| t.tag().is_some_and(|t| !t.is_empty()))
        {
            return;
        }
        let (Ok(call_id), Ok(from)) = (request.headers.call_id(), request.headers.from()) else {
            return;
        };
        let Some(tag) = from.tag() else {
            return;
        };
        if let Some((id, crate::media_relay::Side::Caller)) = relay.find(call_id, tag, None) {
            relay.failed(&id);
        }
    }
}

/// Final statuses after which a call goes to the callee's voicemail: no answer, unreachable,
/// busy, declined.
fn diverts_to_voicemail(status: u16) -> bool {
    matches!(status, 408 | 480 | 486 | 487 | 600 | 603)
}

/// A SUBSCRIBE for the message-summary event package (RFC 3842).
fn is_message_summary(request: &Request) -> bool {
    request.method == Method::Subscribe
        && request
            .headers
            .get_str(&HeaderName::Event)
            .is_some_and(|e| {
                e.split(';')
                    .next()
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("message-summary"))
            })
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}

/// Drives one client transaction: reports its responses and cancels it when told to.
async fn run_branch(
    index: usize,
    mut ctx: ClientTx,
    endpoint: Endpoint,
    mut cancel: watch::Receiver<bool>,
    events: mpsc::Sender<BranchEvent>,
    local: bool,
    mut fallback: Option<(Request, Target)>,
) {
    let is_invite = ctx.request().method == Method::Invite;
    let mut cancelled = false;
    let mut final_seen = false;
    let mut responded = false;
    loop {
        tokio::select! {
            outcome = ctx.next() => {
                let Some(outcome) = outcome else { break };
                let ev = match outcome {
                    TxOutcome::Provisional(mut r) => {
                        responded = true;
                        fix_branch_contact(local, &ctx, &mut r);
                        BranchEvent::Provisional(r)
                    }
                    TxOutcome::Final(mut r) => {
                        responded = true;
                        final_seen = true;
                        fix_branch_contact(local, &ctx, &mut r);
                        BranchEvent::Final(index, r)
                    }
                    TxOutcome::Timeout => {
                        final_seen = true;
                        BranchEvent::Final(index, Response::for_request(ctx.request(), 408))
                    }
                    TxOutcome::TransportError(e) if !responded && !cancelled && fallback.is_some() => {
                        tracing::debug!(error = %e, "branch transport error, trying the fallback target");
                        let Some((request, target)) = fallback.take() else { continue };
                        match endpoint.request(request, target).await {
                            Ok(next) => {
                                ctx = next;
                                continue;
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "fallback target failed too");
                                final_seen = true;
                                let status = if local { 480 } else { 503 };
                                BranchEvent::Final(index, Response::for_request(ctx.request(), status))
                            }
                        }
                    }
                    TxOutcome::TransportError(e) => {
                        tracing::debug!(error = %e, "branch transport error");
                        final_seen = true;
                        let status = if local { 480 } else { 503 };
                        BranchEvent::Final(index, Response::for_request(ctx.request(), status))
                    }
                    _ => continue,
                };
                if events.send(ev).await.is_err() {
                    break;
                }
            }
            changed = cancel.changed(), if !cancelled => {
                if changed.is_err() {
                    cancelled = true;
                    continue;
                }
                if *cancel.borrow() {
                    cancelled = true;
                    if is_invite && !final_seen {
                        endpoint.cancel(ctx.id());
                    }
                }
            }
        }
    }
    let _ = events.send(BranchEvent::Done).await;
}

/// A response from a local user's device (the branch reached its registration) carries a
/// Contact the caller must reach it by: the flow's address when the device is behind a NAT.
fn fix_branch_contact(local: bool, ctx: &ClientTx, response: &mut Response) {
    if let (true, Some(flow)) = (local, ctx.flow()) {
        crate::nat::fix_response_contact(response, flow);
    }
}

/// §16.7 step 6: the response to send upstream when no 2xx arrived.
fn best_response(finals: &[Option<Response>], original: &Request) -> Response {
    let all: Vec<&Response> = finals.iter().flatten().collect();
    let chosen = all
        .iter()
        .find(|r| r.status >= 600)
        .or_else(|| {
            all.iter()
                .min_by_key(|r| (r.status / 100, rank_in_class(r.status)))
        })
        .copied();
    let Some(chosen) = chosen else {
        return reply(original, 408, "Request Timeout");
    };
    let mut best = chosen.clone();
    if best.status == 503 {
        // Never pass a 503 upstream for a downstream overload (§16.7 step 6).
        let mut r = reply(original, 500, "Server Internal Error");
        r.headers = best.headers.clone();
        r.status = 500;
        r.reason = "Server Internal Error".to_string();
        r.headers.remove(&HeaderName::RetryAfter);
        best = r;
    }
    if best.status == 401 || best.status == 407 {
        // Merge every challenge from every 401/407 branch.
        for other in &all {
            if std::ptr::eq(*other, chosen) || !(other.status == 401 || other.status == 407) {
                continue;
            }
            for name in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
                for v in other.headers.get_all(&name) {
                    if let Ok(text) = std::str::from_utf8(v) {
                        best.headers.push(name.clone(), text.to_string());
                    }
                }
            }
        }
    }
    ensure_to_tag(&mut best);
    best
}

/// Preference inside a response class: 401/407 (credentials can fix them), 415/420/484 next.
fn rank_in_class(status: u16) -> u8 {
    match status {
        401 | 407 => 0,
        415 | 420 | 484 => 1,
        408 => 9,
        _ => 5,
    }
}

/// The CDR cause for a final status.
fn cause_for(status: u16, caller_cancelled: bool) -> String {
    match status {
        200..=299 => "answered".into(),
        486 | 600 => "busy".into(),
        487 if caller_cancelled => "cancelled".into(),
        408 => "no-answer".into(),
        s => format!("failed:{s}"),
    }
}

/// Decrements Max-Forwards (inserting 70 when absent); false when it was already 0.
/// True when some m-line of `offer` has an ICE candidate with an address of `family` (only
/// server-reflexive or relayed ones when `beyond_host`).
fn offer_has_candidates_in(
    offer: &tandem_proto::sdp::SessionDescription,
    family: crate::media_relay::Family,
    beyond_host: bool,
) -> bool {
    use tandem_proto::sdp::ice::{CandidateType, MediaIce};
    (0..offer.media.len()).any(|i| {
        MediaIce::from_sdp(offer, i)
            .ok()
            .flatten()
            .is_some_and(|ice| {
                ice.candidates.iter().any(|c| {
                    (!beyond_host || matches!(c.typ, CandidateType::Srflx | CandidateType::Relay))
                        && c.socket_addr()
                            .is_some_and(|a| crate::media_relay::Family::of(a.ip()) == family)
                })
            })
    })
}

fn decrement_max_forwards(request: &mut Request) -> bool {
    let mf = request.headers.max_forwards().ok().flatten().unwrap_or(70);
    if mf == 0 {
        return false;
    }
    request
        .headers
        .set(HeaderName::MaxForwards, (mf - 1).to_string());
    true
}

/// Removes the topmost Via value of a response (ours), keeping the rest in order.
pub fn strip_top_via(response: &mut Response) {
    response.headers.remove_first(&HeaderName::Via);
}

/// The transport a URI asks for (`;transport=`, `sips:` → TLS), UDP by default.
fn uri_transport(uri: &Uri) -> Transport {
    if uri.scheme == Scheme::Sips {
        return Transport::Tls;
    }
    uri.transport_param().unwrap_or(Transport::Udp)
}

/// Parses a flow string as stored in bindings (`tcp:1.2.3.4:5062`, `udp:[::1]:5060`).
pub fn parse_flow(text: &str) -> Option<Flow> {
    let (transport, addr) = text.split_once(':')?;
    Some(Flow::new(transport.parse().ok()?, addr.parse().ok()?))
}

/// The loop-detection key of a request (RFC 3261 §16.6 step 8, minus the Via).
fn loop_key(request: &Request) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request.uri.to_string().hash(&mut h);
    if let Ok(from) = request.headers.from() {
        from.tag().unwrap_or("").hash(&mut h);
    }
    if let Ok(to) = request.headers.to() {
        to.tag().unwrap_or("").hash(&mut h);
    }
    request.headers.call_id().unwrap_or("").hash(&mut h);
    if let Ok(cseq) = request.headers.cseq() {
        cseq.seq.hash(&mut h);
    }
    for name in [HeaderName::ProxyRequire, HeaderName::ProxyAuthorization] {
        for v in request.headers.get_all(&name) {
            v.hash(&mut h);
        }
    }
    h.finish()
}

fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Branch → loop key of requests we forwarded, in two bounded generations.
#[derive(Default)]
struct LoopGuard {
    inner: Mutex<(HashMap<String, u64>, HashMap<String, u64>)>,
}

impl LoopGuard {
    fn insert(&self, branch: String, key: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0.len() >= LOOP_GENERATION {
            let cur = std::mem::take(&mut g.0);
            g.1 = cur;
        }
        g.0.insert(branch, key);
    }

    fn get(&self, branch: &str) -> Option<u64> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.get(branch).or_else(|| g.1.get(branch)).copied()
    }
}

enum CdrMsg {
    Write(Box<Cdr>),
    Flush(oneshot::Sender<()>),
}

/// Asynchronous CDR writer: answered calls wait in memory for their BYE.
struct CdrLog {
    queue: mpsc::Sender<CdrMsg>,
    live: Mutex<HashMap<String, Cdr>>,
    dropped: AtomicBool,
}

impl CdrLog {
    fn new(store: Store) -> CdrLog {
        let (queue, mut rx) = mpsc::channel::<CdrMsg>(CDR_QUEUE);
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    CdrMsg::Write(cdr) => {
                        if let Err(e) = store.insert_cdr(&cdr).await {
                            tracing::warn!(error = %e, call_id = %cdr.call_id, "CDR write failed");
                        }
                    }
                    CdrMsg::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        CdrLog {
            queue,
            live: Mutex::new(HashMap::new()),
            dropped: AtomicBool::new(false),
        }
    }

    fn write(&self, cdr: Cdr) {
        if self.queue.try_send(CdrMsg::Write(Box::new(cdr))).is_err()
            && !self.dropped.swap(true, Ordering::Relaxed)
        {
            tracing::warn!("CDR queue full: records dropped");
        }
    }

    /// Waits until every CDR queued so far is in the store.
    async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(CdrMsg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    fn answered(&self, call: &CallInfo, status: u16) {
        let cdr = Cdr {
            call_id: call.call_id.clone(),
            caller: call.caller.clone(),
            callee: call.callee.clone(),
            start_at: call.start_at,
            answer_at: Some(unix_now_ms()),
            end_at: None,
            cause: "answered".into(),
            status: Some(status),
        };
        {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            if live.len() < MAX_LIVE_CDRS {
                live.insert(cdr.call_id.clone(), cdr.clone());
            }
        }
        self.write(cdr);
    }

    fn finished(
        &self,
        call: &CallInfo,
        answer_at: Option<i64>,
        status: Option<u16>,
        cause: String,
    ) {
        self.write(Cdr {
            call_id: call.call_id.clone(),
            caller: call.caller.clone(),
            callee: call.callee.clone(),
            start_at: call.start_at,
            answer_at,
            end_at: Some(unix_now_ms()),
            cause,
            status,
        });
    }

    fn ended(&self, call_id: &str) {
        let cdr = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(call_id);
        if let Some(mut cdr) = cdr {
            cdr.end_at = Some(unix_now_ms());
            self.write(cdr);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn invite() -> Request {
        let text = "INVITE sip:bob@tandem.lab SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\nMax-Forwards: 70\r\nFrom: <sip:alice@tandem.lab>;tag=1\r\nTo: <sip:bob@tandem.lab>\r\nCall-ID: x@y\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        Request::parse(bytes::Bytes::from(text)).unwrap()
    }

    fn resp(status: u16) -> Option<Response> {
        Some(Response::for_request(&invite(), status))
    }

    #[test]
    fn best_response_rules() {
        let req = invite();
        assert_eq!(
            best_response(&[resp(486), resp(603), resp(404)], &req).status,
            603
        );
        assert_eq!(
            best_response(&[resp(486), resp(302), resp(500)], &req).status,
            302
        );
        assert_eq!(best_response(&[resp(480), resp(408)], &req).status, 480);
        assert_eq!(best_response(&[resp(503)], &req).status, 500);
        assert_eq!(best_response(&[], &req).status, 408);

        let mut a = Response::for_request(&req, 407);
        a.headers.push(
            HeaderName::ProxyAuthenticate,
            "Digest realm=\"a\", nonce=\"1\"",
        );
        let mut b = Response::for_request(&req, 401);
        b.headers.push(
            HeaderName::WwwAuthenticate,
            "Digest realm=\"b\", nonce=\"2\"",
        );
        let best = best_response(&[Some(a), Some(b), resp(486)], &req);
        assert!(best.status == 401 || best.status == 407);
        assert_eq!(best.headers.count(&HeaderName::ProxyAuthenticate), 1);
        assert_eq!(best.headers.count(&HeaderName::WwwAuthenticate), 1);
        assert!(best.headers.to().unwrap().tag().is_some());
    }

    #[test]
    fn causes() {
        assert_eq!(cause_for(200, false), "answered");
        assert_eq!(cause_for(486, false), "busy");
        assert_eq!(cause_for(487, true), "cancelled");
        assert_eq!(cause_for(487, false), "failed:487");
        assert_eq!(cause_for(408, false), "no-answer");
        assert_eq!(cause_for(480, false), "failed:480");
    }

    #[test]
    fn flows_and_max_forwards() {
        let f = parse_flow("tcp:127.0.0.1:5062").unwrap();
        assert_eq!(f.transport, Transport::Tcp);
        assert_eq!(f.remote.port(), 5062);
        assert_eq!(
            parse_flow("udp:[::1]:5060").unwrap().remote,
            "[::1]:5060".parse::<std::net::SocketAddr>().unwrap()
        );
        assert!(parse_flow("nonsense").is_none());
        let mut req = invite();
        assert!(decrement_max_forwards(&mut req));
        assert_eq!(req.headers.max_forwards().unwrap(), Some(69));
        req.headers.set(HeaderName::MaxForwards, "0");
        assert!(!decrement_max_forwards(&mut req));
    }

    #[test]
    fn loop_keys_ignore_vias_but_not_the_target() {
        let a = invite();
        let mut b = invite();
        b.headers.push_front(
            HeaderName::Via,
            "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKzzz",
        );
        assert_eq!(loop_key(&a), loop_key(&b));
        b.uri = Uri::parse("sip:bob@192.0.2.7").unwrap();
        assert_ne!(loop_key(&a), loop_key(&b));
        let guard = LoopGuard::default();
        guard.insert("z9hG4bK1".into(), 7);
        assert_eq!(guard.get("z9hG4bK1"), Some(7));
        assert_eq!(guard.get("z9hG4bK2"), None);
    }
}
