//! PIDF (RFC 3863) with the presence data model (RFC 4479) and rich presence (RFC 4480).
//!
//! `<presence>` holds tuples (services), `dm:person` and `dm:device` elements, notes, and any other
//! extension elements, which are kept as [`RawXml`] so a publication passes through the presence
//! agent's composer unchanged. [`compose`] merges several devices' publications; [`Availability`]
//! is Tandem's own five-state summary.

use super::SimpleError;
use super::ns::{DATA_MODEL, LOCATION_TYPE, PIDF, RPID};
use super::time::parse_rfc3339;
use super::xml::{self, Element, RawXml, XML_NS};

/// A `<note>` with its optional `xml:lang`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Note {
    /// The `xml:lang` attribute.
    pub lang: Option<String>,
    /// The note text.
    pub text: String,
}

impl Note {
    /// A note without a language tag.
    pub fn new(text: &str) -> Self {
        Note {
            lang: None,
            text: text.to_string(),
        }
    }

    fn parse(e: &Element) -> Note {
        Note {
            lang: e.lang().map(str::to_string),
            text: e.text(),
        }
    }

    fn to_element(&self, ns: &str) -> Element {
        let mut e = Element::new(ns, "note");
        if let Some(l) = &self.lang {
            e.set_attr(XML_NS, "lang", l);
        }
        e.with_text(&self.text)
    }
}

/// The `<basic>` status of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basic {
    /// `open`: the service can accept communication.
    Open,
    /// `closed`: it cannot.
    Closed,
}

/// A tuple's `<status>`: the basic value (optional in the schema) and extension elements.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    /// `<basic>`, if present.
    pub basic: Option<Basic>,
    /// Other status elements (kept verbatim).
    pub extra: Vec<RawXml>,
}

/// A `<tuple>`: one service of the presentity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tuple {
    /// The `id` attribute (unique in the document).
    pub id: String,
    /// `<status>`.
    pub status: Status,
    /// `<contact>` URI and its `priority` (0..=1).
    pub contact: Option<(String, Option<f32>)>,
    /// `<note>` elements.
    pub notes: Vec<Note>,
    /// `<timestamp>` (RFC 3339, kept as written).
    pub timestamp: Option<String>,
    /// Extension elements of the tuple (e.g. `dm:deviceID`, `caps:servcaps`, `rpid:class`).
    pub extra: Vec<RawXml>,
}

/// An RPID activity (RFC 4480 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Activity {
    /// `away`.
    Away,
    /// `busy`.
    Busy,
    /// `on-the-phone`.
    OnThePhone,
    /// `meeting`.
    Meeting,
    /// `meal`.
    Meal,
    /// `vacation`.
    Vacation,
    /// `sleeping`.
    Sleeping,
    /// `unknown`.
    Unknown,
    /// Any other RFC 4480 token (printed as its element, e.g. `breakfast`) or free text (printed as `<rpid:other>`).
    Other(String),
}

/// RPID activity tokens that print as their own element (RFC 4480 §3.2).
const ACTIVITY_TOKENS: &[&str] = &[
    "appointment",
    "breakfast",
    "dinner",
    "holiday",
    "in-transit",
    "looking-for-work",
    "lunch",
    "performance",
    "permanent-absence",
    "playing",
    "presentation",
    "shopping",
    "spectator",
    "steering",
    "travel",
    "tv",
    "working",
    "worship",
];

/// RPID mood tokens (RFC 4480 §3.5).
const MOOD_TOKENS: &[&str] = &[
    "afraid",
    "amazed",
    "angry",
    "annoyed",
    "anxious",
    "ashamed",
    "bored",
    "brave",
    "calm",
    "cold",
    "confused",
    "contented",
    "cranky",
    "curious",
    "depressed",
    "disappointed",
    "disgusted",
    "distracted",
    "embarrassed",
    "excited",
    "flirtatious",
    "frustrated",
    "grumpy",
    "guilty",
    "happy",
    "hot",
    "humbled",
    "humiliated",
    "hungry",
    "hurt",
    "impressed",
    "in_awe",
    "in_love",
    "indignant",
    "interested",
    "invincible",
    "jealous",
    "lonely",
    "mean",
    "moody",
    "nervous",
    "neutral",
    "offended",
    "playful",
    "proud",
    "relieved",
    "remorseful",
    "restless",
    "sad",
    "sarcastic",
    "serious",
    "shocked",
    "shy",
    "sick",
    "sleepy",
    "stressed",
    "surprised",
    "thirsty",
    "unknown",
    "worried",
];

