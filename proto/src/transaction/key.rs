//! Transaction matching keys (RFC 3261 §17.1.3, §17.2.3) and Via-based addressing
//! (§18.2.1, §18.2.2, RFC 3581).

use std::net::{IpAddr, SocketAddr};

use crate::msg::{Host, Method, Request, Via};
use crate::{Flow, Transport};

/// The branch prefix that marks an RFC 3261 branch (§8.1.1.7).
pub(crate) const MAGIC_COOKIE: &str = "z9hG4bK";

/// Matches a response to a client transaction: top Via branch + CSeq method (§17.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    /// The branch, lower-cased (tokens compare case-insensitively, §7.3.1).
    pub(crate) branch: String,
    /// The CSeq method.
    pub(crate) method: Method,
}

impl ClientKey {
    /// The key for `branch` and `method`.
    pub(crate) fn new(branch: &str, method: Method) -> Self {
        Self {
            branch: branch.to_ascii_lowercase(),
            method,
        }
    }
}

/// Matches a request to a server transaction (§17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ServerKey {
    /// A request whose top Via branch has the magic cookie: branch, sent-by and method
    /// (ACK is keyed as INVITE so that it finds the INVITE's transaction).
    Rfc3261 {
        /// Lower-cased branch.
        branch: String,
        /// Lower-cased `host:port` of the top Via (port 0 when absent).
        sent_by: String,
        /// The request method, ACK replaced by INVITE.
        method: Method,
    },
    /// RFC 2543 fallback for a branch without the magic cookie (boxed: rare, and large).
    Rfc2543(Box<Rfc2543Key>),
}

/// The RFC 2543 matching fields of a request (§17.2.3): Request-URI, To tag, From tag,
/// Call-ID, CSeq number and method, and the whole top Via. An ACK is keyed with method
/// ACK and the To tag of the final response the transaction sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Rfc2543Key {
    /// The Request-URI as printed.
    uri: String,
    /// The To tag.
    to_tag: Option<String>,
    /// The From tag.
    from_tag: Option<String>,
    /// The Call-ID.
    call_id: String,
    /// The CSeq number.
    cseq: u32,
    /// The method (INVITE for CANCEL's lookup of its INVITE; ACK for ACKs).
    method: Method,
    /// The top Via as printed.
    via: String,
}

impl ServerKey {
    /// The key of `request` (received with top Via `via`, before `received`/`rport`
    /// were added), or `None` when mandatory headers are unreadable.
    pub(crate) fn of(request: &Request, via: &Via) -> Option<ServerKey> {
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        match via.branch() {
            Some(branch) if branch.starts_with(MAGIC_COOKIE) => Some(ServerKey::Rfc3261 {
                branch: branch.to_ascii_lowercase(),
                sent_by: sent_by_key(via),
                method,
            }),
            _ => Some(ServerKey::Rfc2543(Box::new(Rfc2543Key {
                uri: request.uri.to_string(),
                to_tag: request.headers.to().ok()?.tag().map(str::to_owned),
                from_tag: request.headers.from().ok()?.tag().map(str::to_owned),
                call_id: request.headers.call_id().ok()?.to_owned(),
                cseq: request.headers.cseq().ok()?.seq,
                method: request.method.clone(),
                via: via.to_string(),
            }))),
        }
    }

    /// The same key with another method (CANCEL → INVITE lookup).
    pub(crate) fn with_method(&self, method: Method) -> ServerKey {
        let mut key = self.clone();
        match &mut key {
            ServerKey::Rfc3261 { method: m, .. } => *m = method,
            ServerKey::Rfc2543(k) => k.method = method,
        }
        key
    }

    /// For an RFC 2543 INVITE key: the key its ACK will have once a final response
    /// with To tag `to_tag` was sent. `None` for RFC 3261 keys (the INVITE key matches).
    pub(crate) fn ack_key(&self, to_tag: Option<&str>) -> Option<ServerKey> {
        match self {
            ServerKey::Rfc3261 { .. } => None,
            ServerKey::Rfc2543(k) => {
                let mut k = (**k).clone();
                k.method = Method::Ack;
                k.to_tag = to_tag.map(str::to_owned);
                Some(ServerKey::Rfc2543(Box::new(k)))
            }
        }
    }
}

/// `host:port` of a Via, lower-cased, with port 0 standing for "absent".
fn sent_by_key(via: &Via) -> String {
    format!(
        "{}:{}",
        via.host.to_string().to_ascii_lowercase(),
        via.port.unwrap_or(0)
    )
}

/// The IP address a Via host denotes, if it is an IP literal.
fn host_ip(host: &Host) -> Option<IpAddr> {
    match host {
        Host::V4(ip) => Some(IpAddr::V4(*ip)),
        Host::V6(ip) => Some(IpAddr::V6(*ip)),
        Host::Domain(name) => name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok(),
    }
}

/// Adds `received` and `rport` to the top Via of a request that arrived (over any
/// transport) from `source` (RFC 3261 §18.2.1, RFC 3581 §4). Returns whether the Via changed.
pub(crate) fn stamp_via(via: &mut Via, source: SocketAddr) -> bool {
    let mut changed = false;
    let rport_requested = via.rport().is_some();
    if rport_requested {
        let port = source.port().to_string();
        via.set_param("rport", Some(&port));
        changed = true;
    }
    if rport_requested || host_ip(&via.host) != Some(source.ip()) {
        let ip = source.ip().to_string();
        via.set_param("received", Some(&ip));
        changed = true;
    }
    changed
}

/// Where responses for a request with top Via `via` go (RFC 3261 §18.2.2, RFC 3581 §4):
/// over a stream, back on `arrival` (the connection it came on); over UDP, to an IP
/// `maddr` with the sent-by port (a `maddr` naming a host cannot be resolved here and is
/// ignored), else to the `received` address (else the sent-by IP) and the `rport` port
/// (else the sent-by port). `arrival` is `None` for stateless routing: then the transport
/// comes from the Via and a domain name without `received` cannot be routed (`None`).
pub(crate) fn response_flow(via: &Via, arrival: Option<Flow>) -> Option<Flow> {
    let transport = match arrival {
        Some(flow) if flow.transport.is_reliable() => return Some(flow),
        Some(flow) => flow.transport,
        None => via.transport.parse::<Transport>().ok()?,
    };
    let sent_by_port = via.port.unwrap_or_else(|| transport.default_port());
    if let Some(maddr) = via
        .param("maddr")
        .flatten()
        .and_then(|m| m.trim_start_matches('[').trim_end_matches(']').parse().ok())
    {
        return Some(Flow::new(transport, SocketAddr::new(maddr, sent_by_port)));
    }
    let ip = via
        .received()
        .and_then(|r| r.trim_start_matches('[').trim_end_matches(']').parse().ok())
        .or_else(|| host_ip(&via.host))
        .or_else(|| arrival.map(|f| f.remote.ip()))?;
    let port = match via.rport() {
        Some(Some(port)) => port,
        _ => sent_by_port,
    };
    Some(Flow::new(transport, SocketAddr::new(ip, port)))
}
