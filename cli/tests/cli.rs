//! `tandem-cli` end to end: two CLI processes calling each other over loopback, exit codes,
//! profiles and usage errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{BIN, free_udp_port};

/// Kills the child on drop (also when a test fails).
struct Guard {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Guard {
    fn spawn(args: &[&str]) -> Guard {
        Self::spawn_with(args, Stdio::null())
    }

    /// Like `spawn`, with a pipe to stdin for the control channel (see `send`).
    fn spawn_interactive(args: &[&str]) -> Guard {
        Self::spawn_with(args, Stdio::piped())
    }

    fn spawn_with(args: &[&str], stdin: Stdio) -> Guard {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Guard {
            child: Some(child),
            lines: rx,
        }
    }

    /// Waits for a line whose first word is `event`; returns all lines read so far.
    fn wait_event(&self, event: &str, secs: u64) -> String {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(secs))
                .unwrap_or_else(|_| panic!("no {event} line; saw {seen:?}"));
            seen.push(line.clone());
            if line.split_whitespace().next() == Some(event) {
                return line;
            }
        }
    }

    /// Waits for the next line, whatever it is.
    fn wait_event_any(&self, secs: u64) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(secs))
            .unwrap_or_else(|_| panic!("no line within {secs} s"))
    }

    /// Writes one control line to stdin.
    fn send(&mut self, line: &str) {
        let stdin = self.child.as_mut().unwrap().stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        Command::new("kill").args([sig, &pid]).status().unwrap();
    }

    fn wait_code(&mut self, secs: u64) -> i32 {
        let mut child = self.child.take().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().expect("killed by a signal");
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("tandem-cli did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn events(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Starts alice in answer mode (no registrar) on a free loopback port over `transport`,
/// with `extra` answer options; returns her process and the URI that reaches her.
fn answerer(transport: &str, extra: &[&str]) -> (Guard, String) {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--user",
        "alice",
        "--domain",
        "127.0.0.1",
        "--listen",
        &listen,
        "--transport",
        transport,
        "answer",
        "--no-register",
    ];
    args.extend_from_slice(extra);
    let guard = Guard::spawn(&args);
    std::thread::sleep(Duration::from_millis(300));
    let target = if transport == "udp" {
        format!("sip:alice@127.0.0.1:{port}")
    } else {
        format!("sip:alice@127.0.0.1:{port};transport={transport}")
    };
    (guard, target)
}

/// bob's account options over `transport`, followed by `command`.
fn as_bob<'a>(transport: &'a str, command: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--user",
        "bob",
        "--domain",
        "127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--transport",
        transport,
    ];
    args.extend_from_slice(command);
    args
}

#[test]
fn call_answer_and_bye() {
    let (mut answerer, target) = answerer("udp", &["--count", "1"]);
    let out = run(&as_bob("udp", &["call", &target, "--duration", "1"]));
    let ev = events(&out);
    assert_eq!(out.status.code(), Some(0), "{ev:?}");
    assert!(ev.contains(&"ringing status=180".to_string()), "{ev:?}");
    assert!(ev.contains(&"answered status=200".to_string()), "{ev:?}");
    assert_eq!(ev.last().unwrap(), "ended by=local reason=bye");

    let incoming = answerer.wait_event("incoming", 5);
    assert!(
        incoming.starts_with("incoming from=sip:bob@127.0.0.1 call-id="),
        "{incoming}"
    );
    answerer.wait_event("answered", 5);
    assert_eq!(
        answerer.wait_event("ended", 5),
        "ended by=remote reason=bye"
    );
    assert_eq!(answerer.wait_code(10), 0);
}

#[test]
fn callee_hangs_up_first_over_tcp() {
    let (mut answerer, target) = answerer("tcp", &["--count", "1", "--duration", "1"]);
    let out = run(&as_bob("tcp", &["call", &target, "--duration", "20"]));
    let ev = events(&out);
    assert_eq!(out.status.code(), Some(0), "{ev:?}");
    assert_eq!(ev.last().unwrap(), "ended by=remote reason=bye");
    assert_eq!(answerer.wait_event("ended", 5), "ended by=local reason=bye");
    assert_eq!(answerer.wait_code(10), 0);
}