impl Activity {
    /// Map an RPID element name (or `<other>` text) to an activity.
    pub fn from_token(token: &str) -> Activity {
        match token {
            "away" => Activity::Away,
            "busy" => Activity::Busy,
            "on-the-phone" | "onthephone" => Activity::OnThePhone,
            "meeting" => Activity::Meeting,
            "meal" => Activity::Meal,
            "vacation" => Activity::Vacation,
            "sleeping" => Activity::Sleeping,
            "unknown" => Activity::Unknown,
            other => Activity::Other(other.to_string()),
        }
    }

    /// The RPID token of this activity (the free text for a non-token `Other`).
    pub fn token(&self) -> &str {
        match self {
            Activity::Away => "away",
            Activity::Busy => "busy",
            Activity::OnThePhone => "on-the-phone",
            Activity::Meeting => "meeting",
            Activity::Meal => "meal",
            Activity::Vacation => "vacation",
            Activity::Sleeping => "sleeping",
            Activity::Unknown => "unknown",
            Activity::Other(s) => s,
        }
    }

    fn to_element(&self) -> Element {
        match self {
            Activity::Other(s) if !ACTIVITY_TOKENS.contains(&s.as_str()) => {
                Element::new(RPID, "other").with_text(s)
            }
            a => Element::new(RPID, a.token()),
        }
    }
}

/// The attributes (`id`, `from`, `until`) and `rpid:note` children of an RPID element such as
/// `rpid:activities`, kept so they survive a round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpidMeta {
    /// Attributes of the element.
    pub attrs: Vec<xml::Attr>,
    /// `rpid:note` children.
    pub notes: Vec<Note>,
}

impl RpidMeta {
    fn read(&mut self, e: &Element) {
        if self.attrs.is_empty() {
            self.attrs.clone_from(&e.attrs);
        }
        self.notes
            .extend(e.elements().filter(|c| c.is(RPID, "note")).map(Note::parse));
    }

    fn apply(&self, e: &mut Element) {
        e.attrs.clone_from(&self.attrs);
        for n in &self.notes {
            e.push(n.to_element(RPID));
        }
    }

    /// Whether there is nothing to keep.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty() && self.notes.is_empty()
    }
}

/// A `dm:person` element with its RPID attributes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Person {
    /// The `id` attribute.
    pub id: String,
    /// `rpid:activities`.
    pub activities: Vec<Activity>,
    /// Attributes (`id`, `from`, `until`) and `rpid:note`s of the `rpid:activities` element.
    pub activities_meta: RpidMeta,
    /// `rpid:mood` values (RFC 4480 tokens, or free text from `<rpid:other>`).
    pub mood: Vec<String>,
    /// Attributes and notes of the `rpid:mood` element.
    pub mood_meta: RpidMeta,
    /// `dm:note` elements (several, one per language).
    pub notes: Vec<Note>,
    /// `rpid:place-type` value (a location-type token such as `residence`, or free text).
    pub place_type: Option<String>,
    /// `dm:timestamp`.
    pub timestamp: Option<String>,
    /// Other person elements (e.g. `rpid:sphere`, `rpid:user-input`, `c:display-name`), kept verbatim.
    pub extra: Vec<RawXml>,
}

/// A `dm:device` element (RFC 4479 §3.4).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Device {
    /// The `id` attribute.
    pub id: String,
    /// `dm:deviceID` (a URN).
    pub device_id: Option<String>,
    /// `dm:note` elements.
    pub notes: Vec<Note>,
    /// `dm:timestamp`.
    pub timestamp: Option<String>,
    /// Other device elements, kept verbatim.
    pub extra: Vec<RawXml>,
}

