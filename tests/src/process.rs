//! `ChildGuard`: a peer process in its own process group, logs captured to files, stopped on drop.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, IoContext, Result};

/// How long a process gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How many lines of each log a failing test prints.
const TAIL_LINES: usize = 40;

/// A child process started in its own process group; on drop the group gets SIGTERM, then SIGKILL.
pub struct ChildGuard {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

/// Which captured stream to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Both (stdout first).
    Both,
}

/// Whether `line` matches `pattern`: the pattern's pieces separated by `.*` occur in `line` in that order.
pub fn line_matches(line: &str, pattern: &str) -> bool {
    let mut rest = line;
    for piece in pattern.split(".*") {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

fn send_signal(pgid: i32, signal: i32) {
    // The one place the harness needs libc: signalling a whole process group (negative pid), which std cannot do.
    #[allow(unsafe_code)]
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

impl ChildGuard {
    /// Starts `command` in a new process group with stdin closed and stdout/stderr written to
    /// `<log_dir>/<name>.stdout` and `.stderr` (a counter is added when the name is taken).
    pub fn spawn(name: &str, command: Command, log_dir: &Path) -> Result<Self> {
        Self::spawn_inner(name, command, log_dir, false)
    }

    /// Like [`ChildGuard::spawn`], but with a pipe to the process's stdin (see [`ChildGuard::send_line`]).
    pub fn spawn_with_stdin(name: &str, command: Command, log_dir: &Path) -> Result<Self> {
        Self::spawn_inner(name, command, log_dir, true)
    }

    fn spawn_inner(name: &str, mut command: Command, log_dir: &Path, stdin: bool) -> Result<Self> {
        let mut stem = name.to_string();
        let mut n = 1;
        while log_dir.join(format!("{stem}.stdout")).exists() {
            n += 1;
            stem = format!("{name}-{n}");
        }
        let stdout = log_dir.join(format!("{stem}.stdout"));
        let stderr = log_dir.join(format!("{stem}.stderr"));
        let out = File::create(&stdout).ctx(|| format!("creating {}", stdout.display()))?;
        let err = File::create(&stderr).ctx(|| format!("creating {}", stderr.display()))?;
        command
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let mut child = command
            .spawn()
            .ctx(|| format!("starting {name}: {command:?}"))?;
        let stdin = child.stdin.take();
        Ok(ChildGuard {
            name: stem,
            child,
            stdin,
            stdout,
            stderr,
            status: None,
        })
    }

    /// The process's name in logs and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes `line` and a newline to the process's stdin (started with [`ChildGuard::spawn_with_stdin`]).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let name = self.name.clone();
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(HarnessError::Protocol {
                what: name,
                detail: "started without a stdin pipe".into(),
            });
        };
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .ctx(|| format!("writing {line:?} to the stdin of {name}"))
    }

    /// Closes the stdin pipe (the process reads end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The file stdout goes to.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    fn text(&self, stream: Stream) -> String {
        match stream {
            Stream::Stdout => self.stdout(),
            Stream::Stderr => self.stderr(),
            Stream::Both => format!("{}\n{}", self.stdout(), self.stderr()),
        }
    }

    /// The lines of `stream` so far that match `pattern` (see [`line_matches`]).
    pub fn matching_lines(&self, stream: Stream, pattern: &str) -> Vec<String> {
        self.text(stream)
            .lines()
            .filter(|l| line_matches(l, pattern))
            .map(str::to_string)
            .collect()
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits until `stream` has a line matching `pattern` (from the start of the output) and returns it.
    pub fn wait_for_line(
        &mut self,
        stream: Stream,
        pattern: &str,
        timeout: Duration,
    ) -> Result<String> {
        self.wait_for_nth_line(stream, pattern, 1, timeout)
    }

    /// Waits until `stream` has `n` lines matching `pattern` and returns the `n`th.
    pub fn wait_for_nth_line(
        &mut self,
        stream: Stream,
        pattern: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<String> {
        let start = Instant::now();
        loop {
            // Read the status first, so output written just before exiting is still seen below.
            let status = self.try_status();
            if let Some(line) = self.matching_lines(stream, pattern).into_iter().nth(n - 1) {
                return Ok(line);
            }
            let what = format!("line #{n} matching {pattern:?} from {}", self.name);
            if let Some(status) = status {
                return Err(HarnessError::Exited {
                    what: self.name.clone(),
                    status,
                    waiting_for: what,
                });
            }
            if start.elapsed() >= timeout {
                return Err(HarnessError::Timeout {
                    what,
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status() {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                return Err(HarnessError::Timeout {
                    what: format!("{} to exit", self.name),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (e.g. `libc::SIGINT`) to the process group.
    pub fn signal(&mut self, signal: i32) {
        if self.is_running()
            && let Ok(pid) = i32::try_from(self.child.id())
        {
            send_signal(pid, signal);
        }
    }

    /// Stops the process group: SIGTERM, a short grace period, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return self.try_status();
        };
        // Once the leader has been reaped its pid (= the group id) may be reused: only signal a group we know is ours.
        if self.status.is_some() {
            return self.status;
        }
        if self.is_running() {
            send_signal(pid, libc::SIGTERM);
            let deadline = Instant::now() + TERM_GRACE;
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Children of the leader (e.g. Kamailio's workers) may outlive it: sweep the group.
        send_signal(pid, libc::SIGKILL);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        self.status
    }

    /// The last lines of stdout and stderr, for failure reports.
    pub fn tails(&self) -> String {
        format!(
            "----- {} stdout (tail) -----\n{}\n----- {} stderr (tail) -----\n{}",
            self.name,
            tail(&self.stdout(), TAIL_LINES),
            self.name,
            tail(&self.stderr(), TAIL_LINES)
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.tails());
        }
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(line_matches("ready udp=1.2.3.4:5 tcp=x", "ready udp="));
        assert!(line_matches("ready udp=1.2.3.4:5 tcp=x", "ready.*tcp="));
        assert!(!line_matches("ready udp=1.2.3.4:5", "tcp=.*ready"));
    }

    #[test]
    fn guard_captures_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new("sh");
        c.args(["-c", "echo hello; echo oops >&2; exec sleep 30"]);
        let mut g = ChildGuard::spawn("sh", c, dir.path()).unwrap();
        g.wait_for_line(Stream::Stdout, "hello", Duration::from_secs(5))
            .unwrap();
        g.wait_for_line(Stream::Stderr, "oops", Duration::from_secs(5))
            .unwrap();
        assert!(
            g.wait_for_line(Stream::Stdout, "never", Duration::from_millis(100))
                .is_err()
        );
        assert!(g.is_running());
        let status = g.stop().unwrap();
        assert!(!status.success());
        assert!(!g.is_running());
    }

    #[test]
    fn stdin_lines_reach_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new("sh");
        c.args(["-c", "read a; echo got-$a; read b; echo got-$b"]);
        let mut g = ChildGuard::spawn_with_stdin("reader", c, dir.path()).unwrap();
        g.send_line("one").unwrap();
        g.wait_for_line(Stream::Stdout, "got-one", Duration::from_secs(5))
            .unwrap();
        g.send_line("two").unwrap();
        g.wait_for_line(Stream::Stdout, "got-two", Duration::from_secs(5))
            .unwrap();
        assert_eq!(g.wait_exit(Duration::from_secs(5)).unwrap().code(), Some(0));
        let mut plain = ChildGuard::spawn("plain", Command::new("true"), dir.path()).unwrap();
        assert!(plain.send_line("x").is_err());
    }

    #[test]
    fn exit_is_reported_while_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new("sh");
        c.args(["-c", "echo bye; exit 3"]);
        let mut g = ChildGuard::spawn("short", c, dir.path()).unwrap();
        let err = g
            .wait_for_line(Stream::Both, "ready", Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(err, HarnessError::Exited { .. }), "{err}");
        assert_eq!(g.wait_exit(Duration::from_secs(1)).unwrap().code(), Some(3));
    }
}
