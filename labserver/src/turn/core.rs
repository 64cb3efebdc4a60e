//! The TURN state machine: authentication, allocations, permissions, channels and the relay paths.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tandem_proto::auth::{Algorithm, NonceIssuer, NonceStatus};
use tandem_proto::stun::attr::types;
use tandem_proto::stun::channel::valid_channel;
use tandem_proto::stun::credentials::parse_rest_username;
use tandem_proto::stun::{
    Attribute, ChannelData, Class, Integrity, Message, Method, TRANSPORT_UDP, TransactionId,
    is_channel_data, long_term_key, rest_password,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{TurnConfig, TurnStats, bump};
use crate::store::Store;

/// Permission lifetime (RFC 8656 §9).
const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel binding lifetime (RFC 8656 §12).
const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// How long a looked-up key is reused before asking the store again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Most cached keys.
const KEY_CACHE_MAX: usize = 4096;
/// How long a port reserved by EVEN-PORT's R bit waits for its RESERVATION-TOKEN (RFC 8656 §7.2).
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
/// Socket buffer size asked for the shared UDP socket (the kernel caps it at `net.core.rmem_max`/
/// `wmem_max`): a burst from many clients waits there instead of being dropped.
pub const LISTENER_BUFFER: usize = 4 << 20;
/// Socket buffer size asked for each relay socket.
const RELAY_BUFFER: usize = 1 << 20;

/// Asks for larger kernel buffers on a UDP socket (best effort).
pub fn enlarge_buffers(sock: &UdpSocket, size: usize) {
    let s = socket2::SockRef::from(sock);
    if s.set_recv_buffer_size(size).is_err() || s.set_send_buffer_size(size).is_err() {
        tracing::debug!("could not enlarge UDP socket buffers");
    }
}

/// The SOFTWARE attribute of our responses.
const SOFTWARE: &str = concat!("Tandem-Lab/", env!("CARGO_PKG_VERSION"));

/// The client transport of a 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientTransport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

/// The client side of an allocation: client address, server address, transport (RFC 8656 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// The client's address as seen by the server.
    pub client: SocketAddr,
    /// The server address the client talks to.
    pub server: SocketAddr,
    /// The transport between them.
    pub transport: ClientTransport,
}

/// How to send to a client: the shared UDP socket or a stream connection's writer queue.
#[derive(Debug, Clone)]
pub enum ClientSink {
    /// Over the listening UDP socket.
    Udp(Arc<UdpSocket>, SocketAddr),
    /// Over a TCP/TLS connection (bounded queue; full = drop).
    Stream(mpsc::Sender<Bytes>),
}

impl ClientSink {
    /// Sends without waiting; a full socket buffer or queue drops the packet.
    pub fn send(&self, bytes: Bytes) -> bool {
        match self {
            ClientSink::Udp(sock, addr) => sock.try_send_to(&bytes, *addr).is_ok(),
            ClientSink::Stream(tx) => tx.try_send(bytes).is_ok(),
        }
    }

    /// Sends, waiting for socket buffer or queue space (the relay paths: backpressure, not drops).
    pub async fn send_async(&self, bytes: Bytes) -> bool {
        match self {
            ClientSink::Udp(sock, addr) => sock.send_to(&bytes, *addr).await.is_ok(),
            ClientSink::Stream(tx) => tx.send(bytes).await.is_ok(),
        }
    }

    fn is_stream(&self) -> bool {
        matches!(self, ClientSink::Stream(_))
    }
}

#[derive(Debug)]
struct AllocState {
    expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, (SocketAddr, Instant)>,
    by_peer: HashMap<SocketAddr, u16>,
}

impl AllocState {
    fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|e| *e > now)
    }

    fn channel_peer(&self, channel: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .get(&channel)
            .filter(|(_, e)| *e > now)
            .map(|(p, _)| *p)
    }
}

/// One relayed transport address of an allocation.
#[derive(Debug)]
struct Relay {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
}

