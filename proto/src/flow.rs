//! Where a message came from or goes to: a transport and a remote socket address.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A SIP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS over TCP.
    Tls,
}

impl Transport {
    /// True for stream transports (TCP, TLS), which need no retransmissions.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The transport token used in a Via header (`UDP`, `TCP`, `TLS`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The value of a `transport=` URI parameter (`udp`, `tcp`, `tls`).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The default port for this transport (5060, or 5061 for TLS).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// The error for a transport name that is not UDP, TCP or TLS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SIP transport {0:?}")]
pub struct UnknownTransport(pub String);

impl FromStr for Transport {
    type Err = UnknownTransport;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("udp") {
            Ok(Transport::Udp)
        } else if s.eq_ignore_ascii_case("tcp") {
            Ok(Transport::Tcp)
        } else if s.eq_ignore_ascii_case("tls") {
            Ok(Transport::Tls)
        } else {
            Err(UnknownTransport(s.to_string()))
        }
    }
}

/// A transport and the remote address at its other end (for streams: one connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The transport protocol.
    pub transport: Transport,
    /// The remote socket address.
    pub remote: SocketAddr,
}

impl Flow {
    /// A flow over `transport` to `remote`.
    pub fn new(transport: Transport, remote: SocketAddr) -> Self {
        Self { transport, remote }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.uri_param(), self.remote)
    }
}
