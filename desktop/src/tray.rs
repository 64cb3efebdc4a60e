//! The tray icon: a status line (signed in or not, calls in progress, someone calling) kept
//! current from the app's events, "Show Tandem" and "Quit"; and starting hidden in the tray.

use tandem_app::AppState;
use tandem_app::types::{AccountInfo, AppEvent, CallInfo, CallPhase, RegistrationState};
use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Runtime};

/// The command-line flag that starts the app hidden in the tray.
pub const MINIMIZED_FLAG: &str = "--minimized";

/// Whether the app was asked to start hidden in the tray (`--minimized`, or
/// `TANDEM_START_MINIMIZED=1` as a login item would set it).
pub fn start_minimized<I: IntoIterator<Item = String>>(args: I, env: Option<String>) -> bool {
    args.into_iter().any(|a| a == MINIMIZED_FLAG) || env.is_some_and(|v| !v.is_empty() && v != "0")
}

/// The tray's status line for these accounts and calls, most urgent first: someone calling,
/// calls in progress, then how the accounts are signed in.
pub fn status_line(accounts: &[AccountInfo], calls: &[CallInfo]) -> String {
    let live: Vec<&CallInfo> = calls
        .iter()
        .filter(|c| c.phase != CallPhase::Ended)
        .collect();
    if let Some(ringing) = live.iter().find(|c| c.phase == CallPhase::Incoming) {
        return format!("{} is calling", display_name(&ringing.remote));
    }
    match live.len() {
        0 => {}
        1 => {
            let c = live
                .first()
                .map(|c| display_name(&c.remote))
                .unwrap_or_default();
            return format!("In a call with {c}");
        }
        n => return format!("{n} calls in progress"),
    }
    if accounts.is_empty() {
        return "No account yet".to_owned();
    }
    let signed_in: Vec<&AccountInfo> = accounts
        .iter()
        .filter(|a| matches!(a.registration, RegistrationState::Registered { .. }))
        .collect();
    let failed = accounts
        .iter()
        .filter(|a| matches!(a.registration, RegistrationState::Failed { .. }))
        .count();
    match (signed_in.as_slice(), failed) {
        ([one], 0) if accounts.len() == 1 => format!("Signed in as {}", one.id),
        ([], 0) => "Not signed in".to_owned(),
        ([], f) => format!("Sign-in failed ({f} of {})", accounts.len()),
        (some, 0) => format!("Signed in: {} of {} accounts", some.len(), accounts.len()),
        (some, f) => format!(
            "Signed in: {} of {} accounts ({f} failed)",
            some.len(),
            accounts.len()
        ),
    }
}

/// `Bob <sip:bob@x>` → `Bob`; `sip:bob@x` → `bob@x`.
fn display_name(remote: &str) -> String {
    let remote = remote.trim();
    if let Some((name, _)) = remote.split_once('<') {
        let name = name.trim().trim_matches('"').trim();
        if !name.is_empty() {
            return name.to_owned();
        }
    }
    let uri = remote
        .trim_start_matches(|c| c != '<')
        .trim_start_matches('<')
        .split(['>', ';'])
        .next()
        .unwrap_or(remote);
    let uri = if uri.is_empty() { remote } else { uri };
    uri.split_once(':')
        .map(|(_, rest)| rest)
        .unwrap_or(uri)
        .to_owned()
}

/// Shows, un-minimizes and focuses the main window.
pub fn show_main<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
    }
}

