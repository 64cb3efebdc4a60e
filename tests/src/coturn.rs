//! coturn launcher: `turnserver` on free ports with long-term users, `turnutils_peer` echo peers and
//! `turnutils_uclient` runs (against coturn or the lab's TURN server) with their results parsed.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::ports::free_port;
use crate::process::ChildGuard;

/// How long `turnserver` may take to answer its first Binding request.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How to run coturn.
#[derive(Debug, Clone)]
pub struct CoturnOptions {
    /// Long-term users `(name, password)`.
    pub users: Vec<(String, String)>,
    /// The realm.
    pub realm: String,
    /// Relay to 127.0.0.1 peers (every test peer is there).
    pub allow_loopback_peers: bool,
    /// Relay ports `(min, max)`.
    pub relay_ports: (u16, u16),
    /// A TLS listener with this `(certificate chain, private key)` PEM pair (see
    /// [`test_tls_cert`]); none (`--no-tls`) by default.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for CoturnOptions {
    fn default() -> Self {
        CoturnOptions {
            users: vec![("alice".into(), "secret".into())],
            realm: "tandem.lab".into(),
            allow_loopback_peers: true,
            relay_ports: (40000, 44999),
            tls: None,
        }
    }
}

/// A running `turnserver` (UDP and TCP on one port, TLS on another when asked), stopped on drop.
pub struct Coturn {
    child: ChildGuard,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
}

impl Coturn {
    /// Starts `turnserver` on a free 127.0.0.1 port and waits until it answers STUN.
    pub fn start(opts: &CoturnOptions, dir: &Path) -> Result<Coturn> {
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut cmd = Command::new("turnserver");
        cmd.args([
            "-n",
            "--listening-ip",
            "127.0.0.1",
            "--relay-ip",
            "127.0.0.1",
        ])
        .arg("--listening-port")
        .arg(port.to_string())
        .arg("--min-port")
        .arg(opts.relay_ports.0.to_string())
        .arg("--max-port")
        .arg(opts.relay_ports.1.to_string())
        .args(["--lt-cred-mech", "--realm", &opts.realm])
        .args(["--no-dtls", "--no-cli", "--simple-log"])
        .args(["--log-file", "stdout"])
        .arg("--db")
        .arg(dir.join("coturn.sqlite"))
        .arg("--pidfile")
        .arg(dir.join("coturn.pid"));
        if opts.allow_loopback_peers {
            cmd.arg("--allow-loopback-peers");
        }
        let tls_addr = match &opts.tls {
            Some((cert, key)) => {
                let tls_port = free_port();
                cmd.arg("--tls-listening-port")
                    .arg(tls_port.to_string())
                    .arg("--cert")
                    .arg(cert)
                    .arg("--pkey")
                    .arg(key);
                Some(SocketAddr::from((Ipv4Addr::LOCALHOST, tls_port)))
            }
            None => {
                cmd.arg("--no-tls");
                None
            }
        };
        for (user, password) in &opts.users {
            cmd.arg("--user").arg(format!("{user}:{password}"));
        }
        let mut child = ChildGuard::spawn("turnserver", cmd, dir)?;
        wait_for_stun(addr, &mut child)?;
        Ok(Coturn {
            child,
            addr,
            tls_addr,
        })
    }

    /// The TLS listening address, when started with [`CoturnOptions::tls`].
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The UDP/TCP listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// coturn's log so far.
    pub fn log(&self) -> String {
        self.child.stdout()
    }
}

/// Sends a bare Binding request (built by hand: the harness depends on no Tandem crate) until a
/// Binding success comes back.
pub fn wait_for_stun(addr: SocketAddr, child: &mut ChildGuard) -> Result<()> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| HarnessError::Io {
        what: "binding a STUN probe socket".into(),
        source: e,
    })?;
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(b"tandem-probe");
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    while start.elapsed() < READY_TIMEOUT {
        if let Some(status) = child.try_status() {
            return Err(HarnessError::Exited {
                what: child.name().to_owned(),
                status,
                waiting_for: "answering STUN".into(),
            });
        }
        let _ = sock.send_to(&request, addr);
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && n >= 20
            && buf[0] == 0x01
            && buf[1] == 0x01
            && buf[8..20] == request[8..20]
        {
            return Ok(());
        }
    }
    Err(HarnessError::Timeout {
        what: format!("{} to answer STUN on {addr}", child.name()),
        waited: READY_TIMEOUT,
    })
}

/// A `turnutils_peer` UDP echo peer on a free 127.0.0.1 port, stopped on drop.
pub struct TurnPeer {
    _child: ChildGuard,
    addr: SocketAddr,
}

