//! A tiny SIP peer for the UA tests, built directly on `tandem_net::Endpoint`: a digest
//! registrar storing one binding per AoR, a UAS answering INVITEs, and a UAC to call the UA.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tandem_net::{DnsConfig, Endpoint, EndpointConfig, IncomingEvent, Target, TxOutcome};
use tandem_proto::auth::{Algorithm, Credentials, NonceIssuer, NonceStatus, ha1, verify};
use tandem_proto::msg::{ContactValue, HeaderName, Message, Method, Request, Response, Uri};
use tandem_proto::sdp::{self, Codec, SessionDescription};
use tandem_proto::transaction::{TxConfig, TxId};
use tandem_proto::{Flow, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// A port nothing listens on (the discard port): Contacts there are unreachable, so only
/// requests that follow the route set reach the peer.
pub const DEAD_PORT: u16 = 9;

/// A UA configuration for the tests: SIP over UDP on a free loopback port, no DNS, the short
/// timers of [`fast_tx`], `seed` for the UA's own randomness.
pub fn loopback_ua_config(seed: u64) -> tandem_client_core::UaConfig {
    tandem_client_core::UaConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        transport: Transport::Udp,
        dns: tandem_client_core::types::DnsConfig::Disabled,
        tx: fast_tx(),
        seed,
        ..tandem_client_core::UaConfig::default()
    }
}

/// Short transaction timers so timeouts in tests take seconds, not half a minute.
pub fn fast_tx() -> TxConfig {
    TxConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
        t4: Duration::from_millis(500),
        seed: 7,
        ..TxConfig::default()
    }
}

/// How the peer's UAS answers INVITEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasMode {
    /// 180, then 200 with an SDP answer.
    Answer,
    /// 180, then this final status.
    Reject(u16),
    /// 180 and nothing more (for CANCEL).
    RingForever,
}

/// The peer's behaviour.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub realm: String,
    /// Challenges offered, in preference order; empty: no authentication.
    pub algorithms: Vec<Algorithm>,
    pub users: HashMap<String, String>,
    pub min_expires: Option<u32>,
    pub max_expires: u32,
    /// Answer the first correct credentials with a stale=true challenge.
    pub stale_once: bool,
    pub uas: UasMode,
    /// Ring this long before the UAS's final response.
    pub ring: Duration,
    /// Send a BYE this long after the ACK (the callee hangs up).
    pub bye_after: Option<Duration>,
    /// Send all challenges comma-joined in one WWW-Authenticate header.
    pub joined_challenges: bool,
    /// Put a Record-Route to this peer in the 2xx and a Contact on a dead port.
    pub record_route: bool,
    /// Re-send the 2xx this many times (100 ms apart), as if our ACKs were lost.
    pub retransmit_ok: u32,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            realm: "tandem.test".into(),
            algorithms: vec![Algorithm::Md5],
            users: HashMap::from([("alice".to_string(), "secret".to_string())]),
            min_expires: None,
            max_expires: 3600,
            stale_once: false,
            uas: UasMode::Answer,
            ring: Duration::from_millis(50),
            bye_after: None,
            retransmit_ok: 0,
            record_route: false,
            joined_challenges: false,
        }
    }
}

/// What the peer saw, in order.
#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// A REGISTER and the status we answered.
    Register { request: Request, status: u16 },
    /// An INVITE (first or re-sent with credentials).
    Invite { request: Request },
    /// An ACK for our 2xx.
    Ack { request: Request },
    /// A BYE from the UA (answered 200).
    Bye { request: Request },
    /// A CANCEL from the UA (answered 200, INVITE answered 487).
    Cancel { request: Request },
    /// An OPTIONS (answered 200).
    Options { request: Request },
}

#[derive(Debug, Default)]
struct State {
    bindings: HashMap<String, (Uri, u32)>,
    stale_sent: bool,
    pending_invites: HashMap<TxId, Request>,
    /// Dialogs where we are the UAS: call-id → (the INVITE, our tag).
    uas_dialogs: HashMap<String, (Request, String)>,
}

