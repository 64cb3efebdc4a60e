//! A minimal SMTP client (RFC 5321) for voicemail e-mail notifications: plain TCP to a relay
//! (a local MTA or a lab mail catcher; no STARTTLS or AUTH), one message per connection, a
//! `multipart/mixed` body (RFC 2046) with a text part and the recording as a base64
//! attachment. Every step has a timeout; replies are read line by line with a length bound.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest SMTP reply line we read.
const MAX_LINE: usize = 4096;
/// Most lines of one (multi-line) reply.
const MAX_REPLY_LINES: usize = 64;

/// The `[voicemail.smtp]` section: where new-message e-mails go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The SMTP relay, `host:port` (plain TCP).
    pub server: String,
    /// Envelope and header sender.
    pub from: String,
    /// Mailbox owner (username) → e-mail address; users not listed get no e-mail.
    pub recipients: BTreeMap<String, String>,
    /// Name sent in EHLO (default `tandem-lab`).
    pub hello: String,
    /// Timeout of each step, in seconds (default 10).
    pub timeout_secs: u64,
    /// Attach the recording (default true).
    pub attach: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            server: "127.0.0.1:25".into(),
            from: "voicemail@localhost".into(),
            recipients: BTreeMap::new(),
            hello: "tandem-lab".into(),
            timeout_secs: 10,
            attach: true,
        }
    }
}

/// Why an e-mail could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpError {
    /// Connecting, reading or writing failed.
    #[error("SMTP I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A step took longer than the timeout.
    #[error("SMTP timeout during {0}")]
    Timeout(&'static str),
    /// The server answered with an unexpected code.
    #[error("SMTP {step}: server said {reply:?}")]
    Rejected {
        /// The command that was refused.
        step: &'static str,
        /// The server's reply.
        reply: String,
    },
    /// The reply was not SMTP (too long, too many lines, no code).
    #[error("SMTP: malformed reply {0:?}")]
    Malformed(String),
    /// An address contains characters that cannot go into a command.
    #[error("SMTP: unusable address {0:?}")]
    BadAddress(String),
}

/// An e-mail with an optional attachment.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject (sanitised to printable ASCII).
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// Attachment: (file name, MIME type, bytes).
    pub attachment: Option<(String, String, Vec<u8>)>,
    /// Unix time for the Date header.
    pub date: i64,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 (RFC 4648 §4) with CRLF line breaks every 76 characters (RFC 2045 §6.8).
pub fn base64_lines(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    let mut col = 0;
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, v) in idx.iter().enumerate() {
            let c = if i <= chunk.len() {
                B64.get(*v as usize).copied().unwrap_or(b'=')
            } else {
                b'='
            };
            out.push(char::from(c));
        }
        col += 4;
        if col >= 76 {
            out.push_str("\r\n");
            col = 0;
        }
    }
    if col > 0 {
        out.push_str("\r\n");
    }
    out
}

/// Printable ASCII only (header and command safety): CR, LF and others become `?`.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

fn check_address(addr: &str) -> Result<&str, SmtpError> {
    let ok = !addr.is_empty()
        && addr.len() <= 254
        && addr.contains('@')
        && addr
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '\\'));
    if ok {
        Ok(addr)
    } else {
        Err(SmtpError::BadAddress(addr.to_owned()))
    }
}

/// The message text (headers and MIME body) with dot-stuffing applied, ending in CRLF.
pub fn render(from: &str, mail: &Mail) -> String {
    let boundary = format!("=_tandem_{:016x}", rand::random::<u64>());
    let mut m = String::new();
    m.push_str(&format!("From: {}\r\n", sanitize(from)));
    m.push_str(&format!("To: {}\r\n", sanitize(&mail.to)));
    m.push_str(&format!("Subject: {}\r\n", sanitize(&mail.subject)));
    m.push_str(&format!(
        "Date: {}\r\n",
        crate::registrar::http_date(mail.date)
    ));
    m.push_str(&format!(
        "Message-ID: <{:016x}.{}>\r\n",
        rand::random::<u64>(),
        sanitize(from.rsplit('@').next().unwrap_or("localhost"))
    ));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    for line in mail.text.lines() {
        m.push_str(&sanitize(line));
        m.push_str("\r\n");
    }
    if let Some((name, mime, bytes)) = &mail.attachment {
        m.push_str(&format!("--{boundary}\r\n"));
        m.push_str(&format!("Content-Type: {}\r\n", sanitize(mime)));
        m.push_str("Content-Transfer-Encoding: base64\r\n");
        m.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{}\"\r\n\r\n",
            sanitize(name).replace('"', "'")
        ));
        m.push_str(&base64_lines(bytes));
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    // RFC 5321 §4.5.2: a line starting with a dot gets another one.
    m.split("\r\n")
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

