//! The bundled lab server: `tandem-labserver` in-process, on loopback, with demo accounts whose
//! passwords live in the OS keyring.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use rand::seq::IndexedRandom;
use tandem_client_core::types::Transport;
use tandem_client_core::{Account, XcapClient};
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
    xcap_root: Option<String>,
    tls: Arc<rustls::ClientConfig>,
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
        // The media server: voicemail retrieval at voicemail@ and message summaries for the
        // app's voicemail indicator. Unanswered calls are not diverted to mailboxes (a declined
        // call stays declined in the lab).
        config.mediasrv.enabled = true;
        let mut config = ephemeral_services(config)?;
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
        let tls = ca
            .client_config()
            .map_err(|e| lab_failure("its certificate authority", e))?;
        let server = LabServer::start(config, store, ca)
            .await
            .map_err(|e| lab_failure("its listeners", e))?;
        let udp = server
            .local_addr(Transport::Udp)
            .ok_or_else(|| lab_failure("no UDP listener", "udp"))?;
        let tcp = server.local_addr(Transport::Tcp);
        let xcap_addr = server
            .ready_line()
            .split(' ')
            .find_map(|f| f.strip_prefix("xcap="))
            .map(str::to_owned);
        let xcap_root = xcap_addr
            .as_ref()
            .map(|addr| format!("https://{addr}/xcap-root"));
        let info = LabInfo {
            domain: LAB_DOMAIN.to_owned(),
            udp: udp.to_string(),
            tcp: tcp.map(|a| a.to_string()),
            xcap: xcap_addr.clone(),
            signed_in_as: format!("{}@{LAB_DOMAIN}", DEMO_USERS[0]),
            users,
        };
        Ok(BundledLab {
            server,
            info,
            xcap_root,
            tls,
        })
    }

    /// An XCAP client (buddy list, presence rules) for `account` of this lab, when the lab
    /// runs its XCAP server.
    pub fn xcap_client(&self, account: &Account) -> Result<Option<XcapClient>, Failure> {
        let Some(root) = &self.xcap_root else {
            return Ok(None);
        };
        XcapClient::new(root, account, self.tls.clone())
            .map(Some)
            .map_err(|e| {
                failure(
                    FailureKind::Other,
                    "The lab's XCAP server is not usable.",
                    e.to_string(),
                )
            })
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

/// The listening ports of the lab's extra services (section, key), set to 0 (any free port).
const SERVICE_PORTS: &[(&str, &str)] = &[
    ("xcap", "port"),
    ("msrp", "port"),
    ("msrp", "tls_port"),
    ("turn", "port"),
    ("turn", "tls_port"),
    ("mediasrv", "port"),
    ("api", "port"),
];

/// The lab configuration with every extra service (XCAP, MSRP relay, TURN, media server, API)
/// on ephemeral ports, so the bundled lab never collides with another server on this machine.
/// Works on the serialized form and keeps only the keys the configuration knows, so it follows
/// whichever port keys the sections have.
pub fn ephemeral_services(config: LabConfig) -> Result<LabConfig, Failure> {
    let mut value =
        toml::Value::try_from(&config).map_err(|e| lab_failure("its configuration", e))?;
    for (section, key) in SERVICE_PORTS {
        let Some(table) = value
            .as_table_mut()
            .and_then(|t| t.get_mut(*section))
            .and_then(toml::Value::as_table_mut)
        else {
            continue;
        };
        let previous = table.insert((*key).to_owned(), toml::Value::Integer(0));
        if value.clone().try_into::<LabConfig>().is_err()
            && let Some(table) = value
                .as_table_mut()
                .and_then(|t| t.get_mut(*section))
                .and_then(toml::Value::as_table_mut)
        {
            match previous {
                Some(p) => table.insert((*key).to_owned(), p),
                None => table.remove(*key),
            };
        }
    }
    value
        .try_into()
        .map_err(|e| lab_failure("its configuration", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ports_become_ephemeral() {
        let config = ephemeral_services(LabConfig::default()).unwrap_or_default();
        let value = toml::Value::try_from(&config).unwrap_or(toml::Value::Boolean(false));
        let mut set = 0;
        for (section, key) in SERVICE_PORTS {
            if let Some(v) = value.get(section).and_then(|s| s.get(key)) {
                assert_eq!(v.as_integer(), Some(0), "[{section}] {key}");
                set += 1;
            }
        }
        // At least XCAP's port is always known.
        assert!(set >= 1);
    }
}
