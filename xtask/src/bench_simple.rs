//! `cargo xtask bench simple`: SIMPLE load on the lab server and on Kamailio (presence, presence_xml, rls,
//! xcap_server; `tests/peers/kamailio-presence.cfg.in`) with the same SIPp scenarios in the same run, plus the
//! lab's MSRP relay throughput (`bench_msrp`):
//! - MESSAGE relay rate: `sipp-message-uac.xml` → server → a registered `sipp-message-uas.xml`, stepping the rate
//!   up until a step is no longer clean (a failed message or a retransmission);
//! - presence NOTIFY fan-out: 1,000 watchers (`sipp-presence-watcher.xml`) subscribe to one presentity, then one
//!   PUBLISH (`sipp-presence-publish.xml`); the time from the PUBLISH's 200 until the last watcher got the NOTIFY
//!   with the new state, and NOTIFYs per second from it.
//!
//! Every SIPp run is bounded (`-m`, `-timeout`), every process started here is stopped on the way out (process
//! groups), and the temporary directory is removed after a successful run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::workspace_root;

/// Seconds of load per MESSAGE rate step.
const STEP_SECS: u32 = 5;
/// MESSAGE rates tried, per second.
const MESSAGE_RATES: &[u32] = &[250, 500, 1000, 2000, 3000, 4000, 6000];
/// A step counts only when SIPp really sent at this share of the asked rate.
const MIN_ACHIEVED: f64 = 0.9;
/// Watchers of the fan-out run.
const WATCHERS: u32 = 1000;
/// Rate at which the watchers subscribe.
const SUBSCRIBE_RATE: u32 = 250;
/// The presentity of the fan-out run.
const PRESENTITY: &str = "pub";
/// The recipient of the MESSAGE run.
const RECIPIENT: &str = "service";

use crate::bench::{Guard, free_port};

fn peers() -> PathBuf {
    workspace_root().join("tests").join("peers")
}

fn run_tool(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// SIPp's final counters.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    ok: u64,
    failed: u64,
    retrans: u64,
}

fn read_stats(stat: &Path) -> Stats {
    let Ok(text) = fs::read_to_string(stat) else {
        return Stats::default();
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let (Some(header), Some(last)) = (lines.next(), lines.next_back()) else {
        return Stats::default();
    };
    let header: Vec<&str> = header.split(';').collect();
    let last: Vec<&str> = last.split(';').collect();
    let col = |name: &str| -> u64 {
        header
            .iter()
            .position(|h| h.trim() == name)
            .and_then(|i| last.get(i)?.trim().parse().ok())
            .unwrap_or(0)
    };
    Stats {
        ok: col("SuccessfulCall(C)"),
        failed: col("FailedCall(C)"),
        retrans: col("Retransmissions(C)"),
    }
}

/// A SIPp run.
struct Sipp<'a> {
    scenario: &'a str,
    remote: Option<u16>,
    port: u16,
    calls: u32,
    rate: Option<u32>,
    timeout_secs: u32,
    service: &'a str,
    inf: Option<&'a Path>,
}

