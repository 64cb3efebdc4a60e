//! Ogg Opus files (RFC 7845): a crash-tolerant writer and a reader for recordings and prompts.
