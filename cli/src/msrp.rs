//! MSRP from the command line: `chat`, `send-file`, and the MSRP offers `answer` accepts.
//!
//! Lines: `msrp connected`, `chat from=URI text=…`, `file offer name=… size=… sha256=…`,
//! `file progress sent=N total=M` / `file progress received=N total=M` (at most ten a second,
//! and always the last one), `file resumed from=N`, `file sent size=N sha256=HEX`,
//! `file received name=… size=N sha256=HEX path=…`, `msrp failed reason=…`, `msrp closed`.

use std::path::Path;
use std::time::Duration;

use tandem_client_core::msrp::{self, MsrpError, MsrpEvent, MsrpOffer, MsrpOptions, MsrpSession};
use tandem_client_core::{Account, IncomingCall, UaError, UserAgent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::commands::Interrupt;
use crate::output::{Event, Exit};

/// Smallest interval between two progress lines.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// The exit code for a session that could not start.
fn exit_for(err: &MsrpError) -> Exit {
    match err {
        MsrpError::Sip(e) => Exit::for_error(e),
        MsrpError::Config(_) => Exit::Usage,
        MsrpError::RelayAuth => Exit::AuthFailed,
        MsrpError::Refused { .. } => Exit::Refused,
        _ => Exit::Network,
    }
}

fn emit_failed(reason: &str) {
    Event::new("msrp failed").kv("reason", reason).emit();
}

/// Prints progress lines at most every [`PROGRESS_INTERVAL`], plus the final one.
struct ProgressLine {
    key: &'static str,
    last: Option<Instant>,
    pending: Option<(u64, u64)>,
}

impl ProgressLine {
    fn new(key: &'static str) -> Self {
        ProgressLine {
            key,
            last: None,
            pending: None,
        }
    }

    fn update(&mut self, bytes: u64, total: u64) {
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= PROGRESS_INTERVAL);
        if due || bytes >= total {
            self.print(bytes, total);
            self.last = Some(now);
            self.pending = None;
        } else {
            self.pending = Some((bytes, total));
        }
    }

    fn flush(&mut self) {
        if let Some((b, t)) = self.pending.take() {
            self.print(b, t);
        }
    }

    fn print(&self, bytes: u64, total: u64) {
        progress_event(self.key, bytes, total).emit();
    }
}

/// `file progress sent=N total=M` (or `received=N`).
fn progress_event(key: &str, bytes: u64, total: u64) -> Event {
    Event::new("file progress")
        .kv(key, bytes)
        .kv("total", total)
}

/// Which direction the progress events of a session count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// A chat: progress events print nothing.
    None,
    /// Bytes we send.
    Sent,
    /// Bytes we receive.
    Received,
}

/// The lines one session prints, with its progress lines throttled per direction.
struct SessionLines {
    sent: ProgressLine,
    received: ProgressLine,
    progress: Direction,
}

impl SessionLines {
    fn new(progress: Direction) -> Self {
        SessionLines {
            sent: ProgressLine::new("sent"),
            received: ProgressLine::new("received"),
            progress,
        }
    }

    /// Prints one event (`None`: the events ended); false once the session is over.
    fn show(&mut self, ev: Option<&MsrpEvent>) -> bool {
        match (ev, self.progress) {
            (Some(MsrpEvent::Closed) | None, _) => {
                Event::new("msrp closed").emit();
                return false;
            }
            (Some(MsrpEvent::Progress { bytes, total, .. }), Direction::Sent) => {
                self.sent.update(*bytes, *total);
            }
            (Some(MsrpEvent::Progress { bytes, total, .. }), Direction::Received) => {
                self.received.update(*bytes, *total);
            }
            (Some(ev), _) => print_event(ev, &mut self.sent, &mut self.received),
        }
        true
    }
}

/// Prints the lines of a file sender or receiver; returns the exit of a finished sender.
fn print_event(ev: &MsrpEvent, sent: &mut ProgressLine, received: &mut ProgressLine) {
    match ev {
        MsrpEvent::Connected => Event::new("msrp connected").emit(),
        MsrpEvent::ChatMessage { from, text, .. } => {
            Event::new("chat").kv("from", from).kv("text", text).emit();
        }
        MsrpEvent::SendFailed { message_id, status } => {
            Event::new("chat")
                .kv("failed", "yes")
                .kv("id", message_id)
                .kv("status", status)
                .emit();
        }
        MsrpEvent::Progress { .. } => {}
        MsrpEvent::Resumed { from_byte } => {
            sent.flush();
            received.flush();
            Event::new("file resumed").kv("from", from_byte).emit();
        }
        MsrpEvent::FileSent { size, sha256 } => {
            sent.flush();
            Event::new("file sent")
                .kv("size", size)
                .kv("sha256", sha256)
                .emit();
        }
        MsrpEvent::FileReceived { path, size, sha256 } => {
            received.flush();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Event::new("file received")
                .kv("name", name)
                .kv("size", size)
                .kv("sha256", sha256)
                .kv("path", path.display())
                .emit();
        }
        MsrpEvent::Retrying { attempt, reason } => {
            sent.flush();
            eprintln!(
                "tandem-cli: MSRP transfer interrupted ({reason}); offering again (attempt {attempt})"
            );
        }
        MsrpEvent::Failed { reason } => {
            sent.flush();
            received.flush();
            emit_failed(reason);
        }
        MsrpEvent::Closed => Event::new("msrp closed").emit(),
        _ => {}
    }
}

