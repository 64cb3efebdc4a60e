//! Registration (RFC 3261 §10.2): REGISTER with digest, 423 handling, refresh before
//! expiry with the same Call-ID and increasing CSeq, and un-REGISTER; RFC 5626 outbound:
//! `+sip.instance`/`reg-id`/`;ob` Contacts, `Supported: outbound, path`, one flow per
//! registration kept alive (STUN Binding on UDP every `Flow-Timer` minus jitter, CRLF pings on
//! TCP/TLS by the endpoint), and an immediate re-registration when the flow fails, the public
//! address (Via `received`/`rport`, or the keep-alive's XOR-MAPPED-ADDRESS) changes, or the host's
//! interface addresses change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tandem_net::{FlowEvent, NetError, StunRetry, Target};
use tandem_proto::msg::{ContactValue, HeaderName, Host, Method, Request, Response, Uri};
use tandem_proto::{Flow, Transport};
use tokio::sync::{Mutex, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::account::Account;
use crate::error::{Result, UaError};
use crate::request::{AuthSession, name_addr_header};
use crate::ua::Shared;

/// How many 423 Interval Too Brief answers one registration attempt follows.
const MAX_423: u32 = 3;
/// First delay before retrying a failed refresh; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Longest delay between refresh retries.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Keep-alive interval on UDP when the registrar sends no `Flow-Timer` (RFC 5626 §4.4.1).
const DEFAULT_UDP_KEEPALIVE: u32 = 25;
/// The RFC 5626 `reg-id` of our single flow per account.
const REG_ID: u32 = 1;
/// Consecutive unanswered STUN keep-alives after which a registrar that never answered STUN is
/// taken as not supporting it (CRLF datagrams then keep the NAT binding open instead).
const STUN_UNSUPPORTED_AFTER: u32 = 1;

/// Options for [`UserAgent::register_with`](crate::UserAgent::register_with).
#[derive(Debug, Clone, Default)]
pub struct RegisterOptions {
    /// Register this contact instead of our own (a third-party / foreign contact; no outbound).
    pub contact: Option<Uri>,
    /// Expiry to ask for instead of the account's.
    pub expires: Option<u32>,
}

/// Why a REGISTER was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegReason {
    /// The first registration.
    Initial,
    /// The periodic refresh before expiry.
    Refresh,
    /// Our public address (NAT mapping) changed.
    MappingChanged,
    /// The flow to the registrar failed (keep-alive unanswered, connection closed).
    FlowFailed,
    /// The host's interface addresses changed.
    AddressChanged,
}

impl RegReason {
    /// The lowercase name used in events (`initial`, `refresh`, `mapping-changed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RegReason::Initial => "initial",
            RegReason::Refresh => "refresh",
            RegReason::MappingChanged => "mapping-changed",
            RegReason::FlowFailed => "flow-failed",
            RegReason::AddressChanged => "address-changed",
        }
    }
}

impl std::fmt::Display for RegReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to a registration after it was first granted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegEvent {
    /// A refresh was accepted; the binding now expires in `expires` seconds.
    Refreshed {
        /// Granted expiry in seconds.
        expires: u32,
    },
    /// A refresh failed; it is retried with back-off.
    RefreshFailed(UaError),
    /// Registered again at once because of `reason` (not a periodic refresh).
    Reregistered {
        /// Granted expiry in seconds.
        expires: u32,
        /// What triggered it.
        reason: RegReason,
        /// The public address the registrar saw, when known.
        mapped: Option<SocketAddr>,
    },
    /// A keep-alive answer showed a new public address (a re-registration follows).
    KeepaliveMapped {
        /// The XOR-MAPPED-ADDRESS of the keep-alive's answer.
        mapped: SocketAddr,
    },
}

/// What the registration learned about its flow, readable from the handle.
#[derive(Debug, Clone, Default)]
struct FlowInfo {
    /// The flow of the last successful REGISTER.
    flow: Option<Flow>,
    /// Our public address as last seen by the registrar (Via or keep-alive).
    mapped: Option<SocketAddr>,
}

