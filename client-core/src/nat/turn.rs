//! TURN client (RFC 8656) over UDP, TCP and TLS: allocation, refresh, permissions, channels.
//!
//! Two layers:
//! - [`TurnSession`]: the sans-IO state machine. It produces the bytes to send to the server
//!   ([`TurnSession::poll_transmit`]), consumes what the server sends
//!   ([`TurnSession::handle_input`], one datagram or one framed stream message), keeps its own
//!   timers ([`TurnSession::poll_timeout`] / [`TurnSession::handle_timeout`]: UDP
//!   retransmissions, allocation refresh at 3/4 of the lifetime, permissions every 240 s,
//!   channels every 480 s) and answers 401/438 challenges with the long-term credentials.
//! - [`TurnClient`]: the async client. It either owns its transport ([`TurnClient::allocate`]:
//!   a UDP socket, a TCP connection or a TLS connection) and reads it in a task, or runs on a
//!   UDP socket the caller reads ([`TurnClient::with_socket`], then [`TurnClient::start`]), for
//!   an ICE agent that demultiplexes STUN, TURN and media on one socket: it feeds every datagram
//!   from the TURN server to [`TurnClient::handle_incoming`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tandem_proto::stun::channel::{Frame, valid_channel};
use tandem_proto::stun::credentials::ChallengeOutcome;
use tandem_proto::stun::{
    Attribute, ChannelData, Class, DEFAULT_PORT, DEFAULT_TLS_PORT, Integrity, LongTermClient,
    Message, Method, StreamFramer, TRANSPORT_UDP, TransactionId, is_channel_data, is_stun,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::stun::{DEFAULT_RTO, MAX_SENDS, transaction_timeout};
use super::{NatError, clone_error};

/// How long before expiry a permission is refreshed: permissions last 300 s (RFC 8656 §9).
pub const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// How often a channel binding is refreshed: bindings last 600 s (RFC 8656 §12).
pub const CHANNEL_REFRESH: Duration = Duration::from_secs(480);
/// The first channel number this client binds.
const FIRST_CHANNEL: u16 = 0x4000;
/// The last channel number this client binds (RFC 8656 §12).
const LAST_CHANNEL: u16 = 0x4FFF;
/// How many times one request may be re-signed after 401/438 before giving up.
const MAX_AUTH_RETRIES: u8 = 3;
/// The IPv6 value of ADDITIONAL-/REQUESTED-ADDRESS-FAMILY.
const FAMILY_V6: u8 = 0x02;

/// How the client reaches the TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    /// UDP (`turn:host` or `?transport=udp`).
    Udp,
    /// TCP (`turn:host?transport=tcp`).
    Tcp,
    /// TLS over TCP (`turns:host`).
    Tls,
}

impl TurnTransport {
    /// True for the stream transports (no retransmissions, padded ChannelData).
    pub fn is_reliable(self) -> bool {
        !matches!(self, TurnTransport::Udp)
    }
}

/// A `turn:`/`turns:` URI (RFC 7065): `turn:host[:port][?transport=udp|tcp]`, `turns:host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TurnUri {
    /// The transport to the server.
    pub transport: TurnTransport,
    /// The host (name or IP literal, without brackets).
    pub host: String,
    /// The port (3478 for turn:, 5349 for turns: when absent).
    pub port: u16,
}

impl TurnUri {
    /// Parses a `turn:`/`turns:` URI.
    pub fn parse(uri: &str) -> Result<TurnUri, NatError> {
        let bad = |reason| NatError::BadUri {
            uri: uri.to_owned(),
            reason,
        };
        let s = uri.trim();
        let (secure, rest) = if let Some(r) = strip_prefix_ci(s, "turns:") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(s, "turn:") {
            (false, r)
        } else {
            return Err(bad("scheme must be turn: or turns:"));
        };
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (hostport, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let mut transport = if secure {
            TurnTransport::Tls
        } else {
            TurnTransport::Udp
        };
        if let Some(q) = query {
            for param in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = param
                    .split_once('=')
                    .ok_or(bad("query parameter without '='"))?;
                if !k.eq_ignore_ascii_case("transport") {
                    return Err(bad("unknown query parameter (only transport= is defined)"));
                }
                transport = match (secure, v.to_ascii_lowercase().as_str()) {
                    (false, "udp") => TurnTransport::Udp,
                    (false, "tcp") => TurnTransport::Tcp,
                    (true, "tcp") => TurnTransport::Tls,
                    (true, "udp") => return Err(bad("turns: over UDP (DTLS) is not supported")),
                    _ => return Err(bad("transport must be udp or tcp")),
                };
            }
        }
        let default_port = if secure {
            DEFAULT_TLS_PORT
        } else {
            DEFAULT_PORT
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or(bad("unterminated IPv6 literal"))?;
            if h.parse::<Ipv6Addr>().is_err() {
                return Err(bad("invalid IPv6 literal"));
            }
            let port = match after {
                "" => default_port,
                p => parse_port(p.strip_prefix(':').ok_or(bad("junk after IPv6 literal"))?)
                    .ok_or(bad("invalid port"))?,
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), parse_port(p).ok_or(bad("invalid port"))?),
                None => (hostport.to_owned(), default_port),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':');
        if !host_ok {
            return Err(bad("invalid host"));
        }
        Ok(TurnUri {
            transport,
            host,
            port,
        })
    }

    /// True for `turns:`.
    pub fn is_secure(&self) -> bool {
        self.transport == TurnTransport::Tls
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|&n| n != 0)
}

impl FromStr for TurnUri {
    type Err = NatError;

    fn from_str(s: &str) -> Result<TurnUri, NatError> {
        TurnUri::parse(s)
    }
}

impl fmt::Display for TurnUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.is_secure() { "turns" } else { "turn" };
        if self.host.contains(':') {
            write!(f, "{scheme}:[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{scheme}:{}:{}", self.host, self.port)?;
        }
        if self.transport == TurnTransport::Tcp {
            f.write_str("?transport=tcp")?;
        }
        Ok(())
    }
}

/// A TURN server and the long-term credentials to use with it.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// Where the server is and how to reach it.
    pub uri: TurnUri,
    /// The long-term credential username.
    pub username: String,
    /// The long-term credential password.
    pub password: String,
}

impl TurnConfig {
    /// A configuration from a URI string and credentials.
    pub fn new(
        uri: &str,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<TurnConfig, NatError> {
        Ok(TurnConfig {
            uri: TurnUri::parse(uri)?,
            username: username.into(),
            password: password.into(),
        })
    }
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("uri", &self.uri)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Which relayed address families to ask for (RFC 8656 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayFamily {
    /// An IPv4 relayed address (no family attribute: the server's default).
    #[default]
    V4,
    /// An IPv6 relayed address (REQUESTED-ADDRESS-FAMILY IPv6).
    V6,
    /// Both (ADDITIONAL-ADDRESS-FAMILY IPv6); the server may grant only IPv4.
    Dual,
}

/// Options of an allocation.
#[derive(Debug, Clone)]
pub struct TurnOptions {
    /// The relayed address families.
    pub family: RelayFamily,
    /// The lifetime to ask for (the server's default when `None`).
    pub lifetime: Option<Duration>,
    /// How long [`TurnClient::allocate`] may take (connecting, TLS, challenge, allocation), and
    /// the bound on [`TurnClient::close`].
    pub timeout: Duration,
    /// Initial retransmission timeout of requests over UDP.
    pub rto: Duration,
    /// Local address to bind the UDP socket / TCP connection to (default: the unspecified
    /// address of the server's family, port 0).
    pub local: Option<SocketAddr>,
    /// TLS client configuration for `turns:` (default: the system's roots).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SOFTWARE attribute value sent in requests (none when `None`).
    pub software: Option<String>,
}

impl Default for TurnOptions {
    fn default() -> TurnOptions {
        TurnOptions {
            family: RelayFamily::V4,
            lifetime: None,
            timeout: Duration::from_secs(10),
            rto: DEFAULT_RTO,
            local: None,
            tls: None,
            software: Some(format!("Tandem/{}", env!("CARGO_PKG_VERSION"))),
        }
    }
}

/// Something the session reports to its driver.
#[derive(Debug)]
#[non_exhaustive]
pub enum TurnEvent {
    /// The allocation succeeded.
    Allocated {
        /// The relayed transport addresses (one per granted family).
        relayed: Vec<SocketAddr>,
        /// Our server-reflexive address as the server saw it (XOR-MAPPED-ADDRESS).
        mapped: Option<SocketAddr>,
        /// The granted lifetime.
        lifetime: Duration,
    },
    /// The allocation failed (`WrongPassword` when the credentials were refused).
    AllocationFailed(NatError),
    /// A Refresh extended the allocation.
    Refreshed {
        /// The new lifetime.
        lifetime: Duration,
    },
    /// A permission towards this peer IP is installed (or was refreshed).
    PermissionCreated(IpAddr),
    /// A CreatePermission failed.
    PermissionFailed {
        /// The peer IP.
        ip: IpAddr,
        /// Why.
        error: NatError,
    },
    /// A channel is bound to this peer (or was refreshed).
    ChannelBound {
        /// The peer transport address.
        peer: SocketAddr,
        /// The channel number.
        channel: u16,
    },
    /// A ChannelBind failed.
    ChannelBindFailed {
        /// The peer transport address.
        peer: SocketAddr,
        /// Why.
        error: NatError,
    },
    /// The allocation was lost (refresh refused or timed out, connection closed).
    Lost(NatError),
    /// The allocation was released (Refresh with lifetime 0 answered, or given up on).
    Closed,
}

/// The state of a [`TurnSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Created, Allocate not sent yet.
    Idle,
    /// Allocate in progress.
    Allocating,
    /// Allocated: data can flow.
    Allocated,
    /// Refresh(0) sent.
    Closing,
    /// Released, failed or lost: nothing more happens.
    Closed,
}

/// What [`TurnSession::handle_input`] made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Application data from a peer (Data indication or ChannelData).
    Data {
        /// The peer's transport address.
        peer: SocketAddr,
        /// The payload.
        data: Bytes,
    },
    /// A TURN/STUN message for this session, consumed (look at the events).
    Consumed,
    /// Dropped: malformed, unknown channel, no permission, bad integrity, unmatched response.
    Dropped,
}

#[derive(Debug, Clone)]
enum ReqKind {
    Allocate,
    Refresh { lifetime: u32 },
    Permission(Vec<IpAddr>),
    ChannelBind { peer: SocketAddr, channel: u16 },
}

impl ReqKind {
    fn name(&self) -> &'static str {
        match self {
            ReqKind::Allocate => "Allocate",
            ReqKind::Refresh { .. } => "Refresh",
            ReqKind::Permission(_) => "CreatePermission",
            ReqKind::ChannelBind { .. } => "ChannelBind",
        }
    }
}

