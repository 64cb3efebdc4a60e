//! Turning client-core errors into failures explained in words.

use tandem_client_core::UaError;

use crate::types::{Failure, FailureKind};

/// Builds a [`Failure`].
pub fn failure(
    kind: FailureKind,
    message: impl Into<String>,
    detail: impl Into<String>,
) -> Failure {
    Failure {
        kind,
        message: message.into(),
        detail: detail.into(),
        certificate: None,
    }
}

/// Explains a registration or connection error for the user; `server` names where we tried.
pub fn explain_registration(err: &UaError, server: &str) -> Failure {
    let detail = err.to_string();
    match err {
        UaError::AuthFailed { .. } => failure(
            FailureKind::WrongPassword,
            format!("{server} refused the user name or password. Check both and try again."),
            detail,
        ),
        UaError::Rejected {
            status: 401 | 407, ..
        } => failure(
            FailureKind::WrongPassword,
            format!("{server} asks for a password: enter the account's password."),
            detail,
        ),
        UaError::Rejected { status: 403, .. } => failure(
            FailureKind::WrongPassword,
            format!(
                "{server} does not allow this account to sign in (403 Forbidden): check the user name and domain."
            ),
            detail,
        ),
        UaError::Rejected { status, reason } => failure(
            FailureKind::Rejected,
            format!("{server} answered {status} {reason}: it does not accept this registration."),
            detail,
        ),
        UaError::Timeout => failure(
            FailureKind::Unreachable,
            format!(
                "No answer from {server}. Check the address and port, that the server is running, and that no firewall blocks it."
            ),
            detail,
        ),
        UaError::Network(text) if is_tls_problem(text) => failure(
            FailureKind::Tls,
            format!(
                "The secure connection to {server} failed: its certificate is not trusted ({text}). If this is your lab server, trust its lab CA."
            ),
            detail,
        ),
        UaError::Network(text) if is_refused(text) => failure(
            FailureKind::Unreachable,
            format!(
                "Cannot reach {server}: nothing accepts connections at that address and port. Check the address, the port and the transport, and that the server is running."
            ),
            detail,
        ),
        UaError::Network(text) => failure(
            FailureKind::Unreachable,
            format!(
                "Cannot reach {server}: {text}. Check the address, the transport and your network."
            ),
            detail,
        ),
        UaError::Config(text) => failure(
            FailureKind::Settings,
            format!("The account settings are not valid: {text}."),
            detail,
        ),
        _ => failure(
            FailureKind::Other,
            format!("Signing in to {server} failed: {err}."),
            detail,
        ),
    }
}

/// Explains why a call could not be placed or answered.
pub fn explain_call(err: &UaError) -> Failure {
    let detail = err.to_string();
    if let Some(rejection) = err.rejection() {
        let text = match rejection.as_str() {
            "busy" => "The other party is busy.",
            "declined" => "The other party declined the call.",
            "unavailable" => {
                "The other party is not available right now (not signed in, or not answering)."
            }
            "no-answer" => "Nobody answered.",
            "cancelled" => "The call was cancelled.",
            "not-found" => "That address does not exist on the server.",
            "not-acceptable" => {
                "The other party's phone cannot handle this call's audio settings (codecs or encryption)."
            }
            _ => "The call was rejected.",
        };
        return failure(FailureKind::Rejected, text, detail);
    }
    match err {
        UaError::AuthFailed { .. } => failure(
            FailureKind::WrongPassword,
            "The server refused this account's password for the call.",
            detail,
        ),
        UaError::Timeout => failure(
            FailureKind::Unreachable,
            "The call got no answer from the server.",
            detail,
        ),
        UaError::Network(text) => failure(
            FailureKind::Unreachable,
            format!("Network problem: {text}."),
            detail,
        ),
        UaError::Config(text) => failure(
            FailureKind::Settings,
            format!("Cannot call that: {text}."),
            detail,
        ),
        UaError::Media(text) => failure(
            FailureKind::Other,
            format!("The audio could not be set up: {text}."),
            detail,
        ),
        _ => failure(
            FailureKind::Other,
            format!("The call failed: {err}."),
            detail,
        ),
    }
}

/// A connection refused (TCP RST, ICMP port unreachable) or a stream flow that could not be
/// opened.
fn is_refused(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("refused") || t.contains("flow failed") || t.contains("unreachable")
}

fn is_tls_problem(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "handshake",
        "unknownissuer",
        "unknown issuer",
        "expired",
    ]
    .iter()
    .any(|w| t.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        let f = explain_registration(&UaError::AuthFailed { realm: None }, "lab");
        assert_eq!(f.kind, FailureKind::WrongPassword);
        let f = explain_registration(&UaError::Timeout, "lab");
        assert_eq!(f.kind, FailureKind::Unreachable);
        assert!(f.message.contains("No answer from lab"));
        let f = explain_registration(
            &UaError::Network("invalid peer certificate: Expired".into()),
            "lab",
        );
        assert_eq!(f.kind, FailureKind::Tls);
        let f = explain_registration(&UaError::Network("connection refused".into()), "lab");
        assert_eq!(f.kind, FailureKind::Unreachable);
        assert!(
            f.message.contains("nothing accepts connections"),
            "{}",
            f.message
        );
        let f = explain_registration(&UaError::Network("no route to host".into()), "lab");
        assert!(f.message.contains("no route to host"), "{}", f.message);
        let f = explain_call(&UaError::Rejected {
            status: 486,
            reason: "Busy Here".into(),
        });
        assert_eq!(f.message, "The other party is busy.");
    }
}
