//! Message composition indication (RFC 3994, `application/im-iscomposing+xml`).

use super::SimpleError;
use super::ns::ISCOMPOSING;
use super::xml::{self, Element, RawXml};

/// The composer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposingState {
    /// `active`: the user is composing.
    Active,
    /// `idle`: the user stopped.
    Idle,
}

/// An `<isComposing>` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsComposing {
    /// `<state>`.
    pub state: ComposingState,
    /// `<lastactive>` (RFC 3339).
    pub lastactive: Option<String>,
    /// `<contenttype>` of the message being composed.
    pub content_type: Option<String>,
    /// `<refresh>` in seconds (only meaningful with `Active`).
    pub refresh: Option<u32>,
    /// Extension elements, kept verbatim.
    pub extra: Vec<RawXml>,
}

impl IsComposing {
    /// An `active` indication with an optional refresh interval.
    pub fn active(refresh: Option<u32>) -> Self {
        IsComposing {
            state: ComposingState::Active,
            lastactive: None,
            content_type: Some("text/plain".into()),
            refresh,
            extra: Vec::new(),
        }
    }

    /// An `idle` indication.
    pub fn idle() -> Self {
        IsComposing {
            state: ComposingState::Idle,
            lastactive: None,
            content_type: None,
            refresh: None,
            extra: Vec::new(),
        }
    }

    /// Parse an isComposing document.
    pub fn parse(input: &[u8]) -> Result<IsComposing, SimpleError> {
        let root = xml::parse_root(input, ISCOMPOSING, "isComposing")?;
        let st = root
            .child(ISCOMPOSING, "state")
            .ok_or(SimpleError::MissingElement("state"))?
            .trimmed_text();
        let state = match st.to_ascii_lowercase().as_str() {
            "active" => ComposingState::Active,
            "idle" => ComposingState::Idle,
            _ => return Err(SimpleError::invalid("isComposing state", &st)),
        };
        let text = |n: &str| root.child(ISCOMPOSING, n).map(|e| e.trimmed_text());
        let refresh = text("refresh")
            .map(|r| {
                r.parse::<u32>()
                    .map_err(|_| SimpleError::invalid("refresh", &r))
            })
            .transpose()?;
        Ok(IsComposing {
            state,
            lastactive: text("lastactive"),
            content_type: text("contenttype"),
            refresh,
            extra: root
                .elements()
                .filter(|e| {
                    !(e.ns == ISCOMPOSING
                        && matches!(
                            e.name.as_str(),
                            "state" | "lastactive" | "contenttype" | "refresh"
                        ))
                })
                .cloned()
                .collect(),
        })
    }

    /// Print as an isComposing document.
    pub fn to_xml(&self) -> String {
        let mut root = Element::new(ISCOMPOSING, "isComposing");
        root.push(
            Element::new(ISCOMPOSING, "state").with_text(match self.state {
                ComposingState::Active => "active",
                ComposingState::Idle => "idle",
            }),
        );
        if let Some(v) = &self.lastactive {
            root.push(Element::new(ISCOMPOSING, "lastactive").with_text(v));
        }
        if let Some(v) = &self.content_type {
            root.push(Element::new(ISCOMPOSING, "contenttype").with_text(v));
        }
        if let Some(v) = self.refresh {
            root.push(Element::new(ISCOMPOSING, "refresh").with_text(&v.to_string()));
        }
        for x in &self.extra {
            root.push(x.clone());
        }
        root.to_document()
    }
}