/// The peer: an endpoint and the task serving it. Dropping it stops both.
pub struct Peer {
    pub endpoint: Endpoint,
    pub addr: SocketAddr,
    pub transport: Transport,
    state: Arc<Mutex<State>>,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    task: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    /// Starts a peer on 127.0.0.1 (free port) over UDP or TCP.
    pub async fn start(transport: Transport, config: PeerConfig) -> Peer {
        assert_ne!(transport, Transport::Tls, "use Peer::start_tls");
        Self::start_inner(transport, config, None).await
    }

    /// Starts a TLS peer with a fresh self-signed certificate for 127.0.0.1; returns it and
    /// a client configuration trusting that certificate.
    pub async fn start_tls(config: PeerConfig) -> (Peer, Arc<rustls::ClientConfig>) {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let cert: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let peer = Self::start_inner(Transport::Tls, config, Some(Arc::new(server))).await;
        (peer, Arc::new(client))
    }

    async fn start_inner(
        transport: Transport,
        config: PeerConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Peer {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut ep = EndpointConfig {
            tx: fast_tx(),
            dns: DnsConfig::Disabled,
            tls_server: tls,
            ..EndpointConfig::default()
        };
        match transport {
            Transport::Udp => ep.udp.push(listen),
            Transport::Tcp => ep.tcp.push(listen),
            Transport::Tls => ep.tls.push(listen),
        }
        let (endpoint, mut incoming) = Endpoint::bind(ep).await.unwrap();
        let addr = endpoint.local_addr(transport).unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (ev_tx, events) = mpsc::unbounded_channel();
        let ctx = Ctx {
            endpoint: endpoint.clone(),
            config: Arc::new(config),
            state: state.clone(),
            events: ev_tx,
            issuer: Arc::new(Mutex::new(NonceIssuer::new(
                [9u8; 32],
                Duration::from_secs(300),
            ))),
        };
        let task = tokio::spawn(async move {
            while let Some(ev) = incoming.next().await {
                ctx.handle(ev);
            }
        });
        Peer {
            endpoint,
            addr,
            transport,
            state,
            events,
            task,
        }
    }

    /// `sip:127.0.0.1:port;transport=…`: the peer as proxy/registrar/target host.
    pub fn uri(&self, user: Option<&str>) -> Uri {
        let u = match user {
            Some(u) => format!("sip:{u}@{}", self.addr),
            None => format!("sip:{}", self.addr),
        };
        let mut uri = Uri::parse(&u).unwrap();
        uri.set_param("transport", Some(self.transport.uri_param()));
        uri
    }

    /// The next event, failing the test after `secs` seconds.
    pub async fn next_event(&mut self, secs: u64) -> PeerEvent {
        timeout(Duration::from_secs(secs), self.events.recv())
            .await
            .expect("timed out waiting for a peer event")
            .expect("peer stopped")
    }

    /// Waits for the next event matching `f`, skipping others.
    pub async fn wait_for(&mut self, secs: u64, f: impl Fn(&PeerEvent) -> bool) -> PeerEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = timeout(left, self.events.recv())
                .await
                .expect("timed out waiting for a peer event")
                .expect("peer stopped");
            if f(&ev) {
                return ev;
            }
        }
    }

    /// The contact bound for `aor` and its expiry, if registered.
    pub fn binding(&self, aor: &str) -> Option<(Uri, u32)> {
        self.state.lock().unwrap().bindings.get(aor).cloned()
    }

    /// Sends a BYE in the dialog of `call_id` where we are the UAS; returns its status.
    pub async fn bye_as_uas(&self, call_id: &str) -> u16 {
        let (invite, tag) = self
            .state
            .lock()
            .unwrap()
            .uas_dialogs
            .get(call_id)
            .cloned()
            .expect("no such dialog");
        send_bye_as_uas(&self.endpoint, &invite, &tag, self.transport).await
    }

    /// Calls `target` (the UA's contact) with an SDP offer; returns the call once a final
    /// response arrived (the 2xx is ACKed).
    pub async fn call(&self, target: &Uri) -> PeerCall {
        self.call_via(target, false).await
    }

    /// Like [`Peer::call`]; with `record_route`, the INVITE carries a Record-Route to this peer
    /// and a Contact on a dead port, so that the UA's in-dialog requests must follow the route.
    pub async fn call_via(&self, target: &Uri, record_route: bool) -> PeerCall {
        let call_id = format!("peer-call-{}", rand_token());
        let from_tag = rand_token();
        let mut req = Request::new(Method::Invite, target.clone());
        let h = &mut req.headers;
        h.push(HeaderName::MaxForwards, "70");
        h.push(
            HeaderName::From,
            format!("<sip:bob@{}>;tag={from_tag}", self.addr),
        );
        h.push(HeaderName::To, format!("<{target}>"));
        h.push(HeaderName::CallId, call_id.clone());
        h.push(HeaderName::CSeq, "1 INVITE");
        if record_route {
            h.push(HeaderName::RecordRoute, format!("<{};lr>", self.uri(None)));
            h.push(
                HeaderName::Contact,
                format!(
                    "<sip:bob@127.0.0.1:{};transport={}>",
                    DEAD_PORT,
                    self.transport.uri_param()
                ),
            );
        } else {
            h.push(
                HeaderName::Contact,
                format!(
                    "<{}>",
                    self.endpoint.contact_uri(self.transport, Some("bob"))
                ),
            );
        }
        h.push(HeaderName::ContentType, "application/sdp");
        let offer = sdp::build_offer(
            1,
            1,
            self.addr.ip(),
            40000,
            &sdp::MediaOffer::new(vec![Codec::pcmu()]),
        );
        req.body = Bytes::from(offer.to_string());
        let mut tx = self
            .endpoint
            .request(req.clone(), Target::Uri(target.clone()))
            .await
            .unwrap();
        let mut provisional = Vec::new();
        let fin = loop {
            match timeout(Duration::from_secs(10), tx.next()).await.unwrap() {
                Some(TxOutcome::Provisional(r)) => provisional.push(r.status),
                Some(TxOutcome::Final(r)) => break r,
                other => panic!("INVITE failed: {other:?}"),
            }
        };
        let flow = tx.flow().unwrap();
        let sent = tx.request().clone();
        if (200..300).contains(&fin.status) {
            send_ack(&self.endpoint, &sent, &fin, flow);
        }
        PeerCall {
            invite: sent,
            final_response: fin,
            provisional,
            flow,
        }
    }

    /// Calls `target`, cancels after the first provisional response plus `after`, and returns
    /// the INVITE's final status (487 expected).
    pub async fn call_and_cancel(&self, target: &Uri, after: Duration) -> u16 {
        let mut req = Request::new(Method::Invite, target.clone());
        let h = &mut req.headers;
        h.push(HeaderName::MaxForwards, "70");
        h.push(
            HeaderName::From,
            format!("<sip:bob@{}>;tag={}", self.addr, rand_token()),
        );
        h.push(HeaderName::To, format!("<{target}>"));
        h.push(HeaderName::CallId, format!("peer-cancel-{}", rand_token()));
        h.push(HeaderName::CSeq, "1 INVITE");
        h.push(
            HeaderName::Contact,
            format!(
                "<{}>",
                self.endpoint.contact_uri(self.transport, Some("bob"))
            ),
        );
        let mut tx = self
            .endpoint
            .request(req, Target::Uri(target.clone()))
            .await
            .unwrap();
        let mut cancelled = false;
        loop {
            match timeout(Duration::from_secs(10), tx.next()).await.unwrap() {
                Some(TxOutcome::Provisional(_)) if !cancelled => {
                    tokio::time::sleep(after).await;
                    self.endpoint.cancel(tx.id());
                    cancelled = true;
                }
                Some(TxOutcome::Provisional(_)) => {}
                Some(TxOutcome::Final(r)) => return r.status,
                other => panic!("INVITE failed: {other:?}"),
            }
        }
    }

    /// Sends a BYE as the caller of `call`; returns its status.
    pub async fn bye_as_uac(&self, call: &PeerCall) -> u16 {
        let remote = remote_target(&call.final_response).unwrap_or(call.invite.uri.clone());
        let mut bye = Request::new(Method::Bye, remote.clone());
        let h = &mut bye.headers;
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, header(&call.invite, HeaderName::From));
        h.push(HeaderName::To, header(&call.final_response, HeaderName::To));
        h.push(HeaderName::CallId, header(&call.invite, HeaderName::CallId));
        h.push(HeaderName::CSeq, "2 BYE");
        final_status(&self.endpoint, bye, Target::Flow(call.flow)).await
    }
}