#[derive(Debug)]
struct RegState {
    account: Account,
    aor: Uri,
    registrar: Uri,
    contact: Uri,
    /// The whole Contact header value (URI plus outbound / feature parameters).
    contact_value: String,
    /// RFC 5626 outbound is in use for this registration.
    outbound: bool,
    call_id: String,
    from_tag: String,
    cseq: u32,
    expires: u32,
    granted: u32,
    auth: AuthSession,
    /// The flow requests go over (`None`: resolve the registrar afresh).
    flow: Option<Flow>,
    /// The public address the registrar saw in the last REGISTER (Via received/rport).
    mapped: Option<SocketAddr>,
    /// The registrar's `Flow-Timer`, if it sent one.
    flow_timer: Option<u32>,
}

/// An active registration; refreshed in the background until [`Registration::unregister`].
///
/// Dropping it stops the refreshes without un-registering (the binding then expires).
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    state: Arc<Mutex<RegState>>,
    info: Arc<std::sync::Mutex<FlowInfo>>,
    aor: Uri,
    contact: Uri,
    granted: u32,
    events: mpsc::UnboundedReceiver<RegEvent>,
    refresher: JoinHandle<()>,
}

impl Registration {
    pub(crate) async fn start(
        shared: Arc<Shared>,
        account: Account,
        options: RegisterOptions,
    ) -> Result<Registration> {
        let aor = account.aor()?;
        let registrar = account.registrar_uri()?;
        let outbound = account.outbound && options.contact.is_none();
        let contact = match options.contact {
            Some(c) => c,
            None => {
                let mut c = shared.contact_uri(Some(&account.user));
                if outbound {
                    c.set_param("ob", None);
                }
                c
            }
        };
        let contact_value = contact_header(&contact, &account, outbound, shared.config.seed);
        let expires = options.expires.unwrap_or(account.expires);
        let auth = AuthSession::for_account(&account);
        let mut state = RegState {
            account,
            aor: aor.clone(),
            registrar,
            contact: contact.clone(),
            contact_value,
            outbound,
            call_id: shared.call_id(),
            from_tag: shared.tag(),
            cseq: 0,
            expires,
            granted: 0,
            auth,
            flow: None,
            mapped: None,
            flow_timer: None,
        };
        if expires == 0 {
            return Err(UaError::Config(
                "a registration needs an expiry above 0".into(),
            ));
        }
        // Subscribed before the first REGISTER, so a flow closing right after it is seen.
        let flow_events = shared.endpoint.flow_events();
        let network = shared.network_changes();
        let granted = register_once(&shared, &mut state, expires).await?;
        // A 439 may have dropped outbound (and the `;ob`) from the contact.
        let contact = state.contact.clone();
        let info = Arc::new(std::sync::Mutex::new(FlowInfo {
            flow: state.flow,
            mapped: state.mapped,
        }));
        let state = Arc::new(Mutex::new(state));
        let (tx, rx) = mpsc::unbounded_channel();
        let refresher = tokio::spawn(
            Maintainer {
                shared: shared.clone(),
                state: state.clone(),
                info: info.clone(),
                events: tx,
                flow_events,
                network,
            }
            .run(granted),
        );
        Ok(Registration {
            shared,
            state,
            info,
            aor,
            contact,
            granted,
            events: rx,
            refresher,
        })
    }

    /// The registered address-of-record.
    pub fn aor(&self) -> &Uri {
        &self.aor
    }

    /// The registered contact.
    pub fn contact(&self) -> &Uri {
        &self.contact
    }

    /// The expiry granted by the registrar to the first REGISTER, in seconds.
    pub fn expires(&self) -> u32 {
        self.granted
    }

