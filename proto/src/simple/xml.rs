//! A small, bounded, namespace-aware XML tree over quick-xml, shared by every SIMPLE document format.
//!
//! Parsing resolves every element and attribute name to (namespace URI, local name), so documents
//! using any prefixes (or default namespaces) read the same. Whitespace-only text between elements
//! is dropped; comments, processing instructions and the XML declaration are ignored; a DOCTYPE is
//! refused (no entity expansion ever happens). Printing declares every namespace used on the root
//! element, with conventional prefixes for the well-known SIMPLE namespaces.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::SimpleError;

/// The namespace bound to the `xml` prefix (for `xml:lang`).
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Limits applied while parsing a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Largest accepted document, in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting accepted.
    pub max_depth: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
    /// Most attributes accepted on one element.
    pub max_attributes: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits {
            max_bytes: 1024 * 1024,
            max_depth: 32,
            max_elements: 20_000,
            max_attributes: 64,
        }
    }
}

/// One attribute: namespace (empty for unqualified attributes), local name and unescaped value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Namespace URI; empty for an unprefixed attribute.
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Unescaped value.
    pub value: String,
}

/// A child of an element: another element or a run of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (entities resolved, CDATA included).
    Text(String),
}

/// An element with its resolved name, attributes and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI; empty when the element is in no namespace.
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Attributes in document order (namespace declarations excluded).
    pub attrs: Vec<Attr>,
    /// Children in document order.
    pub children: Vec<Node>,
}

/// An element kept verbatim (as a tree) so unknown extensions survive a parse/print round trip.
pub type RawXml = Element;

impl Element {
    /// A new empty element in namespace `ns`.
    pub fn new(ns: &str, name: &str) -> Self {
        Element {
            ns: ns.to_string(),
            name: name.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Whether this element has namespace `ns` and local name `name`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// The value of the unqualified attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attr_ns("", name)
    }

    /// The value of attribute `name` in namespace `ns`.
    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// The `xml:lang` attribute.
    pub fn lang(&self) -> Option<&str> {
        self.attr_ns(XML_NS, "lang")
    }

    /// Child elements in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(ns, name))
    }

    /// The concatenated text children (not descending into child elements).
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// The text content, trimmed of surrounding whitespace.
    pub fn trimmed_text(&self) -> String {
        self.text().trim().to_string()
    }

    /// Builder: add an unqualified attribute.
    pub fn with_attr(mut self, name: &str, value: &str) -> Self {
        self.set_attr("", name, value);
        self
    }

    /// Builder: add a namespaced attribute.
    pub fn with_attr_ns(mut self, ns: &str, name: &str, value: &str) -> Self {
        self.set_attr(ns, name, value);
        self
    }

    /// Set (or replace) an attribute.
    pub fn set_attr(&mut self, ns: &str, name: &str, value: &str) {
        if let Some(a) = self.attrs.iter_mut().find(|a| a.ns == ns && a.name == name) {
            a.value = value.to_string();
        } else {
            self.attrs.push(Attr {
                ns: ns.to_string(),
                name: name.to_string(),
                value: value.to_string(),
            });
        }
    }

    /// Builder: append a text child.
    pub fn with_text(mut self, text: &str) -> Self {
        if !text.is_empty() {
            self.children.push(Node::Text(text.to_string()));
        }
        self
    }

