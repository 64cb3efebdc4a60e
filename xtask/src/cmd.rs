//! Running commands: cargo steps with streamed output, the target directory, exec.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of xtask's manifest directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// A `cargo` command (the same cargo that runs xtask), run from the workspace root.
pub fn cargo<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(args).current_dir(workspace_root());
    c
}

/// A plain command run from the workspace root.
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(workspace_root());
    c
}

/// A named command whose output streams to the terminal.
pub struct Step {
    /// Short name printed in the summary.
    pub name: &'static str,
    command: Command,
}

impl Step {
    /// A step running `command`.
    pub fn new(name: &'static str, command: Command) -> Self {
        Step { name, command }
    }

    /// Runs the step, streaming its output; fails when it exits non-zero.
    pub fn run(&mut self) -> Result<()> {
        println!("xtask: == {} ==", self.name);
        let status = self
            .command
            .status()
            .with_context(|| format!("starting {:?}", self.command))?;
        if !status.success() {
            bail!("step `{}` failed ({status})", self.name);
        }
        Ok(())
    }
}

/// Cargo's target directory (respects `CARGO_TARGET_DIR` and config), from `cargo metadata`.
pub fn target_dir() -> Result<PathBuf> {
    let out = cargo(&["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    match meta.get("target_directory").and_then(|v| v.as_str()) {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => bail!("cargo metadata has no target_directory"),
    }
}

/// Replaces this process with `program args` (signals then go straight to it).
pub fn exec(program: &Path, args: &[String]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let err = Command::new(program).args(args).exec();
    Err(err).with_context(|| format!("exec {}", program.display()))
}

/// Whether `name` is an executable found on `PATH` (or in the sbin directories, which non-root PATHs lack).
pub fn on_path(name: &str) -> bool {
    which(name).is_some()
}

/// Finds `name` on `PATH` or in the sbin directories.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Stops a child that leads its own process group: SIGTERM to the group, SIGKILL after a three-second grace.
pub fn stop_group(child: &mut std::process::Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let group = format!("-{}", child.id());
    let kill = |signal: &str| {
        let _ = std::process::Command::new("kill")
            .args([signal, "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
    };
    kill("-TERM");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    kill("-KILL");
    let _ = child.wait();
}
