//! The VP8 RTP payload format (RFC 7741).
//!
//! We send a 4-byte payload descriptor on every packet: X=1, I=1 with a 15-bit PictureID (M=1),
//! S=1 on the first packet of a frame, PID=0 (one partition per frame, no partition
//! boundaries). The depayloader accepts every optional field (L, T, K, TL0PICIDX, TID, KEYIDX,
//! 7- and 15-bit PictureIDs) and checks the first packet of a frame.

use super::{DepayloadedFrame, MAX_FRAME_BYTES, Packetizer, PayloadError, even_split};
use crate::codec::EncodedFrame;

/// Length of the payload descriptor our packetizer writes.
pub const DESCRIPTOR_LEN: usize = 4;

/// The parsed VP8 payload descriptor (RFC 7741 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// N: the frame is not a reference frame.
    pub non_reference: bool,
    /// S: this packet starts a VP8 partition.
    pub start: bool,
    /// PID: the partition index.
    pub partition: u8,
    /// PictureID and whether it was the 15-bit form.
    pub picture_id: Option<(u16, bool)>,
    /// TL0PICIDX, when L is set.
    pub tl0_pic_idx: Option<u8>,
    /// Temporal layer index and the layer-sync bit Y, when T is set.
    pub temporal: Option<(u8, bool)>,
    /// KEYIDX, when K is set.
    pub key_idx: Option<u8>,
    /// Length of the descriptor in bytes; the VP8 data starts there.
    pub len: usize,
}

impl Vp8Descriptor {
    /// True when this packet starts a frame: S=1 and PID=0.
    pub fn starts_frame(&self) -> bool {
        self.start && self.partition == 0
    }
}

/// Parses the payload descriptor at the start of `payload`.
pub fn parse_descriptor(payload: &[u8]) -> Result<Vp8Descriptor, PayloadError> {
    let b0 = *payload.first().ok_or(PayloadError::Truncated)?;
    let mut d = Vp8Descriptor {
        non_reference: b0 & 0x20 != 0,
        start: b0 & 0x10 != 0,
        partition: b0 & 0x07,
        len: 1,
        ..Vp8Descriptor::default()
    };
    if b0 & 0x80 == 0 {
        return Ok(d);
    }
    let x = *payload.get(1).ok_or(PayloadError::Truncated)?;
    let mut at = 2;
    if x & 0x80 != 0 {
        let p0 = *payload.get(at).ok_or(PayloadError::Truncated)?;
        if p0 & 0x80 != 0 {
            let p1 = *payload.get(at + 1).ok_or(PayloadError::Truncated)?;
            d.picture_id = Some(((u16::from(p0 & 0x7f) << 8) | u16::from(p1), true));
            at += 2;
        } else {
            d.picture_id = Some((u16::from(p0), false));
            at += 1;
        }
    }
    if x & 0x40 != 0 {
        d.tl0_pic_idx = Some(*payload.get(at).ok_or(PayloadError::Truncated)?);
        at += 1;
    }
    let t = x & 0x20 != 0;
    let k = x & 0x10 != 0;
    if t || k {
        let b = *payload.get(at).ok_or(PayloadError::Truncated)?;
        if t {
            d.temporal = Some((b >> 6, b & 0x20 != 0));
        }
        if k {
            d.key_idx = Some(b & 0x1f);
        }
        at += 1;
    }
    d.len = at;
    Ok(d)
}

/// True when `payload` starts a VP8 frame (S=1, PID=0).
pub fn is_frame_start(payload: &[u8]) -> bool {
    parse_descriptor(payload).is_ok_and(|d| d.starts_frame())
}

/// True when `payload` starts a VP8 key frame: S=1, PID=0 and the P bit of the VP8 payload
/// header (RFC 7741 §4.3) is 0.
pub fn is_keyframe(payload: &[u8]) -> bool {
    match parse_descriptor(payload) {
        Ok(d) if d.starts_frame() => payload.get(d.len).is_some_and(|b| b & 0x01 == 0),
        _ => false,
    }
}

/// Checks that the descriptor parses and VP8 data follows it.
pub fn check_payload(payload: &[u8]) -> Result<(), PayloadError> {
    let d = parse_descriptor(payload)?;
    if payload.len() <= d.len {
        return Err(PayloadError::Malformed("VP8 payload without data"));
    }
    Ok(())
}

/// The VP8 packetizer: one partition, 15-bit PictureID incremented per frame.
#[derive(Debug, Clone)]
pub struct Vp8Packetizer {
    picture_id: u16,
}

impl Vp8Packetizer {
    /// A packetizer whose first PictureID is random.
    pub fn new() -> Self {
        Self::with_picture_id(rand::random::<u16>())
    }

    /// A packetizer whose first PictureID is `picture_id` (taken modulo 2^15).
    pub fn with_picture_id(picture_id: u16) -> Self {
        Vp8Packetizer {
            picture_id: picture_id & 0x7fff,
        }
    }

    /// The PictureID the next frame gets.
    pub fn next_picture_id(&self) -> u16 {
        self.picture_id
    }
}

