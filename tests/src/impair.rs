//! A userspace impairment bridge: forwards Ethernet frames between two interfaces with AF_PACKET sockets, dropping
//! and delaying RTP/RTCP frames at random (loss, delay with normally distributed jitter, hence reordering). It
//! stands in for `tc netem` on kernels built without it.
//!
//! Only IPv4 UDP frames whose payload starts like RTP/RTCP (version 2: first byte 0x80–0xBF) are impaired; ARP, SIP
//! (text, which never starts with such a byte) and everything else pass at once, like a clean LAN.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// The largest frame we forward (veth MTU 1500 plus headers; jumbo frames are not used here).
const MAX_FRAME: usize = 65_536;
/// How long a receive waits before the thread checks for due frames and the stop flag.
const POLL: Duration = Duration::from_millis(2);
/// `sll_pkttype` of frames the interface sent itself (we must not forward our own output back).
const PACKET_OUTGOING: u8 = 4;

/// What the bridge does to RTP/RTCP frames, each way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Probability of dropping a frame, in percent.
    pub loss_percent: f64,
    /// Mean one-way delay.
    pub delay: Duration,
    /// Standard deviation of the delay (normal distribution, clipped at zero).
    pub jitter: Duration,
}

impl Impairment {
    /// No impairment.
    pub fn none() -> Self {
        Impairment {
            loss_percent: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
        }
    }
}

/// A small deterministic PRNG (xorshift64*), so a run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Whether a frame is IPv4/UDP carrying something that starts like RTP or RTCP.
fn is_rtp_like(frame: &[u8]) -> bool {
    // Ethernet: ethertype at 12..14; IPv4 header length from the low nibble of its first byte.
    if frame.get(12..14) != Some(&[0x08, 0x00]) {
        return false;
    }
    let Some(&vihl) = frame.get(14) else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if frame.get(23) != Some(&17) || ihl < 20 {
        return false;
    }
    // UDP header is 8 bytes after the IP header.
    frame
        .get(14 + ihl + 8)
        .is_some_and(|b| (0x80..=0xbf).contains(b))
}

/// Clears the UDP checksum of an IPv4/UDP frame (zero means "none" in IPv4). A veth hands AF_PACKET sockets frames
/// whose checksum is left to offload (not computed yet); forwarded as they are, the receiver would drop them.
fn clear_udp_checksum(frame: &mut [u8]) {
    if frame.get(12..14) != Some(&[0x08, 0x00]) || frame.get(23) != Some(&17) {
        return;
    }
    let Some(&vihl) = frame.get(14) else {
        return;
    };
    let at = 14 + usize::from(vihl & 0x0f) * 4 + 6;
    if let Some(sum) = frame.get_mut(at..at + 2) {
        sum.copy_from_slice(&[0, 0]);
    }
}

/// An AF_PACKET socket bound to one interface.
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    #[allow(unsafe_code)]
    fn open(ifname: &str) -> Result<PacketSocket> {
        let os_err = |what: &str| HarnessError::Io {
            what: format!("{what} ({ifname})"),
            source: std::io::Error::last_os_error(),
        };
        let name = std::ffi::CString::new(ifname).map_err(|_| HarnessError::Protocol {
            what: ifname.into(),
            detail: "interface name with a NUL byte".into(),
        })?;
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(os_err("if_nametoindex"));
        }
        let ifindex = i32::try_from(ifindex).map_err(|_| HarnessError::Protocol {
            what: ifname.into(),
            detail: "interface index out of range".into(),
        })?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain integer arguments; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        if raw < 0 {
            return Err(os_err("socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a fresh descriptor we own and close through `OwnedFd`.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll and we pass its exact size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(os_err("bind(AF_PACKET)"));
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: POLL.as_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a valid timeval and we pass its exact size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&tv).cast::<libc::c_void>(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(os_err("setsockopt(SO_RCVTIMEO)"));
        }
        Ok(PacketSocket { fd, ifindex })
    }

    /// Receives one frame that arrived on the interface (not one it sent); `None` on timeout.
    #[allow(unsafe_code)]
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        loop {
            // SAFETY: as in `open`.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are valid for writes of the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    0,
                    std::ptr::from_mut(&mut from).cast::<libc::sockaddr>(),
                    &mut len,
                )
            };
            if n < 0 {
                return None;
            }
            if from.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            return usize::try_from(n).ok();
        }
    }

    /// Sends one frame out of the interface (errors such as a full queue drop the frame, like a real link).
    #[allow(unsafe_code)]
    fn send(&self, frame: &[u8]) {
        // SAFETY: as in `open`.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        if let Some(dst) = frame.get(0..6) {
            to.sll_addr[..6].copy_from_slice(dst);
        }
        // SAFETY: `frame` and `to` are valid for reads of the sizes passed.
        let _ = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<libc::c_void>(),
                frame.len(),
                0,
                std::ptr::from_ref(&to).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
    }
}

