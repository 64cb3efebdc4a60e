//! ICE agent for a call's media: candidate gathering, connectivity checks, the selected path.
//!
//! [`IceSession::gather`] binds one UDP socket per usable interface address (host candidates;
//! loopback only when there is nothing else, and the signalling address always), asks the
//! STUN server for each socket's server-reflexive address, and allocates a TURN relay when
//! one is configured. The session then runs an `rtc-ice` [`Agent`] in a task: connectivity
//! checks, nomination, consent freshness (RFC 7675: a Binding request on the selected pair
//! every 2 s, the path fails after 30 s without an answer) and the demultiplexing of STUN
//! from media on every socket (RFC 7983). The media engine runs over [`IceSession::socket`],
//! a [`MediaSocket`] whose sends follow the selected pair (through the TURN allocation when
//! the local candidate is a relay). Without ICE at the peer, [`IceSession::fall_back`] sends
//! plain RTP to the SDP address from the default candidate.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::Rng;
use rtc_ice::agent::Agent;
use rtc_ice::candidate::{Candidate, CandidateType as RtcCandidateType, unmarshal_candidate};
use rtc_ice::state::ConnectionState;
use rtc_ice::{AgentConfig, Event};
use rtc_shared::{TransportContext, TransportMessage, TransportProtocol};
use sansio::Protocol;
use tandem_media::session::{MediaSocket, MediaTransport, SendFuture};
use tandem_proto::sdp::ice::{CandidateType, IceCandidate, MediaIce};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, trace, warn};

use super::NatError;
use super::turn::{TurnClient, TurnConfig, TurnOptions, TurnTransport};

/// A boxed future of the relay interface.
pub type RelayFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, NatError>> + Send + 'a>>;

/// What ICE needs from a TURN allocation (RFC 8656): its addresses, permissions, and data
/// both ways. Every method takes `&self`: the allocation is shared by the session's reader
/// and sender.
pub trait RelayAllocation: Send + Sync + 'static {
    /// The relayed transport address (the relay candidate).
    fn relayed_addr(&self) -> SocketAddr;
    /// Our address as the TURN server saw it (the relay candidate's related address).
    fn mapped_addr(&self) -> SocketAddr;
    /// Installs (or refreshes) a permission for `peer`.
    fn create_permission(&self, peer: IpAddr) -> RelayFuture<'_, ()>;
    /// Binds a channel to `peer` (cheaper ChannelData framing for the media).
    fn channel_bind(&self, peer: SocketAddr) -> RelayFuture<'_, ()>;
    /// Sends `data` to `peer` through the relay.
    fn send_to<'a>(&'a self, data: &'a [u8], peer: SocketAddr) -> RelayFuture<'a, ()>;
    /// The next datagram a peer sent to the relayed address.
    fn recv_from(&self) -> RelayFuture<'_, (Vec<u8>, SocketAddr)>;
}

/// Most host addresses used for candidates.
const MAX_HOST_ADDRESSES: usize = 8;
/// Media datagrams queued for the media engine before the oldest is dropped.
const INBOX_LIMIT: usize = 512;
/// Largest datagram read from a socket.
const RECV_BUFFER: usize = 2048;
/// Smallest wait between two agent timer runs when the agent keeps asking for "now".
const TIMER_FLOOR: Duration = Duration::from_millis(5);

/// Errors of ICE gathering and control.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IceError {
    /// A socket could not be bound or read.
    #[error("ICE socket: {0}")]
    Io(#[from] io::Error),
    /// No candidate could be gathered (no usable address, or relay-only without a relay).
    #[error("no ICE candidates: {0}")]
    NoCandidates(String),
    /// The ICE agent refused an operation.
    #[error("ICE agent: {0}")]
    Agent(String),
    /// The peer's ICE description is unusable.
    #[error("remote ICE description: {0}")]
    Remote(String),
    /// The TURN allocation failed.
    #[error("TURN: {0}")]
    Turn(#[from] NatError),
}

/// Which candidates a call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IcePolicy {
    /// Host, server-reflexive and relay candidates.
    #[default]
    All,
    /// Only relay candidates (forces media through TURN).
    Relay,
}

impl IcePolicy {
    /// The name used in settings and on the command line (`all`, `relay`).
    pub fn as_str(self) -> &'static str {
        match self {
            IcePolicy::All => "all",
            IcePolicy::Relay => "relay",
        }
    }
}

impl FromStr for IcePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Ok(IcePolicy::All),
            "relay" => Ok(IcePolicy::Relay),
            other => Err(format!("unknown ICE policy {other:?} (all or relay)")),
        }
    }
}

impl fmt::Display for IcePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call gathers and checks candidates.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IceConfig {
    /// The STUN server for server-reflexive candidates (resolved).
    pub stun: Option<SocketAddr>,
    /// The TURN server for a relay candidate (allocated while gathering).
    pub turn: Option<TurnConfig>,
    /// Give up on the TURN allocation after this long while gathering.
    pub turn_timeout: Duration,
    /// TLS client configuration for a `turns:` server (default: the system's roots).
    pub turn_tls: Option<Arc<rustls::ClientConfig>>,
    /// Which candidates may be used.
    pub policy: IcePolicy,
    /// The signalling address: always a host candidate, with the highest preference.
    pub preferred_ip: Option<IpAddr>,
    /// Give up on the STUN server after this long while gathering.
    pub stun_timeout: Duration,
    /// No answer to consent checks for this long: the path is disconnected.
    pub disconnected_timeout: Duration,
    /// After being disconnected this much longer without answers, the path has failed
    /// (RFC 7675: 30 s in total by default).
    pub failed_timeout: Duration,
    /// Interval of consent freshness checks on the selected pair.
    pub keepalive_interval: Duration,
}

impl Default for IceConfig {
    fn default() -> Self {
        IceConfig {
            stun: None,
            turn: None,
            turn_timeout: Duration::from_secs(5),
            turn_tls: None,
            policy: IcePolicy::All,
            preferred_ip: None,
            stun_timeout: Duration::from_secs(2),
            disconnected_timeout: Duration::from_secs(5),
            failed_timeout: Duration::from_secs(25),
            keepalive_interval: Duration::from_secs(2),
        }
    }
}

impl IceConfig {
    /// A configuration with a STUN server and a policy; other fields default.
    pub fn new(stun: Option<SocketAddr>, policy: IcePolicy) -> Self {
        IceConfig {
            stun,
            policy,
            ..IceConfig::default()
        }
    }

