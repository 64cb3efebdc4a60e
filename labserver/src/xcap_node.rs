//! XCAP node selectors (RFC 4825 §6.3, §6.4): the part of an XCAP URI after `~~` that picks an
//! element, an attribute or the namespace bindings of an element inside a document, and the GET,
//! PUT and DELETE operations on what it picks (§7.4–§7.9, §8.2.3).
//!
//! Grammar (after percent-decoding): `step *( "/" step ) [ "/" terminal ]` where a step is
//! `name`, `*`, `name[N]`, `name[@attr="value"]`, `name[N][@attr="value"]` (names optionally
//! prefixed, values in `"` or `'`), and the terminal is `@attr` (an attribute) or `namespace::*`
//! (the namespace bindings of the selected element). Prefixes are bound by the query component,
//! `xmlns(p=urn:…)xmlns(q=urn:…)`; an unprefixed name is in the application usage's default
//! namespace. The first step selects the root element. A step must select exactly one element
//! (none or several: 404).
//!
//! Writes return the whole new document; the caller validates it for the application usage and
//! stores it with the document's entity tag (§8.2.5: the tag is per document). Documents are
//! stored as this crate prints them (namespace prefixes normalised, insignificant whitespace
//! dropped).

use tandem_proto::simple::xml::{self, Attr, Element, Node};

/// The most steps a selector may have.
const MAX_STEPS: usize = 32;

/// Why a node selector operation failed, with the HTTP answer it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The selector does not parse, or uses an unbound prefix (400).
    #[error("bad node selector: {0}")]
    Syntax(String),
    /// Nothing (or more than one node) is selected (404).
    #[error("no such node")]
    NotFound,
    /// The body cannot be put where the selector points (409 `cannot-insert`).
    #[error("cannot insert: {0}")]
    CannotInsert(String),
    /// The body is not a well-formed element or attribute value (409 `not-xml-frag` /
    /// `not-xml-att-value`).
    #[error("bad body: {0}")]
    BadBody(&'static str, String),
    /// The selector names namespace bindings, which cannot be written (405).
    #[error("namespace bindings are read-only")]
    ReadOnly,
}

impl NodeError {
    /// The `<xcap-error>` condition for 409 answers.
    pub fn condition(&self) -> &'static str {
        match self {
            NodeError::CannotInsert(_) => "cannot-insert",
            NodeError::BadBody(c, _) => c,
            _ => "cannot-insert",
        }
    }
}

/// One location step.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    /// `None` for `*`; else (namespace, local name).
    name: Option<(String, String)>,
    /// 1-based position among the siblings the name test selects.
    position: Option<usize>,
    /// Attribute test: (unqualified attribute name, value).
    attr: Option<(String, String)>,
}

/// What follows the element steps.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Terminal {
    /// `@name`: an (unqualified) attribute of the selected element.
    Attribute(String),
    /// `namespace::*`.
    Namespaces,
}

/// A parsed node selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSelector {
    steps: Vec<Step>,
    terminal: Option<Terminal>,
}

/// What a GET returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// An element (`application/xcap-el+xml`).
    Element(String),
    /// An attribute value (`application/xcap-att+xml`).
    Attribute(String),
    /// Namespace bindings (`application/xcap-ns+xml`).
    Namespaces(String),
}

/// The MIME type of an element body.
pub const MIME_XCAP_EL: &str = "application/xcap-el+xml";
/// The MIME type of an attribute body.
pub const MIME_XCAP_ATT: &str = "application/xcap-att+xml";
/// The MIME type of namespace bindings.
pub const MIME_XCAP_NS: &str = "application/xcap-ns+xml";

impl Selected {
    /// Its MIME type.
    pub fn mime(&self) -> &'static str {
        match self {
            Selected::Element(_) => MIME_XCAP_EL,
            Selected::Attribute(_) => MIME_XCAP_ATT,
            Selected::Namespaces(_) => MIME_XCAP_NS,
        }
    }

    /// The body to send.
    pub fn into_body(self) -> String {
        match self {
            Selected::Element(s) | Selected::Attribute(s) | Selected::Namespaces(s) => s,
        }
    }
}

