//! The app state machine with real client-core user agents against the bundled lab server
//! (in-process `tandem-labserver`), passwords in the kernel keyring. Each test re-runs itself
//! inside `keyctl session -` so that it has a session keyring of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tandem_app::types::*;
use tandem_app::{AppState, Secrets};

use common::in_keyring_session;

/// A keyring service name of this test process alone: the kernel's persistent keyring is
/// shared by every session of the user, so tests running side by side must not share names.
fn service() -> String {
    format!("tandem-test-{}", std::process::id())
}

/// Removes every password a test may have stored.
fn forget_secrets() {
    common::forget_secrets(&service())
}

fn open(dir: &std::path::Path) -> AppState {
    common::open(dir, &service(), "tone:440")
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
            video: None,
        })
        .await
        .unwrap();
    assert_eq!(placed.phase, CallPhase::Dialing);
    assert_eq!(placed.remote, "sip:bob@tandem.lab");
    let incoming = common::wait_for(
        Duration::from_secs(10),
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
    let active = common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "alice's call answered",
        |e| match e {
            AppEvent::Call { call } if call.id == placed.id && call.phase == CallPhase::Active => {
                Some(call.clone())
            }
            _ => None,
        },
    )
    .await;
    let started = active.answered_at_ms.expect("timer start");
    assert!(started > 1.0e12);
    assert_eq!(app.list_calls().len(), 2);

    // Mute, hold and resume, DTMF.
    app.mute(&placed.id, true).unwrap();
    common::wait_call(Duration::from_secs(10), &app, &placed.id, "muted", |c| {
        c.muted
    })
    .await;
    app.hold(&placed.id).await.unwrap();
    common::wait_call(Duration::from_secs(10), &app, &placed.id, "held", |c| {
        c.held
    })
    .await;
    common::wait_call(
        Duration::from_secs(10),
        &app,
        &incoming.id,
        "bob sees hold",
        |c| c.remote_held,
    )
    .await;
    app.resume(&placed.id).await.unwrap();
    common::wait_call(Duration::from_secs(10), &app, &placed.id, "resumed", |c| {
        !c.held
    })
    .await;
    common::wait_call(
        Duration::from_secs(10),
        &app,
        &incoming.id,
        "bob sees resume",
        |c| !c.remote_held,
    )
    .await;
    app.send_dtmf(&placed.id, "1#").await.unwrap();
    let digit = common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "bob gets DTMF",
        |e| match e {
            AppEvent::Dtmf { call_id, digit } if *call_id == incoming.id => Some(digit.clone()),
            _ => None,
        },
    )
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
            video: None,
        })
        .await
        .unwrap();
    let incoming = common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "bob's second call",
        call_event("bob@tandem.lab", CallPhase::Incoming),
    )
    .await;
    app.decline(&incoming.id).unwrap();
    let ended = common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "carol's call ended",
        |e| match e {
            AppEvent::Call { call } if call.id == placed.id && call.phase == CallPhase::Ended => {
                Some(call.clone())
            }
            _ => None,
        },
    )
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

/// A lab server with a TLS listener on loopback whose CA the app does not know, and one user.
async fn tls_lab(
    dir: &std::path::Path,
) -> (tandem_labserver::server::LabServer, std::path::PathBuf) {
    use tandem_labserver::config::LabConfig;
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = LabConfig {
        domain: "tls.lab".into(),
        data_dir: dir.to_path_buf(),
        demo_users: false,
        ..LabConfig::default()
    };
    config.listen.udp = vec![std::net::SocketAddr::new(ip, 0)];
    config.listen.tcp = Vec::new();
    config.listen.tls = vec![std::net::SocketAddr::new(ip, 0)];
    let mut config = tandem_app::lab::ephemeral_services(config).unwrap();
    config.normalize();
    config.validate().unwrap();
    let store = tandem_labserver::store::Store::open_in(dir).await.unwrap();
    store
        .add_user_in_realm("dana", "tls.lab", config.realm(), "dana-secret")
        .await
        .unwrap();
    let ca =
        tandem_labserver::ca::LabCa::load_or_create(dir, &config.certificate_hostnames()).unwrap();
    let ca_path = ca.ca_pem_path().to_path_buf();
    let server = tandem_labserver::server::LabServer::start(config, store, ca)
        .await
        .unwrap();
    (server, ca_path)
}

