//! Running `tandem-cli` against a registrar: account options, one-shot runs and background runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::error::Result;
use crate::paths::bin_path;
use crate::process::ChildGuard;
use crate::sip::Transport;

/// The account options of a `tandem-cli` run (see the CLI contract in ARCHITECTURE.md / the issue).
#[derive(Debug, Clone)]
pub struct CliAccount {
    /// AoR user part.
    pub user: String,
    /// AoR domain.
    pub domain: String,
    /// Digest password.
    pub password: Option<String>,
    /// Digest username when not the user.
    pub auth_user: Option<String>,
    /// Outbound proxy / registrar (`HOST:PORT`).
    pub proxy: Option<SocketAddr>,
    /// Transport to the proxy.
    pub transport: Transport,
    /// Extra CA for TLS.
    pub ca_file: Option<PathBuf>,
    /// Registration expiry to ask for.
    pub expires: Option<u32>,
    /// Log SIP traffic to stderr (`-v`).
    pub verbose: bool,
    /// Local SIP address to bind (default `127.0.0.1:0`).
    pub listen: Option<SocketAddr>,
    /// Run inside this network namespace (`ip netns exec NAME tandem-cli …`).
    pub netns: Option<String>,
    /// Extra environment variables (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl CliAccount {
    /// An account `user@domain` with a password, sending everything to `proxy` over `transport`.
    pub fn new(
        user: &str,
        domain: &str,
        password: &str,
        proxy: SocketAddr,
        transport: Transport,
    ) -> Self {
        CliAccount {
            user: user.to_string(),
            domain: domain.to_string(),
            password: Some(password.to_string()),
            auth_user: None,
            proxy: Some(proxy),
            transport,
            ca_file: None,
            expires: None,
            verbose: true,
            listen: None,
            netns: None,
            env: Vec::new(),
        }
    }

    /// An account `user@domain` without registrar or password that binds `listen`, for direct calls
    /// (`answer --no-register` on a known address, and calls to `sip:user@IP:PORT`).
    pub fn direct(user: &str, listen: SocketAddr) -> Self {
        CliAccount {
            user: user.to_string(),
            domain: listen.ip().to_string(),
            password: None,
            auth_user: None,
            proxy: None,
            transport: Transport::Udp,
            ca_file: None,
            expires: None,
            verbose: true,
            listen: Some(listen),
            netns: None,
            env: Vec::new(),
        }
    }

    /// The URI that reaches this account directly (`sip:user@listen`; meaningful when it binds a fixed port).
    pub fn direct_uri(&self) -> String {
        let listen = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        match self.transport {
            Transport::Udp => format!("sip:{}@{listen}", self.user),
            t => format!("sip:{}@{listen};transport={t}", self.user),
        }
    }

    /// The account options as command-line arguments (always binding to 127.0.0.1 on a free port).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--user".into(),
            self.user.clone(),
            "--domain".into(),
            self.domain.clone(),
            "--transport".into(),
            self.transport.as_str().into(),
            "--listen".into(),
            self.listen
                .map_or_else(|| "127.0.0.1:0".to_string(), |l| l.to_string()),
        ];
        if let Some(p) = &self.password {
            a.extend(["--password".into(), p.clone()]);
        }
        if let Some(u) = &self.auth_user {
            a.extend(["--auth-user".into(), u.clone()]);
        }
        if let Some(proxy) = self.proxy {
            a.extend(["--proxy".into(), proxy.to_string()]);
        }
        if let Some(ca) = &self.ca_file {
            a.extend(["--ca-file".into(), ca.display().to_string()]);
        }
        if let Some(e) = self.expires {
            a.extend(["--expires".into(), e.to_string()]);
        }
        if self.verbose {
            a.push("-v".into());
        }
        a
    }

    /// A `tandem-cli` command with these account options followed by `command` (e.g. `["register", "--keep"]`).
    pub fn command(&self, command: &[&str]) -> Result<Command> {
        let bin = bin_path("tandem-cli")?;
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        c.args(self.args()).args(command);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        Ok(c)
    }

    /// Starts `tandem-cli <account> <command>` in the background (its events on stdout, see [`ChildGuard`]).
    pub fn spawn(&self, name: &str, command: &[&str], log_dir: &Path) -> Result<ChildGuard> {
        ChildGuard::spawn(name, self.command(command)?, log_dir)
    }

    /// Starts `tandem-cli <account> <command>` with a pipe to its stdin, for the control channel
    /// (`hold`, `resume`, `dtmf 12#`, `mute`, `unmute`, `transfer URI`, `quality`, `hangup`; see
    /// [`ChildGuard::send_line`]).
    pub fn spawn_interactive(
        &self,
        name: &str,
        command: &[&str],
        log_dir: &Path,
    ) -> Result<ChildGuard> {
        ChildGuard::spawn_with_stdin(name, self.command(command)?, log_dir)
    }

    /// Runs `tandem-cli <account> <command>` to completion (killed after `timeout`).
    pub fn run(
        &self,
        name: &str,
        command: &[&str],
        log_dir: &Path,
        timeout: Duration,
    ) -> Result<CliOutput> {
        let mut guard = self.spawn(name, command, log_dir)?;
        let status = guard.wait_exit(timeout)?;
        Ok(CliOutput {
            status,
            stdout: guard.stdout(),
            stderr: guard.stderr(),
        })
    }
}

/// The result of a finished `tandem-cli` run.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its event lines.
    pub stdout: String,
    /// Its diagnostics.
    pub stderr: String,
}

impl CliOutput {
    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The event lines whose first word is `event` (e.g. `registered`, `answered`).
    pub fn events(&self, event: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(event))
            .collect()
    }

    /// Whether an `event` line was printed.
    pub fn has_event(&self, event: &str) -> bool {
        !self.events(event).is_empty()
    }

    /// A readable dump for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "exit: {}\n--- stdout ---\n{}\n--- stderr (tail) ---\n{}",
            self.status,
            self.stdout,
            crate::process::tail(&self.stderr, 60)
        )
    }
}
