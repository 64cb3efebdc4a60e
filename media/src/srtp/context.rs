//! The per-call SRTP state: one `rtc-srtp` context per direction.

use std::collections::HashMap;

use rtc_shared::error::Error as RtcError;
use rtc_srtp::context::Context;

use super::{CryptoSuite, SdesCrypto, SrtpError};

/// Replay window (packets) on the receiving side; libsrtp's default, wide enough for the
/// reordering a jitter buffer tolerates. The window is a `u128` bitmap.
const REPLAY_WINDOW: u64 = 128;

/// Most SSRCs whose replay windows are kept per packet kind (RTP, RTCP); the least recently
/// authenticated one is forgotten beyond that. Only authenticated packets create entries.
const MAX_TRACKED_SSRCS: usize = 64;

/// Length of the fixed RTP header.
const RTP_FIXED_HEADER_LEN: usize = 12;

/// Length of the SRTCP E flag + index word.
const SRTCP_INDEX_LEN: usize = 4;

/// HMAC-SHA1 tag length on SRTCP for both AES-CM suites.
const SRTCP_HMAC_TAG_LEN: usize = 10;

/// Counters of an [`SrtpContext`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SrtpCounters {
    /// RTP packets protected.
    pub rtp_protected: u64,
    /// RTP packets that passed authentication.
    pub rtp_unprotected: u64,
    /// RTCP packets protected.
    pub rtcp_protected: u64,
    /// RTCP packets that passed authentication.
    pub rtcp_unprotected: u64,
    /// Packets dropped for a bad tag, a wrong MKI, an unencrypted SRTCP packet, or a replay.
    pub auth_failures: u64,
    /// Of `auth_failures`, the replays.
    pub replays: u64,
    /// Packets dropped because they could not be parsed at all.
    pub malformed: u64,
}

/// One direction's keys and state.
struct Direction {
    ctx: Context,
    suite: CryptoSuite,
    /// The MKI bytes carried in each packet, if the keys were signalled with one.
    mki: Option<Vec<u8>>,
    /// Maximum number of packets (RTP and RTCP counted separately) under this master key.
    lifetime: Option<u64>,
    /// SRTP replay windows (receiving side only).
    rtp_replay: ReplayTable,
    /// SRTCP replay windows (receiving side only).
    rtcp_replay: ReplayTable,
}

impl Direction {
    fn new(
        suite: CryptoSuite,
        key: &[u8],
        salt: &[u8],
        mki: Option<(u32, u32)>,
        lifetime: Option<u64>,
    ) -> Result<Self, SrtpError> {
        if key.len() != suite.key_len() || salt.len() != suite.salt_len() {
            return Err(SrtpError::KeyLength {
                suite,
                expected: suite.key_salt_len(),
                actual: key.len() + salt.len(),
            });
        }
        if mki.is_some() && suite == CryptoSuite::AeadAes128Gcm {
            return Err(SrtpError::Unsupported("MKI with AEAD_AES_128_GCM".into()));
        }
        let provider =
            rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::Crypto(e.to_string()))?;
        // rtc-srtp's own replay protection stays off (`None`): its detector anchors the
        // window on the first packet it checks, before authentication, so one forged packet
        // could make genuine ones look like replays. Our `ReplayTable`s replace it.
        let ctx = Context::new(key, salt, suite.profile(), None, None, provider.crypto())
            .map_err(|e| SrtpError::Crypto(e.to_string()))?;
        Ok(Direction {
            ctx,
            suite,
            mki: mki.map(|(value, len)| mki_bytes(value, len)),
            lifetime,
            rtp_replay: ReplayTable::default(),
            rtcp_replay: ReplayTable::default(),
        })
    }

    fn check_lifetime(&self, used: u64) -> Result<(), SrtpError> {
        match self.lifetime {
            Some(limit) if used >= limit => Err(SrtpError::KeyLifetimeExpired(limit)),
            _ => Ok(()),
        }
    }

    fn rtp_tag_len(&self) -> usize {
        match self.suite {
            CryptoSuite::AesCm128HmacSha1_80 => 10,
            CryptoSuite::AesCm128HmacSha1_32 => 4,
            // The AEAD tag is part of the ciphertext; an MKI is never used with GCM.
            CryptoSuite::AeadAes128Gcm => 0,
        }
    }

    fn rtcp_tag_len(&self) -> usize {
        match self.suite {
            CryptoSuite::AesCm128HmacSha1_80 | CryptoSuite::AesCm128HmacSha1_32 => {
                SRTCP_HMAC_TAG_LEN
            }
            CryptoSuite::AeadAes128Gcm => 0,
        }
    }

    /// Inserts the MKI between the authenticated portion and the tag (RFC 3711 §3.1).
    fn insert_mki(&self, mut packet: Vec<u8>, tag_len: usize) -> Vec<u8> {
        if let Some(mki) = &self.mki {
            let at = packet.len().saturating_sub(tag_len);
            packet.splice(at..at, mki.iter().copied());
        }
        packet
    }

    /// Checks and removes the MKI in front of the tag; `None` when it is absent or wrong.
    fn strip_mki(&self, packet: &[u8], tag_len: usize) -> Option<Vec<u8>> {
        let Some(mki) = &self.mki else {
            return Some(packet.to_vec());
        };
        let tag_start = packet.len().checked_sub(tag_len)?;
        let mki_start = tag_start.checked_sub(mki.len())?;
        if packet.get(mki_start..tag_start)? != mki.as_slice() {
            return None;
        }
        let mut out = Vec::with_capacity(packet.len() - mki.len());
        out.extend_from_slice(packet.get(..mki_start)?);
        out.extend_from_slice(packet.get(tag_start..)?);
        Some(out)
    }
}

