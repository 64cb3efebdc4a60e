//! Running SIPp scenarios (bounded: `-m`, `-timeout`) and reading their final statistics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::error::{HarnessError, IoContext, Result};
use crate::paths::{peer_file, write};
use crate::ports::{free_port, free_port_block};
use crate::process::ChildGuard;
use crate::sip::Transport;

/// The final counters of a SIPp run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SippResult {
    /// Calls that completed the scenario.
    pub successful: u64,
    /// Calls that failed (unexpected message, timeout, …).
    pub failed: u64,
    /// Retransmissions SIPp had to send.
    pub retransmissions: u64,
}

/// A SIPp invocation being built.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: PathBuf,
    transport: Transport,
    calls: u32,
    rate: Option<f64>,
    timeout: Duration,
    service: Option<String>,
    inf: Option<PathBuf>,
    port: u16,
    extra: Vec<String>,
    name: String,
}

/// Writes a SIPp injection file (`SEQUENTIAL`) with `count` users `<prefix>0001…` and returns its path.
pub fn write_users_csv(dir: &Path, prefix: &str, count: usize) -> Result<PathBuf> {
    let mut text = String::from("SEQUENTIAL\n");
    for i in 1..=count {
        text.push_str(&format!("{prefix}{i:04};\n"));
    }
    let path = dir.join(format!("users-{prefix}.csv"));
    write(&path, text)?;
    Ok(path)
}

/// Reads the last row of a `-trace_stat` CSV and returns its cumulative counters.
pub fn parse_stat_csv(text: &str) -> Option<SippResult> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let column = |name: &str| -> Option<u64> {
        let i = header.iter().position(|h| h.trim() == name)?;
        last.get(i)?.trim().parse().ok()
    };
    Some(SippResult {
        successful: column("SuccessfulCall(C)")?,
        failed: column("FailedCall(C)")?,
        retransmissions: column("Retransmissions(C)")?,
    })
}

impl Sipp {
    /// A SIPp run of `scenario` (a file name in `tests/peers/`, or a path), over UDP, 1 call, 30 s timeout,
    /// on a free local port.
    pub fn new(scenario: &str) -> Self {
        let path = Path::new(scenario);
        let scenario = if path.is_absolute() {
            path.to_path_buf()
        } else {
            peer_file(scenario)
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sipp".into());
        Sipp {
            scenario,
            transport: Transport::Udp,
            calls: 1,
            rate: None,
            timeout: Duration::from_secs(30),
            service: None,
            inf: None,
            port: free_port(),
            extra: Vec::new(),
            name,
        }
    }

    /// Transport (`-t u1` or `-t t1`; SIPp 3.6.1 here has no TLS).
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// Number of calls (`-m`).
    pub fn calls(mut self, m: u32) -> Self {
        self.calls = m;
        self
    }

    /// Call rate per second (`-r`).
    pub fn rate(mut self, r: f64) -> Self {
        self.rate = Some(r);
        self
    }

    /// Global timeout (`-timeout`, with `-timeout_error`).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The `[service]` user (`-s`).
    pub fn service(mut self, s: &str) -> Self {
        self.service = Some(s.into());
        self
    }

    /// An injection file (`-inf`).
    pub fn inf(mut self, path: &Path) -> Self {
        self.inf = Some(path.to_path_buf());
        self
    }

    /// Extra raw arguments.
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.into());
        self
    }

    /// The local SIP port SIPp will use.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn command(&self, remote: Option<SocketAddr>, dir: &Path) -> (Command, PathBuf) {
        let stat = dir.join(format!("{}-{}-stat.csv", self.name, self.port));
        let mut c = Command::new("sipp");
        c.current_dir(dir)
            .arg("-sf")
            .arg(&self.scenario)
            .args(["-i", "127.0.0.1", "-p", &self.port.to_string()])
            // Media port (+2 for video) away from everyone else's.
            .args(["-mp", &free_port_block(4).to_string()])
            .args([
                "-t",
                if self.transport == Transport::Udp {
                    "u1"
                } else {
                    "t1"
                },
            ])
            .args(["-m", &self.calls.to_string()])
            .args(["-timeout", &format!("{}s", self.timeout.as_secs().max(1))])
            .arg("-timeout_error")
            .arg("-nostdin")
            .args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(&stat)
            .args(["-trace_err", "-error_file"])
            .arg(dir.join(format!("{}-{}-errors.log", self.name, self.port)));
        if let Some(r) = self.rate {
            c.args(["-r", &r.to_string()]);
        }
        if let Some(s) = &self.service {
            c.args(["-s", s]);
        }
        if let Some(inf) = &self.inf {
            c.arg("-inf").arg(inf);
        }
        c.args(&self.extra);
        if let Some(remote) = remote {
            c.arg(remote.to_string());
        }
        (c, stat)
    }

    /// Runs the scenario against `remote` to completion and returns its final counters.
    pub fn run(&self, remote: SocketAddr, dir: &Path) -> Result<SippResult> {
        let (cmd, stat) = self.command(Some(remote), dir);
        let mut child = ChildGuard::spawn(&format!("sipp-{}", self.name), cmd, dir)?;
        let status = child.wait_exit(self.timeout + Duration::from_secs(15))?;
        finish(&child, status, &stat)
    }

    /// Starts the scenario as a server (a UAS waiting on its port) in the background.
    pub fn spawn_uas(&self, dir: &Path) -> Result<SippUas> {
        let (cmd, stat) = self.command(None, dir);
        let child = ChildGuard::spawn(&format!("sipp-{}", self.name), cmd, dir)?;
        let uas = SippUas {
            child,
            stat,
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
            transport: self.transport,
            timeout: self.timeout,
        };
        uas.wait_listening()?;
        Ok(uas)
    }
}