/// A PIDF `<presence>` document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Presence {
    /// The `entity` attribute (the presentity URI).
    pub entity: String,
    /// `<tuple>` elements.
    pub tuples: Vec<Tuple>,
    /// `dm:person` elements.
    pub persons: Vec<Person>,
    /// `dm:device` elements.
    pub devices: Vec<Device>,
    /// Top-level `<note>` elements.
    pub notes: Vec<Note>,
    /// Other top-level extension elements, kept verbatim.
    pub extra: Vec<RawXml>,
}

/// Tandem's five-state presence summary (what the UI shows and sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Availability {
    /// Open, no activity that says otherwise.
    Available,
    /// Open and away (or meal, vacation, sleeping…).
    Away,
    /// Open and busy (or in a meeting).
    Busy,
    /// Open and on the phone.
    OnThePhone,
    /// No open tuple.
    Offline,
}

/// Stable tuple/person id derived from the entity (FNV-1a), so a device's republications keep their ids.
fn stable_id(prefix: &str, entity: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in entity.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{prefix}{:08x}", h as u32)
}

impl Availability {
    /// A publication expressing this availability: one tuple (open, or closed for `Offline`), and
    /// a person carrying the RPID activity and the note.
    pub fn to_presence(self, entity: &str, note: Option<&str>) -> Presence {
        self.to_presence_with_id(entity, &stable_id("t", entity), note)
    }

    /// Like [`Availability::to_presence`] with an explicit tuple id (e.g. one per device).
    pub fn to_presence_with_id(self, entity: &str, tuple_id: &str, note: Option<&str>) -> Presence {
        let basic = if self == Availability::Offline {
            Basic::Closed
        } else {
            Basic::Open
        };
        let activities = match self {
            Availability::Away => vec![Activity::Away],
            Availability::Busy => vec![Activity::Busy],
            Availability::OnThePhone => vec![Activity::OnThePhone],
            Availability::Available | Availability::Offline => Vec::new(),
        };
        let notes: Vec<Note> = note.map(Note::new).into_iter().collect();
        Presence {
            entity: entity.to_string(),
            tuples: vec![Tuple {
                id: tuple_id.to_string(),
                status: Status {
                    basic: Some(basic),
                    extra: Vec::new(),
                },
                notes: notes.clone(),
                ..Tuple::default()
            }],
            persons: vec![Person {
                id: stable_id("p", entity),
                activities,
                notes,
                ..Person::default()
            }],
            ..Presence::default()
        }
    }
}

impl Presence {
    /// A "closed" document for polite blocking (RFC 5025 §3.2.1): one closed tuple, nothing else.
    pub fn closed(entity: &str) -> Presence {
        Presence {
            entity: entity.to_string(),
            tuples: vec![Tuple {
                id: stable_id("t", entity),
                status: Status {
                    basic: Some(Basic::Closed),
                    extra: Vec::new(),
                },
                ..Tuple::default()
            }],
            ..Presence::default()
        }
    }

    /// A neutral document (no tuples, persons or devices), the other polite-blocking choice.
    pub fn neutral(entity: &str) -> Presence {
        Presence {
            entity: entity.to_string(),
            ..Presence::default()
        }
    }

    /// Summarise as an [`Availability`]: `Offline` without an open tuple; otherwise the strongest
    /// RPID activity of the persons (or, for older clients, activities inside tuple status).
    pub fn availability(&self) -> Availability {
        let open = self
            .tuples
            .iter()
            .any(|t| t.status.basic == Some(Basic::Open));
        if !open {
            return Availability::Offline;
        }
        let mut acts: Vec<Activity> = self
            .persons
            .iter()
            .flat_map(|p| p.activities.iter().cloned())
            .collect();
        for t in &self.tuples {
            for e in t.status.extra.iter().chain(t.extra.iter()) {
                if e.is(RPID, "activities") {
                    acts.extend(parse_activities(e));
                }
            }
        }
        let mut best = Availability::Available;
        let rank = |a: Availability| match a {
            Availability::Available => 0,
            Availability::Away => 1,
            Availability::Busy => 2,
            Availability::OnThePhone => 3,
            Availability::Offline => 4,
        };
        for a in acts {
            let v = match a {
                Activity::OnThePhone => Availability::OnThePhone,
                Activity::Busy | Activity::Meeting => Availability::Busy,
                Activity::Away | Activity::Meal | Activity::Vacation | Activity::Sleeping => {
                    Availability::Away
                }
                Activity::Other(ref s)
                    if matches!(
                        s.as_str(),
                        "appointment" | "presentation" | "performance" | "worship"
                    ) =>
                {
                    Availability::Busy
                }
                Activity::Other(ref s)
                    if matches!(
                        s.as_str(),
                        "breakfast"
                            | "dinner"
                            | "lunch"
                            | "holiday"
                            | "permanent-absence"
                            | "travel"
                    ) =>
                {
                    Availability::Away
                }
                _ => Availability::Available,
            };
            if rank(v) > rank(best) {
                best = v;
            }
        }
        best
    }

