//! Instant message disposition notifications (RFC 5438, `message/imdn+xml`).

use super::SimpleError;
use super::ns::IMDN;
use super::xml::{self, Element, RawXml};

/// A disposition a sender asks for in `imdn.Disposition-Notification` (RFC 5438 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// `positive-delivery`.
    PositiveDelivery,
    /// `negative-delivery`.
    NegativeDelivery,
    /// `display`.
    Display,
    /// `processing`.
    Processing,
}

impl Disposition {
    /// The header token.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::PositiveDelivery => "positive-delivery",
            Disposition::NegativeDelivery => "negative-delivery",
            Disposition::Display => "display",
            Disposition::Processing => "processing",
        }
    }

    /// Parse a header token (case-insensitive).
    pub fn from_token(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "positive-delivery" => Disposition::PositiveDelivery,
            "negative-delivery" => Disposition::NegativeDelivery,
            "display" => Disposition::Display,
            "processing" => Disposition::Processing,
            _ => return None,
        })
    }
}

/// The status of a `<delivery-notification>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// `<delivered/>`.
    Delivered,
    /// `<failed/>`.
    Failed,
    /// `<forbidden/>`.
    Forbidden,
    /// `<error/>`.
    Error,
}

/// The status of a `<display-notification>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayStatus {
    /// `<displayed/>`.
    Displayed,
    /// `<forbidden/>`.
    Forbidden,
    /// `<error/>`.
    Error,
}

/// The status of a `<processing-notification>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingStatus {
    /// `<processed/>`.
    Processed,
    /// `<stored/>`.
    Stored,
    /// `<forbidden/>`.
    Forbidden,
    /// `<error/>`.
    Error,
}

/// Which notification an IMDN document carries, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// `<delivery-notification>`.
    Delivery(DeliveryStatus),
    /// `<display-notification>`.
    Display(DisplayStatus),
    /// `<processing-notification>`.
    Processing(ProcessingStatus),
}

/// An `<imdn>` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imdn {
    /// `<message-id>` of the message this notification is about.
    pub message_id: String,
    /// `<datetime>` of that message (RFC 3339).
    pub datetime: String,
    /// `<recipient-uri>`.
    pub recipient_uri: Option<String>,
    /// `<original-recipient-uri>`.
    pub original_recipient_uri: Option<String>,
    /// `<subject>`.
    pub subject: Option<String>,
    /// The notification and its status.
    pub notification: Notification,
    /// Extension elements (e.g. Linphone's reason), kept verbatim.
    pub extra: Vec<RawXml>,
}

impl Imdn {
    /// A notification about `message_id` sent at `datetime`.
    pub fn new(message_id: &str, datetime: &str, notification: Notification) -> Self {
        Imdn {
            message_id: message_id.to_string(),
            datetime: datetime.to_string(),
            recipient_uri: None,
            original_recipient_uri: None,
            subject: None,
            notification,
            extra: Vec::new(),
        }
    }

    /// The disposition this notification answers.
    pub fn disposition(&self) -> Disposition {
        match self.notification {
            Notification::Delivery(DeliveryStatus::Delivered) => Disposition::PositiveDelivery,
            Notification::Delivery(_) => Disposition::NegativeDelivery,
            Notification::Display(_) => Disposition::Display,
            Notification::Processing(_) => Disposition::Processing,
        }
    }

