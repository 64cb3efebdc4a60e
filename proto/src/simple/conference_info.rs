//! The conference event package's `conference-info` documents (RFC 4575,
//! `application/conference-info+xml`): who is in a conference, through which endpoints and media,
//! in full or partial notifications, and [`ConferenceInfo::apply`] to merge partial ones.
//!
//! RFC 4575 has no element for "is speaking"; Tandem marks it with an extension element
//! `<speaking>true</speaking>` in the [`TANDEM_NS`] namespace inside `<media>` (extension
//! elements are allowed there; other clients ignore it). Unknown elements of the conference,
//! user, endpoint and media levels are kept as [`RawXml`] and printed back.

use super::SimpleError;
use super::xml::{self, Element, RawXml};

/// The conference-info namespace (RFC 4575 §5).
pub const CONFERENCE_INFO_NS: &str = "urn:ietf:params:xml:ns:conference-info";
/// Tandem's extension namespace (the `speaking` flag of a media stream).
pub const TANDEM_NS: &str = "urn:tandem:params:xml:ns:conference-info-ext";
/// The MIME type of the documents.
pub const CONTENT_TYPE: &str = "application/conference-info+xml";

const NS: &str = CONFERENCE_INFO_NS;

/// The `state` attribute of the document and of its containers (RFC 4575 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ElementState {
    /// `full`: this element carries its whole state.
    #[default]
    Full,
    /// `partial`: only what changed.
    Partial,
    /// `deleted`: remove the element.
    Deleted,
}

impl ElementState {
    /// The attribute token.
    pub fn as_str(self) -> &'static str {
        match self {
            ElementState::Full => "full",
            ElementState::Partial => "partial",
            ElementState::Deleted => "deleted",
        }
    }

    fn parse(e: &Element) -> Result<ElementState, SimpleError> {
        match e.attr("state").map(str::trim) {
            None | Some("full") => Ok(ElementState::Full),
            Some("partial") => Ok(ElementState::Partial),
            Some("deleted") => Ok(ElementState::Deleted),
            Some(other) => Err(SimpleError::invalid("state", other)),
        }
    }
}

/// An endpoint's status in the conference (RFC 4575 §5.7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointStatus {
    /// `pending`.
    Pending,
    /// `dialing-out`.
    DialingOut,
    /// `dialing-in`.
    DialingIn,
    /// `alerting`.
    Alerting,
    /// `on-hold`.
    OnHold,
    /// `connected`.
    Connected,
    /// `muted-via-focus`: the focus does not mix this endpoint's audio.
    MutedViaFocus,
    /// `disconnecting`.
    Disconnecting,
    /// `disconnected`.
    Disconnected,
    /// A token this implementation does not know (kept as it was).
    Other(String),
}

impl EndpointStatus {
    /// The element token.
    pub fn as_str(&self) -> &str {
        match self {
            EndpointStatus::Pending => "pending",
            EndpointStatus::DialingOut => "dialing-out",
            EndpointStatus::DialingIn => "dialing-in",
            EndpointStatus::Alerting => "alerting",
            EndpointStatus::OnHold => "on-hold",
            EndpointStatus::Connected => "connected",
            EndpointStatus::MutedViaFocus => "muted-via-focus",
            EndpointStatus::Disconnecting => "disconnecting",
            EndpointStatus::Disconnected => "disconnected",
            EndpointStatus::Other(s) => s,
        }
    }

    /// Parses the token (unknown tokens become `Other`).
    pub fn from_token(s: &str) -> EndpointStatus {
        match s {
            "pending" => EndpointStatus::Pending,
            "dialing-out" => EndpointStatus::DialingOut,
            "dialing-in" => EndpointStatus::DialingIn,
            "alerting" => EndpointStatus::Alerting,
            "on-hold" => EndpointStatus::OnHold,
            "connected" => EndpointStatus::Connected,
            "muted-via-focus" => EndpointStatus::MutedViaFocus,
            "disconnecting" => EndpointStatus::Disconnecting,
            "disconnected" => EndpointStatus::Disconnected,
            other => EndpointStatus::Other(other.to_string()),
        }
    }
}

