//! `tandem-cli watch --list URI`: a resource-list subscription (RFC 4662) printing one line per
//! list NOTIFY and one per resource in it:
//! `list uri=… version=N full=yes|no resources=N`, then for each resource
//! `presence entity=… status=… [note="…"] [name="…"]` (a state was reported),
//! `presence-pending entity=…` (the resource has not authorized us yet) or
//! `presence-terminated entity=… reason=…`; and `presence-terminated reason=… final=yes|no`
//! when the list subscription itself ends.

use std::time::Duration;

use tandem_client_core::types::Uri;
use tandem_client_core::types::simple::pidf::{Availability, Presence};
use tandem_client_core::types::simple::rlmi::InstanceState;
use tandem_client_core::{Account, ListEvent, ListState, UserAgent};
use tokio::time::sleep;

use crate::commands::Interrupt;
use crate::output::{Event, Exit};

/// The command-line name of an availability (as `watch` prints it).
fn availability_name(a: Availability) -> &'static str {
    match a {
        Availability::Available => "available",
        Availability::Away => "away",
        Availability::Busy => "busy",
        Availability::OnThePhone => "on-the-phone",
        _ => "offline",
    }
}

/// The first note of a presence document (document, person, then tuple notes).
fn note_of(p: &Presence) -> Option<String> {
    p.notes
        .first()
        .or_else(|| p.persons.iter().find_map(|x| x.notes.first()))
        .or_else(|| p.tuples.iter().find_map(|t| t.notes.first()))
        .map(|n| n.text.clone())
}

/// Prints the lines of one list NOTIFY.
fn emit_list(state: &ListState) {
    Event::new("list")
        .kv("uri", &state.uri)
        .kv("version", state.version)
        .kv("full", if state.full_state { "yes" } else { "no" })
        .kv("resources", state.resources.len())
        .emit();
    for r in &state.resources {
        match (&r.instance, &r.presence) {
            (InstanceState::Terminated, _) => Event::new("presence-terminated")
                .kv("entity", &r.uri)
                .kv("reason", r.reason.as_deref().unwrap_or("-"))
                .emit(),
            (_, Some(p)) => {
                let mut line = Event::new("presence")
                    .kv("entity", &r.uri)
                    .kv("status", availability_name(p.availability()));
                if let Some(note) = note_of(p) {
                    line = line.kv("note", note);
                }
                if let Some(name) = &r.name {
                    line = line.kv("name", name);
                }
                line.emit();
            }
            (_, None) => Event::new("presence-pending").kv("entity", &r.uri).emit(),
        }
    }
}

/// Subscribes to the resource list `target` and prints its NOTIFYs for `duration` (or until
/// SIGINT).
pub async fn run(
    agent: &UserAgent,
    account: &Account,
    target: Uri,
    duration: Option<Duration>,
    mut intr: Interrupt,
) -> Exit {
    let mut sub = agent.subscribe_list(account, target);
    let until = sleep(duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(until);
    let mut exit = Exit::Success;
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = intr.wait() => {
                if duration.is_some() {
                    exit = Exit::Interrupted;
                }
                break;
            }
            ev = sub.next() => match ev {
                Some(ListEvent::State(state)) => emit_list(&state),
                Some(ListEvent::Pending) => Event::new("presence-pending").emit(),
                Some(ListEvent::Terminated { reason, retry_after, final_ }) => {
                    let mut line = Event::new("presence-terminated")
                        .kv("reason", reason.as_deref().unwrap_or("-"));
                    if let Some(r) = retry_after {
                        line = line.kv("retry-after", r);
                    }
                    line.kv("final", if final_ { "yes" } else { "no" }).emit();
                    if final_ {
                        exit = Exit::Refused;
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    sub.unsubscribe().await;
    exit
}