impl Sipp<'_> {
    fn spawn(&self, dir: &Path, tag: &str) -> Result<(Guard, PathBuf)> {
        let stat = dir.join(format!("{tag}-stat.csv"));
        let mut c = Command::new("sipp");
        c.current_dir(dir)
            .arg("-sf")
            .arg(peers().join(self.scenario))
            .args(["-i", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-mp", &free_port()?.to_string()])
            .args(["-t", "u1", "-m", &self.calls.to_string()])
            .args([
                "-timeout",
                &format!("{}s", self.timeout_secs),
                "-timeout_error",
            ])
            .args(["-nostdin", "-trace_stat", "-fd", "1", "-stf"])
            .arg(&stat)
            .args(["-l", "100000", "-max_socket", "10000", "-s", self.service]);
        if let Some(r) = self.rate {
            c.args(["-r", &r.to_string()]);
        }
        if let Some(inf) = self.inf {
            c.arg("-inf").arg(inf);
        }
        if let Some(remote) = self.remote {
            c.arg(format!("127.0.0.1:{remote}"));
        }
        Ok((Guard::spawn(tag, c, dir)?, stat))
    }

    fn run(&self, dir: &Path, tag: &str) -> Result<(Stats, Duration)> {
        let start = Instant::now();
        let (mut g, stat) = self.spawn(dir, tag)?;
        if !g.wait(Duration::from_secs(u64::from(self.timeout_secs) + 15)) {
            bail!("{} did not finish", g.name());
        }
        Ok((read_stats(&stat), start.elapsed()))
    }
}

/// Registers `user` with `contact_port` as its contact (REGISTER without digest) at `server`.
fn register(dir: &Path, server: u16, user: &str, contact_port: u16, tag: &str) -> Result<()> {
    let inf = dir.join(format!("users-{tag}.csv"));
    fs::write(&inf, format!("SEQUENTIAL\n{user};\n"))?;
    let (s, _) = Sipp {
        scenario: "sipp-register.xml",
        remote: Some(server),
        port: contact_port,
        calls: 1,
        rate: None,
        timeout_secs: 10,
        service: user,
        inf: Some(&inf),
    }
    .run(dir, tag)?;
    if s.ok != 1 {
        bail!("{tag}: registering {user} failed ({s:?})");
    }
    Ok(())
}

/// The best clean MESSAGE rate through `server`.
fn message_rate(name: &str, server: u16, dir: &Path) -> Result<u32> {
    let mut best = 0;
    for &rate in MESSAGE_RATES {
        let calls = rate * STEP_SECS;
        let uas_port = free_port()?;
        register(
            dir,
            server,
            RECIPIENT,
            uas_port,
            &format!("{name}-reg-{rate}"),
        )?;
        let (mut uas, uas_stat) = Sipp {
            scenario: "sipp-message-uas.xml",
            remote: None,
            port: uas_port,
            calls,
            rate: None,
            timeout_secs: STEP_SECS * 4 + 10,
            service: RECIPIENT,
            inf: None,
        }
        .spawn(dir, &format!("{name}-message-uas-{rate}"))?;
        sleep(Duration::from_millis(300));
        let (s, elapsed) = Sipp {
            scenario: "sipp-message-uac.xml",
            remote: Some(server),
            port: free_port()?,
            calls,
            rate: Some(rate),
            timeout_secs: STEP_SECS * 4 + 5,
            service: RECIPIENT,
            inf: None,
        }
        .run(dir, &format!("{name}-message-uac-{rate}"))?;
        uas.wait(Duration::from_secs(5));
        drop(uas);
        let u = read_stats(&uas_stat);
        let achieved = s.ok as f64 / elapsed.as_secs_f64().max(0.001);
        println!(
            "  {name:<10} MESSAGE {rate:>5}/s: {} ok, {} failed, {} retrans, achieved {achieved:.0}/s \
             (recipient: {} ok)",
            s.ok, s.failed, s.retrans, u.ok
        );
        let clean = s.ok == u64::from(calls) && s.failed == 0 && s.retrans == 0;
        if !clean || achieved < MIN_ACHIEVED * f64::from(rate) {
            break;
        }
        best = rate;
    }
    Ok(best)
}

/// The result of one fan-out run.
#[derive(Debug, Clone, Copy)]
struct FanOut {
    /// Watchers that got the new state.
    notified: u64,
    /// Watchers whose subscription or NOTIFY failed.
    failed: u64,
    /// From the PUBLISH's 200 to the last watcher's NOTIFY.
    spread: Duration,
}

/// 1,000 watchers of `pub`, then one PUBLISH through `server`.
fn fan_out(name: &str, server: u16, dir: &Path) -> Result<FanOut> {
    let (mut watchers, stat) = Sipp {
        scenario: "sipp-presence-watcher.xml",
        remote: Some(server),
        port: free_port()?,
        calls: WATCHERS,
        rate: Some(SUBSCRIBE_RATE),
        timeout_secs: WATCHERS / SUBSCRIBE_RATE + 150,
        service: PRESENTITY,
        inf: None,
    }
    .spawn(dir, &format!("{name}-watchers"))?;
    // Every watcher subscribed and got its initial NOTIFY (the stats file shows them as current calls).
    sleep(Duration::from_secs(
        u64::from(WATCHERS / SUBSCRIBE_RATE) + 4,
    ));
    if !watchers.running() {
        bail!(
            "{name}: the watchers ended before the PUBLISH ({:?})",
            read_stats(&stat)
        );
    }
    let (p, _) = Sipp {
        scenario: "sipp-presence-publish.xml",
        remote: Some(server),
        port: free_port()?,
        calls: 1,
        rate: None,
        timeout_secs: 10,
        service: PRESENTITY,
        inf: None,
    }
    .run(dir, &format!("{name}-publish"))?;
    let published = Instant::now();
    if p.ok != 1 {
        bail!("{name}: the PUBLISH failed ({p:?})");
    }
    let done = watchers.wait(Duration::from_secs(130));
    let spread = published.elapsed();
    drop(watchers);
    let s = read_stats(&stat);
    if !done {
        println!("  {name:<10} fan-out: watchers still waiting after {spread:?} ({s:?})");
    }
    Ok(FanOut {
        notified: s.ok,
        failed: s.failed,
        spread,
    })
}

/// A self-signed certificate for Kamailio's TLS listener (unused by the load, required by the config).
fn kamailio_tls(dir: &Path) -> Result<PathBuf> {
    let (key, cert) = (dir.join("kam-key.pem"), dir.join("kam-cert.pem"));
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert)
    .args(["-days", "2", "-subj", "/CN=127.0.0.1"]);
    run_tool(c, "openssl req")?;
    let tls = dir.join("kam-tls.cfg");
    fs::write(
        &tls,
        format!(
            "[server:default]\nmethod = TLSv1.2+\ncertificate = {}\nprivate_key = {}\nverify_certificate = no\n\
             require_certificate = no\n[client:default]\nverify_certificate = no\n",
            cert.display(),
            key.display()
        ),
    )?;
    Ok(tls)
}

