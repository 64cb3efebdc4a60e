//! NAT acceptance (issue 4): nat_calls — two `tandem-cli`s with ICE in a namespace topology
//! ([`tandem_tests::nat::Topology`]): behind the same cone NAT (path=direct), behind two cone NATs
//! (path=reflexive: no hairpin, so the host candidates cannot reach each other), both behind symmetric NATs with
//! the lab's TURN server (path=relay). Each call carries a tone both ways, checked in the recordings.
//!
//! The helpers here ([`NatLab`], [`Callee`], [`place_call`], [`assert_heard`], [`ice_path`]) serve the other
//! `nat_*` scenarios too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure here is a test failure

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_tests::nat::{LAB_V4, NatKind, Node, Topology, TopologyBuilder};
use tandem_tests::process::{ChildGuard, Stream};
use tandem_tests::{CliAccount, CliOutput, LabServer, TestDir, Transport};

use crate::audio_common::{
    SNR_FLOOR_DB, TONE_CALLEE, TONE_CALLER, assert_tone_after, field, lines, tone_file,
};
use crate::common::{assert_exit, assert_exits_ok, ok, secs};

/// The lab's SIP domain (and TURN realm) in the NAT scenarios.
pub const DOMAIN: &str = "nat.lab";
/// How long each call talks.
pub const TALK_SECS: u64 = 6;
/// Audio skipped at the start of each recording: call setup, ICE checks (and the jitter buffer's fill).
pub const SKIP_START: Duration = Duration::from_millis(1500);

/// A NAT topology with `tandem-lab` running in its lab namespace, and the test's files.
pub struct NatLab {
    /// The lab server (dropped before the topology).
    pub lab: LabServer,
    /// The namespaces.
    pub topo: Topology,
    /// Logs, tones and recordings.
    pub dir: TestDir,
    /// The caller's tone file.
    pub caller_tone: PathBuf,
    /// The callee's tone file.
    pub callee_tone: PathBuf,
}

impl NatLab {
    /// Builds `topology`, starts the lab in it with `users` (passwords `<user>pw`) and `extra_toml`; `md5` limits
    /// digest to MD5 (baresip 1.0 knows no other).
    pub fn start(
        name: &str,
        topology: TopologyBuilder,
        users: &[&str],
        extra_toml: &str,
        md5: bool,
    ) -> NatLab {
        let dir = ok(TestDir::new(name));
        let topo = ok(topology.build());
        let mut opts = topo.lab_options(DOMAIN);
        opts.extra_toml = extra_toml.to_string();
        if md5 {
            opts.auth_algorithms = vec!["MD5".into()];
        }
        for u in users {
            opts = opts.user(u, &format!("{u}pw"));
        }
        let lab = ok(LabServer::start(opts, dir.path()));
        let caller_tone = tone_file(dir.path(), TONE_CALLER);
        let callee_tone = tone_file(dir.path(), TONE_CALLEE);
        NatLab {
            lab,
            topo,
            dir,
            caller_tone,
            callee_tone,
        }
    }

    /// The lab's SIP UDP listener of `family`'s address family (the lab listens on IPv4 and IPv6).
    pub fn sip_udp(&self, family: IpAddr) -> SocketAddr {
        self.lab
            .services("udp")
            .into_iter()
            .find(|a| a.is_ipv4() == family.is_ipv4())
            .unwrap_or_else(|| panic!("the lab has no UDP listener like {family}"))
    }

    /// The lab's STUN/TURN server (the ready line's `turn=`).
    pub fn turn(&self) -> SocketAddr {
        self.lab
            .service("turn")
            .expect("the lab's ready line has turn=")
    }

