//! The stdout event lines (`event key=value ...`) and the process exit codes.

use std::io::Write;

use tandem_client_core::UaError;

/// Process exit codes of `tandem-cli`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went as asked.
    Success = 0,
    /// The peer or registrar refused (a 3xx–6xx final response).
    Refused = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Authentication failed (wrong credentials).
    AuthFailed = 3,
    /// Timeout or a network, transport or DNS error.
    Network = 4,
    /// Interrupted by SIGINT/SIGTERM.
    Interrupted = 5,
}

impl Exit {
    /// The exit code for a user-agent error.
    pub fn for_error(err: &UaError) -> Exit {
        match err {
            UaError::Rejected { .. } => Exit::Refused,
            UaError::AuthFailed { .. } => Exit::AuthFailed,
            UaError::Config(_) => Exit::Usage,
            UaError::Cancelled => Exit::Interrupted,
            _ => Exit::Network,
        }
    }

    /// The numeric process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// One stdout event line under construction: `name key=value key="two words"`.
#[derive(Debug, Clone)]
pub struct Event {
    line: String,
}

impl Event {
    /// Starts an event line with its name.
    pub fn new(name: &str) -> Self {
        Event {
            line: name.to_string(),
        }
    }

    /// Appends `key=value`, quoting the value when it is empty or has spaces, quotes or `=`.
    pub fn kv(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        let value = value.to_string();
        self.line.push(' ');
        self.line.push_str(key);
        self.line.push('=');
        let needs_quotes = value.is_empty()
            || value
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\');
        if needs_quotes {
            self.line.push('"');
            for c in value.chars() {
                match c {
                    '"' => self.line.push_str("\\\""),
                    '\\' => self.line.push_str("\\\\"),
                    '\n' => self.line.push_str("\\n"),
                    '\r' => self.line.push_str("\\r"),
                    c => self.line.push(c),
                }
            }
            self.line.push('"');
        } else {
            self.line.push_str(&value);
        }
        self
    }

    /// The finished line (without newline).
    pub fn as_str(&self) -> &str {
        &self.line
    }

    /// Writes the line to stdout and flushes, so a test reading the pipe sees it at once.
    pub fn emit(self) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (the reader went away) is not a reason to abort the SIP work.
        let _ = writeln!(out, "{}", self.as_str());
        let _ = out.flush();
    }
}

/// Prints `failed ...` for an error, with the status and reason of a rejection.
pub fn emit_failure(err: &UaError) {
    let ev = match err {
        UaError::Rejected { status, reason } => Event::new("failed")
            .kv("status", status)
            .kv("reason", reason),
        UaError::AuthFailed { .. } => Event::new("failed")
            .kv("reason", "auth-failed")
            .kv("error", err),
        UaError::Timeout => Event::new("failed").kv("reason", "timeout"),
        other => Event::new("failed")
            .kv("reason", "error")
            .kv("error", other),
    };
    ev.emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let ev = Event::new("failed")
            .kv("status", 486)
            .kv("reason", "Busy Here")
            .kv("x", "")
            .kv("q", "a\"b");
        assert_eq!(
            ev.as_str(),
            r#"failed status=486 reason="Busy Here" x="" q="a\"b""#
        );
        let ev = Event::new("registered").kv("contact", "<sip:a@127.0.0.1:5060>");
        assert_eq!(ev.as_str(), "registered contact=<sip:a@127.0.0.1:5060>");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            Exit::for_error(&UaError::rejected(486, "Busy Here")).code(),
            1
        );
        assert_eq!(
            Exit::for_error(&UaError::AuthFailed { realm: None }).code(),
            3
        );
        assert_eq!(Exit::for_error(&UaError::Timeout).code(), 4);
        assert_eq!(Exit::for_error(&UaError::Network("x".into())).code(), 4);
        assert_eq!(Exit::Interrupted.code(), 5);
    }
}
