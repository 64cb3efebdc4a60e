//! What the peer benches (`bench media`, `bench video`, `bench relay`) share: their call-seconds option, child
//! processes in their own process group (stopped on drop), CPU time and load from `/proc`, blocks of free
//! loopback ports, waiting until a SIP endpoint answers, the tandem-cli and crate-bench builds, running a built
//! bench with a deadline, checking and launching baresip, each run's log directory, and WAV writing.

use std::fs;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd::cargo;

// ---------------------------------------------------------------------------------------------------------------
// Arguments

/// Reads the one option of a peer bench, `<flag> N` (seconds of each call, `default` when absent, within
/// `range`); `bench` names the bench in the usage line.
pub(crate) fn parse_secs(
    args: &[String],
    flag: &str,
    default: u64,
    range: RangeInclusive<u64>,
    bench: &str,
) -> Result<u64> {
    let mut secs = default;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a != flag {
            bail!("unknown option {a:?}\nusage: cargo xtask bench {bench} [{flag} N]");
        }
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        secs = v
            .parse()
            .with_context(|| format!("{flag} {v:?} is not a number"))?;
        if !range.contains(&secs) {
            bail!(
                "{flag} must be between {} and {}",
                range.start(),
                range.end()
            );
        }
    }
    Ok(secs)
}

// ---------------------------------------------------------------------------------------------------------------
// Processes

/// Builds `tandem-cli` (release) and returns its path.
pub(crate) fn build_cli() -> Result<PathBuf> {
    crate::cmd::Step::new(
        "build tandem-cli (release)",
        crate::cmd::cargo(&[
            "build",
            "--release",
            "-p",
            "tandem-cli",
            "--bin",
            "tandem-cli",
        ]),
    )
    .run()?;
    let bin = crate::cmd::target_dir()?.join("release").join("tandem-cli");
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// How [`Proc::tails`] cuts a log for an error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tails {
    /// The last 12 lines as written.
    Plain,
    /// The last 15 non-empty lines, carriage returns read as line breaks (baresip redraws its status line).
    Redrawn,
}

/// A child in its own process group, stopped (group-wide) on drop.
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    tails: Tails,
}

impl Proc {
    /// Starts `cmd` in its own process group, stdout and stderr to `<log_dir>/<name>.out|.err`.
    pub(crate) fn spawn(
        name: &str,
        mut cmd: Command,
        log_dir: &Path,
        tails: Tails,
    ) -> Result<Proc> {
        let stdout = log_dir.join(format!("{name}.out"));
        let stderr = log_dir.join(format!("{name}.err"));
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&stdout)?)
            .stderr(fs::File::create(&stderr)?)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            tails,
        })
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child has not exited yet.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the child to exit until `deadline`; `None` if it is still running then.
    pub(crate) fn wait_until(&mut self, deadline: Instant) -> Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Everything the child wrote to stdout so far.
    pub(crate) fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// stdout followed by stderr (baresip writes its status line to stderr).
    pub(crate) fn all_output(&self) -> String {
        let mut text = self.stdout_text();
        text.push('\n');
        text.push_str(&fs::read_to_string(&self.stderr).unwrap_or_default());
        text
    }

    /// The last lines of stdout and stderr, for error messages.
    pub(crate) fn tails(&self) -> String {
        let tail = |p: &Path| {
            let text = fs::read_to_string(p).unwrap_or_default();
            match self.tails {
                Tails::Plain => last_lines(text.lines(), 12),
                Tails::Redrawn => {
                    let text = text.replace('\r', "\n");
                    last_lines(text.lines().filter(|l| !l.trim().is_empty()), 15)
                }
            }
        };
        format!(
            "--- {} stdout ({}):\n{}\n--- {} stderr ({}):\n{}",
            self.name,
            self.stdout.display(),
            tail(&self.stdout),
            self.name,
            self.stderr.display(),
            tail(&self.stderr)
        )
    }

    /// SIGTERM to the group, SIGKILL after a grace period.
    pub(crate) fn stop(&mut self) {
        crate::cmd::stop_group(&mut self.child);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `keep` of `lines`, joined with newlines.
fn last_lines<'a>(lines: impl Iterator<Item = &'a str>, keep: usize) -> String {
    let lines: Vec<&str> = lines.collect();
    let from = lines.len().saturating_sub(keep);
    lines.get(from..).unwrap_or(&[]).join("\n")
}

/// A background thread that runs until its stop flag is set; stopped and joined on drop.
pub(crate) struct StopThread<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> StopThread<T> {
    /// Starts `work` on a thread; it should return soon after the flag it is given turns true.
    pub(crate) fn spawn(work: impl FnOnce(Arc<AtomicBool>) -> T + Send + 'static) -> StopThread<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || work(flag));
        StopThread {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread and returns what it returned (`None` if it panicked).
    pub(crate) fn finish(mut self) -> Option<T> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok())
    }
}