    /// Returns this configuration with a TURN server.
    pub fn with_turn(mut self, turn: TurnConfig) -> Self {
        self.turn = Some(turn);
        self
    }

    /// Returns this configuration with the signalling address as preferred host address.
    pub fn with_preferred_ip(mut self, ip: IpAddr) -> Self {
        self.preferred_ip = Some(ip);
        self
    }

    /// Returns this configuration with other consent freshness timings.
    pub fn with_consent(
        mut self,
        keepalive: Duration,
        disconnected: Duration,
        failed: Duration,
    ) -> Self {
        self.keepalive_interval = keepalive;
        self.disconnected_timeout = disconnected;
        self.failed_timeout = failed;
        self
    }
}

/// The kind of path a call's media took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcePathKind {
    /// Host to host.
    Direct,
    /// Through a NAT mapping (a server- or peer-reflexive candidate on either side).
    Reflexive,
    /// Through a TURN relay (a relay candidate on either side).
    Relay,
}

impl IcePathKind {
    /// The name printed in events (`direct`, `reflexive`, `relay`).
    pub fn as_str(self) -> &'static str {
        match self {
            IcePathKind::Direct => "direct",
            IcePathKind::Reflexive => "reflexive",
            IcePathKind::Relay => "relay",
        }
    }

    /// The path of a pair of candidate types: relay if either is relay, else reflexive if
    /// either is reflexive, else direct.
    pub fn of(local: CandidateType, remote: CandidateType) -> Self {
        let either = |t: CandidateType| local == t || remote == t;
        if either(CandidateType::Relay) {
            IcePathKind::Relay
        } else if either(CandidateType::Srflx) || either(CandidateType::Prflx) {
            IcePathKind::Reflexive
        } else {
            IcePathKind::Direct
        }
    }
}

impl fmt::Display for IcePathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The candidate pair ICE selected for a call's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcePathInfo {
    /// Direct, reflexive or relay.
    pub path: IcePathKind,
    /// Type of our candidate.
    pub local_type: CandidateType,
    /// Type of the peer's candidate.
    pub remote_type: CandidateType,
    /// Our candidate's address.
    pub local: SocketAddr,
    /// The peer's candidate's address.
    pub remote: SocketAddr,
}

impl fmt::Display for IcePathInfo {
    /// `path=… local_type=… remote_type=… local=… remote=…`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "path={} local_type={} remote_type={} local={} remote={}",
            self.path, self.local_type, self.remote_type, self.local, self.remote
        )
    }
}

/// What an ICE session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IceEvent {
    /// A pair was selected (or another one replaced it).
    Selected(IcePathInfo),
    /// No pair works (checks failed, or consent was lost); the reason is a short token.
    Failed(String),
}

/// One datagram read from a socket or the relay.
struct Inbound {
    /// The local candidate address it arrived on (a host socket or the relayed address).
    local: SocketAddr,
    peer: SocketAddr,
    data: Vec<u8>,
}

/// Where media goes.
#[derive(Clone)]
enum Route {
    /// Out of a host socket; `remote: None` sends to the address the engine asks for.
    Direct {
        socket: Arc<UdpSocket>,
        remote: Option<SocketAddr>,
    },
    /// Through the TURN allocation.
    Relay { remote: Option<SocketAddr> },
}

/// Commands to the session task.
enum Command {
    Start {
        local_ufrag: String,
        local_pwd: String,
        remote_ufrag: String,
        remote_pwd: String,
        candidates: Vec<Candidate>,
        controlling: bool,
        restart: bool,
    },
    /// Plain RTP to the peer's SDP address from the default candidate.
    Fixed { remote: SocketAddr },
    /// A media datagram for the relay.
    RelaySend { data: Vec<u8>, peer: SocketAddr },
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<(Vec<u8>, SocketAddr)>,
    waker: Option<Waker>,
    dropped: u64,
}

/// State shared by the session task and the media transport.
struct Shared {
    inbox: Mutex<Inbox>,
    route: Mutex<Option<Route>>,
    local: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
}

impl Shared {
    fn push_media(&self, data: Vec<u8>, from: SocketAddr) {
        let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        if inbox.queue.len() >= INBOX_LIMIT {
            inbox.queue.pop_front();
            inbox.dropped += 1;
        }
        inbox.queue.push_back((data, from));
        if let Some(w) = inbox.waker.take() {
            w.wake();
        }
    }

    fn set_route(&self, route: Option<Route>) {
        *self.route.lock().unwrap_or_else(PoisonError::into_inner) = route;
    }
}

/// The session state a transport follows; replaced when the candidates are gathered again
/// (network change), so a running media session moves to the new sockets.
struct Slot {
    current: Mutex<Arc<Shared>>,
}

impl Slot {
    fn get(&self) -> Arc<Shared> {
        Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn replace(&self, shared: Arc<Shared>) {
        let old = std::mem::replace(
            &mut *self.current.lock().unwrap_or_else(PoisonError::into_inner),
            shared,
        );
        // A reader parked on the old inbox polls again, now on the new one.
        let waker = old
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waker
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The [`MediaTransport`] of an ICE session.
struct IceTransport {
    slot: Arc<Slot>,
}

impl MediaTransport for IceTransport {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.slot.get().local)
    }

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        match self.try_recv_from(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let shared = self.slot.get();
                let mut inbox = shared.inbox.lock().unwrap_or_else(PoisonError::into_inner);
                // A datagram may have arrived between the check and taking the lock.
                if let Some((data, from)) = inbox.queue.pop_front() {
                    return Poll::Ready(Ok(copy_out(&data, buf, from)));
                }
                inbox.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            other => Poll::Ready(other),
        }
    }

    fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let shared = self.slot.get();
        let mut inbox = shared.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        match inbox.queue.pop_front() {
            Some((data, from)) => Ok(copy_out(&data, buf, from)),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn send_to<'a>(&'a self, data: &'a [u8], to: SocketAddr) -> SendFuture<'a> {
        let shared = self.slot.get();
        let route = shared
            .route
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Box::pin(async move {
            match route {
                // No path yet: media before ICE has selected a pair is dropped.
                None => Ok(data.len()),
                Some(Route::Direct { socket, remote }) => {
                    socket.send_to(data, remote.unwrap_or(to)).await
                }
                Some(Route::Relay { remote }) => {
                    let peer = remote.unwrap_or(to);
                    shared
                        .commands
                        .send(Command::RelaySend {
                            data: data.to_vec(),
                            peer,
                        })
                        .map_err(|_| io::Error::from(io::ErrorKind::NotConnected))?;
                    Ok(data.len())
                }
            }
        })
    }
}

fn copy_out(data: &[u8], buf: &mut [u8], from: SocketAddr) -> (usize, SocketAddr) {
    let n = data.len().min(buf.len());
    if let (Some(dst), Some(src)) = (buf.get_mut(..n), data.get(..n)) {
        dst.copy_from_slice(src);
    }
    (n, from)
}

/// A local host socket with its candidate address.
struct HostSocket {
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
}

/// The ICE side of one call's audio stream.
pub struct IceSession {
    local: MediaIce,
    default: SocketAddr,
    default_type: CandidateType,
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    events: mpsc::UnboundedReceiver<IceEvent>,
    selected: Arc<Mutex<Option<IcePathInfo>>>,
    remote_creds: Option<(String, String)>,
    primary: Option<Arc<UdpSocket>>,
    started: bool,
    fixed: bool,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for IceSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceSession")
            .field("default", &self.default)
            .field("candidates", &self.local.candidates.len())
            .field("started", &self.started)
            .field("fixed", &self.fixed)
            .finish_non_exhaustive()
    }
}

impl Drop for IceSession {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Random ice-chars (RFC 8839: ALPHA / DIGIT / "+" / "/").
fn random_ice_string(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

/// The addresses host candidates are gathered on: `preferred` first, then every up,
/// non-loopback, non-link-local interface address (IPv4 before IPv6), loopback only when
/// nothing else exists.
pub fn host_addresses(preferred: Option<IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    if let Some(ip) = preferred.filter(|ip| !ip.is_unspecified()) {
        out.push(ip);
    }
    let ifaces = if_addrs::get_if_addrs().unwrap_or_default();
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified(),
        // fe80::/10 needs a scope id an SDP candidate cannot carry.
        IpAddr::V6(v6) => {
            !v6.is_unspecified()
                && (v6.segments()[0] & 0xffc0) != 0xfe80
                && v6.to_ipv4_mapped().is_none()
        }
    };
    let mut others: Vec<IpAddr> = ifaces
        .iter()
        .filter(|i| i.is_oper_up() || matches!(i.oper_status, if_addrs::IfOperStatus::Unknown))
        .map(if_addrs::Interface::ip)
        .filter(|ip| !ip.is_loopback() && usable(ip))
        .collect();
    if others.is_empty() && out.is_empty() {
        others = ifaces
            .iter()
            .map(if_addrs::Interface::ip)
            .filter(IpAddr::is_loopback)
            .collect();
    }
    others.sort_by_key(|ip| ip.is_ipv6());
    for ip in others {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out.truncate(MAX_HOST_ADDRESSES);
    out
}

fn to_rtc_candidate(c: &IceCandidate) -> Result<Candidate, IceError> {
    // The agent's parser takes the plain grammar without extensions.
    let mut plain = c.clone();
    plain.extensions.clear();
    plain.transport = "udp".to_owned();
    unmarshal_candidate(&plain.to_string()).map_err(|e| IceError::Agent(e.to_string()))
}

fn candidate_type(c: &Candidate) -> CandidateType {
    match c.candidate_type() {
        RtcCandidateType::ServerReflexive => CandidateType::Srflx,
        RtcCandidateType::PeerReflexive => CandidateType::Prflx,
        RtcCandidateType::Relay => CandidateType::Relay,
        _ => CandidateType::Host,
    }
}

impl IceSession {
    /// Gathers host, server-reflexive and (with a TURN server) relay candidates and starts
    /// the session task. A failed allocation is an error only under [`IcePolicy::Relay`].
    pub async fn gather(config: &IceConfig) -> Result<IceSession, IceError> {
        let relay: Option<Arc<dyn RelayAllocation>> = match &config.turn {
            Some(turn) => {
                let opts = TurnOptions {
                    timeout: config.turn_timeout,
                    tls: config.turn_tls.clone(),
                    ..TurnOptions::default()
                };
                match TurnClient::allocate(turn, opts).await {
                    Ok(client) => Some(Arc::new(client)),
                    Err(e) if config.policy == IcePolicy::Relay => return Err(IceError::Turn(e)),
                    Err(e) => {
                        warn!(error = %e, "no relay candidate");
                        None
                    }
                }
            }
            None => None,
        };
        Self::gather_with_relay(config, relay).await
    }

    /// Gathers candidates (host sockets, STUN) plus the relay candidate of `relay` (an
    /// allocation the caller made), and starts the session task.
    pub async fn gather_with_relay(
        config: &IceConfig,
        relay: Option<Arc<dyn RelayAllocation>>,
    ) -> Result<IceSession, IceError> {
        let mut hosts: Vec<HostSocket> = Vec::new();
        let mut candidates: Vec<IceCandidate> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let addresses = host_addresses(config.preferred_ip);
        for ip in &addresses {
            match UdpSocket::bind(SocketAddr::new(*ip, 0)).await {
                Ok(socket) => {
                    let addr = socket.local_addr()?;
                    hosts.push(HostSocket {
                        addr,
                        socket: Arc::new(socket),
                    });
                }
                Err(e) => {
                    debug!(%ip, error = %e, "no host candidate on this address");
                    errors.push(format!("{ip}: {e}"));
                }
            }
        }
        let all = config.policy == IcePolicy::All;
        if all {
            for (i, h) in hosts.iter().enumerate() {
                let pref = 65535u16
                    .saturating_sub(u16::try_from(i).unwrap_or(u16::MAX).saturating_mul(256));
                candidates.push(IceCandidate::new(
                    format!("h{i}"),
                    1,
                    h.addr,
                    CandidateType::Host,
                    pref,
                ));
            }
        }
        // Server reflexive: one Binding per host socket of the STUN server's family,
        // concurrently, before anything else reads the sockets.
        if all && let Some(stun) = config.stun {
            let mut set = tokio::task::JoinSet::new();
            for (i, h) in hosts.iter().enumerate() {
                if h.addr.is_ipv4() != stun.is_ipv4() {
                    continue;
                }
                let socket = Arc::clone(&h.socket);
                let base = h.addr;
                let timeout = config.stun_timeout;
                set.spawn(
                    async move { (i, base, super::stun::binding(&socket, stun, timeout).await) },
                );
            }
            let mut found = Vec::new();
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((i, base, Ok(mapped))) if mapped != base => found.push((i, base, mapped)),
                    Ok((_, base, Ok(_))) => trace!(%base, "no NAT in front of this address"),
                    Ok((_, base, Err(e))) => {
                        warn!(%base, %stun, error = %e, "no server-reflexive candidate");
                    }
                    Err(e) => warn!(error = %e, "STUN gathering task failed"),
                }
            }
            found.sort_by_key(|(i, _, _)| *i);
            for (i, base, mapped) in found {
                if candidates.iter().any(|c| c.socket_addr() == Some(mapped)) {
                    continue;
                }
                let pref = 65535u16
                    .saturating_sub(u16::try_from(i).unwrap_or(u16::MAX).saturating_mul(256));
                candidates.push(
                    IceCandidate::new(format!("s{i}"), 1, mapped, CandidateType::Srflx, pref)
                        .with_related(base),
                );
            }
        }
        if let Some(client) = &relay {
            let relayed = client.relayed_addr();
            let related = client.mapped_addr();
            candidates.push(
                IceCandidate::new("r0", 1, relayed, CandidateType::Relay, 65535)
                    .with_related(related),
            );
        }
        if candidates.is_empty() {
            return Err(IceError::NoCandidates(
                if config.policy == IcePolicy::Relay {
                    "relay-only policy without a TURN allocation".to_owned()
                } else if errors.is_empty() {
                    "no usable interface address".to_owned()
                } else {
                    errors.join("; ")
                },
            ));
        }
        // RFC 8445 §5.1.4: the default candidate is relay if any, else srflx, else host.
        let default = candidates
            .iter()
            .find(|c| c.typ == CandidateType::Relay)
            .or_else(|| candidates.iter().find(|c| c.typ == CandidateType::Srflx))
            .or_else(|| candidates.first())
            .cloned()
            .ok_or_else(|| IceError::NoCandidates("none".into()))?;
        let default_addr = default
            .socket_addr()
            .ok_or_else(|| IceError::NoCandidates("default candidate without an address".into()))?;
        let default_base = default
            .related_addr()
            .filter(|_| default.typ == CandidateType::Srflx)
            .unwrap_or(default_addr);

        let local = MediaIce {
            candidates,
            end_of_candidates: true,
            ..MediaIce::new(random_ice_string(8), random_ice_string(24))
        };
        Self::start_task(
            config,
            local,
            hosts,
            relay,
            default_addr,
            default_base,
            default.typ,
        )
    }

