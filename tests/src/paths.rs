//! Where things are: built binaries, peer templates, per-test temporary directories.

use std::path::{Path, PathBuf};

use crate::error::{HarnessError, IoContext, Result};

/// The path of a workspace binary (`tandem-lab`, `tandem-cli`): from `TANDEM_BIN_DIR`, else the `debug/` folder of
/// the target directory this test binary runs from (`…/debug/deps/it-…` → `…/debug/`).
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("TANDEM_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().ctx(|| "locating the test binary".into())?;
            let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::MissingBinary(path.display().to_string()))
    }
}

/// The folder with our peer templates and SIPp scenarios (`tests/peers/`).
pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// The path of a file in `tests/peers/`.
pub fn peer_file(name: &str) -> PathBuf {
    peers_dir().join(name)
}

/// Reads a template from `tests/peers/` and replaces each `@KEY@` with its value.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let path = peer_file(template);
    let mut text = std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
    for (key, value) in vars {
        text = text.replace(&format!("@{key}@"), value);
    }
    Ok(text)
}

/// Writes `contents` to `path`, with the path in the error.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).ctx(|| format!("writing {}", path.display()))
}

/// A test's temporary directory: removed when the test passes, kept (and its path printed) when it panics.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// A new temporary directory whose name starts with `tandem-<name>-`.
    pub fn new(name: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tandem-{name}-"))
            .tempdir()
            .ctx(|| "creating a temporary directory".into())?;
        let path = dir.path().to_path_buf();
        Ok(TestDir {
            dir: Some(dir),
            path,
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory, created if missing.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("test files kept in {}", kept.display());
        }
    }
}