/// An outgoing call of the peer.
#[derive(Debug, Clone)]
pub struct PeerCall {
    pub invite: Request,
    pub final_response: Response,
    pub provisional: Vec<u16>,
    pub flow: Flow,
}

fn rand_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn header(msg: &impl HasHeaders, name: HeaderName) -> String {
    msg.hdrs().get_str(&name).unwrap_or_default().to_string()
}

trait HasHeaders {
    fn hdrs(&self) -> &tandem_proto::msg::Headers;
}
impl HasHeaders for Request {
    fn hdrs(&self) -> &tandem_proto::msg::Headers {
        &self.headers
    }
}
impl HasHeaders for Response {
    fn hdrs(&self) -> &tandem_proto::msg::Headers {
        &self.headers
    }
}

fn remote_target(msg: &impl HasHeaders) -> Option<Uri> {
    msg.hdrs()
        .contacts()
        .ok()?
        .into_iter()
        .find_map(|c| match c {
            ContactValue::Addr(a) => Some(a.uri),
            _ => None,
        })
}

fn send_ack(endpoint: &Endpoint, invite: &Request, ok: &Response, flow: Flow) {
    let target = remote_target(ok).unwrap_or(invite.uri.clone());
    let mut ack = Request::new(Method::Ack, target);
    let local = endpoint.local_addr(flow.transport).unwrap();
    let h = &mut ack.headers;
    h.push(
        HeaderName::Via,
        format!(
            "SIP/2.0/{} {local};branch=z9hG4bK{};rport",
            flow.transport.via_token(),
            rand_token()
        ),
    );
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::From, header(invite, HeaderName::From));
    h.push(HeaderName::To, header(ok, HeaderName::To));
    h.push(HeaderName::CallId, header(invite, HeaderName::CallId));
    let seq = invite.headers.cseq().unwrap().seq;
    h.push(HeaderName::CSeq, format!("{seq} ACK"));
    endpoint.send_stateless(Message::Request(ack), flow);
}