/// Parses the `xmlns(p=uri)` bindings of a query component.
fn parse_bindings(query: &str) -> Result<Vec<(String, String)>, NodeError> {
    let mut out = Vec::new();
    let mut rest = query.trim();
    while !rest.is_empty() {
        let inner = rest
            .strip_prefix("xmlns(")
            .ok_or_else(|| NodeError::Syntax(format!("unexpected query {rest:.40}")))?;
        let end = inner
            .find(')')
            .ok_or_else(|| NodeError::Syntax("unterminated xmlns(".into()))?;
        let (binding, after) = inner.split_at(end);
        let (prefix, uri) = binding
            .split_once('=')
            .ok_or_else(|| NodeError::Syntax(format!("bad binding {binding:.40}")))?;
        out.push((prefix.trim().to_string(), uri.trim().to_string()));
        rest = after.get(1..).unwrap_or("").trim_start();
    }
    Ok(out)
}

/// Splits on `/` outside brackets and quotes.
fn split_steps(s: &str) -> Result<Vec<&str>, NodeError> {
    let mut out = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            (None, '/') if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(NodeError::Syntax("unbalanced ]".into()));
        }
    }
    if quote.is_some() || depth != 0 {
        return Err(NodeError::Syntax("unterminated predicate".into()));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
}

