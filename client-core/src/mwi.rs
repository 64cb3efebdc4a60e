//! Message waiting indication (RFC 3842): subscribing to a voicemail account's message-summary.
