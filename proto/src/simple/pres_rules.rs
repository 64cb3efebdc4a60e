//! Presence authorization rules (RFC 5025, `application/auth-policy+xml`) over common policy
//! (RFC 4745), with the decision function the presence agent applies to a watcher.
//!
//! ## Decision ([`Ruleset::decide_at`])
//! A rule matches when every condition it has matches: its identity condition (`one id` equal to
//! the watcher after URI normalisation, or a `many` whose domain, if any, is the watcher's and whose
//! `except`s do not exclude it), its validity intervals (one must contain `now`), and it has no
//! sphere or unknown (extension) condition — we know no presentity sphere and must not grant on a
//! condition we do not understand (RFC 4745 §7). A rule without `<conditions>` matches everyone.
//! The result is the highest `sub-handling` of all matching rules (RFC 4745 §10 combining,
//! values block 0 < confirm 10 < polite-block 20 < allow 30); a matching rule without a
//! `sub-handling` contributes `block` (the lowest value). **No matching rule gives `Confirm`**:
//! the presentity is asked (watcher-info) rather than silently refusing (RFC 5025 §3.2.1 leaves
//! the default to local policy; this is ours, and Kamailio's presence_xml does the same: no
//! rules document or no matching rule leaves the subscription pending).
//!
//! ## Transformations
//! [`Ruleset::transformations_for`] unites the transformations of the matching rules and
//! [`Transformations::apply`] filters a presence document accordingly (RFC 5025 §3.3). Note that
//! by RFC 5025 a rule that grants `allow` without any `provide-*` transformation lets the watcher
//! see nothing but an empty document; [`Ruleset::set_handling`] therefore writes
//! [`Transformations::everything`] with `allow`.

use super::SimpleError;
use super::ns::{COMMON_POLICY, DATA_MODEL, PRES_RULES, RPID};
use super::pidf::Presence;
use super::time::{Instant3339, parse_rfc3339};
use super::xml::{self, Element, RawXml};

/// The `sub-handling` action; ordered by its RFC 5025 combining value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubHandling {
    /// `block` (0): reject the subscription.
    Block,
    /// `confirm` (10): pending until the presentity decides (watcher-info).
    Confirm,
    /// `polite-block` (20): accept, but send a document that reveals nothing.
    PoliteBlock,
    /// `allow` (30): accept and send the (transformed) state.
    Allow,
}

impl SubHandling {
    /// The element token.
    pub fn as_str(self) -> &'static str {
        match self {
            SubHandling::Block => "block",
            SubHandling::Confirm => "confirm",
            SubHandling::PoliteBlock => "polite-block",
            SubHandling::Allow => "allow",
        }
    }

    /// Parse the element token.
    pub fn from_token(s: &str) -> Option<Self> {
        Some(match s {
            "block" => SubHandling::Block,
            "confirm" => SubHandling::Confirm,
            "polite-block" => SubHandling::PoliteBlock,
            "allow" => SubHandling::Allow,
            _ => return None,
        })
    }
}

/// An `<except>` inside `<many>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Except {
    /// `<except id=…/>`: one identity.
    Id(String),
    /// `<except domain=…/>`: a whole domain.
    Domain(String),
}

/// One child of `<identity>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityCond {
    /// `<one id=…/>`.
    One(String),
    /// `<many domain=…>` (no domain: any authenticated identity) with `<except>`s.
    Many {
        /// The domain, if restricted.
        domain: Option<String>,
        /// Exclusions.
        excepts: Vec<Except>,
    },
}

/// A `<validity>` interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    /// `<from>` (RFC 3339).
    pub from: String,
    /// `<until>` (RFC 3339).
    pub until: String,
}

/// `<conditions>` of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conditions {
    /// `<identity>` children; `None` when there is no identity condition (matches any watcher).
    pub identities: Option<Vec<IdentityCond>>,
    /// `<sphere value=…>`.
    pub sphere: Option<String>,
    /// `<validity>` intervals (any one must contain the time).
    pub validity: Vec<Validity>,
    /// Unknown (extension) conditions; a rule with any does not match.
    pub extra: Vec<RawXml>,
}

/// Which services / persons / devices a transformation lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvideSet {
    /// `<all-services/>` (`all-persons`, `all-devices`).
    All,
    /// Specific selectors (e.g. `<service-uri>`, `<occurrence-id>`, `<deviceID>`), kept verbatim.
    Some(Vec<RawXml>),
}

