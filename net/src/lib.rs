//! The tokio driver for Tandem's sans-IO SIP engines: transports, resolution and timers.

mod error;
pub mod resolve;

pub use error::NetError;
pub use resolve::{DnsConfig, ResolveTarget, SipResolver, TargetHost};
