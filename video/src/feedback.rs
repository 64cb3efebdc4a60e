//! RTCP feedback messages for video: generic NACK (RFC 4585 §6.2.1, RTPFB FMT 1), Picture Loss
//! Indication (RFC 4585 §6.3.1, PSFB FMT 1), Full Intra Request (RFC 5104 §4.3.1, PSFB FMT 4)
//! and Receiver Estimated Maximum Bitrate (draft-alvestrand-rmcat-remb, PSFB FMT 15 "REMB").
//!
//! [`parse_feedback`] walks a whole compound packet and returns the feedback messages in it;
//! everything else (SR, RR, SDES, BYE, unknown FMTs, malformed packets) is skipped. It never
//! panics, whatever the bytes are.

/// RTCP packet type of transport-layer feedback (RTPFB).
pub const PT_RTPFB: u8 = 205;
/// RTCP packet type of payload-specific feedback (PSFB).
pub const PT_PSFB: u8 = 206;
/// RTPFB FMT of the generic NACK.
pub const FMT_NACK: u8 = 1;
/// PSFB FMT of the Picture Loss Indication.
pub const FMT_PLI: u8 = 1;
/// PSFB FMT of the Full Intra Request.
pub const FMT_FIR: u8 = 4;
/// PSFB FMT of application-layer feedback (REMB).
pub const FMT_AFB: u8 = 15;
/// Most SSRCs one REMB message lists (the count field is 8 bits).
pub const MAX_REMB_SSRCS: usize = 255;

/// One RTCP feedback message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// Generic NACK: the listed sequence numbers of `media_ssrc` are missing.
    Nack {
        /// SSRC of the packet's sender.
        sender_ssrc: u32,
        /// SSRC of the media source the packets belong to.
        media_ssrc: u32,
        /// The missing sequence numbers.
        seqs: Vec<u16>,
    },
    /// Picture Loss Indication: send a keyframe.
    Pli {
        /// SSRC of the packet's sender.
        sender_ssrc: u32,
        /// SSRC of the media source asked for a keyframe.
        media_ssrc: u32,
    },
    /// Full Intra Request: send a keyframe (one per FCI entry).
    Fir {
        /// SSRC of the packet's sender.
        sender_ssrc: u32,
        /// SSRC of the media source asked for a keyframe (from the FCI).
        media_ssrc: u32,
        /// Command sequence number: a repeated number is the same request.
        seq_nr: u8,
    },
    /// Receiver Estimated Maximum Bitrate.
    Remb {
        /// SSRC of the packet's sender.
        sender_ssrc: u32,
        /// The estimate in bits per second.
        bitrate_bps: u64,
        /// The media sources the estimate applies to.
        ssrcs: Vec<u32>,
    },
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Groups sequence numbers into generic NACK FCIs (PID, BLP). Duplicates are merged; the
/// order is ascending in the wrap-around sense, starting from the first given number.
pub fn nack_fcis(seqs: &[u16]) -> Vec<(u16, u16)> {
    let Some(&base) = seqs.first() else {
        return Vec::new();
    };
    let mut sorted: Vec<u16> = seqs.to_vec();
    // Offsets from the first number order them across the 65535 -> 0 wrap.
    sorted.sort_unstable_by_key(|s| s.wrapping_sub(base) as i16);
    sorted.dedup();
    let mut fcis: Vec<(u16, u16)> = Vec::new();
    for s in sorted {
        if let Some((pid, blp)) = fcis.last_mut() {
            let d = s.wrapping_sub(*pid);
            if (1..=16).contains(&d) {
                *blp |= 1 << (d - 1);
                continue;
            }
        }
        fcis.push((s, 0));
    }
    fcis
}

fn header(out: &mut Vec<u8>, fmt: u8, pt: u8, words_after_header: usize) {
    out.push(0x80 | (fmt & 0x1f));
    out.push(pt);
    // Callers bound the body so the length fits in 16 bits.
    out.extend_from_slice(&(words_after_header.min(usize::from(u16::MAX)) as u16).to_be_bytes());
}