/// Lines from stdin, read on the runtime.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// `tandem-cli chat URI`: each stdin line is sent; EOF or `/quit` ends the session.
pub async fn chat(
    agent: &UserAgent,
    account: &Account,
    target: tandem_client_core::types::Uri,
    options: MsrpOptions,
    mut intr: Interrupt,
) -> Exit {
    let mut session = match msrp::start_chat(agent, account, target, options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            emit_failed(&e.to_string());
            return exit_for(&e);
        }
    };
    let mut lines = stdin_lines();
    let mut stdin_open = true;
    let mut shown = SessionLines::new(Direction::None);
    let mut exit = Exit::Success;
    let mut interrupted = false;
    loop {
        tokio::select! {
            ev = session.next_event() => {
                if let Some(MsrpEvent::Failed { reason }) = &ev {
                    exit = if reason.contains("rejected") || reason.contains("refused") {
                        Exit::Refused
                    } else {
                        Exit::Network
                    };
                }
                if !shown.show(ev.as_ref()) {
                    break;
                }
            },
            line = lines.recv(), if stdin_open => match line {
                Some(line) => {
                    let text = line.trim_end_matches(['\r', '\n']);
                    if text.trim() == "/quit" {
                        session.close();
                        stdin_open = false;
                    } else if !text.is_empty() && session.send_text(text).is_err() {
                        stdin_open = false;
                    }
                }
                None => {
                    session.close();
                    stdin_open = false;
                }
            },
            _ = intr.wait(), if !interrupted => {
                interrupted = true;
                exit = Exit::Interrupted;
                session.close();
            }
        }
    }
    exit
}

/// `tandem-cli send-file URI PATH`.
pub async fn send_file(
    agent: &UserAgent,
    account: &Account,
    target: tandem_client_core::types::Uri,
    path: &Path,
    options: MsrpOptions,
    mut intr: Interrupt,
) -> Exit {
    let info = match msrp::file_info(path).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            return Exit::Usage;
        }
    };
    Event::new("file offer")
        .kv("name", &info.name)
        .kv("size", info.size)
        .kv("sha256", &info.sha256)
        .emit();
    let mut session = match msrp::send_file(agent, account, target, info, options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            emit_failed(&e.to_string());
            return exit_for(&e);
        }
    };
    let mut shown = SessionLines::new(Direction::Sent);
    let mut exit = Exit::Network;
    let mut done = false;
    let mut interrupted = false;
    loop {
        tokio::select! {
            ev = session.next_event() => {
                match &ev {
                    Some(MsrpEvent::FileSent { .. }) => {
                        done = true;
                        exit = Exit::Success;
                    }
                    Some(MsrpEvent::Failed { reason }) if !done && !interrupted => {
                        eprintln!("tandem-cli: the transfer failed: {reason}");
                        exit = failure_exit(reason);
                    }
                    _ => {}
                }
                if !shown.show(ev.as_ref()) {
                    break;
                }
            },
            _ = intr.wait(), if !interrupted => {
                interrupted = true;
                if !done {
                    exit = Exit::Interrupted;
                }
                session.close();
            }
        }
    }
    exit
}

/// The exit code for a failure reason of a session.
fn failure_exit(reason: &str) -> Exit {
    if reason.contains("authentication") {
        Exit::AuthFailed
    } else if reason.contains("rejected") || reason.contains("refused") {
        Exit::Refused
    } else {
        Exit::Network
    }
}

/// Whether an incoming call is an MSRP offer (handled by [`answer`]).
pub fn is_msrp(incoming: &IncomingCall) -> bool {
    msrp::offer_of(incoming).is_some()
}

/// Accepts an MSRP offer in `answer` and prints its lines until it ends (or `stop`).
pub async fn answer(
    agent: &UserAgent,
    incoming: IncomingCall,
    account: &Account,
    options: MsrpOptions,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(MsrpOffer::File { selector, .. }) = msrp::offer_of(&incoming) {
        Event::new("file incoming")
            .kv("name", selector.name.unwrap_or_default())
            .kv("size", selector.size.unwrap_or(0))
            .emit();
    }
    let mut session: MsrpSession = match msrp::accept(agent, incoming, account, options).await {
        Ok(s) => s,
        Err(MsrpError::Sip(UaError::Cancelled)) => {
            Event::new("msrp closed").emit();
            return;
        }
        Err(e) => {
            eprintln!("tandem-cli: cannot accept the MSRP session: {e}");
            emit_failed(&e.to_string());
            return;
        }
    };
    let mut shown = SessionLines::new(Direction::Received);
    let mut stopping = false;
    loop {
        tokio::select! {
            ev = session.next_event() => {
                if !shown.show(ev.as_ref()) {
                    break;
                }
            },
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                session.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_exits() {
        assert_eq!(
            failure_exit("MSRP relay authentication failed"),
            Exit::AuthFailed
        );
        assert_eq!(
            failure_exit("session setup failed: rejected with 486 Busy Here"),
            Exit::Refused
        );
        assert_eq!(failure_exit("MSRP network error: timed out"), Exit::Network);
    }

    #[test]
    fn session_lines_end_on_close() {
        let mut shown = SessionLines::new(Direction::Received);
        assert!(shown.show(Some(&MsrpEvent::Connected)));
        let progress = MsrpEvent::Progress {
            transfer_id: "t".into(),
            bytes: 4,
            total: 8,
        };
        assert!(shown.show(Some(&progress)));
        assert!(shown.received.last.is_some());
        assert!(shown.sent.last.is_none());
        assert!(!shown.show(Some(&MsrpEvent::Closed)));
        assert!(!SessionLines::new(Direction::None).show(None));
    }

    #[test]
    fn progress_line_format() {
        assert_eq!(
            progress_event("sent", 5, 9).as_str(),
            "file progress sent=5 total=9"
        );
    }
}
