//! MSRP relay (RFC 4976): AUTH with the SIP credentials, Use-Path, forwarding between sessions.
//!
//! Clients connect over TCP (`msrp://`) or TLS (`msrps://`, the lab certificate) and AUTH with
//! digest MD5 against the users table; the 200 carries `Use-Path` with a relay URI owning a fresh
//! session id, tied to that connection. Requests are routed by To-Path (RFC 4976 §6): a request
//! whose first URI is a session URI of the connection it arrived on goes *out* (the next URI must
//! be another session of this relay; its client's connection gets it), and a request whose first
//! URI is some other live session goes *in* to that session's client, whoever sent it. Transaction
//! responses are hop-by-hop: the relay answers 200 once a SEND is queued for the next hop, and
//! turns a downstream error response or timeout into a failure REPORT to the sender.
//!
//! When the hop after a client's session is not this relay, the relay opens a TCP connection to
//! it (`msrp://` only: a peer endpoint without a relay; its TLS certificate could not be checked)
//! and reuses it for that host and port; relay-to-relay chains are not supported.
//!
//! Each connection has a reader task and a writer task; the writer's queue is bounded in bytes
//! (`max_buffered_bytes`), and a reader that forwards into a full queue waits, so a slow receiver
//! slows its sender down instead of making the relay buffer without bound.

mod auth;
mod conn;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::authn::Authenticator;
use crate::ca::LabCa;
use crate::config::{LabConfig, first_listener_ip, service_port};
use crate::store::Store;

/// The relay's default TCP port (RFC 4975 §15.2).
pub const DEFAULT_MSRP_PORT: u16 = 2855;
/// The relay's default TLS port.
pub const DEFAULT_MSRPS_PORT: u16 = 2856;

/// The `[msrp]` section: the MSRP relay's listeners and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MsrpRelayConfig {
    /// Run the relay; default true.
    pub enabled: bool,
    /// The TCP (`msrp://`) port; default 2855, `0` = any free port. When every SIP listener asks
    /// for an ephemeral port (as in-process tests do) the default is `0` too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The TLS (`msrps://`) port; default 2856, `0` = any free port (same ephemeral rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    /// The host put in the relay's URIs; default `public_host`, else the first SIP listener's IP,
    /// else (for a wildcard listener) the first non-loopback local address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Most simultaneous client connections; default 1024 (more are closed at once, counted).
    pub max_connections: usize,
    /// Bytes queued toward one connection before its senders have to wait; default 4 MiB.
    pub max_buffered_bytes: usize,
    /// Largest chunk body accepted; default 1 MiB (larger ones get 413 and the connection closes).
    pub max_chunk_bytes: usize,
    /// A connection that sends nothing for this long is closed; default 300 s.
    pub idle_timeout_secs: u64,
    /// Shortest AUTH `Expires` granted (shorter requests get 423 with `Min-Expires`); default 60.
    pub min_expires: u32,
    /// Longest AUTH `Expires` granted (longer requests are shortened); default 86400.
    pub max_expires: u32,
    /// `Expires` granted when the AUTH asks for none; default 3600.
    pub default_expires: u32,
    /// Relay sessions (successful AUTHs) one connection may hold; default 16.
    pub max_sessions_per_connection: usize,
    /// Reads from each connection are paced to this many bytes per second (a slow link for
    /// experiments and tests); default 0 = unlimited.
    pub rate_limit_bytes_per_sec: u64,
    /// Seconds a forwarded SEND waits for the next hop's response before the relay sends the
    /// sender a 408 failure REPORT (RFC 4975 §7.1.1); default 30.
    pub transaction_timeout_secs: u64,
}

impl Default for MsrpRelayConfig {
    fn default() -> MsrpRelayConfig {
        MsrpRelayConfig {
            enabled: true,
            port: None,
            tls_port: None,
            host: None,
            max_connections: 1024,
            max_buffered_bytes: 4 << 20,
            max_chunk_bytes: 1 << 20,
            idle_timeout_secs: 300,
            min_expires: 60,
            max_expires: 86_400,
            default_expires: 3600,
            max_sessions_per_connection: 16,
            rate_limit_bytes_per_sec: 0,
            transaction_timeout_secs: 30,
        }
    }
}