/// One allocation (RFC 8656 §2.2): one relayed address, or one per family for a dual-stack
/// allocation (ADDITIONAL-ADDRESS-FAMILY, §7.2).
#[derive(Debug)]
pub struct Allocation {
    username: String,
    relays: Vec<Relay>,
    sink: ClientSink,
    tid: TransactionId,
    state: Mutex<AllocState>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Allocation {
    fn state(&self) -> MutexGuard<'_, AllocState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// The relay that serves peers of `peer`'s family.
    fn relay_for(&self, peer: SocketAddr) -> Option<&Relay> {
        self.relays
            .iter()
            .find(|r| r.addr.is_ipv4() == peer.is_ipv4())
    }

    /// True when the allocation has a relayed address of ADDRESS-FAMILY value `family`.
    fn has_family(&self, family: u8) -> bool {
        self.relays.iter().any(|r| family_of(r.addr.ip()) == family)
    }

    /// The success response's XOR-RELAYED-ADDRESS attributes.
    fn relayed_attributes(&self) -> impl Iterator<Item = Attribute> + '_ {
        self.relays
            .iter()
            .map(|r| Attribute::XorRelayedAddress(r.addr))
    }
}

/// The ADDRESS-FAMILY value of `ip` (0x01 IPv4, 0x02 IPv6).
fn family_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 }
}

/// REQUESTED-/ADDITIONAL-ADDRESS-FAMILY value of IPv4.
const FAMILY_V4: u8 = 0x01;
/// REQUESTED-/ADDITIONAL-ADDRESS-FAMILY value of IPv6.
const FAMILY_V6: u8 = 0x02;

#[derive(Default)]
struct Tables {
    allocations: HashMap<FiveTuple, Arc<Allocation>>,
    per_user: HashMap<String, usize>,
}

/// Shared server state.
pub struct Core {
    pub(super) config: TurnConfig,
    realm: String,
    domain: String,
    relay_v4: Option<IpAddr>,
    relay_v6: Option<IpAddr>,
    own: Vec<SocketAddr>,
    store: Store,
    nonces: Mutex<NonceIssuer>,
    keys: Mutex<HashMap<String, ([u8; 16], Instant)>>,
    reservations: Mutex<HashMap<[u8; 8], (UdpSocket, Instant)>>,
    tables: Mutex<Tables>,
    pub(super) stats: TurnStats,
    closed: watch::Sender<bool>,
}

/// The identity and key of an authenticated request.
struct Authed {
    username: String,
    key: [u8; 16],
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xFE00) == 0xFC00 || (s & 0xFFC0) == 0xFE80
        }
    }
}

impl Core {
    /// New state; `relay_ips` are the addresses relays are allocated on (at most one per
    /// family is used), `own` the listener addresses (never relayed to).
    pub fn new(
        config: TurnConfig,
        realm: String,
        domain: String,
        relay_ips: &[IpAddr],
        own: Vec<SocketAddr>,
        store: Store,
    ) -> Core {
        let nonce_lifetime = Duration::from_secs(config.nonce_lifetime_secs.max(1));
        let (closed, _) = watch::channel(false);
        Core {
            config,
            realm,
            domain,
            relay_v4: relay_ips.iter().copied().find(IpAddr::is_ipv4),
            relay_v6: relay_ips.iter().copied().find(IpAddr::is_ipv6),
            own,
            store,
            nonces: Mutex::new(NonceIssuer::new(rand::random(), nonce_lifetime)),
            keys: Mutex::new(HashMap::new()),
            reservations: Mutex::new(HashMap::new()),
            tables: Mutex::new(Tables::default()),
            stats: TurnStats::default(),
            closed,
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that changes when the server shuts down.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// The number of live allocations.
    pub fn allocation_count(&self) -> usize {
        self.tables().allocations.len()
    }

    /// True when `five` holds an allocation.
    pub fn has_allocation(&self, five: &FiveTuple) -> bool {
        self.tables().allocations.contains_key(five)
    }

    fn allocation(&self, five: &FiveTuple) -> Option<Arc<Allocation>> {
        self.tables().allocations.get(five).cloned()
    }

    /// Frees every allocation and tells the connections to close.
    pub fn clear(&self) {
        let _ = self.closed.send(true);
        let mut t = self.tables();
        for (_, a) in t.allocations.drain() {
            a.stop();
        }
        t.per_user.clear();
        drop(t);
        self.reservations().clear();
    }

    /// Removes the allocation of `five` (connection closed, refresh to 0, expiry).
    pub fn remove(&self, five: &FiveTuple) {
        let mut t = self.tables();
        if let Some(a) = t.allocations.remove(five) {
            a.stop();
            if let Some(n) = t.per_user.get_mut(&a.username) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.per_user.remove(&a.username);
                }
            }
        }
    }