impl<T> Drop for StopThread<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// User + system CPU time of a process so far (`/proc/PID/stat` fields 14 and 15).
pub(crate) fn process_cpu(pid: u32, ticks_per_sec: f64) -> Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (process gone?)"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no field {i} in /proc/{pid}/stat"))
    };
    let ticks = field(11)? + field(12)?;
    Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_sec))
}

/// `cpu` time over `wall` time as a share of one core, in percent.
pub(crate) fn core_percent(cpu: Duration, wall: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

/// Clock ticks per second of `/proc` times.
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The 1-minute load average (other work on the machine skews every number here).
pub(crate) fn loadavg() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------------------------
// Ports and SIP readiness

/// A port on 127.0.0.1 whose `n` consecutive ports are free for UDP and TCP.
pub(crate) fn free_block(n: u16) -> Result<u16> {
    for _ in 0..200 {
        let base = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let all_free = (base..base + n).all(|p| {
            UdpSocket::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        });
        if all_free {
            return Ok(base);
        }
    }
    bail!("no block of {n} free ports found on 127.0.0.1")
}

/// Waits until something answers a SIP OPTIONS on UDP `addr` (any response counts); `tag` names the probe in
/// its branch, From tag and Call-ID.
pub(crate) fn wait_sip_ready(
    addr: SocketAddr,
    proc: &mut Proc,
    timeout: Duration,
    tag: &str,
) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let local = socket.local_addr()?;
    socket.set_read_timeout(Some(Duration::from_millis(150)))?;
    let start = Instant::now();
    let mut n = 0u32;
    let mut buf = [0u8; 4096];
    while start.elapsed() < timeout {
        if !proc.running() {
            bail!(
                "{} exited before answering SIP\n{}",
                proc.name,
                proc.tails()
            );
        }
        n += 1;
        let request = format!(
            "OPTIONS sip:probe@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{tag}-{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bench@{local}>;tag={tag}{n}\r\nTo: <sip:probe@{addr}>\r\n\
             Call-ID: {tag}-{n}-{}@127.0.0.1\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n",
            std::process::id()
        );
        socket.send_to(request.as_bytes(), addr)?;
        if let Ok((len, _)) = socket.recv_from(&mut buf)
            && buf.get(..len).is_some_and(|b| b.starts_with(b"SIP/2.0 "))
        {
            return Ok(());
        }
    }
    bail!(
        "{} did not answer SIP OPTIONS on {addr} within {timeout:?}\n{}",
        proc.name,
        proc.tails()
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Builds and the reference peer

/// baresip's module directory (Debian's baresip packages).
pub(crate) const BARESIP_MODULES: &str = "/usr/lib/baresip/modules";

/// Fails with a clear message when baresip or one of its modules is missing.
pub(crate) fn check_baresip(modules: &[&str]) -> Result<()> {
    if !crate::cmd::on_path("baresip") {
        bail!(
            "baresip is not installed (apt-get install baresip); it is the reference peer of this bench"
        );
    }
    let missing: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| !Path::new(BARESIP_MODULES).join(m).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "baresip modules missing in {BARESIP_MODULES}: {} (the Debian baresip packages ship them)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Starts baresip on the config directory `conf` (its `config` already written) with the one account line
/// `account`; with `dial` it calls `sip:peer@<target>` at start-up and quits after the given seconds. `gid`
/// runs it under that group id; logs go to `log_dir`.
pub(crate) fn launch_baresip(
    name: &str,
    conf: &Path,
    account: &str,
    dial: Option<(SocketAddr, u64)>,
    gid: Option<u32>,
    log_dir: &Path,
    tails: Tails,
) -> Result<Proc> {
    fs::write(conf.join("accounts"), format!("{account}\n"))?;
    fs::write(conf.join("contacts"), "")?;
    let mut cmd = Command::new("baresip");
    cmd.arg("-f").arg(conf);
    if let Some((target, quit_after)) = dial {
        cmd.arg("-e")
            .arg(format!("/dial sip:peer@{target}"))
            .arg("-t")
            .arg(quit_after.to_string());
    }
    if let Some(gid) = gid {
        cmd.gid(gid);
    }
    Proc::spawn(name, cmd, log_dir, tails)
}

/// Builds one bench of `package` (`cargo bench --no-run`) and returns the path of its executable.
pub(crate) fn build_bench(package: &str, name: &str) -> Result<PathBuf> {
    let out = cargo(&[
        "bench",
        "-p",
        package,
        "--bench",
        name,
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .stderr(Stdio::inherit())
    .output()
    .with_context(|| format!("building the {name} bench"))?;
    if !out.status.success() {
        bail!(
            "building the {package} {name} bench failed ({})",
            out.status
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m.get("reason").and_then(Value::as_str) == Some("compiler-artifact"))
        .filter(|m| {
            m.pointer("/target/name").and_then(Value::as_str) == Some(name)
                && m.pointer("/target/kind")
                    .and_then(Value::as_array)
                    .is_some_and(|k| k.iter().any(|k| k.as_str() == Some("bench")))
        })
        .find_map(|m| {
            m.get("executable")
                .and_then(Value::as_str)
                .map(PathBuf::from)
        })
        .with_context(|| format!("cargo reported no executable for the {name} bench"))
}

/// Removes the `run-*` directories of earlier runs in `out_dir` and creates this run's `run-<pid>` there.
pub(crate) fn fresh_run_dir(out_dir: &Path) -> Result<PathBuf> {
    if let Ok(entries) = fs::read_dir(out_dir) {
        for e in entries.filter_map(|e| e.ok()) {
            let old_run = e
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("run-"));
            if old_run && e.path().is_dir() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let log_dir = out_dir.join(format!("run-{}", std::process::id()));
    fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    Ok(log_dir)
}

/// Writes mono 16-bit PCM as a WAV file.
pub(crate) fn write_wav(path: &Path, rate: u32, pcm: &[i16]) -> Result<()> {
    let data_len = u32::try_from(pcm.len() * 2).context("WAV too long")?;
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Runs one built bench executable `cmd` (as `cargo bench` would) with a deadline and returns its stdout lines
/// that `parse` reads (`format` names them in the error when there are none).
pub(crate) fn run_bench<T>(
    name: &str,
    cmd: Command,
    timeout: Duration,
    log_dir: &Path,
    tails: Tails,
    parse: impl Fn(&str) -> Option<T>,
    format: &str,
) -> Result<Vec<T>> {
    let mut proc = Proc::spawn(&format!("bench-{name}"), cmd, log_dir, tails)?;
    let started = Instant::now();
    match proc.wait_until(started + timeout)? {
        Some(status) if status.success() => {}
        Some(status) => bail!("bench {name} failed ({status})\n{}", proc.tails()),
        None => bail!(
            "bench {name} did not finish within {timeout:?}\n{}",
            proc.tails()
        ),
    }
    let lines: Vec<T> = proc.stdout_text().lines().filter_map(parse).collect();
    if lines.is_empty() {
        bail!("bench {name} printed no {format} lines\n{}", proc.tails());
    }
    println!(
        "  bench {name}: {} result lines in {:.0}s",
        lines.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn the_seconds_option_is_read_and_checked() {
        let parse = |args: &[&str]| parse_secs(&strings(args), "--secs", 12, 6..=30, "video");
        assert_eq!(parse(&[]).unwrap(), 12);
        assert_eq!(parse(&["--secs", "20"]).unwrap(), 20);
        assert_eq!(parse(&["--secs", "6", "--secs", "30"]).unwrap(), 30);
        let err = |args: &[&str]| format!("{:#}", parse(args).unwrap_err());
        assert_eq!(err(&["--secs", "5"]), "--secs must be between 6 and 30");
        assert_eq!(err(&["--secs"]), "--secs needs a value");
        assert!(err(&["--secs", "x"]).starts_with("--secs \"x\" is not a number"));
        assert_eq!(
            err(&["--call-secs", "10"]),
            "unknown option \"--call-secs\"\nusage: cargo xtask bench video [--secs N]"
        );
    }

    #[test]
    fn a_stop_thread_runs_until_finished_or_dropped() {
        let worker = StopThread::spawn(|flag| {
            let mut turns = 0u64;
            while !flag.load(Ordering::Relaxed) {
                turns += 1;
                sleep(Duration::from_millis(1));
            }
            turns
        });
        sleep(Duration::from_millis(30));
        assert!(worker.finish().is_some_and(|turns| turns > 0));

        let done = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&done);
        let worker = StopThread::spawn(move |flag| {
            while !flag.load(Ordering::Relaxed) {
                sleep(Duration::from_millis(1));
            }
            seen.store(true, Ordering::Relaxed);
        });
        drop(worker);
        assert!(
            done.load(Ordering::Relaxed),
            "drop joins the thread after stopping it"
        );
    }

    #[test]
    fn tails_keep_the_last_lines_and_read_redraws_as_lines() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-common-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 20); do echo line$i; done; printf 'a\\rb\\r\\rc\\n' >&2",
        ]);
        let mut plain = Proc::spawn("plain", cmd, &dir, Tails::Plain).unwrap();
        assert!(
            plain
                .wait_until(Instant::now() + Duration::from_secs(10))
                .unwrap()
                .is_some()
        );
        let text = plain.tails();
        assert!(text.contains("line9\nline10") && !text.contains("line8\n"));
        assert!(text.contains("a\rb\r\rc"));
        plain.tails = Tails::Redrawn;
        let text = plain.tails();
        assert!(text.contains("line6\nline7") && !text.contains("line5\n"));
        assert!(text.contains("a\nb\nc"));
        assert!(plain.all_output().starts_with("line1\n"));
        drop(plain);
        fs::remove_dir_all(&dir).unwrap();
    }
}
