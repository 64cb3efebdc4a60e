//! The app state machine with real client-core user agents against the bundled lab server
//! (in-process `tandem-labserver`), passwords in the kernel keyring. Each test re-runs itself
//! inside `keyctl session -` so that it has a session keyring of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use tandem_app::types::*;
use tandem_app::{AppOptions, AppState, Secrets};
use tokio::sync::broadcast;

const IN_SESSION: &str = "TANDEM_APP_TEST_IN_KEYCTL_SESSION";

/// True when this process is the one to run the test body; otherwise runs `name` again inside
/// a fresh session keyring and asserts that it passed.
fn in_keyring_session(name: &str) -> bool {
    if std::env::var_os(IN_SESSION).is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("keyctl")
        .args(["session", "-"])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_SESSION, "1")
        .status()
        .expect("keyctl (package keyutils) is needed to run the keyring tests");
    assert!(status.success(), "{name} failed inside keyctl session");
    false
}

/// A keyring service name of this test process alone: the kernel's persistent keyring is
/// shared by every session of the user, so tests running side by side must not share names.
fn service() -> String {
    format!("tandem-test-{}", std::process::id())
}

/// Removes every password a test may have stored.
fn forget_secrets() {
    let secrets = Secrets::os_with_service(&service()).unwrap();
    for user in ["alice", "bob", "carol"] {
        secrets.delete(&format!("{user}@tandem.lab")).unwrap();
        secrets.delete(&format!("lab:{user}@tandem.lab")).unwrap();
    }
}

fn open(dir: &std::path::Path) -> AppState {
    AppState::open(AppOptions {
        data_dir: dir.to_path_buf(),
        secrets: Secrets::os_with_service(&service()).unwrap(),
        devices: DeviceChoice {
            capture: "tone:440".into(),
            playback: "null".into(),
        },
        listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    })
    .unwrap()
}

/// Waits (up to 10 s) for an event that `pick` accepts.
async fn wait_for<T>(
    rx: &mut broadcast::Receiver<AppEvent>,
    what: &str,
    mut pick: impl FnMut(&AppEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap();
        if let Some(v) = pick(&event) {
            return v;
        }
    }
}