    /// Expires allocations, permissions and channels.
    pub fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<FiveTuple> = {
            let t = self.tables();
            t.allocations
                .iter()
                .filter_map(|(k, a)| {
                    let mut s = a.state();
                    if s.expires <= now {
                        return Some(*k);
                    }
                    s.permissions.retain(|_, e| *e > now);
                    let stale: Vec<u16> = s
                        .channels
                        .iter()
                        .filter(|(_, (_, e))| *e <= now)
                        .map(|(c, _)| *c)
                        .collect();
                    for c in stale {
                        if let Some((peer, _)) = s.channels.remove(&c) {
                            s.by_peer.remove(&peer);
                        }
                    }
                    None
                })
                .collect()
        };
        for k in expired {
            tracing::debug!(client = %k.client, "TURN allocation expired");
            self.remove(&k);
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.retain(|_, (_, at)| now.duration_since(*at) < KEY_CACHE_TTL);
        drop(keys);
        self.reservations().retain(|_, (_, e)| *e > now);
    }

    /// True when relaying to `peer` is allowed by policy.
    fn peer_allowed(&self, peer: SocketAddr) -> bool {
        // Never back into our own listeners; other allocations' relayed addresses are fine
        // (two clients of this server behind symmetric NATs talk relay to relay).
        peer.port() != 0 && self.ip_allowed(peer.ip()) && !self.own.contains(&peer)
    }

    /// True when permissions towards `ip` are allowed by policy (CreatePermission ignores the
    /// port, RFC 8656 §9).
    fn ip_allowed(&self, ip: IpAddr) -> bool {
        if ip.is_unspecified() || ip.is_multicast() {
            return false;
        }
        if let IpAddr::V4(v4) = ip
            && v4.is_broadcast()
        {
            return false;
        }
        if ip.is_loopback() && !self.config.allow_loopback_peers {
            return false;
        }
        if is_private(ip) && !self.config.allow_private_peers {
            return false;
        }
        true
    }

    /// Handles a datagram from a UDP client.
    pub async fn handle_datagram(
        self: &Arc<Self>,
        data: &[u8],
        five: FiveTuple,
        sink: &ClientSink,
    ) {
        if is_channel_data(data) {
            match ChannelData::decode(data) {
                Ok(cd) => self.client_channel_data(&five, cd).await,
                Err(_) => bump(&self.stats.malformed),
            }
            return;
        }
        match Message::decode(data) {
            Ok(msg) => self.dispatch(msg, five, sink.clone()).await,
            Err(e) => {
                tracing::trace!(from = %five.client, error = %e, "malformed STUN dropped");
                bump(&self.stats.malformed);
            }
        }
    }

    /// Routes a decoded message: data-path indications inline, requests on a task (they may
    /// look a key up in the store).
    pub async fn dispatch(self: &Arc<Self>, msg: Message, five: FiveTuple, sink: ClientSink) {
        match (msg.class, msg.method) {
            (Class::Indication, Method::SEND) => self.send_indication(&five, &msg).await,
            (Class::Request, _) => {
                let core = Arc::clone(self);
                tokio::spawn(async move {
                    if let Some(reply) = core.request(&msg, five, &sink).await {
                        sink.send(Bytes::from(reply));
                    }
                });
            }
            // Responses and other indications are not for a server.
            _ => bump(&self.stats.malformed),
        }
    }