/// A URI with its description (`conf-uris`/`service-uris` entries, RFC 4575 §5.3.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UriEntry {
    /// `<uri>`.
    pub uri: String,
    /// `<display-text>`.
    pub display_text: Option<String>,
    /// `<purpose>` (e.g. `participation`, `streaming`).
    pub purpose: Option<String>,
}

/// `<conference-description>` (RFC 4575 §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConferenceDescription {
    /// `<display-text>`.
    pub display_text: Option<String>,
    /// `<subject>`.
    pub subject: Option<String>,
    /// `<free-text>`.
    pub free_text: Option<String>,
    /// `<conf-uris>` entries.
    pub conf_uris: Vec<UriEntry>,
    /// `<service-uris>` entries.
    pub service_uris: Vec<UriEntry>,
    /// `<maximum-user-count>`.
    pub maximum_user_count: Option<u32>,
    /// Other children (`keywords`, `available-media`, extensions), kept verbatim.
    pub extra: Vec<RawXml>,
}

/// `<conference-state>` (RFC 4575 §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConferenceState {
    /// `<user-count>`.
    pub user_count: Option<u32>,
    /// `<active>`.
    pub active: Option<bool>,
    /// `<locked>`.
    pub locked: Option<bool>,
}

/// One `<media>` stream of an endpoint (RFC 4575 §5.7.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Media {
    /// The `id` attribute (unique within the endpoint).
    pub id: String,
    /// `<display-text>`.
    pub display_text: Option<String>,
    /// `<type>` (`audio`, `video`, …).
    pub media_type: Option<String>,
    /// `<label>`.
    pub label: Option<String>,
    /// `<src-id>` (the SSRC as a decimal string).
    pub src_id: Option<String>,
    /// `<status>` (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    pub status: Option<String>,
    /// Tandem's `<speaking>` extension.
    pub speaking: Option<bool>,
    /// Other children, kept verbatim.
    pub extra: Vec<RawXml>,
}

/// One `<endpoint>` of a user (RFC 4575 §5.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// The `entity` attribute (the endpoint's URI, e.g. its contact).
    pub entity: String,
    /// The `state` attribute.
    pub state: ElementState,
    /// `<display-text>`.
    pub display_text: Option<String>,
    /// `<status>`.
    pub status: Option<EndpointStatus>,
    /// `<joining-method>` (`dialed-in`, `dialed-out`, `focus-owner`).
    pub joining_method: Option<String>,
    /// `<joining-info><when>` (RFC 3339).
    pub joining_when: Option<String>,
    /// `<disconnection-method>` (`departed`, `booted`, `failed`, `busy`).
    pub disconnection_method: Option<String>,
    /// `<media>` streams.
    pub media: Vec<Media>,
    /// Other children (`referred`, `call-info`, …), kept verbatim.
    pub extra: Vec<RawXml>,
}

/// One `<user>` (RFC 4575 §5.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    /// The `entity` attribute (the user's AoR).
    pub entity: String,
    /// The `state` attribute.
    pub state: ElementState,
    /// `<display-text>`.
    pub display_text: Option<String>,
    /// `<roles>` entries (e.g. `participant`, `moderator`).
    pub roles: Vec<String>,
    /// The user's endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Other children, kept verbatim.
    pub extra: Vec<RawXml>,
}

/// A `<conference-info>` document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConferenceInfo {
    /// The `entity` attribute: the conference URI.
    pub entity: String,
    /// The `state` attribute.
    pub state: ElementState,
    /// The `version` attribute (increments by one per NOTIFY of a subscription).
    pub version: Option<u32>,
    /// `<conference-description>`.
    pub description: Option<ConferenceDescription>,
    /// `<conference-state>`.
    pub conference_state: Option<ConferenceState>,
    /// The `state` attribute of `<users>` (`None`: no `<users>` element).
    pub users_state: Option<ElementState>,
    /// The users.
    pub users: Vec<User>,
    /// Other children (`host-info`, sidebars, extensions), kept verbatim.
    pub extra: Vec<RawXml>,
}