    /// The media relay's advertised addresses (the ready line's `relay=IPv4[,IPv6]`).
    pub fn relay_ips(&mut self) -> Vec<IpAddr> {
        let ready = self
            .lab
            .process()
            .map(|p| p.matching_lines(Stream::Stdout, "ready "))
            .unwrap_or_default();
        let line = ready.first().cloned().unwrap_or_default();
        field(&line, "relay")
            .map(|v| v.split(',').filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Asserts the lab's log shows `calls` calls anchored on its media relay and, once their sessions ended, that
    /// each forwarded packets (the `media relay: call anchored` and `session ended … packets=N` lines).
    #[track_caller]
    pub fn assert_relayed_calls(&mut self, calls: usize) {
        let Some(lab) = self.lab.process() else {
            panic!("the lab is not running");
        };
        let anchored = lab
            .matching_lines(Stream::Stderr, "media relay: call anchored")
            .len();
        assert_eq!(
            anchored,
            calls,
            "calls anchored on the relay:\n{}",
            lab.tails()
        );
        ok(lab.wait_for_nth_line(
            Stream::Stderr,
            "media relay: session ended",
            calls,
            secs(10),
        ));
        for line in lab.matching_lines(Stream::Stderr, "media relay: session ended") {
            let packets: u64 = field(&line, "packets")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no packets=N in {line:?}"));
            // Both directions for several seconds of 20 ms packets.
            assert!(
                packets >= 200,
                "the relay forwarded only {packets} packets: {line}"
            );
        }
    }

    /// `user`'s account on `host`: registering at the lab's UDP listener of the host's family, bound to the
    /// host's address, run inside its namespace.
    pub fn phone(&self, host: &Node, user: &str) -> CliAccount {
        let mut acct = CliAccount::new(
            user,
            DOMAIN,
            &format!("{user}pw"),
            self.sip_udp(host.ip()),
            Transport::Udp,
        );
        acct.listen = Some(SocketAddr::new(host.ip(), 0));
        acct.netns = Some(host.ns().to_string());
        acct
    }

    /// The `turn:IP:PORT` URI of the lab's TURN server.
    pub fn turn_uri(&self) -> String {
        format!("turn:{}", self.turn())
    }
}

/// A `tandem-cli answer` waiting for calls (registered), playing the callee tone and recording what it hears.
pub struct Callee {
    /// The process.
    pub child: ChildGuard,
    /// Where it records (each call overwrites it).
    pub record: PathBuf,
}

impl Callee {
    /// Starts `answer --count N` for `acct` with `args` (global flags such as `--ice off`) and waits until it
    /// has registered.
    pub fn start(nat: &NatLab, acct: &CliAccount, calls: u32, args: &[&str]) -> Callee {
        let record = nat.dir.path().join(format!("{}-heard.wav", acct.user));
        let tone = nat.callee_tone.display().to_string();
        let rec = record.display().to_string();
        let count = calls.to_string();
        let mut cmd = vec![
            "answer", "--count", &count, "--play", &tone, "--record", &rec,
        ];
        cmd.extend_from_slice(args);
        let mut child = ok(acct.spawn(&format!("{}-answer", acct.user), &cmd, nat.dir.path()));
        ok(child.wait_for_line(Stream::Stdout, "registered", secs(20)));
        Callee { child, record }
    }

    /// Waits until its `n`th call has ended (its `n`th `quality` line), then copies the recording to
    /// `<record>-<n>.wav` (the next call overwrites the original) and returns the copy.
    pub fn call_done(&mut self, n: usize) -> PathBuf {
        ok(self
            .child
            .wait_for_nth_line(Stream::Stdout, "quality ", n, secs(20)));
        let copy = self.record.with_extension(format!("{n}.wav"));
        std::fs::copy(&self.record, &copy)
            .unwrap_or_else(|e| panic!("copying {}: {e}", self.record.display()));
        copy
    }
}

/// `caller` calls `target` (`sip:user@nat.lab`) with `args` (global flags), talks [`TALK_SECS`] playing the caller
/// tone and recording into `<dir>/<caller>-heard-<tag>.wav`; asserts it exited 0 and returns its output and
/// recording.
pub fn place_call(
    nat: &NatLab,
    caller: &CliAccount,
    target: &str,
    args: &[&str],
    tag: &str,
) -> (CliOutput, PathBuf) {
    let record = nat
        .dir
        .path()
        .join(format!("{}-heard-{tag}.wav", caller.user));
    let tone = nat.caller_tone.display().to_string();
    let rec = record.display().to_string();
    let talk = TALK_SECS.to_string();
    let mut cmd = vec![
        "call",
        target,
        "--duration",
        &talk,
        "--timeout",
        "20",
        "--play",
        &tone,
        "--record",
        &rec,
    ];
    cmd.extend_from_slice(args);
    let out = ok(caller.run(
        &format!("{}-call-{tag}", caller.user),
        &cmd,
        nat.dir.path(),
        secs(60),
    ));
    assert_exit(&out, 0);
    (out, record)
}

/// Asserts both recordings carry the other side's tone (the tone checks of the audio scenarios, after
/// [`SKIP_START`]).
#[track_caller]
pub fn assert_heard(caller_heard: &Path, callee_heard: &Path, what: &str) {
    for (path, hz, who) in [
        (caller_heard, TONE_CALLEE, "the caller hears the callee"),
        (callee_heard, TONE_CALLER, "the callee hears the caller"),
    ] {
        assert_tone_after(
            path,
            hz,
            SNR_FLOOR_DB,
            secs(TALK_SECS - 2),
            0.8,
            SKIP_START,
            &format!("{what}: {who}"),
        );
    }
}

/// The `path=` of the (last) `ice selected` line in `stdout`; fails with the output when ICE chose nothing.
#[track_caller]
pub fn ice_path(stdout: &str, who: &str) -> String {
    let selected: Vec<&str> = lines(stdout, "ice")
        .into_iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("selected"))
        .collect();
    let line = selected
        .last()
        .unwrap_or_else(|| panic!("{who}: no `ice selected` line:\n{stdout}"));
    for key in ["local_type", "remote_type", "local", "remote"] {
        assert!(field(line, key).is_some(), "{who}: no {key}= in {line:?}");
    }
    field(line, "path")
        .unwrap_or_else(|| panic!("{who}: no path= in {line:?}"))
        .to_string()
}

/// The `remote=` IP of the first `media` line in `stdout`.
#[track_caller]
pub fn media_remote(stdout: &str, who: &str) -> IpAddr {
    let media = lines(stdout, "media");
    let line = media
        .first()
        .unwrap_or_else(|| panic!("{who}: no `media` line:\n{stdout}"));
    field(line, "remote")
        .and_then(|r| r.parse::<SocketAddr>().ok())
        .map(|a| a.ip())
        .unwrap_or_else(|| panic!("{who}: no remote=IP:PORT in {line:?}"))
}

/// The IP of `key=IP:PORT` (`local`, `remote`) in the last `ice selected` line of `stdout`.
#[track_caller]
pub fn ice_selected_ip(stdout: &str, key: &str, who: &str) -> IpAddr {
    let line = lines(stdout, "ice")
        .into_iter()
        .rfind(|l| l.split_whitespace().nth(1) == Some("selected"))
        .unwrap_or_else(|| panic!("{who}: no `ice selected` line:\n{stdout}"));
    field(line, key)
        .and_then(|v| v.parse::<SocketAddr>().ok())
        .map(|a| a.ip())
        .unwrap_or_else(|| panic!("{who}: no {key}=IP:PORT in {line:?}"))
}

/// What each end of an ICE call must report: the path, and the IP its selected pair sends to (`key` =
/// `remote`), or, for relayed calls, a relayed address on either end of the pair (`key` = `either`: one allocation
/// suffices, so an end may send from its host candidate to the peer's relayed address).
struct Expect {
    path: &'static str,
    key: &'static str,
    caller_ip: IpAddr,
    callee_ip: IpAddr,
}

/// One ICE call bob ← alice between `callee_host` and `caller_host`, with tone checks both ways.
fn ice_call(nat: &NatLab, caller_host: &Node, callee_host: &Node, extra: &[&str], expect: &Expect) {
    let alice = nat.phone(caller_host, "alice");
    let bob = nat.phone(callee_host, "bob");
    let mut callee = Callee::start(nat, &bob, 1, extra);
    let (call, heard) = place_call(nat, &alice, &format!("sip:bob@{DOMAIN}"), extra, "1");
    let bob_heard = callee.call_done(1);
    assert_exits_ok(&mut callee.child, secs(15), "bob (answer)");
    let bob_out = callee.child.stdout();
    let path = expect.path;
    for (who, out, ip) in [
        ("caller", call.stdout.as_str(), expect.caller_ip),
        ("callee", bob_out.as_str(), expect.callee_ip),
    ] {
        assert_eq!(ice_path(out, who), path, "{who}'s ICE path:\n{out}");
        let keys: &[&str] = if expect.key == "either" {
            &["local", "remote"]
        } else {
            &[expect.key]
        };
        assert!(
            keys.iter().any(|k| ice_selected_ip(out, k, who) == ip),
            "{who}'s selected pair should have {ip} as {}:\n{out}",
            keys.join(" or ")
        );
    }
    assert_heard(&heard, &bob_heard, &format!("path={path}"));
}

#[test]
fn nat_calls_same_cone_nat_direct() {
    let nat = NatLab::start(
        "nat-calls-same",
        Topology::builder().router(NatKind::Cone, 2),
        &["alice", "bob"],
        "",
        false,
    );
    let stun = format!("--stun={}", nat.turn());
    let (alice, bob) = (nat.topo.host(0, 0), nat.topo.host(0, 1));
    let expect = Expect {
        path: "direct",
        key: "remote",
        caller_ip: bob.ip(),
        callee_ip: alice.ip(),
    };
    ice_call(&nat, alice, bob, &[&stun], &expect);
}

#[test]
fn nat_calls_two_cone_nats_reflexive() {
    let nat = NatLab::start(
        "nat-calls-cone",
        Topology::builder()
            .router(NatKind::Cone, 1)
            .router(NatKind::Cone, 1),
        &["alice", "bob"],
        "",
        false,
    );
    let stun = format!("--stun={}", nat.turn());
    // No hairpin between the LANs: each end sends to the other's router.
    let expect = Expect {
        path: "reflexive",
        key: "remote",
        caller_ip: IpAddr::V4(nat.topo.router(1).wan()),
        callee_ip: IpAddr::V4(nat.topo.router(0).wan()),
    };
    ice_call(
        &nat,
        nat.topo.host(0, 0),
        nat.topo.host(1, 0),
        &[&stun],
        &expect,
    );
}

#[test]
fn nat_calls_two_symmetric_nats_relay() {
    let nat = NatLab::start(
        "nat-calls-sym",
        Topology::builder()
            .router(NatKind::Symmetric, 1)
            .router(NatKind::Symmetric, 1),
        &["alice", "bob"],
        "",
        false,
    );
    let turn = format!("--turn={}", nat.turn_uri());
    // Every pair goes through a relayed address on the lab's TURN server.
    let expect = Expect {
        path: "relay",
        key: "either",
        caller_ip: IpAddr::V4(LAB_V4),
        callee_ip: IpAddr::V4(LAB_V4),
    };
    ice_call(
        &nat,
        nat.topo.host(0, 0),
        nat.topo.host(1, 0),
        &[&turn],
        &expect,
    );
}

/// Two phones behind symmetric NATs with no STUN or TURN server configured offer only their private host
/// candidates: the lab anchors the call on its media relay (and strips ICE), so audio still flows both ways.
#[test]
fn nat_calls_without_stun_or_turn_use_the_lab_relay() {
    let mut nat = NatLab::start(
        "nat-calls-bare",
        Topology::builder()
            .router(NatKind::Symmetric, 1)
            .router(NatKind::Symmetric, 1),
        &["alice", "bob"],
        "",
        false,
    );
    let alice = nat.phone(nat.topo.host(0, 0), "alice");
    let bob = nat.phone(nat.topo.host(1, 0), "bob");
    let mut callee = Callee::start(&nat, &bob, 1, &[]);
    let (call, heard) = place_call(&nat, &alice, &format!("sip:bob@{DOMAIN}"), &[], "1");
    let bob_heard = callee.call_done(1);
    assert_exits_ok(&mut callee.child, secs(15), "bob (answer)");
    let bob_out = callee.child.stdout();
    for (who, out) in [
        ("caller", call.stdout.as_str()),
        ("callee", bob_out.as_str()),
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("ice off")),
            "{who}: the relay stripped ICE, so ICE is off:\n{out}"
        );
        assert_eq!(
            media_remote(out, who),
            IpAddr::V4(LAB_V4),
            "{who}'s media goes to the lab's relay:\n{out}"
        );
    }
    assert_heard(&heard, &bob_heard, "no STUN/TURN: through the lab relay");
    nat.assert_relayed_calls(1);
}