    /// Relays a client's ChannelData to the bound peer.
    pub async fn client_channel_data(&self, five: &FiveTuple, cd: ChannelData<'_>) {
        let Some(alloc) = self.allocation(five) else {
            bump(&self.stats.no_permission);
            return;
        };
        let now = Instant::now();
        let peer = {
            let s = alloc.state();
            match s.channel_peer(cd.channel, now) {
                Some(p) if s.permitted(p.ip(), now) => Some(p),
                _ => None,
            }
        };
        match peer {
            Some(p) => self.relay_out(&alloc, cd.data, p).await,
            None => bump(&self.stats.no_permission),
        }
    }

    /// Sends to a peer, waiting for socket buffer space (backpressure instead of drops).
    async fn relay_out(&self, alloc: &Allocation, data: &[u8], peer: SocketAddr) {
        let Some(relay) = alloc.relay_for(peer) else {
            bump(&self.stats.no_permission);
            return;
        };
        if relay.socket.send_to(data, peer).await.is_ok() {
            bump(&self.stats.relayed_out);
            self.stats
                .relayed_bytes
                .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn send_indication(&self, five: &FiveTuple, msg: &Message) {
        let Some(alloc) = self.allocation(five) else {
            bump(&self.stats.no_permission);
            return;
        };
        let (Some(peer), Some(data)) = (msg.peer_addresses().first().copied(), msg.data()) else {
            bump(&self.stats.malformed);
            return;
        };
        if !alloc.state().permitted(peer.ip(), Instant::now()) {
            bump(&self.stats.no_permission);
            return;
        }
        // The permission covers the IP; the port must still not be one of our listeners.
        if !self.peer_allowed(peer) {
            bump(&self.stats.forbidden_peers);
            return;
        }
        self.relay_out(&alloc, data, peer).await;
    }

    fn challenge(&self, msg: &Message, code: u16) -> Message {
        let nonce = self
            .nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .issue(unix_now(), rand::random());
        msg.error_response(code)
            .with(Attribute::Realm(self.realm.clone()))
            .with(Attribute::Nonce(nonce))
    }

    /// The long-term key of `username`: REST credentials when configured and the name has the
    /// `expiry:user` form, else the SIP user's stored MD5 HA1.
    async fn key_for(&self, username: &str) -> Option<[u8; 16]> {
        if let Some(secret) = &self.config.rest_secret
            && let Some((expiry, _)) = parse_rest_username(username)
        {
            if expiry < unix_now() {
                return None;
            }
            let password = rest_password(secret.as_bytes(), username);
            return Some(long_term_key(username, &self.realm, &password));
        }
        let now = Instant::now();
        if let Some((k, at)) = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(username)
            && now.duration_since(*at) < KEY_CACHE_TTL
        {
            return Some(*k);
        }
        let user = match username.split_once('@') {
            Some((u, d)) if d.eq_ignore_ascii_case(&self.domain) => u,
            Some(_) => return None,
            None => username,
        };
        let ha1 = match self.store.ha1(user, &self.domain, Algorithm::Md5).await {
            Ok(Some(h)) => h,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "TURN key lookup failed");
                return None;
            }
        };
        let mut key = [0u8; 16];
        hex::decode_to_slice(ha1.trim(), &mut key).ok()?;
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= KEY_CACHE_MAX {
            keys.clear();
        }
        keys.insert(username.to_owned(), (key, now));
        Some(key)
    }

    /// RFC 8489 §9.2.4: the long-term credential checks.
    async fn authenticate(&self, msg: &Message) -> Result<Authed, Message> {
        if !msg.has_integrity() {
            bump(&self.stats.unauthenticated);
            return Err(self.challenge(msg, 401));
        }
        let (Some(username), Some(realm), Some(nonce)) = (msg.username(), msg.realm(), msg.nonce())
        else {
            return Err(msg.error_response(400));
        };
        if realm != self.realm {
            bump(&self.stats.unauthenticated);
            return Err(self.challenge(msg, 401));
        }
        let status =
            self.nonces
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .check(nonce, None, unix_now());
        if status != NonceStatus::Valid {
            bump(&self.stats.unauthenticated);
            return Err(self.challenge(msg, 438));
        }
        let Some(key) = self.key_for(username).await else {
            bump(&self.stats.unauthenticated);
            return Err(self.challenge(msg, 401));
        };
        if msg.verify_integrity(&key).is_err() {
            bump(&self.stats.integrity_failures);
            return Err(self.challenge(msg, 401));
        }
        Ok(Authed {
            username: username.to_owned(),
            key,
        })
    }

