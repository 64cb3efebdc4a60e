//! The stdin control channel: one command a line (`hold`, `resume`, `mute`, `unmute`, `dtmf 12#`,
//! `transfer URI`, `quality`, `hangup`, `video on|off`, `camera pattern|FILE.y4m|none`), so that
//! tests and scripts can drive a running call.

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;

use crate::args::parse_digits;

/// The longest control line we read; longer lines are rejected as a whole.
const MAX_LINE: usize = 4096;

/// How many commands may wait for a slow call task before the oldest are dropped.
const QUEUE: usize = 64;

/// One command read from stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Put the call on hold (re-INVITE with a=sendonly).
    Hold,
    /// Resume a held call.
    Resume,
    /// Stop sending our audio (RTP keeps flowing with silence).
    Mute,
    /// Send our audio again.
    Unmute,
    /// Send DTMF digits (RFC 4733, SIP INFO when the peer has no telephone-event).
    Dtmf(String),
    /// Blind transfer to a URI (REFER).
    Transfer(String),
    /// Print a `quality` line now.
    Quality,
    /// Hang up.
    Hangup,
    /// Add video to the call (re-INVITE) or remove it (port 0).
    Video(bool),
    /// Switch what we send: `pattern`, `pattern:WxH@FPS`, a Y4M file, or `none`.
    Camera(tandem_client_core::VideoSourceSpec),
}

/// Why a control line was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The first word is not a command.
    #[error(
        "unknown command {0:?} (hold, resume, mute, unmute, dtmf DIGITS, transfer URI, quality, hangup, video on|off, camera SOURCE)"
    )]
    Unknown(String),
    /// The command needs an argument.
    #[error("{0} needs an argument")]
    MissingArgument(&'static str),
    /// The command takes no argument.
    #[error("{0} takes no argument")]
    UnexpectedArgument(&'static str),
    /// The argument is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The line is too long.
    #[error("control line longer than {MAX_LINE} bytes")]
    TooLong,
}

impl Control {
    /// Parses one line; `Ok(None)` for a blank line or a `#` comment.
    pub fn parse(line: &str) -> Result<Option<Control>, ControlError> {
        if line.len() > MAX_LINE {
            return Err(ControlError::TooLong);
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (line, ""),
        };
        let no_arg = |name: &'static str, c: Control| {
            if rest.is_empty() {
                Ok(Some(c))
            } else {
                Err(ControlError::UnexpectedArgument(name))
            }
        };
        match word.to_ascii_lowercase().as_str() {
            "hold" => no_arg("hold", Control::Hold),
            "resume" | "unhold" => no_arg("resume", Control::Resume),
            "mute" => no_arg("mute", Control::Mute),
            "unmute" => no_arg("unmute", Control::Unmute),
            "quality" => no_arg("quality", Control::Quality),
            "hangup" | "bye" => no_arg("hangup", Control::Hangup),
            "dtmf" => {
                if rest.is_empty() {
                    return Err(ControlError::MissingArgument("dtmf"));
                }
                parse_digits(rest)
                    .map(|d| Some(Control::Dtmf(d)))
                    .map_err(ControlError::Invalid)
            }
            "transfer" => {
                if rest.is_empty() {
                    return Err(ControlError::MissingArgument("transfer"));
                }
                if rest.contains(char::is_whitespace) {
                    return Err(ControlError::Invalid(format!(
                        "transfer takes one URI, not {rest:?}"
                    )));
                }
                Ok(Some(Control::Transfer(rest.to_string())))
            }
            "video" => match rest.to_ascii_lowercase().as_str() {
                "on" => Ok(Some(Control::Video(true))),
                "off" => Ok(Some(Control::Video(false))),
                "" => Err(ControlError::MissingArgument("video")),
                _ => Err(ControlError::Invalid(format!(
                    "video takes on or off, not {rest:?}"
                ))),
            },
            "camera" => {
                if rest.is_empty() {
                    return Err(ControlError::MissingArgument("camera"));
                }
                rest.parse()
                    .map(|s| Some(Control::Camera(s)))
                    .map_err(ControlError::Invalid)
            }
            _ => Err(ControlError::Unknown(word.to_string())),
        }
    }
}