    fn start_task(
        config: &IceConfig,
        local: MediaIce,
        hosts: Vec<HostSocket>,
        relay: Option<Arc<dyn RelayAllocation>>,
        default: SocketAddr,
        default_base: SocketAddr,
        default_type: CandidateType,
    ) -> Result<IceSession, IceError> {
        let now = Instant::now();
        let agent_config = AgentConfig {
            local_ufrag: local.ufrag.clone(),
            local_pwd: local.pwd.clone(),
            disconnected_timeout: Some(config.disconnected_timeout),
            failed_timeout: Some(config.failed_timeout),
            keepalive_interval: Some(config.keepalive_interval),
            // The agent re-sends a pair's check on every tick and gives the pair up after
            // `max_binding_requests`: 40 × 100 ms keeps a pair alive for 4 s, enough for the
            // peer to get our description (the offerer starts only when the answer arrives)
            // on a loaded machine or a slow path.
            check_interval: Duration::from_millis(100),
            max_binding_requests: Some(40),
            multicast_dns_mode: rtc_ice::mdns::MulticastDnsMode::Disabled,
            // Gathering is ours; acceptance waits stay the library's (host 0, srflx 0.5 s,
            // prflx 1 s, relay 2 s) so better pairs get a chance before nomination.
            ..AgentConfig::default()
        };
        let provider = rtc_ice::crypto::default_provider()
            .map_err(|e| IceError::Agent(format!("no crypto provider: {e}")))?;
        let mut agent = Agent::new(now, Arc::new(agent_config), provider)
            .map_err(|e| IceError::Agent(e.to_string()))?;
        for c in &local.candidates {
            let rc = to_rtc_candidate(c)?;
            agent
                .add_local_candidate(rc)
                .map_err(|e| IceError::Agent(e.to_string()))?;
        }
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox::default()),
            route: Mutex::new(None),
            local: default,
            commands: commands_tx,
        });
        let mut tasks = Vec::new();
        for h in &hosts {
            tasks.push(tokio::spawn(read_socket(
                Arc::clone(&h.socket),
                h.addr,
                inbound_tx.clone(),
            )));
        }
        if let Some(client) = &relay {
            tasks.push(tokio::spawn(read_relay(
                Arc::clone(client),
                inbound_tx.clone(),
            )));
        }
        drop(inbound_tx);
        let primary = hosts.first().map(|h| Arc::clone(&h.socket));
        let selected = Arc::new(Mutex::new(None));
        let task = SessionTask {
            agent,
            hosts,
            relay,
            relay_only: config.policy == IcePolicy::Relay,
            shared: Arc::clone(&shared),
            events: events_tx,
            selected: Arc::clone(&selected),
            default_base,
            default_is_relay: default_type == CandidateType::Relay,
            mode: Mode::Pending,
            was_connected: false,
            last_timer: now,
            pending_bind: None,
        };
        tasks.push(tokio::spawn(task.run(commands_rx, inbound_rx)));
        let slot = Arc::new(Slot {
            current: Mutex::new(Arc::clone(&shared)),
        });
        Ok(IceSession {
            local,
            default,
            default_type,
            shared,
            slot,
            events: events_rx,
            selected,
            remote_creds: None,
            primary,
            started: false,
            fixed: false,
            tasks,
        })
    }

    /// Our ICE attributes for the SDP (credentials, candidates, end-of-candidates).
    pub fn local_ice(&self) -> &MediaIce {
        &self.local
    }

    /// The default candidate's address (what goes into `c=`/`m=`).
    pub fn default_addr(&self) -> SocketAddr {
        self.default
    }

    /// The default candidate's type.
    pub fn default_type(&self) -> CandidateType {
        self.default_type
    }

    /// The media socket: sends follow the selected pair (or the default candidate after
    /// [`Self::fall_back`]); receives carry only media.
    pub fn socket(&self) -> MediaSocket {
        let transport: Arc<dyn MediaTransport> = Arc::new(IceTransport {
            slot: Arc::clone(&self.slot),
        });
        MediaSocket::transport(transport)
    }

    /// The host socket of the preferred (signalling) address, for callers that want to know
    /// the local port; the session reads it, so it must not be read elsewhere.
    pub fn primary_socket(&self) -> Option<Arc<UdpSocket>> {
        self.primary.clone()
    }

    /// The pair in use, once selected.
    pub fn selected(&self) -> Option<IcePathInfo> {
        self.selected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True once connectivity checks have started with the peer's description.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// True after [`Self::fall_back`] (the peer does not do ICE).
    pub fn is_fixed(&self) -> bool {
        self.fixed
    }

    /// Media datagrams dropped because the media engine did not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dropped
    }

    /// New local credentials for an ICE restart (RFC 8445 §9): the next offer or answer
    /// carries them, and checks start again when the peer's new description arrives.
    pub fn restart(&mut self) {
        self.local.ufrag = random_ice_string(8);
        self.local.pwd = random_ice_string(24);
        self.remote_creds = None;
    }

    /// Gathers the candidates again (the host's addresses changed) and restarts with them:
    /// new sockets, credentials and agent; media sockets handed out before move to the new
    /// session, whose pair is selected once the peer's new description arrives
    /// ([`Self::start`]). On error the current session stays.
    pub async fn regather(&mut self, config: &IceConfig) -> Result<(), IceError> {
        let mut fresh = IceSession::gather(config).await?;
        self.slot.replace(Arc::clone(&fresh.shared));
        fresh.slot = Arc::clone(&self.slot);
        // The old session (its tasks and sockets) ends here.
        *self = fresh;
        Ok(())
    }

    /// Takes the peer's ICE description (offer or answer) and starts connectivity checks.
    /// `controlling` is true for the offerer. Returns true when this (re)started checks; the
    /// same credentials again (a re-INVITE without restart) change nothing. When the peer
    /// restarted ICE (new credentials) and we did not, our credentials change too: build the
    /// answer after this call.
    pub fn start(&mut self, remote: &MediaIce, controlling: bool) -> Result<bool, IceError> {
        let creds = (remote.ufrag.clone(), remote.pwd.clone());
        if self.remote_creds.as_ref() == Some(&creds) && !self.fixed {
            return Ok(false);
        }
        let restart = self.started;
        if restart && self.remote_creds.is_some() {
            // The peer restarted: so do we (RFC 8839 §4.4.1.1.1).
            self.local.ufrag = random_ice_string(8);
            self.local.pwd = random_ice_string(24);
        }
        let candidates: Vec<Candidate> = remote
            .candidates
            .iter()
            .filter(|c| c.component == 1 && c.is_udp() && c.ip().is_some())
            .filter_map(|c| to_rtc_candidate(c).ok())
            .collect();
        if candidates.is_empty() {
            return Err(IceError::Remote("no usable UDP candidate for RTP".into()));
        }
        self.shared
            .commands
            .send(Command::Start {
                local_ufrag: self.local.ufrag.clone(),
                local_pwd: self.local.pwd.clone(),
                remote_ufrag: creds.0.clone(),
                remote_pwd: creds.1.clone(),
                candidates,
                controlling,
                restart,
            })
            .map_err(|_| IceError::Agent("the ICE task has ended".into()))?;
        self.remote_creds = Some(creds);
        self.started = true;
        self.fixed = false;
        Ok(true)
    }

    /// The peer does no ICE: plain RTP to `remote` (its `c=`/`m=`) from the default
    /// candidate (through the TURN allocation, with a permission, when that is a relay).
    pub fn fall_back(&mut self, remote: SocketAddr) -> Result<(), IceError> {
        self.shared
            .commands
            .send(Command::Fixed { remote })
            .map_err(|_| IceError::Agent("the ICE task has ended".into()))?;
        self.fixed = true;
        self.started = false;
        self.remote_creds = None;
        Ok(())
    }

    /// The next event; `None` when the session task has ended.
    pub async fn next_event(&mut self) -> Option<IceEvent> {
        self.events.recv().await
    }
}

