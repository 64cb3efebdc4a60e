//! MSRP sessions (RFC 4975): session-mode chat and file transfer (RFC 5547) over TCP/TLS, via relays (RFC 4976).
