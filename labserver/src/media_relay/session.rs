//! One anchored call: relay sockets per stream and side, latching, and the forwarding tasks.
//!
//! Each stream (m-line) has two components (RTP, RTCP), each a [`Link`]: one socket facing the
//! caller (side A) and, per callee branch, one socket facing that branch (side B). A packet
//! that arrives on A's socket from A goes out of the active branch's socket to that branch;
//! a packet from the active branch goes out of A's socket to A. Every socket latches onto the
//! first source that sends to it and re-latches only after that source has been silent for
//! [`RELATCH_SILENCE`]; other sources are dropped and counted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::port::PortPool;
use super::sdp::StreamAddrs;
use super::{RelayError, Side, Stats};

/// How long the latched source must be silent before another source may take its place.
pub const RELATCH_SILENCE: Duration = Duration::from_secs(3);
/// Largest datagram forwarded (anything longer is truncated by the kernel and dropped here).
const MAX_DATAGRAM: usize = 65_535;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a relay socket's side is.
#[derive(Debug, Default, Clone, Copy)]
struct Peer {
    /// From the side's SDP (NAT-corrected), used until a packet arrives.
    expected: Option<SocketAddr>,
    /// The source the socket latched onto.
    latched: Option<SocketAddr>,
    /// When the latched source last sent.
    last_rx: Option<Instant>,
}

/// One UDP socket of the relay facing one side.
#[derive(Debug)]
pub(crate) struct RelaySocket {
    socket: UdpSocket,
    /// The address the side is told to send to.
    advertised: SocketAddr,
    peer: Mutex<Peer>,
}

impl RelaySocket {
    fn new(std: std::net::UdpSocket, advertised_ip: IpAddr) -> Result<RelaySocket, RelayError> {
        let port = std.local_addr().map_err(RelayError::Bind)?.port();
        let socket = UdpSocket::from_std(std).map_err(RelayError::Bind)?;
        Ok(RelaySocket {
            socket,
            advertised: SocketAddr::new(advertised_ip, port),
            peer: Mutex::new(Peer::default()),
        })
    }

    /// Where packets for this side go now: the latched source, else the SDP's address.
    fn destination(&self) -> Option<SocketAddr> {
        let p = lock(&self.peer);
        p.latched.or(p.expected)
    }

    /// The side's SDP names `addr`: when that is a new address (a re-INVITE moving the
    /// media), the latch is dropped so packets follow the new address until the side sends.
    fn set_expected(&self, addr: Option<SocketAddr>) {
        let mut p = lock(&self.peer);
        if p.expected.is_some() && p.expected != addr {
            p.latched = None;
            p.last_rx = None;
        }
        p.expected = addr;
    }

    /// Latching: true when a packet from `src` is accepted.
    fn accept(&self, src: SocketAddr, now: Instant, stats: &Stats) -> bool {
        let mut p = lock(&self.peer);
        match p.latched {
            Some(l) if l == src => {}
            None => p.latched = Some(src),
            Some(_) => {
                let silent = p
                    .last_rx
                    .is_none_or(|t| now.saturating_duration_since(t) >= RELATCH_SILENCE);
                if !silent {
                    stats.dropped_foreign.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                p.latched = Some(src);
                stats.relatches.fetch_add(1, Ordering::Relaxed);
            }
        }
        p.last_rx = Some(now);
        true
    }
}

/// One component of a stream: the caller's socket and the active branch's socket.
#[derive(Debug)]
struct Link {
    a: Arc<RelaySocket>,
    active_b: Mutex<Option<Arc<RelaySocket>>>,
}

/// A socket pair (RTP, RTCP) facing one side.
#[derive(Debug, Clone)]
struct Pair {
    rtp: Arc<RelaySocket>,
    rtcp: Arc<RelaySocket>,
}

impl Pair {
    fn allocate(ports: &PortPool, bind_ip: IpAddr, advertised: IpAddr) -> Result<Pair, RelayError> {
        let (rtp, rtcp) = ports.pair(bind_ip)?;
        Ok(Pair {
            rtp: Arc::new(RelaySocket::new(rtp, advertised)?),
            rtcp: Arc::new(RelaySocket::new(rtcp, advertised)?),
        })
    }

