//! Session-mode IM and file transfer (MSRP, RFC 4975/5547) between two `tandem-cli` processes through the
//! lab's MSRP relay (RFC 4976): a chat line each way, a 50 MB file over TCP (`msrp://`) and over TLS
//! (`msrps://`, the lab CA) that arrives byte-identical, and a transfer whose sender is killed with SIGKILL
//! mid-way and resumed by running it again.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use tandem_tests::process::{ChildGuard, Stream};
use tandem_tests::{CliAccount, LabOptions, LabServer, TestDir, Transport};

use crate::common::{ok, secs};

/// Unwraps an I/O-ish result in a helper, naming what failed.
#[track_caller]
fn must<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The size of the acceptance files: 50 MB.
const FILE_SIZE: usize = 50 * 1024 * 1024;

fn lab(dir: &TestDir, msrp_toml: &str) -> LabServer {
    ok(LabServer::start(
        LabOptions {
            extra_toml: msrp_toml.to_string(),
            ..LabOptions::default()
                .user("alice", "alicepw")
                .user("bob", "bobpw")
        },
        dir.path(),
    ))
}

/// The relay URI for `tandem-cli --msrp-relay`: `msrp://IP:PORT;tcp` or `msrps://IP:PORT;tcp`.
fn relay_uri(lab: &LabServer, tls: bool) -> String {
    let key = if tls { "msrps" } else { "msrp" };
    let addr = lab
        .service(key)
        .unwrap_or_else(|| panic!("the lab's ready line has no {key}= field"));
    format!("{key}://{addr};tcp")
}

/// An account on the lab over UDP that trusts the lab CA (for `msrps://`).
fn account(lab: &LabServer, user: &str) -> CliAccount {
    let mut a = CliAccount::new(
        user,
        lab.domain(),
        &format!("{user}pw"),
        lab.udp(),
        Transport::Udp,
    );
    a.ca_file = Some(lab.ca_cert());
    a
}

/// Writes `size` pseudo-random bytes (xorshift64*, not compressible) to `path`.
fn random_file(path: &Path, size: usize, seed: u64) {
    let mut f = std::io::BufWriter::new(must(std::fs::File::create(path), "creating the payload"));
    let mut state = seed | 1;
    let mut block = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
        let n = left.min(block.len());
        must(f.write_all(&block[..n]), "writing the payload");
        left -= n;
    }
    must(f.flush(), "writing the payload");
}