    fn encode(msg: &Message, request: &Message, key: Option<&[u8; 16]>) -> Vec<u8> {
        let fingerprint = request
            .attributes
            .iter()
            .any(|a| matches!(a, Attribute::Fingerprint(_)));
        let mut msg = msg.clone();
        msg.push(Attribute::Software(SOFTWARE.to_owned()));
        match key {
            Some(k) => msg.encode(Integrity::Sha1(k), fingerprint),
            None => msg.encode(Integrity::None, fingerprint),
        }
    }

    /// Answers one request (`None`: nothing to send).
    pub async fn request(
        self: &Arc<Self>,
        msg: &Message,
        five: FiveTuple,
        sink: &ClientSink,
    ) -> Option<Vec<u8>> {
        if msg.method == Method::BINDING {
            let unknown = msg.unknown_comprehension_required();
            let reply = if unknown.is_empty() {
                msg.response(Class::Success)
                    .with(Attribute::XorMappedAddress(five.client))
            } else {
                msg.error_response(420)
                    .with(Attribute::UnknownAttributes(unknown))
            };
            return Some(Core::encode(&reply, msg, None));
        }
        if !matches!(
            msg.method,
            Method::ALLOCATE | Method::REFRESH | Method::CREATE_PERMISSION | Method::CHANNEL_BIND
        ) {
            return Some(Core::encode(&msg.error_response(400), msg, None));
        }
        let auth = match self.authenticate(msg).await {
            Ok(a) => a,
            Err(reply) => return Some(Core::encode(&reply, msg, None)),
        };
        let existing = self.allocation(&five);
        if let Some(a) = &existing
            && a.username != auth.username
        {
            return Some(Core::encode(&msg.error_response(441), msg, Some(&auth.key)));
        }
        let unknown = msg.unknown_comprehension_required();
        if !unknown.is_empty() {
            let reply = msg
                .error_response(420)
                .with(Attribute::UnknownAttributes(unknown));
            return Some(Core::encode(&reply, msg, Some(&auth.key)));
        }
        let reply = match msg.method {
            Method::ALLOCATE => self.allocate(msg, five, sink, &auth, existing).await,
            Method::REFRESH => self.refresh(msg, &five, existing),
            Method::CREATE_PERMISSION => self.create_permission(msg, existing),
            _ => self.channel_bind(msg, existing),
        };
        Some(Core::encode(&reply, msg, Some(&auth.key)))
    }

    fn lifetime(&self, requested: Option<u32>) -> u32 {
        let c = &self.config;
        requested
            .unwrap_or(c.default_lifetime_secs)
            .clamp(c.default_lifetime_secs, c.max_lifetime_secs)
    }

