//! The user agent's configuration: where it listens, which transport, timers and its RNG seed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tandem_net::DnsConfig;
use tandem_proto::Transport;
use tandem_proto::transaction::TxConfig;

/// Configuration of a [`UserAgent`](crate::UserAgent).
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// Local bind address for the SIP listener (port 0: any free port).
    pub listen: SocketAddr,
    /// The transport we listen on and send with (every account of this UA uses it).
    pub transport: Transport,
    /// Host put in Via/Contact/SDP instead of the bound IP (e.g. when bound to 0.0.0.0).
    /// When `None` and the bind IP is unspecified, the IP of the route towards `route_hint`
    /// (else the default route, else loopback) is used.
    pub public_host: Option<String>,
    /// An address the UA mostly talks to (registrar/proxy), used to pick our local IP.
    pub route_hint: Option<IpAddr>,
    /// TLS client configuration (trusted roots); `None`: the driver's default roots.
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// DNS resolution for RFC 3263.
    pub dns: DnsConfig,
    /// Transaction timers (T1, T2, T4, …); its seed is replaced by one derived from `seed`.
    pub tx: TxConfig,
    /// Seed of the RNG for tags, Call-IDs, branches, cnonces and SDP session ids.
    pub seed: u64,
    /// The User-Agent header value.
    pub user_agent: String,
    /// CRLF keep-alive interval on our outgoing stream connections.
    pub keepalive: Option<Duration>,
    /// How long a BYE, CANCEL or un-REGISTER may take at shutdown before we give up on it.
    pub shutdown_timeout: Duration,
    /// Offer new incoming calls while a call is up (call waiting); false: answer them
    /// 486 Busy Here.
    pub call_waiting: bool,
    /// Follow REFERs from peers (be transferred, RFC 3515); false: answer them 603 Decline.
    pub accept_transfers: bool,
    /// The SQLite history file (messages, calls); `None`: no history is kept.
    pub history: Option<PathBuf>,
    /// Answer CPIM messages that ask for `positive-delivery` with a delivery notification
    /// (RFC 5438), sent as the known account of the recipient AoR.
    pub auto_delivery_imdn: bool,
}

impl Default for UaConfig {
    fn default() -> Self {
        UaConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            transport: Transport::Udp,
            public_host: None,
            route_hint: None,
            tls_client: None,
            dns: DnsConfig::System,
            tx: TxConfig::default(),
            seed: rand::random(),
            user_agent: format!("Tandem/{}", env!("CARGO_PKG_VERSION")),
            keepalive: None,
            shutdown_timeout: Duration::from_secs(5),
            call_waiting: true,
            accept_transfers: true,
            history: None,
            auto_delivery_imdn: true,
        }
    }
}

/// The local IP used to reach `hint` (or the default route), found by connecting a UDP
/// socket (no packet is sent); loopback when there is no route.
pub(crate) fn local_ip_toward(hint: Option<IpAddr>) -> IpAddr {
    let probe = |target: IpAddr| -> Option<IpAddr> {
        let bind: SocketAddr = match target {
            IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
        };
        let sock = std::net::UdpSocket::bind(bind).ok()?;
        sock.connect(SocketAddr::new(target, 9)).ok()?;
        let ip = sock.local_addr().ok()?.ip();
        (!ip.is_unspecified()).then_some(ip)
    };
    if let Some(ip) = hint.and_then(probe) {
        return ip;
    }
    probe(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}