    /// Builder: append a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Append a child element.
    pub fn push(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Serialise as a standalone document (with XML declaration).
    pub fn to_document(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        self.write_root(&mut out);
        out.push('\n');
        out
    }

    /// Serialise this element (namespaces declared on it) without an XML declaration.
    pub fn to_fragment(&self) -> String {
        let mut out = String::new();
        self.write_root(&mut out);
        out
    }

    fn write_root(&self, out: &mut String) {
        let mut namespaces = Vec::new();
        self.collect_namespaces(&mut namespaces);
        let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
        let mut used: Vec<String> = Vec::new();
        let mut generated = 0usize;
        for ns in &namespaces {
            if ns.is_empty() || ns == XML_NS || prefixes.contains_key(ns) {
                continue;
            }
            let mut p = preferred_prefix(ns).to_string();
            while p.is_empty() || used.contains(&p) || p == "xml" || p == "xmlns" {
                p = format!("ns{generated}");
                generated += 1;
            }
            used.push(p.clone());
            prefixes.insert(ns.clone(), p);
        }
        let ctx = Ctx {
            default_ns: self.ns.clone(),
            prefixes,
        };
        let mut decls = String::new();
        if !self.ns.is_empty() {
            let _ = write!(decls, " xmlns=\"{}\"", escape_attr(&self.ns));
        }
        // Declare a prefix for the default namespace too only when an attribute needs it; other
        // namespaces always get their prefix.
        for (ns, p) in &ctx.prefixes {
            if *ns == self.ns && !namespace_used_by_attribute(self, ns) && !has_unqualified(self) {
                continue;
            }
            let _ = write!(decls, " xmlns:{p}=\"{}\"", escape_attr(ns));
        }
        self.write(out, &ctx, 0, Some(&decls));
    }

    fn collect_namespaces(&self, out: &mut Vec<String>) {
        if !out.contains(&self.ns) {
            out.push(self.ns.clone());
        }
        for a in &self.attrs {
            if !out.contains(&a.ns) {
                out.push(a.ns.clone());
            }
        }
        for e in self.elements() {
            e.collect_namespaces(out);
        }
    }

    fn write(&self, out: &mut String, ctx: &Ctx, depth: usize, decls: Option<&str>) {
        let qname = ctx.element_qname(&self.ns, &self.name);
        out.push('<');
        out.push_str(&qname);
        if let Some(d) = decls {
            out.push_str(d);
        } else if self.ns.is_empty() && !ctx.default_ns.is_empty() {
            // An element in no namespace under a default namespace must undeclare it.
            out.push_str(" xmlns=\"\"");
        }
        for a in &self.attrs {
            out.push(' ');
            out.push_str(&ctx.attr_qname(&a.ns, &a.name));
            out.push_str("=\"");
            out.push_str(&escape_attr(&a.value));
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        let has_text = self.children.iter().any(|n| matches!(n, Node::Text(_)));
        for n in &self.children {
            match n {
                Node::Text(t) => out.push_str(&escape_text(t)),
                Node::Element(e) => {
                    if !has_text {
                        out.push('\n');
                        indent(out, depth + 1);
                    }
                    // Children of a no-namespace element that sits under an undeclared default
                    // namespace stay in no namespace: our qname logic always prefixes namespaced
                    // elements other than the root's default, so this is consistent.
                    let child_ctx;
                    let c = if self.ns.is_empty() && !ctx.default_ns.is_empty() && decls.is_none() {
                        child_ctx = Ctx {
                            default_ns: String::new(),
                            prefixes: ctx.prefixes.clone(),
                        };
                        &child_ctx
                    } else {
                        ctx
                    };
                    e.write(out, c, depth + 1, None);
                }
            }
        }
        if !has_text {
            out.push('\n');
            indent(out, depth);
        }
        out.push_str("</");
        out.push_str(&qname);
        out.push('>');
    }
}

fn namespace_used_by_attribute(e: &Element, ns: &str) -> bool {
    e.attrs.iter().any(|a| a.ns == ns) || e.elements().any(|c| namespace_used_by_attribute(c, ns))
}

fn has_unqualified(e: &Element) -> bool {
    e.elements().any(|c| c.ns.is_empty() || has_unqualified(c))
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth.min(32) {
        out.push_str("  ");
    }
}

struct Ctx {
    default_ns: String,
    prefixes: BTreeMap<String, String>,
}

impl Ctx {
    fn element_qname(&self, ns: &str, name: &str) -> String {
        if ns == self.default_ns {
            return name.to_string();
        }
        match self.prefixes.get(ns) {
            Some(p) => format!("{p}:{name}"),
            None => name.to_string(),
        }
    }

    fn attr_qname(&self, ns: &str, name: &str) -> String {
        if ns.is_empty() {
            return name.to_string();
        }
        if ns == XML_NS {
            return format!("xml:{name}");
        }
        match self.prefixes.get(ns) {
            Some(p) => format!("{p}:{name}"),
            None => name.to_string(),
        }
    }
}

/// The conventional prefix used when printing a well-known namespace.
pub fn preferred_prefix(ns: &str) -> &'static str {
    match ns {
        super::ns::PIDF => "pidf",
        super::ns::DATA_MODEL => "dm",
        super::ns::RPID => "rpid",
        super::ns::CIPID => "c",
        super::ns::CAPS => "caps",
        super::ns::COMMON_POLICY => "cp",
        super::ns::PRES_RULES => "pr",
        super::ns::LOCATION_TYPE => "lt",
        super::ns::RESOURCE_LISTS => "rl",
        super::ns::WATCHERINFO => "wi",
        super::ns::IMDN => "imdn",
        super::ns::ISCOMPOSING => "ic",
        super::ns::RLMI => "rlmi",
        _ => "",
    }
}

/// Escape text content (`&`, `<`, `>`).
pub fn escape_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\r' => o.push_str("&#13;"),
            c => o.push(c),
        }
    }
    o
}