/// `<transformations>` of a rule (RFC 5025 §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transformations {
    /// `<provide-services>`.
    pub provide_services: Option<ProvideSet>,
    /// `<provide-persons>`.
    pub provide_persons: Option<ProvideSet>,
    /// `<provide-devices>`.
    pub provide_devices: Option<ProvideSet>,
    /// `<provide-all-attributes/>`.
    pub provide_all_attributes: bool,
    /// Boolean `provide-*` attribute permissions set to `true` (e.g. `provide-activities`).
    pub flags: Vec<String>,
    /// Other transformations (e.g. `provide-user-input` with a value, extension ones), kept verbatim.
    pub extra: Vec<RawXml>,
}

/// One `<rule>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// The `id` attribute.
    pub id: String,
    /// `<conditions>`.
    pub conditions: Conditions,
    /// `<sub-handling>` in `<actions>` (`None` if absent).
    pub actions: Option<SubHandling>,
    /// Other actions, kept verbatim.
    pub extra_actions: Vec<RawXml>,
    /// `<transformations>`.
    pub transformations: Transformations,
}

/// A `<ruleset>` document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// Normalise an identity for comparison: strip `<>`, parameters and headers, lower-case scheme
/// and host (user parts stay case-sensitive); `sip:`-less values are taken as `sip:`.
pub fn normalize_identity(uri: &str) -> String {
    let mut s = uri.trim();
    if let (Some(a), Some(b)) = (s.find('<'), s.rfind('>'))
        && a < b
    {
        s = s.get(a + 1..b).unwrap_or(s);
    }
    let (scheme, rest) = match s.split_once(':') {
        Some((sc, r)) if !sc.contains('@') => (sc.to_ascii_lowercase(), r),
        _ => ("sip".to_string(), s),
    };
    let scheme = if scheme == "sips" || scheme == "pres" || scheme == "im" {
        "sip".to_string()
    } else {
        scheme
    };
    let rest = rest.split([';', '?']).next().unwrap_or_default();
    match rest.rsplit_once('@') {
        Some((user, host)) => format!("{scheme}:{user}@{}", host.to_ascii_lowercase()),
        None => format!("{scheme}:{}", rest.to_ascii_lowercase()),
    }
}

fn domain_of(normalized: &str) -> &str {
    match normalized.rsplit_once('@') {
        Some((_, h)) => h.split(':').next().unwrap_or(h),
        None => normalized
            .split_once(':')
            .map(|(_, r)| r)
            .unwrap_or(normalized),
    }
}

impl IdentityCond {
    /// Whether this identity condition matches a watcher (normalised with [`normalize_identity`]).
    pub fn matches(&self, watcher: &str) -> bool {
        let w = normalize_identity(watcher);
        match self {
            IdentityCond::One(id) => normalize_identity(id) == w,
            IdentityCond::Many { domain, excepts } => {
                let wd = domain_of(&w);
                if let Some(d) = domain
                    && !d.trim().eq_ignore_ascii_case(wd)
                {
                    return false;
                }
                !excepts.iter().any(|e| match e {
                    Except::Id(id) => normalize_identity(id) == w,
                    Except::Domain(d) => d.trim().eq_ignore_ascii_case(wd),
                })
            }
        }
    }
}

impl Rule {
    /// Whether this rule applies to `watcher` at `now` (`None`: rules with validity never match).
    pub fn matches(&self, watcher: &str, now: Option<Instant3339>) -> bool {
        let c = &self.conditions;
        if c.sphere.is_some() || !c.extra.is_empty() {
            return false;
        }
        if let Some(ids) = &c.identities
            && !ids.iter().any(|i| i.matches(watcher))
        {
            return false;
        }
        if !c.validity.is_empty() {
            let Some(now) = now else { return false };
            let ok = c.validity.iter().any(|v| {
                match (parse_rfc3339(&v.from), parse_rfc3339(&v.until)) {
                    (Some(f), Some(u)) => f <= now && now < u,
                    _ => false,
                }
            });
            if !ok {
                return false;
            }
        }
        true
    }
}

impl Ruleset {
    /// The sub-handling for `watcher_uri`, ignoring time: rules with a validity condition do not
    /// match (use [`Ruleset::decide_at`] when the time is known). See the module docs.
    pub fn decide(&self, watcher_uri: &str) -> SubHandling {
        self.decide_inner(watcher_uri, None)
    }

