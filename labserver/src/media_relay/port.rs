//! Relay sockets: the advertised address per IP family, and RTP/RTCP socket pairs from the
//! configured port range (or OS-chosen ports).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

use super::RelayError;

/// Kernel receive/send buffer asked for on each relay socket (bursts of a few hundred packets).
const SOCKET_BUFFER: usize = 512 * 1024;
/// How many OS-chosen ports are tried to find an even/odd RTP/RTCP pair before taking any two.
const PAIR_TRIES: usize = 16;

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip` (IPv4-mapped IPv6 addresses count as IPv6 sockets).
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

/// How the relay's address of one family is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertised {
    /// A fixed address (`[relay] ipv4`/`ipv6`, or the SIP listener's); sockets bind it when it
    /// is local, else the unspecified address (a 1:1 NAT in front of the lab).
    Fixed(IpAddr),
    /// The listener is unspecified: the address of the interface that routes to the peer.
    Route(Family),
}

impl Advertised {
    /// The address to put in SDP for a side at `peer` (when known).
    pub fn address_for(self, peer: Option<IpAddr>) -> IpAddr {
        match self {
            Advertised::Fixed(ip) => ip,
            Advertised::Route(family) => peer
                .filter(|p| Family::of(*p) == family)
                .and_then(route_source)
                .unwrap_or_else(|| first_interface_ip(family)),
        }
    }

    /// The address printed in the ready line.
    pub fn display_ip(self) -> IpAddr {
        match self {
            Advertised::Fixed(ip) => ip,
            Advertised::Route(family) => first_interface_ip(family),
        }
    }
}

/// The local address the kernel would send from to reach `peer` (a connected UDP socket; no
/// packet is sent).
fn route_source(peer: IpAddr) -> Option<IpAddr> {
    let bind = Family::of(peer).unspecified();
    let s = std::net::UdpSocket::bind(SocketAddr::new(bind, 0)).ok()?;
    s.connect(SocketAddr::new(peer, 9)).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The first non-loopback interface address of `family` (loopback when there is none).
pub fn first_interface_ip(family: Family) -> IpAddr {
    let found = if_addrs::get_if_addrs().ok().and_then(|addrs| {
        addrs
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| Family::of(*ip) == family && !ip.is_loopback())
            .find(|ip| match ip {
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                IpAddr::V4(_) => true,
            })
    });
    found.unwrap_or(match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    })
}

/// Hands out socket pairs from `[port_min, port_max]` (round-robin) or OS ports.
#[derive(Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    next: AtomicU32,
}

impl PortPool {
    /// A pool over `min..=max`; `0, 0` = OS-chosen ports.
    pub fn new(min: u16, max: u16) -> PortPool {
        PortPool {
            min,
            max,
            next: AtomicU32::new(0),
        }
    }

    /// An RTP socket on an even port and an RTCP socket on the next one, bound to `ip` (or
    /// the unspecified address of its family when `ip` is not local).
    pub fn pair(
        &self,
        ip: IpAddr,
    ) -> Result<(std::net::UdpSocket, std::net::UdpSocket), RelayError> {
        let ip = if bind(SocketAddr::new(ip, 0)).is_ok() {
            ip
        } else {
            Family::of(ip).unspecified()
        };
        if self.min == 0 {
            return self.os_pair(ip);
        }
        let first = u32::from(self.min + (self.min & 1));
        let last = u32::from(self.max);
        if last < first + 1 {
            return Err(RelayError::NoPorts);
        }
        let pairs = (last - first).div_ceil(2);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % pairs;
        for k in 0..pairs {
            let port = first + ((start + k) % pairs) * 2;
            let (Ok(rtp_port), Ok(rtcp_port)) = (u16::try_from(port), u16::try_from(port + 1))
            else {
                continue;
            };
            let Ok(rtp) = bind(SocketAddr::new(ip, rtp_port)) else {
                continue;
            };
            if let Ok(rtcp) = bind(SocketAddr::new(ip, rtcp_port)) {
                return Ok((rtp, rtcp));
            }
        }
        Err(RelayError::NoPorts)
    }

    fn os_pair(
        &self,
        ip: IpAddr,
    ) -> Result<(std::net::UdpSocket, std::net::UdpSocket), RelayError> {
        for _ in 0..PAIR_TRIES {
            let rtp = bind(SocketAddr::new(ip, 0)).map_err(RelayError::Bind)?;
            let port = rtp.local_addr().map_err(RelayError::Bind)?.port();
            if port % 2 != 0 || port == u16::MAX {
                continue;
            }
            if let Ok(rtcp) = bind(SocketAddr::new(ip, port + 1)) {
                return Ok((rtp, rtcp));
            }
        }
        // No adjacent pair free: any two ports (the SDP always carries a=rtcp).
        let rtp = bind(SocketAddr::new(ip, 0)).map_err(RelayError::Bind)?;
        let rtcp = bind(SocketAddr::new(ip, 0)).map_err(RelayError::Bind)?;
        Ok((rtp, rtcp))
    }
}

/// A non-blocking UDP socket bound to `addr` (IPv6 sockets are IPv6-only).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: a small default buffer only costs drops under bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn os_pairs_are_adjacent_when_possible() {
        let pool = PortPool::new(0, 0);
        let (rtp, rtcp) = pool.pair(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        let (a, b) = (rtp.local_addr().unwrap(), rtcp.local_addr().unwrap());
        assert_eq!(a.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(a.port(), b.port());
    }

    #[test]
    fn range_is_respected_and_exhausts() {
        // Find four free adjacent ports by binding one probe and using the region after it.
        let probe = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let base = probe.local_addr().unwrap().port().saturating_sub(200) & !1;
        drop(probe);
        let pool = PortPool::new(base, base + 3);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut held = Vec::new();
        while let Ok((a, b)) = pool.pair(ip) {
            let (pa, pb) = (
                a.local_addr().unwrap().port(),
                b.local_addr().unwrap().port(),
            );
            assert!(pa >= base && pb <= base + 3 && pa % 2 == 0 && pb == pa + 1);
            held.push((a, b));
            assert!(held.len() <= 2);
        }
        assert!(matches!(pool.pair(ip), Err(RelayError::NoPorts)));
        drop(held);
    }

    #[test]
    fn unknown_local_address_binds_unspecified() {
        let pool = PortPool::new(0, 0);
        let (rtp, _) = pool.pair("192.0.2.77".parse().unwrap()).unwrap();
        assert!(rtp.local_addr().unwrap().ip().is_unspecified());
        assert_eq!(
            Advertised::Fixed("192.0.2.77".parse().unwrap()).address_for(None),
            "192.0.2.77".parse::<IpAddr>().unwrap()
        );
        let routed = Advertised::Route(Family::V4).address_for(Some("127.0.0.1".parse().unwrap()));
        assert_eq!(routed, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