/// The MKI value as `len` big-endian bytes.
fn mki_bytes(value: u32, len: u32) -> Vec<u8> {
    let len = len as usize;
    let mut out = vec![0u8; len];
    let be = value.to_be_bytes();
    let n = len.min(4);
    out[len - n..].copy_from_slice(&be[4 - n..]);
    out
}

/// SRTP/SRTCP protection for one call: our keys protect what we send, the peer's keys
/// unprotect what we receive (with replay protection).
pub struct SrtpContext {
    outbound: Direction,
    inbound: Direction,
    counters: SrtpCounters,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("outbound_suite", &self.outbound.suite)
            .field("inbound_suite", &self.inbound.suite)
            .field("counters", &self.counters)
            .finish()
    }
}

impl SrtpContext {
    /// Builds the context from the negotiated SDES lines: `local` is the line we sent (our
    /// key, used to protect), `remote` the peer's (used to unprotect).
    pub fn from_sdes(local: &SdesCrypto, remote: &SdesCrypto) -> Result<Self, SrtpError> {
        local.check_supported()?;
        remote.check_supported()?;
        Ok(SrtpContext {
            outbound: Direction::new(
                local.suite,
                local.master_key(),
                local.master_salt(),
                local.mki,
                local.lifetime,
            )?,
            inbound: Direction::new(
                remote.suite,
                remote.master_key(),
                remote.master_salt(),
                remote.mki,
                remote.lifetime,
            )?,
            counters: SrtpCounters::default(),
        })
    }

    /// Builds the context from raw master keys and salts (as DTLS-SRTP exports them).
    pub fn from_keys(
        suite: CryptoSuite,
        local_key: &[u8],
        local_salt: &[u8],
        remote_key: &[u8],
        remote_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        Ok(SrtpContext {
            outbound: Direction::new(suite, local_key, local_salt, None, None)?,
            inbound: Direction::new(suite, remote_key, remote_salt, None, None)?,
            counters: SrtpCounters::default(),
        })
    }

    /// The suite protecting what we send.
    pub fn suite(&self) -> CryptoSuite {
        self.outbound.suite
    }