impl NodeSelector {
    /// Parses a (percent-decoded) node selector with the query's namespace bindings; unprefixed
    /// names are in `default_ns`.
    pub fn parse(
        selector: &str,
        query: Option<&str>,
        default_ns: &str,
    ) -> Result<NodeSelector, NodeError> {
        let bindings = parse_bindings(query.unwrap_or(""))?;
        let qname = |q: &str| -> Result<(String, String), NodeError> {
            match q.split_once(':') {
                Some((p, local)) => {
                    let ns = bindings
                        .iter()
                        .find(|(bp, _)| bp == p)
                        .map(|(_, u)| u.clone())
                        .ok_or_else(|| NodeError::Syntax(format!("unbound prefix {p:.20}")))?;
                    if !is_name(local) {
                        return Err(NodeError::Syntax(format!("bad name {q:.40}")));
                    }
                    Ok((ns, local.to_string()))
                }
                None if is_name(q) => Ok((default_ns.to_string(), q.to_string())),
                None => Err(NodeError::Syntax(format!("bad name {q:.40}"))),
            }
        };
        let parts = split_steps(selector)?;
        if parts.is_empty() || parts.len() > MAX_STEPS {
            return Err(NodeError::Syntax("too many or no steps".into()));
        }
        let mut steps = Vec::new();
        let mut terminal = None;
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            if i == last && i > 0 {
                if let Some(a) = part.strip_prefix('@') {
                    if !is_name(a) {
                        return Err(NodeError::Syntax(format!("bad attribute {a:.40}")));
                    }
                    terminal = Some(Terminal::Attribute(a.to_string()));
                    continue;
                }
                if *part == "namespace::*" {
                    terminal = Some(Terminal::Namespaces);
                    continue;
                }
            }
            let (name, mut preds) = match part.find('[') {
                Some(b) => (&part[..b], &part[b..]),
                None => (*part, ""),
            };
            let name = if name == "*" {
                None
            } else {
                Some(qname(name)?)
            };
            let mut step = Step {
                name,
                position: None,
                attr: None,
            };
            while !preds.is_empty() {
                let inner_end = preds
                    .find(']')
                    .ok_or_else(|| NodeError::Syntax("unterminated [".into()))?;
                // The closing bracket may be inside a quoted value: find the real one.
                let inner = &preds[1..];
                let close = if inner.starts_with('@') {
                    let eq = inner
                        .find('=')
                        .ok_or_else(|| NodeError::Syntax("attribute test without =".into()))?;
                    let q = inner[eq + 1..]
                        .chars()
                        .next()
                        .filter(|c| *c == '"' || *c == '\'')
                        .ok_or_else(|| NodeError::Syntax("unquoted attribute value".into()))?;
                    let vstart = eq + 2;
                    let vend = inner[vstart..]
                        .find(q)
                        .map(|x| x + vstart)
                        .ok_or_else(|| NodeError::Syntax("unterminated value".into()))?;
                    if inner.as_bytes().get(vend + 1) != Some(&b']') {
                        return Err(NodeError::Syntax("junk after attribute value".into()));
                    }
                    let attr = inner[1..eq].trim();
                    if !is_name(attr) || step.attr.is_some() {
                        return Err(NodeError::Syntax(format!("bad attribute test {attr:.40}")));
                    }
                    step.attr = Some((attr.to_string(), inner[vstart..vend].to_string()));
                    vend + 2
                } else {
                    let n: usize = inner[..inner_end - 1]
                        .trim()
                        .parse()
                        .map_err(|_| NodeError::Syntax("bad position".into()))?;
                    if n == 0 || step.position.is_some() || step.attr.is_some() {
                        return Err(NodeError::Syntax("bad position".into()));
                    }
                    step.position = Some(n);
                    inner_end
                };
                preds = &preds[close + 1..];
            }
            steps.push(step);
        }
        Ok(NodeSelector { steps, terminal })
    }

    fn name_matches(step: &Step, e: &Element) -> bool {
        step.name
            .as_ref()
            .is_none_or(|(ns, name)| &e.ns == ns && &e.name == name)
    }

    fn attr_matches(step: &Step, e: &Element) -> bool {
        step.attr
            .as_ref()
            .is_none_or(|(a, v)| e.attr(a) == Some(v.as_str()))
    }

    /// Indices (into `parent.children`) of the children `step` selects.
    fn select(step: &Step, parent: &Element) -> Vec<usize> {
        let by_name: Vec<usize> = parent
            .children
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match n {
                Node::Element(e) if Self::name_matches(step, e) => Some(i),
                _ => None,
            })
            .collect();
        let by_pos: Vec<usize> = match step.position {
            Some(p) => by_name.get(p - 1).copied().into_iter().collect(),
            None => by_name,
        };
        by_pos
            .into_iter()
            .filter(|i| match parent.children.get(*i) {
                Some(Node::Element(e)) => Self::attr_matches(step, e),
                _ => false,
            })
            .collect()
    }

    /// The path of child indices to the element the steps select (the root is step 0).
    fn locate(&self, doc: &Element, steps: &[Step]) -> Result<Vec<usize>, NodeError> {
        let (root, rest) = steps.split_first().ok_or(NodeError::NotFound)?;
        if root.position.is_some_and(|p| p != 1)
            || !Self::name_matches(root, doc)
            || !Self::attr_matches(root, doc)
        {
            return Err(NodeError::NotFound);
        }
        let mut path = Vec::new();
        let mut cur = doc;
        for step in rest {
            let found = Self::select(step, cur);
            let [i] = found.as_slice() else {
                return Err(NodeError::NotFound);
            };
            path.push(*i);
            cur = match cur.children.get(*i) {
                Some(Node::Element(e)) => e,
                _ => return Err(NodeError::NotFound),
            };
        }
        Ok(path)
    }

    fn at<'a>(doc: &'a Element, path: &[usize]) -> Option<&'a Element> {
        let mut cur = doc;
        for i in path {
            cur = match cur.children.get(*i)? {
                Node::Element(e) => e,
                Node::Text(_) => return None,
            };
        }
        Some(cur)
    }

    fn at_mut<'a>(doc: &'a mut Element, path: &[usize]) -> Option<&'a mut Element> {
        let mut cur = doc;
        for i in path {
            cur = match cur.children.get_mut(*i)? {
                Node::Element(e) => e,
                Node::Text(_) => return None,
            };
        }
        Some(cur)
    }

    /// The MIME type a PUT body for this selector must have.
    pub fn body_mime(&self) -> &'static str {
        match self.terminal {
            Some(Terminal::Attribute(_)) => MIME_XCAP_ATT,
            Some(Terminal::Namespaces) => MIME_XCAP_NS,
            None => MIME_XCAP_EL,
        }
    }

    /// GET: the selected element, attribute value or namespace bindings.
    pub fn get(&self, doc: &Element) -> Result<Selected, NodeError> {
        let path = self.locate(doc, &self.steps)?;
        let e = Self::at(doc, &path).ok_or(NodeError::NotFound)?;
        Ok(match &self.terminal {
            None => Selected::Element(e.to_fragment()),
            Some(Terminal::Attribute(a)) => {
                Selected::Attribute(xml::escape_attr(e.attr(a).ok_or(NodeError::NotFound)?))
            }
            Some(Terminal::Namespaces) => {
                // An empty element of the same name declaring the namespaces in scope.
                let mut shell = Element::new(&e.ns, &e.name);
                let mut namespaces: Vec<String> = Vec::new();
                collect_ns(e, &mut namespaces);
                for (i, ns) in namespaces.iter().enumerate() {
                    if *ns != e.ns {
                        shell.attrs.push(Attr {
                            ns: ns.clone(),
                            name: format!("ns-binding-{i}"),
                            value: String::new(),
                        });
                    }
                }
                let text = shell.to_fragment();
                // Keep only the declarations: drop the placeholder attributes.
                Selected::Namespaces(strip_placeholders(&text))
            }
        })
    }

    /// PUT: replaces the selected element or attribute, or creates it under the parent the
    /// steps before it select. Returns the new document and whether something was created.
    pub fn put(&self, doc: &Element, body: &[u8]) -> Result<(Element, bool), NodeError> {
        let mut doc = doc.clone();
        match &self.terminal {
            Some(Terminal::Namespaces) => Err(NodeError::ReadOnly),
            Some(Terminal::Attribute(a)) => {
                let value = std::str::from_utf8(body)
                    .map_err(|_| NodeError::BadBody("not-xml-att-value", "not UTF-8".into()))?;
                if value.contains(['<', '"']) {
                    return Err(NodeError::BadBody(
                        "not-xml-att-value",
                        "an attribute value cannot contain < or \"".into(),
                    ));
                }
                let value = unescape(value);
                let path = self.locate(&doc, &self.steps)?;
                let e = Self::at_mut(&mut doc, &path).ok_or(NodeError::NotFound)?;
                let created = e.attr(a).is_none();
                e.set_attr("", a, &value);
                // The attribute may be what the last step tests: the selector must still select it.
                self.locate(&doc, &self.steps).map_err(|_| {
                    NodeError::CannotInsert("the selector no longer matches".into())
                })?;
                Ok((doc, created))
            }
            None => {
                let step = self
                    .steps
                    .last()
                    .ok_or_else(|| NodeError::CannotInsert("no step".into()))?;
                let mut element = xml::parse(body)
                    .map_err(|e| NodeError::BadBody("not-xml-frag", e.to_string()))?;
                if let Some((ns, _)) = &step.name {
                    adopt_namespace(&mut element, ns);
                }
                if !Self::name_matches(step, &element) || !Self::attr_matches(step, &element) {
                    return Err(NodeError::CannotInsert(
                        "the element does not match the last step".into(),
                    ));
                }
                if self.steps.len() == 1 {
                    // The root: replace the document.
                    return Ok((element, false));
                }
                let parent_steps = &self.steps[..self.steps.len() - 1];
                let parent_path = self.locate(&doc, parent_steps)?;
                let parent = Self::at_mut(&mut doc, &parent_path).ok_or(NodeError::NotFound)?;
                let found = Self::select(step, parent);
                let created = match found.as_slice() {
                    [i] => {
                        if let Some(slot) = parent.children.get_mut(*i) {
                            *slot = Node::Element(element);
                        }
                        false
                    }
                    [] => {
                        // Insert after the last sibling the name test selects (or at the end);
                        // a position must be the next one.
                        let same: Vec<usize> = parent
                            .children
                            .iter()
                            .enumerate()
                            .filter_map(|(i, n)| match n {
                                Node::Element(e) if Self::name_matches(step, e) => Some(i),
                                _ => None,
                            })
                            .collect();
                        if step.position.is_some_and(|p| p != same.len() + 1) {
                            return Err(NodeError::CannotInsert(
                                "the position is not the next one".into(),
                            ));
                        }
                        let at = same.last().map_or(parent.children.len(), |i| i + 1);
                        parent.children.insert(at, Node::Element(element));
                        true
                    }
                    _ => return Err(NodeError::NotFound),
                };
                self.locate(&doc, &self.steps).map_err(|_| {
                    NodeError::CannotInsert("the selector would not select the new element".into())
                })?;
                Ok((doc, created))
            }
        }
    }

    /// DELETE: removes the selected element or attribute; returns the new document.
    pub fn delete(&self, doc: &Element) -> Result<Element, NodeError> {
        let mut doc = doc.clone();
        match &self.terminal {
            Some(Terminal::Namespaces) => Err(NodeError::ReadOnly),
            Some(Terminal::Attribute(a)) => {
                let path = self.locate(&doc, &self.steps)?;
                let e = Self::at_mut(&mut doc, &path).ok_or(NodeError::NotFound)?;
                let before = e.attrs.len();
                e.attrs.retain(|x| !(x.ns.is_empty() && x.name == *a));
                if e.attrs.len() == before {
                    return Err(NodeError::NotFound);
                }
                Ok(doc)
            }
            None => {
                let mut path = self.locate(&doc, &self.steps)?;
                let Some(last) = path.pop() else {
                    // The root: that is a document delete, not a node delete.
                    return Err(NodeError::CannotInsert(
                        "the root element cannot be deleted".into(),
                    ));
                };
                let parent = Self::at_mut(&mut doc, &path).ok_or(NodeError::NotFound)?;
                if last < parent.children.len() {
                    parent.children.remove(last);
                }
                Ok(doc)
            }
        }
    }
}