/// Waits (up to 10 s) until the call `id` in progress satisfies `pred`.
async fn wait_call(app: &AppState, id: &str, what: &str, pred: impl Fn(&CallInfo) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !app.list_calls().iter().any(|c| c.id == id && pred(c)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn call_event(account: &str, phase: CallPhase) -> impl FnMut(&AppEvent) -> Option<CallInfo> {
    let account = account.to_owned();
    move |e| match e {
        AppEvent::Call { call } if call.account_id == account && call.phase == phase => {
            Some(call.clone())
        }
        _ => None,
    }
}

async fn call_flow() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    let mut rx = app.subscribe();
    let lab = app.start_bundled_lab().await.unwrap();
    assert_eq!(lab.signed_in_as, "alice@tandem.lab");
    assert_eq!(lab.users.len(), 3);
    let accounts = app.list_accounts();
    assert_eq!(accounts.len(), 3);
    let alice = accounts
        .iter()
        .find(|a| a.id == "alice@tandem.lab")
        .unwrap();
    assert!(alice.has_password);
    assert!(matches!(alice.registration, RegistrationState::Registered { expires } if expires > 0));
    // Passwords never reach the config file.
    let saved = std::fs::read_to_string(dir.path().join("accounts.json")).unwrap();
    for user in &lab.users {
        assert!(!saved.contains(&user.password), "password in accounts.json");
    }
    app.register("bob@tandem.lab").await.unwrap();

    // alice calls bob; bob sees it ring and answers.
    let placed = app
        .call(CallRequest {
            account_id: "alice@tandem.lab".into(),
            target: "bob".into(),
        })
        .await
        .unwrap();
    assert_eq!(placed.phase, CallPhase::Dialing);
    assert_eq!(placed.remote, "sip:bob@tandem.lab");
    let incoming = wait_for(
        &mut rx,
        "bob's incoming call",
        call_event("bob@tandem.lab", CallPhase::Incoming),
    )
    .await;
    assert!(
        incoming.remote.contains("alice@tandem.lab"),
        "{}",
        incoming.remote
    );
    app.answer(&incoming.id).await.unwrap();
    let active = wait_for(&mut rx, "alice's call answered", |e| match e {
        AppEvent::Call { call } if call.id == placed.id && call.phase == CallPhase::Active => {
            Some(call.clone())
        }
        _ => None,
    })
    .await;
    let started = active.answered_at_ms.expect("timer start");
    assert!(started > 1.0e12);
    assert_eq!(app.list_calls().len(), 2);

    // Mute, hold and resume, DTMF.
    app.mute(&placed.id, true).unwrap();
    wait_call(&app, &placed.id, "muted", |c| c.muted).await;
    app.hold(&placed.id).await.unwrap();
    wait_call(&app, &placed.id, "held", |c| c.held).await;
    wait_call(&app, &incoming.id, "bob sees hold", |c| c.remote_held).await;
    app.resume(&placed.id).await.unwrap();
    wait_call(&app, &placed.id, "resumed", |c| !c.held).await;
    wait_call(&app, &incoming.id, "bob sees resume", |c| !c.remote_held).await;
    app.send_dtmf(&placed.id, "1#").await.unwrap();
    let digit = wait_for(&mut rx, "bob gets DTMF", |e| match e {
        AppEvent::Dtmf { call_id, digit } if *call_id == incoming.id => Some(digit.clone()),
        _ => None,
    })
    .await;
    assert_eq!(digit, "1");
    assert!(app.send_dtmf(&placed.id, "x").await.is_err());

    // alice hangs up; both calls end and land in the history.
    app.hangup(&placed.id).unwrap();
    // Both ends finish, in either order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !app.list_calls().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "calls did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let history = app.history();
    assert_eq!(history.len(), 2);
    assert!(
        history
            .iter()
            .all(|h| h.outcome == HistoryOutcome::Answered)
    );

    // carol calls bob, bob declines.
    app.register("carol@tandem.lab").await.unwrap();
    let placed = app
        .call(CallRequest {
            account_id: "carol@tandem.lab".into(),
            target: "sip:bob@tandem.lab".into(),
        })
        .await
        .unwrap();
    let incoming = wait_for(
        &mut rx,
        "bob's second call",
        call_event("bob@tandem.lab", CallPhase::Incoming),
    )
    .await;
    app.decline(&incoming.id).unwrap();
    let ended = wait_for(&mut rx, "carol's call ended", |e| match e {
        AppEvent::Call { call } if call.id == placed.id && call.phase == CallPhase::Ended => {
            Some(call.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(
        ended.end_reason.as_deref(),
        Some("The other party declined the call.")
    );
    let history = app.history();
    assert_eq!(history[0].outcome, HistoryOutcome::Failed);
    assert!(
        history
            .iter()
            .any(|h| h.outcome == HistoryOutcome::Declined)
    );

    app.shutdown().await;
    drop(app);

    // Accounts and history survive a restart; the passwords come back from the keyring.
    let again = open(dir.path());
    let accounts = again.list_accounts();
    assert_eq!(accounts.len(), 3);
    assert!(accounts.iter().all(|a| a.has_password));
    assert_eq!(again.history().len(), 4);
    again.remove_account("carol@tandem.lab").await.unwrap();
    assert_eq!(again.list_accounts().len(), 2);
    assert_eq!(
        Secrets::os_with_service(&service())
            .unwrap()
            .get("carol@tandem.lab")
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_call_hold_dtmf_decline_history() {
    if in_keyring_session("lab_call_hold_dtmf_decline_history") {
        call_flow().await;
        forget_secrets();
    }
}

async fn failures() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    let lab = app.start_bundled_lab().await.unwrap();
    let settings = AccountSettings {
        user: "alice".into(),
        domain: lab.domain.clone(),
        auth_user: None,
        display_name: None,
        proxy: Some(lab.udp.clone()),
        transport: TransportKind::Udp,
        srtp: SrtpMode::Off,
        expires: 600,
        lab: false,
    };
    let good = lab.users[0].password.clone();
    let ok = app
        .test_connection(NewAccount {
            settings: settings.clone(),
            password: Some(good),
        })
        .await
        .unwrap();
    assert!(ok > 0);
    let wrong = app
        .test_connection(NewAccount {
            settings: settings.clone(),
            password: Some("not-the-password".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.kind, FailureKind::WrongPassword, "{wrong:?}");

    // Nothing listens on this TCP port: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = app
        .test_connection(NewAccount {
            settings: AccountSettings {
                proxy: Some(format!("127.0.0.1:{port}")),
                transport: TransportKind::Tcp,
                ..settings.clone()
            },
            password: Some("x".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(
        unreachable.kind,
        FailureKind::Unreachable,
        "{unreachable:?}"
    );
    assert!(
        unreachable.message.contains(&port.to_string()),
        "{}",
        unreachable.message
    );

    let bad = app
        .add_account(NewAccount {
            settings: AccountSettings {
                user: String::new(),
                ..settings
            },
            password: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.kind, FailureKind::Settings);
    // The app keeps working after failures.
    assert!(matches!(
        app.list_accounts()
            .iter()
            .find(|a| a.id == "alice@tandem.lab")
            .unwrap()
            .registration,
        RegistrationState::Registered { .. }
    ));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_explained() {
    if in_keyring_session("failures_are_explained") {
        failures().await;
        forget_secrets();
    }
}