    /// Parse a PIDF document (`application/pidf+xml`).
    pub fn parse(input: &[u8]) -> Result<Presence, SimpleError> {
        parse(input)
    }

    /// Print as a PIDF document.
    pub fn to_xml(&self) -> String {
        self.to_element().to_document()
    }

    /// The document as an XML tree.
    pub fn to_element(&self) -> Element {
        let mut root = Element::new(PIDF, "presence").with_attr("entity", &self.entity);
        for t in &self.tuples {
            root.push(tuple_element(t));
        }
        for n in &self.notes {
            root.push(n.to_element(PIDF));
        }
        for p in &self.persons {
            root.push(person_element(p));
        }
        for d in &self.devices {
            root.push(device_element(d));
        }
        for x in &self.extra {
            root.push(x.clone());
        }
        root
    }
}

/// Parse a PIDF document.
pub fn parse(input: &[u8]) -> Result<Presence, SimpleError> {
    let root = xml::parse_root(input, PIDF, "presence")?;
    let entity = root
        .attr("entity")
        .ok_or(SimpleError::MissingAttribute {
            element: "presence",
            attr: "entity",
        })?
        .trim()
        .to_string();
    let mut p = Presence {
        entity,
        ..Presence::default()
    };
    for e in root.elements() {
        if e.is(PIDF, "tuple") {
            p.tuples.push(parse_tuple(e)?);
        } else if e.is(PIDF, "note") {
            p.notes.push(Note::parse(e));
        } else if e.name == "person" && (e.ns == DATA_MODEL || e.ns == PIDF) {
            p.persons.push(parse_person(e));
        } else if e.name == "device" && (e.ns == DATA_MODEL || e.ns == PIDF) {
            p.devices.push(parse_device(e));
        } else {
            p.extra.push(e.clone());
        }
    }
    Ok(p)
}

fn parse_tuple(e: &Element) -> Result<Tuple, SimpleError> {
    let id = e.attr("id").unwrap_or_default().trim().to_string();
    let mut t = Tuple {
        id,
        ..Tuple::default()
    };
    for c in e.elements() {
        if c.is(PIDF, "status") {
            for s in c.elements() {
                if s.is(PIDF, "basic") {
                    // Anything but open/closed is treated as absent: baresip 1.0 publishes
                    // `unknown` (older versions `unkown`, and `?` while busy).
                    t.status.basic = match s.trimmed_text().to_ascii_lowercase().as_str() {
                        "open" => Some(Basic::Open),
                        "closed" => Some(Basic::Closed),
                        _ => None,
                    };
                } else {
                    t.status.extra.push(s.clone());
                }
            }
        } else if c.is(PIDF, "contact") {
            let priority = match c.attr("priority") {
                Some(v) => {
                    let f: f32 = v
                        .trim()
                        .parse()
                        .map_err(|_| SimpleError::invalid("contact priority", v))?;
                    if !(0.0..=1.0).contains(&f) {
                        return Err(SimpleError::invalid("contact priority", v));
                    }
                    Some(f)
                }
                None => None,
            };
            t.contact = Some((c.trimmed_text(), priority));
        } else if c.is(PIDF, "note") {
            t.notes.push(Note::parse(c));
        } else if c.is(PIDF, "timestamp") {
            t.timestamp = Some(c.trimmed_text());
        } else {
            t.extra.push(c.clone());
        }
    }
    Ok(t)
}

