//! The tokio driver for Tandem's sans-IO SIP engines: transports, resolution and timers.