fn text_of(e: &Element) -> Option<String> {
    let t = e.trimmed_text();
    if t.is_empty() { None } else { Some(t) }
}

fn parse_u32(e: &Element, what: &'static str) -> Result<u32, SimpleError> {
    let t = e.trimmed_text();
    t.parse().map_err(|_| SimpleError::invalid(what, &t))
}

fn parse_bool(e: &Element, what: &'static str) -> Result<bool, SimpleError> {
    match e.trimmed_text().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(SimpleError::invalid(what, other)),
    }
}

fn entity(e: &Element, element: &'static str) -> Result<String, SimpleError> {
    e.attr("entity")
        .map(|s| s.trim().to_string())
        .ok_or(SimpleError::MissingAttribute {
            element,
            attr: "entity",
        })
}

fn parse_uri_entries(e: &Element) -> Vec<UriEntry> {
    e.elements()
        .filter(|c| c.is(NS, "entry"))
        .filter_map(|c| {
            Some(UriEntry {
                uri: c.child(NS, "uri").and_then(text_of)?,
                display_text: c.child(NS, "display-text").and_then(text_of),
                purpose: c.child(NS, "purpose").and_then(text_of),
            })
        })
        .collect()
}

fn parse_description(e: &Element) -> Result<ConferenceDescription, SimpleError> {
    let mut d = ConferenceDescription::default();
    for c in e.elements() {
        match (c.ns.as_str(), c.name.as_str()) {
            (NS, "display-text") => d.display_text = text_of(c),
            (NS, "subject") => d.subject = text_of(c),
            (NS, "free-text") => d.free_text = text_of(c),
            (NS, "conf-uris") => d.conf_uris = parse_uri_entries(c),
            (NS, "service-uris") => d.service_uris = parse_uri_entries(c),
            (NS, "maximum-user-count") => {
                d.maximum_user_count = Some(parse_u32(c, "maximum-user-count")?)
            }
            _ => d.extra.push(c.clone()),
        }
    }
    Ok(d)
}

fn parse_conference_state(e: &Element) -> Result<ConferenceState, SimpleError> {
    let mut s = ConferenceState::default();
    for c in e.elements() {
        match (c.ns.as_str(), c.name.as_str()) {
            (NS, "user-count") => s.user_count = Some(parse_u32(c, "user-count")?),
            (NS, "active") => s.active = Some(parse_bool(c, "active")?),
            (NS, "locked") => s.locked = Some(parse_bool(c, "locked")?),
            _ => {}
        }
    }
    Ok(s)
}

fn parse_media(e: &Element) -> Result<Media, SimpleError> {
    let mut m = Media {
        id: e
            .attr("id")
            .map(|s| s.trim().to_string())
            .ok_or(SimpleError::MissingAttribute {
                element: "media",
                attr: "id",
            })?,
        ..Media::default()
    };
    for c in e.elements() {
        match (c.ns.as_str(), c.name.as_str()) {
            (NS, "display-text") => m.display_text = text_of(c),
            (NS, "type") => m.media_type = text_of(c),
            (NS, "label") => m.label = text_of(c),
            (NS, "src-id") => m.src_id = text_of(c),
            (NS, "status") => m.status = text_of(c),
            (TANDEM_NS, "speaking") => m.speaking = Some(parse_bool(c, "speaking")?),
            _ => m.extra.push(c.clone()),
        }
    }
    Ok(m)
}

fn parse_endpoint(e: &Element) -> Result<Endpoint, SimpleError> {
    let mut ep = Endpoint {
        entity: entity(e, "endpoint")?,
        state: ElementState::parse(e)?,
        ..Endpoint::default()
    };
    for c in e.elements() {
        match (c.ns.as_str(), c.name.as_str()) {
            (NS, "display-text") => ep.display_text = text_of(c),
            (NS, "status") => ep.status = text_of(c).map(|t| EndpointStatus::from_token(&t)),
            (NS, "joining-method") => ep.joining_method = text_of(c),
            (NS, "joining-info") => ep.joining_when = c.child(NS, "when").and_then(text_of),
            (NS, "disconnection-method") => ep.disconnection_method = text_of(c),
            (NS, "media") => ep.media.push(parse_media(c)?),
            _ => ep.extra.push(c.clone()),
        }
    }
    Ok(ep)
}

