//! Small JSON files in the app's data folder, written atomically.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::explain::failure;
use crate::types::{Failure, FailureKind};

/// Reads `path` as JSON; `None` when the file does not exist.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(failure(
                FailureKind::Other,
                format!("Cannot read {}.", path.display()),
                e.to_string(),
            ));
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        failure(
            FailureKind::Other,
            format!(
                "{} is damaged; move it away to start afresh.",
                path.display()
            ),
            e.to_string(),
        )
    })
}

/// Writes `value` to `path` as JSON (to a temporary file first, then renamed over it).
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| {
        failure(
            FailureKind::Other,
            format!("Cannot save {}.", path.display()),
            e.to_string(),
        )
    })?;
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` (to a temporary file first, then renamed over it).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let write_failed = |e: std::io::Error| {
        failure(
            FailureKind::Other,
            format!("Cannot save {}.", path.display()),
            e.to_string(),
        )
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(write_failed)?;
    std::fs::rename(&tmp, path).map_err(write_failed)
}