/// Sends a request and returns its final status.
pub async fn final_status(endpoint: &Endpoint, req: Request, target: Target) -> u16 {
    let mut tx = endpoint.request(req, target).await.unwrap();
    loop {
        match timeout(Duration::from_secs(10), tx.next()).await.unwrap() {
            Some(TxOutcome::Provisional(_)) => continue,
            Some(TxOutcome::Final(r)) => return r.status,
            other => panic!("request failed: {other:?}"),
        }
    }
}

async fn send_bye_as_uas(
    endpoint: &Endpoint,
    invite: &Request,
    tag: &str,
    transport: Transport,
) -> u16 {
    let mut target = remote_target(invite).unwrap();
    if target.transport_param().is_none() {
        target.set_param("transport", Some(transport.uri_param()));
    }
    let mut bye = Request::new(Method::Bye, target.clone());
    let h = &mut bye.headers;
    h.push(HeaderName::MaxForwards, "70");
    h.push(
        HeaderName::From,
        format!("{};tag={tag}", header(invite, HeaderName::To)),
    );
    h.push(HeaderName::To, header(invite, HeaderName::From));
    h.push(HeaderName::CallId, header(invite, HeaderName::CallId));
    h.push(HeaderName::CSeq, "1 BYE");
    final_status(endpoint, bye, Target::Uri(target)).await
}