fn parse_user(e: &Element) -> Result<User, SimpleError> {
    let mut u = User {
        entity: entity(e, "user")?,
        state: ElementState::parse(e)?,
        ..User::default()
    };
    for c in e.elements() {
        match (c.ns.as_str(), c.name.as_str()) {
            (NS, "display-text") => u.display_text = text_of(c),
            (NS, "roles") => {
                u.roles = c
                    .elements()
                    .filter(|r| r.is(NS, "entry"))
                    .filter_map(text_of)
                    .collect()
            }
            (NS, "endpoint") => u.endpoints.push(parse_endpoint(c)?),
            _ => u.extra.push(c.clone()),
        }
    }
    Ok(u)
}

fn text_el(name: &str, value: &str) -> Element {
    Element::new(NS, name).with_text(&xml::xml_safe(value))
}

fn push_opt(parent: &mut Element, name: &str, value: &Option<String>) {
    if let Some(v) = value {
        parent.push(text_el(name, v));
    }
}

fn uri_entries(name: &str, entries: &[UriEntry]) -> Element {
    let mut el = Element::new(NS, name);
    for e in entries {
        let mut entry = Element::new(NS, "entry");
        entry.push(text_el("uri", &e.uri));
        push_opt(&mut entry, "display-text", &e.display_text);
        push_opt(&mut entry, "purpose", &e.purpose);
        el.push(entry);
    }
    el
}

impl Media {
    fn to_element(&self) -> Element {
        let mut el = Element::new(NS, "media").with_attr("id", &self.id);
        push_opt(&mut el, "display-text", &self.display_text);
        push_opt(&mut el, "type", &self.media_type);
        push_opt(&mut el, "label", &self.label);
        push_opt(&mut el, "src-id", &self.src_id);
        push_opt(&mut el, "status", &self.status);
        if let Some(s) = self.speaking {
            el.push(Element::new(TANDEM_NS, "speaking").with_text(if s {
                "true"
            } else {
                "false"
            }));
        }
        for x in &self.extra {
            el.push(x.clone());
        }
        el
    }
}

impl Endpoint {
    fn to_element(&self) -> Element {
        let mut el = Element::new(NS, "endpoint").with_attr("entity", &self.entity);
        if self.state != ElementState::Full {
            el.set_attr("", "state", self.state.as_str());
        }
        push_opt(&mut el, "display-text", &self.display_text);
        if let Some(s) = &self.status {
            el.push(text_el("status", s.as_str()));
        }
        push_opt(&mut el, "joining-method", &self.joining_method);
        if let Some(when) = &self.joining_when {
            el.push(Element::new(NS, "joining-info").with_child(text_el("when", when)));
        }
        push_opt(&mut el, "disconnection-method", &self.disconnection_method);
        for m in &self.media {
            el.push(m.to_element());
        }
        for x in &self.extra {
            el.push(x.clone());
        }
        el
    }
}

impl User {
    fn to_element(&self) -> Element {
        let mut el = Element::new(NS, "user").with_attr("entity", &self.entity);
        if self.state != ElementState::Full {
            el.set_attr("", "state", self.state.as_str());
        }
        push_opt(&mut el, "display-text", &self.display_text);
        if !self.roles.is_empty() {
            let mut roles = Element::new(NS, "roles");
            for r in &self.roles {
                roles.push(text_el("entry", r));
            }
            el.push(roles);
        }
        for e in &self.endpoints {
            el.push(e.to_element());
        }
        for x in &self.extra {
            el.push(x.clone());
        }
        el
    }

