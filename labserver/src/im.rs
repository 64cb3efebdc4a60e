//! Page-mode instant messages (RFC 3428): routing, store-and-forward for offline users (filled in by the SIMPLE issue).
