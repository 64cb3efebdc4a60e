//! Free ports on 127.0.0.1, free for both UDP and TCP.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::{Mutex, PoisonError};

/// Ports already handed out by this process, so parallel tests do not get the same one twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn both_free(port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
}

fn claim(ports: &[u16]) -> bool {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let set = guard.get_or_insert_with(HashSet::new);
    if ports.iter().any(|p| set.contains(p)) {
        return false;
    }
    set.extend(ports.iter().copied());
    true
}

/// A port on 127.0.0.1 that is free for both UDP and TCP right now and not handed out before by this process.
pub fn free_port() -> u16 {
    free_port_block(1)
}

/// The first of `n` consecutive ports on 127.0.0.1, each free for both UDP and TCP (e.g. baresip's SIP port + 1 for
/// TLS, or SIPp's media port + 2 for video).
pub fn free_port_block(n: u16) -> u16 {
    let n = n.max(1);
    loop {
        // Let the kernel pick an ephemeral UDP port, then check the block starting there.
        let Ok(sock) = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        let Ok(addr) = sock.local_addr() else {
            continue;
        };
        drop(sock);
        let first = addr.port();
        let Some(last) = first.checked_add(n - 1) else {
            continue;
        };
        let ports: Vec<u16> = (first..=last).collect();
        if ports.iter().all(|&p| both_free(p)) && claim(&ports) {
            return first;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_and_distinct() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, a);
        let _u = UdpSocket::bind(addr).unwrap();
        let _t = TcpListener::bind(addr).unwrap();
        let block = free_port_block(3);
        for p in block..block + 3 {
            assert!(both_free(p), "port {p} of the block is not free");
        }
    }
}
