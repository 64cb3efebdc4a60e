//! SIP messages: parsing, printing, typed headers (RFC 3261 §7, §19, §20, §25).
