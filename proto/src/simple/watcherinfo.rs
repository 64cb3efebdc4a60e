//! Watcher information documents (RFC 3858, `application/watcherinfo+xml`) for the
//! `presence.winfo` event package (RFC 3857).

use super::SimpleError;
use super::ns::WATCHERINFO;
use super::xml::{self, Element, XML_NS};

/// Whether a document carries the full state or only changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `full`.
    Full,
    /// `partial`.
    Partial,
}

/// A watcher's subscription status (RFC 3857 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherStatus {
    /// `pending`: waiting for authorization.
    Pending,
    /// `active`.
    Active,
    /// `waiting`: rejected or timed out, but the watcher is waiting.
    Waiting,
    /// `terminated`.
    Terminated,
}

/// The event that caused the last status change (RFC 3857 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherEvent {
    /// `subscribe`.
    Subscribe,
    /// `approved`.
    Approved,
    /// `deactivated`.
    Deactivated,
    /// `probation`.
    Probation,
    /// `rejected`.
    Rejected,
    /// `timeout`.
    Timeout,
    /// `giveup`.
    Giveup,
    /// `noresource`.
    Noresource,
}

impl WatcherStatus {
    /// The attribute token.
    pub fn as_str(self) -> &'static str {
        match self {
            WatcherStatus::Pending => "pending",
            WatcherStatus::Active => "active",
            WatcherStatus::Waiting => "waiting",
            WatcherStatus::Terminated => "terminated",
        }
    }

    /// Parse the attribute token.
    pub fn from_token(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => WatcherStatus::Pending,
            "active" => WatcherStatus::Active,
            "waiting" => WatcherStatus::Waiting,
            "terminated" => WatcherStatus::Terminated,
            _ => return None,
        })
    }
}

impl WatcherEvent {
    /// The attribute token.
    pub fn as_str(self) -> &'static str {
        match self {
            WatcherEvent::Subscribe => "subscribe",
            WatcherEvent::Approved => "approved",
            WatcherEvent::Deactivated => "deactivated",
            WatcherEvent::Probation => "probation",
            WatcherEvent::Rejected => "rejected",
            WatcherEvent::Timeout => "timeout",
            WatcherEvent::Giveup => "giveup",
            WatcherEvent::Noresource => "noresource",
        }
    }

    /// Parse the attribute token.
    pub fn from_token(s: &str) -> Option<Self> {
        Some(match s {
            "subscribe" => WatcherEvent::Subscribe,
            "approved" => WatcherEvent::Approved,
            "deactivated" => WatcherEvent::Deactivated,
            "probation" => WatcherEvent::Probation,
            "rejected" => WatcherEvent::Rejected,
            "timeout" => WatcherEvent::Timeout,
            "giveup" => WatcherEvent::Giveup,
            "noresource" => WatcherEvent::Noresource,
            _ => return None,
        })
    }
}

/// One `<watcher>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watcher {
    /// `id` (unique per watcher-list; stable across documents).
    pub id: String,
    /// `status`.
    pub status: WatcherStatus,
    /// `event`.
    pub event: WatcherEvent,
    /// The watcher's URI (element content).
    pub uri: String,
    /// `display-name`.
    pub display_name: Option<String>,
    /// `xml:lang` of the display name.
    pub lang: Option<String>,
    /// `duration-subscribed` in seconds.
    pub duration_subscribed: Option<u64>,
    /// `expiration` in seconds.
    pub expiration: Option<u64>,
}

/// One `<watcher-list>`: the watchers of one resource for one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherList {
    /// `resource` (the watched URI).
    pub resource: String,
    /// `package` (e.g. `presence`).
    pub package: String,
    /// The watchers.
    pub watchers: Vec<Watcher>,
}

/// A `<watcherinfo>` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherInfo {
    /// `version` (incremented per NOTIFY of the subscription, starting at 0).
    pub version: u32,
    /// `state`.
    pub state: State,
    /// The watcher lists.
    pub lists: Vec<WatcherList>,
}

fn req<'a>(e: &'a Element, el: &'static str, attr: &'static str) -> Result<&'a str, SimpleError> {
    e.attr(attr)
        .map(str::trim)
        .ok_or(SimpleError::MissingAttribute { element: el, attr })
}

fn opt_u64(e: &Element, attr: &'static str) -> Result<Option<u64>, SimpleError> {
    e.attr(attr)
        .map(|v| v.trim().parse().map_err(|_| SimpleError::invalid(attr, v)))
        .transpose()
}

impl WatcherInfo {
    /// Parse a watcherinfo document.
    pub fn parse(input: &[u8]) -> Result<WatcherInfo, SimpleError> {
        let root = xml::parse_root(input, WATCHERINFO, "watcherinfo")?;
        let v = req(&root, "watcherinfo", "version")?;
        let version = v.parse().map_err(|_| SimpleError::invalid("version", v))?;
        let state = match req(&root, "watcherinfo", "state")? {
            "full" => State::Full,
            "partial" => State::Partial,
            other => return Err(SimpleError::invalid("state", other)),
        };
        let mut lists = Vec::new();
        for l in root
            .elements()
            .filter(|e| e.is(WATCHERINFO, "watcher-list"))
        {
            let mut list = WatcherList {
                resource: req(l, "watcher-list", "resource")?.to_string(),
                package: req(l, "watcher-list", "package")?.to_string(),
                watchers: Vec::new(),
            };
            for w in l.elements().filter(|e| e.is(WATCHERINFO, "watcher")) {
                let st = req(w, "watcher", "status")?;
                let ev = req(w, "watcher", "event")?;
                list.watchers.push(Watcher {
                    id: req(w, "watcher", "id")?.to_string(),
                    status: WatcherStatus::from_token(st)
                        .ok_or_else(|| SimpleError::invalid("watcher status", st))?,
                    event: WatcherEvent::from_token(ev)
                        .ok_or_else(|| SimpleError::invalid("watcher event", ev))?,
                    uri: w.trimmed_text(),
                    display_name: w.attr("display-name").map(str::to_string),
                    lang: w.lang().map(str::to_string),
                    duration_subscribed: opt_u64(w, "duration-subscribed")?,
                    expiration: opt_u64(w, "expiration")?,
                });
            }
            lists.push(list);
        }
        Ok(WatcherInfo {
            version,
            state,
            lists,
        })
    }

    /// Print as a watcherinfo document.
    pub fn to_xml(&self) -> String {
        let mut root = Element::new(WATCHERINFO, "watcherinfo")
            .with_attr("version", &self.version.to_string())
            .with_attr(
                "state",
                match self.state {
                    State::Full => "full",
                    State::Partial => "partial",
                },
            );
        for l in &self.lists {
            let mut le = Element::new(WATCHERINFO, "watcher-list")
                .with_attr("resource", &l.resource)
                .with_attr("package", &l.package);
            for w in &l.watchers {
                let mut we = Element::new(WATCHERINFO, "watcher");
                if let Some(d) = &w.display_name {
                    we.set_attr("", "display-name", d);
                }
                we.set_attr("", "status", w.status.as_str());
                we.set_attr("", "event", w.event.as_str());
                if let Some(d) = w.duration_subscribed {
                    we.set_attr("", "duration-subscribed", &d.to_string());
                }
                if let Some(d) = w.expiration {
                    we.set_attr("", "expiration", &d.to_string());
                }
                we.set_attr("", "id", &w.id);
                if let Some(l) = &w.lang {
                    we.set_attr(XML_NS, "lang", l);
                }
                le.push(we.with_text(&w.uri));
            }
            root.push(le);
        }
        root.to_document()
    }
}