fn finish(child: &ChildGuard, status: ExitStatus, stat: &Path) -> Result<SippResult> {
    let text = std::fs::read_to_string(stat).ctx(|| format!("reading {}", stat.display()))?;
    parse_stat_csv(&text).ok_or_else(|| HarnessError::Protocol {
        what: child.name().to_string(),
        detail: format!(
            "no final statistics in {} (exit {status})\n{}",
            stat.display(),
            child.tails()
        ),
    })
}

/// A SIPp UAS running in the background, stopped on drop.
pub struct SippUas {
    child: ChildGuard,
    stat: PathBuf,
    addr: SocketAddr,
    transport: Transport,
    timeout: Duration,
}

impl SippUas {
    fn wait_listening(&self) -> Result<()> {
        // SIPp binds before it prints anything useful; poll the port until it is taken.
        let start = std::time::Instant::now();
        loop {
            let taken = match self.transport {
                Transport::Udp => std::net::UdpSocket::bind(self.addr).is_err(),
                _ => std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
                    .is_ok(),
            };
            if taken {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(HarnessError::Timeout {
                    what: format!("SIPp UAS to listen on {}", self.addr),
                    waited: Duration::from_secs(10),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The UAS's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A contact URI for it (`sip:<user>@127.0.0.1:PORT`, with `;transport=tcp` over TCP).
    pub fn contact(&self, user: &str) -> String {
        match self.transport {
            Transport::Udp => format!("sip:{user}@{}", self.addr),
            t => format!("sip:{user}@{};transport={t}", self.addr),
        }
    }

    /// Waits for SIPp to finish its `-m` calls and returns its counters.
    pub fn finish(mut self) -> Result<SippResult> {
        let status = self
            .child
            .wait_exit(self.timeout + Duration::from_secs(15))?;
        finish(&self.child, status, &self.stat)
    }

    /// Its process guard.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_csv() {
        let csv = "StartTime;LastResetTime;CurrentTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);Retransmissions(P);Retransmissions(C);\n\
                   a;b;c;1;1;0;0;0;0;\n\
                   a;b;c;4;5;0;2;1;3;\n";
        assert_eq!(
            parse_stat_csv(csv),
            Some(SippResult {
                successful: 5,
                failed: 2,
                retransmissions: 3
            })
        );
        assert_eq!(parse_stat_csv("only;a;header\n"), None);
    }
}
