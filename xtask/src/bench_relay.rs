//! `cargo xtask bench relay`: the lab's TURN relay against coturn with the same `turnutils_uclient` load in the
//! same run. For each load step (clients × packets, RTP-sized and MTU-sized payloads) it reports what came back
//! through the relay, the loss, packets/s and payload throughput, and the server's CPU time, so the ratio is
//! measured per core as well as per second. Every process started here is stopped on the way out.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// `cargo xtask bench relay`.
pub fn relay(_args: &[String]) -> Result<()> {
    crate::packages::ensure(crate::packages::TEST_PACKAGES)?;
    let bin = crate::build_lab()?;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("tandem-bench-relay-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    println!("xtask bench relay: logs in {}", dir.display());
    let result = bench_all(&bin, &dir);
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