impl TurnPeer {
    /// Starts the echo peer and waits until it echoes.
    pub fn start(dir: &Path) -> Result<TurnPeer> {
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut cmd = Command::new("turnutils_peer");
        cmd.args(["-L", "127.0.0.1", "-p", &port.to_string()]);
        let child = ChildGuard::spawn("turnutils_peer", cmd, dir)?;
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| HarnessError::Io {
            what: "binding an echo probe socket".into(),
            source: e,
        })?;
        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
        let start = Instant::now();
        let mut buf = [0u8; 64];
        while start.elapsed() < READY_TIMEOUT {
            let _ = sock.send_to(b"ping", addr);
            if let Ok((4, _)) = sock.recv_from(&mut buf) {
                return Ok(TurnPeer {
                    _child: child,
                    addr,
                });
            }
        }
        Err(HarnessError::Timeout {
            what: "turnutils_peer to echo".into(),
            waited: READY_TIMEOUT,
        })
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// One `turnutils_uclient` run.
#[derive(Debug, Clone)]
pub struct UclientOptions {
    /// The TURN server (UDP/TCP port).
    pub server: SocketAddr,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// TCP to the server instead of UDP.
    pub tcp: bool,
    /// The echo peer.
    pub peer: SocketAddr,
    /// Messages per client.
    pub messages: u32,
    /// Number of clients (`-m`; each has an RTP and, without `no_rtcp`, an RTCP allocation).
    pub clients: u32,
    /// Payload length in bytes.
    pub length: u32,
    /// Send indications instead of channels (`-s`).
    pub send_indications: bool,
    /// Extra CreatePermission/ChannelBind requests (`-G`).
    pub extra_requests: bool,
    /// No RTCP allocations (`-c`).
    pub no_rtcp: bool,
    /// Milliseconds between a client's packets (`-z`).
    pub interval_ms: u32,
}

impl UclientOptions {
    /// Defaults: alice/secret, UDP, 20 messages of 100 bytes from 1 client every 20 ms.
    pub fn new(server: SocketAddr, peer: SocketAddr) -> Self {
        UclientOptions {
            server,
            user: "alice".into(),
            password: "secret".into(),
            tcp: false,
            peer,
            messages: 20,
            clients: 1,
            length: 100,
            send_indications: false,
            extra_requests: false,
            no_rtcp: false,
            interval_ms: 20,
        }
    }
}

/// What a `turnutils_uclient` run reported.
#[derive(Debug, Clone)]
pub struct UclientRun {
    /// Exit status 0.
    pub success: bool,
    /// Messages sent (all clients).
    pub sent: u64,
    /// Messages received back.
    pub received: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Bytes received.
    pub received_bytes: u64,
    /// Lost packets as reported.
    pub lost: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Everything it printed.
    pub output: String,
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.rfind(key)? + key.len();
    let digits: String = text[at..]
        .trim_start_matches([' ', '~', '='])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Runs `turnutils_uclient` to completion (killed after `timeout`).
pub fn run_uclient(opts: &UclientOptions, dir: &Path, timeout: Duration) -> Result<UclientRun> {
    let mut cmd = Command::new("turnutils_uclient");
    if opts.tcp {
        cmd.arg("-t");
    }
    if opts.send_indications {
        cmd.arg("-s");
    }
    if opts.extra_requests {
        cmd.arg("-G");
    }
    if opts.no_rtcp {
        cmd.arg("-c");
    }
    cmd.arg("-p")
        .arg(opts.server.port().to_string())
        .arg("-e")
        .arg(opts.peer.ip().to_string())
        .arg("-r")
        .arg(opts.peer.port().to_string())
        .arg("-u")
        .arg(&opts.user)
        .arg("-w")
        .arg(&opts.password)
        .arg("-n")
        .arg(opts.messages.to_string())
        .arg("-m")
        .arg(opts.clients.to_string())
        .arg("-l")
        .arg(opts.length.to_string())
        .arg("-z")
        .arg(opts.interval_ms.to_string())
        .arg(opts.server.ip().to_string());
    let start = Instant::now();
    let mut child = ChildGuard::spawn("turnutils_uclient", cmd, dir)?;
    let status = child.wait_exit(timeout)?;
    let elapsed = start.elapsed();
    let output = format!("{}{}", child.stdout(), child.stderr());
    // The summary line is the one without `msz=`: "start_mclient: tot_send_msgs=40, tot_recv_msgs=40".
    let summary: String = output
        .lines()
        .filter(|l| !l.contains("msz="))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(UclientRun {
        success: status.success(),
        sent: number_after(&summary, "tot_send_msgs=").unwrap_or(0),
        received: number_after(&summary, "tot_recv_msgs=").unwrap_or(0),
        sent_bytes: number_after(&summary, "tot_send_bytes").unwrap_or(0),
        received_bytes: number_after(&summary, "tot_recv_bytes").unwrap_or(0),
        lost: number_after(&summary, "Total lost packets").unwrap_or(0),
        elapsed,
        output,
    })
}

/// Files of a throw-away TLS identity for `localhost`/`127.0.0.1`.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// The CA certificate (PEM) clients trust.
    pub ca: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

/// Makes a CA and a server certificate for `localhost` and `127.0.0.1` in `dir` with the
/// `openssl` command (P-256 keys, valid two days).
pub fn test_tls_cert(dir: &Path) -> Result<TestCert> {
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| HarnessError::Io {
                what: "running openssl".into(),
                source: e,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(HarnessError::Tool {
                what: format!("openssl {}", args.join(" ")),
                detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
            })
        }
    };
    let ext = dir.join("leaf-ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| HarnessError::Io {
        what: "writing the openssl extension file".into(),
        source: e,
    })?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend(ec);
    ca_args.extend([
        "-keyout",
        "test-ca.key",
        "-out",
        "test-ca.pem",
        "-days",
        "2",
    ]);
    ca_args.extend(["-subj", "/CN=Tandem test CA"]);
    run(&ca_args)?;
    let mut csr_args = vec!["req"];
    csr_args.extend(ec);
    csr_args.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&csr_args)?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "test-ca.pem",
        "-CAkey",
        "test-ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "leaf-ext.cnf",
    ])?;
    Ok(TestCert {
        ca: dir.join("test-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    })
}