/// Builds the tray icon with its menu and keeps the status line current from `state`'s events.
pub fn build<R: Runtime>(app: &tauri::App<R>, state: &AppState) -> tauri::Result<()> {
    let status = MenuItem::with_id(
        app,
        "status",
        status_line(&state.list_accounts(), &state.list_calls()),
        false,
        None::<&str>,
    )?;
    let show = MenuItem::with_id(app, "show", "Show Tandem", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&status, &show, &quit])?;
    let mut tray = TrayIconBuilder::with_id("tray")
        .tooltip("Tandem")
        .menu(&menu);
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    let tray = tray
        .on_menu_event(|app, event| match event.id.as_ref() {
            "show" => show_main(app),
            "quit" => {
                let state = app.state::<AppState>().inner().clone();
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    state.shutdown().await;
                    app.exit(0);
                });
            }
            _ => {}
        })
        .build(app)?;
    let state = state.clone();
    let mut events = state.subscribe();
    tauri::async_runtime::spawn(async move {
        let mut shown = String::new();
        loop {
            match events.recv().await {
                Ok(
                    AppEvent::AccountsChanged { .. }
                    | AppEvent::Registration { .. }
                    | AppEvent::Call { .. },
                )
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            let line = status_line(&state.list_accounts(), &state.list_calls());
            if line != shown {
                let _ = status.set_text(&line);
                let _ = tray.set_tooltip(Some(format!("Tandem — {line}")));
                shown = line;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_app::types::{AccountSettings, Direction, Failure, FailureKind, TransportKind};

    fn account(id: &str, registration: RegistrationState) -> AccountInfo {
        let (user, domain) = id.split_once('@').unwrap_or((id, "x"));
        AccountInfo {
            id: id.into(),
            settings: AccountSettings {
                user: user.into(),
                domain: domain.into(),
                auth_user: None,
                display_name: None,
                proxy: None,
                transport: TransportKind::Udp,
                srtp: Default::default(),
                expires: 600,
                lab: false,
            },
            has_password: true,
            registration,
        }
    }

    fn call(remote: &str, phase: CallPhase) -> CallInfo {
        let mut c: CallInfo = serde_json::from_value(serde_json::json!({
            "id": "call-1", "sipCallId": "x", "accountId": "alice@lab", "remote": remote,
            "direction": "incoming", "phase": "active", "answeredAtMs": null, "held": false,
            "remoteHeld": false, "muted": false, "codec": null, "secure": false,
            "endReason": null, "mediaPath": null, "video": null
        }))
        .expect("a CallInfo");
        c.phase = phase;
        c.direction = Direction::Incoming;
        c
    }

    fn failed() -> RegistrationState {
        RegistrationState::Failed {
            failure: Failure {
                kind: FailureKind::WrongPassword,
                message: "wrong password".into(),
                detail: String::new(),
                certificate: None,
            },
        }
    }

    #[test]
    fn the_status_line_says_the_most_urgent_thing() {
        let alice = account(
            "alice@tandem.lab",
            RegistrationState::Registered { expires: 600 },
        );
        assert_eq!(status_line(&[], &[]), "No account yet");
        assert_eq!(
            status_line(std::slice::from_ref(&alice), &[]),
            "Signed in as alice@tandem.lab"
        );
        assert_eq!(
            status_line(&[account("bob@x", RegistrationState::Unregistered)], &[]),
            "Not signed in"
        );
        assert_eq!(
            status_line(&[account("bob@x", failed())], &[]),
            "Sign-in failed (1 of 1)"
        );
        let two = [alice.clone(), account("bob@x", failed())];
        assert_eq!(
            status_line(&two, &[]),
            "Signed in: 1 of 2 accounts (1 failed)"
        );
        let one_call = [call("\"Bob\" <sip:bob@tandem.lab>", CallPhase::Active)];
        assert_eq!(
            status_line(std::slice::from_ref(&alice), &one_call),
            "In a call with Bob"
        );
        let ringing = [
            call("sip:bob@tandem.lab", CallPhase::Active),
            call("<sip:carol@tandem.lab>;tag=1", CallPhase::Incoming),
        ];
        assert_eq!(
            status_line(std::slice::from_ref(&alice), &ringing),
            "carol@tandem.lab is calling"
        );
        let two_calls = [
            call("sip:bob@tandem.lab", CallPhase::Active),
            call("sip:carol@tandem.lab", CallPhase::Dialing),
            call("sip:dave@tandem.lab", CallPhase::Ended),
        ];
        assert_eq!(
            status_line(std::slice::from_ref(&alice), &two_calls),
            "2 calls in progress"
        );
    }

    #[test]
    fn minimized_start_is_asked_by_flag_or_environment() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(start_minimized(args(&["tandem", "--minimized"]), None));
        assert!(!start_minimized(args(&["tandem", "sip:bob@x"]), None));
        assert!(start_minimized(args(&["tandem"]), Some("1".into())));
        assert!(!start_minimized(args(&["tandem"]), Some("0".into())));
        assert!(!start_minimized(args(&["tandem"]), Some(String::new())));
    }
}