async fn read_socket(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    tx: mpsc::UnboundedSender<Inbound>,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                let data = buf.get(..n).unwrap_or_default().to_vec();
                if tx.send(Inbound { local, peer, data }).is_err() {
                    return;
                }
            }
            // ICMP port unreachable and the like: keep reading.
            Err(e) => {
                trace!(%local, error = %e, "ICE socket receive error");
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn read_relay(client: Arc<dyn RelayAllocation>, tx: mpsc::UnboundedSender<Inbound>) {
    let local = client.relayed_addr();
    loop {
        match client.recv_from().await {
            Ok((data, peer)) => {
                if tx.send(Inbound { local, peer, data }).is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "TURN allocation lost");
                return;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the peer's description.
    Pending,
    /// Connectivity checks with an ICE peer.
    Ice,
    /// Plain RTP to a fixed address (peer without ICE).
    Fixed,
}

struct SessionTask {
    agent: Agent,
    hosts: Vec<HostSocket>,
    relay: Option<Arc<dyn RelayAllocation>>,
    relay_only: bool,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<IceEvent>,
    selected: Arc<Mutex<Option<IcePathInfo>>>,
    default_base: SocketAddr,
    default_is_relay: bool,
    mode: Mode,
    was_connected: bool,
    last_timer: Instant,
    /// A relayed peer to bind a channel to (after selection).
    pending_bind: Option<SocketAddr>,
}

impl SessionTask {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inbound: mpsc::UnboundedReceiver<Inbound>,
    ) {
        loop {
            self.flush().await;
            self.drain_events();
            if let (Some(peer), Some(relay)) = (self.pending_bind.take(), self.relay.as_ref())
                && let Err(e) = relay.channel_bind(peer).await
            {
                debug!(%peer, error = %e, "TURN channel not bound: Send indications carry the media");
            }
            let wake = match self.agent.poll_timeout() {
                Some(t) if t <= self.last_timer => self.last_timer + TIMER_FLOOR,
                Some(t) => t,
                None => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(c) => self.on_command(c).await,
                    None => break,
                },
                received = inbound.recv() => match received {
                    Some(i) => self.on_inbound(i),
                    None => break,
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = Instant::now();
                    self.last_timer = now;
                    if let Err(e) = self.agent.handle_timeout(now) {
                        trace!(error = %e, "ICE timer");
                    }
                }
            }
        }
        let _ = self.agent.close();
    }

    async fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Start {
                local_ufrag,
                local_pwd,
                remote_ufrag,
                remote_pwd,
                candidates,
                controlling,
                restart,
            } => {
                if restart {
                    if let Err(e) = self.agent.restart(now, local_ufrag, local_pwd, true) {
                        warn!(error = %e, "ICE restart refused");
                        return;
                    }
                    self.shared.set_route(None);
                    *self.selected.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
                if let Some(relay) = &self.relay {
                    let mut ips: Vec<IpAddr> = candidates
                        .iter()
                        .map(|c| c.addr().ip())
                        .filter(|ip| ip.is_ipv4() == relay.relayed_addr().is_ipv4())
                        .collect();
                    ips.sort();
                    ips.dedup();
                    for ip in ips {
                        if let Err(e) = relay.create_permission(ip).await {
                            debug!(peer = %ip, error = %e, "TURN permission refused");
                        }
                    }
                }
                for c in candidates {
                    if let Err(e) = self.agent.add_remote_candidate(c) {
                        debug!(error = %e, "remote candidate refused");
                    }
                }
                if let Err(e) =
                    self.agent
                        .start_connectivity_checks(now, controlling, remote_ufrag, remote_pwd)
                {
                    warn!(error = %e, "ICE checks did not start");
                    let _ = self.events.send(IceEvent::Failed("agent-error".into()));
                    return;
                }
                self.mode = Mode::Ice;
            }
            Command::Fixed { remote } => {
                self.mode = Mode::Fixed;
                let route = if self.default_is_relay {
                    if let Some(relay) = &self.relay
                        && let Err(e) = relay.create_permission(remote.ip()).await
                    {
                        warn!(%remote, error = %e, "TURN permission for the peer refused");
                    }
                    Route::Relay { remote: None }
                } else {
                    let socket = self
                        .hosts
                        .iter()
                        .find(|h| h.addr == self.default_base)
                        .or_else(|| self.hosts.first())
                        .map(|h| Arc::clone(&h.socket));
                    match socket {
                        Some(socket) => Route::Direct {
                            socket,
                            remote: None,
                        },
                        None => return,
                    }
                };
                self.shared.set_route(Some(route));
            }
            Command::RelaySend { data, peer } => {
                if let Some(relay) = &self.relay
                    && let Err(e) = relay.send_to(&data, peer).await
                {
                    trace!(%peer, error = %e, "relayed send failed");
                }
            }
        }
    }

    fn on_inbound(&mut self, i: Inbound) {
        let now = Instant::now();
        let from_relay = self
            .relay
            .as_ref()
            .is_some_and(|r| r.relayed_addr() == i.local);
        if self.relay_only && !from_relay {
            // Relay-only: nothing reaches us except through the allocation.
            return;
        }
        let transport = TransportContext {
            local_addr: i.local,
            peer_addr: i.peer,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        };
        if tandem_proto::stun::is_stun(&i.data) {
            if self.mode == Mode::Fixed {
                return;
            }
            let msg = TransportMessage {
                now,
                transport,
                message: BytesMut::from(i.data.as_slice()),
            };
            if let Err(e) = self.agent.handle_read(msg) {
                trace!(peer = %i.peer, error = %e, "STUN datagram not for the agent");
            }
            return;
        }
        match self.mode {
            Mode::Ice => {
                if self.agent.is_valid_non_stun_traffic(now, transport) {
                    self.shared.push_media(i.data, i.peer);
                } else {
                    trace!(peer = %i.peer, "media from an unchecked address dropped");
                }
            }
            Mode::Fixed | Mode::Pending => self.shared.push_media(i.data, i.peer),
        }
    }

    /// Sends what the agent queued (checks, responses, consent requests).
    async fn flush(&mut self) {
        while let Some(out) = self.agent.poll_write() {
            let local = out.transport.local_addr;
            let peer = out.transport.peer_addr;
            if let Some(relay) = self.relay.as_ref().filter(|r| r.relayed_addr() == local) {
                if let Err(e) = relay.send_to(&out.message, peer).await {
                    trace!(%peer, error = %e, "relayed check not sent");
                }
                continue;
            }
            match self.hosts.iter().find(|h| h.addr == local) {
                Some(h) => {
                    if let Err(e) = h.socket.send_to(&out.message, peer).await {
                        trace!(%local, %peer, error = %e, "check not sent");
                    }
                }
                None => trace!(%local, "check from an unknown local address dropped"),
            }
        }
    }

    fn drain_events(&mut self) {
        while let Some(tagged) = self.agent.poll_event() {
            match tagged.event {
                Event::SelectedCandidatePairChange(local, remote) => {
                    self.on_selected(&local, &remote)
                }
                Event::ConnectionStateChange(state) => self.on_state(state),
                _ => {}
            }
        }
    }

    fn on_selected(&mut self, local: &Candidate, remote: &Candidate) {
        let local_type = candidate_type(local);
        let remote_type = candidate_type(remote);
        let route = if local_type == CandidateType::Relay {
            self.pending_bind = Some(remote.addr());
            Route::Relay {
                remote: Some(remote.addr()),
            }
        } else {
            let base = local.base_addr();
            match self.hosts.iter().find(|h| h.addr == base) {
                Some(h) => Route::Direct {
                    socket: Arc::clone(&h.socket),
                    remote: Some(remote.addr()),
                },
                None => {
                    warn!(%base, "selected pair on an unknown local socket");
                    return;
                }
            }
        };
        self.shared.set_route(Some(route));
        let info = IcePathInfo {
            path: IcePathKind::of(local_type, remote_type),
            local_type,
            remote_type,
            local: local.addr(),
            remote: remote.addr(),
        };
        debug!(%info, "ICE pair selected");
        self.was_connected = true;
        *self.selected.lock().unwrap_or_else(PoisonError::into_inner) = Some(info.clone());
        let _ = self.events.send(IceEvent::Selected(info));
    }

    fn on_state(&mut self, state: ConnectionState) {
        match state {
            ConnectionState::Failed => {
                let reason = if self.was_connected {
                    "consent-lost"
                } else {
                    "no-valid-pair"
                };
                self.shared.set_route(None);
                *self.selected.lock().unwrap_or_else(PoisonError::into_inner) = None;
                self.was_connected = false;
                let _ = self.events.send(IceEvent::Failed(reason.to_owned()));
            }
            ConnectionState::Disconnected => debug!("ICE consent: no answer on the selected pair"),
            other => trace!(state = %other, "ICE state"),
        }
    }
}

