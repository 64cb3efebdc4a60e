//! MSRP relay (RFC 4976): AUTH with the SIP credentials, Use-Path, forwarding between sessions.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::authn::Authenticator;
use crate::ca::LabCa;
use crate::config::LabConfig;
use crate::store::Store;

/// The `[msrp]` section: the MSRP relay's listeners and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MsrpRelayConfig {
    /// Run the relay (default false until implemented).
    pub enabled: bool,
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MsrpRelayError {
    /// A listener could not be bound.
    #[error("msrp relay: {0}")]
    Io(#[from] std::io::Error),
}

/// A running MSRP relay.
pub struct MsrpRelay {
    addrs: Vec<(String, SocketAddr)>,
}

impl MsrpRelay {
    /// Starts the relay when `[msrp]` enables it.
    pub async fn start(
        config: &LabConfig,
        _store: &Store,
        _ca: &LabCa,
        _authn: Arc<Authenticator>,
    ) -> Result<Option<MsrpRelay>, MsrpRelayError> {
        if !config.msrp.enabled {
            return Ok(None);
        }
        Ok(Some(MsrpRelay { addrs: Vec::new() }))
    }

    /// `(key, address)` pairs for the ready line, e.g. `("msrp", 127.0.0.1:2855)`.
    pub fn ready_fields(&self) -> Vec<(String, SocketAddr)> {
        self.addrs.clone()
    }

    /// Closes the listeners and every relayed connection.
    pub async fn shutdown(&self) {}
}
