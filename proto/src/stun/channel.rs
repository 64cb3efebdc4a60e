//! TURN ChannelData (RFC 8656 §12.4) and the framing of STUN/ChannelData over TCP/TLS (§12.5).

use bytes::{Buf, Bytes, BytesMut};

use super::message::HEADER_LEN;
use super::{MAGIC_COOKIE, StunError};

/// The first channel number a client may bind.
pub const MIN_CHANNEL: u16 = 0x4000;
/// The last channel number a client may bind: 0x7FFF, the RFC 5766 range. RFC 8656 narrowed it
/// to 0x4FFF, but coturn's clients (and older stacks) still pick numbers up to 0x7FFF, and the
/// leading bits `01` still tell such ChannelData apart from STUN.
pub const MAX_CHANNEL: u16 = 0x7FFF;

/// True when `n` is a bindable channel number.
pub fn valid_channel(n: u16) -> bool {
    (MIN_CHANNEL..=MAX_CHANNEL).contains(&n)
}

/// True when `buf` looks like a STUN message (leading bits 00 and the magic cookie).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN
        && buf[0] & 0xC0 == 0
        && u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) == MAGIC_COOKIE
}

/// True when `buf` starts like a ChannelData message (leading bits 01).
pub fn is_channel_data(buf: &[u8]) -> bool {
    buf.first().is_some_and(|b| b & 0xC0 == 0x40)
}

/// A decoded ChannelData message, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number.
    pub channel: u16,
    /// The application data.
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Decodes a ChannelData message from a datagram (padding after the data is allowed, at most
    /// 3 bytes) or from a frame popped by [`StreamFramer`].
    pub fn decode(buf: &'a [u8]) -> Result<ChannelData<'a>, StunError> {
        if buf.len() < 4 {
            return Err(StunError::BadChannelData("shorter than a header"));
        }
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        if !valid_channel(channel) {
            return Err(StunError::BadChannelData("channel number out of range"));
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        let rest = &buf[4..];
        if rest.len() < len {
            return Err(StunError::BadChannelData("shorter than its length"));
        }
        if rest.len() - len > 3 {
            return Err(StunError::BadChannelData("trailing bytes"));
        }
        Ok(ChannelData {
            channel,
            data: &rest[..len],
        })
    }

    /// Appends the encoded message to `out`; `pad` rounds it up to a multiple of 4 (required over
    /// TCP/TLS). Data longer than 65535 bytes is truncated to that.
    pub fn encode_into(channel: u16, data: &[u8], pad: bool, out: &mut Vec<u8>) {
        let data = &data[..data.len().min(usize::from(u16::MAX))];
        out.reserve(4 + data.len() + 3);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        if pad {
            while !out.len().is_multiple_of(4) {
                out.push(0);
            }
        }
    }

    /// The encoded message as a new vector.
    pub fn encode(channel: u16, data: &[u8], pad: bool) -> Vec<u8> {
        let mut out = Vec::new();
        ChannelData::encode_into(channel, data, pad, &mut out);
        out
    }
}

/// One frame popped from a TCP/TLS stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole STUN message (decode with [`super::Message::decode_bytes`]).
    Stun(Bytes),
    /// A whole ChannelData message including padding (decode with [`ChannelData::decode`]).
    ChannelData(Bytes),
}

/// Splits a TCP/TLS byte stream into STUN messages and ChannelData (RFC 8656 §12.5): the
/// leading two bits tell them apart, the length fields bound each frame (at most 64 KiB).
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: BytesMut,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet popped.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame; `Ok(None)` when more bytes are needed, `Err` when the stream is
    /// not STUN/TURN (the connection should be closed).
    pub fn pop(&mut self) -> Result<Option<Frame>, StunError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let first = self.buf[0];
        let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        match first & 0xC0 {
            0x00 => {
                if !len.is_multiple_of(4) {
                    return Err(StunError::BadLength);
                }
                if self.buf.len() >= 8 {
                    let cookie =
                        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
                    if cookie != MAGIC_COOKIE {
                        return Err(StunError::NotStun);
                    }
                }
                let total = HEADER_LEN + len;
                if self.buf.len() < total {
                    return Ok(None);
                }
                Ok(Some(Frame::Stun(self.buf.split_to(total).freeze())))
            }
            0x40 => {
                let total = 4 + len.div_ceil(4) * 4;
                if self.buf.len() < total {
                    return Ok(None);
                }
                let frame = self.buf.split_to(total).freeze();
                Ok(Some(Frame::ChannelData(frame)))
            }
            _ => {
                self.buf.advance(self.buf.len());
                Err(StunError::NotStun)
            }
        }
    }
}
