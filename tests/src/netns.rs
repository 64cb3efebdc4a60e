//! Two network namespaces on one link, with loss and delay: `tc netem` on the namespaces' interfaces when the
//! kernel has it, else the userspace [`ImpairBridge`] that links them anyway. Removed on drop.
//!
//! Topology: `a` (10.77.0.1/24 on its veth) — veth peer in the root namespace — [`ImpairBridge`] (AF_PACKET) —
//! veth peer in the root namespace — `b` (10.77.0.2/24). The root-namespace ends have no address.
//!
//! Needs root (CAP_NET_ADMIN) and iproute2. The namespaces are named `tandem-<pid>-<n>-{a,b}`; namespaces left by
//! a test process that no longer runs (killed before its guard ran) are removed when the next pair is created.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{HarnessError, IoContext, Result};
use crate::impair::{ImpairBridge, Impairment};
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

/// How the impairment is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImpairMode {
    /// `tc qdisc … netem` on both namespaces' interfaces (every packet).
    Netem,
    /// The userspace bridge (RTP/RTCP packets), because the kernel has no netem.
    Bridge,
}

/// Two namespaces `a` and `b`, `10.77.0.1/24` on `a`'s veth and `10.77.0.2/24` on `b`'s.
pub struct NetnsPair {
    a: String,
    b: String,
    veth_a: String,
    veth_b: String,
    root_a: String,
    root_b: String,
    bridge: Option<ImpairBridge>,
}

fn ip(args: &[&str]) -> Result<()> {
    let mut c = Command::new("ip");
    c.args(args);
    run_tool(c, &format!("ip {}", args.join(" ")))
}

fn pid_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes `tandem-<pid>-…` namespaces (this harness's and [`crate::nat`]'s) whose process is gone.
pub fn sweep_stale() {
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
        let tag = format!("tv{:x}x{n}", pid & 0xf_ffff);
        ip(&["netns", "add", &a])?;
        // From here on, drop removes whatever was created.
        let mut pair = NetnsPair {
            a,
            b,
            veth_a: format!("{tag}a"),
            veth_b: format!("{tag}b"),
            root_a: format!("{tag}ra"),
            root_b: format!("{tag}rb"),
            bridge: None,
        };
        ip(&["netns", "add", &pair.b])?;
        for (veth, root) in [(&pair.veth_a, &pair.root_a), (&pair.veth_b, &pair.root_b)] {
            ip(&["link", "add", veth, "type", "veth", "peer", "name", root])?;
            // No IPv6 chatter (router solicitations, DAD) from the bridge's own ends.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{root}/disable_ipv6"), "1");
            ip(&["link", "set", root, "up"])?;
        }
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
        pair.bridge = Some(ImpairBridge::start(
            &pair.root_a,
            &pair.root_b,
            u64::from(pid) << 8 | u64::from(n),
        )?);
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

    /// Impairs both directions: `tc qdisc add dev … root netem loss L% delay D J distribution normal` on both
    /// namespaces' interfaces, or, when the kernel has no netem, the same in the bridge (RTP/RTCP only).
    pub fn impair(&self, imp: Impairment) -> Result<ImpairMode> {
        let loss = format!("{}%", imp.loss_percent);
        let delay = format!("{}ms", imp.delay.as_millis());
        let jitter = format!("{}ms", imp.jitter.as_millis());
        let params = [
            "loss",
            loss.as_str(),
            "delay",
            delay.as_str(),
            jitter.as_str(),
            "distribution",
            "normal",
        ];
        let mut netem_ok = true;
        for (ns, dev) in [(&self.a, &self.veth_a), (&self.b, &self.veth_b)] {
            let out = Command::new("ip")
                .args([
                    "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem",
                ])
                .args(params)
                .output()
                .ctx(|| "running tc".into())?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                if err.contains("unknown") || err.contains("not found") {
                    netem_ok = false;
                    break;
                }
                return Err(HarnessError::Tool {
                    what: format!("tc qdisc add dev {dev} root netem {}", params.join(" ")),
                    detail: err,
                });
            }
        }
        if netem_ok {
            return Ok(ImpairMode::Netem);
        }
        match &self.bridge {
            Some(bridge) => {
                bridge.set(imp);
                Ok(ImpairMode::Bridge)
            }
            None => Err(HarnessError::Tool {
                what: "impairment".into(),
                detail: "no netem in this kernel and no bridge".into(),
            }),
        }
    }

    /// The bridge's counters (a to b, b to a).
    pub fn bridge_stats(&self) -> Option<[crate::impair::BridgeStats; 2]> {
        self.bridge.as_ref().map(ImpairBridge::stats)
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
        self.bridge = None;
        // Deleting a namespace deletes the veth end inside it, and with it its peer.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
        // Ends that never moved (a failure half-way) are still in the root namespace.
        let _ = ip(&["link", "del", &self.root_a]);
        let _ = ip(&["link", "del", &self.root_b]);
    }
}