/// The tokens of an RPID list element (`activities`, `mood`, `place-type`): child element names,
/// with `<other>` giving its text.
fn tokens(e: &Element) -> Vec<String> {
    e.elements()
        .filter_map(|c| {
            if c.ns == RPID && c.name == "note" {
                None
            } else if c.name == "other" {
                let t = c.trimmed_text();
                (!t.is_empty()).then_some(t)
            } else if c.ns == RPID || c.ns == LOCATION_TYPE || c.ns.is_empty() {
                Some(c.name.clone())
            } else {
                None
            }
        })
        .collect()
}

fn parse_activities(e: &Element) -> Vec<Activity> {
    tokens(e).iter().map(|t| Activity::from_token(t)).collect()
}

fn parse_person(e: &Element) -> Person {
    let mut p = Person {
        id: e.attr("id").unwrap_or_default().trim().to_string(),
        ..Person::default()
    };
    for c in e.elements() {
        if c.is(RPID, "activities") {
            p.activities.extend(parse_activities(c));
            p.activities_meta.read(c);
        } else if c.is(RPID, "mood") {
            p.mood.extend(tokens(c));
            p.mood_meta.read(c);
        } else if c.is(RPID, "place-type")
            && c.attrs.is_empty()
            && p.place_type.is_none()
            && c.elements().count() == 1
        {
            p.place_type = tokens(c).into_iter().next();
        } else if c.name == "note" && (c.ns == DATA_MODEL || c.ns == PIDF) {
            p.notes.push(Note::parse(c));
        } else if c.name == "timestamp" && (c.ns == DATA_MODEL || c.ns == PIDF) {
            p.timestamp = Some(c.trimmed_text());
        } else {
            p.extra.push(c.clone());
        }
    }
    p
}

fn parse_device(e: &Element) -> Device {
    let mut d = Device {
        id: e.attr("id").unwrap_or_default().trim().to_string(),
        ..Device::default()
    };
    for c in e.elements() {
        if c.is(DATA_MODEL, "deviceID") {
            d.device_id = Some(c.trimmed_text());
        } else if c.name == "note" && (c.ns == DATA_MODEL || c.ns == PIDF) {
            d.notes.push(Note::parse(c));
        } else if c.name == "timestamp" && (c.ns == DATA_MODEL || c.ns == PIDF) {
            d.timestamp = Some(c.trimmed_text());
        } else {
            d.extra.push(c.clone());
        }
    }
    d
}

fn tuple_element(t: &Tuple) -> Element {
    let mut e = Element::new(PIDF, "tuple").with_attr("id", &t.id);
    let mut status = Element::new(PIDF, "status");
    if let Some(b) = t.status.basic {
        status.push(Element::new(PIDF, "basic").with_text(match b {
            Basic::Open => "open",
            Basic::Closed => "closed",
        }));
    }
    for x in &t.status.extra {
        status.push(x.clone());
    }
    e.push(status);
    for x in &t.extra {
        e.push(x.clone());
    }
    if let Some((uri, prio)) = &t.contact {
        let mut c = Element::new(PIDF, "contact");
        if let Some(p) = prio {
            c.set_attr("", "priority", &format_priority(*p));
        }
        e.push(c.with_text(uri));
    }
    for n in &t.notes {
        e.push(n.to_element(PIDF));
    }
    if let Some(ts) = &t.timestamp {
        e.push(Element::new(PIDF, "timestamp").with_text(ts));
    }
    e
}

