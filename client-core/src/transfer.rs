//! Call transfer helpers: REFER's `message/sipfrag` bodies (RFC 3515 §2.4.5), the Replaces
//! header (RFC 3891) and its escaped form inside a Refer-To URI (RFC 3261 §19.1.1 headers).

use std::fmt;

/// Content type of REFER progress NOTIFY bodies.
pub(crate) const SIPFRAG: &str = "message/sipfrag;version=2.0";

/// The dialog a Replaces header names (RFC 3891 §6.1), from the point of view of the UA
/// that receives the INVITE with Replaces: `to_tag` is its own tag, `from_tag` the peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacesTarget {
    /// The Call-ID of the dialog to replace.
    pub call_id: String,
    /// The tag of the UA that receives the INVITE with Replaces.
    pub to_tag: String,
    /// The tag of the other party of that dialog.
    pub from_tag: String,
    /// `early-only`: only an early dialog may be replaced.
    pub early_only: bool,
}

impl ReplacesTarget {
    /// Parses a Replaces header value: `callid;to-tag=..;from-tag=..[;early-only]`.
    pub fn parse(value: &str) -> Option<ReplacesTarget> {
        let mut parts = value.split(';');
        let call_id = parts.next()?.trim();
        if call_id.is_empty() {
            return None;
        }
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            let (name, val) = match p.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (p.trim(), None),
            };
            if name.eq_ignore_ascii_case("to-tag") {
                to_tag = val.map(str::to_string);
            } else if name.eq_ignore_ascii_case("from-tag") {
                from_tag = val.map(str::to_string);
            } else if name.eq_ignore_ascii_case("early-only") {
                early_only = true;
            }
        }
        Some(ReplacesTarget {
            call_id: call_id.to_string(),
            to_tag: to_tag?,
            from_tag: from_tag?,
            early_only,
        })
    }
}

impl fmt::Display for ReplacesTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

/// Escapes a URI header value (RFC 3261 `hvalue`: unreserved, `hnv-unreserved`, escaped).
pub(crate) fn escape_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for b in value.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'['
                    | b']'
                    | b'/'
                    | b'?'
                    | b':'
                    | b'+'
                    | b'$'
            );
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undoes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub(crate) fn unescape(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A sipfrag body carrying just a status line (`SIP/2.0 180 Ringing`).
pub(crate) fn sipfrag(status: u16, reason: &str) -> String {
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    format!("SIP/2.0 {status} {reason}\r\n")
}

/// The status code and reason of a sipfrag body's status line; `None` when it has none.
pub(crate) fn parse_sipfrag(body: &[u8]) -> Option<(u16, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let status: u16 = code.trim().parse().ok()?;
    (100..=699)
        .contains(&status)
        .then(|| (status, reason.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_round_trip_through_a_uri_header() {
        let r = ReplacesTarget {
            call_id: "abc@10.0.0.1".into(),
            to_tag: "t1".into(),
            from_tag: "f2".into(),
            early_only: false,
        };
        let escaped = escape_header_value(&r.to_string());
        assert_eq!(escaped, "abc%4010.0.0.1%3Bto-tag%3Dt1%3Bfrom-tag%3Df2");
        let back = ReplacesTarget::parse(&unescape(&escaped).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn replaces_needs_both_tags() {
        assert!(ReplacesTarget::parse("abc;to-tag=x").is_none());
        assert!(ReplacesTarget::parse(";to-tag=x;from-tag=y").is_none());
        let r = ReplacesTarget::parse("abc; TO-TAG=x ;from-tag=y;early-only").unwrap();
        assert!(r.early_only);
        assert_eq!(r.to_tag, "x");
    }

    #[test]
    fn unescape_rejects_bad_escapes() {
        assert_eq!(unescape("a%2"), None);
        assert_eq!(unescape("a%zz"), None);
        assert_eq!(unescape("a%3Bb").as_deref(), Some("a;b"));
        assert_eq!(unescape("%C3%A9").as_deref(), Some("é"));
        assert_eq!(unescape("%FF"), None);
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag(100, "Trying"), "SIP/2.0 100 Trying\r\n");
        assert_eq!(
            parse_sipfrag(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n"),
            Some((200, "OK".into()))
        );
        assert_eq!(
            parse_sipfrag(b"SIP/2.0 180\r\n"),
            Some((180, String::new()))
        );
        assert_eq!(parse_sipfrag(b"INVITE sip:x SIP/2.0\r\n"), None);
        assert_eq!(parse_sipfrag(b"SIP/2.0 99 Odd\r\n"), None);
        assert_eq!(parse_sipfrag(&[0xff, 0xfe]), None);
    }
}