#[test]
fn rejected_call_exits_1() {
    let (_answerer, target) = answerer("udp", &["--reject", "486"]);
    let out = run(&as_bob("udp", &["call", &target]));
    let ev = events(&out);
    assert_eq!(out.status.code(), Some(1), "{ev:?}");
    assert_eq!(ev.last().unwrap(), "failed status=486 reason=\"Busy Here\"");
}

#[test]
fn unanswered_call_is_cancelled_and_exits_4() {
    let (answerer, target) = answerer("udp", &["--ring", "30"]);
    let out = run(&as_bob("udp", &["call", &target, "--timeout", "1"]));
    let ev = events(&out);
    assert_eq!(out.status.code(), Some(4), "{ev:?}");
    assert_eq!(ev.last().unwrap(), "ended by=local reason=timeout");
    assert_eq!(
        answerer.wait_event("ended", 5),
        "ended by=remote reason=cancel"
    );
}

#[test]
fn sigterm_hangs_up_and_exits_5() {
    let (mut answerer, target) = answerer("udp", &[]);
    let mut caller = Guard::spawn(&as_bob("udp", &["call", &target, "--duration", "60"]));
    caller.wait_event("answered", 5);
    caller.signal("-TERM");
    assert_eq!(caller.wait_event("ended", 5), "ended by=local reason=bye");
    assert_eq!(caller.wait_code(10), 5);
    assert_eq!(
        answerer.wait_event("ended", 5),
        "ended by=remote reason=bye"
    );
    // Answer mode without --count: SIGINT is the normal way to stop, exit 0.
    answerer.signal("-INT");
    assert_eq!(answerer.wait_code(10), 0);
}

#[test]
fn options_to_a_cli() {
    let (_answerer, target) = answerer("udp", &[]);
    let hostport = target.trim_start_matches("sip:alice@").to_string();
    let out = run(&["--listen", "127.0.0.1:0", "options", &hostport]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        events(&out),
        vec!["options status=200 reason=OK".to_string()]
    );
}

