//! TURN client (RFC 8656) over UDP, TCP and TLS: allocation, refresh, permissions, channels.