async fn tls_trust() {
    let dir = tempfile::tempdir().unwrap();
    let lab_dir = dir.path().join("tls-lab");
    let (lab, ca_path) = tls_lab(&lab_dir).await;
    let tls = lab
        .local_addr(tandem_client_core::types::Transport::Tls)
        .unwrap();
    let app = open(&dir.path().join("app"));
    let account = |password: &str| NewAccount {
        settings: AccountSettings {
            user: "dana".into(),
            domain: "tls.lab".into(),
            auth_user: None,
            display_name: None,
            proxy: Some(tls.to_string()),
            transport: TransportKind::Tls,
            srtp: SrtpMode::Off,
            expires: 600,
            lab: false,
        },
        password: Some(password.into()),
    };
    // The lab's CA is unknown: the failure shows the certificate and offers its CA.
    let untrusted = app
        .test_connection(account("dana-secret"))
        .await
        .unwrap_err();
    assert_eq!(untrusted.kind, FailureKind::Tls, "{untrusted:?}");
    let problem = untrusted.certificate.clone().expect("certificate details");
    assert_eq!(problem.trouble, CertificateTrouble::Untrusted);
    assert!(
        untrusted.message.contains("trust its lab CA"),
        "{}",
        untrusted.message
    );
    let leaf = problem.certificate.expect("server certificate");
    assert!(!leaf.is_ca);
    assert_eq!(leaf.sha256.len(), 32 * 3 - 1);
    let ca = problem.ca.expect("the lab CA is offered");
    assert!(ca.is_ca && ca.self_signed, "{ca:?}");
    let ca_on_disk = std::fs::read_to_string(&ca_path).unwrap();
    assert_eq!(
        ca.pem.split_whitespace().collect::<String>(),
        ca_on_disk.split_whitespace().collect::<String>()
    );
    // A server certificate cannot be trusted as a CA.
    assert_eq!(app.trust_ca(&leaf.pem).unwrap_err().kind, FailureKind::Tls);
    assert!(app.list_trusted_cas().is_empty());
    // Trust it: the connection works, and a wrong password is now told apart.
    let trusted = app.trust_ca(&ca.pem).unwrap();
    assert_eq!(trusted.sha256, ca.sha256);
    assert!(app.test_connection(account("dana-secret")).await.unwrap() > 0);
    let wrong = app.test_connection(account("not-it")).await.unwrap_err();
    assert_eq!(wrong.kind, FailureKind::WrongPassword, "{wrong:?}");
    assert!(wrong.certificate.is_none());
    // The trust is kept: a new app over the same data folder trusts the CA too.
    app.shutdown().await;
    let again = open(&dir.path().join("app"));
    assert_eq!(again.list_trusted_cas().len(), 1);
    assert!(again.test_connection(account("dana-secret")).await.unwrap() > 0);
    again.shutdown().await;
    lab.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_lab_ca_trusted_on_request() {
    if in_keyring_session("tls_lab_ca_trusted_on_request") {
        tls_trust().await;
    }
}

/// A TLS server on loopback presenting a self-signed certificate that expired on 2020-02-01.
async fn expired_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 2, 1);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "expired.tandem.test");
    let cert = params.self_signed(&key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // The client refuses the certificate: the handshake fails, which is the point.
            let _ = acceptor.accept(tcp).await;
        }
    });
    (addr, task)
}