struct Session {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    timeout: Duration,
}

impl Session {
    /// Reads one (possibly multi-line) reply; its code.
    async fn reply(&mut self, step: &'static str) -> Result<(u16, String), SmtpError> {
        let mut text = String::new();
        for _ in 0..MAX_REPLY_LINES {
            let mut line = Vec::new();
            let read = tokio::time::timeout(self.timeout, async {
                let mut limited = (&mut self.reader).take(MAX_LINE as u64);
                limited.read_until(b'\n', &mut line).await
            })
            .await
            .map_err(|_| SmtpError::Timeout(step))??;
            if read == 0 || !line.ends_with(b"\n") {
                return Err(SmtpError::Malformed(String::from_utf8_lossy(&line).into()));
            }
            let l = String::from_utf8_lossy(&line).trim_end().to_owned();
            let code: u16 = l
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| SmtpError::Malformed(l.clone()))?;
            text.push_str(&l);
            text.push('\n');
            if l.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
        }
        Err(SmtpError::Malformed(text))
    }

    async fn send(&mut self, data: &str, step: &'static str) -> Result<(), SmtpError> {
        tokio::time::timeout(self.timeout, self.writer.write_all(data.as_bytes()))
            .await
            .map_err(|_| SmtpError::Timeout(step))??;
        Ok(())
    }

    async fn command(
        &mut self,
        line: &str,
        step: &'static str,
        ok: &[u16],
    ) -> Result<(), SmtpError> {
        self.send(&format!("{line}\r\n"), step).await?;
        let (code, reply) = self.reply(step).await?;
        if ok.contains(&code) {
            Ok(())
        } else {
            Err(SmtpError::Rejected { step, reply })
        }
    }
}

