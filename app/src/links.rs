//! `sip:`, `sips:`, `tel:` and `callto:` links handed to the app by the system (a click in a
//! browser, `tandem sip:bob@example.com` on a command line, a second launch forwarded to the
//! running instance, an Apple Event on macOS): checked, cleaned and offered to the ui as a call
//! to confirm — a link never places a call by itself.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::explain::failure;
use crate::state::{AppState, lock};
use crate::types::{AppEvent, Failure, FailureKind};

/// The longest link accepted, in bytes (a browser may hand over anything).
pub const MAX_LINK_LEN: usize = 2048;

/// The URI schemes the app opens.
pub const LINK_SCHEMES: [&str; 4] = ["sip", "sips", "tel", "callto"];

/// A call a link asks for, waiting for the user to confirm it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallLink {
    /// What to call, as the dialer takes it (`sip:bob@example.com`, `tel:+15551234`).
    pub target: String,
    /// The subject the link carried (`?subject=…`), if any.
    pub subject: Option<String>,
    /// The link as received, for display.
    pub link: String,
}

/// The arguments of `open_link`.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LinkArg {
    /// The link (`sip:…`, `sips:…`, `tel:…`, `callto:…`).
    pub link: String,
}

/// The link received last and not yet taken by the ui (a link may arrive before the ui runs).
#[derive(Debug, Default)]
pub(crate) struct PendingLink(Mutex<Option<CallLink>>);

fn bad_link(message: impl Into<String>, link: &str) -> Failure {
    let shown: String = link.chars().take(200).collect();
    failure(FailureKind::Settings, message, shown)
}

/// Decodes `%XX` escapes; `None` when an escape is broken or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'%') => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            Some(b) => {
                out.push(*b);
                i += 1;
            }
            None => break,
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `name=value&name=value` (URI headers) into decoded pairs.
fn headers(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(name)?, percent_decode(value)?))
        })
        .collect()
}

/// Checks and cleans a link into the call it asks for.
///
/// Only the Request-URI survives: URI headers other than `subject` (which could smuggle
/// headers into our INVITE) and a `method=` parameter (a link must not make us send a REGISTER
/// or a BYE) are dropped; `tel:` visual separators are removed (RFC 3966); `callto:` is read
/// as `sip:` when it has a host and as a number otherwise.
pub fn parse_link(link: &str) -> Result<CallLink, Failure> {
    let raw = link.trim();
    if raw.is_empty() {
        return Err(bad_link("The link is empty.", raw));
    }
    if raw.len() > MAX_LINK_LEN {
        return Err(bad_link(
            format!("The link is longer than {MAX_LINK_LEN} characters."),
            raw,
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(bad_link("The link contains control characters.", raw));
    }
    let Some((scheme, rest)) = raw.split_once(':') else {
        return Err(bad_link("That is not a sip:, tel: or callto: link.", raw));
    };
    let scheme = scheme.to_ascii_lowercase();
    if !LINK_SCHEMES.contains(&scheme.as_str()) {
        return Err(bad_link(
            format!("Tandem does not open {scheme}: links, only sip:, sips:, tel: and callto:."),
            raw,
        ));
    }
    // `callto://bob@host` and `sip://bob@host` are common in the wild.
    let rest = rest.trim_start_matches("//");
    let (address, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let subject = query
        .map(headers)
        .unwrap_or_default()
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("subject") || name == "s")
        .map(|(_, value)| value.trim().chars().take(200).collect::<String>())
        .filter(|s| !s.is_empty());
    let target = match scheme.as_str() {
        "tel" => tel_target(address, raw)?,
        "callto" if !address.contains('@') => tel_target(address, raw)?,
        "callto" => sip_target("sip", address, raw)?,
        _ => sip_target(&scheme, address, raw)?,
    };
    Ok(CallLink {
        target,
        subject,
        link: raw.to_owned(),
    })
}

/// `tel:` number (global `+…` or local digits) without visual separators, its parameters kept
/// except the ones that do not name the number.
fn tel_target(address: &str, raw: &str) -> Result<String, Failure> {
    let decoded =
        percent_decode(address).ok_or_else(|| bad_link("The link has a broken %-escape.", raw))?;
    let mut parts = decoded.split(';');
    let number: String = parts
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    let digits = number.strip_prefix('+').unwrap_or(&number);
    let valid = !digits.is_empty()
        && digits.len() <= 32
        && digits
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '*' | '#'));
    if !valid {
        return Err(bad_link("The link does not hold a phone number.", raw));
    }
    let params: Vec<&str> = parts
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default().to_ascii_lowercase();
            matches!(name.as_str(), "phone-context" | "ext" | "isub")
        })
        .collect();
    let mut target = format!("tel:{number}");
    for p in params {
        target.push(';');
        target.push_str(p);
    }
    tandem_client_core::types::Uri::parse(&target)
        .map_err(|e| bad_link(format!("The link's number is not valid: {e}."), raw))?;
    Ok(target)
}

/// `sip:`/`sips:` address with the parameters that could change what we send removed.
fn sip_target(scheme: &str, address: &str, raw: &str) -> Result<String, Failure> {
    let mut parts = address.split(';');
    let userhost = parts.next().unwrap_or_default();
    if userhost.is_empty() {
        return Err(bad_link("The link does not name anyone to call.", raw));
    }
    // An `@` may arrive escaped by a browser; the user part keeps its other escapes (SIP
    // allows them there).
    let userhost = userhost.replace("%40", "@");
    let params: Vec<&str> = parts
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default().to_ascii_lowercase();
            !name.is_empty() && !matches!(name.as_str(), "method" | "maddr" | "lr")
        })
        .collect();
    let mut target = format!("{scheme}:{userhost}");
    for p in params {
        target.push(';');
        target.push_str(p);
    }
    let uri = tandem_client_core::types::Uri::parse(&target)
        .map_err(|e| bad_link(format!("The link's address is not valid: {e}."), raw))?;
    if uri.host.to_string().is_empty() {
        return Err(bad_link("The link's address has no host.", raw));
    }
    Ok(target)
}

impl AppState {
    /// Command `open_link`: a link the system handed us becomes a call for the user to confirm
    /// (the `CallLink` event, and `take_link` for a ui that starts later). A bad link is an
    /// error and changes nothing.
    pub fn open_link(&self, arg: LinkArg) -> Result<CallLink, Failure> {
        let link = parse_link(&arg.link)?;
        *lock(&self.inner.links.0) = Some(link.clone());
        self.emit(AppEvent::CallLink { link: link.clone() });
        Ok(link)
    }

    /// Command `take_link`: the link waiting for the ui, if any (taken: asked again, `None`).
    pub fn take_link(&self) -> Option<CallLink> {
        lock(&self.inner.links.0).take()
    }
}
