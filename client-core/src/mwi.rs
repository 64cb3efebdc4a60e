//! Message waiting indication (RFC 3842): subscribing to a voicemail account's message-summary.
//!
//! [`UserAgent::subscribe_mwi`] sends SUBSCRIBE `Event: message-summary` (RFC 6665) to the
//! account's own AoR (or another message account URI), refreshes it at 3/4 of the granted time,
//! re-subscribes after a termination the notifier allows a retry for, and reports every
//! `application/simple-message-summary` NOTIFY as an [`MwiEvent::Summary`].

use std::sync::Arc;
use std::time::Duration;

use tandem_proto::msg::{Request, Uri};
use tandem_proto::simple::message_summary::MessageSummary;

use crate::account::Account;
use crate::subscription::{self, Handle, Package, Refusal};
use crate::ua::UserAgent;

/// `application/simple-message-summary` (RFC 3842).
pub const MESSAGE_SUMMARY: &str = "application/simple-message-summary";
/// Subscription duration asked for, in seconds.
pub const MWI_EXPIRES: u32 = 3600;

/// What an MWI subscription reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MwiEvent {
    /// The mailbox state from a NOTIFY.
    Summary(MessageSummary),
    /// The subscription ended; it is re-established automatically unless `final_` is true.
    Terminated {
        /// The notifier's reason or our error.
        reason: Option<String>,
        /// True when no new attempt will be made (rejected, 4xx to SUBSCRIBE, bad credentials).
        final_: bool,
    },
}

impl MwiEvent {
    /// `(new, old)` voice message counts of a summary (0/0 when the NOTIFY had none).
    pub fn voice_counts(&self) -> Option<(u32, u32)> {
        match self {
            MwiEvent::Summary(s) => Some(s.voice.map_or((0, 0), |v| (v.new, v.old))),
            MwiEvent::Terminated { .. } => None,
        }
    }
}

/// A message-summary subscription; un-subscribes when dropped.
#[derive(Debug)]
pub struct MwiSubscription(Handle<MwiEvent>);

impl MwiSubscription {
    /// The next event; `None` after a final termination or [`MwiSubscription::unsubscribe`].
    pub async fn next(&mut self) -> Option<MwiEvent> {
        self.0.next().await
    }

    /// Ends the subscription (SUBSCRIBE with Expires 0) and waits for the final NOTIFY.
    pub async fn unsubscribe(self) {
        self.0.unsubscribe().await;
    }
}

impl UserAgent {
    /// Subscribes to the message summary of `message_account` (default: the account's own
    /// AoR) as `account` (RFC 3842); runs in the background until dropped.
    pub fn subscribe_mwi(
        &self,
        account: &Account,
        message_account: Option<Uri>,
    ) -> MwiSubscription {
        MwiSubscription(subscription::spawn(
            Arc::clone(self.shared()),
            account.clone(),
            message_account,
            MessageSummaryPackage,
        ))
    }
}

/// The `message-summary` event package (RFC 3842).
struct MessageSummaryPackage;

impl Package for MessageSummaryPackage {
    type Event = MwiEvent;
    const EVENT: &'static str = "message-summary";
    const ACCEPT: &'static str = MESSAGE_SUMMARY;
    const EXPIRES: u32 = MWI_EXPIRES;
    const MAX_RETRY: Duration = Duration::from_secs(300);
    const HONOURS_RETRY_AFTER: bool = false;

    fn terminated(reason: Option<String>, final_: bool) -> MwiEvent {
        MwiEvent::Terminated { reason, final_ }
    }

    fn on_body(&mut self, request: &Request) -> Result<Option<MwiEvent>, Refusal> {
        match MessageSummary::parse(&request.body) {
            Ok(summary) => Ok(Some(MwiEvent::Summary(summary))),
            Err(e) => {
                tracing::debug!("unreadable message-summary: {e}");
                Err((400, "Bad Message Summary"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_counts() {
        let s = MessageSummary::parse(b"Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n")
            .unwrap();
        assert_eq!(MwiEvent::Summary(s).voice_counts(), Some((2, 8)));
        assert_eq!(
            MwiEvent::Summary(MessageSummary::default()).voice_counts(),
            Some((0, 0))
        );
    }
}