fn format_priority(p: f32) -> String {
    let p = if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let s = format!("{p:.3}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.')
        .map(|x| format!("{x}.0"))
        .unwrap_or(s.to_string())
}

fn person_element(p: &Person) -> Element {
    let mut e = Element::new(DATA_MODEL, "person").with_attr("id", &p.id);
    if !p.activities.is_empty() || !p.activities_meta.is_empty() {
        let mut a = Element::new(RPID, "activities");
        p.activities_meta.apply(&mut a);
        for act in &p.activities {
            a.push(act.to_element());
        }
        e.push(a);
    }
    if !p.mood.is_empty() || !p.mood_meta.is_empty() {
        let mut m = Element::new(RPID, "mood");
        p.mood_meta.apply(&mut m);
        for v in &p.mood {
            if MOOD_TOKENS.contains(&v.as_str()) {
                m.push(Element::new(RPID, v));
            } else {
                m.push(Element::new(RPID, "other").with_text(v));
            }
        }
        e.push(m);
    }
    if let Some(pt) = &p.place_type {
        let inner = if is_token(pt) {
            Element::new(LOCATION_TYPE, pt)
        } else {
            Element::new(RPID, "other").with_text(pt)
        };
        e.push(Element::new(RPID, "place-type").with_child(inner));
    }
    for x in &p.extra {
        e.push(x.clone());
    }
    for n in &p.notes {
        e.push(n.to_element(DATA_MODEL));
    }
    if let Some(ts) = &p.timestamp {
        e.push(Element::new(DATA_MODEL, "timestamp").with_text(ts));
    }
    e
}

/// Whether `s` can be printed as an element name (a simple NCName of letters, digits, `-`, `_`, `.`).
fn is_token(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "other"
}

fn device_element(d: &Device) -> Element {
    let mut e = Element::new(DATA_MODEL, "device").with_attr("id", &d.id);
    for x in &d.extra {
        e.push(x.clone());
    }
    if let Some(id) = &d.device_id {
        e.push(Element::new(DATA_MODEL, "deviceID").with_text(id));
    }
    for n in &d.notes {
        e.push(n.to_element(DATA_MODEL));
    }
    if let Some(ts) = &d.timestamp {
        e.push(Element::new(DATA_MODEL, "timestamp").with_text(ts));
    }
    e
}

/// Compose several publications of one presentity into the document watchers get (RFC 3863 /
/// RFC 4479 union): every tuple and device of every publication (ids made unique by suffixing
/// `-2`, `-3`, … on collision), every distinct note and extension, and a single merged person.
///
/// `publications` must be ordered oldest first (publication time); when every person carries a
/// parseable `dm:timestamp`, timestamps decide the order instead. The newest person wins as a
/// whole for its RPID state (id, activities, mood, place-type, notes, timestamp), so a device
/// that publishes "available" (a person without activities) after another published "busy"
/// clears the busy state; the persons' other elements (e.g. `rpid:sphere`, `c:display-name`) are
/// united by element name, the newest of each kind winning. Publications without a person
/// element leave the person state alone.
pub fn compose(entity: &str, publications: &[Presence]) -> Presence {
    let mut out = Presence::neutral(entity);
    let mut ids: Vec<String> = Vec::new();
    for p in publications {
        for t in &p.tuples {
            let mut t = t.clone();
            t.id = unique_id(&t.id, &mut ids);
            out.tuples.push(t);
        }
        for d in &p.devices {
            let mut d = d.clone();
            d.id = unique_id(&d.id, &mut ids);
            out.devices.push(d);
        }
        for n in &p.notes {
            if !out.notes.contains(n) {
                out.notes.push(n.clone());
            }
        }
        for x in &p.extra {
            if !out.extra.contains(x) {
                out.extra.push(x.clone());
            }
        }
    }
    // Persons ordered oldest → newest: position order, refined by parseable timestamps.
    let mut persons: Vec<(usize, Option<super::time::Instant3339>, &Person)> = publications
        .iter()
        .flat_map(|p| p.persons.iter())
        .enumerate()
        .map(|(i, p)| (i, p.timestamp.as_deref().and_then(parse_rfc3339), p))
        .collect();
    if persons.is_empty() {
        return out;
    }
    if persons.iter().all(|(_, ts, _)| ts.is_some()) {
        persons.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    }
    let mut merged = Person::default();
    for (_, _, p) in persons {
        let extra = std::mem::take(&mut merged.extra);
        merged = Person { extra, ..p.clone() };
        merged
            .extra
            .retain(|old| !p.extra.iter().any(|x| old.ns == x.ns && old.name == x.name));
        merged.extra.extend(p.extra.iter().cloned());
    }
    merged.id = unique_id(&merged.id, &mut ids);
    out.persons.push(merged);
    out
}

fn unique_id(id: &str, taken: &mut Vec<String>) -> String {
    let base = if id.is_empty() { "id" } else { id };
    let mut candidate = base.to_string();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    taken.push(candidate.clone());
    candidate
}
