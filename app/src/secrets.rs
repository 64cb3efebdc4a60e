//! Account passwords in the OS keyring (never in a file).
//!
//! On Linux the kernel keyutils store is used (the session keyring, with the persistent
//! keyring when the kernel has one); other platforms get their store in later rounds.

use std::sync::{Arc, OnceLock};

use keyring_core::{CredentialStore, Entry, Error as KeyringError};

use crate::explain::failure;
use crate::types::{Failure, FailureKind};

/// The keyring service name under which Tandem keeps its passwords.
pub const SERVICE: &str = "tandem";

/// Passwords of accounts, by account id, in the OS keyring.
#[derive(Clone)]
pub struct Secrets {
    store: Arc<CredentialStore>,
    service: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("service", &self.service)
            .finish()
    }
}

fn os_store() -> Result<Arc<CredentialStore>, Failure> {
    static STORE: OnceLock<Result<Arc<CredentialStore>, String>> = OnceLock::new();
    let made = STORE.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            linux_keyutils_keyring_store::Store::new()
                .map(|s| s as Arc<CredentialStore>)
                .map_err(|e| e.to_string())
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err("no OS keyring store is wired up on this platform yet".to_owned())
        }
    });
    made.clone().map_err(|e| {
        failure(
            FailureKind::Keyring,
            "The system keyring is not available, so the password cannot be stored.",
            e,
        )
    })
}

impl Secrets {
    /// The OS keyring under the service name [`SERVICE`].
    pub fn os() -> Result<Secrets, Failure> {
        Secrets::os_with_service(SERVICE)
    }

    /// The OS keyring under another service name (tests use their own, so they never touch
    /// a user's passwords).
    pub fn os_with_service(service: &str) -> Result<Secrets, Failure> {
        Ok(Secrets {
            store: os_store()?,
            service: service.to_owned(),
        })
    }

    fn entry(&self, account_id: &str) -> Result<Entry, Failure> {
        Entry::new_in_store(&self.store, &self.service, account_id).map_err(keyring_failure)
    }

    /// Stores (or replaces) the password of `account_id`.
    pub fn set(&self, account_id: &str, password: &str) -> Result<(), Failure> {
        self.entry(account_id)?
            .set_password(password)
            .map_err(keyring_failure)
    }

    /// The password of `account_id`, or `None` when none is stored.
    pub fn get(&self, account_id: &str) -> Result<Option<String>, Failure> {
        match self.entry(account_id)?.get_password() {
            Ok(p) => Ok(Some(p)),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(keyring_failure(e)),
        }
    }

    /// Forgets the password of `account_id` (no error when there was none).
    pub fn delete(&self, account_id: &str) -> Result<(), Failure> {
        match self.entry(account_id)?.delete_credential() {
            Ok(()) | Err(KeyringError::NoEntry) => Ok(()),
            Err(e) => Err(keyring_failure(e)),
        }
    }
}

fn keyring_failure(e: KeyringError) -> Failure {
    failure(
        FailureKind::Keyring,
        "The system keyring refused to store or read the password.",
        e.to_string(),
    )
}
