//! Message summary for message-waiting indication (RFC 3842, `application/simple-message-summary`).
//!
//! ```text
//! Messages-Waiting: yes
//! Message-Account: sip:alice@vmail.example.com
//! Voice-Message: 2/8 (0/2)
//! ```

use super::SimpleError;

/// Largest body accepted, in bytes.
pub const MAX_BYTES: usize = 64 * 1024;

/// New/old counts of one message class, with the urgent subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageCounts {
    /// New messages.
    pub new: u32,
    /// Old messages.
    pub old: u32,
    /// New urgent messages.
    pub urgent_new: u32,
    /// Old urgent messages.
    pub urgent_old: u32,
}

/// A message-summary body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageSummary {
    /// `Messages-Waiting`.
    pub waiting: bool,
    /// `Message-Account`.
    pub account: Option<String>,
    /// `Voice-Message` counts.
    pub voice: Option<MessageCounts>,
    /// Other classes (`Fax-Message`, `Pager-Message`, `Multimedia-Message`, `Text-Message`,
    /// `None`) as (class header name, counts).
    pub other: Vec<(String, MessageCounts)>,
    /// Extension header lines of the summary section, in order.
    pub headers: Vec<(String, String)>,
    /// The optional message-header section after the empty line, verbatim.
    pub details: String,
}

fn parse_pair(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('/')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

fn parse_counts(v: &str) -> Option<MessageCounts> {
    let (main, urgent) = match v.split_once('(') {
        Some((m, u)) => (m, Some(u.trim().strip_suffix(')')?)),
        None => (v, None),
    };
    let (new, old) = parse_pair(main)?;
    let (urgent_new, urgent_old) = match urgent {
        Some(u) => parse_pair(u)?,
        None => (0, 0),
    };
    Some(MessageCounts {
        new,
        old,
        urgent_new,
        urgent_old,
    })
}

const CLASSES: &[&str] = &[
    "voice-message",
    "fax-message",
    "pager-message",
    "multimedia-message",
    "text-message",
    "none",
];

impl MessageSummary {
    /// Parse a message-summary body (CRLF or LF line ends; header names case-insensitive).
    pub fn parse(input: &[u8]) -> Result<MessageSummary, SimpleError> {
        if input.len() > MAX_BYTES {
            return Err(SimpleError::TooLarge { limit: MAX_BYTES });
        }
        let text = std::str::from_utf8(input).map_err(|_| SimpleError::NotUtf8)?;
        let mut m = MessageSummary::default();
        let mut seen_waiting = false;
        let mut lines = text.split('\n');
        let mut consumed = 0usize;
        for raw in lines.by_ref() {
            consumed += raw.len() + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                if seen_waiting {
                    break;
                }
                continue;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| {
                SimpleError::MessageSummary(format!("line without a colon: {line:.60}"))
            })?;
            let lname = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if m.headers.len() + m.other.len() > 64 {
                return Err(SimpleError::MessageSummary("too many lines".into()));
            }
            match lname.as_str() {
                "messages-waiting" => {
                    seen_waiting = true;
                    m.waiting = match value.to_ascii_lowercase().as_str() {
                        "yes" => true,
                        "no" => false,
                        _ => return Err(SimpleError::invalid("Messages-Waiting", value)),
                    };
                }
                "message-account" => m.account = Some(value.to_string()),
                c if CLASSES.contains(&c) => {
                    let counts = parse_counts(value)
                        .ok_or_else(|| SimpleError::invalid("message counts", value))?;
                    if c == "voice-message" {
                        m.voice = Some(counts);
                    } else {
                        m.other.push((name.trim().to_string(), counts));
                    }
                }
                _ => m.headers.push((name.trim().to_string(), value.to_string())),
            }
        }
        if !seen_waiting {
            return Err(SimpleError::MessageSummary(
                "no Messages-Waiting line".into(),
            ));
        }
        m.details = text
            .get(consumed.min(text.len())..)
            .unwrap_or_default()
            .to_string();
        Ok(m)
    }

    /// Print as a message-summary body (CRLF line ends).
    pub fn to_body(&self) -> String {
        let mut out = format!(
            "Messages-Waiting: {}\r\n",
            if self.waiting { "yes" } else { "no" }
        );
        if let Some(a) = &self.account {
            out.push_str(&format!("Message-Account: {a}\r\n"));
        }
        let counts =
            |c: &MessageCounts| format!("{}/{} ({}/{})", c.new, c.old, c.urgent_new, c.urgent_old);
        if let Some(v) = &self.voice {
            out.push_str(&format!("Voice-Message: {}\r\n", counts(v)));
        }
        for (n, c) in &self.other {
            out.push_str(&format!("{n}: {}\r\n", counts(c)));
        }
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if !self.details.is_empty() {
            out.push_str("\r\n");
            out.push_str(&self.details);
        }
        out
    }
}
