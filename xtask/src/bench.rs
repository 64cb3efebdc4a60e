//! `cargo xtask bench sip`: the same SIPp load against Kamailio (the reference) and the lab server, stepping the
//! rate up until a step is no longer clean (a failed call or a retransmission), and the lab's memory per 10,000
//! registrations. Every run is bounded (`-m`, `-timeout`), and every process started here is stopped on the way out.

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::workspace_root;

/// Seconds of load per rate step.
const STEP_SECS: u32 = 5;
/// REGISTER rates tried, per second.
const REGISTER_RATES: &[u32] = &[500, 1000, 2000, 3000, 4000, 6000, 8000, 12000];
/// Call rates tried, per second.
const CALL_RATES: &[u32] = &[100, 200, 400, 600, 800, 1200];
/// A step counts only when SIPp really sent at this share of the asked rate (SIPp itself may be the limit).
const MIN_ACHIEVED: f64 = 0.9;
/// Registrations for the memory figure.
const MEMORY_AORS: u32 = 10_000;

/// A process in its own group, stopped (group-wide) on drop.
pub(crate) struct Guard {
    name: String,
    child: Child,
}

impl Guard {
    /// Starts `cmd` in its own process group, its output in `log_dir/NAME.out` and `NAME.err`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Guard> {
        let out = fs::File::create(log_dir.join(format!("{name}.out")))?;
        let err = fs::File::create(log_dir.join(format!("{name}.err")))?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Guard {
            name: name.to_string(),
            child,
        })
    }

    /// The name it was started under.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has not exited yet.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to end; false when it is still running after `limit`.
    pub(crate) fn wait(&mut self, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while self.running() {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        crate::cmd::stop_group(&mut self.child);
    }
}

/// A port free for UDP and TCP on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    bail!("no free port found")
}

fn peers() -> PathBuf {
    workspace_root().join("tests").join("peers")
}

/// SIPp's final counters, and how long the run took.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    ok: u64,
    failed: u64,
    retrans: u64,
    elapsed: Duration,
}

impl Stats {
    fn clean(&self, expected: u64) -> bool {
        self.ok == expected && self.failed == 0 && self.retrans == 0
    }

    /// Calls per second actually completed over the whole run (start-up and the last answer included).
    fn achieved(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// Clean, and SIPp really drove the asked rate.
    fn clean_at(&self, expected: u64, rate: u32) -> bool {
        self.clean(expected) && self.achieved() >= MIN_ACHIEVED * f64::from(rate)
    }
}

fn parse_stats(text: &str) -> Option<Stats> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let col = |name: &str| -> Option<u64> {
        let i = header.iter().position(|h| h.trim() == name)?;
        last.get(i)?.trim().parse().ok()
    };
    Some(Stats {
        ok: col("SuccessfulCall(C)")?,
        failed: col("FailedCall(C)")?,
        retrans: col("Retransmissions(C)")?,
        elapsed: Duration::ZERO,
    })
}

/// One SIPp run description.
struct SippRun<'a> {
    scenario: &'a str,
    remote: Option<u16>,
    port: u16,
    calls: u32,
    rate: Option<u32>,
    timeout_secs: u32,
    inf: Option<&'a Path>,
    service: Option<&'a str>,
}

fn sipp_command(run: &SippRun<'_>, dir: &Path, tag: &str) -> Result<(Command, PathBuf)> {
    let stat = dir.join(format!("{tag}-stat.csv"));
    let mut c = Command::new("sipp");
    c.current_dir(dir)
        .arg("-sf")
        .arg(peers().join(run.scenario))
        .args(["-i", "127.0.0.1", "-p", &run.port.to_string()])
        .args(["-mp", &free_port()?.to_string()])
        .args(["-t", "u1", "-m", &run.calls.to_string()])
        .args([
            "-timeout",
            &format!("{}s", run.timeout_secs),
            "-timeout_error",
        ])
        .args(["-nostdin", "-trace_stat", "-fd", "1", "-stf"])
        .arg(&stat)
        .args(["-l", "100000", "-max_socket", "10000"]);
    if let Some(r) = run.rate {
        c.args(["-r", &r.to_string()]);
    }
    if let Some(inf) = run.inf {
        c.arg("-inf").arg(inf);
    }
    if let Some(s) = run.service {
        c.args(["-s", s]);
    }
    if let Some(remote) = run.remote {
        c.arg(format!("127.0.0.1:{remote}"));
    }
    Ok((c, stat))
}

