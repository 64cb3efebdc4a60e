//! The presence agent (RFC 3856/3903/6665): PUBLISH, SUBSCRIBE/NOTIFY, watcher-info, pres-rules (filled in by the SIMPLE issue).
