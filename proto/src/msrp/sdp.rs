//! SDP attributes of MSRP media lines (RFC 4975 §8, RFC 4145 `a=setup`, RFC 5547 file transfer).

use std::fmt;
use std::str::FromStr;

use super::{MsrpError, MsrpUri};
use crate::sdp::{Attribute, Connection, MediaDescription};

/// `TCP/MSRP`.
pub const PROTO_TCP: &str = "TCP/MSRP";
/// `TCP/TLS/MSRP`.
pub const PROTO_TLS: &str = "TCP/TLS/MSRP";
/// Longest attribute value parsed.
const MAX_VALUE: usize = 8192;

fn bad(name: &'static str, reason: &'static str) -> MsrpError {
    MsrpError::InvalidSdpAttribute { name, reason }
}

/// `a=setup` (RFC 4145).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// `active`: we connect.
    Active,
    /// `passive`: we accept.
    Passive,
    /// `actpass`: either.
    Actpass,
    /// `holdconn`: no connection for now.
    Holdconn,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::Actpass => "actpass",
            Setup::Holdconn => "holdconn",
        }
    }
}

impl FromStr for Setup {
    type Err = MsrpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "active" => Ok(Setup::Active),
            "passive" => Ok(Setup::Passive),
            "actpass" => Ok(Setup::Actpass),
            "holdconn" => Ok(Setup::Holdconn),
            _ => Err(bad("setup", "unknown role")),
        }
    }
}

/// `hash:<algorithm>:<hex bytes>` of a file selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHash {
    /// The algorithm token (`sha-1`).
    pub algorithm: String,
    /// The hash bytes.
    pub value: Vec<u8>,
}

/// `a=file-selector` (RFC 5547 §6): name, type, size and hash of the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileSelector {
    /// The file name (percent-decoded).
    pub name: Option<String>,
    /// The media type with its parameters as written (`image/jpeg`, `text/plain;charset="utf-8"`).
    pub media_type: Option<String>,
    /// The size in octets.
    pub size: Option<u64>,
    /// Hashes (RFC 5547 allows several, with different algorithms).
    pub hashes: Vec<FileHash>,
}

impl FileSelector {
    /// The SHA-1 hash, if given.
    pub fn sha1(&self) -> Option<&[u8]> {
        self.hashes
            .iter()
            .find(|h| h.algorithm.eq_ignore_ascii_case("sha-1"))
            .map(|h| h.value.as_slice())
    }
}

/// Splits on spaces outside double quotes.
fn split_selectors(s: &str) -> Result<Vec<&str>, MsrpError> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ' ' | '\t' if !in_quotes => {
                if i > start {
                    out.push(&s[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err(bad("file-selector", "unterminated quote"));
    }
    if s.len() > start {
        out.push(&s[start..]);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, MsrpError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(bad("file-selector", "invalid percent escape in name"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("file-selector", "name is not UTF-8"))
}

fn percent_encode_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' | '\r' | '\n' | '"' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

impl FromStr for FileSelector {
    type Err = MsrpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_VALUE {
            return Err(bad("file-selector", "too long"));
        }
        let mut sel = FileSelector::default();
        for part in split_selectors(s.trim())? {
            if let Some(name) = part.strip_prefix("name:") {
                let inner = name
                    .strip_prefix('"')
                    .and_then(|n| n.strip_suffix('"'))
                    .ok_or(bad("file-selector", "name is not quoted"))?;
                sel.name = Some(percent_decode(inner)?);
            } else if let Some(t) = part.strip_prefix("type:") {
                if !t.contains('/') {
                    return Err(bad("file-selector", "type is not type/subtype"));
                }
                sel.media_type = Some(t.to_owned());
            } else if let Some(n) = part.strip_prefix("size:") {
                if n.is_empty() || n.len() > 19 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("file-selector", "size is not a number"));
                }
                sel.size = Some(
                    n.parse()
                        .map_err(|_| bad("file-selector", "size out of range"))?,
                );
            } else if let Some(h) = part.strip_prefix("hash:") {
                let (alg, hex) = h
                    .split_once(':')
                    .ok_or(bad("file-selector", "hash without algorithm"))?;
                let value = hex
                    .split(':')
                    .map(|byte| {
                        if byte.len() != 2 {
                            return Err(bad("file-selector", "hash byte is not two hex digits"));
                        }
                        u8::from_str_radix(byte, 16)
                            .map_err(|_| bad("file-selector", "hash byte is not hex"))
                    })
                    .collect::<Result<Vec<u8>, _>>()?;
                sel.hashes.push(FileHash {
                    algorithm: alg.to_owned(),
                    value,
                });
            }
            // unknown selectors are ignored (RFC 5547 §6 extension point)
        }
        Ok(sel)
    }
}

impl fmt::Display for FileSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(n) = &self.name {
            parts.push(format!("name:\"{}\"", percent_encode_name(n)));
        }
        if let Some(t) = &self.media_type {
            parts.push(format!("type:{t}"));
        }
        if let Some(s) = self.size {
            parts.push(format!("size:{s}"));
        }
        for h in &self.hashes {
            let hex: Vec<String> = h.value.iter().map(|b| format!("{b:02X}")).collect();
            parts.push(format!("hash:{}:{}", h.algorithm, hex.join(":")));
        }
        f.write_str(&parts.join(" "))
    }
}