/// Sends `mail` through the relay of `config`.
pub async fn send(config: &SmtpConfig, mail: &Mail) -> Result<(), SmtpError> {
    let from = check_address(&config.from)?;
    let to = check_address(&mail.to)?;
    let timeout = Duration::from_secs(config.timeout_secs.max(1));
    let stream = tokio::time::timeout(timeout, TcpStream::connect(&config.server))
        .await
        .map_err(|_| SmtpError::Timeout("connect"))??;
    let (r, w) = stream.into_split();
    let mut s = Session {
        reader: BufReader::new(r),
        writer: w,
        timeout,
    };
    let (code, reply) = s.reply("greeting").await?;
    if code != 220 {
        return Err(SmtpError::Rejected {
            step: "greeting",
            reply,
        });
    }
    s.command(&format!("EHLO {}", sanitize(&config.hello)), "EHLO", &[250])
        .await?;
    s.command(&format!("MAIL FROM:<{from}>"), "MAIL FROM", &[250])
        .await?;
    s.command(&format!("RCPT TO:<{to}>"), "RCPT TO", &[250, 251])
        .await?;
    s.command("DATA", "DATA", &[354]).await?;
    let body = render(from, mail);
    s.send(&body, "message").await?;
    s.command(".", "end of data", &[250]).await?;
    // The message is accepted; a failing QUIT does not matter.
    let _ = s.command("QUIT", "QUIT", &[221]).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn base64_rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg==\r\n"),
            (b"fo", "Zm8=\r\n"),
            (b"foo", "Zm9v\r\n"),
            (b"foob", "Zm9vYg==\r\n"),
            (b"fooba", "Zm9vYmE=\r\n"),
            (b"foobar", "Zm9vYmFy\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(base64_lines(input), want);
        }
        let long = base64_lines(&[0u8; 120]);
        assert!(long.lines().all(|l| l.len() <= 76), "{long}");
        assert_eq!(long.replace("\r\n", "").len(), 160);
    }

    #[test]
    fn headers_are_sanitised_and_dots_stuffed() {
        let mail = Mail {
            to: "alice@example.com".into(),
            subject: "Voicemail\r\nBcc: evil@example.com".into(),
            text: "line\n.starts with a dot".into(),
            attachment: None,
            date: 0,
        };
        let text = render("vm@example.com", &mail);
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.contains("Subject: Voicemail??Bcc: evil@example.com\r\n"));
        assert!(text.contains("\r\n..starts with a dot\r\n"), "{text}");
        assert!(check_address("a@b\r\nRCPT TO:<x@y>").is_err());
        assert!(check_address("<a@b>").is_err());
    }

    /// A tiny SMTP server: answers every command, keeps the transcript and the DATA.
    async fn fake_server(reject_rcpt: bool) -> (String, tokio::task::JoinHandle<(String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            sock.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let mut buf = Vec::new();
            let mut transcript = String::new();
            let mut data = String::new();
            let mut in_data = false;
            loop {
                let mut chunk = [0u8; 4096];
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                    let line = String::from_utf8(buf.drain(..pos + 2).collect()).unwrap();
                    let line = line.trim_end_matches("\r\n").to_owned();
                    if in_data {
                        if line == "." {
                            in_data = false;
                            sock.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            data.push_str(&line);
                            data.push('\n');
                        }
                        continue;
                    }
                    transcript.push_str(&line);
                    transcript.push('\n');
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        b"250-test\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n"
                    } else if line.starts_with("RCPT") && reject_rcpt {
                        b"550 no such user\r\n"
                    } else if line == "DATA" {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if line == "QUIT" {
                        sock.write_all(b"221 bye\r\n").await.unwrap();
                        return (transcript, data);
                    } else {
                        b"250 ok\r\n"
                    };
                    sock.write_all(reply).await.unwrap();
                }
            }
            (transcript, data)
        });
        (addr, task)
    }

    #[tokio::test]
    async fn sends_a_mail_with_the_attachment() {
        let (addr, server) = fake_server(false).await;
        let config = SmtpConfig {
            server: addr,
            from: "voicemail@lab.test".into(),
            ..SmtpConfig::default()
        };
        let audio: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mail = Mail {
            to: "alice@example.com".into(),
            subject: "New voicemail from bob".into(),
            text: "Bob left you a message.".into(),
            attachment: Some(("message.opus".into(), "audio/ogg".into(), audio.clone())),
            date: 1_700_000_000,
        };
        send(&config, &mail).await.unwrap();
        let (transcript, data) = server.await.unwrap();
        assert!(transcript.contains("EHLO tandem-lab\n"), "{transcript}");
        assert!(transcript.contains("MAIL FROM:<voicemail@lab.test>\n"));
        assert!(transcript.contains("RCPT TO:<alice@example.com>\n"));
        assert!(data.contains("Subject: New voicemail from bob\n"), "{data}");
        assert!(data.contains("Content-Type: audio/ogg\n"));
        assert!(data.contains("filename=\"message.opus\""));
        let encoded: String = base64_lines(&audio).replace("\r\n", "\n");
        assert!(data.contains(&encoded), "attachment not found");
    }

    #[tokio::test]
    async fn a_refused_recipient_is_an_error() {
        let (addr, _server) = fake_server(true).await;
        let config = SmtpConfig {
            server: addr,
            ..SmtpConfig::default()
        };
        let mail = Mail {
            to: "nobody@example.com".into(),
            subject: "x".into(),
            text: String::new(),
            attachment: None,
            date: 0,
        };
        let err = send(&config, &mail).await.unwrap_err();
        assert!(
            matches!(
                err,
                SmtpError::Rejected {
                    step: "RCPT TO",
                    ..
                }
            ),
            "{err}"
        );
    }
}