/// Largest number of NACK FCIs one RTCP packet can carry (16-bit length in words).
const MAX_NACK_FCIS: usize = u16::MAX as usize - 2;

/// Appends one RTCP packet carrying `fb`. A NACK without sequence numbers writes nothing; a
/// REMB lists at most [`MAX_REMB_SSRCS`] SSRCs.
pub fn write_feedback(out: &mut Vec<u8>, fb: &Feedback) {
    match fb {
        Feedback::Nack {
            sender_ssrc,
            media_ssrc,
            seqs,
        } => {
            let mut fcis = nack_fcis(seqs);
            if fcis.is_empty() {
                return;
            }
            fcis.truncate(MAX_NACK_FCIS);
            header(out, FMT_NACK, PT_RTPFB, 2 + fcis.len());
            out.extend_from_slice(&sender_ssrc.to_be_bytes());
            out.extend_from_slice(&media_ssrc.to_be_bytes());
            for (pid, blp) in fcis {
                out.extend_from_slice(&pid.to_be_bytes());
                out.extend_from_slice(&blp.to_be_bytes());
            }
        }
        Feedback::Pli {
            sender_ssrc,
            media_ssrc,
        } => {
            header(out, FMT_PLI, PT_PSFB, 2);
            out.extend_from_slice(&sender_ssrc.to_be_bytes());
            out.extend_from_slice(&media_ssrc.to_be_bytes());
        }
        Feedback::Fir {
            sender_ssrc,
            media_ssrc,
            seq_nr,
        } => {
            header(out, FMT_FIR, PT_PSFB, 4);
            out.extend_from_slice(&sender_ssrc.to_be_bytes());
            // RFC 5104 §4.3.1.2: the media source field is unused (0); the SSRC is in the FCI.
            out.extend_from_slice(&0u32.to_be_bytes());
            out.extend_from_slice(&media_ssrc.to_be_bytes());
            out.extend_from_slice(&[*seq_nr, 0, 0, 0]);
        }
        Feedback::Remb {
            sender_ssrc,
            bitrate_bps,
            ssrcs,
        } => {
            let ssrcs = &ssrcs[..ssrcs.len().min(MAX_REMB_SSRCS)];
            let (exp, mantissa) = remb_encode(*bitrate_bps);
            header(out, FMT_AFB, PT_PSFB, 4 + ssrcs.len());
            out.extend_from_slice(&sender_ssrc.to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes());
            out.extend_from_slice(b"REMB");
            out.push(ssrcs.len() as u8);
            out.push((exp << 2) | ((mantissa >> 16) as u8 & 0x03));
            out.extend_from_slice(&((mantissa & 0xffff) as u16).to_be_bytes());
            for s in ssrcs {
                out.extend_from_slice(&s.to_be_bytes());
            }
        }
    }
}

/// Splits a bitrate into REMB's 6-bit exponent and 18-bit mantissa, rounding down.
fn remb_encode(bps: u64) -> (u8, u32) {
    let mut exp = 0u8;
    let mut mantissa = bps;
    while mantissa >= 1 << 18 {
        mantissa >>= 1;
        exp += 1;
    }
    // bps < 2^64 needs at most 46 shifts: exp fits in 6 bits.
    (exp, mantissa as u32)
}