    /// Whether any of the user's media streams is flagged speaking.
    pub fn is_speaking(&self) -> bool {
        self.endpoints
            .iter()
            .flat_map(|e| e.media.iter())
            .any(|m| m.speaking == Some(true))
    }

    /// Whether the focus does not mix this user (every endpoint `muted-via-focus`).
    pub fn is_muted(&self) -> bool {
        !self.endpoints.is_empty()
            && self
                .endpoints
                .iter()
                .all(|e| e.status == Some(EndpointStatus::MutedViaFocus))
    }
}

/// Merges `update`'s endpoints (by entity) into `into`, following their `state` attributes.
fn merge_endpoints(into: &mut Vec<Endpoint>, update: Vec<Endpoint>) {
    for ep in update {
        let pos = into.iter().position(|e| e.entity == ep.entity);
        match (ep.state, pos) {
            (ElementState::Deleted, Some(i)) => {
                into.remove(i);
            }
            (ElementState::Deleted, None) => {}
            (ElementState::Full, Some(i)) => {
                into[i] = Endpoint {
                    state: ElementState::Full,
                    ..ep
                }
            }
            (ElementState::Partial, Some(i)) => {
                let old = &mut into[i];
                if ep.display_text.is_some() {
                    old.display_text = ep.display_text;
                }
                if ep.status.is_some() {
                    old.status = ep.status;
                }
                if ep.joining_method.is_some() {
                    old.joining_method = ep.joining_method;
                }
                if ep.joining_when.is_some() {
                    old.joining_when = ep.joining_when;
                }
                if ep.disconnection_method.is_some() {
                    old.disconnection_method = ep.disconnection_method;
                }
                for m in ep.media {
                    match old.media.iter_mut().find(|o| o.id == m.id) {
                        Some(o) => *o = m,
                        None => old.media.push(m),
                    }
                }
            }
            (_, None) => into.push(Endpoint {
                state: ElementState::Full,
                ..ep
            }),
        }
    }
}

