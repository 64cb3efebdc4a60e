//! SDP inspection and rewriting for the relay: ICE detection and stripping, private-address
//! tests, the per-stream remote addresses a side announces, and the rewrite that puts the
//! relay's addresses into `c=`/`m=`/`a=rtcp`.

use std::net::{IpAddr, SocketAddr};

use tandem_proto::sdp::{Attribute, Connection, SessionDescription};

/// The ICE attributes (RFC 8839) removed from an anchored call's SDP, so both ends do plain
/// RTP to the relay.
pub use tandem_proto::sdp::ice::{ICE_ATTRIBUTES, strip_ice};

/// True for an address a NAT would hide (see [`crate::nat::is_private_ip`]).
pub use crate::nat::is_private_ip as is_private;

/// True when the SDP carries ICE (an `ice-ufrag` at session or media level, or candidates).
pub fn has_ice(sdp: &SessionDescription) -> bool {
    let ice = |a: &Attribute| a.name.eq_ignore_ascii_case("ice-ufrag") || a.name == "candidate";
    sdp.attributes.iter().any(ice) || sdp.media.iter().any(|m| m.attributes.iter().any(ice))
}

/// True for a media protocol carried over UDP (RTP/AVP, RTP/SAVP(F), UDP/TLS/RTP/SAVP(F),
/// plain `udp`), which the relay can forward; TCP-based ones (MSRP, TCP/RTP) are left alone.
pub fn is_udp_protocol(protocol: &str) -> bool {
    let p = protocol.to_ascii_uppercase();
    !p.starts_with("TCP") && (p.starts_with("RTP/") || p.starts_with("UDP"))
}

/// True when m-line `index` is one the relay anchors: an active stream over UDP.
pub fn is_relayed(sdp: &SessionDescription, index: usize) -> bool {
    sdp.media
        .get(index)
        .is_some_and(|m| m.port != 0 && is_udp_protocol(&m.protocol))
}

/// The address a side's SDP announces for a relayed stream, corrected for NAT: when the
/// announced address is a private one that differs from the address the side's signalling
/// comes from (`flow_ip`, same family), the flow's address is used with the announced port
/// (the NAT usually keeps it; latching fixes it otherwise).
pub fn corrected(addr: SocketAddr, flow_ip: Option<IpAddr>) -> SocketAddr {
    match flow_ip {
        Some(flow)
            if flow.is_ipv4() == addr.is_ipv4()
                && addr.ip() != flow
                && !addr.ip().is_unspecified()
                && is_private(addr.ip()) =>
        {
            SocketAddr::new(flow, addr.port())
        }
        _ => addr,
    }
}

/// Where a side wants RTP and RTCP of m-line `index` (before latching): the `c=`/`m=`
/// address, and `a=rtcp` (port and optional address) or RTP port + 1 for RTCP; with
/// `a=rtcp-mux` RTCP goes to the RTP address. `None` for a rejected stream or a hold address.
pub fn stream_targets(
    sdp: &SessionDescription,
    index: usize,
    flow_ip: Option<IpAddr>,
) -> Option<(SocketAddr, SocketAddr)> {
    let rtp = sdp.media_remote_addr(index)?;
    let m = sdp.media.get(index)?;
    let rtcp = if m.has_attribute("rtcp-mux") {
        rtp
    } else {
        match m.attribute("rtcp").and_then(parse_rtcp_attribute) {
            Some((port, Some(ip))) => SocketAddr::new(ip, port),
            Some((port, None)) => SocketAddr::new(rtp.ip(), port),
            None => SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1)),
        }
    };
    Some((corrected(rtp, flow_ip), corrected(rtcp, flow_ip)))
}

/// Parses an `a=rtcp` value (RFC 3605): `port [IN IP4|IP6 address]`.
pub fn parse_rtcp_attribute(value: &str) -> Option<(u16, Option<IpAddr>)> {
    let mut parts = value.split_whitespace();
    let port: u16 = parts.next()?.parse().ok()?;
    let ip = match (parts.next(), parts.next(), parts.next()) {
        (Some(_net), Some(_ty), Some(addr)) => addr.parse().ok(),
        _ => None,
    };
    Some((port, ip))
}

/// The relay's addresses one side is told about for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAddrs {
    /// Where the side sends RTP (and everything else muxed on it).
    pub rtp: SocketAddr,
    /// Where the side sends RTCP when it is not muxed.
    pub rtcp: SocketAddr,
}