#[derive(Debug)]
struct Pending {
    kind: ReqKind,
    bytes: Vec<u8>,
    sends: u32,
    next_send: Instant,
    deadline: Instant,
    auth_tries: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PermState {
    Pending,
    Installed,
}

#[derive(Debug, Clone, Copy)]
struct Perm {
    state: PermState,
    refresh_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Chan {
    number: u16,
    bound: bool,
    refresh_at: Instant,
}

/// The sans-IO TURN client state machine for one allocation on one server.
#[derive(Debug)]
pub struct TurnSession {
    server: SocketAddr,
    reliable: bool,
    username: String,
    creds: LongTermClient,
    family: RelayFamily,
    requested_lifetime: Option<u32>,
    rto: Duration,
    software: Option<String>,
    state: SessionState,
    relayed: Vec<SocketAddr>,
    mapped: Option<SocketAddr>,
    lifetime: Duration,
    refresh_at: Option<Instant>,
    refresh_pending: bool,
    perms: HashMap<IpAddr, Perm>,
    channels: HashMap<SocketAddr, Chan>,
    channel_peers: HashMap<u16, SocketAddr>,
    next_channel: u16,
    pending: HashMap<TransactionId, Pending>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<TurnEvent>,
    dropped: u64,
}

impl TurnSession {
    /// A session with `server` over `transport`, with these credentials and options (only
    /// `family`, `lifetime`, `rto` and `software` of the options matter here).
    pub fn new(
        server: SocketAddr,
        transport: TurnTransport,
        username: &str,
        password: &str,
        options: &TurnOptions,
    ) -> TurnSession {
        TurnSession {
            server,
            reliable: transport.is_reliable(),
            username: username.to_owned(),
            creds: LongTermClient::new(username, password),
            family: options.family,
            requested_lifetime: options
                .lifetime
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            rto: options.rto.max(Duration::from_millis(1)),
            software: options.software.clone(),
            state: SessionState::Idle,
            relayed: Vec::new(),
            mapped: None,
            lifetime: Duration::ZERO,
            refresh_at: None,
            refresh_pending: false,
            perms: HashMap::new(),
            channels: HashMap::new(),
            channel_peers: HashMap::new(),
            next_channel: FIRST_CHANNEL,
            pending: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dropped: 0,
        }
    }

    /// The server's transport address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The relayed transport addresses (empty until allocated).
    pub fn relayed_addrs(&self) -> &[SocketAddr] {
        &self.relayed
    }

    /// Our address as the server saw it (known once allocated).
    pub fn mapped_addr(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The granted allocation lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// True when a permission towards `ip` is installed.
    pub fn has_permission(&self, ip: IpAddr) -> bool {
        self.perms
            .get(&canonical_ip(ip))
            .is_some_and(|p| p.state == PermState::Installed)
    }

    /// The channel bound to `peer`, once the server confirmed it.
    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.channels
            .get(&canonical(peer))
            .filter(|c| c.bound)
            .map(|c| c.number)
    }

    /// Messages dropped so far (malformed, no permission, unknown channel, bad integrity).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sends the Allocate request (unsigned first; the 401 challenge brings realm and nonce).
    pub fn allocate(&mut self, now: Instant) {
        if self.state != SessionState::Idle {
            return;
        }
        self.state = SessionState::Allocating;
        self.start(ReqKind::Allocate, 0, now);
    }

    /// Installs (or refreshes) a permission for `ip`; [`TurnEvent::PermissionCreated`] follows.
    pub fn create_permission(&mut self, ip: IpAddr, now: Instant) -> Result<(), NatError> {
        let ip = canonical_ip(ip);
        self.check_peer_family(ip)?;
        let state = self
            .perms
            .get(&ip)
            .map(|p| p.state)
            .unwrap_or(PermState::Pending);
        self.perms.insert(
            ip,
            Perm {
                state,
                refresh_at: now + PERMISSION_REFRESH,
            },
        );
        self.start(ReqKind::Permission(vec![ip]), 0, now);
        Ok(())
    }

    /// Binds a channel to `peer` (this also installs the permission for its IP); returns the
    /// channel number, [`TurnEvent::ChannelBound`] follows. Binding an already bound peer
    /// refreshes the binding.
    pub fn channel_bind(&mut self, peer: SocketAddr, now: Instant) -> Result<u16, NatError> {
        let peer = canonical(peer);
        self.check_peer_family(peer.ip())?;
        let number = match self.channels.get(&peer) {
            Some(c) => c.number,
            None => {
                let n = self
                    .free_channel()
                    .ok_or(NatError::Invalid("no free channel number"))?;
                self.channels.insert(
                    peer,
                    Chan {
                        number: n,
                        bound: false,
                        refresh_at: now + CHANNEL_REFRESH,
                    },
                );
                self.channel_peers.insert(n, peer);
                n
            }
        };
        self.perms.entry(peer.ip()).or_insert(Perm {
            state: PermState::Pending,
            refresh_at: now + PERMISSION_REFRESH,
        });
        self.start(
            ReqKind::ChannelBind {
                peer,
                channel: number,
            },
            0,
            now,
        );
        Ok(number)
    }

    /// Encodes `data` for `peer` into `out` (cleared first): ChannelData when a channel is
    /// bound, else a Send indication. When no permission for the peer's IP exists yet, one is
    /// requested (the first packets may be dropped by the server until it is installed).
    pub fn send_to(
        &mut self,
        data: &[u8],
        peer: SocketAddr,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), NatError> {
        if self.state != SessionState::Allocated {
            return Err(NatError::Closed(format!(
                "cannot send: allocation is {:?}",
                self.state
            )));
        }
        let peer = canonical(peer);
        out.clear();
        if let Some(c) = self.channels.get(&peer).filter(|c| c.bound) {
            ChannelData::encode_into(c.number, data, self.reliable, out);
            return Ok(());
        }
        if !self.perms.contains_key(&peer.ip()) {
            self.create_permission(peer.ip(), now)?;
        }
        let msg = Message::new(Class::Indication, Method::SEND, TransactionId::random())
            .with(Attribute::XorPeerAddress(peer))
            .with(Attribute::Data(Bytes::copy_from_slice(data)));
        *out = msg.encode(Integrity::None, false);
        Ok(())
    }

    /// Refreshes the allocation now (it is also done automatically at 3/4 of the lifetime);
    /// [`TurnEvent::Refreshed`] follows.
    pub fn refresh(&mut self, now: Instant) -> Result<(), NatError> {
        if self.state != SessionState::Allocated {
            return Err(NatError::Closed(format!(
                "cannot refresh: allocation is {:?}",
                self.state
            )));
        }
        if !self.refresh_pending {
            self.refresh_pending = true;
            let lifetime = self
                .requested_lifetime
                .unwrap_or_else(|| u32::try_from(self.lifetime.as_secs()).unwrap_or(u32::MAX));
            self.start(ReqKind::Refresh { lifetime }, 0, now);
        }
        Ok(())
    }

