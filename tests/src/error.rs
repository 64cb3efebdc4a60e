//! The harness's error type.

use std::process::ExitStatus;
use std::time::Duration;

/// What went wrong while starting, driving or stopping a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What we were waiting for.
        what: String,
        /// How long we waited.
        waited: Duration,
    },
    /// A process ended while we were waiting for it to do something.
    #[error("{what} exited ({status}) before {waiting_for}")]
    Exited {
        /// The process.
        what: String,
        /// Its exit status.
        status: ExitStatus,
        /// What we were waiting for.
        waiting_for: String,
    },
    /// A helper tool (openssl, sqlite3, `tandem-lab user add`, …) failed.
    #[error("{what} failed: {detail}")]
    Tool {
        /// The command.
        what: String,
        /// Its status and stderr.
        detail: String,
    },
    /// A peer answered something we did not expect.
    #[error("unexpected answer from {what}: {detail}")]
    Protocol {
        /// The peer.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// A binary the test needs is missing.
    #[error(
        "{0} not found (build it first: cargo build --workspace --bins, or set TANDEM_BIN_DIR)"
    )]
    MissingBinary(String),
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, HarnessError>;

/// Adds a description to `io::Result`s.
pub trait IoContext<T> {
    /// Wraps the error with what we were doing.
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| HarnessError::Io {
            what: what(),
            source,
        })
    }
}
