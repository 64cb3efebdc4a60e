//! MSRP (RFC 4975/4976), sans-IO: messages, chunking, reports, URIs (filled in by the SIMPLE issue).
