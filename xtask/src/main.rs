//! `cargo xtask`: installs system packages, builds, runs the lab server, the test suite and the benchmarks.
//!
//! Commands: `test` (what CI runs), `run` (the lab server in the foreground), `lab -- ARGS` (any `tandem-lab`
//! command), `bench sip` (SIPp load against Kamailio and against the lab server, as a ratio), `bench media` (codec
//! realtime factors, pipeline latency, calls per core, and the same calls with baresip).

mod app;
mod bench;
mod bench_app;
mod bench_common;
mod bench_media;
mod bench_media_relay;
mod bench_mixer;
mod bench_msrp;
mod bench_relay;
mod bench_simple;
mod bench_video;
mod cmd;
mod packages;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd::{Step, cargo, target_dir};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test            install missing system packages, then fmt --check, clippy -D warnings, build, test (what CI runs)
  run [ARGS..]    build the ui and the desktop app (release) and open it signed in to its bundled lab server;
                  without a graphical session, or as `run lab [ARGS..]`: `tandem-lab serve ARGS..` in the foreground
  lab [--] ARGS.. build the lab server (release) and run `tandem-lab ARGS..`
  bench sip       SIPp REGISTER/INVITE load against Kamailio and the lab server; prints the clean rates and ratios
  bench msrp [--pairs N] [--mb N] [--chunk BYTES]
                  MSRP relay throughput (MB/s) with parallel TCP/TLS transfers, every byte checked
  bindings        regenerate ui/src/lib/bindings/*.ts from the Rust types of tandem-app
  mobile-check    cargo check the mobile shell for aarch64-linux-android (cross gcc, no NDK)
  bench media [--call-secs N]
                  codec realtime factors, pipeline latency, calls per core; tandem-cli vs baresip on loopback
  bench mixer [--secs N]
                  conference mixer: participants per core (G.711, Opus), 20 ms deadline run, recordings per core
  bench relay     TURN relay: the lab against coturn with the same turnutils_uclient load (packets/s, Mbit/s, per core)
  bench simple [--no-msrp]
                  SIMPLE: MESSAGE relay rate and presence NOTIFY fan-out (1 PUBLISH, 1,000 watchers), the lab against
                  Kamailio with the same SIPp load; MSRP relay throughput
  bench app [--debug] [--settle SECS]
                  idle PSS of the desktop app (signed in to the bundled lab) vs Debian's linphone-desktop
  bench video [--secs N]
                  VP8/H.264 encode+decode ms per frame, loopback video latency, CPU of a tandem-cli video call vs baresip";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => {
            println!("{USAGE}");
            return Ok(());
        }
    };
    match command {
        "test" => test(rest),
        "run" => run(rest),
        "lab" => lab(strip_separator(rest)),
        "bindings" => app::bindings(),
        "mobile-check" => app::mobile_check(),
        "bench" => match rest.first().map(String::as_str) {
            Some("sip") => bench::sip(&rest[1..]),
            Some("media") => bench_media::media(&rest[1..]),
            Some("msrp") => bench_msrp::msrp(&rest[1..]),
            Some("mixer") => bench_mixer::mixer(&rest[1..]),
            Some("relay") => bench_relay::relay(&rest[1..]),
            Some("media-relay") => bench_media_relay::media_relay(&rest[1..]),
            Some("simple") => bench_simple::simple(&rest[1..]),
            Some("app") => bench_app::app(&rest[1..]),
            Some("video") => bench_video::video(&rest[1..]),
            _ => bail!("usage: cargo xtask bench sip|media|msrp|mixer|relay|simple|app|video"),
        },
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

fn strip_separator(args: &[String]) -> &[String] {
    match args.first() {
        Some(first) if first == "--" => &args[1..],
        _ => args,
    }
}

/// `cargo xtask test`: what CI runs.
fn test(extra: &[String]) -> Result<()> {
    let started = Instant::now();
    packages::ensure(packages::TEST_PACKAGES)?;
    packages::ensure(app::UI_PACKAGES)?;
    packages::ensure(app::DESKTOP_PACKAGES)?;
    ensure_components()?;
    app::mobile_prepare()?;
    let bin_dir = target_dir()?.join("debug");
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut test_args = vec![
        "test",
        "--workspace",
        "--exclude",
        "tandem-tests",
        "--no-fail-fast",
    ];
    test_args.extend(extra.iter().copied());
    // The `it` binary starts its > 10-minute, mostly idle NAT keep-alive scenario first (its name sorts first):
    // one test thread more than the cores, so the others keep every core.
    let threads = format!(
        "--test-threads={}",
        std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
    );
    // The `it` binary alone (its own test-thread count); its feature resolution differs from
    // the whole workspace's, so a few dependencies are compiled once more for it.
    let mut it_args = vec!["test", "--workspace", "--test", "it", "--no-fail-fast"];
    it_args.extend(extra.iter().copied());
    if !extra.iter().any(|a| a.starts_with("--test-threads")) {
        if !extra.contains(&"--") {
            it_args.push("--");
        }
        it_args.push(&threads);
    }
    // The ui is tested and built first: the desktop shell embeds ui/dist.
    let mut steps: Vec<Step> = app::ui_steps();
    steps.extend([
        Step::new("fmt", cargo(&["fmt", "--all", "--", "--check"])),
        Step::new(
            "clippy",
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        Step::new("mobile check", app::mobile_check_command()),
        Step::new("build", cargo(&["build", "--workspace", "--bins"])),
        Step::new("test", {
            let mut c = cargo(&test_args);
            c.env("TANDEM_BIN_DIR", &bin_dir);
            c
        }),
        Step::new("test it", {
            let mut c = cargo(&it_args);
            c.env("TANDEM_BIN_DIR", &bin_dir);
            c
        }),
    ]);
    let mut done = Vec::new();
    // Both test steps run even when the first fails (no-fail-fast across the workspace); the first failure counts.
    let mut test_failure = None;
    for mut step in steps {
        let t = Instant::now();
        let result = step.run();
        done.push(format!("{} {:.0}s", step.name, t.elapsed().as_secs_f64()));
        let result = match result {
            Err(e) if step.name == "test" || step.name == "test it" => {
                if test_failure.is_none() {
                    test_failure = Some((step.name, e));
                }
                Ok(())
            }
            other => other,
        };
        if step.name == "test it"
            && let Some((name, e)) = test_failure.take()
        {
            println!(
                "xtask test: FAILED at {name} after {:.0}s ({})",
                started.elapsed().as_secs_f64(),
                done.join(", ")
            );
            return Err(e);
        }
        if let Err(e) = result {
            println!(
                "xtask test: FAILED at {} after {:.0}s ({})",
                step.name,
                started.elapsed().as_secs_f64(),
                done.join(", ")
            );
            return Err(e);
        }
    }
    println!(
        "xtask test: OK in {:.0}s ({})",
        started.elapsed().as_secs_f64(),
        done.join(", ")
    );
    Ok(())
}

/// Makes sure rustfmt and clippy are installed (a minimal rustup profile has neither).
fn ensure_components() -> Result<()> {
    let have = |args: &[&str]| {
        cargo(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if have(&["fmt", "--version"]) && have(&["clippy", "--version"]) {
        return Ok(());
    }
    println!("xtask: installing rustfmt and clippy with rustup");
    Step::new(
        "rustup component add",
        cmd::command("rustup", &["component", "add", "rustfmt", "clippy"]),
    )
    .run()
}

/// Builds `tandem-lab` in release mode and returns its path.
fn build_lab() -> Result<std::path::PathBuf> {
    packages::ensure(packages::RUN_PACKAGES)?;
    Step::new(
        "build tandem-lab",
        cargo(&[
            "build",
            "--release",
            "-p",
            "tandem-labserver",
            "--bin",
            "tandem-lab",
        ]),
    )
    .run()?;
    let bin = target_dir()?.join("release").join("tandem-lab");
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// `cargo xtask run`: the desktop app, built with its ui, signed in to its bundled lab server
/// (demo accounts alice, bob and carol). Without a graphical session (no `DISPLAY` nor
/// `WAYLAND_DISPLAY`: a server, an SSH login) and with `cargo xtask run lab [ARGS]`: the lab
/// server in the foreground.
fn run(extra: &[String]) -> Result<()> {
    let extra = strip_separator(extra);
    let lab_only = extra.first().map(String::as_str) == Some("lab");
    let graphical = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    if lab_only || !graphical {
        if !lab_only {
            println!(
                "xtask: no graphical session (DISPLAY/WAYLAND_DISPLAY unset): starting the lab server \
                 alone; the desktop app opens with `cargo xtask run` from a desktop session"
            );
        }
        let bin = build_lab()?;
        let mut args = vec!["serve".to_string()];
        args.extend(extra.iter().skip(usize::from(lab_only)).cloned());
        return cmd::exec(&bin, &args).context("running tandem-lab serve");
    }
    let binary = app::build_desktop(true)?;
    println!("xtask: starting the desktop app signed in to its bundled lab server");
    let mut c = std::process::Command::new(&binary);
    c.args(extra).env("TANDEM_START_LAB", "1");
    let status = c
        .status()
        .with_context(|| format!("starting {}", binary.display()))?;
    if !status.success() {
        bail!("the desktop app exited with {status}");
    }
    Ok(())
}

/// `cargo xtask lab -- ARGS`: any `tandem-lab` command.
fn lab(args: &[String]) -> Result<()> {
    let bin = build_lab()?;
    cmd::exec(&bin, args).context("running tandem-lab")
}
