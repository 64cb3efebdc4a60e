//! The registrar (RFC 3261 §10).