    /// Releases the allocation (Refresh with lifetime 0); [`TurnEvent::Closed`] follows.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            SessionState::Allocated => {
                self.state = SessionState::Closing;
                self.pending.clear();
                self.start(ReqKind::Refresh { lifetime: 0 }, 0, now);
            }
            SessionState::Idle | SessionState::Allocating => {
                self.pending.clear();
                self.finish_closed();
            }
            SessionState::Closing | SessionState::Closed => {}
        }
    }

    /// The connection to the server is gone (stream transports): the allocation is lost.
    pub fn transport_closed(&mut self, reason: &str) {
        if self.state == SessionState::Closed {
            return;
        }
        let err = NatError::Closed(format!("connection to {} closed: {reason}", self.server));
        self.fail(err);
    }

    /// The next message to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |i: Instant| t = Some(t.map_or(i, |x| x.min(i)));
        for p in self.pending.values() {
            consider(p.deadline);
            if !self.reliable && p.sends < MAX_SENDS {
                consider(p.next_send);
            }
        }
        if self.state == SessionState::Allocated {
            if let (Some(r), false) = (self.refresh_at, self.refresh_pending) {
                consider(r);
            }
            for p in self.perms.values() {
                consider(p.refresh_at);
            }
            for c in self.channels.values() {
                consider(c.refresh_at);
            }
        }
        t
    }

    /// Runs retransmissions, request timeouts and refreshes due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Retransmissions and timeouts.
        let mut expired = Vec::new();
        for (id, p) in self.pending.iter_mut() {
            if now >= p.deadline {
                expired.push(*id);
                continue;
            }
            if !self.reliable && p.sends < MAX_SENDS && now >= p.next_send {
                self.transmits.push_back(p.bytes.clone());
                p.next_send = now + self.rto * 2u32.saturating_pow(p.sends);
                p.sends += 1;
            }
        }
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                let err = NatError::Timeout {
                    server: self.server,
                    after: self.request_timeout(),
                };
                self.request_failed(p.kind, err, now);
            }
        }
        if self.state != SessionState::Allocated {
            return;
        }
        // Allocation refresh.
        if let (Some(r), false) = (self.refresh_at, self.refresh_pending)
            && now >= r
        {
            let _ = self.refresh(now);
        }
        // Permissions (one CreatePermission for all due ones; channel-bound IPs are refreshed
        // by their ChannelBind too, but refreshing them here as well is harmless).
        let due: Vec<IpAddr> = self
            .perms
            .iter()
            .filter(|(_, p)| now >= p.refresh_at)
            .map(|(ip, _)| *ip)
            .collect();
        if !due.is_empty() {
            for ip in &due {
                if let Some(p) = self.perms.get_mut(ip) {
                    p.refresh_at = now + PERMISSION_REFRESH;
                }
            }
            self.start(ReqKind::Permission(due), 0, now);
        }
        let due: Vec<(SocketAddr, u16)> = self
            .channels
            .iter()
            .filter(|(_, c)| now >= c.refresh_at)
            .map(|(p, c)| (*p, c.number))
            .collect();
        for (peer, channel) in due {
            if let Some(c) = self.channels.get_mut(&peer) {
                c.refresh_at = now + CHANNEL_REFRESH;
            }
            self.start(ReqKind::ChannelBind { peer, channel }, 0, now);
        }
    }

    /// Consumes one datagram (UDP) or one framed message (TCP/TLS) from the server.
    pub fn handle_input(&mut self, buf: &[u8], now: Instant) -> Input {
        if is_channel_data(buf) {
            let Ok(cd) = ChannelData::decode(buf) else {
                self.dropped += 1;
                return Input::Dropped;
            };
            let peer = self.channel_peers.get(&cd.channel).copied();
            match peer.filter(|p| self.channels.get(p).is_some_and(|c| c.bound)) {
                Some(peer) => Input::Data {
                    peer,
                    data: Bytes::copy_from_slice(cd.data),
                },
                None => {
                    self.dropped += 1;
                    Input::Dropped
                }
            }
        } else if is_stun(buf) {
            match Message::decode(buf) {
                Ok(msg) => self.handle_message(msg, now),
                Err(_) => {
                    self.dropped += 1;
                    Input::Dropped
                }
            }
        } else {
            self.dropped += 1;
            Input::Dropped
        }
    }

    fn handle_message(&mut self, msg: Message, now: Instant) -> Input {
        match msg.class {
            Class::Indication if msg.method == Method::DATA => {
                let peer = msg.peer_addresses().first().copied().map(canonical);
                match (peer, msg.data()) {
                    (Some(peer), Some(data)) if self.perms.contains_key(&peer.ip()) => {
                        Input::Data {
                            peer,
                            data: data.clone(),
                        }
                    }
                    _ => {
                        self.dropped += 1;
                        Input::Dropped
                    }
                }
            }
            Class::Success | Class::Error => self.handle_response(msg, now),
            _ => {
                self.dropped += 1;
                Input::Dropped
            }
        }
    }

    fn handle_response(&mut self, msg: Message, now: Instant) -> Input {
        let Some(pending) = self.pending.remove(&msg.transaction_id) else {
            // A late answer to a retransmitted request, or not ours.
            self.dropped += 1;
            return Input::Dropped;
        };
        if msg.class == Class::Success {
            if !self.creds.verify(&msg) {
                // Forged or corrupted: keep waiting for the real answer.
                self.dropped += 1;
                self.pending.insert(msg.transaction_id, pending);
                return Input::Dropped;
            }
            self.request_succeeded(pending.kind, &msg, now);
            return Input::Consumed;
        }
        match self.creds.on_error(&msg) {
            ChallengeOutcome::Retry if pending.auth_tries < MAX_AUTH_RETRIES => {
                self.start(pending.kind, pending.auth_tries + 1, now);
            }
            ChallengeOutcome::Retry => {
                // Challenged again and again (438 after 438): the server's nonces expire
                // faster than we can use them.
                let (code, reason) = msg.error_code().unwrap_or((438, "Stale Nonce"));
                let err = NatError::ServerError {
                    server: self.server,
                    request: pending.kind.name(),
                    code,
                    reason: format!("{reason} (after {MAX_AUTH_RETRIES} retries)"),
                };
                self.request_failed(pending.kind, err, now);
            }
            ChallengeOutcome::Rejected => {
                let err = NatError::WrongPassword {
                    server: self.server,
                    username: self.username.clone(),
                };
                self.request_failed(pending.kind, err, now);
            }
            ChallengeOutcome::NotAChallenge => {
                let (code, reason) = msg.error_code().unwrap_or((500, "no ERROR-CODE"));
                let err = NatError::ServerError {
                    server: self.server,
                    request: pending.kind.name(),
                    code,
                    reason: reason.to_owned(),
                };
                self.request_failed(pending.kind, err, now);
            }
        }
        Input::Consumed
    }

    fn request_succeeded(&mut self, kind: ReqKind, msg: &Message, now: Instant) {
        match kind {
            ReqKind::Allocate => {
                let relayed: Vec<SocketAddr> = msg
                    .attributes
                    .iter()
                    .filter_map(|a| match a {
                        Attribute::XorRelayedAddress(s) => Some(canonical(*s)),
                        _ => None,
                    })
                    .collect();
                if relayed.is_empty() {
                    self.fail_allocation(NatError::MissingAttribute {
                        server: self.server,
                        attribute: "XOR-RELAYED-ADDRESS",
                    });
                    return;
                }
                let secs = msg.lifetime().unwrap_or(600);
                self.lifetime = Duration::from_secs(u64::from(secs));
                self.refresh_at = Some(now + self.lifetime * 3 / 4);
                self.relayed = relayed.clone();
                self.mapped = msg.mapped_address();
                self.state = SessionState::Allocated;
                self.events.push_back(TurnEvent::Allocated {
                    relayed,
                    mapped: self.mapped,
                    lifetime: self.lifetime,
                });
            }
            ReqKind::Refresh { lifetime: 0 } => self.finish_closed(),
            ReqKind::Refresh { .. } => {
                self.refresh_pending = false;
                let secs = msg.lifetime().unwrap_or(600);
                if secs == 0 {
                    self.finish_closed();
                    return;
                }
                self.lifetime = Duration::from_secs(u64::from(secs));
                self.refresh_at = Some(now + self.lifetime * 3 / 4);
                self.events.push_back(TurnEvent::Refreshed {
                    lifetime: self.lifetime,
                });
            }
            ReqKind::Permission(ips) => {
                for ip in ips {
                    if let Some(p) = self.perms.get_mut(&ip) {
                        p.state = PermState::Installed;
                        self.events.push_back(TurnEvent::PermissionCreated(ip));
                    }
                }
            }
            ReqKind::ChannelBind { peer, channel } => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    c.bound = true;
                }
                if let Some(p) = self.perms.get_mut(&peer.ip()) {
                    p.state = PermState::Installed;
                }
                self.events
                    .push_back(TurnEvent::ChannelBound { peer, channel });
            }
        }
    }

    fn request_failed(&mut self, kind: ReqKind, error: NatError, now: Instant) {
        let _ = now;
        match kind {
            ReqKind::Allocate => self.fail_allocation(error),
            ReqKind::Refresh { lifetime: 0 } => self.finish_closed(),
            ReqKind::Refresh { .. } => {
                self.refresh_pending = false;
                self.fail(error);
            }
            ReqKind::Permission(ips) => {
                for ip in ips {
                    if self.perms.remove(&ip).is_some() {
                        self.events.push_back(TurnEvent::PermissionFailed {
                            ip,
                            error: clone_error(&error),
                        });
                    }
                }
            }
            ReqKind::ChannelBind { peer, channel } => {
                if self.channels.remove(&peer).is_some() {
                    self.channel_peers.remove(&channel);
                }
                self.events
                    .push_back(TurnEvent::ChannelBindFailed { peer, error });
            }
        }
    }

    fn fail_allocation(&mut self, error: NatError) {
        self.state = SessionState::Closed;
        self.pending.clear();
        self.events.push_back(TurnEvent::AllocationFailed(error));
    }

    fn fail(&mut self, error: NatError) {
        match self.state {
            SessionState::Allocating | SessionState::Idle => self.fail_allocation(error),
            SessionState::Closing => self.finish_closed(),
            SessionState::Allocated => {
                self.state = SessionState::Closed;
                self.pending.clear();
                self.events.push_back(TurnEvent::Lost(error));
            }
            SessionState::Closed => {}
        }
    }

    fn finish_closed(&mut self) {
        if self.state != SessionState::Closed {
            self.state = SessionState::Closed;
            self.pending.clear();
            self.events.push_back(TurnEvent::Closed);
        }
    }

    fn request_timeout(&self) -> Duration {
        if self.reliable {
            // RFC 8489 §6.2.2: 39.5 s over TCP.
            transaction_timeout(DEFAULT_RTO)
        } else {
            transaction_timeout(self.rto)
        }
    }

    /// Builds, signs and queues a request (a fresh transaction id every time).
    fn start(&mut self, kind: ReqKind, auth_tries: u8, now: Instant) {
        let mut msg = match &kind {
            ReqKind::Allocate => {
                let mut m = Message::request(Method::ALLOCATE)
                    .with(Attribute::RequestedTransport(TRANSPORT_UDP));
                match self.family {
                    RelayFamily::V4 => {}
                    RelayFamily::V6 => m.push(Attribute::RequestedAddressFamily(FAMILY_V6)),
                    RelayFamily::Dual => m.push(Attribute::AdditionalAddressFamily(FAMILY_V6)),
                }
                if let Some(l) = self.requested_lifetime {
                    m.push(Attribute::Lifetime(l));
                }
                m
            }
            ReqKind::Refresh { lifetime } => {
                Message::request(Method::REFRESH).with(Attribute::Lifetime(*lifetime))
            }
            ReqKind::Permission(ips) => {
                let mut m = Message::request(Method::CREATE_PERMISSION);
                for ip in ips {
                    m.push(Attribute::XorPeerAddress(SocketAddr::new(*ip, 0)));
                }
                m
            }
            ReqKind::ChannelBind { peer, channel } => Message::request(Method::CHANNEL_BIND)
                .with(Attribute::ChannelNumber(*channel))
                .with(Attribute::XorPeerAddress(*peer)),
        };
        if let Some(s) = &self.software {
            msg.push(Attribute::Software(s.clone()));
        }
        let bytes = self.creds.encode(&msg);
        self.transmits.push_back(bytes.clone());
        let (sends, next_send) = if self.reliable {
            (MAX_SENDS, now)
        } else {
            (1, now + self.rto)
        };
        self.pending.insert(
            msg.transaction_id,
            Pending {
                kind,
                bytes,
                sends,
                next_send,
                deadline: now + self.request_timeout(),
                auth_tries,
            },
        );
    }

    fn check_peer_family(&self, ip: IpAddr) -> Result<(), NatError> {
        if self.state != SessionState::Allocated {
            return Err(NatError::Closed(format!(
                "allocation is {:?}, not allocated",
                self.state
            )));
        }
        if self.relayed.iter().any(|r| r.is_ipv4() == ip.is_ipv4()) {
            Ok(())
        } else {
            Err(NatError::Invalid(
                "peer address family has no relayed address in this allocation",
            ))
        }
    }

    fn free_channel(&mut self) -> Option<u16> {
        let span = LAST_CHANNEL - FIRST_CHANNEL + 1;
        for _ in 0..span {
            let n = self.next_channel;
            self.next_channel = if n >= LAST_CHANNEL {
                FIRST_CHANNEL
            } else {
                n + 1
            };
            if valid_channel(n) && !self.channel_peers.contains_key(&n) {
                return Some(n);
            }
        }
        None
    }
}