    fn addrs(&self) -> StreamAddrs {
        StreamAddrs {
            rtp: self.rtp.advertised,
            rtcp: self.rtcp.advertised,
        }
    }

    fn set_expected(&self, targets: Option<(SocketAddr, SocketAddr)>) {
        self.rtp.set_expected(targets.map(|t| t.0));
        self.rtcp.set_expected(targets.map(|t| t.1));
    }
}

/// Aborts its tasks when dropped (so a session's sockets close with it).
#[derive(Debug, Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// One stream (m-line) of the call.
#[derive(Debug)]
struct Stream {
    rtp: Arc<Link>,
    rtcp: Arc<Link>,
    _a_tasks: Tasks,
}

/// A callee branch (fork) of the call.
#[derive(Debug)]
struct Branch {
    advertised: IpAddr,
    bind_ip: IpAddr,
    flow_ip: Option<IpAddr>,
    to_tag: Option<String>,
    /// Per stream index: the sockets facing this branch.
    pairs: Vec<Option<Pair>>,
    _tasks: Tasks,
    answered_2xx: bool,
}

/// Everything the forwarding tasks share with the session.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stats: Arc<Stats>,
    /// Milliseconds since `epoch` of the last packet received on any socket of the session.
    pub(crate) last_packet_ms: AtomicU64,
    pub(crate) epoch: Instant,
    /// Packets this session forwarded.
    pub(crate) forwarded: AtomicU64,
}

impl Shared {
    fn touch(&self, now: Instant) {
        let ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        self.last_packet_ms.store(ms, Ordering::Relaxed);
    }
}

/// The caller's side of the call.
#[derive(Debug)]
pub(crate) struct CallerSide {
    /// The address put in SDP sent to the caller.
    pub(crate) advertised: IpAddr,
    /// The address its sockets bind.
    pub(crate) bind_ip: IpAddr,
    /// Where the caller's signalling comes from (for NAT correction).
    pub(crate) flow_ip: Option<IpAddr>,
}

/// One anchored call.
#[derive(Debug)]
pub(crate) struct Session {
    caller: CallerSide,
    streams: Vec<Stream>,
    branches: HashMap<u32, Branch>,
    next_branch: u32,
    active: Option<u32>,
    pub(crate) confirmed: Option<u32>,
    pub(crate) shared: Arc<Shared>,
    /// Last signalling activity (creation, offers and answers).
    pub(crate) last_signal: Instant,
}

impl Session {
    /// A session for `caller`, no streams yet.
    pub(crate) fn new(caller: CallerSide, stats: Arc<Stats>) -> Session {
        let now = Instant::now();
        Session {
            caller,
            streams: Vec::new(),
            branches: HashMap::new(),
            next_branch: 0,
            active: None,
            confirmed: None,
            shared: Arc::new(Shared {
                stats,
                last_packet_ms: AtomicU64::new(0),
                epoch: now,
                forwarded: AtomicU64::new(0),
            }),
            last_signal: now,
        }
    }

    /// The address the caller is told to send to (its family is the caller's).
    pub(crate) fn caller_ip(&self) -> IpAddr {
        self.caller.advertised
    }

    /// When the last packet of the session arrived (its creation when none has).
    pub(crate) fn last_packet(&self) -> Instant {
        self.shared.epoch
            + Duration::from_millis(self.shared.last_packet_ms.load(Ordering::Relaxed))
    }

