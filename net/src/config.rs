//! The configuration of an [`Endpoint`](crate::Endpoint).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tandem_proto::transaction::TxConfig;

use crate::DnsConfig;

/// What an endpoint listens on and how it behaves.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// UDP listen addresses (port 0 picks a free port). UDP requests can only be sent
    /// from a bound UDP socket of the destination's address family.
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses; outgoing TCP connections need none.
    pub tcp: Vec<SocketAddr>,
    /// TLS listen addresses; outgoing TLS connections need none.
    pub tls: Vec<SocketAddr>,
    /// The TLS server configuration, required when `tls` is not empty.
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// The TLS client configuration; `None` verifies servers against the system's roots.
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// Host for our Via sent-by and Contact instead of the bound IP (e.g. behind NAT).
    pub public_host: Option<String>,
    /// Transaction timers, limits and the random seed (also used for SRV weights).
    pub tx: TxConfig,
    /// Where DNS questions go.
    pub dns: DnsConfig,
    /// CRLF keep-alive interval on stream connections we open (RFC 5626 §4.4.1).
    pub keepalive: Option<Duration>,
    /// Most stream connections open at once; beyond it new ones are refused.
    pub max_connections: usize,
    /// Stream connections without traffic for this long are closed.
    pub idle_timeout: Duration,
}

impl Default for EndpointConfig {
    /// No listeners, system DNS, no keep-alive, 1024 connections, 300 s idle timeout,
    /// default transaction timers with a random seed.
    fn default() -> Self {
        Self {
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            tls_server: None,
            tls_client: None,
            public_host: None,
            tx: TxConfig {
                seed: rand::random(),
                ..TxConfig::default()
            },
            dns: DnsConfig::System,
            keepalive: None,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A rustls client configuration that trusts the system's root certificates (ring provider).
pub fn default_tls_client() -> Result<Arc<rustls::ClientConfig>, crate::NetError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "loading a system root certificate failed");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::NetError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
