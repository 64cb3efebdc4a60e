//! STUN Binding discovery of a socket's server-reflexive address (RFC 8489).
