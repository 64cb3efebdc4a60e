//! `cargo xtask bench relay`: the lab's TURN relay against coturn with the same `turnutils_uclient` load in the
//! same run. For each load step (clients × packets, RTP-sized and MTU-sized payloads) it reports what came back
//! through the relay, the loss, packets/s and payload throughput, and the server's CPU time, so the ratio is
//! measured per core as well as per second. Then the media relay section (N4's
//! `bench_media_relay::run`) and the ICE call setup time: two `tandem-cli` on loopback, the caller
//! started, the time until it is answered and until its first audio packet arrived (median and
//! p95 over [`SETUP_CALLS`] calls), with ICE off, ICE on (direct) and ICE forced through the lab's
//! TURN (relay). Every process started here is stopped on the way out.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{Guard, free_port};

/// `(clients, packets per client, payload bytes, ms between a client's packets)`.
const STEPS: &[(u32, u32, u32, u32)] = &[
    (10, 1000, 172, 5),
    (50, 1000, 172, 5),
    (100, 1000, 172, 5),
    (50, 1000, 1200, 5),
];
/// Longest one uclient run may take.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)) -> indexes 11, 12 here.
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    // USER_HZ is 100 on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Polls until `pattern` shows in a log file or the process dies.
fn wait_for(g: &mut Guard, log: &Path, pattern: &str, what: &str) -> Result<String> {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(pattern)) {
            return Ok(line.to_owned());
        }
        if !g.running() || start.elapsed() > Duration::from_secs(30) {
            bail!("{what} did not start (see {})", log.display());
        }
        sleep(Duration::from_millis(50));
    }
}

fn start_coturn(dir: &Path) -> Result<(Guard, u16)> {
    let port = free_port()?;
    let mut cmd = Command::new("turnserver");
    cmd.args([
        "-n",
        "--listening-ip",
        "127.0.0.1",
        "--relay-ip",
        "127.0.0.1",
    ])
    .args(["--listening-port", &port.to_string()])
    .args(["--min-port", "40000", "--max-port", "44999"])
    .args([
        "--lt-cred-mech",
        "--realm",
        "tandem.lab",
        "--user",
        "alice:secret",
    ])
    .args([
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--simple-log",
        "--allow-loopback-peers",
    ])
    .args(["--log-file", "stdout"])
    .arg("--db")
    .arg(dir.join("coturn.sqlite"))
    .arg("--pidfile")
    .arg(dir.join("coturn.pid"));
    let mut g = Guard::spawn("coturn", cmd, dir)?;
    wait_for(
        &mut g,
        &dir.join("coturn.out"),
        "Total General servers",
        "turnserver",
    )?;
    sleep(Duration::from_millis(500));
    Ok((g, port))
}

fn start_lab(bin: &Path, dir: &Path) -> Result<(Guard, u16)> {
    let port = free_port()?;
    let data = dir.join("lab-data");
    fs::create_dir_all(&data)?;
    let cfg = format!(
        "domain = \"tandem.lab\"\ndata_dir = {data:?}\ndemo_users = false\n\n[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\ntls = []\n\n\
         [xcap]\nenabled = false\n\n[turn]\nport = {port}\ntls = false\nmin_port = 45000\nmax_port = 49999\nallow_loopback_peers = true\nmax_allocations = 10000\nuser_quota = 10000\n",
        data = data.display().to_string(),
    );
    let cfg_path = dir.join("lab.toml");
    fs::write(&cfg_path, cfg)?;
    let status = Command::new(bin)
        .arg("--config")
        .arg(&cfg_path)
        .args(["user", "add", "alice", "--password", "secret"])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("tandem-lab user add failed");
    }
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&cfg_path).arg("serve");
    let mut g = Guard::spawn("lab", cmd, dir)?;
    wait_for(&mut g, &dir.join("lab.out"), "ready ", "tandem-lab")?;
    Ok((g, port))
}

fn start_peer(dir: &Path) -> Result<(Guard, u16)> {
    let port = free_port()?;
    let mut cmd = Command::new("turnutils_peer");
    cmd.args(["-L", "127.0.0.1", "-p", &port.to_string()]);
    let g = Guard::spawn("peer", cmd, dir)?;
    sleep(Duration::from_millis(300));
    Ok((g, port))
}

