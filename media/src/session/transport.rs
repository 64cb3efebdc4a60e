//! The secured datagram path of one RTP stream, shared by the audio and the video engine.
//!
//! [`RtpTransport`] owns what both engines need below the media: the stream's sockets (RTP,
//! and RTCP when it is not multiplexed), where the peer wants RTP and RTCP, the keys (plain,
//! SDES-SRTP, or DTLS-SRTP with its handshake on the RTP socket, RFC 5763/5764) and the queue
//! of datagrams waiting for the socket. It demultiplexes what arrives by the first byte
//! (RFC 7983): RTP is authenticated and parsed, RTCP authenticated, DTLS fed to the
//! handshake, STUN and strays dropped. It protects what goes out and sends RTCP where
//! RFC 5761 says. It decides nothing about media: the engines choose what to send and what a
//! packet means, and report the [`SecurityEvent`]s it returns in their own words.
//!
//! It is sans-IO except for [`RtpTransport::flush`] (sends the queue) and [`SocketReader`],
//! the receiving half an engine polls in its select loop.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, trace, warn};

use super::{MediaSecurity, MediaSocket};
use crate::rtp::{PacketKind, RtpPacket, classify};
use crate::srtp::{DtlsRole, DtlsSrtp, SdesCrypto, SrtpContext, SrtpError};

/// Largest datagram a [`SocketReader`] reads; media packets are far smaller, DTLS flights are
/// fragmented to the path MTU.
pub const RECV_BUFFER: usize = 4096;

/// The shortest wait before a DTLS timer that did not move is handled again.
const DTLS_TIMER_FLOOR: Duration = Duration::from_millis(10);
/// How long a DTLS-SRTP handshake may take unless [`RtpTransport::with_dtls_timeout`] says.
pub const DEFAULT_DTLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a socket receive error (ICMP errors are transient; a closed transport is not,
/// and must not spin the task).
const SOCKET_ERROR_PAUSE: Duration = Duration::from_millis(5);

/// Which socket of a stream a datagram came in on or goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The RTP socket (which also carries RTCP with rtcp-mux, and DTLS).
    Rtp,
    /// The separate RTCP socket (without rtcp-mux).
    Rtcp,
}

/// A change of a stream's keying that its engine reports to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityEvent {
    /// SRTP keys are in place (SDES at once, DTLS after the handshake): media may flow.
    Established,
    /// Keying failed (DTLS handshake error or timeout, unusable keys): no media flows until
    /// new keys arrive, and never plain RTP.
    Failed(String),
}

/// What a received datagram turned out to be, after demultiplexing and SRTP.
#[derive(Debug)]
pub enum Inbound<'a> {
    /// An authenticated (or plain, in a plain call) RTP packet, parsed.
    Rtp(RtpPacket),
    /// An authenticated (or plain) RTCP compound, not parsed yet.
    Rtcp(Cow<'a, [u8]>),
    /// A DTLS datagram that finished (or broke) the handshake.
    Security(SecurityEvent),
    /// Not RTP/RTCP/DTLS/STUN, or RTP that does not parse.
    Malformed,
    /// Consumed or dropped on purpose: handshake progress, STUN, packets before the keys
    /// exist, SRTP authentication or replay failures (counted by the context), DTLS on the
    /// RTCP socket.
    Dropped,
}

/// Keys and handshake state of a stream.
struct Keys {
    /// SDES or DTLS-SRTP was negotiated: never send or accept plain RTP.
    secure: bool,
    /// The SRTP context once keys exist.
    srtp: Option<SrtpContext>,
    /// The SDES lines `srtp` was made from (a re-INVITE repeating them keeps the context).
    sdes: Option<(SdesCrypto, SdesCrypto)>,
    /// The DTLS association (kept after the handshake to answer retransmitted flights).
    dtls: Option<DtlsSrtp>,
    /// (role, fingerprint) of `dtls`, to recognise a re-INVITE that keeps the association.
    dtls_key: Option<(DtlsRole, String)>,
    /// When the current DTLS handshake must have finished.
    dtls_deadline: Option<Instant>,
    /// When the DTLS retransmission timer was last handled.
    dtls_handled_at: Option<Instant>,
    /// Keying failed; no media until new keys arrive.
    failed: bool,
    /// Authentication failures of contexts already replaced.
    old_auth_failures: u64,
    /// Packets dropped because they arrived before the keys existed.
    early_dropped: u64,
}