/// `a=file-range:start-stop` (RFC 5547 §6; 1-based, inclusive; `stop` may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    /// First octet (1-based).
    pub start: u64,
    /// Last octet, `None` for `*` (to the end of the file).
    pub stop: Option<u64>,
}

impl FromStr for FileRange {
    type Err = MsrpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .trim()
            .split_once('-')
            .ok_or(bad("file-range", "no '-'"))?;
        let num = |t: &str| -> Result<u64, MsrpError> {
            if t.is_empty() || t.len() > 19 || !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad("file-range", "not a number"));
            }
            t.parse().map_err(|_| bad("file-range", "out of range"))
        };
        let start = num(a)?;
        if start == 0 {
            return Err(bad("file-range", "start is 0"));
        }
        let stop = if b == "*" { None } else { Some(num(b)?) };
        if stop.is_some_and(|e| e < start) {
            return Err(bad("file-range", "stop before start"));
        }
        Ok(FileRange { start, stop })
    }
}

impl fmt::Display for FileRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stop {
            Some(e) => write!(f, "{}-{}", self.start, e),
            None => write!(f, "{}-*", self.start),
        }
    }
}

/// RFC 5547 file-transfer attributes of an MSRP media line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileAttributes {
    /// `a=file-selector`.
    pub selector: FileSelector,
    /// `a=file-transfer-id`.
    pub transfer_id: Option<String>,
    /// `a=file-disposition` (`render`, `attachment`, …).
    pub disposition: Option<String>,
    /// `a=file-date` value as written (`creation:"…" modification:"…"`).
    pub date: Option<String>,
    /// `a=file-icon` (a `cid:` URL).
    pub icon: Option<String>,
    /// `a=file-range` (resume).
    pub range: Option<FileRange>,
}

/// The MSRP-specific content of an `m=message` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrpMedia {
    /// The port (`9` is customary when `a=path` is what matters; 0 rejects).
    pub port: u16,
    /// Over TLS (`TCP/TLS/MSRP`).
    pub tls: bool,
    /// `a=path`, our URI last.
    pub path: Vec<MsrpUri>,
    /// `a=accept-types` (`*` allowed).
    pub accept_types: Vec<String>,
    /// `a=accept-wrapped-types`.
    pub accept_wrapped_types: Vec<String>,
    /// `a=max-size`.
    pub max_size: Option<u64>,
    /// `a=setup`.
    pub setup: Option<Setup>,
    /// The direction attribute (`sendonly` for a file offer, `recvonly` for a request), if any.
    pub direction: Option<String>,
    /// File-transfer attributes, for RFC 5547 sessions.
    pub file: Option<FileAttributes>,
}

fn attr<'a>(md: &'a MediaDescription, name: &str) -> Option<&'a str> {
    md.attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_deref().unwrap_or_default())
}