/// Kamailio with the presence configuration, no digest (like the lab's trusted source), every subscription active.
fn start_kamailio(dir: &Path) -> Result<(Guard, u16)> {
    let kdir = dir.join("kamailio");
    fs::create_dir_all(&kdir)?;
    let db = kdir.join("kamailio.sqlite");
    let mut sql = String::new();
    for schema in ["standard", "auth_db", "usrloc", "presence", "rls"] {
        sql.push_str(&fs::read_to_string(format!(
            "/usr/share/kamailio/db_sqlite/{schema}-create.sql"
        ))?);
    }
    let script = kdir.join("kamailio.sql");
    fs::write(&script, sql)?;
    let mut c = Command::new("sqlite3");
    c.arg(&db).arg(format!(".read {}", script.display()));
    run_tool(c, "sqlite3")?;
    let dbtext = kdir.join("dbtext");
    fs::create_dir_all(&dbtext)?;
    for table in ["rls_presentity", "rls_watchers", "version"] {
        fs::copy(
            Path::new("/usr/share/kamailio/dbtext/kamailio").join(table),
            dbtext.join(table),
        )?;
    }
    let tls = kamailio_tls(&kdir)?;
    let (udp, tcp, tls_port) = (free_port()?, free_port()?, free_port()?);
    let cfg = fs::read_to_string(peers().join("kamailio-presence.cfg.in"))?
        .replace("@UDP@", &udp.to_string())
        .replace("@TCP@", &tcp.to_string())
        .replace("@TLS@", &tls_port.to_string())
        .replace("@DBTEXT@", &dbtext.display().to_string())
        .replace("@DB@", &db.display().to_string())
        .replace("@TLSCFG@", &tls.display().to_string())
        .replace("@CHILDREN@", "1");
    let cfg_path = kdir.join("kamailio.cfg");
    fs::write(&cfg_path, cfg)?;
    let run = kdir.join("run");
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
        "WITH_FORCE_ACTIVE",
        "-f",
    ])
    .arg(&cfg_path)
    .arg("-Y")
    .arg(&run);
    let g = Guard::spawn("kamailio", cmd, dir)?;
    sleep(Duration::from_secs(2));
    Ok((g, udp))
}

/// The lab server trusting 127.0.0.1 (no digest, like the Kamailio run), with room for 1,000 watchers of one
/// presentity, whose pres-rules allow everybody.
fn start_lab(bin: &Path, dir: &Path) -> Result<(Guard, u16)> {
    let port = free_port()?;
    let xcap = free_port()?;
    let data = dir.join("lab-data");
    fs::create_dir_all(&data)?;
    let cfg = format!(
        "domain = \"127.0.0.1\"\ndata_dir = {data:?}\ndemo_users = false\n\n[listen]\nudp = [\"127.0.0.1:{port}\"]\n\
         tcp = [\"127.0.0.1:{tcp}\"]\ntls = [\"127.0.0.1:{tls}\"]\n\n[auth]\nalgorithms = [\"MD5\"]\n\
         trusted = [\"127.0.0.1/32\"]\n\n[xcap]\nport = {xcap}\n\n[presence]\nmax_subscriptions_per_user = 5000\n\n\
         [msrp]\nport = 0\ntls_port = 0\n",
        data = data.display().to_string(),
        tcp = free_port()?,
        tls = free_port()?,
    );
    let cfg_path = dir.join("lab.toml");
    fs::write(&cfg_path, cfg)?;
    let mut add = Command::new(bin);
    add.arg("--config").arg(&cfg_path).args([
        "user",
        "add",
        PRESENTITY,
        "--password",
        "secret",
        "--domain",
        "127.0.0.1",
    ]);
    run_tool(add, "tandem-lab user add")?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&cfg_path).arg("serve");
    let mut g = Guard::spawn("tandem-lab", cmd, dir)?;
    let out = dir.join("tandem-lab.out");
    let start = Instant::now();
    while !fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("ready "))
    {
        if !g.running() || start.elapsed() > Duration::from_secs(30) {
            bail!("tandem-lab did not print `ready` (see {})", out.display());
        }
        sleep(Duration::from_millis(50));
    }
    let rules = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" \
         xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\"><cr:rule id=\"all\"><cr:conditions><cr:identity><cr:many/>\
         </cr:identity></cr:conditions><cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>\
         <cr:transformations><pr:provide-services><pr:all-services/></pr:provide-services><pr:provide-persons>\
         <pr:all-persons/></pr:provide-persons><pr:provide-devices><pr:all-devices/></pr:provide-devices>\
         <pr:provide-all-attributes/></cr:transformations></cr:rule></cr:ruleset>\n";
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "--max-time", "20", "-X", "PUT", "--digest"])
        .args(["-u", &format!("{PRESENTITY}:secret")])
        .args(["-H", "Content-Type: application/auth-policy+xml"])
        .arg("--cacert")
        .arg(data.join("ca.pem"))
        .args(["--data-binary", rules])
        .arg(format!(
            "https://127.0.0.1:{xcap}/xcap-root/pres-rules/users/sip:{PRESENTITY}@127.0.0.1/index"
        ));
    run_tool(curl, "curl PUT pres-rules")?;
    Ok((g, port))
}

