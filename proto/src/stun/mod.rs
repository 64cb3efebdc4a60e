//! Sans-IO STUN (RFC 8489) and TURN (RFC 8656) messages: attributes, integrity, fingerprint.
