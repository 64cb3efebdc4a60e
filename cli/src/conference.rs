//! `tandem-cli conference URI`: watch a conference's roster (RFC 4575 `conference` event package).
//!
//! Prints, after every NOTIFY, `conference entity=URI version=N users=N locked=yes|no` and then one
//! `conference-user uri=URI role=participant|moderator status=connected|muted speaking=yes|no
//! endpoints=N` line per user; `conference-terminated reason=… final=yes|no` when the subscription
//! ends.

use std::time::Duration;

use tandem_client_core::conference::{ConferenceEvent, ConferenceSubscription};
use tandem_client_core::types::simple::conference_info::ConferenceInfo;
use tandem_client_core::{Account, UserAgent, parse_uri};

use crate::commands::{Flow, Interrupt, Watched, emit_terminated, watch_events};
use crate::output::{Event, Exit};

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn print_roster(info: &ConferenceInfo) {
    let state = info.conference_state.unwrap_or_default();
    Event::new("conference")
        .kv("entity", &info.entity)
        .kv("version", info.version.unwrap_or(0))
        .kv("users", state.user_count.unwrap_or(info.users.len() as u32))
        .kv("locked", yes_no(state.locked.unwrap_or(false)))
        .emit();
    for u in &info.users {
        let role = if u.roles.iter().any(|r| r == "moderator") {
            "moderator"
        } else {
            "participant"
        };
        Event::new("conference-user")
            .kv("uri", &u.entity)
            .kv("role", role)
            .kv("status", if u.is_muted() { "muted" } else { "connected" })
            .kv("speaking", yes_no(u.is_speaking()))
            .kv("endpoints", u.endpoints.len())
            .emit();
    }
}

/// Watches the roster of `uri` for `duration` (or until SIGINT) and returns the exit code.
pub async fn run(
    agent: &UserAgent,
    account: &Account,
    uri: &str,
    duration: Option<Duration>,
    mut intr: Interrupt,
) -> Exit {
    let room = match crate::buddy::buddy_uri(account, uri)
        .and_then(|u| parse_uri(&u).map_err(|e| format!("invalid conference URI {uri:?}: {e}")))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem-cli: {e}");
            return Exit::Usage;
        }
    };
    let sub = agent.subscribe_conference(account, room);
    watch_events(sub, duration, &mut intr, |ev| match ev {
        ConferenceEvent::Roster(info) => {
            print_roster(&info);
            Flow::Continue
        }
        ConferenceEvent::Terminated { reason, final_ } => {
            emit_terminated("conference-terminated", reason.as_deref(), None, final_)
        }
        _ => Flow::Continue,
    })
    .await
}

impl Watched for ConferenceSubscription {
    type Event = ConferenceEvent;
    fn next_event(&mut self) -> impl Future<Output = Option<ConferenceEvent>> {
        self.next()
    }
    fn end(self) -> impl Future<Output = ()> {
        self.unsubscribe()
    }
}
