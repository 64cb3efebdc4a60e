//! The H.264 RTP payload format (RFC 6184), packetization-mode 1 (non-interleaved): single NAL
//! unit packets, STAP-A aggregation and FU-A fragmentation.
//!
//! The packetizer takes an Annex-B access unit (3- or 4-byte start codes), aggregates small
//! consecutive NAL units (typically SPS + PPS) into a STAP-A, sends NAL units that fit as single
//! NAL unit packets and fragments the others into FU-As. The depayloader rebuilds Annex-B with
//! 4-byte start codes and rejects interleaved-mode packets (STAP-B, MTAP16/24, FU-B) and
//! inconsistent fragment sequences.

use super::{DepayloadedFrame, MAX_FRAME_BYTES, Packetizer, PayloadError, even_split};
use crate::codec::EncodedFrame;

/// NAL unit type of a non-IDR slice.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// RTP packet type: single-time aggregation packet A.
pub const STAP_A: u8 = 24;
/// RTP packet type: single-time aggregation packet B (interleaved mode only).
pub const STAP_B: u8 = 25;
/// RTP packet type: multi-time aggregation packet, 16-bit offsets (interleaved mode only).
pub const MTAP16: u8 = 26;
/// RTP packet type: multi-time aggregation packet, 24-bit offsets (interleaved mode only).
pub const MTAP24: u8 = 27;
/// RTP packet type: fragmentation unit A.
pub const FU_A: u8 = 28;
/// RTP packet type: fragmentation unit B (interleaved mode only).
pub const FU_B: u8 = 29;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The NAL unit type (low 5 bits of the NAL header).
pub fn nal_type(header: u8) -> u8 {
    header & 0x1f
}

/// Splits an Annex-B byte stream into NAL units (without start codes or trailing zero bytes).
///
/// Both 3-byte (`00 00 01`) and 4-byte (`00 00 00 01`) start codes are accepted; zero bytes
/// before the first start code are skipped; empty NAL units are dropped. A stream that does not
/// begin with a start code (after leading zeros) is malformed.
pub fn split_annex_b(data: &[u8]) -> Result<Vec<&[u8]>, PayloadError> {
    let mut starts = Vec::new(); // (start of the start code, start of the NAL unit)
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else if data[i + 2] > 1 {
            i += 3;
        } else {
            i += 1;
        }
    }
    let Some(&(first_code, _)) = starts.first() else {
        return Err(PayloadError::Malformed("no Annex-B start code"));
    };
    if data[..first_code].iter().any(|&b| b != 0) {
        return Err(PayloadError::Malformed(
            "data before the first Annex-B start code",
        ));
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &(_, nal_start)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(data.len(), |&(code, _)| code);
        let mut nal = &data[nal_start..end];
        // Trailing zero bytes belong to the next start code (4-byte form) or are trailing_zero_8bits.
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    Ok(nals)
}

/// The H.264 packetizer (packetization-mode 1).
#[derive(Debug, Clone, Default)]
pub struct H264Packetizer {}

impl H264Packetizer {
    /// A new packetizer.
    pub fn new() -> Self {
        H264Packetizer {}
    }
}

fn push_fu_a(out: &mut Vec<Vec<u8>>, nal: &[u8], max_payload: usize) {
    let header = nal[0];
    let indicator = (header & 0xe0) | FU_A;
    let body = &nal[1..];
    let room = max_payload - 2;
    let count = body.len().div_ceil(room);
    let mut at = 0;
    for (i, size) in even_split(body.len(), count).enumerate() {
        let mut fu_header = nal_type(header);
        if i == 0 {
            fu_header |= 0x80;
        }
        if i + 1 == count {
            fu_header |= 0x40;
        }
        let mut p = Vec::with_capacity(2 + size);
        p.push(indicator);
        p.push(fu_header);
        p.extend_from_slice(&body[at..at + size]);
        at += size;
        out.push(p);
    }
}