    async fn allocate(
        self: &Arc<Self>,
        msg: &Message,
        five: FiveTuple,
        sink: &ClientSink,
        auth: &Authed,
        existing: Option<Arc<Allocation>>,
    ) -> Message {
        if let Some(a) = existing {
            return repeat_or_mismatch(msg, &a, &five);
        }
        match msg.requested_transport() {
            None => return msg.error_response(400),
            Some(TRANSPORT_UDP) => {}
            Some(_) => return msg.error_response(442),
        }
        if msg.get(types::DONT_FRAGMENT).is_some() {
            return msg
                .error_response(420)
                .with(Attribute::UnknownAttributes(vec![types::DONT_FRAGMENT]));
        }
        let even = match msg.get(types::EVEN_PORT) {
            Some(Attribute::EvenPort(reserve)) => Some(*reserve),
            _ => None,
        };
        let token = msg.attributes.iter().find_map(|a| match a {
            Attribute::ReservationToken(t) => Some(*t),
            _ => None,
        });
        if token.is_some() && even.is_some() {
            return msg.error_response(400);
        }
        // Families (RFC 8656 §7.2): REQUESTED-ADDRESS-FAMILY picks one (IPv4 by default);
        // ADDITIONAL-ADDRESS-FAMILY (IPv6 only) asks for IPv4 + IPv6, and an IPv6 relay we
        // cannot offer leaves just the IPv4 one; asking both ways at once is a 400.
        let requested = match msg.get(types::REQUESTED_ADDRESS_FAMILY) {
            Some(Attribute::RequestedAddressFamily(f)) => Some(*f),
            _ => None,
        };
        let additional = match msg.get(types::ADDITIONAL_ADDRESS_FAMILY) {
            Some(Attribute::AdditionalAddressFamily(f)) => Some(*f),
            _ => None,
        };
        let relay_ip = |f: u8| match f {
            FAMILY_V4 => self.relay_v4,
            FAMILY_V6 => self.relay_v6,
            _ => None,
        };
        let (primary, second) = match (requested, additional) {
            (Some(_), Some(_)) => return msg.error_response(400),
            (None, Some(FAMILY_V6)) => (FAMILY_V4, self.relay_v6),
            (None, Some(_)) => return msg.error_response(400),
            (Some(f), None) => (f, None),
            (None, None) => (FAMILY_V4, None),
        };
        let Some(primary_ip) = relay_ip(primary) else {
            return msg.error_response(440);
        };
        {
            let t = self.tables();
            if t.per_user.get(&auth.username).copied().unwrap_or(0) >= self.config.user_quota {
                return msg.error_response(486);
            }
            if t.allocations.len() >= self.config.max_allocations {
                return msg.error_response(508);
            }
        }
        let mut new_token = None;
        let relay = match (token, even) {
            (Some(t), _) => match self.take_reservation(&t) {
                Some(s) => s,
                None => return msg.error_response(508),
            },
            (None, Some(true)) => match self.bind_pair(primary_ip).await {
                Some((s, next)) => {
                    let t: [u8; 8] = rand::random();
                    self.reservations()
                        .insert(t, (next, Instant::now() + RESERVATION_LIFETIME));
                    new_token = Some(t);
                    s
                }
                None => return msg.error_response(508),
            },
            (None, even) => match self.bind_relay(primary_ip, even.is_some()).await {
                Some(s) => s,
                None => return msg.error_response(508),
            },
        };
        let Ok(relay_addr) = relay.local_addr() else {
            return msg.error_response(500);
        };
        let mut relays = vec![Relay {
            socket: Arc::new(relay),
            addr: relay_addr,
        }];
        if let Some(ip) = second {
            // The additional family is best effort: without a free port there, IPv4 only.
            if let Some(s) = self.bind_relay(ip, false).await
                && let Ok(addr) = s.local_addr()
            {
                relays.push(Relay {
                    socket: Arc::new(s),
                    addr,
                });
            }
        }
        let lifetime = self.lifetime(msg.lifetime());
        let alloc = Arc::new(Allocation {
            username: auth.username.clone(),
            relays,
            sink: sink.clone(),
            tid: msg.transaction_id,
            state: Mutex::new(AllocState {
                expires: Instant::now() + Duration::from_secs(u64::from(lifetime)),
                permissions: HashMap::new(),
                channels: HashMap::new(),
                by_peer: HashMap::new(),
            }),
            tasks: Mutex::new(Vec::new()),
        });
        {
            let mut t = self.tables();
            // Re-check under the lock: a concurrent Allocate (a UDP retransmission of this very
            // request, processed on another task) may have won.
            if let Some(winner) = t.allocations.get(&five) {
                return repeat_or_mismatch(msg, winner, &five);
            }
            if t.per_user.get(&auth.username).copied().unwrap_or(0) >= self.config.user_quota {
                return msg.error_response(486);
            }
            if t.allocations.len() >= self.config.max_allocations {
                return msg.error_response(508);
            }
            t.allocations.insert(five, Arc::clone(&alloc));
            *t.per_user.entry(auth.username.clone()).or_insert(0) += 1;
        }
        let tasks: Vec<JoinHandle<()>> = (0..alloc.relays.len())
            .map(|i| tokio::spawn(peer_loop(Arc::clone(self), Arc::clone(&alloc), i)))
            .collect();
        *alloc.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        bump(&self.stats.allocations);
        tracing::debug!(client = %five.client, user = %auth.username, relay = %relay_addr, relays = alloc.relays.len(), "TURN allocation");
        let mut reply = msg.response(Class::Success);
        for a in alloc.relayed_attributes() {
            reply.push(a);
        }
        reply.push(Attribute::Lifetime(lifetime));
        if let Some(t) = new_token {
            reply.push(Attribute::ReservationToken(t));
        }
        reply.with(Attribute::XorMappedAddress(five.client))
    }

