//! NAT traversal for media: STUN binding discovery, a TURN client (RFC 8656) and ICE (RFC 8445/8839).

pub mod ice;
pub mod stun;
pub mod turn;