    /// Encrypts and authenticates an RTP packet.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.outbound.check_lifetime(self.counters.rtp_protected)?;
        let header = cipher_header(packet)?;
        let out = self
            .outbound
            .ctx
            .encrypt_rtp_with_header(packet, &header)
            .map_err(|e| map_protect_error(&e))?;
        let tag_len = self.outbound.rtp_tag_len();
        let out = self.outbound.insert_mki(out.to_vec(), tag_len);
        self.counters.rtp_protected += 1;
        Ok(out)
    }

    /// Verifies and decrypts an SRTP packet; failures are dropped and counted.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.inbound.check_lifetime(self.counters.rtp_unprotected)?;
        let tag_len = self.inbound.rtp_tag_len();
        let Some(stripped) = self.inbound.strip_mki(packet, tag_len) else {
            return Err(self.count(SrtpError::AuthFailed));
        };
        let header = match cipher_header(&stripped) {
            Ok(header) => header,
            Err(e) => return Err(self.count(e)),
        };
        let ssrc = header.ssrc;
        let index = self
            .inbound
            .rtp_replay
            .estimate_srtp_index(ssrc, header.sequence_number);
        let Some(index) = index.filter(|&i| self.inbound.rtp_replay.is_fresh(ssrc, i)) else {
            let index = index.unwrap_or(u64::from(header.sequence_number));
            return Err(self.count(SrtpError::Replay { ssrc, index }));
        };
        match self.inbound.ctx.decrypt_rtp_with_header(&stripped, &header) {
            Ok(plain) => {
                // Only now, authenticated, may the packet move the window (RFC 3711 §3.3.2).
                self.inbound.rtp_replay.accept(ssrc, index);
                self.counters.rtp_unprotected += 1;
                Ok(plain.to_vec())
            }
            Err(e) => Err(self.count(map_unprotect_error(&e))),
        }
    }

    /// Encrypts and authenticates a (compound) RTCP packet.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.outbound.check_lifetime(self.counters.rtcp_protected)?;
        let out = self
            .outbound
            .ctx
            .encrypt_rtcp(packet)
            .map_err(|e| map_protect_error(&e))?;
        let tag_len = self.outbound.rtcp_tag_len();
        let out = self.outbound.insert_mki(out.to_vec(), tag_len);
        self.counters.rtcp_protected += 1;
        Ok(out)
    }

    /// Verifies and decrypts an SRTCP packet; failures are dropped and counted.
    ///
    /// SRTCP packets with the E flag clear (unencrypted SRTCP) are refused: we never negotiate
    /// `UNENCRYPTED_SRTCP`, and `rtc-srtp` would pass such packets through unauthenticated.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.inbound
            .check_lifetime(self.counters.rtcp_unprotected)?;
        let tag_len = self.inbound.rtcp_tag_len();
        let Some(stripped) = self.inbound.strip_mki(packet, tag_len) else {
            return Err(self.count(SrtpError::AuthFailed));
        };
        let min_len = 8
            + SRTCP_INDEX_LEN
            + if self.inbound.suite == CryptoSuite::AeadAes128Gcm {
                16
            } else {
                tag_len
            };
        if stripped.len() < min_len {
            return Err(self.count(SrtpError::MalformedPacket(format!(
                "SRTCP packet of {} bytes",
                packet.len()
            ))));
        }
        // The E flag is the top bit of the index word, which sits right before the HMAC tag
        // (AES-CM) or ends the packet (GCM, RFC 7714 §9).
        let e_flag_at = stripped.len() - tag_len - SRTCP_INDEX_LEN;
        let Some(word) = be_u32(&stripped, e_flag_at) else {
            return Err(self.count(SrtpError::AuthFailed));
        };
        if word & 0x8000_0000 == 0 {
            return Err(self.count(SrtpError::AuthFailed));
        }
        let index = u64::from(word & 0x7fff_ffff);
        let Some(ssrc) = be_u32(&stripped, 4) else {
            return Err(self.count(SrtpError::AuthFailed));
        };
        if !self.inbound.rtcp_replay.is_fresh(ssrc, index) {
            return Err(self.count(SrtpError::Replay { ssrc, index }));
        }
        match self.inbound.ctx.decrypt_rtcp(&stripped) {
            Ok(plain) => {
                // Only now, authenticated, may the packet move the window (RFC 3711 §3.4).
                self.inbound.rtcp_replay.accept(ssrc, index);
                self.counters.rtcp_unprotected += 1;
                Ok(plain.to_vec())
            }
            Err(e) => Err(self.count(map_unprotect_error(&e))),
        }
    }

    /// Packets dropped for a bad authentication tag or a replay.
    pub fn auth_failures(&self) -> u64 {
        self.counters.auth_failures
    }

    /// All counters.
    pub fn counters(&self) -> SrtpCounters {
        self.counters
    }

    fn count(&mut self, e: SrtpError) -> SrtpError {
        match e {
            SrtpError::AuthFailed => self.counters.auth_failures += 1,
            SrtpError::Replay { .. } => {
                self.counters.auth_failures += 1;
                self.counters.replays += 1;
            }
            SrtpError::MalformedPacket(_) => self.counters.malformed += 1,
            _ => {}
        }
        e
    }
}

