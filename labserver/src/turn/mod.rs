//! STUN (RFC 8489) and TURN (RFC 8656) server: long-term credentials from the SIP accounts, REST credentials.
//!
//! One UDP socket and one TCP listener share `[turn] port` (STUN Binding, TURN over UDP and TCP),
//! a TLS listener serves `tls_port`; every allocation relays over its own UDP socket on
//! `relay_ip` within `[min_port, max_port]`. The long-term key of a SIP user is its stored MD5
//! HA1 (the TURN realm is the SIP realm), so no password is kept anywhere; REST credentials
//! (`expiry:user`, `base64(HMAC-SHA1(rest_secret, username))`) work when `rest_secret` is set.
//! Malformed input, wrong integrity and traffic without a permission are dropped and counted
//! in [`TurnStats`].

mod conn;
mod core;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::authn::Authenticator;
use crate::ca::LabCa;
use crate::config::{LabConfig, first_listener_ip, service_port};
use crate::store::Store;

pub use self::core::FiveTuple;

/// The `[turn]` section: the STUN/TURN listeners, realm and quotas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Run the STUN/TURN server; default true.
    pub enabled: bool,
    /// UDP and TCP port; default 3478, except that when every SIP listener asks for an ephemeral
    /// port (0, as tests do) this one does too. `0` = any free port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// TLS port; default 5349 (ephemeral like `port` in tests); `0` = any free port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    /// Run the TLS listener (with the lab certificate); default true.
    pub tls: bool,
    /// The address the listeners bind; default the IP of the first SIP listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_ip: Option<IpAddr>,
    /// The address relayed transport addresses are allocated on; default the listen IP (or,
    /// when that is unspecified, the first non-loopback local address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_ip: Option<IpAddr>,
    /// The IPv6 address for IPv6 relayed addresses (REQUESTED-ADDRESS-FAMILY IPv6 or
    /// ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2) when `relay_ip` is IPv4; default the first
    /// global (not loopback, not link-local) IPv6 address of this host, if any (else such
    /// requests get 440 Address Family not Supported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_ipv6: Option<IpAddr>,
    /// Lowest relay port; default 49152.
    pub min_port: u16,
    /// Highest relay port; default 65535.
    pub max_port: u16,
    /// Most allocations at once; default 1000 (then 508 Insufficient Capacity).
    pub max_allocations: usize,
    /// Most allocations one user may hold; default 10 (then 486 Allocation Quota Reached).
    pub user_quota: usize,
    /// Allocation lifetime when the client asks for less or nothing; default 600 s.
    pub default_lifetime_secs: u32,
    /// Longest allocation lifetime granted; default 3600 s.
    pub max_lifetime_secs: u32,
    /// How long a nonce is accepted before 438 Stale Nonce; default 600 s.
    pub nonce_lifetime_secs: u64,
    /// Shared secret for REST credentials (draft-uberti-behave-turn-rest); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest_secret: Option<String>,
    /// Relay to loopback peers (127/8, ::1); default false (tests turn it on).
    pub allow_loopback_peers: bool,
    /// Relay to private and link-local peers (RFC 1918, fc00::/7, 169.254/16, fe80::/10);
    /// default true (a lab's clients usually sit on a LAN).
    pub allow_private_peers: bool,
    /// Most TCP/TLS client connections at once; default 1024.
    pub max_connections: usize,
}

impl Default for TurnConfig {
    fn default() -> TurnConfig {
        TurnConfig {
            enabled: true,
            port: None,
            tls_port: None,
            tls: true,
            listen_ip: None,
            relay_ip: None,
            relay_ipv6: None,
            min_port: 49152,
            max_port: 65535,
            max_allocations: 1000,
            user_quota: 10,
            default_lifetime_secs: 600,
            max_lifetime_secs: 3600,
            nonce_lifetime_secs: 600,
            rest_secret: None,
            allow_loopback_peers: false,
            allow_private_peers: true,
            max_connections: 1024,
        }
    }
}

impl TurnConfig {
    /// The `(UDP/TCP, TLS)` sockets to bind, given the SIP listeners.
    pub fn bind_addrs(&self, sip_listeners: &[SocketAddr]) -> (SocketAddr, SocketAddr) {
        let ip = self
            .listen_ip
            .unwrap_or_else(|| first_listener_ip(sip_listeners));
        let pick = |configured, default| service_port(configured, default, sip_listeners);
        (
            SocketAddr::new(ip, pick(self.port, tandem_proto::stun::DEFAULT_PORT)),
            SocketAddr::new(
                ip,
                pick(self.tls_port, tandem_proto::stun::DEFAULT_TLS_PORT),
            ),
        )
    }