impl Keys {
    fn plain() -> Self {
        Keys {
            secure: false,
            srtp: None,
            sdes: None,
            dtls: None,
            dtls_key: None,
            dtls_deadline: None,
            dtls_handled_at: None,
            failed: false,
            old_auth_failures: 0,
            early_dropped: 0,
        }
    }

    fn replace_context(&mut self, ctx: Option<SrtpContext>) {
        if let Some(old) = self.srtp.take() {
            self.old_auth_failures += old.auth_failures();
        }
        self.srtp = ctx;
    }

    /// Forgets any DTLS association and its deadline.
    fn drop_dtls(&mut self) {
        self.dtls = None;
        self.dtls_key = None;
        self.dtls_deadline = None;
    }

    /// Keying failed: no context, no handshake, no media until new keys.
    fn fail(&mut self) {
        self.failed = true;
        self.dtls = None;
        self.dtls_deadline = None;
        self.replace_context(None);
    }
}

/// The secured datagram path of one RTP stream: sockets, peer addresses, keys, demux and the
/// outgoing queue (see the module documentation).
pub struct RtpTransport {
    socket: MediaSocket,
    rtcp_socket: Option<MediaSocket>,
    remote_rtp: SocketAddr,
    remote_rtcp: Option<SocketAddr>,
    rtcp_mux: bool,
    dtls_timeout: Duration,
    label: &'static str,
    keys: Keys,
    /// Outgoing datagrams waiting for the socket.
    outbox: Vec<(Via, SocketAddr, Vec<u8>)>,
}

impl std::fmt::Debug for RtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("RtpTransport")
            .field("label", &self.label)
            .field("remote_rtp", &self.remote_rtp)
            .field("remote_rtcp", &self.remote_rtcp)
            .field("rtcp_mux", &self.rtcp_mux)
            .field("secure", &self.keys.secure)
            .field("keyed", &self.keys.srtp.is_some())
            .field("queued", &self.outbox.len())
            .finish_non_exhaustive()
    }
}

impl RtpTransport {
    /// A plain transport over `socket` sending RTP to `remote_rtp`, with rtcp-mux and the
    /// default DTLS limit; `label` names the stream in logs (`"audio"`, `"video"`). Keys come
    /// with [`Self::apply_security`].
    pub fn new(socket: MediaSocket, remote_rtp: SocketAddr, label: &'static str) -> Self {
        RtpTransport {
            socket,
            rtcp_socket: None,
            remote_rtp,
            remote_rtcp: None,
            rtcp_mux: true,
            dtls_timeout: DEFAULT_DTLS_TIMEOUT,
            label,
            keys: Keys::plain(),
            outbox: Vec::new(),
        }
    }

    /// Returns this transport with RTCP as negotiated: `rtcp_socket` when RTCP has its own
    /// socket, where the peer wants RTCP without rtcp-mux (`None`: the RTP port + 1), and
    /// whether both sides agreed on rtcp-mux (RFC 5761).
    pub fn with_rtcp(
        mut self,
        rtcp_socket: Option<MediaSocket>,
        remote_rtcp: Option<SocketAddr>,
        rtcp_mux: bool,
    ) -> Self {
        self.rtcp_socket = rtcp_socket;
        self.remote_rtcp = remote_rtcp;
        self.rtcp_mux = rtcp_mux;
        self
    }

    /// Returns this transport with another limit for DTLS-SRTP handshakes.
    pub fn with_dtls_timeout(mut self, timeout: Duration) -> Self {
        self.dtls_timeout = timeout;
        self
    }

    /// The receiving half for the engine's select loop (own buffers, clones of the sockets).
    pub fn reader(&self) -> SocketReader {
        SocketReader {
            label: self.label,
            rtp: self.socket.clone(),
            rtcp: self.rtcp_socket.clone(),
            rtp_buf: vec![0; RECV_BUFFER],
            rtcp_buf: vec![0; RECV_BUFFER],
        }
    }

    /// Where RTP goes now.
    pub fn remote_rtp(&self) -> SocketAddr {
        self.remote_rtp
    }

    /// Applies the address part of a re-INVITE/UPDATE; `None` keeps a value.
    pub fn update_remote(
        &mut self,
        remote_rtp: Option<SocketAddr>,
        remote_rtcp: Option<SocketAddr>,
        rtcp_mux: Option<bool>,
    ) {
        if let Some(addr) = remote_rtp {
            self.remote_rtp = addr;
        }
        if let Some(addr) = remote_rtcp {
            self.remote_rtcp = Some(addr);
        }
        if let Some(mux) = rtcp_mux {
            self.rtcp_mux = mux;
        }
    }