    /// The sub-handling for `watcher_uri` at Unix time `now_unix` (validity conditions evaluated).
    pub fn decide_at(&self, watcher_uri: &str, now_unix: i64) -> SubHandling {
        self.decide_inner(
            watcher_uri,
            Some(Instant3339 {
                unix: now_unix,
                nanos: 0,
            }),
        )
    }

    fn decide_inner(&self, watcher: &str, now: Option<Instant3339>) -> SubHandling {
        self.matching_rules(watcher, now)
            .map(|r| r.actions.unwrap_or(SubHandling::Block))
            .max()
            .unwrap_or(SubHandling::Confirm)
    }

    /// The rules that match `watcher` (for combining transformations).
    pub fn matching_rules<'a>(
        &'a self,
        watcher: &'a str,
        now: Option<Instant3339>,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.matches(watcher, now))
    }

    /// Parse a ruleset document.
    pub fn parse(input: &[u8]) -> Result<Ruleset, SimpleError> {
        let root = xml::parse_root(input, COMMON_POLICY, "ruleset")?;
        let mut rules = Vec::new();
        for r in root.elements().filter(|e| e.is(COMMON_POLICY, "rule")) {
            rules.push(parse_rule(r)?);
        }
        Ok(Ruleset { rules })
    }

    /// Print as a ruleset document.
    pub fn to_xml(&self) -> String {
        let mut root = Element::new(COMMON_POLICY, "ruleset");
        for r in &self.rules {
            root.push(rule_element(r));
        }
        root.to_document()
    }

    /// Set the sub-handling of the single-identity rule for `watcher_uri` (creating a rule with
    /// id `id` if none has exactly that `one` identity), as a client does on allow/block.
    pub fn set_handling(&mut self, id: &str, watcher_uri: &str, handling: SubHandling) {
        let w = normalize_identity(watcher_uri);
        for r in &mut self.rules {
            if let Some(ids) = &r.conditions.identities
                && matches!(ids.as_slice(), [IdentityCond::One(x)] if normalize_identity(x) == w)
                && r.conditions.validity.is_empty()
                && r.conditions.sphere.is_none()
                && r.conditions.extra.is_empty()
            {
                r.actions = Some(handling);
                return;
            }
        }
        self.rules.push(Rule {
            id: id.to_string(),
            conditions: Conditions {
                identities: Some(vec![IdentityCond::One(watcher_uri.trim().to_string())]),
                ..Conditions::default()
            },
            actions: Some(handling),
            extra_actions: Vec::new(),
            transformations: if handling == SubHandling::Allow {
                Transformations::everything()
            } else {
                Transformations::default()
            },
        });
    }
}

impl Transformations {
    /// Provide all services, persons, devices and attributes.
    pub fn everything() -> Self {
        Transformations {
            provide_services: Some(ProvideSet::All),
            provide_persons: Some(ProvideSet::All),
            provide_devices: Some(ProvideSet::All),
            provide_all_attributes: true,
            flags: Vec::new(),
            extra: Vec::new(),
        }
    }
}

