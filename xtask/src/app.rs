//! The apps: building and testing the ui (`ui/`: npm, Vite, Vitest, the 390×844 phone layout
//! with axe-core in headless Chromium) before the Rust build, `cargo xtask bindings`
//! (regenerate the ui's TypeScript types from the Rust API types of `tandem-app`) and
//! `cargo xtask mobile-check` (`cargo check` of the mobile shell for Android).

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Result;

use crate::cmd::{Step, cargo, command, target_dir, workspace_root};
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
    // The desktop end-to-end test writes presence rules over XCAP with curl.
    (Probe::Bin("curl"), "curl"),
];

/// What `cargo check --target aarch64-linux-android` of the mobile shell needs without an
/// Android NDK: a cross C compiler for the C dependencies (libopus, ring, SQLite).
pub const MOBILE_PACKAGES: &[Need] = &[
    (Probe::Bin("aarch64-linux-gnu-gcc"), "gcc-aarch64-linux-gnu"),
    (Probe::Bin("aarch64-linux-gnu-g++"), "g++-aarch64-linux-gnu"),
];

/// The Rust target of the Android check.
const ANDROID_TARGET: &str = "aarch64-linux-android";

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
    let mut phone = npm(&["run", "test:phone"]);
    if let Ok(target) = target_dir() {
        phone.env("UI_SHOTS", target.join("e2e").join("phone"));
    }
    steps.push(Step::new("ui phone", phone));
    steps
}

/// Builds the ui (installing its locked dependencies when they changed) and the desktop app
/// (`tandem`, release or debug), installing the system packages both need; returns the binary.
pub fn build_desktop(release: bool) -> Result<PathBuf> {
    crate::packages::ensure(UI_PACKAGES)?;
    crate::packages::ensure(DESKTOP_PACKAGES)?;
    if !node_modules_current() {
        Step::new("ui install", npm(&["ci", "--no-audit", "--no-fund"])).run()?;
    }
    Step::new("ui build", npm(&["run", "build"])).run()?;
    let mut args = vec!["build", "-p", "tandem-desktop", "--bin", "tandem"];
    if release {
        args.push("--release");
    }
    Step::new("build tandem", cargo(&args)).run()?;
    let binary = target_dir()?
        .join(if release { "release" } else { "debug" })
        .join("tandem");
    if !binary.is_file() {
        anyhow::bail!("{} was not built", binary.display());
    }
    Ok(binary)
}

/// `cargo xtask mobile-check`: `cargo check -p tandem-mobile --target aarch64-linux-android`.
/// Without the NDK, the C dependencies are compiled with Debian's aarch64 cross gcc against
/// glibc headers (`mobile/android-check.cmake` for CMake-built libopus): enough to type-check
/// every crate for Android; building an APK needs the NDK (see mobile/ARCHITECTURE-mobile.md).
pub fn mobile_check() -> Result<()> {
    mobile_prepare()?;
    Step::new("mobile check", mobile_check_command()).run()
}

/// Installs what the Android check needs: the aarch64 cross compilers and the Rust target.
pub fn mobile_prepare() -> Result<()> {
    crate::packages::ensure(MOBILE_PACKAGES)?;
    let installed = command("rustup", &["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(ANDROID_TARGET))
        .unwrap_or(false);
    if !installed {
        Step::new(
            "rustup target add",
            command("rustup", &["target", "add", ANDROID_TARGET]),
        )
        .run()?;
    }
    Ok(())
}

/// The `cargo check` of the mobile shell for Android, with the cross toolchain set up.
pub fn mobile_check_command() -> std::process::Command {
    let mut c = cargo(&["check", "-p", "tandem-mobile", "--target", ANDROID_TARGET]);
    let toolchain = workspace_root().join("mobile").join("android-check.cmake");
    c.env("CC_aarch64_linux_android", "aarch64-linux-gnu-gcc")
        .env("CXX_aarch64_linux_android", "aarch64-linux-gnu-g++")
        .env("AR_aarch64_linux_android", "aarch64-linux-gnu-ar")
        .env("CMAKE_TOOLCHAIN_FILE_aarch64_linux_android", toolchain);
    c
}

/// `cargo xtask bindings`: rewrites `ui/src/lib/bindings/` from the Rust types.
pub fn bindings() -> Result<()> {
    let mut c = cargo(&["test", "-p", "tandem-app", "--test", "bindings"]);
    c.env("TANDEM_UPDATE_BINDINGS", "1");
    Step::new("bindings", c).run()
}