    /// True when SDES or DTLS-SRTP was negotiated (plain RTP is never sent nor accepted).
    pub fn is_secure(&self) -> bool {
        self.keys.secure
    }

    /// Media may flow: plain, or secure with keys.
    pub fn media_ready(&self) -> bool {
        !self.keys.secure || self.keys.srtp.is_some()
    }

    /// True when media is protected by SRTP right now.
    pub fn srtp_active(&self) -> bool {
        self.keys.secure && self.keys.srtp.is_some()
    }

    /// SRTP/SRTCP authentication failures, replaced contexts included.
    pub fn auth_failures(&self) -> u64 {
        self.keys.old_auth_failures
            + self
                .keys
                .srtp
                .as_ref()
                .map_or(0, SrtpContext::auth_failures)
    }

    /// RTP/RTCP packets dropped because they arrived before the keys existed.
    pub fn early_dropped(&self) -> u64 {
        self.keys.early_dropped
    }

    /// Installs new security: SDES keys at once (the same lines again keep the context), DTLS
    /// by starting a handshake (the same role and fingerprint again keep the association).
    /// On an error the transport is left failed (no media until new keys), as after
    /// [`SecurityEvent::Failed`].
    pub fn apply_security(
        &mut self,
        now: Instant,
        security: MediaSecurity,
    ) -> Result<Option<SecurityEvent>, SrtpError> {
        let result = self.install(now, security);
        if result.is_err() {
            self.keys.fail();
        }
        result
    }

    fn install(
        &mut self,
        now: Instant,
        security: MediaSecurity,
    ) -> Result<Option<SecurityEvent>, SrtpError> {
        let keys = &mut self.keys;
        match security {
            MediaSecurity::Plain => {
                keys.replace_context(None);
                keys.secure = false;
                keys.sdes = None;
                keys.drop_dtls();
                keys.failed = false;
                Ok(None)
            }
            MediaSecurity::Sdes { local, remote } => {
                let same = keys
                    .sdes
                    .as_ref()
                    .is_some_and(|(l, r)| *l == local && *r == remote);
                keys.secure = true;
                if same && keys.srtp.is_some() {
                    return Ok(None);
                }
                let ctx = SrtpContext::from_sdes(&local, &remote)?;
                keys.replace_context(Some(ctx));
                keys.sdes = Some((local, remote));
                keys.drop_dtls();
                keys.failed = false;
                Ok(Some(SecurityEvent::Established))
            }
            MediaSecurity::Dtls {
                role,
                cert,
                remote_fingerprint,
            } => {
                let key = (role, remote_fingerprint.clone());
                keys.secure = true;
                if keys.dtls_key.as_ref() == Some(&key) && !keys.failed {
                    return Ok(None);
                }
                let dtls = DtlsSrtp::new(role, cert, remote_fingerprint)?;
                keys.replace_context(None);
                keys.sdes = None;
                keys.dtls = Some(dtls);
                keys.dtls_key = Some(key);
                keys.dtls_deadline = Some(now + self.dtls_timeout);
                keys.failed = false;
                Ok(self.drive_dtls())
            }
        }
    }

    /// Drains the DTLS endpoint: its datagrams into the queue, then its result.
    fn drive_dtls(&mut self) -> Option<SecurityEvent> {
        let dtls = self.keys.dtls.as_mut()?;
        while let Some(datagram) = dtls.poll_transmit() {
            self.outbox.push((Via::Rtp, self.remote_rtp, datagram));
        }
        match dtls.poll_result()? {
            Ok(ctx) => {
                debug!(stream = self.label, "DTLS-SRTP handshake complete");
                self.keys.dtls_deadline = None;
                self.keys.replace_context(Some(ctx));
                Some(SecurityEvent::Established)
            }
            Err(e) => {
                warn!(stream = self.label, error = %e, "DTLS-SRTP handshake failed");
                self.keys.fail();
                Some(SecurityEvent::Failed(e.to_string()))
            }
        }
    }

