//! Helpers shared by the scenarios.

use std::time::Duration;

use tandem_tests::process::ChildGuard;
use tandem_tests::{CliOutput, HarnessError, LabOptions, LabServer, TestDir};

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Asserts a `tandem-cli` run exited with `code`, printing its output otherwise.
#[track_caller]
pub fn assert_exit(out: &CliOutput, code: i32) {
    assert_eq!(out.code(), Some(code), "tandem-cli:\n{}", out.dump());
}

/// Asserts a `tandem-cli` run printed an `event` line.
#[track_caller]
pub fn assert_event(out: &CliOutput, event: &str) {
    assert!(
        out.has_event(event),
        "no `{event}` line from tandem-cli:\n{}",
        out.dump()
    );
}

/// Unwraps a harness result, printing the error readably.
#[track_caller]
pub fn ok<T>(r: Result<T, HarnessError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// Waits up to `limit` for `child` to exit and asserts it exited 0, printing `who` and its output tails otherwise.
#[track_caller]
pub fn assert_exits_ok(child: &mut ChildGuard, limit: Duration, who: &str) {
    let status = ok(child.wait_exit(limit));
    assert_eq!(status.code(), Some(0), "{who}:\n{}", child.tails());
}

/// Like [`assert_exits_ok`], printing the child's whole stdout as well on failure; returns that stdout.
#[track_caller]
pub fn assert_exits_ok_verbose(child: &mut ChildGuard, limit: Duration) -> String {
    let status = ok(child.wait_exit(limit));
    let out = child.stdout();
    assert_eq!(status.code(), Some(0), "{out}\n{}", child.tails());
    out
}

/// A lab server with users alice/alicepw and bob/bobpw that offers only MD5 digest,
/// the one algorithm baresip 1.0 (libre) knows.
pub fn baresip_lab(dir: &TestDir) -> LabServer {
    ok(LabServer::start(
        LabOptions {
            auth_algorithms: vec!["MD5".into()],
            ..LabOptions::default()
                .user("alice", "alicepw")
                .user("bob", "bobpw")
        },
        dir.path(),
    ))
}
