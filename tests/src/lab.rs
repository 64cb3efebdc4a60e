//! Launching `tandem-lab serve` on free loopback ports with a temporary data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{HarnessError, IoContext, Result};
use crate::paths::{bin_path, write};
use crate::ports::free_port;
use crate::process::{ChildGuard, Stream};
use crate::sip::Transport;

/// How long `serve` may take to print its `ready` line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to configure a lab server for a test.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The lab's SIP domain (default `127.0.0.1`, so SIPp's `[remote_ip]` AoRs are local).
    pub domain: String,
    /// Users to create before starting: (name, password).
    pub users: Vec<(String, String)>,
    /// `[registrar] third_party`: users allowed to register any AoR of the domain.
    pub third_party: Vec<String>,
    /// `[auth] trusted`: source networks whose requests are not challenged.
    pub trusted: Vec<String>,
    /// `[auth] algorithms` (empty: the server's default); SIPp 3.6.1 answers MD5 challenges only.
    pub auth_algorithms: Vec<String>,
    /// Also listen on TLS.
    pub tls: bool,
    /// Extra TOML appended to the config verbatim (must only add tables not written above).
    pub extra_toml: String,
    /// Run `serve` inside this network namespace (`ip netns exec NAME`), e.g. [`crate::nat::Topology::lab`].
    pub netns: Option<String>,
    /// Listen on these addresses (UDP/TCP/TLS each on one free port per address, the first one reported by
    /// [`LabServer::udp`] etc.); empty: 127.0.0.1.
    pub listen_ips: Vec<std::net::IpAddr>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            domain: "127.0.0.1".into(),
            users: Vec::new(),
            third_party: Vec::new(),
            trusted: Vec::new(),
            auth_algorithms: Vec::new(),
            tls: true,
            extra_toml: String::new(),
            netns: None,
            listen_ips: Vec::new(),
        }
    }
}

impl LabOptions {
    /// Adds a user with a password.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }
}