async fn tls_expired() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, server) = expired_server().await;
    let app = open(dir.path());
    let failure = app
        .test_connection(NewAccount {
            settings: AccountSettings {
                user: "erin".into(),
                domain: "expired.test".into(),
                auth_user: None,
                display_name: None,
                proxy: Some(addr.to_string()),
                transport: TransportKind::Tls,
                srtp: SrtpMode::Off,
                expires: 600,
                lab: false,
            },
            password: Some("x".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Tls, "{failure:?}");
    let problem = failure.certificate.clone().expect("certificate details");
    assert_eq!(problem.trouble, CertificateTrouble::Expired);
    assert!(
        problem.ca.is_none(),
        "an expired certificate is not fixed by trust"
    );
    assert!(
        failure.message.contains("expired on 2020-02-01"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("expired.tandem.test"),
        "{}",
        failure.message
    );
    app.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_expired_certificate_explained() {
    if in_keyring_session("tls_expired_certificate_explained") {
        tls_expired().await;
    }
}

/// A lab on loopback (UDP) with the media server, a static room `team` with PIN 4321, and
/// the users erin, fay and gus (password = name + "-pw").
async fn pin_lab(dir: &std::path::Path) -> tandem_labserver::server::LabServer {
    use tandem_labserver::config::LabConfig;
    use tandem_labserver::mediasrv::conference::RoomConfig;
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = LabConfig {
        domain: "pin.lab".into(),
        data_dir: dir.to_path_buf(),
        demo_users: false,
        ..LabConfig::default()
    };
    config.listen.udp = vec![std::net::SocketAddr::new(ip, 0)];
    config.listen.tcp = vec![std::net::SocketAddr::new(ip, 0)];
    config.listen.tls = Vec::new();
    config.mediasrv.enabled = true;
    config.conference.rooms = vec![RoomConfig {
        name: "team".into(),
        pin: Some("4321".into()),
        ..RoomConfig::default()
    }];
    let mut config = tandem_app::lab::ephemeral_services(config).unwrap();
    config.normalize();
    config.validate().unwrap();
    let store = tandem_labserver::store::Store::open_in(dir).await.unwrap();
    for user in ["erin", "fay", "gus"] {
        store
            .add_user_in_realm(user, "pin.lab", config.realm(), &format!("{user}-pw"))
            .await
            .unwrap();
    }
    let ca =
        tandem_labserver::ca::LabCa::load_or_create(dir, &config.certificate_hostnames()).unwrap();
    tandem_labserver::server::LabServer::start(config, store, ca)
        .await
        .unwrap()
}

async fn add_pin_lab_account(app: &AppState, user: &str, udp: std::net::SocketAddr) -> String {
    let info = app
        .add_account(NewAccount {
            settings: AccountSettings {
                user: user.into(),
                domain: "pin.lab".into(),
                auth_user: None,
                display_name: None,
                proxy: Some(udp.to_string()),
                transport: TransportKind::Udp,
                srtp: SrtpMode::Off,
                expires: 600,
                lab: false,
            },
            password: Some(format!("{user}-pw")),
        })
        .await
        .unwrap();
    app.register(&info.id).await.unwrap();
    info.id
}

async fn files_pin_typing() {
    let dir = tempfile::tempdir().unwrap();
    let lab = pin_lab(&dir.path().join("lab")).await;
    let udp = lab
        .local_addr(tandem_client_core::types::Transport::Udp)
        .unwrap();
    let app = open(&dir.path().join("app"));
    let mut rx = app.subscribe();
    let erin = add_pin_lab_account(&app, "erin", udp).await;
    let fay = add_pin_lab_account(&app, "fay", udp).await;
    // Received files go to the folder the shell names (the desktop's Downloads), where a file
    // of the same name is kept: the new one gets a suffix.
    assert_eq!(app.received_dir(), dir.path().join("app").join("received"));
    let downloads = dir.path().join("Downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::write(downloads.join("report.bin"), b"an older report").unwrap();
    app.set_received_dir(Some(downloads.clone()));
    assert_eq!(app.received_dir(), downloads);

    // A file from erin to fay: offered to fay, accepted, received whole; progress on the way.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.path().join("report.bin");
    std::fs::write(&path, &body).unwrap();
    let sent = app
        .send_file(SendFile {
            account_id: erin.clone(),
            to: "fay".into(),
            path: Some(path.display().to_string()),
            name: None,
            data_base64: None,
        })
        .await
        .unwrap();
    assert_eq!(sent.state, TransferState::Transferring);
    assert_eq!(sent.size, 300_000.0);
    let offer = common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "fay is offered the file",
        |e| match e {
            AppEvent::FileTransfer { transfer }
                if transfer.account_id == fay && transfer.state == TransferState::Offered =>
            {
                Some(transfer.clone())
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(offer.name, "report.bin");
    assert_eq!(offer.size, 300_000.0);
    assert!(offer.peer.contains("erin@pin.lab"), "{}", offer.peer);
    app.accept_file(FileArg {
        transfer_id: offer.id.clone(),
    })
    .await
    .unwrap();
    let mut done = (None, false);
    while done.0.is_none() || !done.1 {
        let t = common::wait_for(
            Duration::from_secs(10),
            &mut rx,
            "both ends of the transfer finish",
            |e| match e {
                AppEvent::FileTransfer { transfer } => Some(transfer.clone()),
                _ => None,
            },
        )
        .await;
        assert_ne!(t.state, TransferState::Failed, "{t:?}");
        if t.state == TransferState::Done && t.id == offer.id {
            done.0 = t.path.clone();
        }
        if t.state == TransferState::Done && t.id == sent.id {
            assert_eq!(t.bytes, 300_000.0);
            done.1 = true;
        }
    }
    let received = std::path::PathBuf::from(done.0.unwrap());
    assert_eq!(received, downloads.join("report (1).bin"));
    assert_eq!(std::fs::read(&received).unwrap(), body);
    assert_eq!(
        std::fs::read(downloads.join("report.bin")).unwrap(),
        b"an older report"
    );
    assert_eq!(app.list_transfers().len(), 2);

    // A file fay declines: 603 to erin, shown as declined on both sides.
    let again = app
        .send_file(SendFile {
            account_id: erin.clone(),
            to: "fay".into(),
            path: None,
            name: Some("../../sneaky name.txt".into()),
            data_base64: Some("aGVsbG8=".into()),
        })
        .await
        .unwrap();
    assert_eq!(again.name, "sneaky name.txt");
    let offer = common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "fay is offered the second file",
        |e| match e {
            AppEvent::FileTransfer { transfer }
                if transfer.account_id == fay && transfer.state == TransferState::Offered =>
            {
                Some(transfer.clone())
            }
            _ => None,
        },
    )
    .await;
    app.decline_file(FileArg {
        transfer_id: offer.id.clone(),
    })
    .unwrap();
    common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "erin sees the file declined",
        |e| match e {
            AppEvent::FileTransfer { transfer }
                if transfer.id == again.id && transfer.state == TransferState::Declined =>
            {
                Some(())
            }
            _ => None,
        },
    )
    .await;
    assert!(
        app.accept_file(FileArg {
            transfer_id: offer.id
        })
        .await
        .is_err()
    );

    // Conference with a PIN: fay calls the room without one and waits at the PIN prompt;
    // erin joins with the PIN and is admitted: the roster shows her, not fay.
    let fay_call = app
        .call(CallRequest {
            account_id: fay.clone(),
            target: "conf-team".into(),
            video: None,
        })
        .await
        .unwrap();
    common::wait_call(
        Duration::from_secs(10),
        &app,
        &fay_call.id,
        "the room answers fay",
        |c| c.phase == CallPhase::Active,
    )
    .await;
    assert!(
        app.join_conference(JoinConference {
            account_id: erin.clone(),
            room: "bad room!".into(),
            pin: None,
        })
        .await
        .is_err()
    );
    let joined = app
        .join_conference(JoinConference {
            account_id: erin.clone(),
            room: "team".into(),
            pin: Some("4321".into()),
        })
        .await
        .unwrap();
    assert!(
        joined.remote.contains("conf-team@pin.lab"),
        "{}",
        joined.remote
    );
    let roster = common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "erin admitted to the room",
        |e| match e {
            AppEvent::Roster {
                call_id,
                participants,
            } if *call_id == joined.id && participants.iter().any(|p| p.uri.contains("erin")) => {
                Some(participants.clone())
            }
            _ => None,
        },
    )
    .await;
    assert!(
        !roster.iter().any(|p| p.uri.contains("fay")),
        "fay entered no PIN yet is in the room: {roster:?}"
    );
    app.hangup(&joined.id).unwrap();
    app.hangup(&fay_call.id).unwrap();

    // Typing: gus (a plain client-core phone) says he types with a 1 s refresh interval and
    // then goes quiet: erin sees the indication lapse after about a second.
    let (ua, _events) = tandem_client_core::UserAgent::new(tandem_client_core::UaConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..tandem_client_core::UaConfig::default()
    })
    .await
    .unwrap();
    let mut gus = tandem_client_core::Account::new("gus", "pin.lab");
    gus.password = Some("gus-pw".into());
    gus.proxy = Some(tandem_client_core::parse_proxy(&udp.to_string()).unwrap());
    let _reg = ua.register(&gus).await.unwrap();
    ua.send_composing(
        &gus,
        gus.target_uri("erin").unwrap(),
        tandem_client_core::types::simple::iscomposing::ComposingState::Active,
        Some(1),
    )
    .await
    .unwrap();
    common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "erin sees gus typing",
        |e| match e {
            AppEvent::Composing {
                account_id,
                peer,
                active: true,
            } if *account_id == erin && peer.contains("gus") => Some(()),
            _ => None,
        },
    )
    .await;
    let typing_seen = std::time::Instant::now();
    common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "gus's typing lapses",
        |e| match e {
            AppEvent::Composing {
                account_id,
                peer,
                active: false,
            } if *account_id == erin && peer.contains("gus") => Some(()),
            _ => None,
        },
    )
    .await;
    let lapsed = typing_seen.elapsed();
    assert!(
        lapsed >= Duration::from_millis(800) && lapsed < Duration::from_secs(5),
        "{lapsed:?}"
    );

    // Session-mode chat (MSRP) opened by gus: erin's app takes it, shows his messages in the
    // conversation, and her reply goes back through the session.
    let mut chat = tandem_client_core::msrp::start_chat(
        &ua,
        &gus,
        gus.target_uri("erin").unwrap(),
        tandem_client_core::msrp::MsrpOptions {
            save_dir: dir.path().to_path_buf(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = chat.next_event().await {
            if e == tandem_client_core::msrp::MsrpEvent::Connected {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(connected);
    chat.send_text("hello erin, over MSRP").unwrap();
    let incoming = common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "erin gets gus's session message",
        |e| match e {
            AppEvent::Message { message }
                if message.account_id == erin && message.text == "hello erin, over MSRP" =>
            {
                Some(message.clone())
            }
            _ => None,
        },
    )
    .await;
    let reply = app
        .send_message(SendMessage {
            account_id: erin.clone(),
            to: incoming.peer.clone(),
            text: "hi gus, same session".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.status, MessageStatus::Sent);
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = chat.next_event().await {
            if let tandem_client_core::msrp::MsrpEvent::ChatMessage { text, .. } = e {
                return Some(text);
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(got.as_deref(), Some("hi gus, same session"));
    chat.close();

    // A message too long for page mode (RFC 3428: 1300 bytes) opens a chat session of ours:
    // erin to fay. fay's app takes it; her short reply goes back through the same session.
    let fay_uri = "sip:fay@pin.lab";
    let erin_uri = "sip:erin@pin.lab";
    assert!(!app.in_chat_session(&erin, fay_uri));
    let long: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let sent = app
        .send_message(SendMessage {
            account_id: erin.clone(),
            to: "fay".into(),
            text: long.clone(),
        })
        .await
        .unwrap();
    assert_eq!(sent.status, MessageStatus::Sent, "{sent:?}");
    assert!(app.in_chat_session(&erin, fay_uri));
    let at_fay = common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "fay gets erin's long message",
        |e| match e {
            AppEvent::Message { message }
                if message.account_id == fay && message.direction == Direction::Incoming =>
            {
                Some(message.clone())
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(at_fay.text, long);
    assert!(at_fay.peer.contains("erin@pin.lab"), "{}", at_fay.peer);
    assert!(app.in_chat_session(&fay, erin_uri));
    let back = app
        .send_message(SendMessage {
            account_id: fay.clone(),
            to: at_fay.peer.clone(),
            text: "got it all".into(),
        })
        .await
        .unwrap();
    assert_eq!(back.status, MessageStatus::Sent);
    common::wait_for(
        Duration::from_secs(10),
        &mut rx,
        "erin gets fay's reply",
        |e| match e {
            AppEvent::Message { message }
                if message.account_id == erin && message.text == "got it all" =>
            {
                Some(())
            }
            _ => None,
        },
    )
    .await;

    ua.shutdown().await;
    app.shutdown().await;
    lab.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_conference_pin_typing_lapse_and_session_chat() {
    if in_keyring_session("files_conference_pin_typing_lapse_and_session_chat") {
        files_pin_typing().await;
    }
}