impl ConferenceInfo {
    /// Parses a conference-info document.
    pub fn parse(input: &[u8]) -> Result<ConferenceInfo, SimpleError> {
        let root = xml::parse_root(input, NS, "conference-info")?;
        let version = root
            .attr("version")
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| SimpleError::invalid("version", v))
            })
            .transpose()?;
        let mut info = ConferenceInfo {
            entity: entity(&root, "conference-info")?,
            state: ElementState::parse(&root)?,
            version,
            ..ConferenceInfo::default()
        };
        for c in root.elements() {
            match (c.ns.as_str(), c.name.as_str()) {
                (NS, "conference-description") => info.description = Some(parse_description(c)?),
                (NS, "conference-state") => {
                    info.conference_state = Some(parse_conference_state(c)?)
                }
                (NS, "users") => {
                    info.users_state = Some(ElementState::parse(c)?);
                    for u in c.elements().filter(|u| u.is(NS, "user")) {
                        info.users.push(parse_user(u)?);
                    }
                }
                _ => info.extra.push(c.clone()),
            }
        }
        Ok(info)
    }

    /// Prints the document.
    pub fn to_xml(&self) -> String {
        let mut root = Element::new(NS, "conference-info")
            .with_attr("entity", &self.entity)
            .with_attr("state", self.state.as_str());
        if let Some(v) = self.version {
            root.set_attr("", "version", &v.to_string());
        }
        if let Some(d) = &self.description {
            let mut el = Element::new(NS, "conference-description");
            push_opt(&mut el, "display-text", &d.display_text);
            push_opt(&mut el, "subject", &d.subject);
            push_opt(&mut el, "free-text", &d.free_text);
            if !d.conf_uris.is_empty() {
                el.push(uri_entries("conf-uris", &d.conf_uris));
            }
            if !d.service_uris.is_empty() {
                el.push(uri_entries("service-uris", &d.service_uris));
            }
            if let Some(n) = d.maximum_user_count {
                el.push(text_el("maximum-user-count", &n.to_string()));
            }
            for x in &d.extra {
                el.push(x.clone());
            }
            root.push(el);
        }
        if let Some(s) = &self.conference_state {
            let mut el = Element::new(NS, "conference-state");
            if let Some(n) = s.user_count {
                el.push(text_el("user-count", &n.to_string()));
            }
            if let Some(a) = s.active {
                el.push(text_el("active", if a { "true" } else { "false" }));
            }
            if let Some(l) = s.locked {
                el.push(text_el("locked", if l { "true" } else { "false" }));
            }
            root.push(el);
        }
        if self.users_state.is_some() || !self.users.is_empty() {
            let mut users = Element::new(NS, "users");
            if let Some(st) = self.users_state.filter(|s| *s != ElementState::Full) {
                users.set_attr("", "state", st.as_str());
            }
            for u in &self.users {
                users.push(u.to_element());
            }
            root.push(users);
        }
        for x in &self.extra {
            root.push(x.clone());
        }
        root.to_document()
    }

    /// Applies a notification to the state held so far (RFC 4575 §4.6): a `full` document replaces
    /// everything; a `partial` one merges users and endpoints by entity (`deleted` removes them)
    /// and replaces the description and conference state it carries. Returns false (and changes
    /// nothing) for another conference's document or a version not newer than ours.
    pub fn apply(&mut self, update: ConferenceInfo) -> bool {
        if update.entity != self.entity && !self.entity.is_empty() {
            return false;
        }
        if let (Some(old), Some(new)) = (self.version, update.version)
            && new <= old
        {
            return false;
        }
        if update.state != ElementState::Partial {
            *self = ConferenceInfo {
                state: ElementState::Full,
                ..update
            };
            return true;
        }
        self.version = update.version.or(self.version);
        if update.description.is_some() {
            self.description = update.description;
        }
        if let Some(s) = update.conference_state {
            let old = self.conference_state.get_or_insert_with(Default::default);
            old.user_count = s.user_count.or(old.user_count);
            old.active = s.active.or(old.active);
            old.locked = s.locked.or(old.locked);
        }
        if update.users_state == Some(ElementState::Full) && !update.users.is_empty() {
            // A full <users> in a partial document replaces the list.
            self.users = update
                .users
                .into_iter()
                .filter(|u| u.state != ElementState::Deleted)
                .collect();
            return true;
        }
        for user in update.users {
            let pos = self.users.iter().position(|u| u.entity == user.entity);
            match (user.state, pos) {
                (ElementState::Deleted, Some(i)) => {
                    self.users.remove(i);
                }
                (ElementState::Deleted, None) => {}
                (ElementState::Full, Some(i)) => {
                    self.users[i] = user;
                }
                (ElementState::Partial, Some(i)) => {
                    let old = &mut self.users[i];
                    if user.display_text.is_some() {
                        old.display_text = user.display_text;
                    }
                    if !user.roles.is_empty() {
                        old.roles = user.roles;
                    }
                    merge_endpoints(&mut old.endpoints, user.endpoints);
                }
                (_, None) => self.users.push(User {
                    state: ElementState::Full,
                    ..user
                }),
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 4575 §6 (trimmed of the sidebars), with prefixes moved around.
    const RFC_EXAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<conference-info xmlns="urn:ietf:params:xml:ns:conference-info"
    entity="sips:conf233@example.com" state="full" version="1">
  <conference-description>
    <subject>Agenda: This month's goals</subject>
    <service-uris>
      <entry>
        <uri>http://sharepoint/salesgroup/</uri>
        <purpose>web-page</purpose>
      </entry>
    </service-uris>
  </conference-description>
  <host-info>
    <uris><entry><uri>sip:alice@example.com</uri></entry></uris>
  </host-info>
  <conference-state>
    <user-count>33</user-count>
  </conference-state>
  <users>
    <user entity="sip:bob@example.com" state="full">
      <display-text>Bob Hoskins</display-text>
      <endpoint entity="sip:bob@pc33.example.com">
        <display-text>Bob's Laptop</display-text>
        <status>disconnected</status>
        <disconnection-method>departed</disconnection-method>
        <disconnection-info>
          <when>2005-03-04T20:00:00Z</when>
          <reason>bad voice quality</reason>
          <by>sip:mike@example.com</by>
        </disconnection-info>
        <media id="1">
          <display-text>main audio</display-text>
          <type>audio</type>
          <label>34567</label>
          <src-id>432424</src-id>
          <status>sendrecv</status>
        </media>
      </endpoint>
    </user>
    <ci:user xmlns:ci="urn:ietf:params:xml:ns:conference-info" entity="sip:alice@example.com" state="full">
      <ci:display-text>Alice</ci:display-text>
      <ci:roles><ci:entry>moderator</ci:entry></ci:roles>
      <ci:endpoint entity="sip:4kfk4j392jsu@example.com;grid=433kj4j3u">
        <ci:status>connected</ci:status>
        <ci:joining-method>dialed-out</ci:joining-method>
        <ci:joining-info><ci:when>2005-03-04T20:00:00Z</ci:when></ci:joining-info>
        <ci:media id="1">
          <ci:type>audio</ci:type>
          <ci:status>sendrecv</ci:status>
        </ci:media>
      </ci:endpoint>
    </ci:user>
  </users>
</conference-info>
"#;

    #[test]
    fn parses_the_rfc_example() {
        let info = ConferenceInfo::parse(RFC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(info.entity, "sips:conf233@example.com");
        assert_eq!(info.version, Some(1));
        assert_eq!(info.state, ElementState::Full);
        let d = info.description.as_ref().unwrap();
        assert_eq!(d.subject.as_deref(), Some("Agenda: This month's goals"));
        assert_eq!(d.service_uris[0].purpose.as_deref(), Some("web-page"));
        assert_eq!(info.conference_state.unwrap().user_count, Some(33));
        assert_eq!(info.extra.len(), 1, "host-info kept");
        assert_eq!(info.users.len(), 2);
        let bob = &info.users[0];
        assert_eq!(bob.display_text.as_deref(), Some("Bob Hoskins"));
        let ep = &bob.endpoints[0];
        assert_eq!(ep.status, Some(EndpointStatus::Disconnected));
        assert_eq!(ep.disconnection_method.as_deref(), Some("departed"));
        assert_eq!(ep.extra.len(), 1, "disconnection-info kept");
        assert_eq!(ep.media[0].src_id.as_deref(), Some("432424"));
        let alice = &info.users[1];
        assert_eq!(alice.roles, vec!["moderator".to_string()]);
        assert_eq!(
            alice.endpoints[0].joining_when.as_deref(),
            Some("2005-03-04T20:00:00Z")
        );
        // Round trip: print and parse back to the same value.
        let again = ConferenceInfo::parse(info.to_xml().as_bytes()).unwrap();
        assert_eq!(again, info);
    }

    fn roster(version: u32, users: &[(&str, bool, bool)]) -> ConferenceInfo {
        ConferenceInfo {
            entity: "sip:conf-demo@lab.test".into(),
            version: Some(version),
            conference_state: Some(ConferenceState {
                user_count: Some(users.len() as u32),
                active: Some(true),
                locked: Some(false),
            }),
            users_state: Some(ElementState::Full),
            users: users
                .iter()
                .map(|(uri, speaking, muted)| User {
                    entity: uri.to_string(),
                    roles: vec!["participant".into()],
                    endpoints: vec![Endpoint {
                        entity: format!("{uri};ep=1"),
                        status: Some(if *muted {
                            EndpointStatus::MutedViaFocus
                        } else {
                            EndpointStatus::Connected
                        }),
                        joining_method: Some("dialed-in".into()),
                        media: vec![Media {
                            id: "1".into(),
                            media_type: Some("audio".into()),
                            status: Some("sendrecv".into()),
                            speaking: Some(*speaking),
                            ..Media::default()
                        }],
                        ..Endpoint::default()
                    }],
                    ..User::default()
                })
                .collect(),
            ..ConferenceInfo::default()
        }
    }

    #[test]
    fn speaking_extension_round_trips() {
        let info = roster(
            3,
            &[
                ("sip:a@lab.test", true, false),
                ("sip:b@lab.test", false, true),
            ],
        );
        let text = info.to_xml();
        assert!(text.contains(TANDEM_NS), "{text}");
        let back = ConferenceInfo::parse(text.as_bytes()).unwrap();
        assert_eq!(back, info);
        assert!(back.users[0].is_speaking() && !back.users[0].is_muted());
        assert!(!back.users[1].is_speaking() && back.users[1].is_muted());
    }

    #[test]
    fn partial_updates_merge_and_delete() {
        let mut state = ConferenceInfo::default();
        assert!(state.apply(roster(
            1,
            &[
                ("sip:a@lab.test", false, false),
                ("sip:b@lab.test", false, false)
            ]
        )));
        // b starts speaking (partial endpoint update), c joins, a leaves.
        let mut update = ConferenceInfo {
            entity: "sip:conf-demo@lab.test".into(),
            state: ElementState::Partial,
            version: Some(2),
            conference_state: Some(ConferenceState {
                user_count: Some(2),
                ..ConferenceState::default()
            }),
            users_state: Some(ElementState::Partial),
            ..ConferenceInfo::default()
        };
        let mut b = roster(0, &[("sip:b@lab.test", true, false)])
            .users
            .remove(0);
        b.state = ElementState::Partial;
        b.endpoints[0].state = ElementState::Partial;
        b.endpoints[0].status = None;
        b.roles.clear();
        update.users.push(b);
        update.users.push(
            roster(0, &[("sip:c@lab.test", false, false)])
                .users
                .remove(0),
        );
        update.users.push(User {
            entity: "sip:a@lab.test".into(),
            state: ElementState::Deleted,
            ..User::default()
        });
        let text = update.to_xml();
        assert!(state.apply(ConferenceInfo::parse(text.as_bytes()).unwrap()));
        let names: Vec<&str> = state.users.iter().map(|u| u.entity.as_str()).collect();
        assert_eq!(names, ["sip:b@lab.test", "sip:c@lab.test"]);
        assert!(state.users[0].is_speaking());
        assert_eq!(
            state.users[0].endpoints[0].status,
            Some(EndpointStatus::Connected),
            "partial endpoint kept its status"
        );
        assert_eq!(state.users[0].roles, ["participant"]);
        let cs = state.conference_state.unwrap();
        assert_eq!((cs.user_count, cs.locked), (Some(2), Some(false)));
        // Old versions and other conferences are ignored.
        assert!(!state.apply(roster(2, &[])));
        let mut other = roster(9, &[]);
        other.entity = "sip:conf-other@lab.test".into();
        assert!(!state.apply(other));
        assert_eq!(state.users.len(), 2);
        // A newer full document replaces everything.
        assert!(state.apply(roster(3, &[])));
        assert!(state.users.is_empty());
    }

    #[test]
    fn rejects_bad_documents() {
        for bad in [
            r#"<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" state="full"/>"#,
            r#"<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="x" version="-1"/>"#,
            r#"<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="x" state="odd"/>"#,
            r#"<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="x"><users><user/></users></conference-info>"#,
            r#"<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="x"><conference-state><user-count>many</user-count></conference-state></conference-info>"#,
            r#"<conference-info xmlns="urn:ietf:params:xml:ns:conference-info" entity="x"><users><user entity="u"><endpoint entity="e"><media/></endpoint></user></users></conference-info>"#,
            r#"<conference-info entity="x"/>"#,
            "<conference-info",
        ] {
            assert!(ConferenceInfo::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_text_prints_as_valid_xml() {
        let mut info = roster(1, &[("sip:a@lab.test", false, false)]);
        info.users[0].display_text = Some("<b>&\u{1} \"x\"".into());
        let back = ConferenceInfo::parse(info.to_xml().as_bytes()).unwrap();
        assert_eq!(back.users[0].display_text.as_deref(), Some("<b>& \"x\""));
    }
}
