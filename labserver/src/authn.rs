//! Digest authentication of requests against the user store.