    /// Our public address as the registrar last saw it (Via `received`/`rport` of the last
    /// REGISTER's response, or the last keep-alive's XOR-MAPPED-ADDRESS), when known.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).mapped
    }

    /// The flow (transport and registrar address) the registration currently uses.
    pub fn flow(&self) -> Option<Flow> {
        self.info.lock().unwrap_or_else(|p| p.into_inner()).flow
    }

    /// The next refresh event; `None` after the refresher stopped.
    pub async fn next_event(&mut self) -> Option<RegEvent> {
        self.events.recv().await
    }

    /// Stops refreshing and removes our binding (REGISTER with Expires: 0).
    pub async fn unregister(self) -> Result<()> {
        self.refresher.abort();
        let mut state = self.state.lock().await;
        let timeout = self.shared.config.shutdown_timeout;
        match tokio::time::timeout(timeout, register_once(&self.shared, &mut state, 0)).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(UaError::Timeout),
        }
    }

    /// Stops refreshing and leaves the binding at the registrar until it expires.
    pub fn keep(self) {
        self.refresher.abort();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// When to refresh a binding granted for `granted` seconds: before expiry by a margin
/// of half the interval, at most 32 s (RFC 3261 §10.2.4 leaves the margin to us).
pub(crate) fn refresh_delay(granted: u32) -> Duration {
    let total = Duration::from_secs(u64::from(granted));
    let margin = (total / 2).min(Duration::from_secs(32));
    total.saturating_sub(margin).max(Duration::from_millis(500))
}

/// The Contact header value: `<uri>` plus, for outbound, `+sip.instance` and `reg-id`
/// (RFC 5626 §4.2), and `+sip.ice` when ICE is on (RFC 5768).
fn contact_header(contact: &Uri, account: &Account, outbound: bool, seed: u64) -> String {
    let mut value = format!("<{contact}>");
    if outbound {
        let instance = account
            .instance
            .clone()
            .unwrap_or_else(|| default_instance(account, seed));
        value.push_str(&format!(";+sip.instance=\"<{instance}>\";reg-id={REG_ID}"));
    }
    if account.ice {
        value.push_str(";+sip.ice");
    }
    value
}

/// A stable `urn:uuid:` for this account on this machine (RFC 5626 §4.1): a name-based UUID
/// (version 5 layout, SHA-256) over the AoR and the machine id (else the host name, else the
/// UA's seed), so every run of the same account on the same machine registers the same instance.
pub fn default_instance(account: &Account, seed: u64) -> String {
    use sha2::Digest as _;
    let machine = [
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/proc/sys/kernel/hostname",
    ]
    .iter()
    .find_map(|p| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .unwrap_or_else(|| format!("seed-{seed}"));
    let mut h = sha2::Sha256::new();
    h.update(b"tandem-sip-instance\0");
    h.update(account.user.as_bytes());
    h.update(b"@");
    h.update(account.domain.to_ascii_lowercase().as_bytes());
    h.update(b"\0");
    h.update(machine.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    for (dst, src) in b.iter_mut().zip(d.iter()) {
        *dst = *src;
    }
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The public address in the top Via of a response to our request: `received` (else the
/// sent-by host) and `rport` (else the sent-by port) — RFC 3581.
fn via_mapped(response: &Response) -> Option<SocketAddr> {
    let via = response.headers.top_via().ok()?;
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port?,
    };
    let ip = match via.received() {
        Some(r) => r
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?,
        None => match &via.host {
            Host::V4(ip) => std::net::IpAddr::V4(*ip),
            Host::V6(ip) => std::net::IpAddr::V6(*ip),
            Host::Domain(_) => return None,
        },
    };
    Some(SocketAddr::new(ip, port))
}

/// The background task of a registration: refreshes, keep-alives, and re-registration on
/// flow failure, mapping change and interface changes.
struct Maintainer {
    shared: Arc<Shared>,
    state: Arc<Mutex<RegState>>,
    info: Arc<std::sync::Mutex<FlowInfo>>,
    events: mpsc::UnboundedSender<RegEvent>,
    flow_events: broadcast::Receiver<FlowEvent>,
    network: watch::Receiver<crate::ua::NetworkState>,
}

/// How keep-alives run on a UDP flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UdpKeepalive {
    /// STUN Binding requests; failures mean the flow is dead.
    Stun,
    /// The registrar never answered STUN: CRLF datagrams keep the NAT binding open.
    Crlf,
}

impl Maintainer {
    fn emit(&self, ev: RegEvent) {
        if self.events.send(ev).is_err() {
            tracing::trace!("registration events no longer read");
        }
    }

    fn publish(&self, st: &RegState) {
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        info.flow = st.flow;
        info.mapped = st.mapped;
    }

    /// The keep-alive interval with RFC 5626 §4.4.1 jitter (80–100 %), for UDP flows only
    /// (stream flows are pinged by the endpoint, and their closing is a flow event).
    async fn keepalive_delay(&self) -> Option<Duration> {
        let st = self.state.lock().await;
        if st.flow?.transport != Transport::Udp {
            return None;
        }
        let secs = st
            .account
            .keepalive_secs
            .or(st.flow_timer)
            .unwrap_or(DEFAULT_UDP_KEEPALIVE)
            .max(1);
        drop(st);
        let total = Duration::from_secs(u64::from(secs));
        let fraction = 0.8 + 0.2 * f64::from(self.shared.random_u32()) / f64::from(u32::MAX);
        Some(total.mul_f64(fraction))
    }

    async fn run(mut self, granted: u32) {
        let mut next_refresh = Instant::now() + refresh_delay(granted);
        let mut retry = FIRST_RETRY;
        let mut mode = UdpKeepalive::Stun;
        let mut stun_answered = false;
        let mut stun_misses = 0u32;
        let mut next_keepalive = self.keepalive_delay().await.map(|d| Instant::now() + d);
        // `network` was subscribed before the first REGISTER: a change since then (even before
        // this task first runs) re-registers.
        loop {
            let reason = tokio::select! {
                () = tokio::time::sleep_until(next_refresh) => RegReason::Refresh,
                () = sleep_until_opt(next_keepalive) => {
                    match self.keepalive(mode).await {
                        KeepaliveOutcome::Alive => {
                            stun_answered = stun_answered || mode == UdpKeepalive::Stun;
                            stun_misses = 0;
                            next_keepalive = self.keepalive_delay().await.map(|d| Instant::now() + d);
                            continue;
                        }
                        KeepaliveOutcome::MappingChanged => {
                            stun_answered = true;
                            RegReason::MappingChanged
                        }
                        KeepaliveOutcome::Unanswered if !stun_answered => {
                            stun_misses += 1;
                            if stun_misses >= STUN_UNSUPPORTED_AFTER {
                                tracing::info!("the registrar does not answer STUN keep-alives; sending CRLF keep-alives instead");
                                mode = UdpKeepalive::Crlf;
                            }
                            next_keepalive = self.keepalive_delay().await.map(|d| Instant::now() + d);
                            continue;
                        }
                        KeepaliveOutcome::Unanswered => RegReason::FlowFailed,
                    }
                }
                ev = self.flow_events.recv() => match ev {
                    Ok(FlowEvent::Closed { flow, error }) if Some(flow) == self.state.lock().await.flow => {
                        tracing::info!(%flow, ?error, "registration flow closed");
                        RegReason::FlowFailed
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "flow events lagged");
                        continue;
                    }
                    // The endpoint is gone: nothing left to maintain.
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = self.network.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    RegReason::AddressChanged
                }
            };
            let mut st = self.state.lock().await;
            if matches!(reason, RegReason::FlowFailed | RegReason::AddressChanged)
                && st
                    .flow
                    .is_some_and(|f| f.transport.is_reliable() || reason == RegReason::FlowFailed)
            {
                // A new flow: resolve the registrar again (and reconnect for streams).
                st.flow = None;
            }
            let before = st.mapped;
            let expires = st.expires;
            let mut outcome = register_once(&self.shared, &mut st, expires).await;
            if outcome.is_err() && st.flow.is_some() {
                // The old flow may be what failed: once more on a fresh one.
                st.flow = None;
                outcome = register_once(&self.shared, &mut st, expires).await;
            }
            self.publish(&st);
            let after = st.mapped;
            drop(st);
            match outcome {
                Ok(granted) => {
                    retry = FIRST_RETRY;
                    next_refresh = Instant::now() + refresh_delay(granted);
                    let reason =
                        if reason == RegReason::Refresh && before.is_some() && after != before {
                            // The refresh itself showed a new mapping (and updated the binding).
                            RegReason::MappingChanged
                        } else {
                            reason
                        };
                    if reason == RegReason::Refresh {
                        self.emit(RegEvent::Refreshed { expires: granted });
                    } else {
                        self.emit(RegEvent::Reregistered {
                            expires: granted,
                            reason,
                            mapped: after,
                        });
                    }
                    if reason != RegReason::Refresh {
                        // A new flow: STUN support is learned again.
                        stun_answered = false;
                        stun_misses = 0;
                        mode = UdpKeepalive::Stun;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, %reason, "registration failed; retrying in {retry:?}");
                    next_refresh = Instant::now() + retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    self.emit(RegEvent::RefreshFailed(e));
                }
            }
            next_keepalive = self.keepalive_delay().await.map(|d| Instant::now() + d);
        }
    }

    /// Sends one keep-alive on the registration's UDP flow.
    async fn keepalive(&self, mode: UdpKeepalive) -> KeepaliveOutcome {
        let (flow, known) = {
            let st = self.state.lock().await;
            match st.flow {
                Some(f) if f.transport == Transport::Udp => (f, st.mapped),
                _ => return KeepaliveOutcome::Alive,
            }
        };
        if mode == UdpKeepalive::Crlf {
            if let Err(e) = self
                .shared
                .endpoint
                .send_datagram(flow, b"\r\n\r\n".to_vec())
                .await
            {
                tracing::debug!(%flow, error = %e, "CRLF keep-alive not sent");
            }
            return KeepaliveOutcome::Alive;
        }
        match self
            .shared
            .endpoint
            .stun_binding(flow, StunRetry::keepalive())
            .await
        {
            Ok(mapped) => {
                if known == Some(mapped) {
                    return KeepaliveOutcome::Alive;
                }
                tracing::info!(%flow, %mapped, previous = ?known, "keep-alive: new public address");
                self.emit(RegEvent::KeepaliveMapped { mapped });
                {
                    let mut st = self.state.lock().await;
                    st.mapped = Some(mapped);
                    self.publish(&st);
                }
                if known.is_some() {
                    KeepaliveOutcome::MappingChanged
                } else {
                    KeepaliveOutcome::Alive
                }
            }
            Err(NetError::StunTimeout) => {
                tracing::info!(%flow, "STUN keep-alive unanswered");
                KeepaliveOutcome::Unanswered
            }
            Err(e) => {
                tracing::debug!(%flow, error = %e, "STUN keep-alive failed");
                KeepaliveOutcome::Unanswered
            }
        }
    }
}

/// What one keep-alive found.
enum KeepaliveOutcome {
    /// Answered with the known address (or sent without expecting an answer).
    Alive,
    /// Answered with a new public address.
    MappingChanged,
    /// No answer after the retransmissions.
    Unanswered,
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Builds the REGISTER for the current state (next CSeq) asking for `expires`.
fn build_register(shared: &Shared, st: &mut RegState, expires: u32) -> Request {
    st.cseq += 1;
    let mut req = Request::new(Method::Register, st.registrar.clone());
    let h = &mut req.headers;
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::To, format!("<{}>", st.aor));
    h.push(
        HeaderName::From,
        format!(
            "{};tag={}",
            name_addr_header(st.account.display_name.as_deref(), &st.aor),
            st.from_tag
        ),
    );
    h.push(HeaderName::CallId, st.call_id.clone());
    h.push(HeaderName::CSeq, format!("{} REGISTER", st.cseq));
    h.push(HeaderName::Contact, st.contact_value.clone());
    h.push(HeaderName::Expires, expires.to_string());
    h.push(HeaderName::Allow, crate::ua::ALLOW);
    if st.outbound {
        h.push(HeaderName::Supported, "outbound, path");
    }
    h.push(HeaderName::UserAgent, shared.config.user_agent.clone());
    req
}

/// One registration exchange (with digest and 423 handling); returns the granted expiry.
async fn register_once(shared: &Arc<Shared>, st: &mut RegState, expires: u32) -> Result<u32> {
    let mut expires = expires;
    let mut too_brief = 0;
    loop {
        let req = build_register(shared, st, expires);
        let uri = st.registrar.to_string();
        st.auth.preempt(shared, "REGISTER", &uri);
        let target = match st.flow {
            Some(flow) => Target::Flow(flow),
            None => Target::Uri(st.account.next_hop(&st.registrar)),
        };
        let response =
            crate::request::send_non_invite_on(shared, req, target, Some(&mut st.auth)).await;
        let response = match response {
            Ok((r, flow)) => {
                if (200..300).contains(&r.status) && expires != 0 {
                    st.flow = flow.or(st.flow);
                }
                r
            }
            Err(e) => {
                // Our stored credentials may be what was refused: start afresh next time.
                if matches!(e, UaError::AuthFailed { .. }) {
                    st.auth.clear();
                }
                return Err(e);
            }
        };
        if let Ok(cseq) = response.headers.cseq() {
            st.cseq = st.cseq.max(cseq.seq);
        }
        match response.status {
            200..=299 => {
                if expires == 0 {
                    return Ok(0);
                }
                let granted = granted_expiry(&response, &st.contact).unwrap_or(expires);
                if granted == 0 {
                    return Err(UaError::Protocol(
                        "the registrar granted our contact no time (expires=0)".into(),
                    ));
                }
                st.granted = granted;
                if let Some(m) = via_mapped(&response) {
                    st.mapped = Some(m);
                }
                st.flow_timer = response
                    .headers
                    .get_str(&HeaderName::Other("Flow-Timer".into()))
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .filter(|v| *v > 0);
                return Ok(granted);
            }
            439 if st.outbound => {
                // RFC 5626 §4.2.1: a hop before the registrar lacks outbound: register
                // without it (no reg-id, no `;ob`), like an RFC 3261 UA.
                tracing::info!(
                    "439 First Hop Lacks Outbound Support: registering without outbound"
                );
                st.outbound = false;
                st.contact.remove_param("ob");
                st.contact_value =
                    contact_header(&st.contact, &st.account, false, shared.config.seed);
            }
            423 if expires != 0 && too_brief < MAX_423 => {
                too_brief += 1;
                let min = response
                    .headers
                    .get_str(&HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > expires => {
                        tracing::info!(min, "423 Interval Too Brief: retrying with Min-Expires");
                        expires = min;
                        st.expires = min;
                    }
                    _ => return Err(UaError::rejected(423, response.reason.clone())),
                }
            }
            status => return Err(UaError::rejected(status, response.reason.clone())),
        }
    }
}

/// The expiry the registrar granted our contact: its Contact `expires` param, else Expires.
fn granted_expiry(response: &Response, ours: &Uri) -> Option<u32> {
    let contacts = response.headers.contacts().unwrap_or_default();
    for c in &contacts {
        if let ContactValue::Addr(addr) = c
            && same_contact(&addr.uri, ours)
            && let Some(e) = addr.expires()
        {
            return Some(e);
        }
    }
    response.headers.expires().ok().flatten()
}

/// Whether a contact in a 200 is ours (URI equivalence, tolerating re-ordered params).
fn same_contact(theirs: &Uri, ours: &Uri) -> bool {
    theirs.equivalent(ours)
        || (theirs.user == ours.user && theirs.host == ours.host && theirs.port == ours.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margins() {
        assert_eq!(refresh_delay(3600), Duration::from_secs(3568));
        assert_eq!(refresh_delay(60), Duration::from_secs(30));
        assert_eq!(refresh_delay(2), Duration::from_secs(1));
        assert_eq!(refresh_delay(0), Duration::from_millis(500));
    }
}
