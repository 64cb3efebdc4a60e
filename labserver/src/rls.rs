//! Resource lists for the lab's resource list server (RFC 4662, RFC 4826 §4): which URIs a
//! list subscription stands for, and the `multipart/related` NOTIFY body that reports them.
//!
//! A watcher's list URIs come from their own documents on the lab's XCAP server, the way
//! Kamailio's `rls` module finds them:
//! - an `rls-services` document `index` (RFC 4826 §4) with a `<service uri="…">` equal to the
//!   SUBSCRIBE's request URI: its inline `<list>` (entries and nested lists), or a
//!   `<resource-list>` reference to one of the watcher's own `resource-lists` documents (whole
//!   document, or one `list[@name="…"]` of it by an XCAP node selector);
//! - without such a service, `sip:<user>-buddies@<domain>` is the whole of the watcher's
//!   `resource-lists` document `index` (what `tandem-cli buddy` edits).
//!
//! Only the watcher's own documents are consulted, so a list URI means something only to its
//! owner: anybody else gets the normal answer for a non-existent user (404).

use bytes::Bytes;
use tandem_proto::simple::SimpleError;
use tandem_proto::simple::multipart::{self, Part};
use tandem_proto::simple::ns::RESOURCE_LISTS;
use tandem_proto::simple::pidf::Presence as PidfDocument;
use tandem_proto::simple::resource_lists::{List, ResourceLists};
use tandem_proto::simple::rlmi::{Instance, InstanceState, Name, Resource, Rlmi};
use tandem_proto::simple::xml::{self, Element};

/// The rls-services namespace (RFC 4826 §4).
pub const RLS_SERVICES_NS: &str = "urn:ietf:params:xml:ns:rls-services";
/// The MIME type of rls-services documents.
pub const MIME_RLS_SERVICES: &str = "application/rls-services+xml";
/// The MIME type of the RLMI root part (RFC 4662).
pub const MIME_RLMI: &str = "application/rlmi+xml";
/// The suffix of the built-in list URI: `sip:<user>-buddies@<domain>`.
pub const BUDDIES_SUFFIX: &str = "-buddies";
/// The most resources one list may stand for (larger lists are cut at this many).
pub const MAX_LIST_MEMBERS: usize = 256;

/// One resource of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The resource's URI as written in the document.
    pub uri: String,
    /// Its display name, if any.
    pub name: Option<String>,
}

/// What a `<service>` of an rls-services document lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceList {
    /// An inline `<list>`.
    Inline(Vec<Member>),
    /// A `<resource-list>` reference to a resource-lists document.
    Reference {
        /// The XUI (`user@domain`, no scheme) whose document it names.
        xui: String,
        /// The document name.
        document: String,
        /// The `list[@name="…"]` it selects, or `None` for every list of the document.
        list: Option<String>,
    },
}

/// Percent-decodes an XCAP URI component.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The members of a list element (entries of it and of its nested lists, in document order,
/// without duplicates), at most [`MAX_LIST_MEMBERS`].
fn list_members(list: &Element, out: &mut Vec<Member>) {
    for e in list.elements() {
        if out.len() >= MAX_LIST_MEMBERS {
            return;
        }
        if e.name == "entry" {
            let Some(uri) = e.attr("uri").map(str::trim).filter(|u| !u.is_empty()) else {
                continue;
            };
            if out.iter().any(|m| m.uri == uri) {
                continue;
            }
            let name = e
                .elements()
                .find(|c| c.name == "display-name")
                .map(|c| c.trimmed_text())
                .filter(|t| !t.is_empty());
            out.push(Member {
                uri: uri.to_string(),
                name,
            });
        } else if e.name == "list" {
            list_members(e, out);
        }
    }
}

/// The members of resource-lists lists (RFC 4826 §3), at most [`MAX_LIST_MEMBERS`].
pub fn members_of_lists<'a>(lists: impl IntoIterator<Item = &'a List>) -> Vec<Member> {
    fn walk(list: &List, out: &mut Vec<Member>) {
        for e in &list.entries {
            if out.len() >= MAX_LIST_MEMBERS {
                return;
            }
            if !out.iter().any(|m| m.uri == e.uri) {
                out.push(Member {
                    uri: e.uri.clone(),
                    name: e.display_name.as_ref().map(|d| d.text.clone()),
                });
            }
        }
        for l in &list.lists {
            walk(l, out);
        }
    }
    let mut out = Vec::new();
    for l in lists {
        walk(l, &mut out);
    }
    out
}

/// The members of the resource-lists document `body`: every list, or the one named `list`.
pub fn members_of_document(body: &[u8], list: Option<&str>) -> Result<Vec<Member>, SimpleError> {
    let doc = ResourceLists::parse(body)?;
    Ok(match list {
        Some(name) => members_of_lists(doc.list(name)),
        None => members_of_lists(&doc.lists),
    })
}