    /// When [`Self::on_timeout`] is due next: a DTLS retransmission or the handshake deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        let timer = self
            .keys
            .dtls
            .as_ref()
            .and_then(DtlsSrtp::poll_timeout)
            .map(|t| {
                // A timer that is still due right after it was handled must not spin the loop.
                match self.keys.dtls_handled_at {
                    Some(handled) if t <= handled => handled + DTLS_TIMER_FLOOR,
                    _ => t,
                }
            });
        match (timer, self.keys.dtls_deadline) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        }
    }

    /// Runs the DTLS timers: retransmissions, and the handshake deadline.
    pub fn on_timeout(&mut self, now: Instant) -> Option<SecurityEvent> {
        if let Some(dtls) = self.keys.dtls.as_mut()
            && dtls.poll_timeout().is_some_and(|t| t <= now)
        {
            dtls.handle_timeout(now);
            self.keys.dtls_handled_at = Some(now);
            if let Some(event) = self.drive_dtls() {
                return Some(event);
            }
        }
        if let Some(deadline) = self.keys.dtls_deadline
            && deadline <= now
            && self.keys.srtp.is_none()
        {
            warn!(stream = self.label, "DTLS-SRTP handshake timed out");
            self.keys.fail();
            return Some(SecurityEvent::Failed("DTLS handshake timed out".into()));
        }
        None
    }

    /// Demultiplexes one received datagram (RFC 7983) and removes SRTP.
    pub fn receive<'a>(
        &mut self,
        now: Instant,
        data: &'a [u8],
        from: SocketAddr,
        via: Via,
    ) -> Inbound<'a> {
        match classify(data) {
            PacketKind::Rtp if via == Via::Rtp => self.receive_rtp(data),
            // On a separate RTCP port every 128..=191 datagram is RTCP.
            PacketKind::Rtp | PacketKind::Rtcp => self.receive_rtcp(data),
            // Without rtcp-mux a peer such as baresip runs a second DTLS association on its
            // RTCP port (RFC 5764 §4.1). Ours lives on the RTP port only: a ClientHello from
            // the RTCP component must never reach it, or rtc-dtls keeps that hello's random and
            // signs the RTP client's ServerKeyExchange over the wrong one (bad signature).
            PacketKind::Dtls if via == Via::Rtcp => {
                debug!(stream = self.label, %from, "DTLS datagram on the separate RTCP port ignored");
                Inbound::Dropped
            }
            PacketKind::Dtls => match self.keys.dtls.as_mut() {
                Some(dtls) => {
                    dtls.handle_datagram(now, data);
                    self.drive_dtls()
                        .map_or(Inbound::Dropped, Inbound::Security)
                }
                None => {
                    trace!(stream = self.label, %from, "DTLS datagram without a DTLS association dropped");
                    Inbound::Dropped
                }
            },
            // ICE connectivity checks are answered by the ICE transport, below this one.
            PacketKind::Stun => {
                trace!(stream = self.label, %from, "STUN datagram ignored");
                Inbound::Dropped
            }
            PacketKind::Unknown => {
                trace!(stream = self.label, %from, len = data.len(), "unknown datagram dropped");
                Inbound::Malformed
            }
        }
    }

    fn receive_rtp(&mut self, data: &[u8]) -> Inbound<'static> {
        let parsed = match self.unprotect(data, SrtpContext::unprotect_rtp) {
            Some(Cow::Borrowed(plain)) => RtpPacket::parse(plain),
            Some(Cow::Owned(plain)) => RtpPacket::parse_bytes(Bytes::from(plain)),
            None => return Inbound::Dropped,
        };
        match parsed {
            Ok(packet) => Inbound::Rtp(packet),
            Err(e) => {
                trace!(stream = self.label, error = %e, "malformed RTP dropped");
                Inbound::Malformed
            }
        }
    }

    fn receive_rtcp<'a>(&mut self, data: &'a [u8]) -> Inbound<'a> {
        self.unprotect(data, SrtpContext::unprotect_rtcp)
            .map_or(Inbound::Dropped, Inbound::Rtcp)
    }

    /// The plain packet: `data` itself in a plain call, else what `unprotect` (SRTP or SRTCP)
    /// gives; `None` when it must be dropped (no keys yet: counted here; authentication or
    /// replay failures, plain packets in a secure call: counted by the context).
    fn unprotect<'a>(
        &mut self,
        data: &'a [u8],
        unprotect: fn(&mut SrtpContext, &[u8]) -> Result<Vec<u8>, SrtpError>,
    ) -> Option<Cow<'a, [u8]>> {
        if !self.keys.secure {
            return Some(Cow::Borrowed(data));
        }
        let Some(ctx) = self.keys.srtp.as_mut() else {
            self.keys.early_dropped += 1;
            return None;
        };
        match unprotect(ctx, data) {
            Ok(plain) => Some(Cow::Owned(plain)),
            Err(e) => {
                trace!(stream = self.label, error = %e, "SRTP/SRTCP packet dropped");
                None
            }
        }
    }

    /// The datagram to send for a serialized RTP packet: SRTP-protected in a secure call,
    /// `None` while a secure call has no keys yet.
    pub fn protect_rtp(&mut self, packet: Vec<u8>) -> Result<Option<Vec<u8>>, SrtpError> {
        match self.keys.srtp.as_mut() {
            Some(ctx) => ctx.protect_rtp(&packet).map(Some),
            None if self.keys.secure => Ok(None),
            None => Ok(Some(packet)),
        }
    }

    /// Queues a datagram (already protected, see [`Self::protect_rtp`]) to the peer's RTP
    /// address.
    pub fn queue_rtp(&mut self, datagram: Vec<u8>) {
        self.outbox.push((Via::Rtp, self.remote_rtp, datagram));
    }

    /// Protects and queues a serialized RTP packet; false when it was not queued (no keys yet,
    /// or protection failed, which is logged).
    pub fn send_rtp(&mut self, packet: Vec<u8>) -> bool {
        match self.protect_rtp(packet) {
            Ok(Some(datagram)) => {
                self.queue_rtp(datagram);
                true
            }
            Ok(None) => false,
            Err(e) => {
                warn!(stream = self.label, error = %e, "SRTP protect failed; packet dropped");
                false
            }
        }
    }

    /// Protects and queues an RTCP compound to where the peer wants RTCP; nothing while a
    /// secure call has no keys.
    pub fn send_rtcp(&mut self, compound: Vec<u8>) {
        let datagram = match self.keys.srtp.as_mut() {
            Some(ctx) => match ctx.protect_rtcp(&compound) {
                Ok(protected) => protected,
                Err(e) => {
                    warn!(stream = self.label, error = %e, "SRTCP protect failed; RTCP dropped");
                    return;
                }
            },
            None if self.keys.secure => return,
            None => compound,
        };
        let (via, to) = self.rtcp_destination();
        self.outbox.push((via, to, datagram));
    }

    /// Where RTCP goes: the RTCP socket's peer when not muxed, else the RTP address.
    pub fn rtcp_destination(&self) -> (Via, SocketAddr) {
        if self.rtcp_mux {
            // RFC 5761 §5.1.3: with rtcp-mux, RTCP goes to the RTP address (an a=rtcp line
            // kept for non-mux fallback does not apply).
            return (Via::Rtp, self.remote_rtp);
        }
        let to = self.remote_rtcp.unwrap_or_else(|| {
            let mut addr = self.remote_rtp;
            addr.set_port(addr.port().wrapping_add(1));
            addr
        });
        let via = if self.rtcp_socket.is_some() {
            Via::Rtcp
        } else {
            Via::Rtp
        };
        (via, to)
    }

    /// Sends everything queued; UDP send errors are logged (media is loss tolerant).
    pub async fn flush(&mut self) {
        for (via, to, datagram) in std::mem::take(&mut self.outbox) {
            if to.ip().is_unspecified() || to.port() == 0 {
                // Legacy hold (`c=0.0.0.0`) or a rejected stream: nowhere to send. Linux would
                // deliver a datagram for 0.0.0.0 to this host.
                continue;
            }
            let socket = match via {
                Via::Rtcp => self.rtcp_socket.as_ref().unwrap_or(&self.socket),
                Via::Rtp => &self.socket,
            };
            if let Err(e) = socket.send_to(&datagram, to).await {
                debug!(stream = self.label, error = %e, %to, "media send failed");
            }
        }
    }
}