fn parse_rule(r: &Element) -> Result<Rule, SimpleError> {
    let mut rule = Rule {
        id: r
            .attr("id")
            .ok_or(SimpleError::MissingAttribute {
                element: "rule",
                attr: "id",
            })?
            .trim()
            .to_string(),
        ..Rule::default()
    };
    if let Some(c) = r.child(COMMON_POLICY, "conditions") {
        for x in c.elements() {
            if x.is(COMMON_POLICY, "identity") {
                let ids = rule.conditions.identities.get_or_insert_with(Vec::new);
                for i in x.elements() {
                    if i.is(COMMON_POLICY, "one") {
                        let id = i.attr("id").ok_or(SimpleError::MissingAttribute {
                            element: "one",
                            attr: "id",
                        })?;
                        ids.push(IdentityCond::One(id.trim().to_string()));
                    } else if i.is(COMMON_POLICY, "many") {
                        let mut excepts = Vec::new();
                        for e in i.elements().filter(|e| e.is(COMMON_POLICY, "except")) {
                            if let Some(id) = e.attr("id") {
                                excepts.push(Except::Id(id.trim().to_string()));
                            } else if let Some(d) = e.attr("domain") {
                                excepts.push(Except::Domain(d.trim().to_string()));
                            }
                        }
                        ids.push(IdentityCond::Many {
                            domain: i.attr("domain").map(|d| d.trim().to_string()),
                            excepts,
                        });
                    } else {
                        // An identity kind we do not know: keep it, and never match on it.
                        rule.conditions.extra.push(i.clone());
                    }
                }
            } else if x.is(COMMON_POLICY, "sphere") {
                rule.conditions.sphere = Some(x.attr("value").unwrap_or_default().to_string());
            } else if x.is(COMMON_POLICY, "validity") {
                let froms = x.elements().filter(|e| e.is(COMMON_POLICY, "from"));
                let untils = x.elements().filter(|e| e.is(COMMON_POLICY, "until"));
                for (f, u) in froms.zip(untils) {
                    rule.conditions.validity.push(Validity {
                        from: f.trimmed_text(),
                        until: u.trimmed_text(),
                    });
                }
            } else {
                rule.conditions.extra.push(x.clone());
            }
        }
    }
    if let Some(a) = r.child(COMMON_POLICY, "actions") {
        for x in a.elements() {
            if x.is(PRES_RULES, "sub-handling") {
                let t = x.trimmed_text();
                rule.actions = Some(
                    SubHandling::from_token(&t)
                        .ok_or_else(|| SimpleError::invalid("sub-handling", &t))?,
                );
            } else {
                rule.extra_actions.push(x.clone());
            }
        }
    }
    if let Some(t) = r.child(COMMON_POLICY, "transformations") {
        let tr = &mut rule.transformations;
        for x in t.elements() {
            if x.ns != PRES_RULES {
                tr.extra.push(x.clone());
                continue;
            }
            let set = |x: &Element, all: &str| {
                if x.child(PRES_RULES, all).is_some() {
                    ProvideSet::All
                } else {
                    ProvideSet::Some(x.elements().cloned().collect())
                }
            };
            match x.name.as_str() {
                "provide-services" => tr.provide_services = Some(set(x, "all-services")),
                "provide-persons" => tr.provide_persons = Some(set(x, "all-persons")),
                "provide-devices" => tr.provide_devices = Some(set(x, "all-devices")),
                "provide-all-attributes" => tr.provide_all_attributes = true,
                n if n.starts_with("provide-")
                    && x.elements().next().is_none()
                    && x.attrs.is_empty() =>
                {
                    match x.trimmed_text().as_str() {
                        "true" | "1" => tr.flags.push(n.to_string()),
                        "false" | "0" => {}
                        _ => tr.extra.push(x.clone()),
                    }
                }
                _ => tr.extra.push(x.clone()),
            }
        }
    }
    Ok(rule)
}