/// Reads a big-endian `u32` at `at`, `None` past the end.
fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Length of the RTP header on the wire (fixed part, CSRCs, header extension), checked
/// against the packet length; the same rules as [`crate::rtp::RtpPacket::parse`].
fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    let malformed = |what: &str| SrtpError::MalformedPacket(format!("RTP packet: {what}"));
    let (&b0, _) = packet
        .split_first()
        .filter(|_| packet.len() >= RTP_FIXED_HEADER_LEN)
        .ok_or_else(|| malformed(&format!("only {} bytes", packet.len())))?;
    if b0 >> 6 != 2 {
        return Err(malformed(&format!("version {}", b0 >> 6)));
    }
    let mut len = RTP_FIXED_HEADER_LEN + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = packet
            .get(len + 2..len + 4)
            .ok_or_else(|| malformed("truncated header extension"))?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    if len > packet.len() {
        return Err(malformed("header longer than the packet"));
    }
    Ok(len)
}

/// The `rtc-rtp` header handed to `rtc-srtp`'s cipher, built from the wire bytes.
///
/// The cipher takes the payload offset from `Header::marshal_size()`, which `rtc-rtp`
/// recomputes from the extension elements it parsed; for extension blocks it does not parse
/// back to the same size (the reserved id 15, elements that run past the block) that offset
/// was wrong and the cipher sliced out of bounds. Here the whole extension block is carried
/// as one opaque RFC 3550 extension, so `marshal_size()` is exactly the wire header length
/// for every packet, RFC 8285 one-byte and two-byte forms included. The cipher reads only
/// the SSRC, the sequence number and that size from the header; the bytes it authenticates
/// and copies are the packet's own.
fn cipher_header(packet: &[u8]) -> Result<rtc_rtp::header::Header, SrtpError> {
    let len = rtp_header_len(packet)?;
    let word = |at: usize| be_u32(packet, at).unwrap_or_default();
    let b0 = packet.first().copied().unwrap_or_default();
    let b1 = packet.get(1).copied().unwrap_or_default();
    let cc = usize::from(b0 & 0x0f);
    let csrc_end = RTP_FIXED_HEADER_LEN + 4 * cc;
    let csrc = (0..cc)
        .map(|i| word(RTP_FIXED_HEADER_LEN + 4 * i))
        .collect();
    let extension = b0 & 0x10 != 0;
    let extensions = if extension {
        let body = packet.get(csrc_end + 4..len).unwrap_or_default();
        vec![rtc_rtp::header::Extension {
            id: 0,
            payload: bytes::Bytes::copy_from_slice(body),
        }]
    } else {
        Vec::new()
    };
    let header = rtc_rtp::header::Header {
        version: 2,
        padding: b0 & 0x20 != 0,
        extension,
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence_number: u16::from_be_bytes([
            packet.get(2).copied().unwrap_or_default(),
            packet.get(3).copied().unwrap_or_default(),
        ]),
        timestamp: word(4),
        ssrc: word(8),
        csrc,
        // Neither RFC 8285 profile: the element list is not interpreted.
        extension_profile: 0,
        extensions,
        extensions_padding: 0,
    };
    Ok(header)
}

/// A 128-packet replay window over 48-bit SRTP or 31-bit SRTCP indexes (RFC 3711 §3.3.2).
#[derive(Debug, Clone, Copy)]
struct ReplayWindow {
    /// Highest authenticated index.
    highest: u64,
    /// Bit `i` set: index `highest - i` was authenticated.
    seen: u128,
}

impl ReplayWindow {
    /// True when `index` is ahead of the window or inside it and not seen yet.
    fn is_fresh(&self, index: u64) -> bool {
        match self.highest.checked_sub(index) {
            None => true,
            Some(delta) if delta >= REPLAY_WINDOW => false,
            Some(delta) => self.seen & (1u128 << delta) == 0,
        }
    }

    /// Records an authenticated `index`.
    fn accept(&mut self, index: u64) {
        match self.highest.checked_sub(index) {
            None => {
                let shift = index - self.highest;
                self.seen = if shift >= REPLAY_WINDOW {
                    0
                } else {
                    self.seen << shift
                };
                self.seen |= 1;
                self.highest = index;
            }
            Some(delta) if delta < REPLAY_WINDOW => self.seen |= 1u128 << delta,
            Some(_) => {}
        }
    }
}

