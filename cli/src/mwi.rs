//! `tandem-cli mwi [URI]`: message waiting indication (RFC 3842 `message-summary`).
//!
//! Subscribes to the account's own mailbox (or `URI`, e.g. `voicemail`) and prints, on every
//! NOTIFY, `mwi new=N old=M account=URI`; `mwi-terminated reason=… final=yes|no` when the
//! subscription ends.

use std::time::Duration;

use tandem_client_core::mwi::MwiEvent;
use tandem_client_core::{Account, UserAgent, parse_uri};
use tokio::time::sleep;

use crate::commands::Interrupt;
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
    let mut sub = agent.subscribe_mwi(account, target);
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
                Some(MwiEvent::Summary(s)) => {
                    let (new, old) = s.voice.map_or((0, 0), |v| (v.new, v.old));
                    Event::new("mwi")
                        .kv("new", new)
                        .kv("old", old)
                        .kv("account", s.account.as_deref().unwrap_or(&fallback))
                        .emit();
                }
                Some(MwiEvent::Terminated { reason, final_ }) => {
                    Event::new("mwi-terminated")
                        .kv("reason", reason.as_deref().unwrap_or("-"))
                        .kv("final", if final_ { "yes" } else { "no" })
                        .emit();
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