    /// Packets the session forwarded so far.
    pub(crate) fn packets(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// Number of sockets the session holds.
    pub(crate) fn socket_count(&self) -> usize {
        self.streams.len() * 2
            + self
                .branches
                .values()
                .map(|b| b.pairs.iter().flatten().count() * 2)
                .sum::<usize>()
    }

    /// Adds a callee branch whose sockets bind `bind_ip` and are advertised as `advertised`.
    pub(crate) fn add_branch(
        &mut self,
        advertised: IpAddr,
        bind_ip: IpAddr,
        flow_ip: Option<IpAddr>,
    ) -> u32 {
        let id = self.next_branch;
        self.next_branch = self.next_branch.wrapping_add(1);
        self.branches.insert(
            id,
            Branch {
                advertised,
                bind_ip,
                flow_ip,
                to_tag: None,
                pairs: Vec::new(),
                _tasks: Tasks::default(),
                answered_2xx: false,
            },
        );
        id
    }

    /// The branch of a dialog by the callee's tag, if one answered with it.
    pub(crate) fn branch_by_tag(&self, tag: &str) -> Option<u32> {
        self.branches
            .iter()
            .find(|(_, b)| b.to_tag.as_deref() == Some(tag))
            .map(|(id, _)| *id)
    }

    /// The branch in-dialog requests use: the confirmed one, else the active one.
    pub(crate) fn dialog_branch(&self) -> Option<u32> {
        self.confirmed.or(self.active)
    }

    /// Records the callee's tag of a branch.
    pub(crate) fn set_to_tag(&mut self, branch: u32, tag: &str) {
        if let Some(b) = self.branches.get_mut(&branch)
            && b.to_tag.is_none()
        {
            b.to_tag = Some(tag.to_owned());
        }
    }

    /// Makes `branch` the one the caller's media goes to (an answer came from it).
    pub(crate) fn activate(&mut self, branch: u32) {
        if !self.branches.contains_key(&branch) || self.active == Some(branch) {
            return;
        }
        if self.confirmed.is_some_and(|c| c != branch) {
            return;
        }
        self.active = Some(branch);
        let b = self.branches.get(&branch);
        for (i, s) in self.streams.iter().enumerate() {
            let pair = b.and_then(|b| b.pairs.get(i)).and_then(Option::as_ref);
            *lock(&s.rtp.active_b) = pair.map(|p| Arc::clone(&p.rtp));
            *lock(&s.rtcp.active_b) = pair.map(|p| Arc::clone(&p.rtcp));
        }
    }

    /// A 2xx came from `branch`: it carries the call; branches without a 2xx are released.
    pub(crate) fn confirm(&mut self, branch: u32) {
        if let Some(b) = self.branches.get_mut(&branch) {
            b.answered_2xx = true;
        }
        if self.confirmed.is_none() && self.branches.contains_key(&branch) {
            self.activate(branch);
            self.confirmed = Some(branch);
            self.branches.retain(|_, b| b.answered_2xx);
        }
    }

    /// Releases one branch (it failed, or its dialog ended); false when it carries the call.
    pub(crate) fn release_branch(&mut self, branch: u32) -> bool {
        if self.confirmed == Some(branch) {
            return false;
        }
        if self.active == Some(branch) {
            self.active = None;
            for s in &self.streams {
                *lock(&s.rtp.active_b) = None;
                *lock(&s.rtcp.active_b) = None;
            }
        }
        self.branches.remove(&branch);
        true
    }

    /// Creates the caller-side sockets of stream `index` (and those before it) if missing.
    fn ensure_stream(&mut self, index: usize, ports: &PortPool) -> Result<(), RelayError> {
        while self.streams.len() <= index {
            let pair = Pair::allocate(ports, self.caller.bind_ip, self.caller.advertised)?;
            let rtp = Arc::new(Link {
                a: Arc::clone(&pair.rtp),
                active_b: Mutex::new(None),
            });
            let rtcp = Arc::new(Link {
                a: Arc::clone(&pair.rtcp),
                active_b: Mutex::new(None),
            });
            let tasks = Tasks(vec![
                tokio::spawn(pump_a(Arc::clone(&rtp), Arc::clone(&self.shared))),
                tokio::spawn(pump_a(Arc::clone(&rtcp), Arc::clone(&self.shared))),
            ]);
            self.streams.push(Stream {
                rtp,
                rtcp,
                _a_tasks: tasks,
            });
        }
        Ok(())
    }

    /// Creates `branch`'s sockets for stream `index` if missing.
    fn ensure_branch_stream(
        &mut self,
        branch: u32,
        index: usize,
        ports: &PortPool,
    ) -> Result<(), RelayError> {
        self.ensure_stream(index, ports)?;
        let active = self.active == Some(branch);
        let Some(stream) = self.streams.get(index) else {
            return Err(RelayError::NoSession);
        };
        let (rtp_link, rtcp_link) = (Arc::clone(&stream.rtp), Arc::clone(&stream.rtcp));
        let shared = Arc::clone(&self.shared);
        let b = self
            .branches
            .get_mut(&branch)
            .ok_or(RelayError::NoSession)?;
        if b.pairs.get(index).is_some_and(Option::is_some) {
            return Ok(());
        }
        let pair = Pair::allocate(ports, b.bind_ip, b.advertised)?;
        b._tasks.0.push(tokio::spawn(pump_b(
            Arc::clone(&rtp_link),
            Arc::clone(&pair.rtp),
            Arc::clone(&shared),
        )));
        b._tasks.0.push(tokio::spawn(pump_b(
            Arc::clone(&rtcp_link),
            Arc::clone(&pair.rtcp),
            shared,
        )));
        if active {
            *lock(&rtp_link.active_b) = Some(Arc::clone(&pair.rtp));
            *lock(&rtcp_link.active_b) = Some(Arc::clone(&pair.rtcp));
        }
        while b.pairs.len() <= index {
            b.pairs.push(None);
        }
        if let Some(slot) = b.pairs.get_mut(index) {
            *slot = Some(pair);
        }
        Ok(())
    }

    /// The relay addresses for an SDP going to `to` (through `branch` on side B) with the
    /// relayed streams `relayed`, allocating what is missing.
    pub(crate) fn addrs_toward(
        &mut self,
        to: Side,
        branch: u32,
        relayed: &[bool],
        ports: &PortPool,
    ) -> Result<Vec<Option<StreamAddrs>>, RelayError> {
        let mut out = Vec::with_capacity(relayed.len());
        for (i, r) in relayed.iter().enumerate() {
            if !*r {
                out.push(None);
                continue;
            }
            self.ensure_branch_stream(branch, i, ports)?;
            let addrs = match to {
                Side::Caller => self.streams.get(i).map(|s| StreamAddrs {
                    rtp: s.rtp.a.advertised,
                    rtcp: s.rtcp.a.advertised,
                }),
                Side::Callee => self
                    .branches
                    .get(&branch)
                    .and_then(|b| b.pairs.get(i))
                    .and_then(Option::as_ref)
                    .map(Pair::addrs),
            };
            out.push(addrs);
        }
        self.last_signal = Instant::now();
        Ok(out)
    }

    /// The NAT-corrected flow address of the side that wrote an SDP.
    pub(crate) fn flow_ip(&self, side: Side, branch: u32) -> Option<IpAddr> {
        match side {
            Side::Caller => self.caller.flow_ip,
            Side::Callee => self.branches.get(&branch).and_then(|b| b.flow_ip),
        }
    }

    /// Records where side `from` wants stream `index` sent (from its SDP).
    pub(crate) fn set_targets(
        &mut self,
        from: Side,
        branch: u32,
        index: usize,
        targets: Option<(SocketAddr, SocketAddr)>,
    ) {
        match from {
            Side::Caller => {
                if let Some(s) = self.streams.get(index) {
                    s.rtp.a.set_expected(targets.map(|t| t.0));
                    s.rtcp.a.set_expected(targets.map(|t| t.1));
                }
            }
            Side::Callee => {
                if let Some(p) = self
                    .branches
                    .get(&branch)
                    .and_then(|b| b.pairs.get(index))
                    .and_then(Option::as_ref)
                {
                    p.set_expected(targets);
                }
            }
        }
    }
}

/// Forwards what the caller sends to the active branch.
async fn pump_a(link: Arc<Link>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, src) = match link.a.socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable from an earlier send, and the like: keep serving.
                tracing::trace!(error = %e, "relay receive error");
                continue;
            }
        };
        let now = Instant::now();
        if !link.a.accept(src, now, &shared.stats) {
            continue;
        }
        shared.touch(now);
        let out = lock(&link.active_b).clone();
        let Some(out) = out else {
            shared.stats.dropped_no_peer.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        forward(
            &out,
            out.destination(),
            buf.get(..n).unwrap_or_default(),
            &shared,
        )
        .await;
    }
}