/// Starts reading stdin in the background; every command goes to every subscriber of the returned sender.
/// Bad lines are reported on stderr and skipped; end of input (e.g. stdin is /dev/null) ends the reader quietly.
pub fn spawn_stdin_reader() -> broadcast::Sender<Control> {
    let (tx, _) = broadcast::channel(QUEUE);
    let sender = tx.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => match Control::parse(&line) {
                    Ok(Some(cmd)) => {
                        if sender.send(cmd).is_err() {
                            eprintln!("tandem-cli: no call to apply {:?} to", line.trim());
                        }
                    }
                    Ok(None) => {}
                    Err(e) => eprintln!("tandem-cli: stdin: {e}"),
                },
                Ok(None) => break,
                Err(e) => {
                    eprintln!("tandem-cli: stdin: {e}");
                    break;
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(Control::parse("hold").unwrap(), Some(Control::Hold));
        assert_eq!(
            Control::parse("  RESUME \r").unwrap(),
            Some(Control::Resume)
        );
        assert_eq!(Control::parse("mute").unwrap(), Some(Control::Mute));
        assert_eq!(Control::parse("unmute").unwrap(), Some(Control::Unmute));
        assert_eq!(Control::parse("hangup").unwrap(), Some(Control::Hangup));
        assert_eq!(Control::parse("quality").unwrap(), Some(Control::Quality));
        assert_eq!(
            Control::parse("dtmf 12#").unwrap(),
            Some(Control::Dtmf("12#".into()))
        );
        assert_eq!(
            Control::parse("transfer sip:carol@127.0.0.1:5070").unwrap(),
            Some(Control::Transfer("sip:carol@127.0.0.1:5070".into()))
        );
        assert_eq!(Control::parse("").unwrap(), None);
        assert_eq!(Control::parse("# a comment").unwrap(), None);
    }

    #[test]
    fn video_commands() {
        assert_eq!(
            Control::parse("video on").unwrap(),
            Some(Control::Video(true))
        );
        assert_eq!(
            Control::parse("VIDEO Off").unwrap(),
            Some(Control::Video(false))
        );
        assert_eq!(
            Control::parse("camera none").unwrap(),
            Some(Control::Camera(tandem_client_core::VideoSourceSpec::None))
        );
        assert_eq!(
            Control::parse("camera pattern:640x480@30").unwrap(),
            Some(Control::Camera(
                tandem_client_core::VideoSourceSpec::Pattern {
                    width: 640,
                    height: 480,
                    fps: 30
                }
            ))
        );
        assert!(matches!(
            Control::parse("video"),
            Err(ControlError::MissingArgument("video"))
        ));
        assert!(matches!(
            Control::parse("video maybe"),
            Err(ControlError::Invalid(_))
        ));
        assert!(matches!(
            Control::parse("camera"),
            Err(ControlError::MissingArgument("camera"))
        ));
        assert!(matches!(
            Control::parse("camera pattern:1x1"),
            Err(ControlError::Invalid(_))
        ));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            Control::parse("dance"),
            Err(ControlError::Unknown(_))
        ));
        assert_eq!(
            Control::parse("dtmf"),
            Err(ControlError::MissingArgument("dtmf"))
        );
        assert!(matches!(
            Control::parse("dtmf 12x"),
            Err(ControlError::Invalid(_))
        ));
        assert_eq!(
            Control::parse("hold now"),
            Err(ControlError::UnexpectedArgument("hold"))
        );
        assert!(matches!(
            Control::parse("transfer a b"),
            Err(ControlError::Invalid(_))
        ));
        assert_eq!(
            Control::parse(&"x".repeat(MAX_LINE + 1)),
            Err(ControlError::TooLong)
        );
    }
}
