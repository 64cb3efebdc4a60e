//! `cargo xtask bench app`: the desktop app's memory against Debian's `linphone-desktop`, in the
//! same run on the same virtual screen.
//!
//! Each app runs alone under its own Xvfb with a fresh home folder. Tandem starts with
//! `TANDEM_START_LAB=1` (the bundled lab server in-process, signed in as alice: what a new
//! user has after the wizard's first choice); the time from launch to "signed in" is its cold
//! start. Linphone starts on its first-run assistant. After both have settled, the PSS
//! (`/proc/PID/smaps_rollup`) of the app and every process it started (WebKit's web and network
//! processes; Linphone's Qt processes) is summed, sampled several times; the median is printed.
//! Both run in a private D-Bus session (`dbus-run-session`, not counted). The Tandem binary is
//! the release build unless `--debug` is given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::Guard;
use crate::cmd::{Step, cargo, target_dir, workspace_root};
use crate::packages::{Need, Probe, ensure};

/// What the benchmark needs: the virtual screen, a session keyring for the app's passwords,
/// and the app to compare with.
const BENCH_APP_PACKAGES: &[Need] = &[
    (Probe::Bin("Xvfb"), "xvfb"),
    (Probe::Bin("keyctl"), "keyutils"),
    (Probe::Bin("linphone"), "linphone-desktop"),
    (Probe::Bin("dbus-run-session"), "dbus-bin"),
];

/// Processes that are the session's plumbing, not the app: the private D-Bus session both
/// apps get (Linphone refuses to start without one; Tandem's tray uses it) and the keyring
/// session wrapper.
const PLUMBING: &[&str] = &["dbus-run-session", "dbus-daemon", "keyctl"];

/// How long an app may take to start (and Tandem to sign in).
const START_LIMIT: Duration = Duration::from_secs(90);
/// How long an app idles before it is measured.
const SETTLE: Duration = Duration::from_secs(15);
/// PSS samples per app, one second apart.
const SAMPLES: usize = 5;

/// `cargo xtask bench app [--debug] [--settle SECS]`.
pub fn app(args: &[String]) -> Result<()> {
    let debug = args.iter().any(|a| a == "--debug");
    let settle = match args.iter().position(|a| a == "--settle") {
        Some(i) => Duration::from_secs(
            args.get(i + 1)
                .context("--settle needs a number of seconds")?
                .parse()
                .context("--settle needs a number of seconds")?,
        ),
        None => SETTLE,
    };
    ensure(crate::app::DESKTOP_PACKAGES)?;
    ensure(BENCH_APP_PACKAGES)?;
    if !workspace_root().join("ui/dist/index.html").is_file() {
        for mut step in crate::app::ui_steps() {
            step.run()?;
        }
    }
    let mut build_args = vec!["build", "-p", "tandem-desktop", "--bin", "tandem"];
    if !debug {
        build_args.push("--release");
    }
    Step::new("build tandem", cargo(&build_args)).run()?;
    let binary = target_dir()?
        .join(if debug { "debug" } else { "release" })
        .join("tandem");
    let linphone = crate::cmd::which("linphone").context("linphone-desktop has no `linphone`")?;

    let work = tempfile_dir()?;
    let result = measure_both(&work, &binary, &linphone, settle);
    // Test folders are removed whatever happened.
    let _ = std::fs::remove_dir_all(&work);
    let (tandem, wizard, linphone) = result?;

    println!();
    println!(
        "bench app: idle PSS, app and its child processes, {} samples after {} s idle",
        SAMPLES,
        settle.as_secs()
    );
    println!(
        "  tandem ({}, signed in to the bundled lab): {:.1} MiB over {} processes; launch to signed in {} ms",
        if debug { "debug" } else { "release" },
        mib(tandem.pss_kib),
        tandem.processes,
        tandem.ready_ms
    );
    println!(
        "  tandem ({}, first-run wizard):             {:.1} MiB over {} processes; launch to window {} ms",
        if debug { "debug" } else { "release" },
        mib(wizard.pss_kib),
        wizard.processes,
        wizard.ready_ms
    );
    println!(
        "  linphone-desktop (first-run assistant):    {:.1} MiB over {} processes; launch to window {} ms",
        mib(linphone.pss_kib),
        linphone.processes,
        linphone.ready_ms
    );
    println!("  tandem processes: {}", breakdown(&tandem.by_process));
    println!(
        "  tandem processes at the wizard: {}",
        breakdown(&wizard.by_process)
    );
    println!("  linphone processes: {}", breakdown(&linphone.by_process));
    if linphone.pss_kib > 0 {
        println!(
            "  tandem / linphone-desktop: {:.2} signed in (with the lab server inside), {:.2} at first run (like for like)",
            tandem.pss_kib as f64 / linphone.pss_kib as f64,
            wizard.pss_kib as f64 / linphone.pss_kib as f64
        );
    }
    Ok(())
}