/// Counters of one direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BridgeStats {
    /// Frames forwarded.
    pub forwarded: u64,
    /// RTP/RTCP frames dropped for loss.
    pub dropped: u64,
    /// RTP/RTCP frames that went through the impairment (dropped or delayed).
    pub impaired: u64,
}

/// A running bridge between two interfaces; stopped (threads joined) on drop.
pub struct ImpairBridge {
    stop: Arc<AtomicBool>,
    impairment: Arc<Mutex<Impairment>>,
    stats: Arc<Mutex<[BridgeStats; 2]>>,
    threads: Vec<JoinHandle<()>>,
}

impl ImpairBridge {
    /// Starts forwarding between `left` and `right` (both up, in this process's network namespace).
    pub fn start(left: &str, right: &str, seed: u64) -> Result<ImpairBridge> {
        let l = Arc::new(PacketSocket::open(left)?);
        let r = Arc::new(PacketSocket::open(right)?);
        let stop = Arc::new(AtomicBool::new(false));
        let impairment = Arc::new(Mutex::new(Impairment::none()));
        let stats = Arc::new(Mutex::new([BridgeStats::default(); 2]));
        let mut threads = Vec::new();
        for (dir, (from, to)) in [(l.clone(), r.clone()), (r, l)].into_iter().enumerate() {
            let stop = stop.clone();
            let impairment = impairment.clone();
            let stats = stats.clone();
            let mut rng = Rng(seed.wrapping_add(dir as u64 * 0x9e37_79b9_7f4a_7c15) | 1);
            threads.push(std::thread::spawn(move || {
                forward(&from, &to, &stop, &impairment, &stats, dir, &mut rng);
            }));
        }
        Ok(ImpairBridge {
            stop,
            impairment,
            stats,
            threads,
        })
    }

    /// Changes the impairment (both directions).
    pub fn set(&self, impairment: Impairment) {
        *self
            .impairment
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = impairment;
    }

    /// The counters of both directions (left to right, right to left).
    pub fn stats(&self) -> [BridgeStats; 2] {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One direction: receive, decide, queue by due time, send what is due.
fn forward(
    from: &PacketSocket,
    to: &PacketSocket,
    stop: &AtomicBool,
    impairment: &Mutex<Impairment>,
    stats: &Mutex<[BridgeStats; 2]>,
    dir: usize,
    rng: &mut Rng,
) {
    let mut buf = vec![0u8; MAX_FRAME];
    // Min-heap by (due time, arrival order): arrival order keeps equal-time frames in sequence.
    let mut queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut order = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(n) = from.recv(&mut buf) {
            let mut frame = buf.get(..n).unwrap_or(&[]).to_vec();
            clear_udp_checksum(&mut frame);
            let imp = *impairment.lock().unwrap_or_else(PoisonError::into_inner);
            let mut st = stats.lock().unwrap_or_else(PoisonError::into_inner);
            if is_rtp_like(&frame) && imp != Impairment::none() {
                st[dir].impaired += 1;
                if rng.unit() * 100.0 <= imp.loss_percent {
                    st[dir].dropped += 1;
                    continue;
                }
                let ms = imp.delay.as_secs_f64() * 1000.0
                    + rng.normal() * imp.jitter.as_secs_f64() * 1000.0;
                let due = Instant::now() + Duration::from_secs_f64(ms.max(0.0) / 1000.0);
                queue.push(Reverse((due, order, frame)));
                order += 1;
            } else {
                drop(st);
                // Unimpaired traffic still waits behind earlier due frames of the same flow only if they are due.
                to.send(&frame);
                stats.lock().unwrap_or_else(PoisonError::into_inner)[dir].forwarded += 1;
            }
        }
        let now = Instant::now();
        while queue.peek().is_some_and(|Reverse((due, _, _))| *due <= now) {
            if let Some(Reverse((_, _, frame))) = queue.pop() {
                to.send(&frame);
                stats.lock().unwrap_or_else(PoisonError::into_inner)[dir].forwarded += 1;
            }
        }
    }
}

impl Drop for ImpairBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_frames_are_recognised() {
        let mut f = vec![0u8; 14 + 20 + 8 + 12];
        f[12] = 0x08;
        f[13] = 0x00;
        f[14] = 0x45;
        f[23] = 17;
        f[42] = 0x80;
        assert!(is_rtp_like(&f));
        f[42] = b'I';
        assert!(!is_rtp_like(&f));
        f[42] = 0x80;
        f[23] = 6;
        assert!(!is_rtp_like(&f));
        assert!(!is_rtp_like(&f[..20]));
    }

    #[test]
    fn udp_checksums_are_cleared() {
        let mut f = vec![0xffu8; 14 + 20 + 8];
        f[12] = 0x08;
        f[13] = 0x00;
        f[14] = 0x45;
        f[23] = 17;
        clear_udp_checksum(&mut f);
        assert_eq!(&f[40..42], &[0, 0]);
        f[23] = 6;
        f[40] = 0xff;
        clear_udp_checksum(&mut f);
        assert_eq!(f[40], 0xff);
    }

    #[test]
    fn normal_samples_look_normal() {
        let mut rng = Rng(42);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