/// Puts no-namespace elements of a fragment into `ns` (a body written without a default
/// namespace declaration means the usage's namespace).
fn adopt_namespace(e: &mut Element, ns: &str) {
    if e.ns.is_empty() {
        e.ns = ns.to_string();
        for c in &mut e.children {
            if let Node::Element(child) = c {
                adopt_namespace(child, ns);
            }
        }
    }
}

fn collect_ns(e: &Element, out: &mut Vec<String>) {
    if !e.ns.is_empty() && !out.contains(&e.ns) {
        out.push(e.ns.clone());
    }
    for a in &e.attrs {
        if !a.ns.is_empty() && a.ns != xml::XML_NS && !out.contains(&a.ns) {
            out.push(a.ns.clone());
        }
    }
    for c in &e.children {
        if let Node::Element(child) = c {
            collect_ns(child, out);
        }
    }
}

/// Removes the ` prefix:ns-binding-N=""` placeholder attributes from a printed shell element.
fn strip_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(":ns-binding-") {
        let start = rest[..at].rfind(' ').unwrap_or(at);
        out.push_str(&rest[..start]);
        let after = &rest[at..];
        let end = after.find("=\"\"").map_or(after.len(), |e| e + 3);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Resolves the five predefined entities of an attribute value body.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_proto::simple::resource_lists::ResourceLists;

    const RL: &str = "urn:ietf:params:xml:ns:resource-lists";
    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
 <list name="friends">
  <entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry>
  <entry uri="sip:carol@example.com"/>
 </list>
 <list name="work"><entry uri="sip:dave@example.com"/></list>
</resource-lists>"#;

    fn doc() -> Element {
        xml::parse(DOC.as_bytes()).unwrap()
    }

    fn sel(s: &str) -> NodeSelector {
        NodeSelector::parse(s, None, RL).unwrap()
    }

    #[test]
    fn get_by_attribute_position_and_attribute_terminal() {
        let d = doc();
        let Selected::Element(e) = sel(r#"resource-lists/list[@name="friends"]/entry[2]"#)
            .get(&d)
            .unwrap()
        else {
            panic!()
        };
        assert!(e.contains("sip:carol@example.com"), "{e}");
        let got = sel(r#"resource-lists/list[@name='friends']/entry[@uri="sip:bob@example.com"]/display-name"#)
            .get(&d)
            .unwrap();
        assert!(got.clone().into_body().contains(">Bob<"), "{got:?}");
        assert_eq!(
            sel("resource-lists/list[2]/@name").get(&d).unwrap(),
            Selected::Attribute("work".into())
        );
        assert_eq!(
            sel("resource-lists/*[1]/entry[1][@uri=\"sip:bob@example.com\"]/@uri")
                .get(&d)
                .unwrap(),
            Selected::Attribute("sip:bob@example.com".into())
        );
        // Several matches, none, a wrong root: 404.
        assert_eq!(sel("resource-lists/list").get(&d), Err(NodeError::NotFound));
        assert_eq!(
            sel("resource-lists/list[3]").get(&d),
            Err(NodeError::NotFound)
        );
        assert_eq!(sel("ruleset/list").get(&d), Err(NodeError::NotFound));
        let ns = sel("resource-lists/list[1]/namespace::*").get(&d).unwrap();
        assert!(ns.clone().into_body().contains(RL), "{ns:?}");
    }

    #[test]
    fn prefixes_come_from_the_query() {
        let d = doc();
        let s = NodeSelector::parse(
            "r:resource-lists/r:list[@name=\"work\"]/r:entry",
            Some(&format!("xmlns(r={RL})")),
            "urn:other",
        )
        .unwrap();
        assert!(matches!(s.get(&d), Ok(Selected::Element(_))));
        assert!(matches!(
            NodeSelector::parse("x:resource-lists", None, RL),
            Err(NodeError::Syntax(_))
        ));
        for bad in [
            "resource-lists/list[",
            "resource-lists/list[@name=friends]",
            "resource-lists/list[0]",
            "resource-lists/list[@name=\"a\"]x",
            "resource-lists/<list>",
        ] {
            assert!(
                matches!(
                    NodeSelector::parse(bad, None, RL),
                    Err(NodeError::Syntax(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn put_creates_replaces_and_validates() {
        let d = doc();
        let s = sel(r#"resource-lists/list[@name="friends"]/entry[@uri="sip:eve@example.com"]"#);
        let (new, created) = s
            .put(
                &d,
                br#"<entry uri="sip:eve@example.com"><display-name>Eve</display-name></entry>"#,
            )
            .unwrap();
        assert!(created);
        let lists = ResourceLists::parse(new.to_document().as_bytes()).unwrap();
        let friends = lists.list("friends").unwrap();
        assert_eq!(friends.entries.len(), 3);
        assert_eq!(friends.entries[2].uri, "sip:eve@example.com");
        // The same PUT again replaces.
        let (again, created) = s
            .put(&new, br#"<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:eve@example.com"/>"#)
            .unwrap();
        assert!(!created);
        let lists = ResourceLists::parse(again.to_document().as_bytes()).unwrap();
        assert_eq!(lists.list("friends").unwrap().entries.len(), 3);
        // A body that the selector would not select: 409.
        assert!(matches!(
            s.put(&d, br#"<entry uri="sip:mallory@example.com"/>"#),
            Err(NodeError::CannotInsert(_))
        ));
        assert!(matches!(
            s.put(&d, b"<entry"),
            Err(NodeError::BadBody("not-xml-frag", _))
        ));
        // A missing parent: 404.
        assert_eq!(
            sel(r#"resource-lists/list[@name="nope"]/entry"#).put(&d, br#"<entry uri="sip:x@y"/>"#),
            Err(NodeError::NotFound)
        );
        // Attributes.
        let (renamed, created) = sel("resource-lists/list[2]/@name")
            .put(&d, b"colleagues")
            .unwrap();
        assert!(!created);
        let lists = ResourceLists::parse(renamed.to_document().as_bytes()).unwrap();
        assert!(lists.list("colleagues").is_some());
        assert!(matches!(
            sel("resource-lists/list[2]/@name").put(&d, b"a\"b"),
            Err(NodeError::BadBody("not-xml-att-value", _))
        ));
        assert_eq!(
            sel("resource-lists/list[1]/namespace::*").put(&d, b""),
            Err(NodeError::ReadOnly)
        );
    }

    #[test]
    fn delete_elements_and_attributes() {
        let d = doc();
        let new = sel(r#"resource-lists/list[@name="friends"]/entry[@uri="sip:bob@example.com"]"#)
            .delete(&d)
            .unwrap();
        let lists = ResourceLists::parse(new.to_document().as_bytes()).unwrap();
        assert_eq!(lists.list("friends").unwrap().entries.len(), 1);
        assert_eq!(
            sel(r#"resource-lists/list[@name="friends"]/entry[@uri="sip:zed@example.com"]"#)
                .delete(&d),
            Err(NodeError::NotFound)
        );
        let new = sel("resource-lists/list[1]/@name").delete(&d).unwrap();
        assert!(!new.to_document().contains("friends"));
        assert!(matches!(
            sel("resource-lists").delete(&d),
            Err(NodeError::CannotInsert(_))
        ));
    }
}