fn rule_element(r: &Rule) -> Element {
    let mut e = Element::new(COMMON_POLICY, "rule").with_attr("id", &r.id);
    let c = &r.conditions;
    let mut cond = Element::new(COMMON_POLICY, "conditions");
    if c.identities.is_some() || c.extra.iter().any(|x| x.ns == COMMON_POLICY) {
        let mut ident = Element::new(COMMON_POLICY, "identity");
        for i in c.identities.iter().flatten() {
            match i {
                IdentityCond::One(id) => {
                    ident.push(Element::new(COMMON_POLICY, "one").with_attr("id", id))
                }
                IdentityCond::Many { domain, excepts } => {
                    let mut m = Element::new(COMMON_POLICY, "many");
                    if let Some(d) = domain {
                        m.set_attr("", "domain", d);
                    }
                    for x in excepts {
                        m.push(match x {
                            Except::Id(id) => {
                                Element::new(COMMON_POLICY, "except").with_attr("id", id)
                            }
                            Except::Domain(d) => {
                                Element::new(COMMON_POLICY, "except").with_attr("domain", d)
                            }
                        });
                    }
                    ident.push(m);
                }
            }
        }
        // Unknown identity kinds were kept in `extra`; common-policy ones go back inside <identity>.
        for x in c.extra.iter().filter(|x| x.ns == COMMON_POLICY) {
            ident.push(x.clone());
        }
        cond.push(ident);
    }
    if let Some(s) = &c.sphere {
        cond.push(Element::new(COMMON_POLICY, "sphere").with_attr("value", s));
    }
    if !c.validity.is_empty() {
        let mut v = Element::new(COMMON_POLICY, "validity");
        for i in &c.validity {
            v.push(Element::new(COMMON_POLICY, "from").with_text(&i.from));
            v.push(Element::new(COMMON_POLICY, "until").with_text(&i.until));
        }
        cond.push(v);
    }
    for x in c.extra.iter().filter(|x| x.ns != COMMON_POLICY) {
        cond.push(x.clone());
    }
    e.push(cond);
    let mut actions = Element::new(COMMON_POLICY, "actions");
    if let Some(h) = r.actions {
        actions.push(Element::new(PRES_RULES, "sub-handling").with_text(h.as_str()));
    }
    for x in &r.extra_actions {
        actions.push(x.clone());
    }
    e.push(actions);
    let t = &r.transformations;
    let mut tr = Element::new(COMMON_POLICY, "transformations");
    let set = |name: &str, all: &str, s: &ProvideSet| {
        let mut x = Element::new(PRES_RULES, name);
        match s {
            ProvideSet::All => x.push(Element::new(PRES_RULES, all)),
            ProvideSet::Some(v) => x.children.extend(v.iter().cloned().map(xml::Node::Element)),
        }
        x
    };
    if let Some(s) = &t.provide_services {
        tr.push(set("provide-services", "all-services", s));
    }
    if let Some(s) = &t.provide_persons {
        tr.push(set("provide-persons", "all-persons", s));
    }
    if let Some(s) = &t.provide_devices {
        tr.push(set("provide-devices", "all-devices", s));
    }
    for f in &t.flags {
        tr.push(Element::new(PRES_RULES, f).with_text("true"));
    }
    if t.provide_all_attributes {
        tr.push(Element::new(PRES_RULES, "provide-all-attributes"));
    }
    for x in &t.extra {
        tr.push(x.clone());
    }
    e.push(tr);
    e
}

fn union_set(a: &Option<ProvideSet>, b: &Option<ProvideSet>) -> Option<ProvideSet> {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(ProvideSet::All), _) | (_, Some(ProvideSet::All)) => Some(ProvideSet::All),
        (Some(ProvideSet::Some(x)), Some(ProvideSet::Some(y))) => {
            let mut v = x.clone();
            v.extend(y.iter().filter(|e| !x.contains(e)).cloned());
            Some(ProvideSet::Some(v))
        }
    }
}

/// The text of the `rpid:class` among `extra`, if any.
fn class_of(extra: &[RawXml]) -> Option<String> {
    extra
        .iter()
        .find(|e| e.is(RPID, "class"))
        .map(Element::trimmed_text)
}

impl ProvideSet {
    /// Whether an occurrence passes: `All`, or one selector matches. `check(name, value)` answers
    /// for the selector kinds the caller understands (unknown kinds never match).
    fn permits(&self, mut check: impl FnMut(&str, &str) -> bool) -> bool {
        match self {
            ProvideSet::All => true,
            ProvideSet::Some(sel) => sel
                .iter()
                .any(|s| s.ns == PRES_RULES && check(&s.name, &s.trimmed_text())),
        }
    }
}

impl Transformations {
    /// Combine with another rule's transformations (RFC 4745 §10.2: the union of permissions).
    pub fn union(&self, other: &Transformations) -> Transformations {
        let mut flags = self.flags.clone();
        flags.extend(
            other
                .flags
                .iter()
                .filter(|f| !self.flags.contains(f))
                .cloned(),
        );
        let mut extra = self.extra.clone();
        extra.extend(
            other
                .extra
                .iter()
                .filter(|e| !self.extra.contains(e))
                .cloned(),
        );
        Transformations {
            provide_services: union_set(&self.provide_services, &other.provide_services),
            provide_persons: union_set(&self.provide_persons, &other.provide_persons),
            provide_devices: union_set(&self.provide_devices, &other.provide_devices),
            provide_all_attributes: self.provide_all_attributes || other.provide_all_attributes,
            flags,
            extra,
        }
    }

    /// Whether the attribute permission `provide-<name>` is granted (all-attributes, a `true`
    /// flag, or a valued permission such as `provide-user-input` other than `false`).
    pub fn permits_attribute(&self, name: &str) -> bool {
        let full = format!("provide-{name}");
        self.provide_all_attributes
            || self.flags.contains(&full)
            || self
                .extra
                .iter()
                .any(|e| e.ns == PRES_RULES && e.name == full && e.trimmed_text() != "false")
    }

