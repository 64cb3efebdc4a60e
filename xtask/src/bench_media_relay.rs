//! The media relay section of `cargo xtask bench relay`: packets per second through the lab's
//! media relay, and per CPU-second of the lab process (per core).
//!
//! A `tandem-lab` with `[relay] mode = "always"` and loopback trusted (no digest) is started;
//! for each load step, `calls` calls are set up by hand-written SIP over UDP (a REGISTER per
//! callee, an INVITE whose SDP the proxy anchors, a 200 with SDP), then both ends of every
//! call send RTP-sized packets to the relay addresses their SDP got. A window bounds the
//! packets in flight, every step has a fixed packet count and a time limit, and the lab is
//! stopped on the way out.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::Guard;

/// `(calls, packets per call and direction, payload bytes)`.
const STEPS: &[(usize, usize, usize)] = &[(1, 50_000, 172), (20, 5_000, 172), (100, 1_000, 172)];
/// Most packets in flight (sent, not yet received back) at once.
const WINDOW: usize = 256;
/// Longest a step may take.
const STEP_LIMIT: Duration = Duration::from_secs(60);
/// How long to wait for a SIP answer.
const SIP_WAIT: Duration = Duration::from_secs(5);

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    // utime and stime (fields 14 and 15 of proc(5)); USER_HZ is 100 on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Starts a lab for the relay bench in `dir`; returns it with its SIP UDP address.
fn start_lab(bin: &Path, dir: &Path) -> Result<(Guard, SocketAddr)> {
    let data = dir.join("relay-lab-data");
    fs::create_dir_all(&data)?;
    let cfg = format!(
        "domain = \"tandem.lab\"\ndata_dir = {data:?}\ndemo_users = false\n\n\
         [listen]\nudp = [\"127.0.0.1:0\"]\ntcp = []\ntls = []\n\n\
         [auth]\ntrusted = [\"127.0.0.0/8\"]\n\n[xcap]\nenabled = false\n\n[turn]\nenabled = false\n\n\
         [msrp]\nenabled = false\n\n[mediasrv]\nenabled = false\n\n\
         [relay]\nmode = \"always\"\nmax_sessions = 10000\n",
        data = data.display().to_string(),
    );
    let cfg_path = dir.join("relay-lab.toml");
    fs::write(&cfg_path, cfg)?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&cfg_path).arg("serve");
    let mut lab = Guard::spawn("relay-lab", cmd, dir)?;
    let out = dir.join("relay-lab.out");
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(&out).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("ready ")) {
            if !line.contains(" relay=") {
                bail!("the lab runs no media relay: {line}");
            }
            let udp = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("udp="))
                .context("no udp= in the ready line")?
                .parse()?;
            return Ok((lab, udp));
        }
        if !lab.running() || start.elapsed() > Duration::from_secs(30) {
            bail!("tandem-lab did not start (see {})", out.display());
        }
        sleep(Duration::from_millis(50));
    }
}

/// A UDP socket on loopback with a read timeout.
fn socket() -> Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

/// The next SIP message on `sock` that satisfies `want`, within [`SIP_WAIT`].
fn sip_wait(sock: &UdpSocket, what: &str, want: impl Fn(&str) -> bool) -> Result<String> {
    let deadline = Instant::now() + SIP_WAIT;
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
                if want(&text) {
                    return Ok(text);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no {what} within {SIP_WAIT:?}")
}

/// A SIP message with `body` as SDP (Content-Length computed).
fn with_sdp(start_and_headers: &str, body: &str) -> String {
    format!(
        "{start_and_headers}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// The body of a SIP message.
fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// Where the SDP in `msg` says to send media (`c=` and the first `m=` port).
fn sdp_addr(msg: &str) -> Result<SocketAddr> {
    let body = body(msg);
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .context("no c=IN IP4 in the SDP")?
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no m=audio in the SDP")?;
    Ok(format!("{ip}:{port}").parse()?)
}

/// The header lines of `msg` whose name is one of `names` (case-insensitive), in order.
fn header_lines<'a>(msg: &'a str, names: &[&str]) -> Vec<&'a str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| names.iter().any(|want| n.trim().eq_ignore_ascii_case(want)))
        })
        .collect()
}