fn ratio(lab: f64, reference: f64) -> String {
    if reference > 0.0 {
        format!("{:.2}", lab / reference)
    } else {
        "n/a".into()
    }
}

/// `cargo xtask bench simple [--no-msrp]`.
pub fn simple(args: &[String]) -> Result<()> {
    let mut with_msrp = true;
    for a in args {
        match a.as_str() {
            "--no-msrp" => with_msrp = false,
            other => bail!("unknown option {other} (usage: cargo xtask bench simple [--no-msrp])"),
        }
    }
    crate::packages::ensure(crate::packages::TEST_PACKAGES)?;
    let bin = crate::build_lab()?;
    let dir = std::env::temp_dir().join(format!("tandem-bench-simple-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    println!("xtask bench simple: logs in {}", dir.display());
    let result = bench_all(&bin, &dir, with_msrp);
    match result {
        Ok(true) => {
            let _ = fs::remove_dir_all(&dir);
        }
        Ok(false) => println!(
            "xtask bench simple: a run was incomplete; logs kept in {}",
            dir.display()
        ),
        Err(_) => {}
    }
    result.map(|_| ())
}

/// Runs everything; `Ok(false)` when a fan-out run did not notify every watcher.
fn bench_all(bin: &Path, dir: &Path, with_msrp: bool) -> Result<bool> {
    let (kam, kport) = start_kamailio(dir)?;
    let k_msg = message_rate("kamailio", kport, dir)?;
    let k_fan = fan_out("kamailio", kport, dir)?;
    drop(kam);

    let (mut lab, lport) = start_lab(bin, dir)?;
    let l_msg = message_rate("tandem-lab", lport, dir)?;
    let l_fan = fan_out("tandem-lab", lport, dir)?;
    if !lab.running() {
        bail!("the lab server died during the run");
    }
    drop(lab);

    let msrp = with_msrp.then(|| crate::bench_msrp::msrp_throughput(2, 64, 64 * 1024));

    let per_s = |f: &FanOut| f.notified as f64 / f.spread.as_secs_f64().max(0.001);
    let complete = |f: &FanOut| f.notified == u64::from(WATCHERS);
    let describe = |f: &FanOut| {
        if complete(f) {
            format!(
                "all {WATCHERS} notified in {:.0} ms ({:.0} NOTIFY/s)",
                f.spread.as_secs_f64() * 1000.0,
                per_s(f)
            )
        } else {
            format!(
                "INCOMPLETE: {} of {WATCHERS} notified, {} failed, after {:.1} s",
                f.notified,
                f.failed,
                f.spread.as_secs_f64()
            )
        }
    };
    println!();
    println!(
        "SIMPLE (same SIPp load, same run; clean = 0 failed, 0 retransmissions, {STEP_SECS} s steps):"
    );
    println!(
        "  MESSAGE relay:   kamailio {k_msg}/s, tandem-lab {l_msg}/s, ratio lab/kamailio {}",
        ratio(f64::from(l_msg), f64::from(k_msg))
    );
    println!("  NOTIFY fan-out (1 PUBLISH, {WATCHERS} watchers):");
    println!("    kamailio   {}", describe(&k_fan));
    println!("    tandem-lab {}", describe(&l_fan));
    if complete(&k_fan) && complete(&l_fan) {
        println!(
            "    ratio lab/kamailio (NOTIFY/s) {}",
            ratio(per_s(&l_fan), per_s(&k_fan))
        );
    }
    match msrp {
        None => {}
        Some(Ok(m)) => println!(
            "  MSRP relay:      {:.1} MB/s ({} pairs, {} byte chunks, {:.0} MB in {:.2} s)",
            m.mb_per_s, m.pairs, m.chunk, m.total_mb, m.secs
        ),
        Some(Err(e)) => println!("  MSRP relay:      not measured: {e:#}"),
    }
    Ok(complete(&k_fan) && complete(&l_fan))
}