    /// Parse an IMDN document.
    pub fn parse(input: &[u8]) -> Result<Imdn, SimpleError> {
        let root = xml::parse_root(input, IMDN, "imdn")?;
        let text = |n: &str| root.child(IMDN, n).map(|e| e.trimmed_text());
        let message_id = text("message-id").ok_or(SimpleError::MissingElement("message-id"))?;
        let datetime = text("datetime").ok_or(SimpleError::MissingElement("datetime"))?;
        let mut notification = None;
        let mut extra = Vec::new();
        for e in root.elements() {
            if e.ns != IMDN {
                extra.push(e.clone());
                continue;
            }
            let kind = match e.name.as_str() {
                "delivery-notification" | "display-notification" | "processing-notification" => {
                    e.name.as_str()
                }
                "message-id"
                | "datetime"
                | "recipient-uri"
                | "original-recipient-uri"
                | "subject" => continue,
                _ => {
                    extra.push(e.clone());
                    continue;
                }
            };
            if notification.is_some() {
                return Err(SimpleError::invalid("imdn", "more than one notification"));
            }
            let status = e
                .child(IMDN, "status")
                .ok_or(SimpleError::MissingElement("status"))?;
            let value = status
                .elements()
                .find(|s| s.ns == IMDN)
                .map(|s| s.name.as_str())
                .ok_or(SimpleError::MissingElement("status value"))?;
            let bad = || SimpleError::invalid("imdn status", value);
            notification = Some(match kind {
                "delivery-notification" => Notification::Delivery(match value {
                    "delivered" => DeliveryStatus::Delivered,
                    "failed" => DeliveryStatus::Failed,
                    "forbidden" => DeliveryStatus::Forbidden,
                    "error" => DeliveryStatus::Error,
                    _ => return Err(bad()),
                }),
                "display-notification" => Notification::Display(match value {
                    "displayed" => DisplayStatus::Displayed,
                    "forbidden" => DisplayStatus::Forbidden,
                    "error" => DisplayStatus::Error,
                    _ => return Err(bad()),
                }),
                _ => Notification::Processing(match value {
                    "processed" => ProcessingStatus::Processed,
                    "stored" => ProcessingStatus::Stored,
                    "forbidden" => ProcessingStatus::Forbidden,
                    "error" => ProcessingStatus::Error,
                    _ => return Err(bad()),
                }),
            });
        }
        Ok(Imdn {
            message_id,
            datetime,
            recipient_uri: text("recipient-uri"),
            original_recipient_uri: text("original-recipient-uri"),
            subject: text("subject"),
            notification: notification
                .ok_or(SimpleError::MissingElement("delivery-notification"))?,
            extra,
        })
    }

    /// Print as an IMDN document.
    pub fn to_xml(&self) -> String {
        let mut root = Element::new(IMDN, "imdn");
        root.push(Element::new(IMDN, "message-id").with_text(&self.message_id));
        root.push(Element::new(IMDN, "datetime").with_text(&self.datetime));
        if let Some(v) = &self.recipient_uri {
            root.push(Element::new(IMDN, "recipient-uri").with_text(v));
        }
        if let Some(v) = &self.original_recipient_uri {
            root.push(Element::new(IMDN, "original-recipient-uri").with_text(v));
        }
        if let Some(v) = &self.subject {
            root.push(Element::new(IMDN, "subject").with_text(v));
        }
        let (kind, value) = match self.notification {
            Notification::Delivery(s) => (
                "delivery-notification",
                match s {
                    DeliveryStatus::Delivered => "delivered",
                    DeliveryStatus::Failed => "failed",
                    DeliveryStatus::Forbidden => "forbidden",
                    DeliveryStatus::Error => "error",
                },
            ),
            Notification::Display(s) => (
                "display-notification",
                match s {
                    DisplayStatus::Displayed => "displayed",
                    DisplayStatus::Forbidden => "forbidden",
                    DisplayStatus::Error => "error",
                },
            ),
            Notification::Processing(s) => (
                "processing-notification",
                match s {
                    ProcessingStatus::Processed => "processed",
                    ProcessingStatus::Stored => "stored",
                    ProcessingStatus::Forbidden => "forbidden",
                    ProcessingStatus::Error => "error",
                },
            ),
        };
        root.push(
            Element::new(IMDN, kind)
                .with_child(Element::new(IMDN, "status").with_child(Element::new(IMDN, value))),
        );
        for x in &self.extra {
            root.push(x.clone());
        }
        root.to_document()
    }
}
