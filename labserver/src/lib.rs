//! The Tandem lab server: registrar, authenticating proxy, storage and call records.

pub mod ca;
pub mod config;
pub mod store;
pub mod store_im;
pub mod store_voicemail;
pub mod store_xcap;

pub mod authn;
pub mod https;
pub mod im;
pub mod location;
pub mod media_relay;
pub mod mediasrv;
pub mod msrp_relay;
pub mod nat;
pub mod presence;
pub mod proxy;
pub mod registrar;
pub mod rls;
pub mod server;
pub mod turn;
pub mod xcap;
pub mod xcap_node;
