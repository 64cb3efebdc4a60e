//! ICE attributes in SDP (RFC 8839): candidates, ufrag/pwd, ice-options, end-of-candidates.