impl MsrpRelayConfig {
    /// The TCP and TLS sockets the relay binds, given the SIP listeners (the first one's IP).
    pub fn bind_addrs(&self, sip_listeners: &[SocketAddr]) -> (SocketAddr, SocketAddr) {
        let ip = first_listener_ip(sip_listeners);
        let pick = |configured, default| service_port(configured, default, sip_listeners);
        (
            SocketAddr::new(ip, pick(self.port, DEFAULT_MSRP_PORT)),
            SocketAddr::new(ip, pick(self.tls_port, DEFAULT_MSRPS_PORT)),
        )
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MsrpRelayError {
    /// A listener could not be bound.
    #[error("msrp relay: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration could not be built from the lab certificate.
    #[error("msrp relay TLS: {0}")]
    Tls(#[from] crate::ca::CaError),
    /// A setting is out of range.
    #[error("msrp relay: invalid [msrp] setting: {0}")]
    Config(&'static str),
}

/// Counters of the relay's work and of the bad input it refused.
#[derive(Debug, Default)]
pub struct MsrpRelayStats {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) tls_failures: AtomicU64,
    pub(crate) auth_ok: AtomicU64,
    pub(crate) auth_failed: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) forwarded_bytes: AtomicU64,
    pub(crate) failure_reports: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) bad_requests: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) no_session: AtomicU64,
    pub(crate) forbidden: AtomicU64,
    pub(crate) idle_closed: AtomicU64,
    pub(crate) stray_responses: AtomicU64,
}

/// A snapshot of [`MsrpRelayStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsrpRelayCounters {
    /// Connections accepted.
    pub connections: u64,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: u64,
    /// Successful AUTHs (relay sessions issued).
    pub auth_ok: u64,
    /// AUTHs answered with a challenge after carrying wrong or stale credentials, or refused.
    pub auth_failed: u64,
    /// Requests (SEND, REPORT) forwarded.
    pub forwarded: u64,
    /// Body bytes forwarded.
    pub forwarded_bytes: u64,
    /// Failure REPORTs the relay generated for downstream errors and timeouts.
    pub failure_reports: u64,
    /// Streams closed because they could not be framed (garbage, oversized headers or chunks).
    pub bad_frames: u64,
    /// Requests answered 400 (or dropped when unanswerable) as malformed.
    pub bad_requests: u64,
    /// Chunks refused with 413.
    pub too_large: u64,
    /// Requests for a session this relay does not have (481).
    pub no_session: u64,
    /// Requests refused with 403 (an AUTH for another relay, too many sessions).
    pub forbidden: u64,
    /// Connections closed for being idle.
    pub idle_closed: u64,
    /// Responses that matched no forwarded request.
    pub stray_responses: u64,
}

impl MsrpRelayStats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> MsrpRelayCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MsrpRelayCounters {
            connections: g(&self.connections),
            connections_refused: g(&self.connections_refused),
            tls_failures: g(&self.tls_failures),
            auth_ok: g(&self.auth_ok),
            auth_failed: g(&self.auth_failed),
            forwarded: g(&self.forwarded),
            forwarded_bytes: g(&self.forwarded_bytes),
            failure_reports: g(&self.failure_reports),
            bad_frames: g(&self.bad_frames),
            bad_requests: g(&self.bad_requests),
            too_large: g(&self.too_large),
            no_session: g(&self.no_session),
            forbidden: g(&self.forbidden),
            idle_closed: g(&self.idle_closed),
            stray_responses: g(&self.stray_responses),
        }
    }
}

/// A running MSRP relay.
pub struct MsrpRelay {
    addrs: Vec<(String, SocketAddr)>,
    shared: Arc<conn::Relay>,
    shutdown: watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
}

