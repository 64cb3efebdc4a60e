//! SDP (RFC 4566/8866) and offer/answer (RFC 3264).