/// `ip` with IPv4-mapped IPv6 turned into IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

// ---------------------------------------------------------------------------------------------
// The async client.

/// Where the client's outgoing messages go.
enum Out {
    /// A UDP socket (owned or shared with the caller).
    Udp(Arc<UdpSocket>),
    /// The writer task of a TCP/TLS connection.
    Stream(mpsc::Sender<Vec<u8>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Allocate,
    Permission(IpAddr),
    Channel(SocketAddr),
    Refresh,
    Close,
}

struct Inner {
    session: TurnSession,
    waiters: Vec<(Wait, oneshot::Sender<Result<(), NatError>>)>,
    gone: Option<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    timer: Notify,
    out: Out,
    server: SocketAddr,
    data_tx: Option<mpsc::Sender<(Bytes, SocketAddr)>>,
    overflow: AtomicU64,
    /// Becomes true once the allocation is gone (wakes `recv_from`).
    gone: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the session half-updated in a way that
        // matters more than losing the client; keep going with the data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Dispatches the session's events to waiters and collects what must be sent.
    fn pump(&self, inner: &mut Inner) -> Vec<Vec<u8>> {
        let out = Shared::pump_inner(inner);
        if inner.gone.is_some() {
            self.gone.send_replace(true);
        }
        out
    }

    fn pump_inner(inner: &mut Inner) -> Vec<Vec<u8>> {
        while let Some(ev) = inner.session.poll_event() {
            match ev {
                TurnEvent::Allocated { .. } => resolve(inner, |w| w == Wait::Allocate, || Ok(())),
                TurnEvent::AllocationFailed(e) => {
                    inner.gone = Some(e.to_string());
                    resolve(inner, |_| true, || Err(clone_error(&e)));
                }
                TurnEvent::Refreshed { lifetime } => {
                    tracing::debug!(?lifetime, "TURN allocation refreshed");
                    resolve(inner, |w| w == Wait::Refresh, || Ok(()));
                }
                TurnEvent::PermissionCreated(ip) => {
                    resolve(inner, |w| w == Wait::Permission(ip), || Ok(()))
                }
                TurnEvent::PermissionFailed { ip, error } => resolve(
                    inner,
                    |w| w == Wait::Permission(ip),
                    || Err(clone_error(&error)),
                ),
                TurnEvent::ChannelBound { peer, .. } => {
                    resolve(inner, |w| w == Wait::Channel(peer), || Ok(()))
                }
                TurnEvent::ChannelBindFailed { peer, error } => resolve(
                    inner,
                    |w| w == Wait::Channel(peer),
                    || Err(clone_error(&error)),
                ),
                TurnEvent::Lost(e) => {
                    tracing::info!(error = %e, "TURN allocation lost");
                    inner.gone = Some(e.to_string());
                    resolve(inner, |_| true, || Err(clone_error(&e)));
                }
                TurnEvent::Closed => {
                    inner.gone.get_or_insert_with(|| "released".to_owned());
                    resolve(inner, |w| w == Wait::Close, || Ok(()));
                    resolve(
                        inner,
                        |_| true,
                        || Err(NatError::Closed("allocation released".to_owned())),
                    );
                }
            }
        }
        let mut out = Vec::new();
        while let Some(t) = inner.session.poll_transmit() {
            out.push(t);
        }
        out
    }

    async fn flush(&self, msgs: Vec<Vec<u8>>) -> Result<(), NatError> {
        for m in msgs {
            match &self.out {
                Out::Udp(s) => {
                    if let Err(e) = s.send_to(&m, self.server).await {
                        // ICMP errors from earlier sends surface here; retransmissions cover
                        // a lost request, so only report, do not fail.
                        tracing::debug!(error = %e, "TURN send failed");
                    }
                }
                Out::Stream(tx) => tx
                    .send(m)
                    .await
                    .map_err(|_| NatError::Closed("connection to the TURN server closed".into()))?,
            }
        }
        Ok(())
    }

