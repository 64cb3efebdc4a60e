//! Helpers shared by the scenarios.

use std::time::Duration;

use tandem_tests::{CliOutput, HarnessError};

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
