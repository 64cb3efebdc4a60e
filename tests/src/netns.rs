//! Two network namespaces joined by a veth pair, with optional `tc netem` loss and delay, removed on drop.
//!
//! Needs root (CAP_NET_ADMIN) and iproute2. The namespaces are named `tandem-<pid>-<n>-{a,b}`; namespaces left by
//! a test process that no longer runs (killed before its guard ran) are removed when the next pair is created.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{HarnessError, IoContext, Result};
use crate::kamailio::run_tool;

/// Distinguishes the pairs of one test process.
static NEXT: AtomicU32 = AtomicU32::new(1);

/// The prefix of every namespace this harness creates.
const PREFIX: &str = "tandem-";

/// Whether this process runs as root (network namespaces and netem need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// Two namespaces `a` and `b`, `10.77.0.1/24` on `a`'s veth and `10.77.0.2/24` on `b`'s.
pub struct NetnsPair {
    a: String,
    b: String,
    veth_a: String,
    veth_b: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let mut c = Command::new("ip");
    c.args(args);
    run_tool(c, &format!("ip {}", args.join(" ")))
}

fn pid_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes `tandem-<pid>-…` namespaces whose process is gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pid_alive(pid) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl NetnsPair {
    /// Creates the two namespaces and the veth pair, and brings everything up.
    pub fn create() -> Result<Self> {
        if !is_root() {
            return Err(HarnessError::Tool {
                what: "ip netns".into(),
                detail: "network namespaces need root".into(),
            });
        }
        sweep_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let a = format!("{PREFIX}{pid}-{n}-a");
        let b = format!("{PREFIX}{pid}-{n}-b");
        // Interface names have at most 15 bytes; they only need to be unique while in the root namespace.
        let veth_a = format!("tv{:x}x{n}a", pid & 0xf_ffff);
        let veth_b = format!("tv{:x}x{n}b", pid & 0xf_ffff);
        ip(&["netns", "add", &a])?;
        // From here on, drop removes whatever was created.
        let pair = NetnsPair {
            a,
            b,
            veth_a,
            veth_b,
        };
        ip(&["netns", "add", &pair.b])?;
        ip(&[
            "link",
            "add",
            &pair.veth_a,
            "type",
            "veth",
            "peer",
            "name",
            &pair.veth_b,
        ])?;
        ip(&["link", "set", &pair.veth_a, "netns", &pair.a])?;
        ip(&["link", "set", &pair.veth_b, "netns", &pair.b])?;
        for (ns, dev, addr) in [
            (&pair.a, &pair.veth_a, "10.77.0.1/24"),
            (&pair.b, &pair.veth_b, "10.77.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// Namespace `a`'s name.
    pub fn a(&self) -> &str {
        &self.a
    }

    /// Namespace `b`'s name.
    pub fn b(&self) -> &str {
        &self.b
    }

    /// The address of `a`'s veth.
    pub fn addr_a(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))
    }

    /// The address of `b`'s veth.
    pub fn addr_b(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2))
    }

    /// Adds a netem qdisc on both veths (each direction), e.g. `["loss", "5%", "delay", "40ms", "20ms"]`.
    pub fn netem(&self, params: &[&str]) -> Result<()> {
        for (ns, dev) in [(&self.a, &self.veth_a), (&self.b, &self.veth_b)] {
            let mut c = Command::new("ip");
            c.args([
                "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem",
            ])
            .args(params);
            run_tool(
                c,
                &format!("tc qdisc add dev {dev} root netem {}", params.join(" ")),
            )?;
        }
        Ok(())
    }

    /// Runs a command inside namespace `ns` to completion and returns its stdout.
    pub fn exec(ns: &str, args: &[&str]) -> Result<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .ctx(|| format!("running {} in {ns}", args.join(" ")))?;
        if !out.status.success() {
            return Err(HarnessError::Tool {
                what: format!("{} in {ns}", args.join(" ")),
                detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it its peer.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
        let _ = ip(&["link", "del", &self.veth_a]);
    }
}
