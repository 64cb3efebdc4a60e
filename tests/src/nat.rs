//! A NAT topology of network namespaces: a public network with the lab server, LANs behind NAT routers, an IPv6-only host.
//!
//! ```text
//!                 public segment: bridge `br0` in namespace `pub`, 203.0.113.0/24 and 2001:db8::/64
//!   ┌──────────────┬───────────────────────┬───────────────────────┬────────────────┐
//!  lab            router 1               router 2 …              v6 host
//!  203.0.113.2    wan 203.0.113.11        wan 203.0.113.12        2001:db8::100
//!  2001:db8::2    lan 192.168.1.1/24      lan 192.168.2.1/24      (no IPv4)
//!                 ├ host 192.168.1.10     ├ host 192.168.2.10
//!                 └ host 192.168.1.11 …   └ …
//! ```
//!
//! Each router masquerades its LAN behind its WAN address: [`NatKind::Cone`] is a plain `MASQUERADE`
//! (endpoint-independent mapping, the source port kept when free), [`NatKind::Symmetric`] is `MASQUERADE
//! --random-fully` (a new random port per destination). Both filter like a home router: inbound packets that match
//! no mapping are dropped (and never create a conntrack entry that would shift a later mapping). LAN hosts and
//! routers are IPv4-only (IPv6 disabled), the lab is dual-stack, the v6 host has only IPv6.
//!
//! Namespaces are named `tandem-<pid>-n<k>-<role>`; all of them are deleted on drop, and those of a test process
//! that no longer runs are deleted when the next topology is built. Needs root and iproute2 + iptables.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{HarnessError, IoContext, Result};
use crate::lab::LabOptions;
use crate::netns::is_root;
use crate::process::ChildGuard;

/// Distinguishes the topologies of one test process.
static NEXT: AtomicU32 = AtomicU32::new(1);

/// The prefix of every namespace the harness creates (shared with [`crate::netns`]).
const PREFIX: &str = "tandem-";

/// The lab's IPv4 address on the public segment.
pub const LAB_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The lab's IPv6 address on the public segment.
pub const LAB_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// The IPv6-only host's address.
pub const V6_HOST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// The most routers a topology has (their LANs are `192.168.1.0/24` … `192.168.9.0/24`).
pub const MAX_ROUTERS: usize = 9;
/// The most hosts on one LAN.
pub const MAX_HOSTS: usize = 20;

/// How a router translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Endpoint-independent mapping (`MASQUERADE`): one public port per private socket, whatever the destination.
    Cone,
    /// Address-and-port-dependent mapping (`MASQUERADE --random-fully`): a new public port per destination.
    Symmetric,
}

/// One namespace of the topology: its name and addresses.
#[derive(Debug, Clone)]
pub struct Node {
    ns: String,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
}