/// The bitrate of a REMB exponent and mantissa, saturating at `u64::MAX`.
fn remb_decode(exp: u8, mantissa: u32) -> u64 {
    let value = u128::from(mantissa) << exp;
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Appends a compound-ready RTCP packet for each message (see [`write_feedback`]).
pub fn write_all(out: &mut Vec<u8>, fbs: &[Feedback]) {
    for fb in fbs {
        write_feedback(out, fb);
    }
}

fn parse_one(pt: u8, fmt: u8, body: &[u8], out: &mut Vec<Feedback>) {
    // Common feedback header after the first word: sender SSRC, media source SSRC.
    let (Some(sender_ssrc), Some(media_ssrc)) = (be_u32(body, 0), be_u32(body, 4)) else {
        return;
    };
    let fci = &body[8..];
    match (pt, fmt) {
        (PT_RTPFB, FMT_NACK) => {
            let mut seqs = Vec::new();
            for chunk in fci.chunks_exact(4) {
                let pid = u16::from_be_bytes([chunk[0], chunk[1]]);
                let blp = u16::from_be_bytes([chunk[2], chunk[3]]);
                seqs.push(pid);
                for bit in 0..16u16 {
                    if blp & (1 << bit) != 0 {
                        seqs.push(pid.wrapping_add(bit + 1));
                    }
                }
            }
            if !seqs.is_empty() {
                out.push(Feedback::Nack {
                    sender_ssrc,
                    media_ssrc,
                    seqs,
                });
            }
        }
        (PT_PSFB, FMT_PLI) => out.push(Feedback::Pli {
            sender_ssrc,
            media_ssrc,
        }),
        (PT_PSFB, FMT_FIR) => {
            for entry in fci.chunks_exact(8) {
                out.push(Feedback::Fir {
                    sender_ssrc,
                    media_ssrc: u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]),
                    seq_nr: entry[4],
                });
            }
        }
        (PT_PSFB, FMT_AFB) => {
            if fci.get(..4) != Some(b"REMB") {
                return;
            }
            let (Some(&count), Some(word)) = (fci.get(4), be_u32(fci, 4)) else {
                return;
            };
            let exp = ((word >> 18) & 0x3f) as u8;
            let mantissa = word & 0x3ffff;
            let mut ssrcs = Vec::with_capacity(usize::from(count));
            for i in 0..usize::from(count) {
                match be_u32(fci, 8 + 4 * i) {
                    Some(s) => ssrcs.push(s),
                    None => return,
                }
            }
            out.push(Feedback::Remb {
                sender_ssrc,
                bitrate_bps: remb_decode(exp, mantissa),
                ssrcs,
            });
        }
        _ => {}
    }
}

/// The feedback messages of an RTCP compound packet (or a single RTCP packet).
///
/// Walks the packets by their length fields; stops at a packet whose version is not 2 or
/// whose length runs past the datagram; skips packets that are not NACK, PLI, FIR or REMB and
/// feedback packets too short for their headers. Never panics.
pub fn parse_feedback(compound: &[u8]) -> Vec<Feedback> {
    let mut out = Vec::new();
    let mut rest = compound;
    while rest.len() >= 4 {
        let b0 = rest[0];
        if b0 >> 6 != 2 {
            break;
        }
        let fmt = b0 & 0x1f;
        let pt = rest[1];
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        let Some(packet) = rest.get(..len) else {
            break;
        };
        rest = &rest[len..];
        let mut body = &packet[4..];
        if b0 & 0x20 != 0 {
            // Padding: the last octet counts the padding octets, itself included.
            let pad = usize::from(*packet.last().unwrap_or(&0));
            if pad == 0 || pad > body.len() {
                continue;
            }
            body = &body[..body.len() - pad];
        }
        if body.len() >= 8 && (pt == PT_RTPFB || pt == PT_PSFB) {
            parse_one(pt, fmt, body, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remb_mantissa_exponent() {
        for bps in [0u64, 1, 262_143, 262_144, 1_000_000, 2_500_000, u64::MAX] {
            let (e, m) = remb_encode(bps);
            assert!(m < 1 << 18 && e < 64);
            let back = remb_decode(e, m);
            assert!(back <= bps && bps - back < (1u64 << e), "{bps} -> {back}");
        }
    }

    #[test]
    fn fcis_group_and_wrap() {
        assert_eq!(nack_fcis(&[65535, 0, 1, 20]), vec![(65535, 0b11), (20, 0)]);
        assert_eq!(nack_fcis(&[5, 5, 3]), vec![(3, 0b10)]);
        assert_eq!(nack_fcis(&[10, 26, 27]), vec![(10, 1 << 15), (27, 0)]);
    }
}