    /// Sends without waiting (UDP `try_send_to`, stream `try_send`); a full buffer drops the
    /// message like a lossy network would (requests are retransmitted or time out).
    fn flush_now(&self, msgs: Vec<Vec<u8>>) {
        for m in msgs {
            let ok = match &self.out {
                Out::Udp(s) => s.try_send_to(&m, self.server).is_ok(),
                Out::Stream(tx) => tx.try_send(m).is_ok(),
            };
            if !ok {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Feeds one message from the server; returns data for the application, if any.
    fn input(&self, buf: &[u8]) -> (Option<(Bytes, SocketAddr)>, Vec<Vec<u8>>) {
        let mut inner = self.lock();
        let r = match inner.session.handle_input(buf, Instant::now()) {
            Input::Data { peer, data } => Some((data, peer)),
            Input::Consumed | Input::Dropped => None,
        };
        let out = self.pump(&mut inner);
        drop(inner);
        if !out.is_empty() {
            self.timer.notify_one();
        }
        (r, out)
    }

    fn deliver(&self, data: Bytes, peer: SocketAddr) {
        if let Some(tx) = &self.data_tx
            && tx.try_send((data, peer)).is_err()
        {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn resolve(
    inner: &mut Inner,
    matches: impl Fn(Wait) -> bool,
    result: impl Fn() -> Result<(), NatError>,
) {
    let mut keep = Vec::with_capacity(inner.waiters.len());
    for (w, tx) in inner.waiters.drain(..) {
        if matches(w) {
            let _ = tx.send(result());
        } else {
            keep.push((w, tx));
        }
    }
    inner.waiters = keep;
}

/// An async TURN client holding one allocation.
///
/// Dropping it releases the allocation on a best-effort basis (Refresh with lifetime 0);
/// [`TurnClient::close`] does it and waits for the answer.
pub struct TurnClient {
    shared: Arc<Shared>,
    data_rx: Option<tokio::sync::Mutex<mpsc::Receiver<(Bytes, SocketAddr)>>>,
    tasks: Vec<JoinHandle<()>>,
    local: SocketAddr,
    transport: TurnTransport,
    timeout: Duration,
}

impl fmt::Debug for TurnClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnClient")
            .field("server", &self.shared.server)
            .field("transport", &self.transport)
            .field("local", &self.local)
            .field("relayed", &self.relayed_addrs())
            .finish()
    }
}

/// Capacity of the received-data queue of an owned-transport client.
const DATA_QUEUE: usize = 1024;

impl TurnClient {
    /// Connects to `cfg`'s server over its transport (its own UDP socket, TCP or TLS
    /// connection), allocates a relayed address and returns once it is granted.
    pub async fn allocate(cfg: &TurnConfig, opts: TurnOptions) -> Result<TurnClient, NatError> {
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let server = resolve_server(&cfg.uri, opts.local).await?;
        let bind = opts.local.unwrap_or_else(|| unspecified_like(server));
        let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
        match cfg.uri.transport {
            TurnTransport::Udp => {
                let socket = UdpSocket::bind(bind).await?;
                // Connected: only the server's datagrams arrive, and the local address names
                // the interface that routes to the server.
                socket.connect(server).await?;
                let socket = Arc::new(socket);
                let local = socket.local_addr()?;
                let (mut client, shared) = TurnClient::build(
                    cfg,
                    &opts,
                    server,
                    TurnTransport::Udp,
                    Out::Udp(socket.clone()),
                    Some(data_tx),
                    local,
                );
                client.data_rx = Some(tokio::sync::Mutex::new(data_rx));
                client.tasks.push(tokio::spawn(udp_reader(shared, socket)));
                client.finish_allocate(deadline).await?;
                Ok(client)
            }
            TurnTransport::Tcp | TurnTransport::Tls => {
                let tcp = connect_tcp(server, opts.local, deadline, opts.timeout).await?;
                let local = tcp.local_addr()?;
                let _ = tcp.set_nodelay(true);
                let (tx, rx) = mpsc::channel::<Vec<u8>>(DATA_QUEUE);
                let (mut client, shared) = TurnClient::build(
                    cfg,
                    &opts,
                    server,
                    cfg.uri.transport,
                    Out::Stream(tx),
                    Some(data_tx),
                    local,
                );
                client.data_rx = Some(tokio::sync::Mutex::new(data_rx));
                if cfg.uri.transport == TurnTransport::Tls {
                    let tls =
                        tls_connect(&cfg.uri.host, tcp, opts.tls.clone(), deadline, opts.timeout)
                            .await?;
                    let (r, w) = tokio::io::split(tls);
                    client.tasks.push(tokio::spawn(stream_reader(shared, r)));
                    // The writer is not kept in `tasks`: it must outlive a drop to send the
                    // final Refresh; it ends when the last sender is gone.
                    tokio::spawn(stream_writer(w, rx));
                } else {
                    let (r, w) = tcp.into_split();
                    client.tasks.push(tokio::spawn(stream_reader(shared, r)));
                    tokio::spawn(stream_writer(w, rx));
                }
                client.finish_allocate(deadline).await?;
                Ok(client)
            }
        }
    }

    /// A client on `socket`, a UDP socket the caller reads (an ICE agent's socket shared by
    /// STUN, TURN and media): nothing is sent yet. Make it reachable from your reader (which
    /// must give every datagram from [`Self::server_addr`] to [`Self::handle_incoming`]), then
    /// call [`Self::start`] to allocate. `cfg.uri.transport` must be UDP; received data is
    /// returned by `handle_incoming`, not by [`Self::recv_from`].
    pub async fn with_socket(
        socket: Arc<UdpSocket>,
        cfg: &TurnConfig,
        opts: TurnOptions,
    ) -> Result<TurnClient, NatError> {
        if cfg.uri.transport != TurnTransport::Udp {
            return Err(NatError::Invalid(
                "a caller-read socket needs a turn: URI over UDP (TCP/TLS use allocate)",
            ));
        }
        let local = socket.local_addr()?;
        let server = resolve_server(&cfg.uri, Some(local)).await?;
        let (client, _shared) = TurnClient::build(
            cfg,
            &opts,
            server,
            TurnTransport::Udp,
            Out::Udp(socket),
            None,
            local,
        );
        Ok(client)
    }

    /// Allocates (a [`Self::with_socket`] client) and waits until the relayed address is
    /// granted, within the options' timeout.
    pub async fn start(&self) -> Result<(), NatError> {
        self.finish_allocate(tokio::time::Instant::now() + self.timeout)
            .await
    }

    fn build(
        cfg: &TurnConfig,
        opts: &TurnOptions,
        server: SocketAddr,
        transport: TurnTransport,
        out: Out,
        data_tx: Option<mpsc::Sender<(Bytes, SocketAddr)>>,
        local: SocketAddr,
    ) -> (TurnClient, Arc<Shared>) {
        let session = TurnSession::new(server, transport, &cfg.username, &cfg.password, opts);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                session,
                waiters: Vec::new(),
                gone: None,
            }),
            timer: Notify::new(),
            out,
            server,
            data_tx,
            overflow: AtomicU64::new(0),
            gone: tokio::sync::watch::channel(false).0,
        });
        let timer = tokio::spawn(timer_task(shared.clone()));
        let client = TurnClient {
            shared: shared.clone(),
            data_rx: None,
            tasks: vec![timer],
            local,
            transport,
            timeout: opts.timeout,
        };
        (client, shared)
    }

    async fn finish_allocate(&self, deadline: tokio::time::Instant) -> Result<(), NatError> {
        let rx = self
            .request(Wait::Allocate, |s, now| {
                s.allocate(now);
                Ok(())
            })
            .await?;
        let server = self.shared.server;
        let after = self.timeout;
        match tokio::time::timeout_at(deadline, self.wait(rx)).await {
            Ok(r) => r,
            Err(_) => Err(NatError::Timeout { server, after }),
        }
    }

    /// Runs `op` on the session, registers a waiter, sends what it produced (waiting for the
    /// socket: a fresh tokio socket refuses `try_send` until the reactor saw it writable).
    async fn request(
        &self,
        wait: Wait,
        op: impl FnOnce(&mut TurnSession, Instant) -> Result<(), NatError>,
    ) -> Result<oneshot::Receiver<Result<(), NatError>>, NatError> {
        let (tx, rx) = oneshot::channel();
        let out = {
            let mut inner = self.shared.lock();
            op(&mut inner.session, Instant::now())?;
            inner.waiters.push((wait, tx));
            self.shared.pump(&mut inner)
        };
        self.shared.timer.notify_one();
        self.shared.flush(out).await?;
        Ok(rx)
    }

