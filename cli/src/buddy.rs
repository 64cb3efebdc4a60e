//! `tandem-cli buddy add|del|list`: the user's buddy list on an XCAP server (RFC 4825/4826).

use std::sync::Arc;

use tandem_client_core::xcap::{XcapClient, XcapError};
use tandem_client_core::{Account, parse_uri};

use crate::args::BuddyAction;
use crate::output::{Event, Exit};

/// The exit code for an XCAP failure.
fn exit_for(err: &XcapError) -> Exit {
    match err {
        XcapError::AuthFailed => Exit::AuthFailed,
        XcapError::Config(_) => Exit::Usage,
        XcapError::Status { .. } | XcapError::PreconditionFailed => Exit::Refused,
        _ => Exit::Network,
    }
}

/// Prints `failed reason=… error=…` and returns the exit code.
fn fail(err: &XcapError) -> Exit {
    eprintln!("tandem-cli: {err}");
    let reason = match err {
        XcapError::AuthFailed => "auth-failed".to_string(),
        XcapError::Status { status, .. } => format!("status-{status}"),
        XcapError::PreconditionFailed => "precondition-failed".to_string(),
        XcapError::Network(_) => "network".to_string(),
        _ => "error".to_string(),
    };
    Event::new("failed")
        .kv("reason", reason)
        .kv("error", err)
        .emit();
    exit_for(err)
}

/// A buddy URI in its canonical `sip:user@domain` form (a bare `bob` takes our domain).
pub fn buddy_uri(account: &Account, uri: &str) -> Result<String, String> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err("empty buddy URI".into());
    }
    let full = if uri.contains(':') {
        uri.to_string()
    } else if uri.contains('@') {
        format!("sip:{uri}")
    } else {
        format!("sip:{uri}@{}", account.domain)
    };
    parse_uri(&full)
        .map(|u| u.to_string())
        .map_err(|e| format!("invalid buddy URI {uri:?}: {e}"))
}

/// Runs `buddy <action>` against the XCAP root and returns the exit code.
pub async fn run(
    account: &Account,
    xcap_root: &str,
    tls: Arc<rustls::ClientConfig>,
    action: BuddyAction,
) -> Exit {
    let client = match XcapClient::new(xcap_root, account, tls) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match action {
        BuddyAction::Add { uri, name } => {
            let uri = match buddy_uri(account, &uri) {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("tandem-cli: {e}");
                    return Exit::Usage;
                }
            };
            match client.add_buddy(&uri, name.as_deref()).await {
                Ok(()) => {
                    let mut ev = Event::new("buddy-added").kv("uri", &uri);
                    if let Some(n) = &name {
                        ev = ev.kv("name", n);
                    }
                    ev.emit();
                    Exit::Success
                }
                Err(e) => fail(&e),
            }
        }
        BuddyAction::Del { uri } => {
            let uri = match buddy_uri(account, &uri) {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("tandem-cli: {e}");
                    return Exit::Usage;
                }
            };
            match client.remove_buddy(&uri).await {
                Ok(()) => {
                    Event::new("buddy-removed").kv("uri", &uri).emit();
                    Exit::Success
                }
                Err(e) => fail(&e),
            }
        }
        BuddyAction::List => match client.buddies().await {
            Ok(entries) => {
                for entry in entries {
                    let name = entry.display_name.map(|d| d.text).unwrap_or_default();
                    Event::new("buddy")
                        .kv("uri", &entry.uri)
                        .kv("name", name)
                        .emit();
                }
                Exit::Success
            }
            Err(e) => fail(&e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uris() {
        let account = Account::new("alice", "tandem.lab");
        assert_eq!(buddy_uri(&account, "bob").unwrap(), "sip:bob@tandem.lab");
        assert_eq!(buddy_uri(&account, "bob@x.org").unwrap(), "sip:bob@x.org");
        assert_eq!(
            buddy_uri(&account, "sip:carol@y.org").unwrap(),
            "sip:carol@y.org"
        );
        assert!(buddy_uri(&account, "").is_err());
        assert!(buddy_uri(&account, "sip:").is_err());
    }
}
