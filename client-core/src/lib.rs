//! The Tandem SIP user agent: accounts, registration, calls.
