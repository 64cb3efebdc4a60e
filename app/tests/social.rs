//! Chat and presence of the app state against the bundled lab server (in-process
//! `tandem-labserver`, its XCAP server for buddy lists and presence rules), with real
//! client-core user agents for alice and bob. Like `app_state.rs`, each test re-runs itself
//! inside `keyctl session -` so that it has a session keyring of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use tandem_app::AppState;
use tandem_app::types::*;
use tokio::sync::broadcast;

use common::in_keyring_session;

const ALICE: &str = "alice@tandem.lab";
const BOB: &str = "bob@tandem.lab";

/// A keyring service name of this test process alone: the kernel's persistent keyring is
/// shared by every session of the user, so tests running side by side must not share names.
fn service() -> String {
    format!("tandem-social-test-{}", std::process::id())
}

/// Removes every password a test may have stored.
fn forget_secrets() {
    common::forget_secrets(&service())
}

fn open(dir: &std::path::Path) -> AppState {
    common::open(dir, &service(), "null")
}

/// Waits (up to 15 s) for an event that `pick` accepts.
async fn wait_for<T>(
    rx: &mut broadcast::Receiver<AppEvent>,
    what: &str,
    mut pick: impl FnMut(&AppEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        match event {
            Ok(e) => {
                if let Some(v) = pick(&e) {
                    return v;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

async fn chat_and_presence() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    let mut rx = app.subscribe();
    app.start_bundled_lab().await.unwrap();
    app.register(BOB).await.unwrap();
    // The bundled lab runs voicemail: alice's message summary arrives (an empty mailbox).
    let vm = wait_for(&mut rx, "alice's voicemail summary", |e| match e {
        AppEvent::Voicemail { voicemail } if voicemail.account_id == ALICE => {
            Some(voicemail.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!((vm.new_messages, vm.old_messages), (0, 0));
    assert!(
        vm.voicemail_uri.contains("tandem.lab"),
        "{}",
        vm.voicemail_uri
    );
    assert!(app.list_voicemail().iter().any(|v| v.account_id == ALICE));

    // alice writes to bob: bob's copy arrives unread, alice's is sent.
    let sent = app
        .send_message(SendMessage {
            account_id: ALICE.into(),
            to: "bob".into(),
            text: "Hello Bob".into(),
        })
        .await
        .unwrap();
    assert_eq!(sent.peer, "sip:bob@tandem.lab");
    assert!(
        matches!(
            sent.status,
            MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Displayed
        ),
        "{:?}",
        sent.status
    );
    let received = wait_for(&mut rx, "bob receives the message", |e| match e {
        AppEvent::Message { message }
            if message.account_id == BOB && message.direction == Direction::Incoming =>
        {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(received.text, "Hello Bob");
    assert_eq!(received.status, MessageStatus::Unread);
    assert!(
        received.peer.contains("alice@tandem.lab"),
        "{}",
        received.peer
    );

    // bob reads it: alice's message becomes displayed (IMDN display notification).
    let marked = app
        .mark_read(PeerArg {
            account_id: BOB.into(),
            peer: received.peer.clone(),
            active: false,
        })
        .await
        .unwrap();
    assert_eq!(marked, 1);
    wait_for(&mut rx, "alice's message is read", |e| match e {
        AppEvent::Message { message }
            if message.id == sent.id && message.status == MessageStatus::Displayed =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    // Typing indicator.
    app.composing(PeerArg {
        account_id: BOB.into(),
        peer: "alice".into(),
        active: true,
    })
    .await
    .unwrap();
    wait_for(&mut rx, "alice sees bob typing", |e| match e {
        AppEvent::Composing {
            account_id,
            active: true,
            ..
        } if account_id == ALICE => Some(()),
        _ => None,
    })
    .await;
    // Both copies are kept (and saved in messages.json).
    assert_eq!(app.list_messages().len(), 2);
    assert!(dir.path().join("messages.json").is_file());

    // alice adds bob: pending until bob allows her; bob sees the request among his watchers.
    let contact = app
        .add_contact(ContactArg {
            account_id: ALICE.into(),
            uri: "bob".into(),
            name: Some("Bob".into()),
        })
        .await
        .unwrap();
    assert_eq!(contact.uri, "sip:bob@tandem.lab");
    // Both happen at about the same time, in either order: poll the state.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let watcher = loop {
        let pending = app
            .list_contacts()
            .iter()
            .any(|c| c.account_id == ALICE && c.watch == WatchState::Pending);
        let asking = app
            .list_watchers()
            .into_iter()
            .find(|w| w.account_id == BOB && w.uri.contains("alice@tandem.lab"));
        match asking {
            Some(w) if pending && w.status == "pending" => break w,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: contacts {:?}, watchers {:?}",
            app.list_contacts(),
            app.list_watchers()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    app.decide_watcher(
        WatcherArg {
            account_id: BOB.into(),
            uri: watcher.uri.clone(),
        },
        true,
    )
    .await
    .unwrap();
    wait_for(&mut rx, "alice sees bob available", |e| match e {
        AppEvent::Contact { contact }
            if contact.watch == WatchState::Active
                && contact.status == PresenceStatus::Available =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    // bob changes his status: alice sees it with the note.
    app.set_presence(MyPresence {
        account_id: BOB.into(),
        status: PresenceStatus::Busy,
        note: Some("in a meeting".into()),
    })
    .await
    .unwrap();
    let busy = wait_for(&mut rx, "alice sees bob busy", |e| match e {
        AppEvent::Contact { contact } if contact.status == PresenceStatus::Busy => {
            Some(contact.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(busy.note.as_deref(), Some("in a meeting"));
    assert_eq!(app.list_contacts().len(), 1);
    app.remove_contact(ContactArg {
        account_id: ALICE.into(),
        uri: "sip:bob@tandem.lab".into(),
        name: None,
    })
    .await
    .unwrap();
    assert!(app.list_contacts().is_empty());
    // Bad input is explained, not a crash.
    let bad = app
        .send_message(SendMessage {
            account_id: ALICE.into(),
            to: "bob".into(),
            text: "   ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.kind, FailureKind::Settings);

    // A conference call (the lab's media server): alice and bob dial conf-lab; alice's call
    // shows the roster with both of them.
    let a = app
        .call(CallRequest {
            account_id: ALICE.into(),
            target: "conf-lab".into(),
            video: None,
        })
        .await
        .unwrap();
    let b = app
        .call(CallRequest {
            account_id: BOB.into(),
            target: "conf-lab".into(),
            video: None,
        })
        .await
        .unwrap();
    let roster = wait_for(
        &mut rx,
        "alice sees alice and bob in the room",
        |e| match e {
            AppEvent::Roster {
                call_id,
                participants,
            } if *call_id == a.id && participants.len() == 2 => Some(participants.clone()),
            _ => None,
        },
    )
    .await;
    assert!(roster.iter().any(|p| p.uri.contains("alice")), "{roster:?}");
    assert!(roster.iter().any(|p| p.uri.contains("bob")), "{roster:?}");
    app.hangup(&b.id).unwrap();
    wait_for(&mut rx, "bob left the room", |e| match e {
        AppEvent::Roster {
            call_id,
            participants,
        } if *call_id == a.id && participants.len() == 1 => Some(()),
        _ => None,
    })
    .await;
    app.hangup(&a.id).unwrap();
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_chat_read_marks_typing_presence_watchers() {
    if in_keyring_session("lab_chat_read_marks_typing_presence_watchers") {
        chat_and_presence().await;
        forget_secrets();
    }
}