    fn reservations(&self) -> MutexGuard<'_, HashMap<[u8; 8], (UdpSocket, Instant)>> {
        self.reservations.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_reservation(&self, token: &[u8; 8]) -> Option<UdpSocket> {
        let now = Instant::now();
        let mut r = self.reservations();
        r.retain(|_, (_, e)| *e > now);
        r.remove(token).map(|(s, _)| s)
    }

    /// An even port and the odd one after it (EVEN-PORT with the R bit, RFC 8656 §7.2).
    async fn bind_pair(&self, relay_ip: IpAddr) -> Option<(UdpSocket, UdpSocket)> {
        let (lo, hi) = (self.config.min_port, self.config.max_port);
        if hi <= lo {
            return None;
        }
        for _ in 0..64 {
            let port = rand::random_range(lo..hi) & !1;
            if port < lo {
                continue;
            }
            let Ok(a) = UdpSocket::bind(SocketAddr::new(relay_ip, port)).await else {
                continue;
            };
            if let Ok(b) = UdpSocket::bind(SocketAddr::new(relay_ip, port + 1)).await {
                enlarge_buffers(&a, RELAY_BUFFER);
                enlarge_buffers(&b, RELAY_BUFFER);
                return Some((a, b));
            }
        }
        None
    }

    async fn bind_relay(&self, relay_ip: IpAddr, even: bool) -> Option<UdpSocket> {
        let (lo, hi) = (self.config.min_port, self.config.max_port);
        for _ in 0..64 {
            let mut port = rand::random_range(lo..=hi);
            if even && port % 2 == 1 {
                port = if port > lo { port - 1 } else { port + 1 };
                if port > hi || port % 2 == 1 {
                    continue;
                }
            }
            if let Ok(s) = UdpSocket::bind(SocketAddr::new(relay_ip, port)).await {
                enlarge_buffers(&s, RELAY_BUFFER);
                return Some(s);
            }
        }
        None
    }

    fn refresh(
        &self,
        msg: &Message,
        five: &FiveTuple,
        existing: Option<Arc<Allocation>>,
    ) -> Message {
        let Some(alloc) = existing else {
            return msg.error_response(437);
        };
        if let Some(Attribute::RequestedAddressFamily(f)) = msg.get(types::REQUESTED_ADDRESS_FAMILY)
            && !alloc.has_family(*f)
        {
            return msg.error_response(443);
        }
        if msg.lifetime() == Some(0) {
            self.remove(five);
            return msg.response(Class::Success).with(Attribute::Lifetime(0));
        }
        let lifetime = self.lifetime(msg.lifetime());
        alloc.state().expires = Instant::now() + Duration::from_secs(u64::from(lifetime));
        msg.response(Class::Success)
            .with(Attribute::Lifetime(lifetime))
    }

    /// Checks a peer address for ChannelBind (`ip_only`: for CreatePermission, whose port is
    /// ignored): `Err` with the error code.
    fn check_peer(&self, alloc: &Allocation, peer: SocketAddr, ip_only: bool) -> Result<(), u16> {
        if alloc.relay_for(peer).is_none() {
            return Err(443);
        }
        let allowed = if ip_only {
            self.ip_allowed(peer.ip())
        } else {
            self.peer_allowed(peer)
        };
        if !allowed {
            bump(&self.stats.forbidden_peers);
            return Err(403);
        }
        Ok(())
    }