/// Forwards what one branch sends to the caller, while that branch is the active one.
async fn pump_b(link: Arc<Link>, me: Arc<RelaySocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, src) = match me.socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::trace!(error = %e, "relay receive error");
                continue;
            }
        };
        let now = Instant::now();
        if !me.accept(src, now, &shared.stats) {
            continue;
        }
        shared.touch(now);
        let is_active = lock(&link.active_b)
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(a, &me));
        if !is_active {
            shared.stats.dropped_no_peer.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        forward(
            &link.a,
            link.a.destination(),
            buf.get(..n).unwrap_or_default(),
            &shared,
        )
        .await;
    }
}

async fn forward(out: &RelaySocket, dest: Option<SocketAddr>, data: &[u8], shared: &Shared) {
    let Some(dest) = dest else {
        shared.stats.dropped_no_peer.fetch_add(1, Ordering::Relaxed);
        return;
    };
    match out.socket.send_to(data, dest).await {
        Ok(_) => {
            shared.forwarded.fetch_add(1, Ordering::Relaxed);
            shared.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .forwarded_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::trace!(error = %e, %dest, "relay send failed");
            shared.stats.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn latching_rules() {
        let std = super::super::port::bind(addr("127.0.0.1:0")).unwrap();
        let sock = RelaySocket::new(std, "127.0.0.1".parse().unwrap()).unwrap();
        let stats = Stats::default();
        let (first, second) = (addr("192.0.2.1:4000"), addr("192.0.2.1:4002"));
        assert_eq!(sock.destination(), None);
        sock.set_expected(Some(addr("198.51.100.1:5000")));
        assert_eq!(sock.destination(), Some(addr("198.51.100.1:5000")));

        let t0 = Instant::now();
        assert!(sock.accept(first, t0, &stats));
        assert_eq!(
            sock.destination(),
            Some(first),
            "latched onto the first source"
        );
        // Another source while the first still talks: dropped.
        assert!(!sock.accept(second, t0 + Duration::from_secs(1), &stats));
        assert!(sock.accept(first, t0 + Duration::from_secs(2), &stats));
        assert!(!sock.accept(second, t0 + Duration::from_millis(4900), &stats));
        assert_eq!(stats.dropped_foreign.load(Ordering::Relaxed), 2);
        // After 3 s of silence from the first, the second takes over.
        assert!(sock.accept(second, t0 + Duration::from_secs(5), &stats));
        assert_eq!(sock.destination(), Some(second));
        assert_eq!(stats.relatches.load(Ordering::Relaxed), 1);
        assert!(!sock.accept(first, t0 + Duration::from_secs(6), &stats));

        // The same SDP address again keeps the latch; a new one drops it.
        sock.set_expected(Some(addr("198.51.100.1:5000")));
        assert_eq!(sock.destination(), Some(second));
        sock.set_expected(Some(addr("198.51.100.1:6000")));
        assert_eq!(sock.destination(), Some(addr("198.51.100.1:6000")));
        assert!(sock.accept(first, t0 + Duration::from_secs(6), &stats));
        assert_eq!(sock.destination(), Some(first));
    }
}