/// One load step's result.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    sent: u64,
    received: u64,
    bytes: u64,
    elapsed: f64,
    server_cpu: f64,
}

impl Load {
    /// Relayed packets per second (each message crosses the relay twice: out and echoed back).
    fn pps(&self) -> f64 {
        (self.sent + self.received) as f64 / self.elapsed.max(0.001)
    }

    /// Relayed packets per CPU-second of the server.
    fn per_core(&self) -> f64 {
        (self.sent + self.received) as f64 / self.server_cpu.max(0.001)
    }

    fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        100.0 * (self.sent.saturating_sub(self.received)) as f64 / self.sent as f64
    }

    fn mbit(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.max(0.001) / 1e6
    }
}

fn number_after(text: &str, key: &str) -> u64 {
    let Some(at) = text.rfind(key).map(|i| i + key.len()) else {
        return 0;
    };
    text[at..]
        .trim_start_matches([' ', '~', '='])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

fn uclient(
    server_port: u16,
    server_pid: u32,
    peer_port: u16,
    step: (u32, u32, u32, u32),
    dir: &Path,
    tag: &str,
) -> Result<Load> {
    let (clients, packets, length, interval) = step;
    let mut cmd = Command::new("turnutils_uclient");
    cmd.args(["-c", "-u", "alice", "-w", "secret", "-e", "127.0.0.1"])
        .args(["-r", &peer_port.to_string(), "-p", &server_port.to_string()])
        .args(["-m", &clients.to_string(), "-n", &packets.to_string()])
        .args(["-l", &length.to_string(), "-z", &interval.to_string()])
        .arg("127.0.0.1");
    let cpu_before = cpu_secs(server_pid)?;
    let start = Instant::now();
    let mut g = Guard::spawn(tag, cmd, dir)?;
    while g.running() {
        if start.elapsed() > RUN_LIMIT {
            bail!("uclient {tag} did not finish within {RUN_LIMIT:?}");
        }
        sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let server_cpu = cpu_secs(server_pid)? - cpu_before;
    let out = format!(
        "{}{}",
        fs::read_to_string(dir.join(format!("{tag}.out"))).unwrap_or_default(),
        fs::read_to_string(dir.join(format!("{tag}.err"))).unwrap_or_default()
    );
    let summary: String = out
        .lines()
        .filter(|l| !l.contains("msz="))
        .collect::<Vec<_>>()
        .join("\n");
    let sent = number_after(&summary, "tot_send_msgs=");
    let received = number_after(&summary, "tot_recv_msgs=");
    if sent == 0 {
        bail!("uclient {tag} sent nothing (see {})", dir.display());
    }
    Ok(Load {
        sent,
        received,
        bytes: number_after(&summary, "tot_send_bytes") + number_after(&summary, "tot_recv_bytes"),
        elapsed,
        server_cpu,
    })
}

fn ratio(lab: f64, reference: f64) -> String {
    if reference <= 0.0 {
        "n/a".into()
    } else {
        format!("{:.2}", lab / reference)
    }
}

/// `cargo xtask bench relay [turn] [media] [ice]`: every section by default, or the ones named.
pub fn relay(args: &[String]) -> Result<()> {
    let known = ["turn", "media", "ice"];
    if let Some(bad) = args.iter().find(|a| !known.contains(&a.as_str())) {
        bail!("unknown section {bad:?} (sections: turn, media, ice)");
    }
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    crate::packages::ensure(crate::packages::TEST_PACKAGES)?;
    let bin = crate::build_lab()?;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("tandem-bench-relay-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    println!("xtask bench relay: logs in {}", dir.display());
    let mut result = Ok(());
    if want("turn") {
        result = bench_all(&bin, &dir);
    }
    if result.is_ok() && want("media") {
        let media_dir = dir.join("media-relay");
        fs::create_dir_all(&media_dir)?;
        result = crate::bench_media_relay::run(&bin, &media_dir);
    }
    if result.is_ok() && want("ice") {
        result = ice_setup(&bin, &dir);
    }
    if result.is_ok() {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

fn bench_all(bin: &Path, dir: &Path) -> Result<()> {
    let (_peer, peer_port) = start_peer(dir)?;
    let (coturn, coturn_port) = start_coturn(dir)?;
    let (lab, lab_port) = start_lab(bin, dir)?;
    println!(
        "{:<28} {:>10} {:>10} {:>7} {:>10} {:>9} {:>12} {:>7} {:>7}",
        "load", "server", "relayed", "loss%", "pkt/s", "Mbit/s", "pkt/cpu-s", "x pps", "x core"
    );
    for (i, step) in STEPS.iter().enumerate() {
        let label = format!(
            "{} clients x {} x {} B / {} ms",
            step.0, step.1, step.2, step.3
        );
        let c = uclient(
            coturn_port,
            coturn.pid(),
            peer_port,
            *step,
            dir,
            &format!("coturn-{i}"),
        )?;
        let l = uclient(
            lab_port,
            lab.pid(),
            peer_port,
            *step,
            dir,
            &format!("lab-{i}"),
        )?;
        for (name, r, ratios) in [("coturn", c, None), ("lab", l, Some((l, c)))] {
            let (rp, rc) = match ratios {
                Some((l, c)) => (ratio(l.pps(), c.pps()), ratio(l.per_core(), c.per_core())),
                None => ("".into(), "".into()),
            };
            println!(
                "{:<28} {:>10} {:>10} {:>7.2} {:>10.0} {:>9.2} {:>12.0} {:>7} {:>7}",
                label,
                name,
                r.sent + r.received,
                r.loss(),
                r.pps(),
                r.mbit(),
                r.per_core(),
                rp,
                rc
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ICE call setup time

/// Calls per mode of the ICE call setup section.
const SETUP_CALLS: usize = 12;
/// Longest one call setup may take before the run is declared failed.
const SETUP_LIMIT: Duration = Duration::from_secs(20);

/// A caller `tandem-cli` with piped stdin/stdout, its process group stopped on drop.
struct Caller {
    child: std::process::Child,
}

impl Drop for Caller {
    fn drop(&mut self) {
        crate::cmd::stop_group(&mut self.child);
    }
}

/// One call's timeline from the caller's start.
struct Setup {
    answered: Duration,
    first_audio: Duration,
    path: String,
}

/// Starts a caller, polls `quality` on its stdin once answered and returns when the first
/// audio packet was counted.
fn one_call(cli: &Path, args: &[String], log: &Path) -> Result<Setup> {
    let mut cmd = Command::new(cli);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(log.with_extension("err"))?)
        .process_group(0);
    let t0 = Instant::now();
    let mut caller = Caller {
        child: cmd.spawn().context("starting tandem-cli call")?,
    };
    let stdout = caller.child.stdout.take().context("caller stdout")?;
    let mut stdin = caller.child.stdin.take().context("caller stdin")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut transcript = String::new();
    let mut answered = None;
    let mut path = "-".to_owned();
    loop {
        if t0.elapsed() > SETUP_LIMIT {
            fs::write(log, &transcript)?;
            bail!("no audio within {SETUP_LIMIT:?} (see {})", log.display());
        }
        if answered.is_some() {
            // Ask for the counters; an answer within 10 ms bounds the resolution.
            let _ = stdin.write_all(b"quality\n");
            let _ = stdin.flush();
        }
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok((at, line)) => {
                transcript.push_str(&line);
                transcript.push('\n');
                if line.starts_with("answered") && answered.is_none() {
                    answered = Some(at - t0);
                } else if let Some(rest) = line.strip_prefix("ice selected ") {
                    path = rest
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("path="))
                        .unwrap_or("-")
                        .to_owned();
                } else if line.starts_with("quality ")
                    && let Some(a) = answered
                    && number_after(&line, "received=") > 0
                {
                    fs::write(log, &transcript)?;
                    let _ = stdin.write_all(b"hangup\n");
                    let _ = stdin.flush();
                    return Ok(Setup {
                        answered: a,
                        first_audio: at - t0,
                        path,
                    });
                } else if line.starts_with("failed") || line.starts_with("ended") {
                    fs::write(log, &transcript)?;
                    bail!("call ended before audio: {line} (see {})", log.display());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                fs::write(log, &transcript)?;
                bail!(
                    "tandem-cli call exited before audio (see {})",
                    log.display()
                );
            }
        }
    }
}

/// Median and 95th percentile (nearest rank) of `v` in milliseconds.
fn median_p95(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let rank = |q: f64| {
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v.get(i).copied().unwrap_or(0.0)
    };
    (rank(0.5), rank(0.95))
}

/// The ICE call setup section: caller start → answered → first audio, per mode.
fn ice_setup(lab_bin: &Path, dir: &Path) -> Result<()> {
    let cli = crate::bench_common::build_cli()?;
    let dir = dir.join("ice-setup");
    fs::create_dir_all(&dir)?;
    // The lab only as TURN server (the calls go directly between the two tandem-cli).
    let (_lab, turn_port) = start_lab(lab_bin, &dir)?;
    let turn = format!("turn:127.0.0.1:{turn_port}");
    let modes: [(&str, Vec<String>); 3] = [
        ("ICE off", vec!["--ice".into(), "off".into()]),
        ("ICE, direct", vec!["--ice".into(), "on".into()]),
        (
            "ICE, relay (lab TURN)",
            vec![
                "--ice".into(),
                "on".into(),
                "--ice-policy".into(),
                "relay".into(),
                "--turn".into(),
                turn.clone(),
                "--turn-user".into(),
                "alice".into(),
                "--turn-password".into(),
                "secret".into(),
            ],
        ),
    ];
    println!();
    println!(
        "ICE call setup on loopback: tandem-cli call -> tandem-cli answer, {SETUP_CALLS} calls per mode \
         (from starting the caller; includes process start and candidate gathering)"
    );
    println!(
        "{:<24} {:>8} {:>14} {:>14} {:>16} {:>16}",
        "mode", "path", "answered p50", "answered p95", "first audio p50", "first audio p95"
    );
    for (m, (name, extra)) in modes.iter().enumerate() {
        let port = free_port()?;
        let account = |user: &str, listen: &str| -> Vec<String> {
            let mut v: Vec<String> = [
                "--user",
                user,
                "--domain",
                "127.0.0.1",
                "--transport",
                "udp",
                "--listen",
                listen,
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            v.extend(extra.iter().cloned());
            v
        };
        let mut callee_args = account("bob", &format!("127.0.0.1:{port}"));
        callee_args.extend(["answer", "--no-register", "--device", "tone:440"].map(String::from));
        let mut callee_cmd = Command::new(&cli);
        callee_cmd.args(&callee_args);
        let mut callee = Guard::spawn(&format!("callee-{m}"), callee_cmd, &dir)?;
        sleep(Duration::from_millis(300));
        if !callee.running() {
            bail!("tandem-cli answer exited (see {})", dir.display());
        }
        let mut answered = Vec::new();
        let mut audio = Vec::new();
        let mut paths = Vec::new();
        for i in 0..SETUP_CALLS {
            let mut args = account("alice", "127.0.0.1:0");
            args.extend([
                "call".into(),
                format!("sip:bob@127.0.0.1:{port}"),
                "--duration".into(),
                "3".into(),
                "--device".into(),
                "tone:440".into(),
            ]);
            let s = one_call(&cli, &args, &dir.join(format!("caller-{m}-{i}.out")))?;
            answered.push(s.answered.as_secs_f64() * 1000.0);
            audio.push(s.first_audio.as_secs_f64() * 1000.0);
            paths.push(s.path);
            // Let the BYE go through before the next call.
            sleep(Duration::from_millis(200));
        }
        paths.sort();
        paths.dedup();
        let (a50, a95) = median_p95(answered);
        let (f50, f95) = median_p95(audio);
        println!(
            "{:<24} {:>8} {:>11.1} ms {:>11.1} ms {:>13.1} ms {:>13.1} ms",
            name,
            paths.join(","),
            a50,
            a95,
            f50,
            f95
        );
        drop(callee);
    }
    Ok(())
}
