//! Set-up shared by the app's integration tests: each test re-runs itself inside a private
//! kernel keyring session, opens app states against a keyring service of its own, and waits
//! for app events and call states.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use tandem_app::types::{AppEvent, CallInfo, DeviceChoice};
use tandem_app::{AppOptions, AppState, Secrets};
use tokio::sync::broadcast;

const IN_SESSION: &str = "TANDEM_APP_TEST_IN_KEYCTL_SESSION";

/// True when this process is the one to run the test body; otherwise runs `name` again inside
/// a fresh session keyring and asserts that it passed.
pub fn in_keyring_session(name: &str) -> bool {
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

/// Removes every password a test may have stored under the keyring `service`.
pub fn forget_secrets(service: &str) {
    let secrets = Secrets::os_with_service(service).unwrap();
    for user in ["alice", "bob", "carol"] {
        secrets.delete(&format!("{user}@tandem.lab")).unwrap();
        secrets.delete(&format!("lab:{user}@tandem.lab")).unwrap();
    }
}

/// Opens an app state in `dir` with passwords under the keyring `service`, the audio capture
/// device `capture`, no playback, listening on localhost.
pub fn open(dir: &std::path::Path, service: &str, capture: &str) -> AppState {
    AppState::open(AppOptions {
        data_dir: dir.to_path_buf(),
        secrets: Secrets::os_with_service(service).unwrap(),
        devices: DeviceChoice {
            capture: capture.into(),
            playback: "null".into(),
        },
        listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    })
    .unwrap()
}

/// Waits (up to `within`) for an event that `pick` accepts.
pub async fn wait_for<T>(
    within: Duration,
    rx: &mut broadcast::Receiver<AppEvent>,
    what: &str,
    mut pick: impl FnMut(&AppEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
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

/// Waits (up to `within`) until the call `id` in progress satisfies `pred`.
pub async fn wait_call(
    within: Duration,
    app: &AppState,
    id: &str,
    what: &str,
    pred: impl Fn(&CallInfo) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !app.list_calls().iter().any(|c| c.id == id && pred(c)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            app.list_calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
