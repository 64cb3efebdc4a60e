//! Shared helpers for tests that run the real `tandem-lab` binary: a guard that kills the
//! process when dropped, and start-up up to the `ready …` line.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the server when dropped (also when the test fails).
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let mut child = self.0.take().unwrap();
        let status = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(!exit.success(), "tandem-lab exited normally after SIGKILL");
    }

    /// SIGTERM, and wait (up to ten seconds) for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().unwrap();
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        panic!("tandem-lab did not stop on SIGTERM");
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns `cmd` (a `tandem-lab … serve` command) with its stdout piped and collects the
/// stdout lines up to the `ready …` line (waiting at most `timeout` for each); returns the
/// server (still running) and the lines, the ready line last.
pub fn spawn_until_ready(mut cmd: Command, timeout: Duration) -> (ChildGuard, Vec<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard(Some(child));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no ready line from tandem-lab ({e}); got {lines:#?}"));
        let done = line.starts_with("ready ");
        lines.push(line);
        if done {
            return (guard, lines);
        }
    }
}
