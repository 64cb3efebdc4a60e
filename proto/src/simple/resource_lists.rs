//! Resource lists (RFC 4826, `application/resource-lists+xml`): a user's buddy lists.

use super::SimpleError;
use super::ns::RESOURCE_LISTS;
use super::xml::{self, Element, RawXml, XML_NS};

/// A `<display-name>` with its optional `xml:lang`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisplayName {
    /// The `xml:lang` attribute.
    pub lang: Option<String>,
    /// The name.
    pub text: String,
}

/// An `<entry uri=…>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The `uri` attribute.
    pub uri: String,
    /// The `<display-name>`.
    pub display_name: Option<DisplayName>,
    /// Extension elements and attributes-free children, kept verbatim.
    pub extra: Vec<RawXml>,
}

/// A `<list>` (lists nest).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct List {
    /// The `name` attribute (unique among siblings; used in XCAP selectors).
    pub name: Option<String>,
    /// The `<display-name>`.
    pub display_name: Option<DisplayName>,
    /// `<entry>` elements.
    pub entries: Vec<Entry>,
    /// `<entry-ref ref=…>` targets (relative XCAP URIs) with their display names.
    pub entry_refs: Vec<(String, Option<DisplayName>)>,
    /// `<external anchor=…>` targets (absolute XCAP URIs of other lists) with their display names.
    pub external: Vec<(String, Option<DisplayName>)>,
    /// Nested `<list>` elements.
    pub lists: Vec<List>,
    /// Extension elements, kept verbatim.
    pub extra: Vec<RawXml>,
}

/// A `<resource-lists>` document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceLists {
    /// Top-level lists.
    pub lists: Vec<List>,
}

fn display_name(e: &Element) -> Option<DisplayName> {
    e.child(RESOURCE_LISTS, "display-name")
        .map(|d| DisplayName {
            lang: d.lang().map(str::to_string),
            text: d.text(),
        })
}

fn display_name_element(d: &DisplayName) -> Element {
    let mut e = Element::new(RESOURCE_LISTS, "display-name");
    if let Some(l) = &d.lang {
        e.set_attr(XML_NS, "lang", l);
    }
    e.with_text(&d.text)
}

fn parse_list(e: &Element) -> Result<List, SimpleError> {
    let mut l = List {
        name: e.attr("name").map(str::to_string),
        display_name: display_name(e),
        ..List::default()
    };
    for c in e.elements() {
        if c.ns != RESOURCE_LISTS {
            l.extra.push(c.clone());
            continue;
        }
        match c.name.as_str() {
            "display-name" => {}
            "entry" => {
                let uri = c.attr("uri").ok_or(SimpleError::MissingAttribute {
                    element: "entry",
                    attr: "uri",
                })?;
                l.entries.push(Entry {
                    uri: uri.trim().to_string(),
                    display_name: display_name(c),
                    extra: c
                        .elements()
                        .filter(|x| !x.is(RESOURCE_LISTS, "display-name"))
                        .cloned()
                        .collect(),
                });
            }
            "entry-ref" => {
                let r = c.attr("ref").ok_or(SimpleError::MissingAttribute {
                    element: "entry-ref",
                    attr: "ref",
                })?;
                l.entry_refs.push((r.trim().to_string(), display_name(c)));
            }
            "external" => {
                let a = c.attr("anchor").ok_or(SimpleError::MissingAttribute {
                    element: "external",
                    attr: "anchor",
                })?;
                l.external.push((a.trim().to_string(), display_name(c)));
            }
            "list" => l.lists.push(parse_list(c)?),
            _ => l.extra.push(c.clone()),
        }
    }
    Ok(l)
}

fn list_element(l: &List) -> Element {
    let mut e = Element::new(RESOURCE_LISTS, "list");
    if let Some(n) = &l.name {
        e.set_attr("", "name", n);
    }
    if let Some(d) = &l.display_name {
        e.push(display_name_element(d));
    }
    for en in &l.entries {
        let mut x = Element::new(RESOURCE_LISTS, "entry").with_attr("uri", &en.uri);
        if let Some(d) = &en.display_name {
            x.push(display_name_element(d));
        }
        for c in &en.extra {
            x.push(c.clone());
        }
        e.push(x);
    }
    for (r, d) in &l.entry_refs {
        let mut x = Element::new(RESOURCE_LISTS, "entry-ref").with_attr("ref", r);
        if let Some(d) = d {
            x.push(display_name_element(d));
        }
        e.push(x);
    }
    for (a, d) in &l.external {
        let mut x = Element::new(RESOURCE_LISTS, "external").with_attr("anchor", a);
        if let Some(d) = d {
            x.push(display_name_element(d));
        }
        e.push(x);
    }
    for sub in &l.lists {
        e.push(list_element(sub));
    }
    for c in &l.extra {
        e.push(c.clone());
    }
    e
}

impl List {
    /// Every entry URI of this list and its nested lists, depth first, without duplicates.
    pub fn all_uris(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut Vec<String>) {
        for e in &self.entries {
            if !out.contains(&e.uri) {
                out.push(e.uri.clone());
            }
        }
        for l in &self.lists {
            l.collect(out);
        }
    }
}

impl ResourceLists {
    /// Parse a resource-lists document.
    pub fn parse(input: &[u8]) -> Result<ResourceLists, SimpleError> {
        let root = xml::parse_root(input, RESOURCE_LISTS, "resource-lists")?;
        let mut lists = Vec::new();
        for c in root.elements().filter(|e| e.is(RESOURCE_LISTS, "list")) {
            lists.push(parse_list(c)?);
        }
        Ok(ResourceLists { lists })
    }

    /// Print as a resource-lists document.
    pub fn to_xml(&self) -> String {
        let mut root = Element::new(RESOURCE_LISTS, "resource-lists");
        for l in &self.lists {
            root.push(list_element(l));
        }
        root.to_document()
    }

    /// Every entry URI in every list (nested lists included), without duplicates, in document order.
    /// `entry-ref` and `external` targets are not dereferenced.
    pub fn all_uris(&self) -> Vec<String> {
        let mut out = Vec::new();
        for l in &self.lists {
            l.collect(&mut out);
        }
        out
    }

    /// The top-level list with this `name`.
    pub fn list(&self, name: &str) -> Option<&List> {
        self.lists.iter().find(|l| l.name.as_deref() == Some(name))
    }
}