#[test]
fn profile_supplies_account_options() {
    let port = free_udp_port();
    let mut profile = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    writeln!(
        profile,
        "user = \"alice\"\ndomain = \"127.0.0.1\"\nlisten = \"127.0.0.1:{port}\"\ntransport = \"udp\""
    )
    .unwrap();
    let path = profile.path().to_str().unwrap().to_string();
    let mut answerer = Guard::spawn(&[
        "--profile",
        &path,
        "answer",
        "--no-register",
        "--count",
        "1",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let out = run(&[
        "--user",
        "bob",
        "--domain",
        "127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "call",
        &format!("alice@127.0.0.1:{port}"),
        "--duration",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", events(&out));
    answerer.wait_event("ended", 5);
    assert_eq!(answerer.wait_code(10), 0);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["register"]).status.code(), Some(2));
    assert_eq!(run(&["--user", "a", "register"]).status.code(), Some(2));
    assert_eq!(
        run(&[
            "--user",
            "a",
            "--domain",
            "x",
            "--transport",
            "sctp",
            "register"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["--user", "a"]).status.code(), Some(2));
    assert_eq!(
        run(&["--profile", "/nonexistent.toml", "register"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn media_usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &["call", "b", "--play", "/nonexistent/tone.wav"],
        &["call", "b", "--hold-after", "2", "--resume-after", "1"],
        &["call", "b", "--resume-after", "1"],
        &["call", "b", "--codec", "gsm"],
        &["call", "b", "--dtmf", "12x"],
        &["call", "b", "--play-once"],
        &["call", "b", "--dtmf-delay", "soon"],
        &["call", "b", "--device", "file:"],
        &["--srtp", "maybe", "call", "b"],
        &["--srtp-keying", "zrtp", "call", "b"],
        &["answer", "--transfer-to", "sip:"],
    ];
    common::assert_usage_errors(cases);
}

#[test]
fn devices_are_listed() {
    for cmd in ["devices", "list-devices", "--list-devices"] {
        let out = run(&[cmd]);
        assert_eq!(out.status.code(), Some(0));
        let ev = events(&out);
        let last = ev.last().unwrap();
        assert!(last.starts_with("devices count="), "{ev:?}");
        let count: usize = last.trim_start_matches("devices count=").parse().unwrap();
        assert_eq!(
            ev.iter().filter(|l| l.starts_with("device ")).count(),
            count
        );
    }
}

#[test]
fn stdin_controls_a_call() {
    let (mut answerer, target) = answerer("udp", &["--count", "1"]);
    let mut caller =
        Guard::spawn_interactive(&as_bob("udp", &["call", &target, "--duration", "60"]));
    let media = caller.wait_event("media", 5);
    assert!(
        media.contains("secure=no") && media.contains("local=127.0.0.1:"),
        "{media}"
    );
    caller.wait_event("answered", 5);
    caller.send("mute");
    caller.wait_event("muted", 5);
    caller.send("unmute");
    caller.wait_event("unmuted", 5);
    caller.send("dance");
    caller.send("quality");
    let q = caller.wait_event("quality", 5);
    assert!(
        q.contains("report=query") && q.contains("srtp_auth_failures=0"),
        "{q}"
    );
    caller.send("hangup");
    let q = caller.wait_event("quality", 5);
    assert!(q.contains("report=final"), "{q}");
    assert_eq!(caller.wait_event("ended", 5), "ended by=local reason=bye");
    assert_eq!(caller.wait_code(10), 0);
    assert_eq!(
        answerer.wait_event("ended", 5),
        "ended by=remote reason=bye"
    );
    assert_eq!(answerer.wait_code(10), 0);
}

#[test]
fn scripted_hold_resume_and_dtmf() {
    let (mut answerer, target) = answerer("udp", &["--count", "1"]);
    let out = run(&as_bob(
        "udp",
        &[
            "call",
            &target,
            "--duration",
            "3",
            "--dtmf",
            "12#",
            "--dtmf-delay",
            "0.2",
            "--hold-after",
            "1.2",
            "--resume-after",
            "2",
        ],
    ));
    let ev = events(&out);
    assert_eq!(out.status.code(), Some(0), "{ev:?}");
    assert!(ev.contains(&"held by=local".to_string()), "{ev:?}");
    assert!(ev.contains(&"resumed by=local".to_string()), "{ev:?}");
    let mut digits = String::new();
    let mut remote = Vec::new();
    loop {
        let line = answerer.wait_event_any(5);
        if let Some(d) = line.strip_prefix("dtmf digit=") {
            digits.push_str(d);
        }
        if line.starts_with("held") || line.starts_with("resumed") {
            remote.push(line.clone());
        }
        if line.starts_with("ended") {
            break;
        }
    }
    assert_eq!(digits, "12#");
    assert_eq!(remote, vec!["held by=remote", "resumed by=remote"]);
    assert_eq!(answerer.wait_code(10), 0);
}

#[test]
fn blind_transfer_between_three_clis() {
    // C answers; B answers and transfers its caller to C; A calls B and follows the REFER.
    let (mut carol, carol_uri) = answerer("udp", &["--count", "1"]);
    let (mut bob, bob_uri) = answerer(
        "udp",
        &[
            "--count",
            "1",
            "--transfer-to",
            &carol_uri,
            "--transfer-after",
            "0.5",
        ],
    );
    let mut alice = Guard::spawn(&as_bob("udp", &["call", &bob_uri, "--duration", "2"]));
    let refer = alice.wait_event("refer", 10);
    assert!(
        refer.starts_with(&format!("refer to={carol_uri}")),
        "{refer}"
    );
    let transferred = bob.wait_event("transferred", 10);
    assert!(transferred.contains("status=200"), "{transferred}");
    assert_eq!(
        bob.wait_event("ended", 10),
        "ended by=local reason=transferred"
    );
    let incoming = carol.wait_event("incoming", 10);
    assert!(incoming.contains("from=sip:bob@127.0.0.1"), "{incoming}");
    carol.wait_event("answered", 10);
    assert_eq!(carol.wait_event("ended", 10), "ended by=remote reason=bye");
    assert_eq!(alice.wait_code(15), 0);
    assert_eq!(bob.wait_code(10), 0);
    assert_eq!(carol.wait_code(10), 0);
}
