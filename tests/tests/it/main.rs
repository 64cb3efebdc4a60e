//! The integration test binary: one module per scenario, each against real peer processes.

mod harness_selftest;
