//! `tandem-cli chat`, `send-file` and `answer --save-dir` between two CLI processes over loopback
//! (direct MSRP connection, no registrar), and the usage errors of the MSRP and buddy commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use common::{BIN, free_udp_port};

/// A tandem-cli process, killed on drop (also when a test fails).
struct Cli {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Cli {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cli {
    fn spawn(args: &[&str], stdin: bool) -> Cli {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
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
        Cli {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The next line starting with `prefix`.
    fn wait_line(&mut self, prefix: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {prefix:?} line; saw {:?}", self.seen));
            self.seen.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.as_mut().unwrap().stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn wait_code(&mut self, secs: u64) -> i32 {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Collect what is left on stdout.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return status.code().expect("killed by a signal");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("tandem-cli did not exit in time; saw {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// alice answering on a free port without a registrar, saving files in `save`.
fn answerer(save: &str) -> (Cli, String) {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let cli = Cli::spawn(
        &[
            "--user",
            "alice",
            "--domain",
            "127.0.0.1",
            "--listen",
            &listen,
            "answer",
            "--no-register",
            "--save-dir",
            save,
        ],
        false,
    );
    std::thread::sleep(Duration::from_millis(300));
    (cli, format!("sip:alice@127.0.0.1:{port}"))
}

fn bob(command: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--user",
        "bob",
        "--domain",
        "127.0.0.1",
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(command.iter().map(|s| s.to_string()));
    args
}

#[test]
fn send_file_and_chat_between_clis() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("save");
    let (mut alice, target) = answerer(save.to_str().unwrap());

    let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 + i / 300) as u8).collect();
    let src = dir.path().join("notes.bin");
    std::fs::write(&src, &data).unwrap();
    let sha = hex::encode(Sha256::digest(&data));
    let args = bob(&["send-file", &target, src.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sender = Cli::spawn(&args, false);
    let offer = sender.wait_line("file offer", 20);
    assert_eq!(
        offer,
        format!("file offer name=notes.bin size=700000 sha256={sha}")
    );
    let sent = sender.wait_line("file sent", 30);
    assert_eq!(sent, format!("file sent size=700000 sha256={sha}"));
    assert_eq!(sender.wait_code(15), 0, "{:?}", sender.seen);
    assert!(sender.seen.iter().any(|l| l == "msrp connected"));
    let last_progress = sender
        .seen
        .iter()
        .rfind(|l| l.starts_with("file progress sent="))
        .cloned()
        .unwrap();
    assert_eq!(last_progress, "file progress sent=700000 total=700000");

    let received = alice.wait_line("file received", 20);
    assert_eq!(field(&received, "name"), Some("notes.bin"));
    assert_eq!(field(&received, "size"), Some("700000"));
    assert_eq!(field(&received, "sha256"), Some(sha.as_str()));
    let path = field(&received, "path").unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert!(
        alice
            .seen
            .iter()
            .any(|l| l == "file progress received=700000 total=700000"),
        "{:?}",
        alice.seen
    );

    let args = bob(&["chat", &target]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut chat = Cli::spawn(&args, true);
    chat.wait_line("msrp connected", 20);
    chat.send("hello alice, how are you?");
    let line = alice.wait_line("chat from=", 20);
    assert_eq!(
        line,
        "chat from=sip:bob@127.0.0.1 text=\"hello alice, how are you?\""
    );
    chat.send("/quit");
    assert_eq!(chat.wait_code(15), 0, "{:?}", chat.seen);
    assert!(
        chat.seen.iter().any(|l| l == "msrp closed"),
        "{:?}",
        chat.seen
    );
}

#[test]
fn msrp_and_buddy_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.bin");
    let cases: Vec<Vec<String>> = vec![
        bob(&["send-file", "sip:x@127.0.0.1", missing.to_str().unwrap()]),
        bob(&["send-file", "sip:x@127.0.0.1"]),
        bob(&["chat"]),
        bob(&["--msrp-relay", "http://relay:80", "chat", "sip:x@127.0.0.1"]),
        bob(&["--msrp-relay", "msrp://relay:2855/session;tcp", "chat", "x"]),
        bob(&["buddy", "list"]),
        bob(&["buddy", "add"]),
        bob(&["buddy", "--xcap-root", "http://plain/xcap-root", "list"]),
        bob(&["answer", "--save-dir"]),
    ];
    for args in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