/// A running `tandem-lab serve`, stopped on drop.
pub struct LabServer {
    opts: LabOptions,
    config: PathBuf,
    data_dir: PathBuf,
    log_dir: PathBuf,
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: Option<SocketAddr>,
    xcap: Option<SocketAddr>,
    services: Vec<(String, SocketAddr)>,
    child: Option<ChildGuard>,
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl LabServer {
    /// Writes `<dir>/lab.toml` (free ports, data in `<dir>/data`, no demo users), creates the users with
    /// `tandem-lab user add`, starts `serve` and waits for its `ready` line.
    pub fn start(opts: LabOptions, dir: &Path) -> Result<Self> {
        // Fail early and clearly when the binary is not built.
        bin_path("tandem-lab")?;
        let data_dir = dir.join("lab-data");
        std::fs::create_dir_all(&data_dir).ctx(|| format!("creating {}", data_dir.display()))?;
        let ips = if opts.listen_ips.is_empty() {
            vec![std::net::IpAddr::from([127, 0, 0, 1])]
        } else {
            opts.listen_ips.clone()
        };
        let (udp_port, tcp_port) = (free_port(), free_port());
        let tls_port = opts.tls.then(free_port);
        let udp: SocketAddr = SocketAddr::new(ips[0], udp_port);
        let tcp: SocketAddr = SocketAddr::new(ips[0], tcp_port);
        let tls = tls_port.map(|p| SocketAddr::new(ips[0], p));
        let list = |port: u16| {
            let addrs: Vec<String> = ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, port).to_string())
                .collect();
            toml_list(&addrs)
        };
        let mut toml = format!(
            "domain = {domain:?}\ndata_dir = {data:?}\ndemo_users = false\n\n[listen]\nudp = {udp}\ntcp = {tcp}\n",
            domain = opts.domain,
            data = data_dir.display().to_string(),
            udp = list(udp_port),
            tcp = list(tcp_port),
        );
        match tls_port {
            Some(port) => toml.push_str(&format!("tls = {}\n", list(port))),
            // An explicit empty list: no TLS listener (rather than the default port).
            None => toml.push_str("tls = []\n"),
        }
        toml.push_str(&format!(
            "\n[registrar]\nthird_party = {}\n\n[auth]\ntrusted = {}\n",
            toml_list(&opts.third_party),
            toml_list(&opts.trusted)
        ));
        if !opts.auth_algorithms.is_empty() {
            toml.push_str(&format!(
                "algorithms = {}\n",
                toml_list(&opts.auth_algorithms)
            ));
        }
        // A free XCAP port per instance: the server's default (5443) would make parallel labs collide.
        // A test that configures `[xcap]` itself in `extra_toml` chooses its own port.
        let xcap = if opts.extra_toml.contains("[xcap]") {
            None
        } else {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            toml.push_str(&format!("\n[xcap]\nport = {}\n", addr.port()));
            Some(addr)
        };
        // The MSRP relay's default ports (2855/2856) would collide the same way; the ready line
        // reports the ports it got (`LabServer::service("msrp")`).
        if !opts.extra_toml.contains("[msrp]") {
            toml.push_str("\n[msrp]\nport = 0\ntls_port = 0\n");
        }
        // STUN/TURN on ephemeral ports (the ready line's `turn=`/`turns=`), unless the test sets `[turn]`.
        if !opts.extra_toml.contains("[turn]") {
            toml.push_str("\n[turn]\nport = 0\ntls_port = 0\n");
        }
        // The click-to-call API's default port (8088) likewise: `LabServer::service("api")`.
        if !opts.extra_toml.contains("[api]") {
            toml.push_str("\n[api]\nport = 0\n");
        }
        toml.push_str(&opts.extra_toml);
        let config = dir.join("lab.toml");
        write(&config, toml)?;
        let mut lab = LabServer {
            opts,
            config,
            data_dir,
            log_dir: dir.to_path_buf(),
            udp,
            tcp,
            tls,
            xcap,
            services: Vec::new(),
            child: None,
        };
        for (name, password) in lab.opts.users.clone() {
            lab.admin(&[
                "user",
                "add",
                &name,
                "--password",
                &password,
                "--domain",
                &lab.opts.domain.clone(),
            ])?;
        }
        lab.launch()?;
        Ok(lab)
    }

    /// Runs an admin command (`tandem-lab --config lab.toml ARGS`) to completion and returns its stdout.
    pub fn admin(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(bin_path("tandem-lab")?)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .ctx(|| format!("running tandem-lab {}", args.join(" ")))?;
        if !out.status.success() {
            return Err(HarnessError::Tool {
                what: format!("tandem-lab {}", args.join(" ")),
                detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn launch(&mut self) -> Result<()> {
        let mut cmd = match &self.opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin_path("tandem-lab")?);
                c
            }
            None => Command::new(bin_path("tandem-lab")?),
        };
        cmd.arg("--config").arg(&self.config).arg("serve");
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let mut child = ChildGuard::spawn("tandem-lab", cmd, &self.log_dir)?;
        let ready = child.wait_for_line(Stream::Stdout, "ready ", READY_TIMEOUT);
        let ready = match ready {
            Ok(line) => line,
            Err(e) => {
                eprintln!("{}", child.tails());
                return Err(e);
            }
        };
        // Trust the addresses the server reports (they must be the ones we asked for).
        self.services.clear();
        for word in ready.split_whitespace() {
            if let Some((key, value)) = word.split_once('=')
                && let Ok(addr) = value.parse::<SocketAddr>()
            {
                // With several listen addresses, the first of each transport is the main one.
                let seen = self.services.iter().any(|(k, _)| k == key);
                match key {
                    _ if seen => {}
                    "udp" => self.udp = addr,
                    "tcp" => self.tcp = addr,
                    "tls" => self.tls = Some(addr),
                    "xcap" => self.xcap = Some(addr),
                    _ => {}
                }
                self.services.push((key.to_string(), addr));
            }
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server and starts it again with the same config and data directory (same ports).
    pub fn restart(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.stop();
        }
        self.launch()
    }

    /// The listener address for `transport` (`None` for TLS when not enabled).
    pub fn addr(&self, transport: Transport) -> Option<SocketAddr> {
        match transport {
            Transport::Udp => Some(self.udp),
            Transport::Tcp => Some(self.tcp),
            Transport::Tls => self.tls,
        }
    }

    /// The XCAP (HTTPS) listener, as the ready line reports it (`None` when not known).
    pub fn xcap(&self) -> Option<SocketAddr> {
        self.xcap
    }

    /// The address the ready line gave for `key` (e.g. `msrp`, `msrps`, `turn`, `api`), if any.
    pub fn service(&self, key: &str) -> Option<SocketAddr> {
        self.services
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, a)| *a)
    }

    /// Every address the ready line gave for `key`, in order (e.g. `udp` with one listener per address family).
    pub fn services(&self, key: &str) -> Vec<SocketAddr> {
        let words = self
            .child
            .as_ref()
            .and_then(|c| {
                c.matching_lines(Stream::Stdout, "ready ")
                    .into_iter()
                    .next()
            })
            .unwrap_or_default();
        words
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter(|(k, _)| *k == key)
            .filter_map(|(_, v)| v.parse().ok())
            .collect()
    }

    /// The UDP listener.
    pub fn udp(&self) -> SocketAddr {
        self.udp
    }

    /// The TCP listener.
    pub fn tcp(&self) -> SocketAddr {
        self.tcp
    }

    /// The lab's domain.
    pub fn domain(&self) -> &str {
        &self.opts.domain
    }

    /// The data directory (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The lab CA certificate (`<data dir>/ca.pem`, as `serve` reports it), for `--ca-file`.
    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// The server's process guard (logs, signals).
    pub fn process(&mut self) -> Option<&mut ChildGuard> {
        self.child.as_mut()
    }
}