/// One SSRC's window and when it was last used.
#[derive(Debug, Clone, Copy)]
struct TrackedSsrc {
    window: ReplayWindow,
    last_used: u64,
}

/// Per-SSRC replay windows, updated only for authenticated packets, at most
/// [`MAX_TRACKED_SSRCS`] of them.
#[derive(Debug, Default)]
struct ReplayTable {
    ssrcs: HashMap<u32, TrackedSsrc>,
    /// Counts accepted packets; orders the entries for eviction.
    clock: u64,
}

impl ReplayTable {
    /// The packet index of SRTP sequence number `seq` (RFC 3711 §3.3.1 and Appendix A):
    /// the rollover counter is guessed from the highest authenticated index. `None` when the
    /// guess would precede the stream's first rollover period (too old by any measure).
    fn estimate_srtp_index(&self, ssrc: u32, seq: u16) -> Option<u64> {
        let Some(tracked) = self.ssrcs.get(&ssrc) else {
            // First packet of the SSRC: ROC 0, as rtc-srtp assumes too.
            return Some(u64::from(seq));
        };
        let highest = tracked.window.highest;
        let roc = highest >> 16;
        let s_l = highest & 0xffff;
        let seq = u64::from(seq);
        let v = if s_l < 0x8000 {
            if seq > s_l + 0x8000 {
                roc.checked_sub(1)?
            } else {
                roc
            }
        } else if seq + 0x8000 < s_l {
            roc + 1
        } else {
            roc
        };
        Some((v << 16) | seq)
    }

    /// True when `index` of `ssrc` has not been authenticated before and is not too old.
    fn is_fresh(&self, ssrc: u32, index: u64) -> bool {
        self.ssrcs
            .get(&ssrc)
            .is_none_or(|tracked| tracked.window.is_fresh(index))
    }

    /// Records the authenticated `index` of `ssrc`, evicting the least recently used SSRC
    /// when the table is full.
    fn accept(&mut self, ssrc: u32, index: u64) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(tracked) = self.ssrcs.get_mut(&ssrc) {
            tracked.window.accept(index);
            tracked.last_used = clock;
            return;
        }
        if self.ssrcs.len() >= MAX_TRACKED_SSRCS {
            let oldest = self
                .ssrcs
                .iter()
                .min_by_key(|(_, tracked)| tracked.last_used)
                .map(|(&ssrc, _)| ssrc);
            if let Some(oldest) = oldest {
                self.ssrcs.remove(&oldest);
            }
        }
        self.ssrcs.insert(
            ssrc,
            TrackedSsrc {
                window: ReplayWindow {
                    highest: index,
                    seen: 1,
                },
                last_used: clock,
            },
        );
    }
}

fn map_unprotect_error(e: &RtcError) -> SrtpError {
    match e {
        RtcError::RtpFailedToVerifyAuthTag
        | RtcError::RtcpFailedToVerifyAuthTag
        | RtcError::ErrFailedToVerifyAuthTag => SrtpError::AuthFailed,
        RtcError::SrtpSsrcDuplicated(ssrc, seq) => SrtpError::Replay {
            ssrc: *ssrc,
            index: u64::from(*seq),
        },
        RtcError::SrtcpSsrcDuplicated(ssrc, index) => SrtpError::Replay {
            ssrc: *ssrc,
            index: *index as u64,
        },
        other => SrtpError::MalformedPacket(other.to_string()),
    }
}

fn map_protect_error(e: &RtcError) -> SrtpError {
    match e {
        RtcError::ErrExceededMaxPackets => SrtpError::KeyLifetimeExpired(1 << 48),
        RtcError::Crypto(s) => SrtpError::Crypto(s.clone()),
        other => SrtpError::MalformedPacket(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn context_is_send() {
        assert_send::<SrtpContext>();
    }

    #[test]
    fn mki_bytes_are_big_endian_and_padded() {
        assert_eq!(mki_bytes(1, 1), vec![1]);
        assert_eq!(mki_bytes(0x0102, 4), vec![0, 0, 1, 2]);
        assert_eq!(mki_bytes(0x01020304, 6), vec![0, 0, 1, 2, 3, 4]);
    }
}
