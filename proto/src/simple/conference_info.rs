//! The conference event package's `conference-info` documents (RFC 4575).
