//! System packages the tests and the lab server need, and installing the missing ones with apt.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::on_path;

/// How to tell that a package is installed.
#[derive(Clone, Copy)]
pub enum Probe {
    /// An executable on PATH (or in an sbin directory).
    Bin(&'static str),
    /// A file that exists.
    File(&'static str),
    /// A glob-free directory prefix plus a file below one of its subdirectories (e.g. PostgreSQL's versioned bin).
    AnySubdir(&'static str, &'static str),
}

impl Probe {
    fn present(self) -> bool {
        match self {
            Probe::Bin(name) => on_path(name),
            Probe::File(path) => Path::new(path).exists(),
            Probe::AnySubdir(dir, rel) => std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .any(|e| e.path().join(rel).exists())
                })
                .unwrap_or(false),
        }
    }
}

/// A Debian package and the probe proving it is there.
pub type Need = (Probe, &'static str);

/// The path of a Kamailio module file.
macro_rules! kam_module {
    ($name:literal) => {
        concat!("/usr/lib/x86_64-linux-gnu/kamailio/modules/", $name)
    };
}

/// Everything `cargo xtask test` needs: peers, build tools, network tools, databases.
pub const TEST_PACKAGES: &[Need] = &[
    (Probe::Bin("cc"), "build-essential"),
    (Probe::Bin("pkg-config"), "pkg-config"),
    (Probe::Bin("cmake"), "cmake"),
    // VP8 through the system libvpx (tandem-video links it; found with pkg-config).
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/pkgconfig/vpx.pc"),
        "libvpx-dev",
    ),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/pkgconfig/alsa.pc"),
        "libasound2-dev",
    ),
    (Probe::Bin("openssl"), "openssl"),
    (Probe::Bin("kamailio"), "kamailio"),
    (
        Probe::File(kam_module!("db_sqlite.so")),
        "kamailio-sqlite-modules",
    ),
    (
        Probe::File("/usr/share/kamailio/db_sqlite/standard-create.sql"),
        "kamailio-sqlite-modules",
    ),
    (Probe::File(kam_module!("tls.so")), "kamailio-tls-modules"),
    // presence, presence_xml, rls, pua and xcap_server for the SIMPLE interop tests.
    (
        Probe::File(kam_module!("presence.so")),
        "kamailio-presence-modules",
    ),
    (
        Probe::File(kam_module!("rls.so")),
        "kamailio-presence-modules",
    ),
    (
        Probe::File(kam_module!("xcap_server.so")),
        "kamailio-presence-modules",
    ),
    (
        Probe::File(kam_module!("utils.so")),
        "kamailio-utils-modules",
    ),
    (
        Probe::File(kam_module!("outbound.so")),
        "kamailio-outbound-modules",
    ),
    (Probe::Bin("sipp"), "sip-tester"),
    (Probe::Bin("baresip"), "baresip-core"),
    (
        Probe::File("/usr/lib/baresip/modules/ctrl_tcp.so"),
        "baresip-core",
    ),
    (Probe::File("/usr/share/doc/baresip/copyright"), "baresip"),
    (Probe::Bin("sqlite3"), "sqlite3"),
    (
        Probe::AnySubdir("/usr/lib/postgresql", "bin/initdb"),
        "postgresql",
    ),
    (Probe::Bin("ip"), "iproute2"),
    (Probe::Bin("nft"), "nftables"),
    (Probe::Bin("linphonec"), "linphone-cli"),
    (Probe::Bin("pulseaudio"), "pulseaudio"),
    (Probe::Bin("pactl"), "pulseaudio-utils"),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so"),
        "libasound2-plugins",
    ),
    (Probe::Bin("sox"), "sox"),
    // The app's keyring tests run inside `keyctl session -`.
    (Probe::Bin("keyctl"), "keyutils"),
    // TURN interop and the relay benchmark: coturn's turnserver and turnutils_uclient.
    (Probe::Bin("turnutils_uclient"), "coturn"),
    // The desktop app's end-to-end test: Xvfb, WebKitWebDriver; the phone layout in Chromium.
    (Probe::Bin("Xvfb"), "xvfb"),
    (Probe::Bin("WebKitWebDriver"), "webkit2gtk-driver"),
    // The desktop E2E's private session bus (single instance, notifications).
    (Probe::Bin("dbus-daemon"), "dbus-daemon"),
    // Its screenshots: the X server's pixels of the window through GStreamer's ximagesrc.
    (Probe::Bin("gst-launch-1.0"), "gstreamer1.0-tools"),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstximagesrc.so"),
        "gstreamer1.0-plugins-good",
    ),
    (Probe::Bin("chromium"), "chromium"),
    // Camera capture (tandem-video builds against GStreamer; jpegdec for MJPEG webcams) and its tests: a private
    // PipeWire session (pipewire, wireplumber, pw-cli) with virtual cameras from gst-launch (y4mdec is in -bad).
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/pkgconfig/gstreamer-1.0.pc"),
        "libgstreamer1.0-dev",
    ),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/pkgconfig/gstreamer-video-1.0.pc"),
        "libgstreamer-plugins-base1.0-dev",
    ),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstvideoconvertscale.so"),
        "gstreamer1.0-plugins-base",
    ),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstjpeg.so"),
        "gstreamer1.0-plugins-good",
    ),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgsty4mdec.so"),
        "gstreamer1.0-plugins-bad",
    ),
    (
        Probe::File("/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstpipewire.so"),
        "gstreamer1.0-pipewire",
    ),
    (Probe::Bin("pipewire"), "pipewire"),
    (Probe::Bin("pw-cli"), "pipewire-bin"),
    (Probe::Bin("wireplumber"), "wireplumber"),
    // Media server tests decode the Ogg Opus recordings with opusdec.
    (Probe::Bin("opusdec"), "opus-tools"),
];

