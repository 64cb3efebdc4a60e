//! The XCAP server (RFC 4825): resource-lists and pres-rules documents over HTTPS with digest (filled in by the SIMPLE issue).