/// Parses a `<resource-list>` reference (an HTTP(S) XCAP URI, or a relative path starting at the
/// XCAP root) to a resource-lists document, with an optional `list[@name="…"]` selector.
fn parse_reference(text: &str) -> Option<ServiceList> {
    let text = text.trim();
    let path = match text.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => text,
    };
    let (doc_path, selector) = match path.split_once("/~~/") {
        Some((d, s)) => (d, Some(percent_decode(s)?)),
        None => (path, None),
    };
    let at = doc_path.find("/resource-lists/users/")?;
    let rest = &doc_path[at + "/resource-lists/users/".len()..];
    let (xui, document) = rest.split_once('/')?;
    let xui = percent_decode(xui)?;
    let xui = xui.strip_prefix("sip:").unwrap_or(&xui).to_string();
    let document = percent_decode(document)?;
    if document.is_empty() || document.contains('/') {
        return None;
    }
    let list = match selector.as_deref() {
        None | Some("resource-lists") => None,
        Some(sel) => {
            // resource-lists/list[@name="x"] (quotes " or ')
            let inner = sel
                .strip_prefix("resource-lists/")?
                .strip_prefix("list[@name=")?
                .strip_suffix(']')?;
            let name = inner
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| inner.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))?;
            Some(name.to_string())
        }
    };
    Some(ServiceList::Reference {
        xui,
        document,
        list,
    })
}

/// Checks that `body` is an rls-services document (well-formed, the right root, every
/// `<service>` with a `uri`).
pub fn validate_rls_services(body: &[u8]) -> Result<(), SimpleError> {
    let root = xml::parse_root(body, RLS_SERVICES_NS, "rls-services")?;
    for s in root.elements().filter(|e| e.is(RLS_SERVICES_NS, "service")) {
        if s.attr("uri").is_none_or(|u| u.trim().is_empty()) {
            return Err(SimpleError::MissingAttribute {
                element: "service",
                attr: "uri",
            });
        }
    }
    Ok(())
}

/// The list of the `<service>` of rls-services document `body` whose `uri` is `service`
/// (compared with `same_uri`); `None` when the document has no such service.
pub fn find_service(
    body: &[u8],
    service: &str,
    same_uri: impl Fn(&str, &str) -> bool,
) -> Result<Option<ServiceList>, SimpleError> {
    let root = xml::parse_root(body, RLS_SERVICES_NS, "rls-services")?;
    for s in root.elements().filter(|e| e.is(RLS_SERVICES_NS, "service")) {
        let Some(uri) = s.attr("uri") else { continue };
        if !same_uri(uri.trim(), service) {
            continue;
        }
        if let Some(list) = s
            .elements()
            .find(|e| e.name == "list" && (e.ns == RLS_SERVICES_NS || e.ns == RESOURCE_LISTS))
        {
            let mut members = Vec::new();
            list_members(list, &mut members);
            return Ok(Some(ServiceList::Inline(members)));
        }
        if let Some(r) = s
            .elements()
            .find(|e| e.is(RLS_SERVICES_NS, "resource-list"))
        {
            return Ok(parse_reference(&r.trimmed_text()));
        }
        return Ok(Some(ServiceList::Inline(Vec::new())));
    }
    Ok(None)
}

/// The state of one member as the list subscription reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberState {
    /// The watcher may see it: this is its (composed or polite-block) state.
    Active(PidfDocument),
    /// The resource has not decided about the watcher yet.
    Pending,
    /// The watcher will not see it (`rejected`, or `noresource` for URIs the lab does not serve).
    Terminated(&'static str),
}