impl Packetizer for H264Packetizer {
    fn packetize(
        &mut self,
        frame: &EncodedFrame,
        max_payload: usize,
    ) -> Result<Vec<Vec<u8>>, PayloadError> {
        // FU-A needs 2 header bytes and at least one byte of data.
        if max_payload < 3 {
            return Err(PayloadError::MaxPayloadTooSmall(max_payload));
        }
        if frame.data.len() > MAX_FRAME_BYTES {
            return Err(PayloadError::TooLarge);
        }
        let nals = split_annex_b(&frame.data)?;
        if nals.is_empty() {
            return Err(PayloadError::Malformed("access unit without NAL units"));
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < nals.len() {
            let nal = nals[i];
            if nal.len() > max_payload {
                // A NAL of 2+ bytes here: max_payload >= 3.
                push_fu_a(&mut out, nal, max_payload);
                i += 1;
                continue;
            }
            // Aggregate following NAL units while the STAP-A fits.
            let mut size = 1 + 2 + nal.len();
            let mut j = i + 1;
            while let Some(next) = nals.get(j) {
                if next.len() > usize::from(u16::MAX) || size + 2 + next.len() > max_payload {
                    break;
                }
                size += 2 + next.len();
                j += 1;
            }
            if j - i >= 2 {
                let group = &nals[i..j];
                let f = group.iter().fold(0u8, |acc, n| acc | (n[0] & 0x80));
                let nri = group.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
                let mut p = Vec::with_capacity(size);
                p.push(f | nri | STAP_A);
                for n in group {
                    // Each fits in max_payload, itself at most a datagram, and was checked above.
                    p.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    p.extend_from_slice(n);
                }
                out.push(p);
                i = j;
            } else {
                out.push(nal.to_vec());
                i += 1;
            }
        }
        Ok(out)
    }
}

/// Visits the NAL unit headers a payload carries at its start (single NAL: one; STAP-A: all;
/// FU-A start: the reconstructed header). Returns false when the payload is not a frame part
/// this module understands.
fn first_nal_types(payload: &[u8], mut visit: impl FnMut(u8)) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    match nal_type(b0) {
        1..=23 => {
            visit(nal_type(b0));
            true
        }
        STAP_A => {
            let mut at = 1;
            while let Some(len) = payload.get(at..at + 2) {
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                match payload.get(at + 2) {
                    Some(&h) if len > 0 => visit(nal_type(h)),
                    _ => break,
                }
                at += 2 + len;
            }
            true
        }
        FU_A => match payload.get(1) {
            Some(&fu) if fu & 0x80 != 0 => {
                visit(nal_type(fu));
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// True when `payload` may start an access unit: a single NAL unit, a STAP-A or an FU-A start.
pub fn is_frame_start(payload: &[u8]) -> bool {
    first_nal_types(payload, |_| {})
}

/// True when `payload` starts an access unit that carries an SPS or an IDR slice.
pub fn is_keyframe(payload: &[u8]) -> bool {
    let mut key = false;
    let ok = first_nal_types(payload, |t| key |= t == NAL_IDR || t == NAL_SPS);
    ok && key
}

/// True when the payload carries an SPS: an access unit that unambiguously starts here.
pub fn has_sps(payload: &[u8]) -> bool {
    let mut sps = false;
    first_nal_types(payload, |t| sps |= t == NAL_SPS);
    sps
}

/// Checks that the payload is a single NAL unit, a well-formed STAP-A or an FU-A with its
/// header and data.
pub fn check_payload(payload: &[u8]) -> Result<(), PayloadError> {
    let b0 = *payload.first().ok_or(PayloadError::Truncated)?;
    match nal_type(b0) {
        1..=23 => Ok(()),
        STAP_A => {
            walk_stap_a(payload, |_| Ok(()))?;
            Ok(())
        }
        FU_A => {
            if payload.len() < 3 {
                return Err(PayloadError::Truncated);
            }
            Ok(())
        }
        STAP_B => Err(PayloadError::Unsupported("STAP-B")),
        MTAP16 | MTAP24 => Err(PayloadError::Unsupported("MTAP")),
        FU_B => Err(PayloadError::Unsupported("FU-B")),
        _ => Err(PayloadError::Malformed("undefined H.264 NAL unit type")),
    }
}

/// Calls `visit` with each NAL unit of a STAP-A; sizes must be non-zero and inside the packet.
fn walk_stap_a(
    payload: &[u8],
    mut visit: impl FnMut(&[u8]) -> Result<(), PayloadError>,
) -> Result<usize, PayloadError> {
    let mut at = 1;
    let mut count = 0;
    while at < payload.len() {
        let len = payload.get(at..at + 2).ok_or(PayloadError::Truncated)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len == 0 {
            return Err(PayloadError::Malformed("empty NAL unit in STAP-A"));
        }
        let nal = payload
            .get(at + 2..at + 2 + len)
            .ok_or(PayloadError::Truncated)?;
        visit(nal)?;
        count += 1;
        at += 2 + len;
    }
    if count == 0 {
        return Err(PayloadError::Malformed("STAP-A without NAL units"));
    }
    Ok(count)
}

struct Builder {
    data: Vec<u8>,
    keyframe: bool,
}

impl Builder {
    fn reserve_check(&self, more: usize) -> Result<(), PayloadError> {
        if self.data.len() + more > MAX_FRAME_BYTES {
            return Err(PayloadError::TooLarge);
        }
        Ok(())
    }

    fn nal(&mut self, nal: &[u8]) -> Result<(), PayloadError> {
        self.reserve_check(4 + nal.len())?;
        if let Some(&h) = nal.first() {
            self.keyframe |= nal_type(h) == NAL_IDR;
        }
        self.data.extend_from_slice(&START_CODE);
        self.data.extend_from_slice(nal);
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        self.reserve_check(bytes.len())?;
        self.data.extend_from_slice(bytes);
        Ok(())
    }
}

/// Rebuilds an Annex-B access unit (4-byte start codes) from the payloads of one RTP
/// timestamp, in sequence order.
pub fn depayload(payloads: &[&[u8]]) -> Result<DepayloadedFrame, PayloadError> {
    if payloads.is_empty() {
        return Err(PayloadError::Malformed("no H.264 payloads"));
    }
    let mut b = Builder {
        data: Vec::new(),
        keyframe: false,
    };
    // NAL header (F|NRI|type) of the FU-A being reassembled.
    let mut fu: Option<u8> = None;
    for p in payloads {
        let b0 = *p.first().ok_or(PayloadError::Truncated)?;
        let t = nal_type(b0);
        if t != FU_A && fu.is_some() {
            return Err(PayloadError::Malformed("FU-A interrupted before its end"));
        }
        match t {
            1..=23 => b.nal(p)?,
            STAP_A => {
                walk_stap_a(p, |nal| b.nal(nal))?;
            }
            FU_A => {
                let fu_header = *p.get(1).ok_or(PayloadError::Truncated)?;
                let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
                let header = (b0 & 0xe0) | nal_type(fu_header);
                let data = &p[2..];
                if start {
                    if end {
                        return Err(PayloadError::Malformed("FU-A with both start and end"));
                    }
                    if fu.is_some() {
                        return Err(PayloadError::Malformed(
                            "FU-A start inside a fragmented unit",
                        ));
                    }
                    if matches!(nal_type(fu_header), 0 | 24..=31) {
                        return Err(PayloadError::Malformed("FU-A of an aggregation type"));
                    }
                    b.nal(&[header])?;
                    b.append(data)?;
                    fu = Some(header);
                } else {
                    let Some(open) = fu else {
                        return Err(PayloadError::Malformed("FU-A fragment without its start"));
                    };
                    if nal_type(open) != nal_type(header) {
                        return Err(PayloadError::Malformed("FU-A type changes inside a unit"));
                    }
                    if open & 0x60 != header & 0x60 {
                        return Err(PayloadError::Malformed("FU-A NRI changes inside a unit"));
                    }
                    b.append(data)?;
                    if end {
                        fu = None;
                    }
                }
            }
            STAP_B => return Err(PayloadError::Unsupported("STAP-B")),
            MTAP16 | MTAP24 => return Err(PayloadError::Unsupported("MTAP")),
            FU_B => return Err(PayloadError::Unsupported("FU-B")),
            _ => return Err(PayloadError::Malformed("undefined H.264 NAL unit type")),
        }
    }
    if fu.is_some() {
        return Err(PayloadError::Malformed("FU-A fragment missing its end"));
    }
    if b.data.is_empty() {
        return Err(PayloadError::Malformed("no NAL units"));
    }
    Ok(DepayloadedFrame {
        data: b.data,
        keyframe: b.keyframe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0,
        ];
        let nals = split_annex_b(&s).unwrap();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert!(split_annex_b(&[0x65, 1, 2]).is_err());
        assert!(split_annex_b(&[1, 0, 0, 1, 0x65]).is_err());
        assert_eq!(split_annex_b(&[0, 0, 1]).unwrap(), Vec::<&[u8]>::new());
    }
}
