//! Conference rosters: a subscription to a conference URI's `conference` event package (RFC 4575
//! over RFC 6665). Each NOTIFY's `application/conference-info+xml` document (full or partial) is
//! merged into the roster kept here ([`ConferenceInfo::apply`]) and reported whole; the
//! subscription is refreshed at 3/4 of its lifetime and re-established after a termination the
//! notifier allows (`deactivated`, `timeout`, `probation`, `giveup`, or a transient failure).

use std::sync::Arc;
use std::time::Duration;

use tandem_proto::msg::{HeaderName, Request, Uri};
use tandem_proto::simple::conference_info::{CONTENT_TYPE, ConferenceInfo};

use crate::account::Account;
use crate::subscription::{self, Handle, Package, Refusal};
use crate::ua::UserAgent;

/// The subscription lifetime asked for, in seconds.
pub const CONFERENCE_EXPIRES: u32 = 600;

/// What a conference subscription reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConferenceEvent {
    /// The roster after a NOTIFY (partial notifications already merged in).
    Roster(Box<ConferenceInfo>),
    /// The subscription ended; it is re-established automatically unless `final_` is true.
    Terminated {
        /// The notifier's reason or our error.
        reason: Option<String>,
        /// True when no new attempt will be made.
        final_: bool,
    },
}

/// A subscription to a conference's roster; ends (un-subscribing) when dropped or on
/// [`ConferenceSubscription::unsubscribe`].
#[derive(Debug)]
pub struct ConferenceSubscription(Handle<ConferenceEvent>);

impl ConferenceSubscription {
    /// The next event; `None` after a final termination or un-subscription.
    pub async fn next(&mut self) -> Option<ConferenceEvent> {
        self.0.next().await
    }

    /// Ends the subscription (SUBSCRIBE with Expires 0) and waits (bounded) for the final NOTIFY.
    pub async fn unsubscribe(self) {
        self.0.unsubscribe().await;
    }
}

impl UserAgent {
    /// Subscribes to the roster of the conference at `room` (e.g. `sip:conf-lab@domain`) as
    /// `account`.
    pub fn subscribe_conference(&self, account: &Account, room: Uri) -> ConferenceSubscription {
        ConferenceSubscription(subscription::spawn(
            Arc::clone(self.shared()),
            account.clone(),
            Some(room),
            ConferencePackage::default(),
        ))
    }
}

/// The `conference` event package (RFC 4575), with the roster merged from its NOTIFYs.
#[derive(Default)]
struct ConferencePackage {
    roster: ConferenceInfo,
}

impl Package for ConferencePackage {
    type Event = ConferenceEvent;
    const EVENT: &'static str = "conference";
    const ACCEPT: &'static str = CONTENT_TYPE;
    const EXPIRES: u32 = CONFERENCE_EXPIRES;
    const MAX_RETRY: Duration = Duration::from_secs(120);
    const HONOURS_RETRY_AFTER: bool = true;

    fn terminated(reason: Option<String>, final_: bool) -> ConferenceEvent {
        ConferenceEvent::Terminated { reason, final_ }
    }

    fn check_notify(&self, request: &Request) -> Result<(), Refusal> {
        let event = request
            .headers
            .get_str(&HeaderName::Event)
            .and_then(|e| e.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase());
        if event.as_deref() == Some("conference") {
            Ok(())
        } else {
            Err((489, "Bad Event"))
        }
    }

    /// Merges the NOTIFY's roster; reports the whole roster when it changed.
    fn on_body(&mut self, request: &Request) -> Result<Option<ConferenceEvent>, Refusal> {
        let content_type = request
            .headers
            .content_type()
            .map(crate::im::base_type)
            .unwrap_or_default();
        if content_type != CONTENT_TYPE {
            return Err((415, "Unsupported Media Type"));
        }
        match ConferenceInfo::parse(&request.body) {
            Ok(info) => Ok(self
                .roster
                .apply(info)
                .then(|| ConferenceEvent::Roster(Box::new(self.roster.clone())))),
            Err(e) => {
                tracing::warn!("unreadable conference-info in NOTIFY: {e}");
                Err((400, "Bad conference-info"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tandem_proto::msg::Method;

    use super::*;

    fn notify(event: &str, content_type: &str, body: &str) -> Request {
        let mut r = Request::new(Method::Notify, Uri::parse("sip:alice@example.com").unwrap());
        r.headers.push(HeaderName::Event, event.to_owned());
        r.headers
            .push(HeaderName::ContentType, content_type.to_owned());
        r.body = body.as_bytes().to_vec().into();
        r
    }

    const FULL: &str = r#"<conference-info xmlns="urn:ietf:params:xml:ns:conference-info"
        entity="sip:conf-lab@example.com" state="full" version="1">
        <users><user entity="sip:bob@example.com" state="full"/></users>
        </conference-info>"#;

    #[test]
    fn notify_checks_and_roster_merge() {
        let mut p = ConferencePackage::default();
        assert_eq!(
            p.check_notify(&notify("Conference;id=1", CONTENT_TYPE, "")),
            Ok(())
        );
        assert_eq!(
            p.check_notify(&notify("presence", CONTENT_TYPE, "")),
            Err((489, "Bad Event"))
        );
        assert_eq!(
            p.on_body(&notify("conference", "text/plain", FULL)),
            Err((415, "Unsupported Media Type"))
        );
        assert_eq!(
            p.on_body(&notify("conference", CONTENT_TYPE, "<nope")),
            Err((400, "Bad conference-info"))
        );
        let Ok(Some(ConferenceEvent::Roster(info))) =
            p.on_body(&notify("conference", CONTENT_TYPE, FULL))
        else {
            panic!("a full document is reported");
        };
        assert_eq!(info.entity, "sip:conf-lab@example.com");
        assert_eq!(info.users.len(), 1);
        // The same version again changes nothing and reports nothing.
        assert_eq!(
            p.on_body(&notify("conference", CONTENT_TYPE, FULL)),
            Ok(None)
        );
    }
}