impl Node {
    /// The namespace's name (for `ip netns exec`).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Its IPv4 address, if it has one.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4
    }

    /// Its IPv6 address (global), if it has one.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6
    }

    /// Its main address: IPv4 when it has one, else IPv6.
    pub fn ip(&self) -> IpAddr {
        match (self.ipv4, self.ipv6) {
            (Some(v4), _) => IpAddr::V4(v4),
            (None, Some(v6)) => IpAddr::V6(v6),
            (None, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// `program args…` run inside this namespace (`ip netns exec NS program args…`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Starts `program args…` inside this namespace under a [`ChildGuard`] (own process group, logs in `log_dir`).
    pub fn spawn(
        &self,
        name: &str,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        log_dir: &Path,
    ) -> Result<ChildGuard> {
        let mut c = self.command(program);
        c.args(args);
        ChildGuard::spawn(name, c, log_dir)
    }

    /// Runs `program args…` inside this namespace to completion and returns its stdout (an error on failure).
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .ctx(|| format!("running {program} {} in {}", args.join(" "), self.ns))?;
        if !out.status.success() {
            return Err(HarnessError::Tool {
                what: format!("{program} {} in {}", args.join(" "), self.ns),
                detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it creates live in the namespace (and can be
    /// used from any thread afterwards).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_netns(&self.ns, f)
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn udp_socket(&self, addr: SocketAddr) -> Result<UdpSocket> {
        self.run(|| UdpSocket::bind(addr))?
            .ctx(|| format!("binding UDP {addr} in {}", self.ns))
    }
}

/// A NAT router: its namespace, WAN address, kind and LAN hosts.
#[derive(Debug, Clone)]
pub struct Router {
    node: Node,
    kind: NatKind,
    index: u8,
    hosts: Vec<Node>,
    /// How many times the mapping was changed (selects the next `--to-ports` range).
    changes: u32,
}

impl Router {
    /// The router's namespace (its WAN address is [`Node::ipv4`]).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The public (WAN) address its LAN is masqueraded behind.
    pub fn wan(&self) -> Ipv4Addr {
        self.node.ipv4.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// Its LAN address (the hosts' gateway), `192.168.N.1`.
    pub fn lan(&self) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, self.index, 1)
    }

    /// How it translates.
    pub fn kind(&self) -> NatKind {
        self.kind
    }

    /// Its LAN hosts, `192.168.N.10`, `192.168.N.11`, ….
    pub fn hosts(&self) -> &[Node] {
        &self.hosts
    }

    /// Host `j` (0-based) of its LAN.
    pub fn host(&self, j: usize) -> &Node {
        &self.hosts[j]
    }
}

/// What to build: see [`Topology::builder`].
#[derive(Debug, Clone, Default)]
pub struct TopologyBuilder {
    routers: Vec<(NatKind, usize, Option<Duration>)>,
    v6_host: bool,
}

impl TopologyBuilder {
    /// Adds a router of `kind` with `hosts` LAN hosts (router N gets `192.168.N.0/24`, N counting from 1).
    pub fn router(mut self, kind: NatKind, hosts: usize) -> Self {
        self.routers.push((kind, hosts, None));
        self
    }

    /// Adds a router whose conntrack UDP timeouts (`nf_conntrack_udp_timeout` and `…_stream`) are `timeout`, so
    /// an idle mapping dies after that long.
    pub fn router_with_udp_timeout(
        mut self,
        kind: NatKind,
        hosts: usize,
        timeout: Duration,
    ) -> Self {
        self.routers.push((kind, hosts, Some(timeout)));
        self
    }

    /// Adds the IPv6-only host on the public segment ([`V6_HOST`]).
    pub fn ipv6_host(mut self) -> Self {
        self.v6_host = true;
        self
    }

    /// Creates the namespaces, links, addresses, routes and NAT rules.
    pub fn build(self) -> Result<Topology> {
        Topology::build(self)
    }
}

/// A built topology; dropping it deletes every namespace (and with them every link and process's network).
#[derive(Debug)]
pub struct Topology {
    /// Every namespace created, in creation order (deleted in reverse).
    created: Vec<String>,
    public: Node,
    lab: Node,
    routers: Vec<Router>,
    v6_host: Option<Node>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .ctx(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        return Err(HarnessError::Tool {
            what: format!("ip {}", args.join(" ")),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

/// Deletes `tandem-<pid>-…` namespaces whose process is gone (shared with [`crate::netns`]).
pub use crate::netns::sweep_stale;

/// Runs `f` on a new thread that entered network namespace `ns` (`/run/netns/<ns>`), and returns its result.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).ctx(|| format!("opening {path}"))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            enter(&file).ctx(|| format!("entering network namespace {ns}"))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Moves the calling thread into the network namespace `file` refers to.
fn enter(file: &File) -> std::io::Result<()> {
    // SAFETY: setns(2) takes a file descriptor we own (open for the call's duration) and a flag; it touches no
    // memory of ours and only changes the calling thread's network namespace.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Deletes every conntrack entry of the calling thread's network namespace (what `conntrack -F` does, over
/// ctnetlink: an `IPCTNL_MSG_CT_DELETE` without a tuple), and waits for the kernel's acknowledgement.
fn flush_conntrack() -> std::io::Result<()> {
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const IPCTNL_MSG_CT_DELETE: u16 = 2;
    const NLMSG_ERROR: u16 = 2;
    const HEADER: usize = 16;
    // SAFETY: socket(2) with constant arguments; the descriptor is owned by an OwnedFd right away.
    #[allow(unsafe_code)]
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a descriptor socket(2) just returned and nothing else owns.
    #[allow(unsafe_code)]
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // nlmsghdr (len, type, flags, seq, pid) + nfgenmsg (family, version, res_id big-endian).
    let mut msg = Vec::with_capacity(20);
    msg.extend_from_slice(&20u32.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    let flags = u16::try_from(libc::NLM_F_REQUEST | libc::NLM_F_ACK).unwrap_or(5);
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.push(0); // AF_UNSPEC: every family
    msg.push(0); // NFNETLINK_V0
    msg.extend_from_slice(&0u16.to_be_bytes());
    // SAFETY: a zeroed sockaddr_nl is a valid value (pid 0 = the kernel, no groups); only the family is set.
    #[allow(unsafe_code)]
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: msg and kernel outlive the call; the lengths passed are theirs.
    #[allow(unsafe_code)]
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            std::ptr::from_ref(&kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: buf outlives the call and its length is passed.
        #[allow(unsafe_code)]
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let reply = buf.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[]);
        let (Some(ty), Some(code)) = (reply.get(4..6), reply.get(HEADER..HEADER + 4)) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "short ctnetlink reply",
            ));
        };
        if u16::from_ne_bytes([ty[0], ty[1]]) != NLMSG_ERROR {
            continue;
        }
        let errno = -i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
        return if errno == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(errno))
        };
    }
}

impl Topology {
    /// What to build: add routers and the IPv6 host, then [`TopologyBuilder::build`].
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    fn build(spec: TopologyBuilder) -> Result<Topology> {
        if !is_root() {
            return Err(HarnessError::Tool {
                what: "ip netns".into(),
                detail: "network namespaces need root".into(),
            });
        }
        if spec.routers.len() > MAX_ROUTERS
            || spec.routers.iter().any(|(_, hosts, _)| *hosts > MAX_HOSTS)
        {
            return Err(HarnessError::Tool {
                what: "NAT topology".into(),
                detail: format!("at most {MAX_ROUTERS} routers of {MAX_HOSTS} hosts each"),
            });
        }
        sweep_stale();
        let base = format!(
            "{PREFIX}{}-n{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let node = |role: &str, ipv4, ipv6| Node {
            ns: format!("{base}-{role}"),
            ipv4,
            ipv6,
        };
        let mut topo = Topology {
            created: Vec::new(),
            public: node("pub", None, None),
            lab: node("lab", Some(LAB_V4), Some(LAB_V6)),
            routers: Vec::new(),
            v6_host: spec.v6_host.then(|| node("v6", None, Some(V6_HOST))),
        };
        // From here on, drop deletes whatever was created.
        topo.add_ns(&topo.public.ns.clone())?;
        let public = topo.public.ns.clone();
        ip(&["-n", &public, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &public, "link", "set", "br0", "up"])?;
        topo.sysctl(&public, "net.ipv6.conf.all.disable_ipv6", "1")?;
        // The lab: dual stack on the public segment.
        let lab = topo.lab.clone();
        topo.add_ns(&lab.ns)?;
        topo.attach_public(&lab, "lab")?;
        // The routers and their LANs.
        for (i, (kind, hosts, timeout)) in spec.routers.iter().enumerate() {
            let index = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let router = Router {
                node: node(
                    &format!("r{index}"),
                    Some(Ipv4Addr::new(203, 0, 113, 10 + index)),
                    None,
                ),
                kind: *kind,
                index,
                hosts: (0..*hosts)
                    .map(|j| {
                        let j = u8::try_from(j).unwrap_or(u8::MAX);
                        node(
                            &format!("r{index}h{}", j + 1),
                            Some(Ipv4Addr::new(192, 168, index, 10 + j)),
                            None,
                        )
                    })
                    .collect(),
                changes: 0,
            };
            topo.add_router(&router, *timeout)?;
            topo.routers.push(router);
        }
        if let Some(v6) = topo.v6_host.clone() {
            topo.add_ns(&v6.ns)?;
            topo.attach_public(&v6, "v6")?;
        }
        Ok(topo)
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        in_netns(ns, || std::fs::write(&path, value))?.ctx(|| format!("{key}={value} in {ns}"))
    }

    /// Links `node` to the public bridge (`eth0` in the node, `port` on the bridge) and gives it its addresses.
    fn attach_public(&self, node: &Node, port: &str) -> Result<()> {
        let public = &self.public.ns;
        ip(&[
            "-n", public, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
            &node.ns,
        ])?;
        ip(&["-n", public, "link", "set", port, "master", "br0", "up"])?;
        if node.ipv6.is_none() {
            self.sysctl(&node.ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
            self.sysctl(&node.ns, "net.ipv6.conf.default.disable_ipv6", "1")?;
        }
        if let Some(v4) = node.ipv4 {
            ip(&[
                "-n",
                &node.ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                "eth0",
            ])?;
        }
        if let Some(v6) = node.ipv6 {
            // No duplicate address detection: the address is usable at once.
            ip(&[
                "-n",
                &node.ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                "eth0",
                "nodad",
            ])?;
        }
        ip(&["-n", &node.ns, "link", "set", "eth0", "up"])
    }

    fn add_router(&mut self, router: &Router, timeout: Option<Duration>) -> Result<()> {
        let ns = router.node.ns.clone();
        self.add_ns(&ns)?;
        self.attach_public(&router.node, &format!("r{}", router.index))?;
        ip(&["-n", &ns, "link", "add", "lan", "type", "bridge"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", router.lan()),
            "dev",
            "lan",
        ])?;
        ip(&["-n", &ns, "link", "set", "lan", "up"])?;
        self.sysctl(&ns, "net.ipv4.ip_forward", "1")?;
        let iptables = |args: &[&str]| router.node.exec("iptables", args).map(drop);
        // A home router's filter: nothing unsolicited from the WAN (such a packet would otherwise create a
        // conntrack entry that shifts the next outbound mapping of that port).
        iptables(&[
            "-A",
            "INPUT",
            "-i",
            "eth0",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW,INVALID",
            "-j",
            "DROP",
        ])?;
        iptables(&[
            "-A",
            "FORWARD",
            "-i",
            "eth0",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW,INVALID",
            "-j",
            "DROP",
        ])?;
        Self::masquerade(router, None)?;
        if let Some(timeout) = timeout {
            let secs = timeout.as_secs().max(1).to_string();
            self.sysctl(&ns, "net.netfilter.nf_conntrack_udp_timeout", &secs)?;
            self.sysctl(&ns, "net.netfilter.nf_conntrack_udp_timeout_stream", &secs)?;
        }
        for (j, host) in router.hosts.iter().enumerate() {
            self.add_ns(&host.ns)?;
            self.sysctl(&host.ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
            self.sysctl(&host.ns, "net.ipv6.conf.default.disable_ipv6", "1")?;
            let port = format!("h{}", j + 1);
            ip(&[
                "-n", &ns, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &host.ns,
            ])?;
            ip(&["-n", &ns, "link", "set", &port, "master", "lan", "up"])?;
            let v4 = host.ipv4.unwrap_or(Ipv4Addr::UNSPECIFIED);
            ip(&[
                "-n",
                &host.ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &host.ns, "link", "set", "eth0", "up"])?;
            ip(&[
                "-n",
                &host.ns,
                "route",
                "add",
                "default",
                "via",
                &router.lan().to_string(),
            ])?;
        }
        Ok(())
    }

    /// (Re)writes the router's `nat POSTROUTING` chain: masquerade out of `eth0`, with UDP and TCP ports taken
    /// from `ports` when given.
    fn masquerade(router: &Router, ports: Option<(u16, u16)>) -> Result<()> {
        let node = &router.node;
        node.exec("iptables", &["-t", "nat", "-F", "POSTROUTING"])?;
        let random: &[&str] = match router.kind {
            NatKind::Cone => &[],
            NatKind::Symmetric => &["--random-fully"],
        };
        if let Some((lo, hi)) = ports {
            let range = format!("{lo}-{hi}");
            for proto in ["udp", "tcp"] {
                let mut args = vec![
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    "eth0",
                    "-p",
                    proto,
                    "-j",
                    "MASQUERADE",
                    "--to-ports",
                    &range,
                ];
                args.extend_from_slice(random);
                node.exec("iptables", &args)?;
            }
        }
        let mut args = vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "eth0",
            "-j",
            "MASQUERADE",
        ];
        args.extend_from_slice(random);
        node.exec("iptables", &args).map(drop)
    }

    /// The public segment's namespace (holds the bridge only).
    pub fn public(&self) -> &Node {
        &self.public
    }

    /// The lab's namespace: [`LAB_V4`] and [`LAB_V6`] on the public segment.
    pub fn lab(&self) -> &Node {
        &self.lab
    }

    /// Router `i` (0-based, in the order they were added; its LAN is `192.168.<i+1>.0/24`).
    pub fn router(&self, i: usize) -> &Router {
        &self.routers[i]
    }

    /// Every router.
    pub fn routers(&self) -> &[Router] {
        &self.routers
    }

    /// Host `j` of router `i`'s LAN (both 0-based).
    pub fn host(&self, i: usize, j: usize) -> &Node {
        self.routers[i].host(j)
    }

    /// The IPv6-only host, when built with [`TopologyBuilder::ipv6_host`].
    pub fn ipv6_host(&self) -> Option<&Node> {
        self.v6_host.as_ref()
    }

    /// Lab options running `tandem-lab` inside the lab's namespace, listening on [`LAB_V4`] and [`LAB_V6`]
    /// (the rest as [`LabOptions::default`], without TLS): add users and TOML, then [`crate::LabServer::start`].
    pub fn lab_options(&self, domain: &str) -> LabOptions {
        LabOptions {
            domain: domain.to_string(),
            tls: false,
            netns: Some(self.lab.ns.clone()),
            listen_ips: vec![IpAddr::V4(LAB_V4), IpAddr::V6(LAB_V6)],
            ..LabOptions::default()
        }
    }

    /// Sets router `i`'s conntrack UDP timeouts (`nf_conntrack_udp_timeout` and `…_stream`): an idle mapping dies
    /// after `timeout` (entries already there keep the timer they have until their next packet).
    pub fn set_udp_timeout(&self, i: usize, timeout: Duration) -> Result<()> {
        let ns = &self.routers[i].node.ns;
        let secs = timeout.as_secs().max(1).to_string();
        self.sysctl(ns, "net.netfilter.nf_conntrack_udp_timeout", &secs)?;
        self.sysctl(ns, "net.netfilter.nf_conntrack_udp_timeout_stream", &secs)
    }

    /// Changes router `i`'s mappings: its masquerading takes UDP/TCP ports from a new range (`10000-19999` and
    /// `20000-29999` alternately, disjoint from the hosts' ephemeral ports) and every conntrack entry is flushed,
    /// so each private socket's next packet gets a new public port (what a NAT reboot or a carrier's mapping
    /// timeout does).
    pub fn change_mapping(&mut self, i: usize) -> Result<()> {
        let router = &mut self.routers[i];
        router.changes += 1;
        let lo = if router.changes % 2 == 1 {
            10_000
        } else {
            20_000
        };
        Self::masquerade(router, Some((lo, lo + 9_999)))?;
        in_netns(&router.node.ns, flush_conntrack)?
            .ctx(|| format!("flushing conntrack in {}", router.node.ns))
    }

    /// Router `i`'s current conntrack UDP timeout, in seconds (from its namespace's sysctl).
    pub fn udp_timeout(&self, i: usize) -> Result<u64> {
        let ns = &self.routers[i].node.ns;
        let text = in_netns(ns, || {
            std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_udp_timeout")
        })?
        .ctx(|| format!("reading the conntrack UDP timeout in {ns}"))?;
        text.trim().parse().map_err(|_| HarnessError::Protocol {
            what: format!("nf_conntrack_udp_timeout in {ns}"),
            detail: format!("not a number: {text:?}"),
        })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes the links inside it (and the veth peers elsewhere).
        for ns in self.created.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;

    /// A UDP echo in the lab's namespace that answers each datagram with the source address it came from.
    struct Echo {
        addr: SocketAddr,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
        sock: UdpSocket,
    }

    impl Echo {
        fn start(topo: &Topology) -> Echo {
            let sock = topo
                .lab()
                .udp_socket(SocketAddr::from((LAB_V4, 0)))
                .unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let addr = sock.local_addr().unwrap();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (s, flag) = (sock.try_clone().unwrap(), stop.clone());
            let thread = std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !flag.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(from.to_string().as_bytes(), from);
                    }
                }
            });
            Echo {
                addr,
                stop,
                thread: Some(thread),
                sock,
            }
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Sends from `sock` to `to` and returns the source address the peer saw (retrying a lost datagram).
    fn mapped(sock: &UdpSocket, to: SocketAddr) -> SocketAddr {
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 200];
        for _ in 0..10 {
            sock.send_to(b"who am i", to).unwrap();
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                assert_eq!(from, to);
                return std::str::from_utf8(&buf[..n]).unwrap().parse().unwrap();
            }
        }
        panic!("no echo from {to}");
    }

    fn names() -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    #[test]
    fn nat_topology_translates_and_cleans_up() {
        if !is_root() {
            panic!("the NAT topology needs root (network namespaces)");
        }
        // A leftover of a test process that died before its guard ran is swept when a topology is built.
        let mut dead = Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let leftover = format!("{PREFIX}{dead_pid}-n1-pub");
        ip(&["netns", "add", &leftover]).unwrap();
        let mut topo = Topology::builder()
            .router(NatKind::Cone, 2)
            .router(NatKind::Symmetric, 1)
            .ipv6_host()
            .build()
            .unwrap();
        let created = topo.created.clone();
        let all = names();
        assert!(!all.contains(&leftover), "{leftover} was not swept");
        for ns in &created {
            assert!(all.contains(ns), "{ns} missing from {all:?}");
        }
        let echo = Echo::start(&topo);
        let echo2 = Echo::start(&topo);
        let cone = topo.router(0).clone();
        let sym = topo.router(1).clone();

        // Behind the cone NAT: the lab sees the router's WAN address, the same port for both destinations.
        let h = topo.host(0, 0).clone();
        let sock = h
            .udp_socket(SocketAddr::from((h.ipv4().unwrap(), 0)))
            .unwrap();
        let m1 = mapped(&sock, echo.addr);
        let m2 = mapped(&sock, echo2.addr);
        assert_eq!(
            m1.ip(),
            IpAddr::V4(cone.wan()),
            "cone NAT maps to its WAN address"
        );
        assert_eq!(m1, m2, "a cone NAT keeps one mapping for every destination");
        // Two hosts of one LAN reach each other directly.
        let h2 = topo.host(0, 1).clone();
        let peer = h2
            .udp_socket(SocketAddr::from((h2.ipv4().unwrap(), 0)))
            .unwrap();
        sock.send_to(b"hi", peer.local_addr().unwrap()).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 16];
        let (_, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(
            from,
            sock.local_addr().unwrap(),
            "the LAN is not translated"
        );

        // Behind the symmetric NAT: a different public port per destination.
        let s = topo.host(1, 0).clone();
        let ssock = s
            .udp_socket(SocketAddr::from((s.ipv4().unwrap(), 0)))
            .unwrap();
        let s1 = mapped(&ssock, echo.addr);
        let s2 = mapped(&ssock, echo2.addr);
        assert_eq!(s1.ip(), IpAddr::V4(sym.wan()));
        assert_eq!(s2.ip(), IpAddr::V4(sym.wan()));
        assert_ne!(s1.port(), s2.port(), "a symmetric NAT maps per destination");

        // Filtering: a destination the socket sent to gets in through the mapping, another lab socket does not.
        let stranger = topo
            .lab()
            .udp_socket(SocketAddr::from((LAB_V4, 0)))
            .unwrap();
        stranger.send_to(b"unsolicited", m1).unwrap();
        echo2.sock.send_to(b"solicited", m1).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        let mut got = Vec::new();
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            got.push((buf[..n].to_vec(), from));
        }
        assert!(
            got.iter()
                .any(|(d, f)| d == b"solicited" && *f == echo2.addr),
            "a contacted destination's packet did not get through: {got:?}"
        );
        assert!(
            !got.iter().any(|(d, _)| d == b"unsolicited"),
            "an uncontacted source got through the NAT: {got:?}"
        );

        // A mapping change: a new public port for the same socket.
        topo.change_mapping(0).unwrap();
        let m3 = mapped(&sock, echo.addr);
        assert_eq!(m3.ip(), IpAddr::V4(cone.wan()));
        assert_ne!(m3.port(), m1.port(), "the mapping changed");
        assert!(
            (10_000..20_000).contains(&m3.port()),
            "from the new range: {m3}"
        );

        // A short conntrack timeout: the mapping dies when idle, and inbound packets are dropped.
        assert_eq!(topo.udp_timeout(0).unwrap(), 30);
        topo.set_udp_timeout(0, Duration::from_secs(2)).unwrap();
        assert_eq!(topo.udp_timeout(0).unwrap(), 2);
        let fresh = h
            .udp_socket(SocketAddr::from((h.ipv4().unwrap(), 0)))
            .unwrap();
        let m4 = mapped(&fresh, echo.addr);
        std::thread::sleep(Duration::from_millis(3500));
        echo.sock.send_to(b"late", m4).unwrap();
        fresh
            .set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        assert!(
            fresh.recv_from(&mut buf).is_err(),
            "a packet reached the host through an expired mapping"
        );
        // Within the timeout, the same thing gets through.
        let m5 = mapped(&fresh, echo.addr);
        echo.sock.send_to(b"early", m5).unwrap();
        let (n, _) = fresh.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"early");

        // The IPv6-only host reaches the lab over IPv6 and has no IPv4 address.
        let v6 = topo.ipv6_host().unwrap().clone();
        assert!(v6.ipv4().is_none());
        let lab6 = topo
            .lab()
            .udp_socket(SocketAddr::from((LAB_V6, 0)))
            .unwrap();
        let v6sock = v6.udp_socket(SocketAddr::from((V6_HOST, 0))).unwrap();
        let start = Instant::now();
        lab6.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let from = loop {
            v6sock.send_to(b"v6", lab6.local_addr().unwrap()).unwrap();
            if let Ok((_, from)) = lab6.recv_from(&mut buf) {
                break from;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no IPv6 path to the lab"
            );
        };
        assert_eq!(from, v6sock.local_addr().unwrap());
        // …and cannot reach the IPv4 world at all.
        assert!(
            v6.run(|| UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", echo.addr)))
                .unwrap()
                .is_err(),
            "the IPv6-only host has an IPv4 route"
        );

        // A process runs inside a namespace under a guard.
        let dir = tempfile::tempdir().unwrap();
        let mut child = h
            .spawn(
                "ip-addr",
                "ip",
                &["-4", "-o", "addr", "show", "dev", "eth0"],
                dir.path(),
            )
            .unwrap();
        child.wait_exit(Duration::from_secs(10)).unwrap();
        assert!(
            child.stdout().contains("192.168.1.10/24"),
            "{}",
            child.stdout()
        );

        drop((
            echo, echo2, sock, ssock, peer, fresh, lab6, v6sock, stranger,
        ));
        drop(topo);
        let after = names();
        for ns in &created {
            assert!(!after.contains(ns), "{ns} left behind");
        }
    }
}