    fn create_permission(&self, msg: &Message, existing: Option<Arc<Allocation>>) -> Message {
        let Some(alloc) = existing else {
            return msg.error_response(437);
        };
        let peers = msg.peer_addresses();
        if peers.is_empty() {
            return msg.error_response(400);
        }
        for p in &peers {
            if let Err(code) = self.check_peer(&alloc, *p, true) {
                return msg.error_response(code);
            }
        }
        let until = Instant::now() + PERMISSION_LIFETIME;
        let mut s = alloc.state();
        for p in peers {
            s.permissions.insert(p.ip(), until);
        }
        msg.response(Class::Success)
    }

    fn channel_bind(&self, msg: &Message, existing: Option<Arc<Allocation>>) -> Message {
        let Some(alloc) = existing else {
            return msg.error_response(437);
        };
        let (Some(channel), Some(peer)) =
            (msg.channel_number(), msg.peer_addresses().first().copied())
        else {
            return msg.error_response(400);
        };
        if !valid_channel(channel) {
            return msg.error_response(400);
        }
        if let Err(code) = self.check_peer(&alloc, peer, false) {
            return msg.error_response(code);
        }
        let now = Instant::now();
        let mut s = alloc.state();
        let bound_peer = s.channels.get(&channel).map(|(p, _)| *p);
        let bound_channel = s.by_peer.get(&peer).copied();
        if bound_peer.is_some_and(|p| p != peer) || bound_channel.is_some_and(|c| c != channel) {
            return msg.error_response(400);
        }
        s.channels.insert(channel, (peer, now + CHANNEL_LIFETIME));
        s.by_peer.insert(peer, channel);
        s.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        msg.response(Class::Success)
    }
}

/// The answer to an Allocate on a 5-tuple that already has an allocation: the same success for a
/// retransmission of the request that created it, 437 Allocation Mismatch otherwise.
fn repeat_or_mismatch(msg: &Message, alloc: &Allocation, five: &FiveTuple) -> Message {
    if alloc.tid != msg.transaction_id {
        return msg.error_response(437);
    }
    let remaining = alloc
        .state()
        .expires
        .saturating_duration_since(Instant::now())
        .as_secs();
    let mut reply = msg.response(Class::Success);
    for a in alloc.relayed_attributes() {
        reply.push(a);
    }
    reply
        .with(Attribute::Lifetime(
            u32::try_from(remaining).unwrap_or(u32::MAX),
        ))
        .with(Attribute::XorMappedAddress(five.client))
}

/// Receives from peers on relay `index` of an allocation and forwards what the permissions allow.
async fn peer_loop(core: Arc<Core>, alloc: Arc<Allocation>, index: usize) {
    let Some(socket) = alloc.relays.get(index).map(|r| Arc::clone(&r.socket)) else {
        return;
    };
    let mut buf = vec![0u8; 65536];
    let stream = alloc.sink.is_stream();
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface as recv errors on Linux: keep going.
                tracing::trace!(error = %e, "relay socket receive error");
                continue;
            }
        };
        let data = &buf[..n];
        let now = Instant::now();
        let channel = {
            let s = alloc.state();
            if !s.permitted(peer.ip(), now) {
                drop(s);
                bump(&core.stats.peer_dropped);
                continue;
            }
            s.by_peer
                .get(&peer)
                .copied()
                .filter(|c| s.channel_peer(*c, now) == Some(peer))
        };
        let out = match channel {
            Some(c) => ChannelData::encode(c, data, stream),
            None => Message::new(Class::Indication, Method::DATA, TransactionId::random())
                .with(Attribute::XorPeerAddress(peer))
                .with(Attribute::Data(Bytes::copy_from_slice(data)))
                .encode(Integrity::None, false),
        };
        if alloc.sink.send_async(Bytes::from(out)).await {
            bump(&core.stats.relayed_in);
            core.stats
                .relayed_bytes
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Serves the shared UDP socket.
pub async fn udp_loop(core: Arc<Core>, socket: Arc<UdpSocket>) {
    let Ok(server) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::trace!(error = %e, "TURN UDP receive error");
                continue;
            }
        };
        let five = FiveTuple {
            client,
            server,
            transport: ClientTransport::Udp,
        };
        let sink = ClientSink::Udp(Arc::clone(&socket), client);
        core.handle_datagram(&buf[..n], five, &sink).await;
    }
}
