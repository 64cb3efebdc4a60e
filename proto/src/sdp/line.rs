//! Pieces of an RTP m-line that the audio and the video offer/answer read and write alike:
//! the RTCP address (RFC 3605 `a=rtcp`, RFC 5761 `a=rtcp-mux`) and the empty line.

use std::net::{IpAddr, SocketAddr};

use super::{Attribute, Direction, MediaDescription};

/// An empty m-line: no formats, connection, bandwidths or attributes.
pub(crate) fn empty_media(media: &str, port: u16, protocol: &str) -> MediaDescription {
    MediaDescription {
        media: media.to_owned(),
        port,
        num_ports: None,
        protocol: protocol.to_owned(),
        formats: Vec::new(),
        connection: None,
        bandwidths: Vec::new(),
        attributes: Vec::new(),
        other_fields: Vec::new(),
    }
}

/// Writes our RTCP and direction attributes, the last ones of a line.
///
/// An offer carries `a=rtcp` (when `rtcp_port` is set) next to `a=rtcp-mux`, so a peer that
/// does not multiplex knows where our RTCP goes (RFC 5761 §5.1.3); an answer that agreed to
/// multiplexing carries only `a=rtcp-mux`.
pub(crate) fn push_rtcp_and_direction(
    m: &mut MediaDescription,
    rtcp_port: Option<u16>,
    rtcp_mux: bool,
    direction: Direction,
    offering: bool,
) {
    if let Some(port) = rtcp_port
        && (offering || !rtcp_mux)
    {
        m.attributes.push(Attribute::new("rtcp", port.to_string()));
    }
    if rtcp_mux {
        m.attributes.push(Attribute::flag("rtcp-mux"));
    }
    m.attributes.push(Attribute::flag(direction.as_str()));
}

/// What one side's m-line says about where its RTCP goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RtcpLine {
    /// `a=rtcp` port and optional address (RFC 3605).
    attr: Option<(u16, Option<IpAddr>)>,
    /// Whether the line has `a=rtcp-mux` (RFC 5761).
    pub mux: bool,
}

impl RtcpLine {
    /// Reads `a=rtcp` and `a=rtcp-mux` from an m-line's attributes.
    pub fn read(attrs: &[Attribute]) -> Self {
        RtcpLine {
            attr: attrs
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case("rtcp"))
                .and_then(|a| a.value.as_deref())
                .and_then(parse_rtcp_attr),
            mux: attrs
                .iter()
                .any(|a| a.name.eq_ignore_ascii_case("rtcp-mux")),
        }
    }

    /// Where to send RTCP for a stream whose RTP goes to `rtp`: the RTP address when
    /// multiplexed, the `a=rtcp` port (and address, unless unspecified), else RTP port + 1.
    pub fn remote(&self, rtp: Option<SocketAddr>, rtcp_mux: bool) -> Option<SocketAddr> {
        let rtp = rtp?;
        if rtcp_mux {
            return Some(rtp);
        }
        match self.attr {
            Some((port, ip)) => {
                let ip = ip.filter(|ip| !ip.is_unspecified()).unwrap_or(rtp.ip());
                Some(SocketAddr::new(ip, port))
            }
            None => rtp
                .port()
                .checked_add(1)
                .map(|p| SocketAddr::new(rtp.ip(), p)),
        }
    }
}

/// `a=rtcp:port [nettype addrtype address]` (RFC 3605 §2.1).
fn parse_rtcp_attr(value: &str) -> Option<(u16, Option<IpAddr>)> {
    let mut f = value.split_ascii_whitespace();
    let port = f.next()?.parse().ok()?;
    let ip = match (f.next(), f.next(), f.next()) {
        (Some(_), Some(_), Some(addr)) => addr.parse().ok(),
        _ => None,
    };
    Some((port, ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_address_follows_mux_attr_and_port_plus_one() {
        let rtp = Some(SocketAddr::from(([192, 0, 2, 1], 4000)));
        let attrs = vec![Attribute::new("rtcp", "4005 IN IP4 192.0.2.9")];
        let line = RtcpLine::read(&attrs);
        assert!(!line.mux);
        assert_eq!(line.remote(rtp, true), rtp);
        assert_eq!(
            line.remote(rtp, false),
            Some(SocketAddr::from(([192, 0, 2, 9], 4005)))
        );
        let unspecified = RtcpLine::read(&[Attribute::new("rtcp", "4005 IN IP4 0.0.0.0")]);
        assert_eq!(
            unspecified.remote(rtp, false),
            Some(SocketAddr::from(([192, 0, 2, 1], 4005)))
        );
        let bare = RtcpLine::read(&[Attribute::flag("rtcp-mux")]);
        assert!(bare.mux);
        assert_eq!(
            bare.remote(rtp, false),
            Some(SocketAddr::from(([192, 0, 2, 1], 4001)))
        );
        let top = Some(SocketAddr::from(([192, 0, 2, 1], u16::MAX)));
        assert_eq!(bare.remote(top, false), None);
        assert_eq!(bare.remote(None, true), None);
        assert_eq!(
            RtcpLine::read(&[Attribute::new("rtcp", "x")]),
            RtcpLine::default()
        );
    }
}