    async fn wait(&self, rx: oneshot::Receiver<Result<(), NatError>>) -> Result<(), NatError> {
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(NatError::Closed("TURN client stopped".to_owned())),
        }
    }

    /// The first relayed transport address (what peers send to).
    pub fn relayed_addr(&self) -> SocketAddr {
        let inner = self.shared.lock();
        inner
            .session
            .relayed_addrs()
            .first()
            .copied()
            .unwrap_or_else(|| unspecified_like(self.shared.server))
    }

    /// Every relayed transport address (two for a dual-stack allocation).
    pub fn relayed_addrs(&self) -> Vec<SocketAddr> {
        self.shared.lock().session.relayed_addrs().to_vec()
    }

    /// Our transport address as the TURN server saw it (server-reflexive for UDP).
    pub fn mapped_addr(&self) -> Option<SocketAddr> {
        self.shared.lock().session.mapped_addr()
    }

    /// The TURN server's transport address.
    pub fn server_addr(&self) -> SocketAddr {
        self.shared.server
    }

    /// Our local address of the socket/connection to the server.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The transport to the server.
    pub fn transport(&self) -> TurnTransport {
        self.transport
    }

    /// The granted allocation lifetime.
    pub fn lifetime(&self) -> Duration {
        self.shared.lock().session.lifetime()
    }

    /// True while the allocation is usable.
    pub fn is_allocated(&self) -> bool {
        self.shared.lock().session.state() == SessionState::Allocated
    }

    /// Why the allocation is gone, once it is.
    pub fn gone_reason(&self) -> Option<String> {
        self.shared.lock().gone.clone()
    }

    /// Messages dropped: malformed or unexpected input, plus a full receive queue.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().session.dropped() + self.shared.overflow.load(Ordering::Relaxed)
    }

    /// True when `ip` has an installed permission.
    pub fn has_permission(&self, ip: IpAddr) -> bool {
        self.shared.lock().session.has_permission(ip)
    }

    /// The bound channel of `peer`, if any.
    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.shared.lock().session.channel(peer)
    }

    /// Installs a permission for `ip` and waits for the server's answer (refreshed
    /// automatically every 240 s afterwards).
    pub async fn create_permission(&self, ip: IpAddr) -> Result<(), NatError> {
        let ip = canonical_ip(ip);
        let rx = self
            .request(Wait::Permission(ip), |s, now| s.create_permission(ip, now))
            .await?;
        self.wait_bounded(rx).await
    }

    /// Refreshes the allocation now and waits for the answer; returns the granted lifetime.
    pub async fn refresh(&self) -> Result<Duration, NatError> {
        let rx = self.request(Wait::Refresh, |s, now| s.refresh(now)).await?;
        self.wait_bounded(rx).await?;
        Ok(self.lifetime())
    }

    /// Binds a channel to `peer` and waits for the answer; data to and from `peer` then uses
    /// ChannelData (refreshed automatically every 480 s).
    pub async fn channel_bind(&self, peer: SocketAddr) -> Result<u16, NatError> {
        let peer = canonical(peer);
        let mut number = 0;
        let rx = self
            .request(Wait::Channel(peer), |s, now| {
                number = s.channel_bind(peer, now)?;
                Ok(())
            })
            .await?;
        self.wait_bounded(rx).await?;
        Ok(number)
    }

    async fn wait_bounded(
        &self,
        rx: oneshot::Receiver<Result<(), NatError>>,
    ) -> Result<(), NatError> {
        // The session's own request timeout (39.5 s) bounds this; the extra margin only
        // guards against a stopped client.
        let limit = transaction_timeout(DEFAULT_RTO) + Duration::from_secs(1);
        match tokio::time::timeout(limit, self.wait(rx)).await {
            Ok(r) => r,
            Err(_) => Err(NatError::Timeout {
                server: self.shared.server,
                after: limit,
            }),
        }
    }

    /// Sends `data` to `peer` through the relay: ChannelData when a channel is bound, else a
    /// Send indication (a permission is requested first if there is none).
    pub async fn send_to(&self, data: &[u8], peer: SocketAddr) -> Result<(), NatError> {
        let (msg, mut extra) = self.encode(data, peer)?;
        if !extra.is_empty() {
            self.shared.timer.notify_one();
        }
        extra.push(msg);
        self.shared.flush(extra).await
    }

    /// Like [`Self::send_to`] without waiting: drops the message when the socket buffer or
    /// the connection's queue is full (as a congested network would).
    pub fn try_send_to(&self, data: &[u8], peer: SocketAddr) -> Result<(), NatError> {
        let (msg, mut extra) = self.encode(data, peer)?;
        extra.push(msg);
        self.shared.flush_now(extra);
        self.shared.timer.notify_one();
        Ok(())
    }

    fn encode(&self, data: &[u8], peer: SocketAddr) -> Result<(Vec<u8>, Vec<Vec<u8>>), NatError> {
        let mut inner = self.shared.lock();
        let mut msg = Vec::with_capacity(data.len() + 36);
        inner
            .session
            .send_to(data, peer, Instant::now(), &mut msg)?;
        let extra = self.shared.pump(&mut inner);
        Ok((msg, extra))
    }

    /// The next data received through the relay, with its peer (clients from
    /// [`Self::allocate`]; a `with_socket` client returns data from `handle_incoming`).
    pub async fn recv_from(&self) -> Result<(Bytes, SocketAddr), NatError> {
        let Some(rx) = &self.data_rx else {
            return Err(NatError::Invalid(
                "this TURN client runs on a caller-read socket: use handle_incoming",
            ));
        };
        let mut rx = rx.lock().await;
        let mut gone = self.shared.gone.subscribe();
        let closed = || {
            NatError::Closed(
                self.gone_reason()
                    .unwrap_or_else(|| "TURN client stopped".to_owned()),
            )
        };
        tokio::select! {
            biased;
            d = rx.recv() => d.ok_or_else(closed),
            _ = gone.wait_for(|g| *g) => {
                // Deliver what was queued before the allocation went away.
                rx.try_recv().map_err(|_| closed())
            }
        }
    }

    /// Feeds a datagram the caller read from the shared socket (`with_socket`). Datagrams not
    /// from the server are ignored (`None`); data relayed from a peer is returned.
    pub fn handle_incoming(&self, buf: &[u8], from: SocketAddr) -> Option<(Bytes, SocketAddr)> {
        if canonical(from) != canonical(self.shared.server) {
            return None;
        }
        let (data, out) = self.shared.input(buf);
        self.shared.flush_now(out);
        data
    }

    /// True when `buf` from `from` is for this client (from the TURN server, STUN or
    /// ChannelData): a demultiplexing helper for a shared socket.
    pub fn is_for_me(&self, buf: &[u8], from: SocketAddr) -> bool {
        canonical(from) == canonical(self.shared.server) && (is_stun(buf) || is_channel_data(buf))
    }

    /// Releases the allocation (Refresh with lifetime 0) and waits for the answer.
    pub async fn close(&self) -> Result<(), NatError> {
        let rx = {
            let (tx, rx) = oneshot::channel();
            let out = {
                let mut inner = self.shared.lock();
                if inner.session.state() == SessionState::Closed {
                    return Ok(());
                }
                inner.session.close(Instant::now());
                inner.waiters.push((Wait::Close, tx));
                self.shared.pump(&mut inner)
            };
            self.shared.flush(out).await?;
            self.shared.timer.notify_one();
            rx
        };
        match tokio::time::timeout(self.timeout, self.wait(rx)).await {
            Ok(r) => r,
            Err(_) => Err(NatError::Timeout {
                server: self.shared.server,
                after: self.timeout,
            }),
        }
    }
}

impl Drop for TurnClient {
    fn drop(&mut self) {
        let out = {
            let mut inner = self.shared.lock();
            if inner.session.state() == SessionState::Allocated {
                inner.session.close(Instant::now());
            }
            self.shared.pump(&mut inner)
        };
        self.shared.flush_now(out);
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn timer_task(shared: Arc<Shared>) {
    loop {
        let next = shared.lock().session.poll_timeout();
        match next {
            Some(t) => {
                let at = tokio::time::Instant::from_std(t);
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shared.timer.notified() => {}
                }
            }
            None => shared.timer.notified().await,
        }
        let out = {
            let mut inner = shared.lock();
            inner.session.handle_timeout(Instant::now());
            shared.pump(&mut inner)
        };
        if let Err(e) = shared.flush(out).await {
            let mut inner = shared.lock();
            inner.session.transport_closed(&e.to_string());
            let _ = shared.pump(&mut inner);
        }
    }
}

async fn udp_reader(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if canonical(from) != canonical(shared.server) {
                    continue;
                }
                let (data, out) = shared.input(buf.get(..n).unwrap_or(&[]));
                if let Some((d, peer)) = data {
                    shared.deliver(d, peer);
                }
                if !out.is_empty() {
                    let _ = shared.flush(out).await;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                // ICMP errors: the server may be restarting; retransmissions decide.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => {
                let mut inner = shared.lock();
                inner.session.transport_closed(&e.to_string());
                let _ = shared.pump(&mut inner);
                return;
            }
        }
    }
}

