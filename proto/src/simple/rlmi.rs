//! Resource list meta-information (RFC 4662, `application/rlmi+xml`), the root part of an RLS
//! NOTIFY's `multipart/related` body (see [`super::multipart`]).

use super::SimpleError;
use super::ns::RLMI;
use super::xml::{self, Element, XML_NS};

/// A `<name>` with its optional `xml:lang`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// `xml:lang`.
    pub lang: Option<String>,
    /// The name.
    pub text: String,
}

/// The state of a resource's subscription instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    /// `active`.
    Active,
    /// `pending`.
    Pending,
    /// `terminated`.
    Terminated,
}

/// An `<instance>`: one back-end subscription of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `id`.
    pub id: String,
    /// `state`.
    pub state: InstanceState,
    /// `cid`: the Content-ID of the body part holding its state (no angle brackets).
    pub cid: Option<String>,
    /// `reason` (for terminated instances, e.g. `rejected`).
    pub reason: Option<String>,
}

/// A `<resource>` of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `uri`.
    pub uri: String,
    /// `<name>` elements.
    pub names: Vec<Name>,
    /// `<instance>` elements.
    pub instances: Vec<Instance>,
}

/// An RLMI `<list>` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlmi {
    /// `uri` of the list.
    pub uri: String,
    /// `version` (per subscription, incremented per NOTIFY).
    pub version: u32,
    /// `fullState`.
    pub full_state: bool,
    /// `<name>` elements of the list.
    pub names: Vec<Name>,
    /// The resources.
    pub resources: Vec<Resource>,
}

fn names(e: &Element) -> Vec<Name> {
    e.elements()
        .filter(|n| n.is(RLMI, "name"))
        .map(|n| Name {
            lang: n.lang().map(str::to_string),
            text: n.text(),
        })
        .collect()
}

fn name_element(n: &Name) -> Element {
    let mut e = Element::new(RLMI, "name");
    if let Some(l) = &n.lang {
        e.set_attr(XML_NS, "lang", l);
    }
    e.with_text(&n.text)
}

fn attr<'a>(e: &'a Element, el: &'static str, a: &'static str) -> Result<&'a str, SimpleError> {
    e.attr(a)
        .map(str::trim)
        .ok_or(SimpleError::MissingAttribute {
            element: el,
            attr: a,
        })
}

impl Rlmi {
    /// Parse an RLMI document.
    pub fn parse(input: &[u8]) -> Result<Rlmi, SimpleError> {
        let root = xml::parse_root(input, RLMI, "list")?;
        let v = attr(&root, "list", "version")?;
        let fs = attr(&root, "list", "fullState")?;
        let mut out = Rlmi {
            uri: attr(&root, "list", "uri")?.to_string(),
            version: v.parse().map_err(|_| SimpleError::invalid("version", v))?,
            full_state: match fs {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(SimpleError::invalid("fullState", fs)),
            },
            names: names(&root),
            resources: Vec::new(),
        };
        for r in root.elements().filter(|e| e.is(RLMI, "resource")) {
            let mut res = Resource {
                uri: attr(r, "resource", "uri")?.to_string(),
                names: names(r),
                instances: Vec::new(),
            };
            for i in r.elements().filter(|e| e.is(RLMI, "instance")) {
                let st = attr(i, "instance", "state")?;
                res.instances.push(Instance {
                    id: attr(i, "instance", "id")?.to_string(),
                    state: match st {
                        "active" => InstanceState::Active,
                        "pending" => InstanceState::Pending,
                        "terminated" => InstanceState::Terminated,
                        _ => return Err(SimpleError::invalid("instance state", st)),
                    },
                    cid: i.attr("cid").map(|c| {
                        c.trim()
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .to_string()
                    }),
                    reason: i.attr("reason").map(|c| c.trim().to_string()),
                });
            }
            out.resources.push(res);
        }
        Ok(out)
    }

    /// Print as an RLMI document.
    pub fn to_xml(&self) -> String {
        let mut root = Element::new(RLMI, "list")
            .with_attr("uri", &self.uri)
            .with_attr("version", &self.version.to_string())
            .with_attr("fullState", if self.full_state { "true" } else { "false" });
        for n in &self.names {
            root.push(name_element(n));
        }
        for r in &self.resources {
            let mut re = Element::new(RLMI, "resource").with_attr("uri", &r.uri);
            for n in &r.names {
                re.push(name_element(n));
            }
            for i in &r.instances {
                let mut ie = Element::new(RLMI, "instance")
                    .with_attr("id", &i.id)
                    .with_attr(
                        "state",
                        match i.state {
                            InstanceState::Active => "active",
                            InstanceState::Pending => "pending",
                            InstanceState::Terminated => "terminated",
                        },
                    );
                if let Some(r) = &i.reason {
                    ie.set_attr("", "reason", r);
                }
                if let Some(c) = &i.cid {
                    ie.set_attr("", "cid", c);
                }
                re.push(ie);
            }
            root.push(re);
        }
        root.to_document()
    }
}