struct Ctx {
    endpoint: Endpoint,
    config: Arc<PeerConfig>,
    state: Arc<Mutex<State>>,
    events: mpsc::UnboundedSender<PeerEvent>,
    issuer: Arc<Mutex<NonceIssuer>>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn respond(
    endpoint: &Endpoint,
    tx: TxId,
    req: &Request,
    status: u16,
    tag: Option<&str>,
) -> Response {
    let mut r = Response::for_request(req, status);
    if let Some(tag) = tag {
        let mut to = r.headers.to().unwrap();
        if to.tag().is_none() {
            to.set_tag(tag);
            r.headers.set(HeaderName::To, to.to_string());
        }
    }
    endpoint.respond(tx, r.clone());
    r
}

impl Ctx {
    fn handle(&self, ev: IncomingEvent) {
        match ev {
            IncomingEvent::Request { tx, request, flow } => match request.method {
                Method::Register => self.register(tx, request),
                Method::Invite => self.invite(tx, request, flow),
                Method::Bye => {
                    respond(&self.endpoint, tx, &request, 200, None);
                    let _ = self.events.send(PeerEvent::Bye { request });
                }
                Method::Options => {
                    respond(&self.endpoint, tx, &request, 200, Some("opt"));
                    let _ = self.events.send(PeerEvent::Options { request });
                }
                _ => {
                    respond(&self.endpoint, tx, &request, 405, None);
                }
            },
            IncomingEvent::Ack { request, .. } => {
                let _ = self.events.send(PeerEvent::Ack { request });
            }
            IncomingEvent::Cancel {
                tx,
                invite_tx,
                request,
                ..
            } => {
                respond(&self.endpoint, tx, &request, 200, None);
                if let Some(itx) = invite_tx {
                    let invite = self.state.lock().unwrap().pending_invites.remove(&itx);
                    if let Some(invite) = invite {
                        respond(&self.endpoint, itx, &invite, 487, Some("peer-uas"));
                    }
                }
                let _ = self.events.send(PeerEvent::Cancel { request });
            }
            _ => {}
        }
    }

    /// Digest check; `Ok(())` when the request may proceed, else the challenge was sent.
    fn authenticate(&self, tx: TxId, req: &Request) -> Result<(), u16> {
        if self.config.algorithms.is_empty() {
            return Ok(());
        }
        let creds = req
            .headers
            .get_str(&HeaderName::Authorization)
            .and_then(|v| Credentials::parse(v).ok());
        let mut stale = false;
        if let Some(c) = creds {
            let method = req.method.as_str().to_string();
            let good = c.realm == self.config.realm
                && self.config.algorithms.contains(&c.algorithm)
                && self.config.users.get(&c.username).is_some_and(|pass| {
                    verify(&c, &method, &ha1(c.algorithm, &c.username, &c.realm, pass))
                });
            if good {
                let status = self
                    .issuer
                    .lock()
                    .unwrap()
                    .check(&c.nonce, c.nc, now_unix());
                let force_stale = {
                    let mut st = self.state.lock().unwrap();
                    let f = self.config.stale_once && !st.stale_sent;
                    st.stale_sent |= f;
                    f
                };
                match status {
                    NonceStatus::Valid if !force_stale => return Ok(()),
                    NonceStatus::Valid | NonceStatus::Stale => stale = true,
                    _ => {}
                }
            }
        }
        let mut r = Response::for_request(req, 401);
        let issuer = self.issuer.lock().unwrap();
        let challenges: Vec<String> = self
            .config
            .algorithms
            .iter()
            .map(|alg| {
                issuer
                    .challenge(&self.config.realm, *alg, now_unix(), rand::random(), stale)
                    .to_string()
            })
            .collect();
        if self.config.joined_challenges {
            r.headers
                .push(HeaderName::WwwAuthenticate, challenges.join(", "));
        } else {
            for c in challenges {
                r.headers.push(HeaderName::WwwAuthenticate, c);
            }
        }
        self.endpoint.respond(tx, r);
        Err(401)
    }