/// One app's figures.
struct Measured {
    pss_kib: u64,
    processes: usize,
    ready_ms: u128,
    /// PSS (KiB) by process name, from the last sample.
    by_process: Vec<(String, u64)>,
}

/// `name 12.3 MiB, other 4.5 MiB`.
fn breakdown(by_process: &[(String, u64)]) -> String {
    by_process
        .iter()
        .map(|(name, kib)| format!("{name} {:.1} MiB", mib(*kib)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A fresh folder for the benchmark's homes and logs.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tandem-bench-app-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn measure_both(
    work: &Path,
    tandem: &Path,
    linphone: &Path,
    settle: Duration,
) -> Result<(Measured, Measured, Measured)> {
    let t = measure_tandem(work, tandem, settle, true).context("measuring tandem")?;
    let w = measure_tandem(work, tandem, settle, false).context("measuring tandem's wizard")?;
    let l = measure_linphone(work, linphone, settle).context("measuring linphone-desktop")?;
    Ok((t, w, l))
}

/// A running Xvfb on a display of its own.
struct Screen {
    _guard: Guard,
    display: String,
}

fn start_screen(work: &Path, name: &str) -> Result<Screen> {
    for n in 300..400u32 {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists()
            || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        {
            continue;
        }
        let mut cmd = Command::new("Xvfb");
        cmd.arg(format!(":{n}"))
            .args(["-screen", "0", "1280x800x24", "-nolisten", "tcp"]);
        let mut guard = Guard::spawn(&format!("xvfb-{name}"), cmd, work)?;
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if socket.exists() {
                return Ok(Screen {
                    _guard: guard,
                    display: format!(":{n}"),
                });
            }
            if !guard.running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    bail!("no Xvfb display could be started")
}

/// The environment of an app with its own home under `work/name`.
fn home_env(cmd: &mut Command, work: &Path, name: &str, display: &str) -> Result<()> {
    let home = work.join(name).join("home");
    let runtime = work.join(name).join("runtime");
    for d in [&home, &runtime] {
        std::fs::create_dir_all(d)?;
    }
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    cmd.env("DISPLAY", display)
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("NO_AT_BRIDGE", "1")
        .env_remove("WAYLAND_DISPLAY");
    Ok(())
}

/// Tandem signed in to its bundled lab (`signed_in`), or at its first-run wizard (no account,
/// no lab: what Linphone's first-run assistant is compared with, like for like).
fn measure_tandem(
    work: &Path,
    binary: &Path,
    settle: Duration,
    signed_in: bool,
) -> Result<Measured> {
    let name = if signed_in { "tandem" } else { "tandem-wizard" };
    let screen = start_screen(work, name)?;
    let mut cmd = Command::new("dbus-run-session");
    cmd.args(["--", "keyctl", "session", "-"]).arg(binary);
    home_env(&mut cmd, work, name, &screen.display)?;
    cmd.env(
        "TANDEM_KEYRING_SERVICE",
        format!("{name}-bench-{}", std::process::id()),
    )
    .env("TANDEM_CAPTURE", "null")
    .env("TANDEM_PLAYBACK", "null")
    .env("TANDEM_SIP_IP", "127.0.0.1")
    .env("GDK_BACKEND", "x11");
    if signed_in {
        cmd.env("TANDEM_START_LAB", "1");
    }
    let launched = Instant::now();
    let mut app = Guard::spawn(name, cmd, work)?;
    let ready_ms = if signed_in {
        wait_signed_in(&mut app, work, launched)?
    } else {
        wait_settled(&mut app, work, name, launched)?
    };
    std::thread::sleep(settle);
    let (pss_kib, processes) = median_pss(app.pid(), PLUMBING)?;
    let by_process = per_process(app.pid(), PLUMBING)?;
    if !app.running() {
        bail!("{name} exited while idle");
    }
    drop(app);
    drop(screen);
    Ok(Measured {
        pss_kib,
        processes,
        ready_ms,
        by_process,
    })
}

/// Waits for the app's "signed in" line; the milliseconds since `launched`.
fn wait_signed_in(app: &mut Guard, work: &Path, launched: Instant) -> Result<u128> {
    let log = work.join("tandem.err");
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("tandem: signed in as") {
            return Ok(launched.elapsed().as_millis());
        }
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("tandem: the bundled lab did not start"))
        {
            bail!("{line}");
        }
        if !app.running() {
            bail!("tandem exited at start: {}", tail(&text));
        }
        if launched.elapsed() > START_LIMIT {
            bail!(
                "tandem did not sign in within {START_LIMIT:?}: {}",
                tail(&text)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the app's window is up, which is when its process tree's memory stops growing
/// for a second; the milliseconds since `launched`.
fn wait_settled(app: &mut Guard, work: &Path, name: &str, launched: Instant) -> Result<u128> {
    let mut last = 0;
    let mut stable_since = Instant::now();
    loop {
        if !app.running() {
            let err = std::fs::read_to_string(work.join(format!("{name}.err"))).unwrap_or_default();
            bail!("{name} exited at start: {}", tail(&err));
        }
        let (now, _) = tree_pss(app.pid(), PLUMBING)?;
        if now > 0 && now.abs_diff(last) * 50 < now {
            if stable_since.elapsed() >= Duration::from_secs(1) {
                return Ok(launched.elapsed().as_millis());
            }
        } else {
            stable_since = Instant::now();
        }
        last = now;
        if launched.elapsed() > START_LIMIT {
            bail!("{name} did not settle within {START_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn measure_linphone(work: &Path, binary: &Path, settle: Duration) -> Result<Measured> {
    let screen = start_screen(work, "linphone")?;
    let mut cmd = Command::new("dbus-run-session");
    cmd.arg("--").arg(binary);
    home_env(&mut cmd, work, "linphone", &screen.display)?;
    cmd.env("QT_QPA_PLATFORM", "xcb");
    let launched = Instant::now();
    let mut app = Guard::spawn("linphone", cmd, work)?;
    // Linphone prints nothing reliable when its window is up.
    let ready_ms = wait_settled(&mut app, work, "linphone", launched)?;
    std::thread::sleep(settle);
    let (pss_kib, processes) = median_pss(app.pid(), PLUMBING)?;
    let by_process = per_process(app.pid(), PLUMBING)?;
    drop(app);
    drop(screen);
    Ok(Measured {
        pss_kib,
        processes,
        ready_ms,
        by_process,
    })
}

/// The last lines of a log, for errors.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// The median over [`SAMPLES`] samples of [`tree_pss`].
fn median_pss(root: u32, skip: &[&str]) -> Result<(u64, usize)> {
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        samples.push(tree_pss(root, skip)?);
    }
    samples.sort_unstable();
    samples.get(SAMPLES / 2).copied().context("no PSS sample")
}

/// The PSS (KiB) summed over `root` and its descendants (processes named in `skip` are not
/// counted, their children are), and how many processes counted.
fn tree_pss(root: u32, skip: &[&str]) -> Result<(u64, usize)> {
    let each = per_process(root, skip)?;
    Ok((each.iter().map(|(_, kib)| kib).sum(), each.len()))
}

/// The PSS (KiB) of `root` and each of its descendants by process name (processes named in
/// `skip` are left out, their children are not).
fn per_process(root: u32, skip: &[&str]) -> Result<Vec<(String, u64)>> {
    let mut procs: Vec<(u32, u32, String)> = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .context("reading /proc")?
        .flatten()
    {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces, so split at the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        procs.push((pid, ppid, comm.to_owned()));
    }
    let mut tree = vec![root];
    let mut i = 0;
    while let Some(&p) = tree.get(i) {
        for (pid, ppid, _) in &procs {
            if *ppid == p && !tree.contains(pid) {
                tree.push(*pid);
            }
        }
        i += 1;
    }
    let mut each = Vec::new();
    for (pid, _, comm) in procs.iter().filter(|(pid, ..)| tree.contains(pid)) {
        // The kernel keeps 15 bytes of a process name.
        if skip.iter().any(|s| s.get(..15).unwrap_or(s) == comm) {
            continue;
        }
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        if let Some(kib) = rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            each.push((comm.clone(), kib));
        }
    }
    Ok(each)
}
