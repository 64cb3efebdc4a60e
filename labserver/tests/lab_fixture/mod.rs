//! Shared setup for tests that start lab parts in-process: a loopback configuration in a
//! temporary directory, and for one component on its own (the MSRP relay, the TURN server)
//! the store with its users, the CA and the digest authenticator its `start` takes. Also used
//! by the client-core tests (`#[path]`), so it needs nothing but `tandem-labserver`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tandem_labserver::authn::{Authenticator, AuthnSettings};
use tandem_labserver::ca::LabCa;
use tandem_labserver::config::LabConfig;
use tandem_labserver::store::Store;

/// The lab domain of these tests.
pub const DOMAIN: &str = "tandem.lab";

/// A configuration for `DOMAIN` with its data in `dir`: SIP on loopback UDP (and TCP when `tcp`)
/// on free ports, no TLS listener, no demo users.
pub fn loopback_config(dir: &Path, tcp: bool) -> LabConfig {
    let mut config = LabConfig {
        domain: DOMAIN.to_string(),
        data_dir: dir.to_path_buf(),
        demo_users: false,
        ..LabConfig::default()
    };
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    config.listen.udp = vec![loopback];
    config.listen.tcp = if tcp { vec![loopback] } else { vec![] };
    config.listen.tls = vec![];
    config
}

/// What a lab component's `start(&config, &store, &ca, authn)` takes, in a temporary directory
/// that lives as long as this does.
pub struct Parts {
    pub config: LabConfig,
    pub store: Store,
    pub ca: LabCa,
    pub authn: Arc<Authenticator>,
    pub dir: tempfile::TempDir,
}

impl Parts {
    /// A [`loopback_config`] that `tweak` edits, a store with `users` (name, password), the
    /// lab CA, and an MD5 digest authenticator for `DOMAIN` with the nonce secret `secret`.
    pub async fn new(
        users: &[(&str, &str)],
        tcp: bool,
        secret: [u8; 32],
        tweak: impl FnOnce(&mut LabConfig),
    ) -> Parts {
        let dir = tempfile::tempdir().unwrap();
        let mut config = loopback_config(dir.path(), tcp);
        tweak(&mut config);
        let store = Store::open_in(dir.path()).await.unwrap();
        for (user, password) in users {
            store.add_user(user, DOMAIN, password).await.unwrap();
        }
        let ca = LabCa::load_or_create(dir.path(), &[DOMAIN.to_string()]).unwrap();
        let authn = Arc::new(
            Authenticator::new(
                AuthnSettings {
                    realm: DOMAIN.to_string(),
                    domain: DOMAIN.to_string(),
                    algorithms: vec!["MD5".to_string()],
                    nonce_lifetime: Duration::from_secs(300),
                    trusted: vec![],
                },
                secret,
                store.clone(),
            )
            .unwrap(),
        );
        Parts {
            config,
            store,
            ca,
            authn,
            dir,
        }
    }
}