fn list(s: &str) -> Vec<String> {
    s.split([' ', '\t'])
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

impl MsrpMedia {
    /// Reads the MSRP attributes of an `m=message … TCP/MSRP *` or `TCP/TLS/MSRP` line.
    pub fn from_media(md: &MediaDescription) -> Result<Self, MsrpError> {
        let tls = if md.protocol.eq_ignore_ascii_case(PROTO_TLS) {
            true
        } else if md.protocol.eq_ignore_ascii_case(PROTO_TCP) {
            false
        } else {
            return Err(bad("path", "media line is not TCP/MSRP or TCP/TLS/MSRP"));
        };
        let path = match attr(md, "path") {
            Some(p) => MsrpUri::parse_list(p)?,
            None if md.port == 0 => Vec::new(),
            None => return Err(bad("path", "missing")),
        };
        let accept_types = attr(md, "accept-types").map(list).unwrap_or_default();
        let accept_wrapped_types = attr(md, "accept-wrapped-types")
            .map(list)
            .unwrap_or_default();
        let max_size = attr(md, "max-size")
            .map(|v| {
                let v = v.trim();
                if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("max-size", "not a number"));
                }
                v.parse().map_err(|_| bad("max-size", "out of range"))
            })
            .transpose()?;
        let setup = attr(md, "setup").map(str::parse).transpose()?;
        let direction = md
            .attributes
            .iter()
            .find(|a| {
                a.value.is_none()
                    && matches!(
                        a.name.as_str(),
                        "sendrecv" | "sendonly" | "recvonly" | "inactive"
                    )
            })
            .map(|a| a.name.clone());
        let selector = attr(md, "file-selector").map(str::parse).transpose()?;
        let file = match selector {
            Some(selector) => Some(FileAttributes {
                selector,
                transfer_id: attr(md, "file-transfer-id").map(|v| v.trim().to_owned()),
                disposition: attr(md, "file-disposition").map(|v| v.trim().to_owned()),
                date: attr(md, "file-date").map(|v| v.trim().to_owned()),
                icon: attr(md, "file-icon").map(|v| v.trim().to_owned()),
                range: attr(md, "file-range").map(str::parse).transpose()?,
            }),
            None => None,
        };
        Ok(MsrpMedia {
            port: md.port,
            tls,
            path,
            accept_types,
            accept_wrapped_types,
            max_size,
            setup,
            direction,
            file,
        })
    }

    /// Builds the `m=message` line with these attributes (and `connection` as its `c=`).
    pub fn to_media(&self, connection: Option<Connection>) -> MediaDescription {
        let mut attributes = Vec::new();
        if let Some(d) = &self.direction {
            attributes.push(Attribute::flag(d));
        }
        if !self.accept_types.is_empty() {
            attributes.push(Attribute::new("accept-types", self.accept_types.join(" ")));
        }
        if !self.accept_wrapped_types.is_empty() {
            attributes.push(Attribute::new(
                "accept-wrapped-types",
                self.accept_wrapped_types.join(" "),
            ));
        }
        if let Some(m) = self.max_size {
            attributes.push(Attribute::new("max-size", m.to_string()));
        }
        if !self.path.is_empty() {
            attributes.push(Attribute::new("path", MsrpUri::format_list(&self.path)));
        }
        if let Some(s) = self.setup {
            attributes.push(Attribute::new("setup", s.as_str()));
        }
        if let Some(f) = &self.file {
            attributes.push(Attribute::new("file-selector", f.selector.to_string()));
            if let Some(v) = &f.transfer_id {
                attributes.push(Attribute::new("file-transfer-id", v.clone()));
            }
            if let Some(v) = &f.disposition {
                attributes.push(Attribute::new("file-disposition", v.clone()));
            }
            if let Some(v) = &f.date {
                attributes.push(Attribute::new("file-date", v.clone()));
            }
            if let Some(v) = &f.icon {
                attributes.push(Attribute::new("file-icon", v.clone()));
            }
            if let Some(r) = f.range {
                attributes.push(Attribute::new("file-range", r.to_string()));
            }
        }
        MediaDescription {
            media: "message".to_owned(),
            port: self.port,
            num_ports: None,
            protocol: if self.tls { PROTO_TLS } else { PROTO_TCP }.to_owned(),
            formats: vec!["*".to_owned()],
            connection,
            bandwidths: Vec::new(),
            attributes,
            other_fields: Vec::new(),
        }
    }

    /// Whether a message of `content_type` may be sent to the owner of these attributes
    /// (`accept-types`, with `*` and `type/*` wildcards; parameters ignored).
    pub fn accepts(&self, content_type: &str) -> bool {
        accepts(&self.accept_types, content_type)
    }
}

/// Whether `content_type` matches a list of accepted types (`*`, `type/*`, exact; case-insensitive;
/// parameters ignored).
pub fn accepts(accepted: &[String], content_type: &str) -> bool {
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    let (ty, _) = ct.split_once('/').unwrap_or((ct, ""));
    accepted.iter().any(|a| {
        let a = a.split(';').next().unwrap_or_default().trim();
        a == "*"
            || a.eq_ignore_ascii_case(ct)
            || a.strip_suffix("/*")
                .is_some_and(|t| t.eq_ignore_ascii_case(ty))
    })
}