/// The receiving half of a [`RtpTransport`]: both sockets with their own buffers, for an
/// engine's select loop (its futures are cancel safe: nothing is lost when another branch wins).
pub struct SocketReader {
    label: &'static str,
    rtp: MediaSocket,
    rtcp: Option<MediaSocket>,
    rtp_buf: Vec<u8>,
    rtcp_buf: Vec<u8>,
}

impl std::fmt::Debug for SocketReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketReader")
            .field("rtp", &self.rtp)
            .field("rtcp", &self.rtcp)
            .finish_non_exhaustive()
    }
}

impl SocketReader {
    /// The next datagram on either socket, with the socket it came in on and its sender.
    /// Receive errors are logged and followed by a short pause (an ICMP error is transient, a
    /// transport that keeps failing must not spin the task).
    pub async fn recv(&mut self) -> (Via, &[u8], SocketAddr) {
        loop {
            let (via, result) = tokio::select! {
                received = self.rtp.recv_from(&mut self.rtp_buf) => (Via::Rtp, received),
                received = recv_optional(self.rtcp.as_ref(), &mut self.rtcp_buf) => {
                    (Via::Rtcp, received)
                }
            };
            match result {
                Ok((len, from)) => return (via, self.filled(via, len), from),
                Err(e) => {
                    debug!(stream = self.label, error = %e, ?via, "media socket receive error");
                    tokio::time::sleep(SOCKET_ERROR_PAUSE).await;
                }
            }
        }
    }