/// One call through the relay: each end's media socket and the relay address it sends to.
struct RelayCall {
    caller: UdpSocket,
    caller_to: SocketAddr,
    callee: UdpSocket,
    callee_to: SocketAddr,
}

/// Registers callee `i` and calls it from a new caller; returns the media sockets and the
/// relay addresses from the SDPs.
fn set_up_call(lab: SocketAddr, i: usize, tag: u32) -> Result<RelayCall> {
    let (callee_sip, caller_sip) = (socket()?, socket()?);
    let (callee_media, caller_media) = (socket()?, socket()?);
    let b_sip = callee_sip.local_addr()?;
    let a_sip = caller_sip.local_addr()?;
    let user = format!("relaybench{tag}x{i}");
    let register = format!(
        "REGISTER sip:tandem.lab SIP/2.0\r\nVia: SIP/2.0/UDP {b_sip};branch=z9hG4bKr{tag}x{i};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@tandem.lab>;tag=r{i}\r\nTo: <sip:{user}@tandem.lab>\r\n\
         Call-ID: reg-{tag}-{i}@bench\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{b_sip}>\r\n\
         Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    );
    callee_sip.send_to(register.as_bytes(), lab)?;
    let reply = sip_wait(&callee_sip, "REGISTER answer", |m| {
        m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 100")
    })?;
    if !reply.starts_with("SIP/2.0 200") {
        bail!(
            "REGISTER refused: {}",
            reply.lines().next().unwrap_or_default()
        );
    }
    let invite = with_sdp(
        &format!(
            "INVITE sip:{user}@tandem.lab SIP/2.0\r\nVia: SIP/2.0/UDP {a_sip};branch=z9hG4bKi{tag}x{i};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:caller{i}@tandem.lab>;tag=c{i}\r\nTo: <sip:{user}@tandem.lab>\r\n\
             Call-ID: call-{tag}-{i}@bench\r\nCSeq: 1 INVITE\r\nContact: <sip:caller{i}@{a_sip}>\r\n"
        ),
        &sdp(caller_media.local_addr()?.port()),
    );
    caller_sip.send_to(invite.as_bytes(), lab)?;
    let incoming = sip_wait(&callee_sip, "INVITE", |m| m.starts_with("INVITE "))?;
    let callee_to = sdp_addr(&incoming)?;
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for line in header_lines(
        &incoming,
        &["Via", "Record-Route", "From", "Call-ID", "CSeq"],
    ) {
        ok.push_str(line);
        ok.push_str("\r\n");
    }
    for line in header_lines(&incoming, &["To"]) {
        ok.push_str(&format!("{line};tag=b{i}\r\n"));
    }
    ok.push_str(&format!("Contact: <sip:{user}@{b_sip}>\r\n"));
    let ok = with_sdp(&ok, &sdp(callee_media.local_addr()?.port()));
    callee_sip.send_to(ok.as_bytes(), lab)?;
    let answer = sip_wait(&caller_sip, "200 to the INVITE", |m| {
        m.starts_with("SIP/2.0 200") && m.contains("INVITE")
    })?;
    let caller_to = sdp_addr(&answer)?;
    if caller_to.port() == callee_media.local_addr()?.port() {
        bail!("the relay did not anchor the call (the caller got the callee's own address)");
    }
    for s in [&caller_media, &callee_media] {
        s.set_nonblocking(true)?;
    }
    Ok(RelayCall {
        caller: caller_media,
        caller_to,
        callee: callee_media,
        callee_to,
    })
}

/// What one step measured.
struct Step {
    sent: u64,
    received: u64,
    elapsed: f64,
    lab_cpu: f64,
}

/// Sends `per_call` packets each way on every call, keeping at most [`WINDOW`] in flight.
fn load(calls: &[RelayCall], per_call: usize, payload: usize, lab_pid: u32) -> Result<Step> {
    let mut packet = vec![0u8; payload.max(12)];
    if let Some(b) = packet.first_mut() {
        *b = 0x80;
    }
    let total = (calls.len() * per_call * 2) as u64;
    let mut sent_per: HashMap<(usize, bool), usize> = HashMap::new();
    let (mut sent, mut received, mut lost) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 2048];
    let cpu0 = cpu_secs(lab_pid)?;
    let start = Instant::now();
    let mut last_progress = Instant::now();
    while received + lost < total && start.elapsed() < STEP_LIMIT {
        let mut progressed = false;
        // Send round-robin while the window allows.
        for (i, c) in calls.iter().enumerate() {
            for (forward, sock, to) in [
                (true, &c.caller, c.caller_to),
                (false, &c.callee, c.callee_to),
            ] {
                let n = sent_per.entry((i, forward)).or_insert(0);
                if *n >= per_call || sent.saturating_sub(received + lost) >= WINDOW as u64 {
                    continue;
                }
                match sock.send_to(&packet, to) {
                    Ok(_) => {
                        *n += 1;
                        sent += 1;
                        progressed = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Drain what came through.
        for c in calls {
            for sock in [&c.caller, &c.callee] {
                loop {
                    match sock.recv_from(&mut buf) {
                        Ok(_) => {
                            received += 1;
                            progressed = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        if progressed {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_millis(500) {
            // What has not come back in half a second is lost: open the window again.
            lost = sent.saturating_sub(received);
            last_progress = Instant::now();
        } else {
            std::thread::yield_now();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let lab_cpu = cpu_secs(lab_pid)? - cpu0;
    Ok(Step {
        sent,
        received,
        elapsed,
        lab_cpu,
    })
}

/// Runs the media relay steps against `lab_bin` (logs in `dir`) and prints one line per step.
pub(crate) fn run(lab_bin: &Path, dir: &Path) -> Result<()> {
    let (lab, sip) = start_lab(lab_bin, dir)?;
    println!();
    println!("media relay (tandem-lab [relay], RTP-sized packets both ways, {WINDOW} in flight):");
    println!(
        "{:<24} {:>10} {:>10} {:>7} {:>10} {:>12}",
        "load", "sent", "relayed", "loss%", "pkt/s", "pkt/cpu-s"
    );
    for (step_no, &(calls, per_call, payload)) in STEPS.iter().enumerate() {
        let tag = u32::try_from(step_no).unwrap_or(u32::MAX);
        let set_up: Result<Vec<RelayCall>> = (0..calls).map(|i| set_up_call(sip, i, tag)).collect();
        let set_up = set_up.with_context(|| format!("setting up {calls} relayed calls"))?;
        let s = load(&set_up, per_call, payload, lab.pid())?;
        let loss = if s.sent == 0 {
            100.0
        } else {
            100.0 * s.sent.saturating_sub(s.received) as f64 / s.sent as f64
        };
        println!(
            "{:<24} {:>10} {:>10} {:>7.2} {:>10.0} {:>12.0}",
            format!("{calls} calls x {per_call} x {payload} B"),
            s.sent,
            s.received,
            loss,
            s.received as f64 / s.elapsed.max(0.001),
            s.received as f64 / s.lab_cpu.max(0.01),
        );
    }
    drop(lab);
    Ok(())
}

/// `cargo xtask bench media-relay`: the media relay section on its own.
pub fn media_relay(_args: &[String]) -> Result<()> {
    let bin = crate::build_lab()?;
    let dir = std::env::temp_dir().join(format!("tandem-bench-media-relay-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    println!("xtask bench media-relay: logs in {}", dir.display());
    let result = run(&bin, &dir);
    if result.is_ok() {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}