impl RelayAllocation for TurnClient {
    fn relayed_addr(&self) -> SocketAddr {
        TurnClient::relayed_addr(self)
    }

    fn mapped_addr(&self) -> SocketAddr {
        TurnClient::mapped_addr(self).unwrap_or_else(|| TurnClient::local_addr(self))
    }

    fn create_permission(&self, peer: IpAddr) -> RelayFuture<'_, ()> {
        Box::pin(TurnClient::create_permission(self, peer))
    }

    fn channel_bind(&self, peer: SocketAddr) -> RelayFuture<'_, ()> {
        Box::pin(async move { TurnClient::channel_bind(self, peer).await.map(|_| ()) })
    }

    fn send_to<'a>(&'a self, data: &'a [u8], peer: SocketAddr) -> RelayFuture<'a, ()> {
        Box::pin(TurnClient::send_to(self, data, peer))
    }

    fn recv_from(&self) -> RelayFuture<'_, (Vec<u8>, SocketAddr)> {
        Box::pin(async move {
            TurnClient::recv_from(self)
                .await
                .map(|(data, peer)| (data.to_vec(), peer))
        })
    }
}

/// Resolves a STUN server given as `host:port` (or `host`, port 3478; `[v6]:port`).
pub async fn resolve_stun(server: &str) -> Result<SocketAddr, IceError> {
    let server = server.trim();
    let server = server
        .strip_prefix("stun:")
        .or_else(|| server.strip_prefix("stuns:"))
        .unwrap_or(server);
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = server.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, tandem_proto::stun::DEFAULT_PORT));
    }
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (
            h,
            p.parse::<u16>()
                .map_err(|_| IceError::Remote(format!("bad STUN server port in {server:?}")))?,
        ),
        _ => (server, tandem_proto::stun::DEFAULT_PORT),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| IceError::Io(io::Error::new(e.kind(), format!("STUN server {host}: {e}"))))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| IceError::NoCandidates(format!("STUN server {host} has no address")))
}