/// What `cargo xtask run` / `lab` need beyond the Rust toolchain.
pub const RUN_PACKAGES: &[Need] = &[(Probe::Bin("cc"), "build-essential")];

/// Installs the packages whose probe fails (apt-get as root, else through `sudo -n`), or explains what to install.
pub fn ensure(needs: &[Need]) -> Result<()> {
    let mut missing: Vec<&str> = Vec::new();
    for (probe, package) in needs {
        if !probe.present() && !missing.contains(package) {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    println!(
        "xtask: installing missing system packages: {}",
        missing.join(" ")
    );
    let prefix: Vec<&str> = if is_root() {
        Vec::new()
    } else if sudo_works() {
        vec!["sudo", "-n"]
    } else {
        bail!(
            "missing system packages and not root (and `sudo -n` is not available); install them with:\n  \
             apt-get update && apt-get install -y {}",
            missing.join(" ")
        );
    };
    apt(&prefix, &["apt-get", "update"], &[])?;
    let mut install = vec!["apt-get", "install", "-y"];
    install.extend(missing.iter().copied());
    apt(&prefix, &install, &[("DEBIAN_FRONTEND", "noninteractive")])?;
    let still: Vec<&str> = needs
        .iter()
        .filter(|(probe, _)| !probe.present())
        .map(|(_, p)| *p)
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(())
}

fn apt(prefix: &[&str], argv: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let full: Vec<&str> = prefix.iter().chain(argv.iter()).copied().collect();
    let (program, args) = match full.split_first() {
        Some(split) => split,
        None => bail!("empty command"),
    };
    let mut c = Command::new(program);
    c.args(args);
    if prefix.is_empty() {
        c.envs(env.iter().copied());
    } else {
        // sudo drops the environment: pass it as VAR=value arguments through env(1).
        c = Command::new(program);
        let mut sudo_args: Vec<String> = prefix[1..].iter().map(|s| s.to_string()).collect();
        sudo_args.push("env".into());
        sudo_args.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        sudo_args.extend(argv.iter().map(|s| s.to_string()));
        c.args(sudo_args);
    }
    let status = c
        .status()
        .with_context(|| format!("starting {}", full.join(" ")))?;
    if !status.success() {
        bail!("`{}` failed ({status})", full.join(" "));
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn sudo_works() -> bool {
    Command::new("sudo")
        .args(["-n", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
