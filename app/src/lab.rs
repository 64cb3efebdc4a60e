//! The bundled lab server: `tandem-labserver` in-process, on loopback, with demo accounts whose
//! passwords live in the OS keyring.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use rand::seq::IndexedRandom;
use tandem_client_core::types::Transport;
use tandem_labserver::ca::LabCa;
use tandem_labserver::config::LabConfig;
use tandem_labserver::server::LabServer;
use tandem_labserver::store::Store;

use crate::explain::failure;
use crate::secrets::Secrets;
use crate::types::{Failure, FailureKind, LabInfo, LabUser};

/// The demo accounts of the bundled lab; the app signs in as the first.
pub const DEMO_USERS: [&str; 3] = ["alice", "bob", "carol"];
/// The bundled lab's SIP domain.
pub const LAB_DOMAIN: &str = "tandem.lab";
/// Characters of generated passwords (no look-alikes).
const PASSWORD_ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A running bundled lab server.
pub struct BundledLab {
    server: LabServer,
    info: LabInfo,
}

fn lab_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    failure(
        FailureKind::Other,
        format!("The bundled lab server could not start: {what}."),
        e.to_string(),
    )
}

fn random_password() -> String {
    let mut rng = rand::rng();
    (0..12)
        .filter_map(|_| PASSWORD_ALPHABET.choose(&mut rng).map(|&b| char::from(b)))
        .collect()
}

/// The keyring key of a lab user's password.
fn key(user: &str) -> String {
    format!("lab:{user}@{LAB_DOMAIN}")
}

impl BundledLab {
    /// Starts the lab server with its data in `dir`, listening on loopback (free ports), and
    /// makes sure every demo user exists with a password we know (kept in `secrets`).
    pub async fn start(dir: PathBuf, secrets: &Secrets) -> Result<BundledLab, Failure> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        std::fs::create_dir_all(&dir).map_err(|e| lab_failure("no data folder", e))?;
        let mut config = LabConfig {
            domain: LAB_DOMAIN.to_owned(),
            data_dir: dir.clone(),
            demo_users: false,
            ..LabConfig::default()
        };
        config.listen.udp = vec![SocketAddr::new(ip, 0)];
        config.listen.tcp = vec![SocketAddr::new(ip, 0)];
        config.listen.tls = Vec::new();
        config.normalize();
        config
            .validate()
            .map_err(|e| lab_failure("invalid configuration", e))?;
        let store = Store::open_in(&dir)
            .await
            .map_err(|e| lab_failure("its database", e))?;
        let mut users = Vec::new();
        for name in DEMO_USERS {
            let known = secrets.get(&key(name))?;
            let exists = store
                .user_exists(name, LAB_DOMAIN)
                .await
                .map_err(|e| lab_failure("its database", e))?;
            let password = match known {
                Some(p) if exists => p,
                _ => {
                    let p = random_password();
                    if exists {
                        store
                            .delete_user(name, LAB_DOMAIN)
                            .await
                            .map_err(|e| lab_failure("its database", e))?;
                    }
                    store
                        .add_user_in_realm(name, LAB_DOMAIN, config.realm(), &p)
                        .await
                        .map_err(|e| lab_failure("its database", e))?;
                    secrets.set(&key(name), &p)?;
                    p
                }
            };
            users.push(LabUser {
                user: name.to_owned(),
                password,
            });
        }
        let ca = LabCa::load_or_create(&dir, &config.certificate_hostnames())
            .map_err(|e| lab_failure("its certificate authority", e))?;
        let server = LabServer::start(config, store, ca)
            .await
            .map_err(|e| lab_failure("its listeners", e))?;
        let udp = server
            .local_addr(Transport::Udp)
            .ok_or_else(|| lab_failure("no UDP listener", "udp"))?;
        let tcp = server.local_addr(Transport::Tcp);
        let info = LabInfo {
            domain: LAB_DOMAIN.to_owned(),
            udp: udp.to_string(),
            tcp: tcp.map(|a| a.to_string()),
            signed_in_as: format!("{}@{LAB_DOMAIN}", DEMO_USERS[0]),
            users,
        };
        Ok(BundledLab { server, info })
    }

    /// What the ui shows about the lab.
    pub fn info(&self) -> LabInfo {
        self.info.clone()
    }

    /// Stops the server (registrations and call records are flushed to its database).
    pub async fn stop(self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::warn!(error = %e, "lab server shutdown");
        }
    }
}
