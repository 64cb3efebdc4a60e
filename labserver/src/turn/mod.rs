//! STUN (RFC 8489) and TURN (RFC 8656) server: long-term credentials from the SIP accounts, REST credentials.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::authn::Authenticator;
use crate::ca::LabCa;
use crate::config::LabConfig;
use crate::store::Store;

/// The `[turn]` section: the STUN/TURN listeners, realm and quotas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Run the STUN/TURN server (default false until implemented).
    pub enabled: bool,
}

/// Why the STUN/TURN server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    /// A listener could not be bound.
    #[error("turn: {0}")]
    Io(#[from] std::io::Error),
}

/// A running STUN/TURN server.
pub struct TurnServer {
    addrs: Vec<(String, SocketAddr)>,
}

impl TurnServer {
    /// Starts the server when `[turn]` enables it.
    pub async fn start(
        config: &LabConfig,
        _store: &Store,
        _ca: &LabCa,
        _authn: Arc<Authenticator>,
    ) -> Result<Option<TurnServer>, TurnError> {
        if !config.turn.enabled {
            return Ok(None);
        }
        Ok(Some(TurnServer { addrs: Vec::new() }))
    }

    /// `(key, address)` pairs for the ready line, e.g. `("turn", 127.0.0.1:3478)`.
    pub fn ready_fields(&self) -> Vec<(String, SocketAddr)> {
        self.addrs.clone()
    }

    /// Closes the listeners and frees every allocation.
    pub async fn shutdown(&self) {}
}
