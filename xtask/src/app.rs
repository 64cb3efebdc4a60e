//! The apps: building and testing the ui (`ui/`: npm, Vite, Vitest) before the Rust build,
//! and `cargo xtask bindings` (regenerate the ui's TypeScript types from the Rust API types of
//! `tandem-app`).

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Result;

use crate::cmd::{Step, cargo, command, workspace_root};
use crate::packages::{Need, Probe};

/// What building the ui needs: Node.js with npm (installed from Debian only when missing).
pub const UI_PACKAGES: &[Need] = &[(Probe::Bin("npm"), "npm")];

fn ui_dir() -> PathBuf {
    workspace_root().join("ui")
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// True when `ui/node_modules` was installed from the current `package-lock.json`.
fn node_modules_current() -> bool {
    let dir = ui_dir();
    match (
        modified(&dir.join("node_modules/.package-lock.json")),
        modified(&dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => installed >= lock,
        _ => false,
    }
}

fn npm(args: &[&str]) -> std::process::Command {
    let mut c = command("npm", args);
    c.current_dir(ui_dir());
    c
}

/// The ui steps of `cargo xtask test`: install the locked dependencies (when changed), the
/// Vitest component tests, and the production build into `ui/dist` (which the desktop shell
/// embeds).
pub fn ui_steps() -> Vec<Step> {
    let mut steps = Vec::new();
    if !node_modules_current() {
        steps.push(Step::new(
            "ui install",
            npm(&["ci", "--no-audit", "--no-fund"]),
        ));
    }
    steps.push(Step::new("ui test", npm(&["run", "test"])));
    steps.push(Step::new("ui build", npm(&["run", "build"])));
    steps
}

/// `cargo xtask bindings`: rewrites `ui/src/lib/bindings/` from the Rust types.
pub fn bindings() -> Result<()> {
    let mut c = cargo(&["test", "-p", "tandem-app", "--test", "bindings"]);
    c.env("TANDEM_UPDATE_BINDINGS", "1");
    Step::new("bindings", c).run()
}
