//! `tandem-cli mwi [URI]`: message waiting indication (RFC 3842 `message-summary`).
//!
//! Subscribes to the account's own mailbox (or `URI`, e.g. `voicemail`) and prints, on every
//! NOTIFY, `mwi new=N old=M account=URI`; `mwi-terminated reason=… final=yes|no` when the
//! subscription ends.

use std::time::Duration;

use tandem_client_core::mwi::{MwiEvent, MwiSubscription};
use tandem_client_core::{Account, UserAgent, parse_uri};

use crate::commands::{Flow, Interrupt, Watched, emit_terminated, watch_events};
use crate::output::{Event, Exit};

/// Watches the message summary for `duration` (or until SIGINT) and returns the exit code.
pub async fn run(
    agent: &UserAgent,
    account: &Account,
    uri: Option<&str>,
    duration: Option<Duration>,
    mut intr: Interrupt,
) -> Exit {
    let target = match uri {
        None => None,
        Some(u) => match crate::buddy::buddy_uri(account, u)
            .and_then(|t| parse_uri(&t).map_err(|e| format!("invalid mailbox URI {u:?}: {e}")))
        {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("tandem-cli: {e}");
                return Exit::Usage;
            }
        },
    };
    let fallback = match target.clone().map_or_else(|| account.aor(), Ok) {
        Ok(t) => t.to_string(),
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            return Exit::Usage;
        }
    };
    let sub = agent.subscribe_mwi(account, target);
    watch_events(sub, duration, &mut intr, |ev| match ev {
        MwiEvent::Summary(s) => {
            let (new, old) = s.voice.map_or((0, 0), |v| (v.new, v.old));
            Event::new("mwi")
                .kv("new", new)
                .kv("old", old)
                .kv("account", s.account.as_deref().unwrap_or(&fallback))
                .emit();
            Flow::Continue
        }
        MwiEvent::Terminated { reason, final_ } => {
            emit_terminated("mwi-terminated", reason.as_deref(), None, final_)
        }
        _ => Flow::Continue,
    })
    .await
}

impl Watched for MwiSubscription {
    type Event = MwiEvent;
    fn next_event(&mut self) -> impl Future<Output = Option<MwiEvent>> {
        self.next()
    }
    fn end(self) -> impl Future<Output = ()> {
        self.unsubscribe()
    }
}
