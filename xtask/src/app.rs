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

/// The path of a pkg-config file.
macro_rules! pc {
    ($name:literal) => {
        concat!("/usr/lib/x86_64-linux-gnu/pkgconfig/", $name, ".pc")
    };
}

/// What the Tauri desktop shell needs to build (WebKitGTK, GTK, librsvg, the tray's
/// appindicator, OpenSSL, libxdo).
pub const DESKTOP_PACKAGES: &[Need] = &[
    (Probe::File(pc!("webkit2gtk-4.1")), "libwebkit2gtk-4.1-dev"),
    (Probe::File(pc!("gtk+-3.0")), "libgtk-3-dev"),
    (Probe::File(pc!("librsvg-2.0")), "librsvg2-dev"),
    (
        Probe::File(pc!("ayatana-appindicator3-0.1")),
        "libayatana-appindicator3-dev",
    ),
    (Probe::File(pc!("openssl")), "libssl-dev"),
    (Probe::File("/usr/include/xdo.h"), "libxdo-dev"),
];

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