    fn register(&self, tx: TxId, req: Request) {
        if let Err(status) = self.authenticate(tx, &req) {
            let _ = self.events.send(PeerEvent::Register {
                request: req,
                status,
            });
            return;
        }
        let aor = req.headers.to().unwrap().uri.aor();
        let contact = req
            .headers
            .contacts()
            .unwrap()
            .into_iter()
            .find_map(|c| match c {
                ContactValue::Addr(a) => Some(a),
                _ => None,
            });
        let expires = contact
            .as_ref()
            .and_then(|c| c.expires())
            .or(req.headers.expires().unwrap())
            .unwrap_or(3600);
        if let Some(min) = self.config.min_expires
            && expires != 0
            && expires < min
        {
            let mut r = Response::for_request(&req, 423);
            r.headers.push(HeaderName::MinExpires, min.to_string());
            self.endpoint.respond(tx, r);
            let _ = self.events.send(PeerEvent::Register {
                request: req,
                status: 423,
            });
            return;
        }
        let mut r = Response::for_request(&req, 200);
        {
            let mut st = self.state.lock().unwrap();
            match (&contact, expires) {
                (Some(_), 0) => {
                    st.bindings.remove(&aor);
                }
                (Some(c), e) => {
                    let granted = e.min(self.config.max_expires);
                    st.bindings.insert(aor.clone(), (c.uri.clone(), granted));
                    r.headers.push(
                        HeaderName::Contact,
                        format!("<{}>;expires={granted}", c.uri),
                    );
                }
                (None, _) => {}
            }
        }
        self.endpoint.respond(tx, r);
        let _ = self.events.send(PeerEvent::Register {
            request: req,
            status: 200,
        });
    }

    fn invite(&self, tx: TxId, req: Request, _flow: Flow) {
        if let Err(_status) = self.authenticate(tx, &req) {
            let _ = self.events.send(PeerEvent::Invite { request: req });
            return;
        }
        let _ = self.events.send(PeerEvent::Invite {
            request: req.clone(),
        });
        let endpoint = self.endpoint.clone();
        let config = self.config.clone();
        let state = self.state.clone();
        state
            .lock()
            .unwrap()
            .pending_invites
            .insert(tx, req.clone());
        let tag = "peer-uas".to_string();
        tokio::spawn(async move {
            respond(&endpoint, tx, &req, 180, Some(&tag));
            tokio::time::sleep(config.ring).await;
            // Still pending (not cancelled)?
            if state.lock().unwrap().pending_invites.remove(&tx).is_none() {
                return;
            }
            match config.uas {
                UasMode::RingForever => {
                    state
                        .lock()
                        .unwrap()
                        .pending_invites
                        .insert(tx, req.clone());
                }
                UasMode::Reject(code) => {
                    respond(&endpoint, tx, &req, code, Some(&tag));
                }
                UasMode::Answer => {
                    let offer =
                        SessionDescription::parse(std::str::from_utf8(&req.body).unwrap()).unwrap();
                    let (answer, _) = sdp::answer_offer(
                        &offer,
                        &sdp::MediaOffer::new(vec![Codec::pcmu()]),
                        2,
                        1,
                        "127.0.0.1".parse().unwrap(),
                        41000,
                        sdp::plain_only,
                    )
                    .unwrap();
                    let mut ok = Response::for_request(&req, 200);
                    let mut to = ok.headers.to().unwrap();
                    to.set_tag(&tag);
                    ok.headers.set(HeaderName::To, to.to_string());
                    let transport = req
                        .headers
                        .top_via()
                        .unwrap()
                        .transport
                        .parse()
                        .unwrap_or(Transport::Udp);
                    if config.record_route {
                        let own = endpoint.contact_uri(transport, None);
                        ok.headers
                            .push(HeaderName::RecordRoute, format!("<{own};lr>"));
                        ok.headers.push(
                            HeaderName::Contact,
                            format!(
                                "<sip:uas@127.0.0.1:{DEAD_PORT};transport={}>",
                                transport.uri_param()
                            ),
                        );
                    } else {
                        ok.headers.push(
                            HeaderName::Contact,
                            format!("<{}>", endpoint.contact_uri(transport, Some("uas"))),
                        );
                    }
                    ok.headers.push(HeaderName::ContentType, "application/sdp");
                    ok.body = Bytes::from(answer.to_string());
                    endpoint.respond(tx, ok.clone());
                    for _ in 0..config.retransmit_ok {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        endpoint.respond(tx, ok.clone());
                    }
                    let call_id = req.headers.call_id().unwrap().to_string();
                    state
                        .lock()
                        .unwrap()
                        .uas_dialogs
                        .insert(call_id, (req.clone(), tag.clone()));
                    if let Some(after) = config.bye_after {
                        tokio::time::sleep(after).await;
                        send_bye_as_uas(&endpoint, &req, &tag, transport).await;
                    }
                }
            }
        });
    }
}