fn wait_exit(g: &mut Guard, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while g.running() {
        if start.elapsed() > limit {
            bail!("{} did not finish within {limit:?}", g.name);
        }
        sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn read_stats(stat: &Path) -> Stats {
    fs::read_to_string(stat)
        .ok()
        .and_then(|t| parse_stats(&t))
        .unwrap_or_default()
}

fn sipp(run: &SippRun<'_>, dir: &Path, tag: &str) -> Result<Stats> {
    let (cmd, stat) = sipp_command(run, dir, tag)?;
    let start = Instant::now();
    let mut g = Guard::spawn(tag, cmd, dir)?;
    wait_exit(
        &mut g,
        Duration::from_secs(u64::from(run.timeout_secs) + 15),
    )?;
    let elapsed = start.elapsed();
    Ok(Stats {
        elapsed,
        ..read_stats(&stat)
    })
}

fn users_csv(dir: &Path, prefix: &str, n: u32) -> Result<PathBuf> {
    let mut s = String::from("SEQUENTIAL\n");
    for i in 0..n {
        s.push_str(&format!("{prefix}{i:06};\n"));
    }
    let p = dir.join(format!("users-{prefix}.csv"));
    fs::write(&p, s)?;
    Ok(p)
}

/// A system under test: where to send, and how to register the UAS's contact.
struct Target {
    name: &'static str,
    register_port: u16,
    call_port: u16,
    /// Whether registering the UAS needs digest (Kamailio) or not (the lab with `trusted`).
    uas_register_digest: bool,
}

fn step_registers(t: &Target, dir: &Path) -> Result<u32> {
    let mut best = 0;
    for &rate in REGISTER_RATES {
        let calls = rate * STEP_SECS;
        let inf = users_csv(dir, &format!("{}r{rate}u", t.name), calls)?;
        let run = SippRun {
            scenario: "sipp-register-digest.xml",
            remote: Some(t.register_port),
            port: free_port()?,
            calls,
            rate: Some(rate),
            timeout_secs: STEP_SECS * 4 + 5,
            inf: Some(&inf),
            service: None,
        };
        let s = sipp(&run, dir, &format!("{}-register-{rate}", t.name))?;
        println!(
            "  {:<10} REGISTER {rate:>5}/s: {} ok, {} failed, {} retrans, achieved {:.0}/s",
            t.name,
            s.ok,
            s.failed,
            s.retrans,
            s.achieved()
        );
        if !s.clean_at(u64::from(calls), rate) {
            break;
        }
        best = rate;
    }
    Ok(best)
}

fn step_calls(t: &Target, dir: &Path) -> Result<u32> {
    let mut best = 0;
    for &rate in CALL_RATES {
        let calls = rate * STEP_SECS;
        let uas_port = free_port()?;
        // Register the UAS's AoR `service` with the UAS's own port as contact, before the UAS takes the port.
        let inf = dir.join("users-service.csv");
        fs::write(&inf, "SEQUENTIAL\nservice;\n")?;
        let reg = SippRun {
            scenario: if t.uas_register_digest {
                "sipp-register-digest.xml"
            } else {
                "sipp-register.xml"
            },
            remote: Some(t.call_port),
            port: uas_port,
            calls: 1,
            rate: None,
            timeout_secs: 10,
            inf: Some(&inf),
            service: None,
        };
        let r = sipp(&reg, dir, &format!("{}-uas-register-{rate}", t.name))?;
        if !r.clean(1) {
            bail!("{}: registering the UAS failed ({r:?})", t.name);
        }
        let uas = SippRun {
            scenario: "sipp-call-uas.xml",
            remote: None,
            port: uas_port,
            calls,
            rate: None,
            timeout_secs: STEP_SECS * 4 + 10,
            inf: None,
            service: None,
        };
        let (cmd, uas_stat) = sipp_command(&uas, dir, &format!("{}-uas-{rate}", t.name))?;
        let mut uas_guard = Guard::spawn(&format!("{}-uas-{rate}", t.name), cmd, dir)?;
        sleep(Duration::from_millis(300));
        let uac = SippRun {
            scenario: "sipp-call-uac.xml",
            remote: Some(t.call_port),
            port: free_port()?,
            calls,
            rate: Some(rate),
            timeout_secs: STEP_SECS * 4 + 5,
            inf: None,
            service: Some("service"),
        };
        let s = sipp(&uac, dir, &format!("{}-uac-{rate}", t.name))?;
        let _ = wait_exit(&mut uas_guard, Duration::from_secs(10));
        drop(uas_guard);
        let u = read_stats(&uas_stat);
        println!(
            "  {:<10} INVITE   {rate:>5}/s: {} ok, {} failed, {} retrans, achieved {:.0}/s (UAS: {} ok, {} failed, {} retrans)",
            t.name,
            s.ok,
            s.failed,
            s.retrans,
            s.achieved(),
            u.ok,
            u.failed,
            u.retrans
        );
        if !s.clean_at(u64::from(calls), rate) || !u.clean(u64::from(calls)) {
            break;
        }
        best = rate;
    }
    Ok(best)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc status")
}

fn run_tool(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn start_kamailio(dir: &Path) -> Result<(Guard, u16)> {
    let db = dir.join("kamailio.sqlite");
    let mut sql = String::new();
    for schema in ["standard", "auth_db"] {
        sql.push_str(&fs::read_to_string(format!(
            "/usr/share/kamailio/db_sqlite/{schema}-create.sql"
        ))?);
    }
    sql.push_str("INSERT INTO subscriber (username, domain, password) VALUES ('labuser', '127.0.0.1', 'secret');\n");
    let script = dir.join("kamailio.sql");
    fs::write(&script, sql)?;
    let mut c = Command::new("sqlite3");
    c.arg(&db).arg(format!(".read {}", script.display()));
    run_tool(c, "sqlite3")?;
    let port = free_port()?;
    let cfg = fs::read_to_string(peers().join("kamailio-bench.cfg.in"))?
        .replace("@DB@", &db.display().to_string())
        .replace("127.0.0.1:5060", &format!("127.0.0.1:{port}"));
    let cfg_path = dir.join("kamailio.cfg");
    fs::write(&cfg_path, cfg)?;
    let run = dir.join("kamailio-run");
    fs::create_dir_all(&run)?;
    let mut cmd = Command::new("kamailio");
    cmd.args([
        "-DD",
        "-E",
        "-m",
        "256",
        "-M",
        "16",
        "-A",
        "WITH_AUTH",
        "-f",
    ])
    .arg(&cfg_path)
    .arg("-Y")
    .arg(&run);
    let g = Guard::spawn("kamailio", cmd, dir)?;
    sleep(Duration::from_secs(2));
    Ok((g, port))
}

fn start_lab(bin: &Path, dir: &Path, name: &str, trusted: bool) -> Result<(Guard, u16)> {
    let port = free_port()?;
    let data = dir.join(format!("{name}-data"));
    fs::create_dir_all(&data)?;
    let trusted = if trusted { "[\"127.0.0.1/32\"]" } else { "[]" };
    let cfg = format!(
        "domain = \"127.0.0.1\"\ndata_dir = {data:?}\ndemo_users = false\n\n[listen]\nudp = [\"127.0.0.1:{port}\"]\ntcp = [\"127.0.0.1:{tcp}\"]\ntls = [\"127.0.0.1:{tls}\"]\n\n\
         [registrar]\nthird_party = [\"labuser\"]\n\n[auth]\nalgorithms = [\"MD5\"]\ntrusted = {trusted}\n\n[xcap]\nport = {xcap}\n\n[msrp]\nport = 0\ntls_port = 0\n\n[turn]\nport = 0\ntls_port = 0\n",
        data = data.display().to_string(),
        tcp = free_port()?,
        tls = free_port()?,
        xcap = free_port()?,
    );
    let cfg_path = dir.join(format!("{name}.toml"));
    fs::write(&cfg_path, cfg)?;
    let mut add = Command::new(bin);
    add.arg("--config").arg(&cfg_path).args([
        "user",
        "add",
        "labuser",
        "--password",
        "secret",
        "--domain",
        "127.0.0.1",
    ]);
    run_tool(add, "tandem-lab user add")?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&cfg_path).arg("serve");
    let mut g = Guard::spawn(name, cmd, dir)?;
    let out = dir.join(format!("{name}.out"));
    let start = Instant::now();
    loop {
        if fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("ready "))
        {
            return Ok((g, port));
        }
        if !g.running() || start.elapsed() > Duration::from_secs(30) {
            bail!("tandem-lab did not print `ready` (see {})", out.display());
        }
        sleep(Duration::from_millis(50));
    }
}

fn ratio(lab: u32, reference: u32) -> String {
    if reference == 0 {
        "n/a".into()
    } else {
        format!("{:.2}", f64::from(lab) / f64::from(reference))
    }
}

/// `cargo xtask bench sip`.
pub fn sip(_args: &[String]) -> Result<()> {
    crate::packages::ensure(crate::packages::TEST_PACKAGES)?;
    let bin = crate::build_lab()?;
    let dir = std::env::temp_dir().join(format!("tandem-bench-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    println!("xtask bench: logs in {}", dir.display());
    let result = bench_all(&bin, &dir);
    if result.is_ok() {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

fn bench_all(bin: &Path, dir: &Path) -> Result<()> {
    let (kam, kport) = start_kamailio(dir)?;
    let k = Target {
        name: "kamailio",
        register_port: kport,
        call_port: kport,
        uas_register_digest: true,
    };
    let k_reg = step_registers(&k, dir)?;
    let k_call = step_calls(&k, dir)?;
    drop(kam);

    let (lab_reg, reg_port) = start_lab(bin, dir, "lab-register", false)?;
    let (lab_call, call_port) = start_lab(bin, dir, "lab-invite", true)?;
    let l = Target {
        name: "tandem-lab",
        register_port: reg_port,
        call_port,
        uas_register_digest: false,
    };
    let l_reg = step_registers(&l, dir)?;
    let l_call = step_calls(&l, dir)?;
    drop(lab_call);
    drop(lab_reg);

    // Memory: a fresh lab, RSS before and after 10,000 unique AoRs.
    let (mut lab_mem, mem_port) = start_lab(bin, dir, "lab-memory", false)?;
    sleep(Duration::from_millis(500));
    let before = rss_kib(lab_mem.pid())?;
    let inf = users_csv(dir, "mem", MEMORY_AORS)?;
    let rate = if l_reg > 0 { l_reg } else { 200 };
    let run = SippRun {
        scenario: "sipp-register-digest.xml",
        remote: Some(mem_port),
        port: free_port()?,
        calls: MEMORY_AORS,
        rate: Some(rate),
        timeout_secs: MEMORY_AORS / rate + 30,
        inf: Some(&inf),
        service: None,
    };
    let s = sipp(&run, dir, "lab-memory-register")?;
    sleep(Duration::from_millis(500));
    let after = rss_kib(lab_mem.pid())?;
    // Finished UDP transactions live 64*T1 = 32 s: measure again once they are gone, so what stays is the
    // bindings (and whatever the allocator keeps).
    sleep(Duration::from_secs(40));
    let settled = rss_kib(lab_mem.pid())?;
    if !lab_mem.running() {
        bail!("the lab server died during the memory run");
    }
    drop(lab_mem);

    println!();
    println!("clean rates (0 failed, 0 retransmissions; {STEP_SECS} s steps):");
    println!(
        "  REGISTER+digest: kamailio {k_reg}/s, tandem-lab {l_reg}/s, ratio lab/kamailio {}",
        ratio(l_reg, k_reg)
    );
    println!(
        "  INVITE..BYE:     kamailio {k_call}/s, tandem-lab {l_call}/s, ratio lab/kamailio {}",
        ratio(l_call, k_call)
    );
    let per_10k = |rss: u64| rss.saturating_sub(before) * 10_000 / u64::from(MEMORY_AORS);
    println!(
        "  tandem-lab memory: {} registrations ok of {MEMORY_AORS}; RSS {before} KiB -> {after} KiB right after \
         ({} KiB per 10,000, transactions included) -> {settled} KiB 40 s later ({} KiB per 10,000 registrations)",
        s.ok,
        per_10k(after),
        per_10k(settled)
    );
    Ok(())
}