impl Default for Vp8Packetizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Packetizer for Vp8Packetizer {
    fn packetize(
        &mut self,
        frame: &EncodedFrame,
        max_payload: usize,
    ) -> Result<Vec<Vec<u8>>, PayloadError> {
        if max_payload <= DESCRIPTOR_LEN {
            return Err(PayloadError::MaxPayloadTooSmall(max_payload));
        }
        if frame.data.is_empty() {
            return Err(PayloadError::Malformed("empty VP8 frame"));
        }
        if frame.data.len() > MAX_FRAME_BYTES {
            return Err(PayloadError::TooLarge);
        }
        let room = max_payload - DESCRIPTOR_LEN;
        let count = frame.data.len().div_ceil(room);
        let pid = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let mut out = Vec::with_capacity(count);
        let mut at = 0;
        for (i, size) in even_split(frame.data.len(), count).enumerate() {
            let mut p = Vec::with_capacity(DESCRIPTOR_LEN + size);
            // X=1, N=0, S on the first packet, PID=0.
            p.push(0x80 | if i == 0 { 0x10 } else { 0 });
            // I=1 (PictureID present), no L/T/K.
            p.push(0x80);
            // M=1: 15-bit PictureID.
            p.push(0x80 | (pid >> 8) as u8);
            p.push((pid & 0xff) as u8);
            p.extend_from_slice(&frame.data[at..at + size]);
            at += size;
            out.push(p);
        }
        Ok(out)
    }
}

/// Rebuilds a VP8 frame from the payloads of one RTP timestamp, in sequence order.
pub fn depayload(payloads: &[&[u8]]) -> Result<DepayloadedFrame, PayloadError> {
    let (first, rest) = payloads
        .split_first()
        .ok_or(PayloadError::Malformed("no VP8 payloads"))?;
    let d0 = parse_descriptor(first)?;
    if !d0.starts_frame() {
        return Err(PayloadError::Malformed(
            "first VP8 packet does not start partition 0",
        ));
    }
    let total: usize = payloads.iter().map(|p| p.len()).sum();
    if total > MAX_FRAME_BYTES + payloads.len() * 8 {
        return Err(PayloadError::TooLarge);
    }
    let mut data = Vec::with_capacity(total);
    data.extend_from_slice(&first[d0.len..]);
    for p in rest {
        let d = parse_descriptor(p)?;
        if d.starts_frame() {
            return Err(PayloadError::Malformed("VP8 frame start inside a frame"));
        }
        if let (Some((a, _)), Some((b, _))) = (d0.picture_id, d.picture_id)
            && a != b
        {
            return Err(PayloadError::Malformed(
                "VP8 PictureID changes inside a frame",
            ));
        }
        data.extend_from_slice(&p[d.len..]);
    }
    if data.len() > MAX_FRAME_BYTES {
        return Err(PayloadError::TooLarge);
    }
    // RFC 6386 §9.1: 3-byte frame tag; key frames add the start code 9d 01 2a and 4 bytes of size.
    let tag = data
        .first()
        .ok_or(PayloadError::Malformed("empty VP8 frame"))?;
    let keyframe = tag & 0x01 == 0;
    if data.len() < 3 {
        return Err(PayloadError::Truncated);
    }
    if keyframe {
        if data.len() < 10 {
            return Err(PayloadError::Truncated);
        }
        if data[3..6] != [0x9d, 0x01, 0x2a] {
            return Err(PayloadError::Malformed("VP8 key frame without start code"));
        }
    }
    Ok(DepayloadedFrame { data, keyframe })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_optional_fields() {
        // X, N, S, PID=2; I L T K; 15-bit PictureID 0x1234; TL0PICIDX 7; TID 2 Y KEYIDX 5.
        let p = [0xb2, 0xf0, 0x92, 0x34, 0x07, 0xa5, 0xaa];
        let d = parse_descriptor(&p).unwrap();
        assert!(d.non_reference && d.start);
        assert_eq!(d.partition, 2);
        assert_eq!(d.picture_id, Some((0x1234, true)));
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!(d.temporal, Some((2, true)));
        assert_eq!(d.key_idx, Some(5));
        assert_eq!(d.len, 6);
    }

    #[test]
    fn short_descriptors() {
        assert_eq!(parse_descriptor(&[]), Err(PayloadError::Truncated));
        assert_eq!(parse_descriptor(&[0x80]), Err(PayloadError::Truncated));
        assert_eq!(
            parse_descriptor(&[0x80, 0x80]),
            Err(PayloadError::Truncated)
        );
        assert_eq!(
            parse_descriptor(&[0x80, 0x80, 0x80]),
            Err(PayloadError::Truncated)
        );
        assert_eq!(
            parse_descriptor(&[0x80, 0x10]),
            Err(PayloadError::Truncated)
        );
        let d = parse_descriptor(&[0x10, 0x00]).unwrap();
        assert_eq!(d.len, 1);
        let d = parse_descriptor(&[0x90, 0x80, 0x05, 0x00]).unwrap();
        assert_eq!(d.picture_id, Some((5, false)));
        assert_eq!(d.len, 3);
    }
}