/// The sha256 of a file (coreutils `sha256sum`), lower-case hex.
fn sha256(path: &Path) -> String {
    let out = must(
        Command::new("sha256sum").arg(path).output(),
        "running sha256sum",
    );
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Whether two files have the same bytes (compared block by block, not only by hash).
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        must(std::fs::File::open(a), "opening the sent file"),
        must(std::fs::File::open(b), "opening the received file"),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match must(f.read(&mut buf[n..]), "reading a file") {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// The value of `key=` in an event line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The lab's log (`<dir>/tandem-lab.stderr`, RUST_LOG=info).
fn lab_log(dir: &TestDir) -> String {
    std::fs::read_to_string(dir.path().join("tandem-lab.stderr")).unwrap_or_default()
}

/// Asserts the relay issued a session (AUTH with the SIP credentials) to each of `users`.
fn assert_relay_sessions(dir: &TestDir, users: &[&str]) {
    let log = lab_log(dir);
    for user in users {
        assert!(
            log.lines().any(|l| l.contains("MSRP relay: session issued")
                && l.contains(&format!("user={user} "))),
            "the relay issued no session to {user}:\n{log}"
        );
    }
}

/// Waits until the relay logs a closed connection that forwarded at least `bytes` body bytes
/// (the sender's connection to the relay), so the transfer went through the relay.
fn wait_relayed(dir: &TestDir, bytes: usize) {
    let deadline = std::time::Instant::now() + secs(20);
    loop {
        let log = lab_log(dir);
        let most = log
            .lines()
            .filter(|l| l.contains("MSRP relay: connection closed"))
            .filter_map(|l| field(l, "forwarded_bytes")?.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        if most >= bytes {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no relay connection forwarded {bytes} bytes (most: {most}):\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `tandem-cli answer` for `user` through the relay, saving files in `save_dir`; waits until registered.
fn answer(
    lab: &LabServer,
    user: &str,
    relay: &str,
    save_dir: &Path,
    dir: &TestDir,
    name: &str,
) -> ChildGuard {
    let save = save_dir.display().to_string();
    let mut a = ok(account(lab, user).spawn(
        name,
        &["answer", "--msrp-relay", relay, "--save-dir", &save],
        dir.path(),
    ));
    ok(a.wait_for_line(Stream::Stdout, "registered", secs(10)));
    a
}

/// `tandem-cli send-file` from alice to bob through the relay.
fn send_file(lab: &LabServer, relay: &str, file: &Path, dir: &TestDir, name: &str) -> ChildGuard {
    let path = file.display().to_string();
    ok(account(lab, "alice").spawn(
        name,
        &[
            "--msrp-relay",
            relay,
            "send-file",
            &format!("sip:bob@{}", lab.domain()),
            &path,
        ],
        dir.path(),
    ))
}

/// The `file received … path=P` line's path and sha256, after checking its size.
fn received(bob: &mut ChildGuard, size: usize, timeout: u64) -> (PathBuf, String) {
    let line = ok(bob.wait_for_line(Stream::Stdout, "file received", secs(timeout)));
    assert_eq!(
        field(&line, "size"),
        Some(size.to_string().as_str()),
        "{line}"
    );
    let sha = field(&line, "sha256")
        .unwrap_or_else(|| panic!("no sha256= in {line}"))
        .to_string();
    let path = line
        .split_once(" path=")
        .map(|(_, p)| PathBuf::from(p.trim().trim_matches('"')))
        .unwrap_or_else(|| panic!("no path= in {line}"));
    (path, sha)
}

/// A 50 MB file from alice to bob through the relay over `tls` or TCP arrives byte-identical.
fn transfer_50mb(tls: bool) {
    let dir = ok(TestDir::new(if tls {
        "simple-msrp-file-tls"
    } else {
        "simple-msrp-file-tcp"
    }));
    let lab = lab(&dir, "");
    let relay = relay_uri(&lab, tls);
    let save = ok(dir.subdir("bob-files"));
    let source = dir.path().join("payload.bin");
    random_file(&source, FILE_SIZE, if tls { 0x7a11 } else { 0x7c9 });
    let want = sha256(&source);

    let mut bob = answer(&lab, "bob", &relay, &save, &dir, "cli-answer-bob");
    let mut alice = send_file(&lab, &relay, &source, &dir, "cli-send-file");
    let status = ok(alice.wait_exit(secs(180)));
    let out = alice.stdout();
    assert!(status.success(), "send-file failed:\n{}", alice.tails());
    let offer = out
        .lines()
        .find(|l| l.starts_with("file offer"))
        .unwrap_or_else(|| panic!("no `file offer` line:\n{out}"));
    assert_eq!(field(offer, "size"), Some(FILE_SIZE.to_string().as_str()));
    assert_eq!(field(offer, "sha256"), Some(want.as_str()), "{offer}");
    let sent = out
        .lines()
        .find(|l| l.starts_with("file sent"))
        .unwrap_or_else(|| panic!("no `file sent` line:\n{out}"));
    assert_eq!(field(sent, "sha256"), Some(want.as_str()), "{sent}");
    assert!(out.contains("file progress sent="), "{out}");

    let (path, sha) = received(&mut bob, FILE_SIZE, 30);
    assert_eq!(sha, want);
    assert_eq!(sha256(&path), want, "the saved file's own hash");
    assert_relay_sessions(&dir, &["alice", "bob"]);
    wait_relayed(&dir, FILE_SIZE);
    assert!(same_bytes(&source, &path));
    assert!(
        path.starts_with(&save),
        "{} is not in the save dir",
        path.display()
    );
    bob.stop();
}

#[test]
fn file_50mb_through_relay_over_tcp() {
    transfer_50mb(false);
}

#[test]
fn file_50mb_through_relay_over_tls() {
    transfer_50mb(true);
}

#[test]
fn file_transfer_resumes_after_the_sender_is_killed() {
    let dir = ok(TestDir::new("simple-msrp-resume"));
    // The relay paces each connection at 8 MB/s, so the transfer takes a few seconds and the kill
    // lands in the middle of it whatever the machine's speed.
    let lab = lab(
        &dir,
        "\n[msrp]\nport = 0\ntls_port = 0\nrate_limit_bytes_per_sec = 8000000\n",
    );
    let relay = relay_uri(&lab, true);
    let save = ok(dir.subdir("bob-files"));
    let source = dir.path().join("resume.bin");
    random_file(&source, FILE_SIZE, 0x5eed);
    let want = sha256(&source);
    let mut bob = answer(&lab, "bob", &relay, &save, &dir, "cli-answer-bob");

    let mut first = send_file(&lab, &relay, &source, &dir, "cli-send-file-1");
    // progress lines come at most ~10 a second; kill once a fifth of the file is out
    let mut killed_at = 0usize;
    for n in 1.. {
        let line = ok(first.wait_for_nth_line(Stream::Stdout, "file progress sent=", n, secs(60)));
        let sent: usize = field(&line, "sent").unwrap().parse().unwrap();
        assert!(sent < FILE_SIZE, "the transfer finished before the kill");
        if sent >= FILE_SIZE / 5 {
            killed_at = sent;
            break;
        }
    }
    first.signal(libc::SIGKILL);
    ok(first.wait_exit(secs(10)));
    assert!(
        bob.matching_lines(Stream::Stdout, "file received")
            .is_empty(),
        "bob cannot have the whole file yet"
    );

    // run the same transfer again: it continues where bob's partial file ends
    let mut second = send_file(&lab, &relay, &source, &dir, "cli-send-file-2");
    let status = ok(second.wait_exit(secs(180)));
    assert!(status.success(), "send-file failed:\n{}", second.tails());
    let out = second.stdout();
    let resumed = out
        .lines()
        .find(|l| l.starts_with("file resumed"))
        .unwrap_or_else(|| panic!("no `file resumed` line:\n{out}"));
    let from: usize = field(resumed, "from").unwrap().parse().unwrap();
    assert!(
        from > 0 && from < FILE_SIZE,
        "resumed from {from} (killed after {killed_at} sent)"
    );
    let sent = out
        .lines()
        .find(|l| l.starts_with("file sent"))
        .unwrap_or_else(|| panic!("no `file sent` line:\n{out}"));
    assert_eq!(field(sent, "sha256"), Some(want.as_str()), "{sent}");

    let (path, sha) = received(&mut bob, FILE_SIZE, 30);
    assert_eq!(sha, want);
    assert_eq!(sha256(&path), want);
    assert!(same_bytes(&source, &path));
    bob.stop();
}

#[test]
fn chat_line_each_way_through_relay() {
    let dir = ok(TestDir::new("simple-msrp-chat"));
    let lab = lab(&dir, "");
    let relay = relay_uri(&lab, false);
    let save = ok(dir.subdir("files"));

    for (from, to, text) in [
        ("alice", "bob", "hello bob, over msrp"),
        ("bob", "alice", "hi alice, back over msrp"),
    ] {
        let mut listener = answer(&lab, to, &relay, &save, &dir, &format!("cli-answer-{to}"));
        let mut chat = ok(account(&lab, from).spawn_interactive(
            &format!("cli-chat-{from}"),
            &[
                "--msrp-relay",
                &relay,
                "chat",
                &format!("sip:{to}@{}", lab.domain()),
            ],
            dir.path(),
        ));
        ok(chat.wait_for_line(Stream::Stdout, "msrp connected", secs(15)));
        ok(chat.send_line(text));
        let line =
            ok(listener.wait_for_line(Stream::Stdout, &format!("chat from=sip:{from}@"), secs(10)));
        assert!(line.contains(text), "{line}");
        assert_relay_sessions(&dir, &[from, to]);
        ok(chat.send_line("/quit"));
        let status = ok(chat.wait_exit(secs(10)));
        assert!(status.success(), "chat:\n{}", chat.tails());
        assert_exit_ok(&chat);
        listener.stop();
    }
}

/// No `failed` line from a process that ended well.
fn assert_exit_ok(p: &ChildGuard) {
    assert!(
        p.matching_lines(Stream::Stdout, "failed").is_empty(),
        "{}",
        p.tails()
    );
}