    fn validate(&self) -> Result<(), TurnError> {
        if self.min_port == 0 || self.min_port > self.max_port {
            return Err(TurnError::Config(format!(
                "turn: min_port {} and max_port {} do not form a range",
                self.min_port, self.max_port
            )));
        }
        if self.default_lifetime_secs == 0 || self.max_lifetime_secs < self.default_lifetime_secs {
            return Err(TurnError::Config(
                "turn: need 0 < default_lifetime_secs <= max_lifetime_secs".to_owned(),
            ));
        }
        if self.user_quota == 0 || self.max_allocations == 0 {
            return Err(TurnError::Config(
                "turn: user_quota and max_allocations must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Why the STUN/TURN server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    /// A listener could not be bound.
    #[error("turn: {0}")]
    Io(#[from] std::io::Error),
    /// The `[turn]` settings are inconsistent.
    #[error("{0}")]
    Config(String),
    /// The TLS listener could not get the lab certificate.
    #[error("turn: TLS: {0}")]
    Tls(String),
}

/// Counters of what the server did and dropped (monotonic).
#[derive(Debug, Default)]
pub struct TurnStats {
    /// Datagrams/frames that were neither valid STUN nor valid ChannelData.
    pub malformed: AtomicU64,
    /// Requests whose MESSAGE-INTEGRITY did not match the key.
    pub integrity_failures: AtomicU64,
    /// Requests refused for missing or unknown credentials (401) or a stale nonce (438).
    pub unauthenticated: AtomicU64,
    /// Allocations created.
    pub allocations: AtomicU64,
    /// Packets from a client a permission or channel did not allow (dropped).
    pub no_permission: AtomicU64,
    /// Packets from peers without a permission (dropped).
    pub peer_dropped: AtomicU64,
    /// Packets relayed client → peer.
    pub relayed_out: AtomicU64,
    /// Packets relayed peer → client.
    pub relayed_in: AtomicU64,
    /// Payload bytes relayed in both directions.
    pub relayed_bytes: AtomicU64,
    /// Requests refused because the peer address is not allowed (403).
    pub forbidden_peers: AtomicU64,
}

/// A copy of [`TurnStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TurnStatsSnapshot {
    /// See [`TurnStats::malformed`].
    pub malformed: u64,
    /// See [`TurnStats::integrity_failures`].
    pub integrity_failures: u64,
    /// See [`TurnStats::unauthenticated`].
    pub unauthenticated: u64,
    /// See [`TurnStats::allocations`].
    pub allocations: u64,
    /// See [`TurnStats::no_permission`].
    pub no_permission: u64,
    /// See [`TurnStats::peer_dropped`].
    pub peer_dropped: u64,
    /// See [`TurnStats::relayed_out`].
    pub relayed_out: u64,
    /// See [`TurnStats::relayed_in`].
    pub relayed_in: u64,
    /// See [`TurnStats::relayed_bytes`].
    pub relayed_bytes: u64,
    /// See [`TurnStats::forbidden_peers`].
    pub forbidden_peers: u64,
}

impl TurnStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> TurnStatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TurnStatsSnapshot {
            malformed: r(&self.malformed),
            integrity_failures: r(&self.integrity_failures),
            unauthenticated: r(&self.unauthenticated),
            allocations: r(&self.allocations),
            no_permission: r(&self.no_permission),
            peer_dropped: r(&self.peer_dropped),
            relayed_out: r(&self.relayed_out),
            relayed_in: r(&self.relayed_in),
            relayed_bytes: r(&self.relayed_bytes),
            forbidden_peers: r(&self.forbidden_peers),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Binds UDP and TCP on one port. With port 0 the port the kernel picks for UDP may already be
/// taken for TCP (by another program's ephemeral connection), so a fresh pair is tried a few times.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut attempt = 0;
    loop {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && attempt < 16 => {
                tracing::debug!(error = %e, "TURN: TCP port of the UDP socket taken, trying another");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A running STUN/TURN server.
pub struct TurnServer {
    addrs: Vec<(String, SocketAddr)>,
    core: Arc<core::Core>,
    tasks: Vec<JoinHandle<()>>,
}

impl TurnServer {
    /// Starts the server when `[turn]` enables it.
    pub async fn start(
        config: &LabConfig,
        store: &Store,
        ca: &LabCa,
        authn: Arc<Authenticator>,
    ) -> Result<Option<TurnServer>, TurnError> {
        let turn = &config.turn;
        if !turn.enabled {
            return Ok(None);
        }
        turn.validate()?;
        let sip: Vec<SocketAddr> = config
            .listen
            .udp
            .iter()
            .chain(&config.listen.tcp)
            .chain(&config.listen.tls)
            .copied()
            .collect();
        let (main_addr, tls_addr) = turn.bind_addrs(&sip);
        let (udp, tcp) = bind_pair(main_addr).await?;
        core::enlarge_buffers(&udp, core::LISTENER_BUFFER);
        let udp = Arc::new(udp);
        let udp_addr = udp.local_addr()?;
        let tls = if turn.tls {
            let server_config = ca
                .server_config()
                .map_err(|e| TurnError::Tls(e.to_string()))?;
            let listener = TcpListener::bind(tls_addr).await?;
            Some((listener, tokio_rustls::TlsAcceptor::from(server_config)))
        } else {
            None
        };
        let relay_ip = match turn.relay_ip {
            Some(ip) => ip,
            None if !udp_addr.ip().is_unspecified() => udp_addr.ip(),
            None => crate::config::local_ips()
                .into_iter()
                .find(|ip| !ip.is_loopback() && ip.is_ipv4() == udp_addr.is_ipv4())
                .unwrap_or(udp_addr.ip()),
        };
        let relay_ipv6 = match turn.relay_ipv6 {
            Some(ip) => Some(ip),
            None if relay_ip.is_ipv6() => None,
            None => crate::config::local_ips().into_iter().find(|ip| match ip {
                IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xFFC0) != 0xFE80,
                IpAddr::V4(_) => false,
            }),
        };
        let mut relay_ips = vec![relay_ip];
        relay_ips.extend(relay_ipv6.filter(|ip| ip.is_ipv6() && relay_ip.is_ipv4()));
        let mut own = vec![udp_addr];
        let mut addrs = vec![("turn".to_owned(), udp_addr)];
        if let Some((l, _)) = &tls {
            let a = l.local_addr()?;
            own.push(a);
            addrs.push(("turns".to_owned(), a));
        }
        let core = Arc::new(core::Core::new(
            turn.clone(),
            authn.realm().to_owned(),
            config.domain.clone(),
            &relay_ips,
            own,
            store.clone(),
        ));
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(core::udp_loop(Arc::clone(&core), udp)));
        tasks.push(tokio::spawn(conn::accept_tcp(Arc::clone(&core), tcp)));
        if let Some((listener, acceptor)) = tls {
            tasks.push(tokio::spawn(conn::accept_tls(
                Arc::clone(&core),
                listener,
                acceptor,
            )));
        }
        let sweeper = Arc::clone(&core);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                sweeper.sweep();
            }
        }));
        tracing::info!(turn = %udp_addr, relay = %relay_ip, relay_ipv6 = ?relay_ipv6, "STUN/TURN server listening");
        Ok(Some(TurnServer { addrs, core, tasks }))
    }

    /// `(key, address)` pairs for the ready line, e.g. `("turn", 127.0.0.1:3478)`.
    pub fn ready_fields(&self) -> Vec<(String, SocketAddr)> {
        self.addrs.clone()
    }

    /// The counters of relayed and dropped traffic.
    pub fn stats(&self) -> TurnStatsSnapshot {
        self.core.stats.snapshot()
    }

    /// How many allocations exist now.
    pub fn allocation_count(&self) -> usize {
        self.core.allocation_count()
    }

    /// Closes the listeners and frees every allocation.
    pub async fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
        self.core.clear();
        let s = self.stats();
        tracing::info!(
            allocations = s.allocations,
            relayed_out = s.relayed_out,
            relayed_in = s.relayed_in,
            malformed = s.malformed,
            integrity_failures = s.integrity_failures,
            no_permission = s.no_permission,
            "STUN/TURN server stopped"
        );
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.core.clear();
    }
}