/// Puts the relay's addresses into the SDP a side receives: for each relayed m-line whose
/// entry in `addrs` is `Some`, `m=` port, media-level `c=` and `a=rtcp`; the session-level
/// `c=` becomes the relay's (streams left alone keep their old address at media level). ICE
/// attributes are removed; everything else (codecs, crypto, fingerprints) is untouched.
pub fn rewrite(sdp: &mut SessionDescription, addrs: &[Option<StreamAddrs>]) {
    strip_ice(sdp);
    let old_session_c = sdp.connection.clone();
    let mut session_ip = None;
    for (i, m) in sdp.media.iter_mut().enumerate() {
        match addrs.get(i).copied().flatten() {
            Some(a) if m.port != 0 && is_udp_protocol(&m.protocol) => {
                m.port = a.rtp.port();
                m.connection = Some(Connection::from_ip(a.rtp.ip()));
                let rtcp_value = format!(
                    "{} IN {} {}",
                    a.rtcp.port(),
                    if a.rtcp.is_ipv6() { "IP6" } else { "IP4" },
                    a.rtcp.ip()
                );
                let muxed = m.has_attribute("rtcp-mux");
                match m.attributes.iter_mut().find(|a| a.name == "rtcp") {
                    Some(attr) => attr.value = Some(rtcp_value),
                    None if !muxed => m.attributes.push(Attribute::new("rtcp", rtcp_value)),
                    None => {}
                }
                session_ip.get_or_insert(a.rtp.ip());
            }
            _ => {
                if m.connection.is_none() {
                    m.connection.clone_from(&old_session_c);
                }
            }
        }
    }
    if let Some(ip) = session_ip {
        sdp.connection = Some(Connection::from_ip(ip));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\n\
        a=ice-options:trickle\r\n\
        m=audio 40000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n\
        a=candidate:1 1 UDP 2130706431 192.168.1.10 40000 typ host\r\na=end-of-candidates\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n\
        a=sendrecv\r\n\
        m=message 2855 TCP/MSRP *\r\na=path:msrp://192.168.1.10:2855/abc;tcp\r\n\
        m=video 0 RTP/AVP 96\r\n";

    #[test]
    fn private_ranges() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.5.5",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.5", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ice_is_detected_and_stripped_but_crypto_kept() {
        let mut sdp = SessionDescription::parse(OFFER).unwrap();
        assert!(has_ice(&sdp));
        strip_ice(&mut sdp);
        assert!(!has_ice(&sdp));
        let text = sdp.to_string();
        for gone in ["ice-", "candidate", "end-of-candidates"] {
            assert!(!text.contains(gone), "{gone} left in {text}");
        }
        assert!(text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80"));
        assert!(text.contains("a=sendrecv"));
    }

    #[test]
    fn targets_are_corrected_to_the_flow() {
        let sdp = SessionDescription::parse(OFFER).unwrap();
        let flow: IpAddr = "198.51.100.7".parse().unwrap();
        let (rtp, rtcp) = stream_targets(&sdp, 0, Some(flow)).unwrap();
        assert_eq!(rtp, sa("198.51.100.7:40000"));
        assert_eq!(rtcp, sa("198.51.100.7:40001"));
        // Same address as the flow, or another family: unchanged.
        let (rtp, _) = stream_targets(&sdp, 0, Some("192.168.1.10".parse().unwrap())).unwrap();
        assert_eq!(rtp, sa("192.168.1.10:40000"));
        let (rtp, _) = stream_targets(&sdp, 0, Some("2001:db8::1".parse().unwrap())).unwrap();
        assert_eq!(rtp, sa("192.168.1.10:40000"));
        assert!(stream_targets(&sdp, 2, Some(flow)).is_none());
        assert!(is_relayed(&sdp, 0));
        assert!(!is_relayed(&sdp, 1));
        assert!(!is_relayed(&sdp, 2));
    }

    #[test]
    fn rtcp_attribute_and_mux() {
        assert_eq!(parse_rtcp_attribute("53020"), Some((53020, None)));
        assert_eq!(
            parse_rtcp_attribute("53020 IN IP6 2001:db8::5"),
            Some((53020, Some("2001:db8::5".parse().unwrap())))
        );
        assert_eq!(parse_rtcp_attribute("x"), None);
        let text = "v=0\r\no=- 1 1 IN IP4 203.0.113.1\r\ns=-\r\nc=IN IP4 203.0.113.1\r\nt=0 0\r\n\
            m=audio 5000 RTP/AVP 0\r\na=rtcp:6000 IN IP4 203.0.113.2\r\n\
            m=audio 7000 RTP/AVP 0\r\na=rtcp-mux\r\n";
        let sdp = SessionDescription::parse(text).unwrap();
        let (_, rtcp) = stream_targets(&sdp, 0, None).unwrap();
        assert_eq!(rtcp, sa("203.0.113.2:6000"));
        let (rtp, rtcp) = stream_targets(&sdp, 1, None).unwrap();
        assert_eq!(rtp, rtcp);
    }

    #[test]
    fn rewrite_puts_the_relay_in_and_leaves_the_rest() {
        let mut sdp = SessionDescription::parse(OFFER).unwrap();
        let relay = StreamAddrs {
            rtp: "[2001:db8::9]:30000".parse().unwrap(),
            rtcp: "[2001:db8::9]:30001".parse().unwrap(),
        };
        rewrite(&mut sdp, &[Some(relay), None, None]);
        let text = sdp.to_string();
        let again = SessionDescription::parse(&text).unwrap();
        assert_eq!(
            again.media_remote_addr(0),
            Some("[2001:db8::9]:30000".parse().unwrap())
        );
        assert_eq!(
            again.media[0].attribute("rtcp"),
            Some("30001 IN IP6 2001:db8::9")
        );
        // The MSRP stream keeps its own address at media level; the rejected one stays rejected.
        assert_eq!(
            again.media_connection(1).and_then(Connection::ip),
            Some("192.168.1.10".parse().unwrap())
        );
        assert_eq!(again.media[2].port, 0);
        assert!(!has_ice(&again));
        assert!(text.contains("a=crypto:1"));
        assert!(text.contains("m=audio 30000 RTP/SAVP 0 101"));
    }
}
