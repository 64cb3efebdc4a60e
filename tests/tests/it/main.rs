//! The integration test binary: one module per scenario, each against real peer processes
//! (Tandem's own binaries from `TANDEM_BIN_DIR`, see `cargo xtask test`).

mod baresip_lab;
mod common;
mod harness_selftest;
mod kamailio_cli;
mod lab_malformed;
mod lab_restart;
mod sipp_lab;