async fn stream_reader<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut r: R) {
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16384];
    let reason = loop {
        match r.read(&mut buf).await {
            Ok(0) => break "closed by the server".to_owned(),
            Ok(n) => framer.push(buf.get(..n).unwrap_or(&[])),
            Err(e) => break e.to_string(),
        }
        loop {
            match framer.pop() {
                Ok(None) => break,
                Ok(Some(Frame::Stun(b) | Frame::ChannelData(b))) => {
                    let (data, out) = shared.input(&b);
                    if let Some((d, peer)) = data {
                        shared.deliver(d, peer);
                    }
                    if !out.is_empty() {
                        let _ = shared.flush(out).await;
                    }
                }
                Err(e) => {
                    let mut inner = shared.lock();
                    inner
                        .session
                        .transport_closed(&format!("not TURN framing: {e}"));
                    let _ = shared.pump(&mut inner);
                    return;
                }
            }
        }
    };
    let mut inner = shared.lock();
    inner.session.transport_closed(&reason);
    let _ = shared.pump(&mut inner);
}

async fn stream_writer<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(m) = rx.recv().await {
        if w.write_all(&m).await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

/// A TLS client configuration for `turns:`: trusts the certificates of the PEM file `ca_file`
/// (e.g. the lab CA) when given, else the system's roots.
pub fn tls_client_config(
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, NatError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let Some(path) = ca_file else {
        return tandem_net::default_tls_client().map_err(|e| NatError::Tls {
            host: String::new(),
            reason: e.to_string(),
        });
    };
    let tls_err = |reason: String| NatError::Tls {
        host: String::new(),
        reason: format!("CA file {}: {reason}", path.display()),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| tls_err(e.to_string()))? {
        let cert = cert.map_err(|e| tls_err(e.to_string()))?;
        roots.add(cert).map_err(|e| tls_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(tls_err("no certificate".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn unspecified_like(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// Resolves the server, preferring the family of `local` when given.
async fn resolve_server(uri: &TurnUri, local: Option<SocketAddr>) -> Result<SocketAddr, NatError> {
    if let Ok(ip) = uri.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, uri.port));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((uri.host.as_str(), uri.port))
        .await
        .map_err(|e| NatError::Resolve {
            host: uri.host.clone(),
            reason: e.to_string(),
        })?
        .collect();
    let pick = match local {
        Some(l) if !l.ip().is_unspecified() || l.is_ipv6() => addrs
            .iter()
            .find(|a| a.is_ipv4() == l.is_ipv4())
            .or(addrs.first()),
        _ => addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()),
    };
    pick.copied().ok_or_else(|| NatError::Resolve {
        host: uri.host.clone(),
        reason: "no addresses".to_owned(),
    })
}

async fn connect_tcp(
    server: SocketAddr,
    local: Option<SocketAddr>,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<TcpStream, NatError> {
    let fut = async {
        match local {
            Some(l) => {
                let sock = if l.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                sock.bind(l)?;
                sock.connect(server).await
            }
            None => TcpStream::connect(server).await,
        }
    };
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(NatError::Timeout {
            server,
            after: timeout,
        }),
    }
}

async fn tls_connect(
    host: &str,
    tcp: TcpStream,
    config: Option<Arc<rustls::ClientConfig>>,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, NatError> {
    let tls_err = |reason: String| NatError::Tls {
        host: host.to_owned(),
        reason,
    };
    let config = match config {
        Some(c) => c,
        None => tandem_net::default_tls_client().map_err(|e| tls_err(e.to_string()))?,
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| tls_err(e.to_string()))?;
    let peer = tcp.peer_addr()?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(tls_err(e.to_string())),
        Err(_) => Err(NatError::Timeout {
            server: peer,
            after: timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_proto::stun::long_term_key;

    const USER: &str = "alice";
    const PASS: &str = "secret";
    const REALM: &str = "tandem.lab";

    fn server() -> SocketAddr {
        "192.0.2.1:3478".parse().unwrap()
    }

    fn relayed() -> SocketAddr {
        "192.0.2.1:50000".parse().unwrap()
    }

    fn key() -> [u8; 16] {
        long_term_key(USER, REALM, PASS)
    }

    /// A scripted TURN server: answers every request of the session in order.
    struct Script {
        nonce: u32,
        password_ok: bool,
        seen: Vec<Method>,
    }

    impl Script {
        fn new() -> Script {
            Script {
                nonce: 0,
                password_ok: true,
                seen: Vec::new(),
            }
        }

        /// Answers one request like a TURN server would (401 until signed with a current nonce).
        fn answer(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
            let req = Message::decode(bytes).unwrap();
            if req.class != Class::Request {
                return None;
            }
            self.seen.push(req.method);
            let nonce = format!("nonce-{}", self.nonce);
            let challenge = |code| {
                req.error_response(code)
                    .with(Attribute::Realm(REALM.into()))
                    .with(Attribute::Nonce(nonce.clone()))
                    .encode(Integrity::None, true)
            };
            if !req.has_integrity() {
                return Some(challenge(401));
            }
            if req.nonce() != Some(nonce.as_str()) {
                return Some(challenge(438));
            }
            if !self.password_ok || req.verify_integrity(&key()).is_err() {
                return Some(challenge(401));
            }
            let mut resp = req.response(Class::Success);
            if req.method == Method::ALLOCATE {
                resp.push(Attribute::XorRelayedAddress(relayed()));
                resp.push(Attribute::XorMappedAddress(
                    "198.51.100.7:4000".parse().unwrap(),
                ));
                resp.push(Attribute::Lifetime(600));
            } else if req.method == Method::REFRESH {
                resp.push(Attribute::Lifetime(req.lifetime().unwrap_or(600)));
            }
            Some(resp.encode(Integrity::Sha1(&key()), true))
        }
    }

    fn opts() -> TurnOptions {
        TurnOptions {
            software: None,
            ..TurnOptions::default()
        }
    }

    /// Delivers every queued transmit to the script and its answers back, until quiet.
    fn exchange(s: &mut TurnSession, script: &mut Script, now: Instant) {
        while let Some(t) = s.poll_transmit() {
            if let Some(answer) = script.answer(&t) {
                assert!(matches!(s.handle_input(&answer, now), Input::Consumed));
            }
        }
    }

    fn allocated(now: Instant) -> (TurnSession, Script) {
        let mut s = TurnSession::new(server(), TurnTransport::Udp, USER, PASS, &opts());
        let mut script = Script::new();
        s.allocate(now);
        exchange(&mut s, &mut script, now);
        match s.poll_event() {
            Some(TurnEvent::Allocated {
                relayed: r,
                mapped,
                lifetime,
            }) => {
                assert_eq!(r, vec![relayed()]);
                assert_eq!(mapped, Some("198.51.100.7:4000".parse().unwrap()));
                assert_eq!(lifetime, Duration::from_secs(600));
            }
            other => panic!("{other:?}"),
        }
        (s, script)
    }

    #[test]
    fn uri_parsing() {
        let u = TurnUri::parse("turn:example.org").unwrap();
        assert_eq!(
            (u.transport, u.host.as_str(), u.port),
            (TurnTransport::Udp, "example.org", 3478)
        );
        let u = TurnUri::parse("turn:10.0.0.1:1234?transport=tcp").unwrap();
        assert_eq!((u.transport, u.port), (TurnTransport::Tcp, 1234));
        let u = TurnUri::parse("TURNS:[2001:db8::1]").unwrap();
        assert_eq!(
            (u.transport, u.host.as_str(), u.port),
            (TurnTransport::Tls, "2001:db8::1", 5349)
        );
        assert_eq!(u.to_string(), "turns:[2001:db8::1]:5349");
        assert_eq!(
            TurnUri::parse("turn:h:9?transport=tcp")
                .unwrap()
                .to_string(),
            "turn:h:9?transport=tcp"
        );
        for bad in [
            "stun:h",
            "turn:",
            "turn:h:0",
            "turn:h:99999",
            "turn:h?transport=sctp",
            "turns:h?transport=udp",
            "turn:[::1",
            "turn:h?foo=bar",
            "turn:h/x",
        ] {
            assert!(TurnUri::parse(bad).is_err(), "{bad}");
        }
        let cfg = TurnConfig::new("turn:h", "u", "pw").unwrap();
        assert!(!format!("{cfg:?}").contains("pw\""));
    }

    #[test]
    fn allocate_answers_the_challenge_and_signs() {
        let now = Instant::now();
        let (s, script) = allocated(now);
        assert_eq!(script.seen, vec![Method::ALLOCATE, Method::ALLOCATE]);
        assert_eq!(s.state(), SessionState::Allocated);
        assert_eq!(s.relayed_addrs(), &[relayed()]);
    }

    #[test]
    fn wrong_password_is_reported_as_such() {
        let now = Instant::now();
        let mut s = TurnSession::new(server(), TurnTransport::Udp, USER, "nope", &opts());
        let mut script = Script::new();
        s.allocate(now);
        exchange(&mut s, &mut script, now);
        match s.poll_event() {
            Some(TurnEvent::AllocationFailed(e)) => {
                assert!(e.is_wrong_password(), "{e:?}");
                assert!(e.to_string().contains("wrong password"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.state(), SessionState::Closed);
    }

    #[test]
    fn stale_nonce_is_retried_with_the_new_one() {
        let now = Instant::now();
        let (mut s, mut script) = allocated(now);
        script.nonce += 1;
        let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
        s.create_permission(peer.ip(), now).unwrap();
        exchange(&mut s, &mut script, now);
        assert!(
            matches!(s.poll_event(), Some(TurnEvent::PermissionCreated(ip)) if ip == peer.ip())
        );
        assert!(s.has_permission(peer.ip()));
        assert_eq!(
            &script.seen[2..],
            &[Method::CREATE_PERMISSION, Method::CREATE_PERMISSION]
        );
    }

    #[test]
    fn channel_data_and_indications() {
        let now = Instant::now();
        let (mut s, mut script) = allocated(now);
        let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
        let mut out = Vec::new();
        // No permission yet: a Send indication, and a CreatePermission is queued first.
        s.send_to(b"hi", peer, now, &mut out).unwrap();
        let ind = Message::decode(&out).unwrap();
        assert_eq!((ind.class, ind.method), (Class::Indication, Method::SEND));
        assert_eq!(ind.peer_addresses(), vec![peer]);
        assert_eq!(&ind.data().unwrap()[..], b"hi");
        exchange(&mut s, &mut script, now);
        assert!(s.has_permission(peer.ip()));
        // A Data indication from a permitted peer is delivered; from another IP it is not.
        let data = |from: SocketAddr| {
            Message::new(Class::Indication, Method::DATA, TransactionId::random())
                .with(Attribute::XorPeerAddress(from))
                .with(Attribute::Data(Bytes::from_static(b"yo")))
                .encode(Integrity::None, true)
        };
        assert_eq!(
            s.handle_input(&data(peer), now),
            Input::Data {
                peer,
                data: Bytes::from_static(b"yo")
            }
        );
        let stranger: SocketAddr = "203.0.113.10:7000".parse().unwrap();
        assert_eq!(s.handle_input(&data(stranger), now), Input::Dropped);
        // Channel: ChannelData both ways once bound.
        let ch = s.channel_bind(peer, now).unwrap();
        assert_eq!(ch, 0x4000);
        assert_eq!(s.channel(peer), None, "not before the server confirms");
        exchange(&mut s, &mut script, now);
        let _ = s.poll_event();
        assert!(matches!(
            s.poll_event(),
            Some(TurnEvent::ChannelBound {
                channel: 0x4000,
                ..
            })
        ));
        s.send_to(b"abcde", peer, now, &mut out).unwrap();
        assert_eq!(out, ChannelData::encode(0x4000, b"abcde", false));
        let incoming = ChannelData::encode(0x4000, b"back", false);
        assert_eq!(
            s.handle_input(&incoming, now),
            Input::Data {
                peer,
                data: Bytes::from_static(b"back")
            }
        );
        // Unknown channel and garbage are dropped and counted.
        let before = s.dropped();
        assert_eq!(
            s.handle_input(&ChannelData::encode(0x4001, b"x", false), now),
            Input::Dropped
        );
        assert_eq!(
            s.handle_input(&[0x40, 0x00, 0xff, 0xff], now),
            Input::Dropped
        );
        assert_eq!(s.handle_input(&[0xff; 30], now), Input::Dropped);
        assert_eq!(s.dropped(), before + 3);
    }

    #[test]
    fn stream_transports_pad_channel_data() {
        let now = Instant::now();
        let mut s = TurnSession::new(server(), TurnTransport::Tcp, USER, PASS, &opts());
        let mut script = Script::new();
        s.allocate(now);
        exchange(&mut s, &mut script, now);
        let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
        s.channel_bind(peer, now).unwrap();
        exchange(&mut s, &mut script, now);
        let mut out = Vec::new();
        s.send_to(b"abcde", peer, now, &mut out).unwrap();
        assert_eq!(out.len(), 12);
        // No retransmissions over a stream: one Refresh, then only its timeout.
        s.refresh(now).unwrap();
        assert!(s.poll_transmit().is_some());
        s.handle_timeout(now + Duration::from_secs(5));
        assert!(s.poll_transmit().is_none());
    }

    #[test]
    fn udp_requests_are_retransmitted_then_time_out() {
        let t0 = Instant::now();
        let (mut s, _) = allocated(t0);
        let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
        s.create_permission(peer.ip(), t0).unwrap();
        let mut sends = 0;
        while s.poll_transmit().is_some() {
            sends += 1;
        }
        let mut now = t0;
        for _ in 0..100 {
            let Some(next) = s.poll_timeout() else { break };
            if next > t0 + Duration::from_secs(60) {
                break;
            }
            now = next;
            s.handle_timeout(now);
            while s.poll_transmit().is_some() {
                sends += 1;
            }
            if let Some(ev) = s.poll_event() {
                assert!(
                    matches!(
                        ev,
                        TurnEvent::PermissionFailed {
                            error: NatError::Timeout { .. },
                            ..
                        }
                    ),
                    "{ev:?}"
                );
                break;
            }
        }
        assert_eq!(sends, 7);
        assert_eq!((now - t0).as_millis(), 39_500);
        assert!(!s.has_permission(peer.ip()));
    }

    #[test]
    fn refreshes_run_on_time() {
        let t0 = Instant::now();
        let (mut s, mut script) = allocated(t0);
        let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
        s.create_permission(peer.ip(), t0).unwrap();
        s.channel_bind(peer, t0).unwrap();
        exchange(&mut s, &mut script, t0);
        while s.poll_event().is_some() {}
        script.seen.clear();
        // Walk 20 minutes of timers, answering everything.
        let end = t0 + Duration::from_secs(1200);
        let mut refreshes = Vec::new();
        while let Some(next) = s.poll_timeout() {
            if next > end {
                break;
            }
            s.handle_timeout(next);
            while let Some(t) = s.poll_transmit() {
                let m = Message::decode(&t).unwrap();
                refreshes.push((m.method, (next - t0).as_secs()));
                if let Some(a) = script.answer(&t) {
                    s.handle_input(&a, next);
                }
            }
        }
        let at = |m: Method| -> Vec<u64> {
            refreshes.iter().filter(|r| r.0 == m).map(|r| r.1).collect()
        };
        assert_eq!(at(Method::REFRESH), vec![450, 900]);
        assert_eq!(
            at(Method::CREATE_PERMISSION),
            vec![240, 480, 720, 960, 1200]
        );
        assert_eq!(at(Method::CHANNEL_BIND), vec![480, 960]);
        assert_eq!(s.state(), SessionState::Allocated);
        assert!(s.channel(peer).is_some());
    }

    #[test]
    fn close_sends_refresh_zero() {
        let now = Instant::now();
        let (mut s, mut script) = allocated(now);
        s.close(now);
        let t = s.poll_transmit().unwrap();
        let m = Message::decode(&t).unwrap();
        assert_eq!((m.method, m.lifetime()), (Method::REFRESH, Some(0)));
        let a = script.answer(&t).unwrap();
        s.handle_input(&a, now);
        assert!(matches!(s.poll_event(), Some(TurnEvent::Closed)));
        assert_eq!(s.state(), SessionState::Closed);
        let mut out = Vec::new();
        assert!(s.send_to(b"x", relayed(), now, &mut out).is_err());
    }

    #[test]
    fn forged_success_is_ignored() {
        let now = Instant::now();
        let (mut s, _) = allocated(now);
        let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
        s.create_permission(peer.ip(), now).unwrap();
        let t = s.poll_transmit().unwrap();
        let req = Message::decode(&t).unwrap();
        let forged = req
            .response(Class::Success)
            .encode(Integrity::Sha1(b"wrong key"), true);
        assert_eq!(s.handle_input(&forged, now), Input::Dropped);
        assert!(!s.has_permission(peer.ip()));
        // The genuine answer still counts.
        let real = req
            .response(Class::Success)
            .encode(Integrity::Sha1(&key()), true);
        assert_eq!(s.handle_input(&real, now), Input::Consumed);
        assert!(s.has_permission(peer.ip()));
    }
}
