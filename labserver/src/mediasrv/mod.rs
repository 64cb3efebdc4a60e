//! Media server: voicemail with MWI, audio conferences, IVR and click-to-call, as a SIP UA of its own behind the proxy.

pub mod api;
pub mod conference;
pub mod ivr;
pub mod voicemail;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::authn::Authenticator;
use crate::ca::LabCa;
use crate::config::LabConfig;
use crate::location::Location;
use crate::proxy::Proxy;
use crate::registrar::LocalDomains;
use crate::store::Store;

/// The `[mediasrv]` section: the media server's SIP and RTP sockets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MediaServerConfig {
    /// Run the media server (default false until implemented).
    pub enabled: bool,
}

/// Why the media server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaServerError {
    /// A socket could not be bound.
    #[error("media server: {0}")]
    Io(#[from] std::io::Error),
}

/// A running media server.
pub struct MediaServer {
    addrs: Vec<(String, SocketAddr)>,
}

/// What the media server needs from the rest of the lab server.
pub struct MediaServerDeps<'a> {
    /// The whole configuration.
    pub config: &'a LabConfig,
    /// The store (voicemail metadata, rooms).
    pub store: &'a Store,
    /// The lab CA (TLS for the HTTP API).
    pub ca: &'a LabCa,
    /// Digest authentication against the users table.
    pub authn: Arc<Authenticator>,
    /// The proxy (voicemail on no answer, busy, not registered).
    pub proxy: &'a Arc<Proxy>,
    /// Registered bindings (MWI to a user's devices).
    pub location: Location,
    /// Which domains are ours.
    pub locals: Arc<LocalDomains>,
}

impl MediaServer {
    /// Starts the media server when `[mediasrv]` enables it.
    pub async fn start(deps: MediaServerDeps<'_>) -> Result<Option<MediaServer>, MediaServerError> {
        if !deps.config.mediasrv.enabled {
            return Ok(None);
        }
        Ok(Some(MediaServer { addrs: Vec::new() }))
    }

    /// `(key, address)` pairs for the ready line, e.g. `("api", 127.0.0.1:8088)`.
    pub fn ready_fields(&self) -> Vec<(String, SocketAddr)> {
        self.addrs.clone()
    }

    /// Ends every call and closes the sockets.
    pub async fn shutdown(&self) {}
}