/// Escape an attribute value (`&`, `<`, `>`, `"`, and whitespace that normalisation would eat).
pub fn escape_attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\t' => o.push_str("&#9;"),
            '\n' => o.push_str("&#10;"),
            '\r' => o.push_str("&#13;"),
            c => o.push(c),
        }
    }
    o
}

/// Refuses a local name that is not an XML NCName (it would not print back to itself).
fn check_name(name: &str) -> Result<(), SimpleError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || !c.is_ascii() && !c.is_control());
    let rest_ok = chars.all(|c| {
        c.is_alphanumeric() || matches!(c, '-' | '.' | '_') || !c.is_ascii() && !c.is_control()
    });
    if first_ok && rest_ok && !name.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(SimpleError::Xml(format!("invalid name {name:?}")))
    }
}

/// Whether `c` may appear in an XML 1.0 document.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Remove characters that XML 1.0 cannot carry at all (control characters), so printed text parses back.
pub fn xml_safe(s: &str) -> String {
    s.chars().filter(|c| xml_char(*c)).collect()
}

fn xml_err(e: impl std::fmt::Display) -> SimpleError {
    SimpleError::Xml(e.to_string())
}

fn resolve_ns(r: ResolveResult<'_>) -> Result<String, SimpleError> {
    match r {
        ResolveResult::Bound(ns) => {
            let s: &str = ns.as_ref();
            // The resolver sees declarations unescaped: a name with markup characters would not
            // print back to itself (and no SIMPLE namespace has them), so it is refused.
            // The reserved xml/xmlns names cannot be bound to another prefix either.
            if s == XML_NS
                || s == "http://www.w3.org/2000/xmlns/"
                || s.chars()
                    .any(|c| c.is_control() || matches!(c, '<' | '>' | '&' | '"'))
            {
                return Err(SimpleError::Xml(format!(
                    "unsupported character in namespace name {s:?}"
                )));
            }
            Ok(s.to_string())
        }
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(p) => Err(SimpleError::Xml(format!("undeclared prefix {p:?}"))),
    }
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Parse a document into its root element, with the default limits.
pub fn parse(input: &[u8]) -> Result<Element, SimpleError> {
    parse_with(input, &XmlLimits::default())
}

/// Parse a document into its root element, with explicit limits.
pub fn parse_with(input: &[u8], limits: &XmlLimits) -> Result<Element, SimpleError> {
    if input.len() > limits.max_bytes {
        return Err(SimpleError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = std::str::from_utf8(input).map_err(|_| SimpleError::NotUtf8)?;
    let mut reader = NsReader::from_str(text);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        cfg.trim_text(false);
    }
    reader.resolver_mut().set_max_namespace_bindings(256);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let event = reader.read_event().map_err(xml_err)?;
        match event {
            Event::Start(ref s) | Event::Empty(ref s) => {
                if root.is_some() {
                    return Err(SimpleError::Xml("content after the root element".into()));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(SimpleError::TooManyElements {
                        limit: limits.max_elements,
                    });
                }
                if stack.len() >= limits.max_depth {
                    return Err(SimpleError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                let (res, local) = reader.resolver().resolve_element(s.name());
                let ns = resolve_ns(res)?;
                let name: &str = local.as_ref();
                check_name(name)?;
                let name = name.to_string();
                let mut el = Element {
                    ns,
                    name,
                    attrs: Vec::new(),
                    children: Vec::new(),
                };
                for a in s.attributes() {
                    let a = a.map_err(xml_err)?;
                    let key = a.key;
                    if key.as_namespace_binding().is_some() {
                        continue;
                    }
                    if el.attrs.len() >= limits.max_attributes {
                        return Err(SimpleError::Xml("too many attributes".into()));
                    }
                    let (res, local) = reader.resolver().resolve_attribute(key);
                    let ans = match key.prefix() {
                        Some(p) if AsRef::<str>::as_ref(&p) == "xml" => XML_NS.to_string(),
                        _ => resolve_ns(res)?,
                    };
                    let aname: &str = local.as_ref();
                    check_name(aname)?;
                    let aname = aname.to_string();
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(xml_err)?
                        .into_owned();
                    if el.attrs.iter().any(|x| x.ns == ans && x.name == aname) {
                        return Err(SimpleError::Xml(format!("duplicate attribute {aname:?}")));
                    }
                    el.attrs.push(Attr {
                        ns: ans,
                        name: aname,
                        value,
                    });
                }
                if matches!(event, Event::Empty(_)) {
                    attach(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| SimpleError::Xml("unmatched end tag".into()))?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                push_text(&mut stack, &content)?;
            }
            Event::CData(c) => {
                let content = c.xml10_content();
                match stack.last_mut() {
                    Some(top) => append_text(top, &content),
                    None => return Err(SimpleError::Xml("CDATA outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref().map_err(xml_err)? {
                    Some(c) => c,
                    None => predefined_entity(&r)
                        .ok_or_else(|| SimpleError::Xml(format!("unknown entity &{};", &*r)))?,
                };
                if !xml_char(ch) {
                    return Err(SimpleError::Xml(
                        "character reference to an invalid char".into(),
                    ));
                }
                let mut b = [0u8; 4];
                match stack.last_mut() {
                    Some(top) => append_text(top, ch.encode_utf8(&mut b)),
                    None => {
                        return Err(SimpleError::Xml(
                            "reference outside the root element".into(),
                        ));
                    }
                }
            }
            Event::DocType(_) => return Err(SimpleError::Xml("DOCTYPE is not allowed".into())),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(SimpleError::Xml("unexpected end of document".into()));
    }
    let mut root = root.ok_or_else(|| SimpleError::Xml("no root element".into()))?;
    strip_whitespace(&mut root);
    Ok(root)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
}

fn push_text(stack: &mut [Element], content: &str) -> Result<(), SimpleError> {
    match stack.last_mut() {
        Some(top) => {
            append_text(top, content);
            Ok(())
        }
        None if content.trim().is_empty() => Ok(()),
        None => Err(SimpleError::Xml("text outside the root element".into())),
    }
}

fn append_text(top: &mut Element, content: &str) {
    if let Some(Node::Text(prev)) = top.children.last_mut() {
        prev.push_str(content);
    } else if !content.is_empty() {
        top.children.push(Node::Text(content.to_string()));
    }
}

/// Drop whitespace-only text nodes from elements that have element children (formatting only).
fn strip_whitespace(e: &mut Element) {
    let has_elements = e.children.iter().any(|n| matches!(n, Node::Element(_)));
    if has_elements {
        e.children
            .retain(|n| !matches!(n, Node::Text(t) if t.trim().is_empty()));
    }
    let mut stack: Vec<&mut Element> = e.elements_mut().collect();
    while let Some(el) = stack.pop() {
        let has_elements = el.children.iter().any(|n| matches!(n, Node::Element(_)));
        if has_elements {
            el.children
                .retain(|n| !matches!(n, Node::Text(t) if t.trim().is_empty()));
        }
        stack.extend(el.elements_mut());
    }
}

impl Element {
    fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }
}

/// Parse a document and check that its root is `ns`:`name`.
pub fn parse_root(input: &[u8], ns: &str, name: &str) -> Result<Element, SimpleError> {
    let root = parse(input)?;
    if !root.is(ns, name) {
        return Err(SimpleError::WrongRoot {
            expected: format!("{{{ns}}}{name}"),
            found: format!("{{{}}}{}", root.ns, root.name),
        });
    }
    Ok(root)
}