/// The STUN server to use: the configured one, else the TURN server when it is reached over
/// UDP or TCP (a TURN server is a STUN server on the same port).
pub async fn stun_server(stun: Option<&str>, turn: Option<&TurnConfig>) -> Option<SocketAddr> {
    let target = match (stun, turn) {
        (Some(s), _) => s.to_owned(),
        (None, Some(t)) if t.uri.transport != TurnTransport::Tls => {
            if t.uri.host.contains(':') {
                format!("[{}]:{}", t.uri.host, t.uri.port)
            } else {
                format!("{}:{}", t.uri.host, t.uri.port)
            }
        }
        _ => return None,
    };
    match resolve_stun(&target).await {
        Ok(a) => Some(a),
        Err(e) => {
            warn!(server = %target, error = %e, "STUN server not resolved");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_config() -> IceConfig {
        IceConfig::default().with_preferred_ip(IpAddr::from([127, 0, 0, 1]))
    }

    async fn selected(s: &mut IceSession) -> IcePathInfo {
        match tokio::time::timeout(Duration::from_secs(15), s.next_event()).await {
            Ok(Some(IceEvent::Selected(info))) => info,
            Ok(Some(other)) => panic!("unexpected ICE event {other:?}"),
            Ok(None) => panic!("ICE task ended"),
            Err(_) => panic!("no pair selected within 15 s"),
        }
    }

    async fn recv(socket: &MediaSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 256];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("media within 5 s")
            .unwrap();
        (buf[..n].to_vec(), from)
    }

    /// Sends until one datagram gets through (the selected pair may settle on each side at
    /// slightly different times).
    async fn exchange(from: &MediaSocket, to: &MediaSocket, payload: &[u8]) -> SocketAddr {
        for _ in 0..50 {
            from.send_to(payload, "192.0.2.1:9".parse().unwrap())
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            if let Ok(Ok((n, src))) =
                tokio::time::timeout(Duration::from_millis(100), to.recv_from(&mut buf)).await
            {
                assert_eq!(&buf[..n], payload);
                return src;
            }
        }
        panic!("no media got through");
    }

    async fn connected_pair(
        ca: &IceConfig,
        cb: &IceConfig,
    ) -> (IceSession, IceSession, IcePathInfo, IcePathInfo) {
        let mut a = IceSession::gather(ca).await.unwrap();
        let mut b = IceSession::gather(cb).await.unwrap();
        let offer = a.local_ice().clone();
        assert!(b.start(&offer, false).unwrap());
        let answer = b.local_ice().clone();
        assert!(a.start(&answer, true).unwrap());
        let pa = selected(&mut a).await;
        let pb = selected(&mut b).await;
        (a, b, pa, pb)
    }

    #[tokio::test]
    async fn two_agents_connect_over_loopback_and_carry_media() {
        let (a, b, pa, pb) = connected_pair(&loopback_config(), &loopback_config()).await;
        assert_eq!(pa.path, IcePathKind::Direct);
        assert_eq!(pa.local_type, CandidateType::Host);
        assert_eq!(pb.local_type, CandidateType::Host);
        assert_eq!(pa.remote, pb.local, "{pa} / {pb}");
        assert!(
            a.local_ice()
                .candidates
                .iter()
                .all(|c| c.typ == CandidateType::Host)
        );
        assert_eq!(a.default_addr().ip(), IpAddr::from([127, 0, 0, 1]));

        let (sa, sb) = (a.socket(), b.socket());
        // RTP-looking datagrams (first byte 0x80) go both ways; the engine's address is ignored.
        let src = exchange(&sa, &sb, &[0x80, 0, 0, 1]).await;
        assert_eq!(src, pa.local);
        exchange(&sb, &sa, &[0x80, 0, 0, 2]).await;
        // Media from an address no check validated is dropped (RFC 8445 §11).
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for _ in 0..5 {
            stranger.send_to(&[0x80, 0, 9, 9], pa.local).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = sa.try_recv_from(&mut buf) {
            assert_ne!(from, stranger.local_addr().unwrap(), "{:?}", &buf[..n]);
        }
        // STUN never reaches the media socket: consent checks keep flowing underneath.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let mut buf = [0u8; 64];
        while let Ok((n, _)) = sa.try_recv_from(&mut buf) {
            assert!(!tandem_proto::stun::is_stun(&buf[..n]));
        }
        assert!(a.selected().is_some());
    }

    #[tokio::test]
    async fn a_peer_without_ice_gets_plain_rtp_from_the_default_candidate() {
        let mut a = IceSession::gather(&loopback_config()).await.unwrap();
        let plain = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.local_addr().unwrap();
        a.fall_back(plain_addr).unwrap();
        assert!(a.is_fixed());
        let sa = a.socket();
        // The media engine's address is honoured in fixed mode.
        let mut got = None;
        for _ in 0..50 {
            sa.send_to(b"\x80rtp", plain_addr).await.unwrap();
            let mut buf = [0u8; 64];
            if let Ok(Ok((n, src))) =
                tokio::time::timeout(Duration::from_millis(50), plain.recv_from(&mut buf)).await
            {
                got = Some((buf[..n].to_vec(), src));
                break;
            }
        }
        let (data, src) = got.expect("plain RTP out of the ICE socket");
        assert_eq!(data, b"\x80rtp");
        assert_eq!(src, a.default_addr());
        plain.send_to(b"\x80back", a.default_addr()).await.unwrap();
        let (data, from) = recv(&sa).await;
        assert_eq!(data, b"\x80back");
        assert_eq!(from, plain_addr);
    }

    #[tokio::test]
    async fn an_ice_restart_selects_a_pair_again() {
        let (mut a, mut b, _, _) = connected_pair(&loopback_config(), &loopback_config()).await;
        let old = a.local_ice().ufrag.clone();
        a.restart();
        assert_ne!(a.local_ice().ufrag, old);
        let offer = a.local_ice().clone();
        let b_old = b.local_ice().ufrag.clone();
        assert!(b.start(&offer, false).unwrap(), "new credentials restart");
        assert_ne!(b.local_ice().ufrag, b_old, "the answerer restarts too");
        let answer = b.local_ice().clone();
        assert!(a.start(&answer, true).unwrap());
        assert!(
            !a.start(&answer, true).unwrap(),
            "same credentials: no restart"
        );
        let pa = selected(&mut a).await;
        selected(&mut b).await;
        assert_eq!(pa.path, IcePathKind::Direct);
        exchange(&a.socket(), &b.socket(), &[0x80, 9]).await;
    }

    #[tokio::test]
    async fn gathering_again_moves_the_media_socket_to_the_new_session() {
        let config = loopback_config();
        let (mut a, mut b, first, _) = connected_pair(&config, &config).await;
        let sa = a.socket();
        let old_default = a.default_addr();
        a.regather(&config).await.unwrap();
        assert_ne!(a.default_addr(), old_default, "new sockets");
        assert!(!a.is_started());
        let offer = a.local_ice().clone();
        assert!(b.start(&offer, false).unwrap());
        let answer = b.local_ice().clone();
        assert!(a.start(&answer, true).unwrap());
        let pa = selected(&mut a).await;
        assert_ne!(pa.local, first.local);
        // Selection may be reported more than once on the controlled side; any Selected will do.
        selected(&mut b).await;
        // The socket handed out before the new gathering follows the new session.
        let src = exchange(&sa, &b.socket(), &[0x80, 7]).await;
        assert_eq!(src, pa.local);
        exchange(&b.socket(), &sa, &[0x80, 8]).await;
    }

    #[tokio::test]
    async fn consent_loss_fails_the_path() {
        let quick = loopback_config().with_consent(
            Duration::from_millis(200),
            Duration::from_millis(600),
            Duration::from_millis(600),
        );
        let (mut a, b, _, _) = connected_pair(&quick, &quick).await;
        drop(b);
        let failed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match a.next_event().await {
                    Some(IceEvent::Failed(reason)) => return reason,
                    Some(_) => continue,
                    None => panic!("task ended"),
                }
            }
        })
        .await
        .expect("consent lost within 10 s");
        assert_eq!(failed, "consent-lost");
        assert!(a.selected().is_none());
    }

    #[tokio::test]
    async fn unusable_remote_descriptions_are_refused() {
        let mut a = IceSession::gather(&loopback_config()).await.unwrap();
        let mut remote = MediaIce::new("abcd", "asd88fgpdd777uzjYhagZg");
        assert!(matches!(a.start(&remote, true), Err(IceError::Remote(_))));
        remote
            .candidates
            .push(IceCandidate::parse("1 1 TCP 1 127.0.0.1 9 typ host tcptype active").unwrap());
        remote
            .candidates
            .push(IceCandidate::parse("1 1 UDP 1 x.local 9 typ host").unwrap());
        assert!(matches!(a.start(&remote, true), Err(IceError::Remote(_))));
        assert!(!a.is_started());
    }

    #[test]
    fn path_kinds_and_policy_names() {
        use CandidateType::*;
        assert_eq!(IcePathKind::of(Host, Host), IcePathKind::Direct);
        assert_eq!(IcePathKind::of(Host, Prflx), IcePathKind::Reflexive);
        assert_eq!(IcePathKind::of(Srflx, Host), IcePathKind::Reflexive);
        assert_eq!(IcePathKind::of(Srflx, Relay), IcePathKind::Relay);
        assert_eq!("relay".parse::<IcePolicy>().unwrap(), IcePolicy::Relay);
        assert_eq!("ALL".parse::<IcePolicy>().unwrap(), IcePolicy::All);
        assert!("some".parse::<IcePolicy>().is_err());
        let info = IcePathInfo {
            path: IcePathKind::Reflexive,
            local_type: Srflx,
            remote_type: Host,
            local: "203.0.113.5:4000".parse().unwrap(),
            remote: "[2001:db8::1]:5000".parse().unwrap(),
        };
        assert_eq!(
            info.to_string(),
            "path=reflexive local_type=srflx remote_type=host local=203.0.113.5:4000 remote=[2001:db8::1]:5000"
        );
    }

    #[test]
    fn host_addresses_put_the_signalling_address_first() {
        let ips = host_addresses(Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(ips.first(), Some(&IpAddr::from([127, 0, 0, 1])));
        assert_eq!(ips.iter().filter(|ip| ip.is_loopback()).count(), 1);
        assert!(!host_addresses(None).is_empty());
        let s = random_ice_string(24);
        assert!(tandem_proto::sdp::ice::validate_pwd(&s).is_ok());
    }
}
