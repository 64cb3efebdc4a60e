//! Set-up shared by the `tandem-cli` end-to-end tests: the binary, free loopback ports and
//! usage errors.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::process::Command;

/// The `tandem-cli` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tandem-cli");

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asserts that each case, after global options for user `a` on loopback, exits with 2.
pub fn assert_usage_errors(cases: &[&[&str]]) {
    let base = [
        "--user",
        "a",
        "--domain",
        "127.0.0.1",
        "--listen",
        "127.0.0.1:0",
    ];
    for case in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(case);
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{case:?}");
    }
}