    /// A datagram already waiting on the `via` socket, without waiting (`Ok(None)`: none, or
    /// no separate RTCP socket).
    pub fn try_recv(&mut self, via: Via) -> io::Result<Option<(&[u8], SocketAddr)>> {
        let (socket, buf) = match via {
            Via::Rtp => (Some(&self.rtp), &mut self.rtp_buf),
            Via::Rtcp => (self.rtcp.as_ref(), &mut self.rtcp_buf),
        };
        let Some(socket) = socket else {
            return Ok(None);
        };
        match socket.try_recv_from(buf) {
            Ok((len, from)) => Ok(Some((self.filled(via, len), from))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn filled(&self, via: Via, len: usize) -> &[u8] {
        let buf = match via {
            Via::Rtp => &self.rtp_buf,
            Via::Rtcp => &self.rtcp_buf,
        };
        buf.get(..len).unwrap_or_default()
    }
}

/// `recv_from` on the RTCP socket, or never when RTCP is multiplexed.
async fn recv_optional(
    socket: Option<&MediaSocket>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::Arc;

    use tokio::net::UdpSocket;

    use super::*;
    use crate::rtp::RtpStream;
    use crate::srtp::{DtlsCertificate, sdes_accept, sdes_answer, sdes_offer};

    async fn socket() -> MediaSocket {
        MediaSocket::udp(Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()))
    }

    fn somewhere(port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
    }

    fn rtp_bytes(stream: &mut RtpStream, payload: &'static [u8]) -> Vec<u8> {
        stream
            .next_packet(Bytes::from_static(payload), 160, false)
            .to_bytes()
    }

    /// Two transports facing each other over loopback.
    async fn pair() -> (RtpTransport, RtpTransport) {
        let (a, b) = (socket().await, socket().await);
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        (
            RtpTransport::new(a, b_addr, "test-a"),
            RtpTransport::new(b, a_addr, "test-b"),
        )
    }

    /// Sends what `from` queued and hands the first datagram to `to`, returning what it was.
    async fn deliver(from: &mut RtpTransport, to: &mut RtpTransport) -> String {
        let mut reader = to.reader();
        from.flush().await;
        let (via, data, addr) = tokio::time::timeout(Duration::from_secs(5), reader.recv())
            .await
            .expect("a datagram arrives");
        describe(to.receive(Instant::now(), data, addr, via))
    }

    /// Everything already waiting on `t`'s RTP socket, demultiplexed.
    fn take_all(reader: &mut SocketReader, t: &mut RtpTransport) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some((data, from)) = reader.try_recv(Via::Rtp).unwrap() {
            seen.push(describe(t.receive(Instant::now(), data, from, Via::Rtp)));
        }
        seen
    }

    fn describe(inbound: Inbound<'_>) -> String {
        match inbound {
            Inbound::Rtp(p) => format!("rtp {:?}", p.payload),
            Inbound::Rtcp(c) => format!("rtcp {}", c.len()),
            Inbound::Security(e) => format!("security {e:?}"),
            Inbound::Malformed => "malformed".into(),
            Inbound::Dropped => "dropped".into(),
        }
    }

    fn sdes_pair() -> (MediaSecurity, MediaSecurity) {
        let offer = sdes_offer();
        let (b_remote, b_local) = sdes_answer(&offer).unwrap();
        let (a_local, a_remote) = sdes_accept(&offer, &b_local).unwrap();
        (
            MediaSecurity::Sdes {
                local: a_local,
                remote: a_remote,
            },
            MediaSecurity::Sdes {
                local: b_local,
                remote: b_remote,
            },
        )
    }

    #[tokio::test]
    async fn datagrams_are_demultiplexed_by_their_first_byte() {
        let (mut t, _) = pair().await;
        let now = Instant::now();
        let from = somewhere(9);
        let mut stream = RtpStream::new(1, 0, 8000);
        let rtp = rtp_bytes(&mut stream, b"abc");
        assert!(
            matches!(t.receive(now, &rtp, from, Via::Rtp), Inbound::Rtp(p) if &p.payload[..] == b"abc")
        );
        // On a separate RTCP socket an RTP-looking datagram is RTCP (RFC 5761 §4).
        assert!(
            matches!(t.receive(now, &rtp, from, Via::Rtcp), Inbound::Rtcp(c) if c[..] == rtp[..])
        );
        let rr = crate::rtcp::build_compound(&[crate::rtcp::RtcpPacket::ReceiverReport(
            crate::rtcp::ReceiverReport {
                ssrc: 5,
                reports: Vec::new(),
            },
        )]);
        assert!(matches!(
            t.receive(now, &rr, from, Via::Rtp),
            Inbound::Rtcp(_)
        ));
        // DTLS on the RTCP socket never reaches the association; without one it is dropped.
        let dtls = [22u8; 20];
        assert!(matches!(
            t.receive(now, &dtls, from, Via::Rtcp),
            Inbound::Dropped
        ));
        assert!(matches!(
            t.receive(now, &dtls, from, Via::Rtp),
            Inbound::Dropped
        ));
        let stun = [0u8; 20];
        assert!(matches!(
            t.receive(now, &stun, from, Via::Rtp),
            Inbound::Dropped
        ));
        assert!(matches!(
            t.receive(now, &[7u8; 30], from, Via::Rtp),
            Inbound::Malformed
        ));
        // Fifteen CSRCs announced in a 12-byte packet: RTP by its first byte, but truncated.
        let mut bad = vec![0x8F, 0];
        bad.resize(12, 0);
        assert!(matches!(
            t.receive(now, &bad, from, Via::Rtp),
            Inbound::Malformed
        ));
    }

    #[tokio::test]
    async fn rtcp_goes_where_rfc_5761_says() {
        let mut t = RtpTransport::new(socket().await, somewhere(4000), "test");
        assert_eq!(t.rtcp_destination(), (Via::Rtp, somewhere(4000)));
        t = t.with_rtcp(None, None, false);
        assert_eq!(t.rtcp_destination(), (Via::Rtp, somewhere(4001)));
        t = t.with_rtcp(Some(socket().await), Some(somewhere(5555)), false);
        assert_eq!(t.rtcp_destination(), (Via::Rtcp, somewhere(5555)));
        t.update_remote(Some(somewhere(6000)), None, Some(true));
        assert_eq!(t.rtcp_destination(), (Via::Rtp, somewhere(6000)));
        assert_eq!(t.remote_rtp(), somewhere(6000));
        t.update_remote(None, Some(somewhere(6002)), Some(false));
        assert_eq!(t.rtcp_destination(), (Via::Rtcp, somewhere(6002)));
    }

    #[tokio::test]
    async fn sdes_protects_both_ways_and_rejects_plain_packets() {
        let (mut a, mut b) = pair().await;
        let (a_sec, b_sec) = sdes_pair();
        let now = Instant::now();
        assert_eq!(
            a.apply_security(now, a_sec).unwrap(),
            Some(SecurityEvent::Established)
        );
        assert_eq!(
            b.apply_security(now, b_sec).unwrap(),
            Some(SecurityEvent::Established)
        );
        assert!(a.srtp_active() && b.media_ready());
        let mut stream = RtpStream::new(77, 0, 8000);
        assert!(a.send_rtp(rtp_bytes(&mut stream, b"secret")));
        assert_eq!(deliver(&mut a, &mut b).await, "rtp b\"secret\"");
        let rr = crate::rtcp::build_compound(&[crate::rtcp::RtcpPacket::ReceiverReport(
            crate::rtcp::ReceiverReport {
                ssrc: 77,
                reports: Vec::new(),
            },
        )]);
        b.send_rtcp(rr.clone());
        assert_eq!(deliver(&mut b, &mut a).await, format!("rtcp {}", rr.len()));

        // Plain RTP in a secure call fails authentication and is counted.
        let plain = rtp_bytes(&mut stream, &[0x55; 64]);
        assert!(matches!(
            b.receive(now, &plain, somewhere(9), Via::Rtp),
            Inbound::Dropped
        ));
        assert_eq!(b.auth_failures(), 1);

        // Back to plain: packets go out unprotected.
        assert_eq!(a.apply_security(now, MediaSecurity::Plain).unwrap(), None);
        assert!(!a.is_secure() && a.media_ready() && !a.srtp_active());
        assert_eq!(a.protect_rtp(plain.clone()).unwrap(), Some(plain));
    }

    #[tokio::test]
    async fn the_same_sdes_keys_again_keep_the_context() {
        let (mut a, _) = pair().await;
        let (a_sec, _) = sdes_pair();
        let MediaSecurity::Sdes { local, remote } = &a_sec else {
            unreachable!()
        };
        let again = MediaSecurity::Sdes {
            local: local.clone(),
            remote: remote.clone(),
        };
        let now = Instant::now();
        assert!(a.apply_security(now, a_sec).unwrap().is_some());
        assert_eq!(a.apply_security(now, again).unwrap(), None);
        assert!(a.srtp_active());
    }

    fn dtls(role: DtlsRole, cert: &DtlsCertificate, remote: &DtlsCertificate) -> MediaSecurity {
        MediaSecurity::Dtls {
            role,
            cert: cert.clone(),
            remote_fingerprint: remote.fingerprint(),
        }
    }

    #[tokio::test]
    async fn a_dtls_handshake_runs_through_the_queue_and_keys_both_sides() {
        let (mut client, mut server) = pair().await;
        let (c_cert, s_cert) = (
            DtlsCertificate::generate().unwrap(),
            DtlsCertificate::generate().unwrap(),
        );
        let now = Instant::now();
        assert_eq!(
            server
                .apply_security(now, dtls(DtlsRole::Server, &s_cert, &c_cert))
                .unwrap(),
            None
        );
        assert_eq!(
            client
                .apply_security(now, dtls(DtlsRole::Client, &c_cert, &s_cert))
                .unwrap(),
            None
        );
        assert!(client.is_secure() && !client.media_ready());
        assert!(client.next_timeout().is_some());
        // Packets before the keys exist are dropped and counted.
        let mut stream = RtpStream::new(3, 0, 8000);
        let early = rtp_bytes(&mut stream, b"early");
        assert!(matches!(
            server.receive(now, &early, somewhere(9), Via::Rtp),
            Inbound::Dropped
        ));
        assert_eq!(server.early_dropped(), 1);
        assert!(!client.send_rtp(early));

        let (mut client_reader, mut server_reader) = (client.reader(), server.reader());
        let (mut client_done, mut server_done) = (false, false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(client_done && server_done) && Instant::now() < deadline {
            // Flights go back and forth until both sides report keys; retransmission timers
            // run as they fall due.
            client.flush().await;
            server.flush().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            for seen in take_all(&mut server_reader, &mut server) {
                assert!(!seen.contains("Failed"), "{seen}");
                server_done |= seen == "security Established";
            }
            for seen in take_all(&mut client_reader, &mut client) {
                assert!(!seen.contains("Failed"), "{seen}");
                client_done |= seen == "security Established";
            }
            assert_eq!(client.on_timeout(Instant::now()), None);
            assert_eq!(server.on_timeout(Instant::now()), None);
        }
        assert!(client_done && server_done);
        assert!(client.srtp_active() && server.srtp_active());
        assert_eq!(client.next_timeout(), None);
        assert!(client.send_rtp(rtp_bytes(&mut stream, b"keyed")));
        // The server may still send its last flight; skip to the media.
        let mut seen = deliver(&mut client, &mut server).await;
        while seen == "dropped" {
            seen = deliver(&mut client, &mut server).await;
        }
        assert_eq!(seen, "rtp b\"keyed\"");
        // The same role and fingerprint again keep the association.
        assert_eq!(
            client
                .apply_security(now, dtls(DtlsRole::Client, &c_cert, &s_cert))
                .unwrap(),
            None
        );
        assert!(client.srtp_active());
    }

    #[tokio::test]
    async fn a_handshake_without_an_answer_fails_at_its_deadline() {
        let (mut client, _) = pair().await;
        client = client.with_dtls_timeout(Duration::from_secs(2));
        let (c_cert, s_cert) = (
            DtlsCertificate::generate().unwrap(),
            DtlsCertificate::generate().unwrap(),
        );
        let start = Instant::now();
        client
            .apply_security(start, dtls(DtlsRole::Client, &c_cert, &s_cert))
            .unwrap();
        let due = client.next_timeout().expect("a timer runs");
        assert!(due <= start + Duration::from_secs(2));
        let event = client.on_timeout(start + Duration::from_secs(3));
        assert!(matches!(event, Some(SecurityEvent::Failed(_))), "{event:?}");
        assert!(!client.media_ready());
        assert_eq!(client.next_timeout(), None);
        assert_eq!(client.on_timeout(start + Duration::from_secs(4)), None);
    }
}