    fn keep_element(&self, e: &Element) -> bool {
        if self.provide_all_attributes {
            return true;
        }
        if e.ns == RPID || e.ns == DATA_MODEL {
            return self.permits_attribute(&e.name);
        }
        // provide-unknown-attribute ns=… name=… (RFC 5025 §3.3.19).
        self.extra.iter().any(|p| {
            p.is(PRES_RULES, "provide-unknown-attribute")
                && p.attr("ns") == Some(e.ns.as_str())
                && p.attr("name") == Some(e.name.as_str())
                && p.trimmed_text() == "true"
        })
    }

    /// Apply these transformations to a presence document (RFC 5025 §3.3): services, persons and
    /// devices not provided are removed, and so are the attributes not permitted. A tuple's
    /// `<basic>` status and `<contact>` always go with a provided service; notes need
    /// `provide-note`; unknown extension elements need `provide-unknown-attribute` (or
    /// `provide-all-attributes`). Service selectors understood: `service-uri`,
    /// `service-uri-scheme`, `occurrence-id`, `class`; persons: `occurrence-id`, `class`;
    /// devices: `deviceID`, `occurrence-id`, `class`.
    pub fn apply(&self, p: &Presence) -> Presence {
        let notes = self.permits_attribute("note");
        let mut out = Presence::neutral(&p.entity);
        if notes {
            out.notes.clone_from(&p.notes);
        }
        if self.provide_all_attributes {
            out.extra.clone_from(&p.extra);
        }
        if let Some(set) = &self.provide_services {
            for t in &p.tuples {
                let class = class_of(&t.extra);
                let uri = t.contact.as_ref().map(|c| c.0.as_str()).unwrap_or("");
                let ok = set.permits(|kind, v| match kind {
                    "service-uri" => {
                        !uri.is_empty() && normalize_identity(uri) == normalize_identity(v)
                    }
                    "service-uri-scheme" => uri
                        .split_once(':')
                        .is_some_and(|(s, _)| s.eq_ignore_ascii_case(v)),
                    "occurrence-id" => t.id == v,
                    "class" => class.as_deref() == Some(v),
                    _ => false,
                });
                if ok {
                    let mut t = t.clone();
                    t.status.extra.retain(|e| self.keep_element(e));
                    t.extra.retain(|e| self.keep_element(e));
                    if !notes {
                        t.notes.clear();
                    }
                    out.tuples.push(t);
                }
            }
        }
        if let Some(set) = &self.provide_persons {
            for person in &p.persons {
                let class = class_of(&person.extra);
                let ok = set.permits(|kind, v| match kind {
                    "occurrence-id" => person.id == v,
                    "class" => class.as_deref() == Some(v),
                    _ => false,
                });
                if !ok {
                    continue;
                }
                let mut q = person.clone();
                if !self.permits_attribute("activities") {
                    q.activities.clear();
                    q.activities_meta = Default::default();
                }
                if !self.permits_attribute("mood") {
                    q.mood.clear();
                    q.mood_meta = Default::default();
                }
                if !self.permits_attribute("place-type") {
                    q.place_type = None;
                }
                if !notes {
                    q.notes.clear();
                }
                q.extra.retain(|e| self.keep_element(e));
                out.persons.push(q);
            }
        }
        if let Some(set) = &self.provide_devices {
            for d in &p.devices {
                let class = class_of(&d.extra);
                let ok = set.permits(|kind, v| match kind {
                    "deviceID" => d.device_id.as_deref() == Some(v),
                    "occurrence-id" => d.id == v,
                    "class" => class.as_deref() == Some(v),
                    _ => false,
                });
                if !ok {
                    continue;
                }
                let mut d = d.clone();
                if !self.permits_attribute("deviceID") {
                    d.device_id = None;
                }
                if !notes {
                    d.notes.clear();
                }
                d.extra.retain(|e| self.keep_element(e));
                out.devices.push(d);
            }
        }
        out
    }
}

impl Ruleset {
    /// The union of the transformations of every rule matching `watcher` at `now` (`None`:
    /// rules with a validity condition do not match). No matching rule: nothing is provided.
    pub fn transformations_for(&self, watcher: &str, now: Option<Instant3339>) -> Transformations {
        self.matching_rules(watcher, now)
            .fold(Transformations::default(), |acc, r| {
                acc.union(&r.transformations)
            })
    }
}