impl MsrpRelay {
    /// Starts the relay when `[msrp]` enables it.
    pub async fn start(
        config: &LabConfig,
        store: &Store,
        ca: &LabCa,
        authn: Arc<Authenticator>,
    ) -> Result<Option<MsrpRelay>, MsrpRelayError> {
        let mc = &config.msrp;
        if !mc.enabled {
            return Ok(None);
        }
        if mc.max_connections == 0 {
            return Err(MsrpRelayError::Config("max_connections must be at least 1"));
        }
        if mc.max_chunk_bytes == 0 || mc.max_buffered_bytes == 0 {
            return Err(MsrpRelayError::Config(
                "max_chunk_bytes and max_buffered_bytes must be positive",
            ));
        }
        if mc.min_expires > mc.max_expires {
            return Err(MsrpRelayError::Config(
                "min_expires must not exceed max_expires",
            ));
        }
        let sip: Vec<SocketAddr> = config
            .listen
            .udp
            .iter()
            .chain(&config.listen.tcp)
            .chain(&config.listen.tls)
            .copied()
            .collect();
        let (tcp_bind, tls_bind) = mc.bind_addrs(&sip);
        let tcp = TcpListener::bind(tcp_bind).await?;
        let tls = TcpListener::bind(tls_bind).await?;
        let tcp_addr = tcp.local_addr()?;
        let tls_addr = tls.local_addr()?;
        let host = relay_host(mc, config.public_host.as_deref(), tcp_addr.ip());
        let mut names = vec![host.clone(), config.domain.clone(), "localhost".to_owned()];
        names.extend(config.aliases.iter().cloned());
        names.extend(config.public_host.iter().cloned());
        if !tcp_addr.ip().is_unspecified() {
            names.push(uri_host(tcp_addr.ip()));
        } else if let Ok(ifs) = if_addrs::get_if_addrs() {
            names.extend(ifs.iter().map(|i| uri_host(i.ip())));
        }
        let settings = conn::Settings {
            host,
            names,
            tcp_port: tcp_addr.port(),
            tls_port: tls_addr.port(),
            max_buffered_bytes: mc.max_buffered_bytes,
            max_chunk_bytes: mc.max_chunk_bytes,
            idle_timeout: Duration::from_secs(mc.idle_timeout_secs.max(1)),
            min_expires: mc.min_expires,
            max_expires: mc.max_expires,
            default_expires: mc.default_expires.clamp(mc.min_expires, mc.max_expires),
            max_sessions_per_connection: mc.max_sessions_per_connection.max(1),
            rate_limit: mc.rate_limit_bytes_per_sec,
            transaction_timeout: Duration::from_secs(mc.transaction_timeout_secs.max(1)),
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let auth = auth::RelayAuth::new(
            store.clone(),
            authn.realm().to_owned(),
            config.domain.clone(),
            Duration::from_secs(config.auth.nonce_lifetime_secs.max(1)),
        );
        let shared = conn::Relay::new(
            settings,
            auth,
            Arc::new(Semaphore::new(mc.max_connections)),
            shutdown_rx,
        );
        let acceptor = TlsAcceptor::from(ca.server_config()?);
        let accept_tasks = vec![
            tokio::spawn(conn::accept_loop(Arc::clone(&shared), tcp, None)),
            tokio::spawn(conn::accept_loop(Arc::clone(&shared), tls, Some(acceptor))),
        ];
        tracing::info!(
            tcp = %tcp_addr,
            tls = %tls_addr,
            host = %shared.settings.host,
            "MSRP relay listening"
        );
        Ok(Some(MsrpRelay {
            addrs: vec![
                ("msrp".to_owned(), tcp_addr),
                ("msrps".to_owned(), tls_addr),
            ],
            shared,
            shutdown,
            accept_tasks,
        }))
    }

    /// `(key, address)` pairs for the ready line, e.g. `("msrp", 127.0.0.1:2855)`.
    pub fn ready_fields(&self) -> Vec<(String, SocketAddr)> {
        self.addrs.clone()
    }

    /// The relay's own URI for clients to AUTH to: `msrps://host:port;tcp` (TLS) or
    /// `msrp://host:port;tcp`.
    pub fn relay_uri(&self, tls: bool) -> String {
        self.shared.relay_uri(tls).to_string()
    }

    /// The relay's counters.
    pub fn counters(&self) -> MsrpRelayCounters {
        self.shared.stats.snapshot()
    }

    /// Open client connections.
    pub fn connection_count(&self) -> usize {
        self.shared.connection_count()
    }

    /// Live relay sessions (successful, unexpired AUTHs on open connections).
    pub fn session_count(&self) -> usize {
        self.shared.session_count()
    }

    /// Closes the listeners and every relayed connection.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        for t in &self.accept_tasks {
            t.abort();
        }
        self.shared.close_all().await;
    }
}

impl Drop for MsrpRelay {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.accept_tasks {
            t.abort();
        }
    }
}

/// An IP address as written in a URI host (IPv6 in brackets).
fn uri_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The host for the relay's URIs: `[msrp] host`, `public_host`, the bound IP, or for a wildcard
/// bind the first non-loopback local address (loopback when there is none).
fn relay_host(mc: &MsrpRelayConfig, public_host: Option<&str>, bound: IpAddr) -> String {
    if let Some(h) = mc.host.as_deref().or(public_host) {
        return h.to_owned();
    }
    if !bound.is_unspecified() {
        return uri_host(bound);
    }
    let local = if_addrs::get_if_addrs().ok().and_then(|ifs| {
        ifs.into_iter()
            .map(|i| i.ip())
            .find(|ip| !ip.is_loopback() && ip.is_ipv4() == bound.is_ipv4())
    });
    match local {
        Some(ip) => uri_host(ip),
        None if bound.is_ipv4() => "127.0.0.1".to_owned(),
        None => "[::1]".to_owned(),
    }
}
