//! Sans-IO SIP protocol engines shared by the Tandem client and lab server.
//!
//! Nothing in this crate touches a socket, a clock or a random source by itself:
//! time and randomness are passed in, output is polled.

pub mod auth;
pub mod dialog;
pub mod flow;
pub mod msg;
pub mod msrp;
pub mod sdp;
pub mod simple;
pub mod spread;
pub mod stun;
pub mod transaction;

pub use flow::{Flow, Transport};