/// Builds the `multipart/related` body of a list NOTIFY (RFC 4662 §5): an RLMI root with every
/// member (full state) and a PIDF part per active one. Returns (Content-Type, body).
pub fn notify_body(
    list_uri: &str,
    version: u32,
    members: &[(Member, MemberState)],
    token: &str,
) -> Result<(String, Bytes), SimpleError> {
    let root_cid = format!("rlmi-{token}@lab");
    let mut resources = Vec::with_capacity(members.len());
    let mut parts = vec![Part::default()];
    for (i, (m, state)) in members.iter().enumerate() {
        let id = format!("{token}-{i}");
        let (state, cid, reason) = match state {
            MemberState::Active(doc) => {
                let cid = format!("{id}@lab");
                parts.push(Part::new("application/pidf+xml", Some(&cid), doc.to_xml()));
                (InstanceState::Active, Some(cid), None)
            }
            MemberState::Pending => (InstanceState::Pending, None, None),
            MemberState::Terminated(r) => (InstanceState::Terminated, None, Some(r.to_string())),
        };
        resources.push(Resource {
            uri: m.uri.clone(),
            names: m
                .name
                .iter()
                .map(|n| Name {
                    lang: None,
                    text: n.clone(),
                })
                .collect(),
            instances: vec![Instance {
                id,
                state,
                cid,
                reason,
            }],
        });
    }
    let rlmi = Rlmi {
        uri: list_uri.to_string(),
        version,
        full_state: true,
        names: Vec::new(),
        resources,
    };
    if let Some(root) = parts.first_mut() {
        *root = Part::new(MIME_RLMI, Some(&root_cid), rlmi.to_xml());
    }
    let boundary = multipart::generate_boundary(&mut rand::rng());
    let body = multipart::build(&parts, &boundary)?;
    Ok((
        multipart::content_type(&boundary, MIME_RLMI, Some(&root_cid)),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_proto::simple::pidf::Availability;

    const SERVICES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">
 <service uri="sip:mybuddies@example.com">
  <resource-list>https://xcap.example.com/xcap-root/resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22l1%22%5d</resource-list>
  <packages><package>presence</package></packages>
 </service>
 <service uri="sip:marketing@example.com">
  <list name="marketing">
   <rl:entry uri="sip:joe@example.com"><rl:display-name>Joe</rl:display-name></rl:entry>
   <rl:entry uri="sip:sudhir@example.com"/>
   <rl:list name="inner"><rl:entry uri="sip:ann@example.com"/><rl:entry uri="sip:joe@example.com"/></rl:list>
  </list>
  <packages><package>presence</package></packages>
 </service>
</rls-services>"#;

    #[test]
    fn services_inline_and_reference() {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let inline = find_service(SERVICES.as_bytes(), "sip:marketing@example.com", eq).unwrap();
        let Some(ServiceList::Inline(m)) = inline else {
            panic!("{inline:?}")
        };
        let uris: Vec<&str> = m.iter().map(|m| m.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "sip:joe@example.com",
                "sip:sudhir@example.com",
                "sip:ann@example.com"
            ]
        );
        assert_eq!(m[0].name.as_deref(), Some("Joe"));
        let reference = find_service(SERVICES.as_bytes(), "sip:mybuddies@example.com", eq).unwrap();
        assert_eq!(
            reference,
            Some(ServiceList::Reference {
                xui: "joe@example.com".into(),
                document: "index".into(),
                list: Some("l1".into()),
            })
        );
        assert_eq!(
            find_service(SERVICES.as_bytes(), "sip:other@example.com", eq).unwrap(),
            None
        );
        assert!(validate_rls_services(SERVICES.as_bytes()).is_ok());
        assert!(
            validate_rls_services(
                b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>"
            )
            .is_err()
        );
        assert!(validate_rls_services(
            b"<rls-services xmlns=\"urn:ietf:params:xml:ns:rls-services\"><service/></rls-services>"
        )
        .is_err());
    }

    #[test]
    fn notify_body_round_trips() {
        let members = vec![
            (
                Member {
                    uri: "sip:bob@example.com".into(),
                    name: Some("Bob".into()),
                },
                MemberState::Active(
                    Availability::Away.to_presence("sip:bob@example.com", Some("back soon")),
                ),
            ),
            (
                Member {
                    uri: "sip:eve@example.com".into(),
                    name: None,
                },
                MemberState::Terminated("rejected"),
            ),
            (
                Member {
                    uri: "sip:carl@example.com".into(),
                    name: None,
                },
                MemberState::Pending,
            ),
        ];
        let (ct, body) = notify_body("sip:alice-buddies@example.com", 7, &members, "t1").unwrap();
        let boundary = multipart::content_type_param(&ct, "boundary").unwrap();
        let parts = multipart::parse(&body, &boundary).unwrap();
        assert_eq!(parts.len(), 2);
        let rlmi = Rlmi::parse(&parts[0].body).unwrap();
        assert_eq!((rlmi.version, rlmi.full_state), (7, true));
        assert_eq!(rlmi.resources.len(), 3);
        assert_eq!(
            rlmi.resources[1].instances[0].reason.as_deref(),
            Some("rejected")
        );
        let cid = rlmi.resources[0].instances[0].cid.clone().unwrap();
        assert_eq!(
            parts[1].content_id().map(|c| c.trim_matches(['<', '>'])),
            Some(cid.as_str())
        );
        let p = tandem_proto::simple::pidf::parse(&parts[1].body).unwrap();
        assert_eq!(p.availability(), Availability::Away);
    }

    #[test]
    fn resource_lists_members() {
        let doc = br#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
<list name="friends"><entry uri="sip:a@x"><display-name>A</display-name></entry><entry uri="sip:b@x"/></list>
<list name="work"><entry uri="sip:c@x"/><entry uri="sip:a@x"/></list></resource-lists>"#;
        let all = members_of_document(doc, None).unwrap();
        assert_eq!(all.len(), 3);
        let work = members_of_document(doc, Some("work")).unwrap();
        assert_eq!(work.len(), 2);
        assert!(members_of_document(doc, Some("none")).unwrap().is_empty());
    }
}
