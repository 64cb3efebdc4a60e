//! The bridge between `tandem_proto` URIs and the resolver / Contact building.

use std::net::IpAddr;

use tandem_proto::Transport;
use tandem_proto::msg::{Host, Scheme, Uri};

use crate::NetError;
use crate::resolve::{ResolveTarget, TargetHost};

/// What RFC 3263 needs from a `sip:`/`sips:` URI.
pub(crate) fn resolve_target(uri: &Uri) -> Result<ResolveTarget, NetError> {
    let secure = match uri.scheme {
        Scheme::Sip => false,
        Scheme::Sips => true,
        _ => {
            return Err(NetError::Resolve(format!(
                "cannot route to a {}: URI",
                uri.scheme
            )));
        }
    };
    let transport = match uri.param("transport") {
        None => None,
        Some(_) => Some(uri.transport_param().ok_or(NetError::NoTarget)?),
    };
    let host = match &uri.host {
        Host::V4(ip) => TargetHost::Ip(IpAddr::V4(*ip)),
        Host::V6(ip) => TargetHost::Ip(IpAddr::V6(*ip)),
        Host::Domain(d) if d.is_empty() => {
            return Err(NetError::Resolve("URI without a host".into()));
        }
        Host::Domain(d) => TargetHost::Name(d.clone()),
    };
    Ok(ResolveTarget {
        host,
        port: uri.port,
        transport,
        secure,
    })
}

impl ResolveTarget {
    /// The resolution input for a `sip:`/`sips:` URI (host, port, `;transport=`, scheme).
    pub fn from_uri(uri: &Uri) -> Result<Self, NetError> {
        resolve_target(uri)
    }
}

/// `user` escaped for the user part of a SIP URI (RFC 3261 §25.1 `user`).
fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `sip:user@host:port` with `;transport=` for stream transports.
pub(crate) fn contact(host: &str, port: u16, transport: Transport, user: Option<&str>) -> Uri {
    let host = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(IpAddr::V4(ip)) => Host::V4(ip),
        Ok(IpAddr::V6(ip)) => Host::V6(ip),
        Err(_) => Host::Domain(host.to_string()),
    };
    let user = user.map(escape_user);
    let mut uri = Uri::sip(user.as_deref(), host, Some(port));
    if transport != Transport::Udp {
        uri.set_param("transport", Some(transport.uri_param()));
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_user() {
        assert_eq!(escape_user("alice"), "alice");
        assert_eq!(escape_user("a b@c"), "a%20b%40c");
    }
}
