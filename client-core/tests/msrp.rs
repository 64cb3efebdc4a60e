//! MSRP sessions between two user agents over loopback: chat both ways and file transfer
//! directly (TCP, offerer connects to the passive answerer), a resumed file (a part already on
//! disk), and chat and file through the lab's MSRP relay in-process (TCP for one side, TLS for
//! the other, AUTH with the accounts' passwords).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tandem_client_core::msrp::{self, MsrpEvent, MsrpOffer, MsrpOptions, MsrpSession};
use tandem_client_core::types::{TxConfig, Uri};
use tandem_client_core::{Account, IncomingCall, UaConfig, UaEvent, UaEvents, UserAgent};
use tandem_labserver::msrp_relay::MsrpRelay;
use tokio::time::timeout;

#[path = "../../labserver/tests/lab_fixture/mod.rs"]
mod lab_fixture;
mod peer;

use lab_fixture::{DOMAIN, Parts};

const STEP: Duration = Duration::from_secs(20);

struct Phone {
    ua: UserAgent,
    events: UaEvents,
    account: Account,
}

impl Phone {
    async fn new(user: &str, seed: u64) -> Phone {
        // Each phone's transactions get their own seed as well.
        let config = UaConfig {
            tx: TxConfig {
                seed,
                ..peer::fast_tx()
            },
            ..peer::loopback_ua_config(seed)
        };
        let (ua, events) = UserAgent::new(config).await.unwrap();
        let mut account = Account::new(user, DOMAIN);
        account.password = Some(format!("{user}pw"));
        Phone {
            ua,
            events,
            account,
        }
    }

    fn uri(&self) -> Uri {
        self.ua.contact_uri(Some(&self.account.user))
    }

    async fn incoming(&mut self) -> IncomingCall {
        loop {
            let ev = timeout(STEP, self.events.next())
                .await
                .expect("no incoming call")
                .expect("UA events ended");
            if let UaEvent::IncomingCall(c) = ev {
                return c;
            }
        }
    }
}

/// Waits for an event matching `pred`; returns it and what came before.
async fn wait_for(
    s: &mut MsrpSession,
    pred: impl Fn(&MsrpEvent) -> bool,
) -> (MsrpEvent, Vec<MsrpEvent>) {
    let mut seen = Vec::new();
    loop {
        let ev = timeout(STEP, s.next_event())
            .await
            .unwrap_or_else(|_| panic!("timed out; events so far: {seen:?}"))
            .unwrap_or_else(|| panic!("events ended; events so far: {seen:?}"));
        if pred(&ev) {
            return (ev, seen);
        }
        assert!(
            !matches!(ev, MsrpEvent::Failed { .. }),
            "unexpected failure: {ev:?} after {seen:?}"
        );
        seen.push(ev);
    }
}

fn chat_text(ev: &MsrpEvent) -> Option<&str> {
    match ev {
        MsrpEvent::ChatMessage { text, .. } => Some(text),
        _ => None,
    }
}

fn random_file(dir: &Path, name: &str, size: usize) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// A file transfer's files: a temporary directory holding a random file, and where bob saves.
struct FileCase {
    dir: tempfile::TempDir,
    /// `<dir>/save`, not created.
    save: std::path::PathBuf,
    path: std::path::PathBuf,
    data: Vec<u8>,
}

impl FileCase {
    /// A random `size`-byte file `name` in a new temporary directory.
    fn new(name: &str, size: usize) -> FileCase {
        let dir = tempfile::tempdir().unwrap();
        let save = dir.path().join("save");
        let (path, data) = random_file(dir.path(), name, size);
        FileCase {
            dir,
            save,
            path,
            data,
        }
    }
}

/// Options sending files in `chunk`-byte chunks.
fn chunked(chunk: usize) -> MsrpOptions {
    MsrpOptions {
        chunk_size: chunk,
        ..MsrpOptions::default()
    }
}

/// Options saving received files into `save`.
fn saving_into(save: &Path) -> MsrpOptions {
    MsrpOptions {
        save_dir: save.to_path_buf(),
        ..MsrpOptions::default()
    }
}

async fn chat_both_ways(alice: &Phone, bob: &mut Phone, a_opts: MsrpOptions, b_opts: MsrpOptions) {
    let mut out = msrp::start_chat(&alice.ua, &alice.account, bob.uri(), a_opts)
        .await
        .unwrap();
    let inc = bob.incoming().await;
    assert_eq!(msrp::offer_of(&inc), Some(MsrpOffer::Chat));
    let mut inn = msrp::accept(&bob.ua, inc, &bob.account, b_opts)
        .await
        .unwrap();
    wait_for(&mut out, |e| *e == MsrpEvent::Connected).await;
    out.send_text("hello bob").unwrap();
    let long = "x".repeat(300_000);
    out.send_text(&long).unwrap();
    let (ev, _) = wait_for(&mut inn, |e| chat_text(e).is_some()).await;
    assert_eq!(chat_text(&ev), Some("hello bob"));
    let (ev, _) = wait_for(&mut inn, |e| chat_text(e).is_some()).await;
    assert_eq!(
        chat_text(&ev).map(str::len),
        Some(300_000),
        "a chunked message"
    );
    inn.send_text("hi alice").unwrap();
    let (ev, _) = wait_for(&mut out, |e| chat_text(e).is_some()).await;
    assert_eq!(chat_text(&ev), Some("hi alice"));
    match ev {
        MsrpEvent::ChatMessage {
            from, content_type, ..
        } => {
            assert!(from.contains("bob"), "from {from}");
            assert_eq!(content_type, "text/plain");
        }
        _ => unreachable!(),
    }
    out.close();
    wait_for(&mut out, |e| *e == MsrpEvent::Closed).await;
    wait_for(&mut inn, |e| *e == MsrpEvent::Closed).await;
}

/// Sends `path` from alice to bob; returns the received file's path and both SHA-256 values.
async fn transfer(
    alice: &Phone,
    bob: &mut Phone,
    path: &Path,
    a_opts: MsrpOptions,
    b_opts: MsrpOptions,
    expect_resume: Option<u64>,
) -> std::path::PathBuf {
    let info = msrp::file_info(path).await.unwrap();
    let mut out = msrp::send_file(&alice.ua, &alice.account, bob.uri(), info.clone(), a_opts)
        .await
        .unwrap();
    let inc = bob.incoming().await;
    match msrp::offer_of(&inc) {
        Some(MsrpOffer::File { selector, .. }) => {
            assert_eq!(selector.size, Some(info.size));
            assert_eq!(selector.name.as_deref(), Some(info.name.as_str()));
            assert_eq!(selector.sha1(), Some(&info.sha1[..]));
        }
        other => panic!("not a file offer: {other:?}"),
    }
    let mut inn = msrp::accept(&bob.ua, inc, &bob.account, b_opts)
        .await
        .unwrap();
    let (ev, seen) = wait_for(&mut out, |e| matches!(e, MsrpEvent::FileSent { .. })).await;
    assert_eq!(
        ev,
        MsrpEvent::FileSent {
            size: info.size,
            sha256: info.sha256.clone()
        }
    );
    let resumed = seen.iter().find_map(|e| match e {
        MsrpEvent::Resumed { from_byte } => Some(*from_byte),
        _ => None,
    });
    assert_eq!(resumed, expect_resume, "sender events {seen:?}");
    let progress: Vec<u64> = seen
        .iter()
        .filter_map(|e| match e {
            MsrpEvent::Progress { bytes, total, .. } => {
                assert_eq!(*total, info.size);
                Some(*bytes)
            }
            _ => None,
        })
        .collect();
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&info.size));
    let (ev, seen) = wait_for(&mut inn, |e| matches!(e, MsrpEvent::FileReceived { .. })).await;
    let received = match ev {
        MsrpEvent::FileReceived { path, size, sha256 } => {
            assert_eq!(size, info.size);
            assert_eq!(sha256, info.sha256);
            path
        }
        _ => unreachable!(),
    };
    let resumed = seen.iter().find_map(|e| match e {
        MsrpEvent::Resumed { from_byte } => Some(*from_byte),
        _ => None,
    });
    assert_eq!(resumed, expect_resume, "receiver events {seen:?}");
    wait_for(&mut out, |e| *e == MsrpEvent::Closed).await;
    wait_for(&mut inn, |e| *e == MsrpEvent::Closed).await;
    received
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[tokio::test]
async fn chat_direct_both_ways() {
    let alice = Phone::new("alice", 1).await;
    let mut bob = Phone::new("bob", 2).await;
    chat_both_ways(
        &alice,
        &mut bob,
        MsrpOptions::default(),
        MsrpOptions::default(),
    )
    .await;
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test]
async fn file_direct_then_resumed_from_a_part() {
    let FileCase {
        dir,
        save,
        path,
        data,
    } = FileCase::new("report.bin", 1_500_000);
    let alice = Phone::new("alice", 3).await;
    let mut bob = Phone::new("bob", 4).await;
    let opts = chunked(64 * 1024);
    let bob_opts = saving_into(&save);
    let got = transfer(
        &alice,
        &mut bob,
        &path,
        opts.clone(),
        bob_opts.clone(),
        None,
    )
    .await;
    assert_eq!(got, save.join("report.bin"));
    assert_eq!(std::fs::read(&got).unwrap(), data);
    assert!(!save.join("report.bin.part").exists());

    // Half of another file is already here (an interrupted earlier transfer): only the rest is sent.
    let (path2, data2) = random_file(dir.path(), "video.bin", 2_000_000);
    let info = msrp::file_info(&path2).await.unwrap();
    let kept = 700_001usize;
    std::fs::write(save.join("video.bin.part"), &data2[..kept]).unwrap();
    std::fs::write(
        save.join("video.bin.part.meta"),
        format!(
            "tandem-msrp-part 1\nname=video.bin\nsize={}\nsha1={}\n",
            info.size,
            hex::encode(info.sha1)
        ),
    )
    .unwrap();
    let got = transfer(&alice, &mut bob, &path2, opts, bob_opts, Some(kept as u64)).await;
    let bytes = std::fs::read(&got).unwrap();
    assert_eq!(sha256_hex(&bytes), sha256_hex(&data2));
    assert!(!save.join("video.bin.part.meta").exists());
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

#[tokio::test]
async fn a_part_of_another_file_is_not_resumed() {
    let FileCase {
        dir: _dir,
        save,
        path,
        data,
    } = FileCase::new("a.bin", 300_000);
    std::fs::create_dir_all(&save).unwrap();
    let alice = Phone::new("alice", 5).await;
    let mut bob = Phone::new("bob", 6).await;
    // Same name and size, other contents: the part must not be trusted.
    std::fs::write(save.join("a.bin.part"), vec![0u8; 100_000]).unwrap();
    std::fs::write(
        save.join("a.bin.part.meta"),
        format!(
            "tandem-msrp-part 1\nname=a.bin\nsize=300000\nsha1={}\n",
            "00".repeat(20)
        ),
    )
    .unwrap();
    let bob_opts = saving_into(&save);
    let got = transfer(
        &alice,
        &mut bob,
        &path,
        MsrpOptions::default(),
        bob_opts,
        None,
    )
    .await;
    assert_eq!(std::fs::read(got).unwrap(), data);
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}

/// The lab relay in-process, with alice and bob (`<name>pw`).
struct Relay {
    relay: MsrpRelay,
    tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Relay {
    async fn start() -> Relay {
        let parts = Parts::new(
            &[("alice", "alicepw"), ("bob", "bobpw")],
            false,
            [9; 32],
            |_| {},
        )
        .await;
        let relay = MsrpRelay::start(&parts.config, &parts.store, &parts.ca, parts.authn)
            .await
            .unwrap()
            .expect("the relay is enabled by default");
        Relay {
            relay,
            tls: parts.ca.client_config().unwrap(),
            _dir: parts.dir,
        }
    }
}

#[tokio::test]
async fn chat_and_file_through_the_relay_tcp_and_tls() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Phone::new("alice", 7).await;
    let mut bob = Phone::new("bob", 8).await;
    alice.account.msrp_relay = Some(relay.relay.relay_uri(false));
    bob.account.msrp_relay = Some(relay.relay.relay_uri(true));
    let opts = MsrpOptions {
        tls: Some(relay.tls.clone()),
        save_dir: dir.path().join("save"),
        ..MsrpOptions::default()
    };
    chat_both_ways(&alice, &mut bob, opts.clone(), opts.clone()).await;
    let (path, data) = random_file(dir.path(), "through-relay.bin", 3_000_000);
    let got = transfer(&alice, &mut bob, &path, opts.clone(), opts, None).await;
    assert_eq!(sha256_hex(&std::fs::read(got).unwrap()), sha256_hex(&data));
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
    relay.relay.shutdown().await;
}

#[tokio::test]
async fn wrong_relay_password_fails() {
    let relay = Relay::start().await;
    let mut alice = Phone::new("alice", 9).await;
    let bob = Phone::new("bob", 10).await;
    alice.account.msrp_relay = Some(relay.relay.relay_uri(false));
    alice.account.password = Some("wrong".into());
    let mut out = msrp::start_chat(&alice.ua, &alice.account, bob.uri(), MsrpOptions::default())
        .await
        .unwrap();
    let ev = timeout(STEP, out.next_event()).await.unwrap().unwrap();
    match ev {
        MsrpEvent::Failed { reason } => assert!(reason.contains("authentication"), "{reason}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        timeout(STEP, out.next_event()).await.unwrap(),
        Some(MsrpEvent::Closed)
    );
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
    relay.relay.shutdown().await;
}

#[tokio::test]
async fn sender_offers_again_after_the_receiver_hung_up_and_resumes() {
    let FileCase {
        dir: _dir,
        save,
        path,
        data,
    } = FileCase::new("big.bin", 24_000_000);
    let alice = Phone::new("alice", 11).await;
    let mut bob = Phone::new("bob", 12).await;
    let info = msrp::file_info(&path).await.unwrap();
    let a_opts = chunked(16 * 1024);
    let b_opts = saving_into(&save);
    let mut out = msrp::send_file(&alice.ua, &alice.account, bob.uri(), info.clone(), a_opts)
        .await
        .unwrap();
    let inc = bob.incoming().await;
    let mut first = msrp::accept(&bob.ua, inc, &bob.account, b_opts.clone())
        .await
        .unwrap();
    // Hang up once some of the file is here.
    wait_for(
        &mut first,
        |e| matches!(e, MsrpEvent::Progress { bytes, .. } if *bytes >= 500_000),
    )
    .await;
    first.close();
    let mut first_events = Vec::new();
    while let Some(ev) = timeout(STEP, first.next_event()).await.unwrap() {
        first_events.push(ev.clone());
        if ev == MsrpEvent::Closed {
            break;
        }
    }
    assert!(
        first_events
            .iter()
            .any(|e| matches!(e, MsrpEvent::Failed { .. })),
        "an unfinished receive reports a failure: {first_events:?}"
    );
    let kept = std::fs::metadata(save.join("big.bin.part")).unwrap().len();
    assert!(kept > 0 && kept < info.size, "kept {kept}");

    // The sender offers again by itself; the second session continues from the part.
    let inc = bob.incoming().await;
    let mut second = msrp::accept(&bob.ua, inc, &bob.account, b_opts)
        .await
        .unwrap();
    let (_, seen) = wait_for(&mut out, |e| matches!(e, MsrpEvent::FileSent { .. })).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, MsrpEvent::Retrying { attempt: 2, .. })),
        "{seen:?}"
    );
    let resumed = seen.iter().find_map(|e| match e {
        MsrpEvent::Resumed { from_byte } => Some(*from_byte),
        _ => None,
    });
    assert!(
        resumed.is_some_and(|b| b > 0 && b <= kept),
        "resumed {resumed:?}, kept {kept}"
    );
    let (ev, _) = wait_for(&mut second, |e| matches!(e, MsrpEvent::FileReceived { .. })).await;
    let MsrpEvent::FileReceived { path, sha256, .. } = ev else {
        unreachable!()
    };
    assert_eq!(sha256, info.sha256);
    assert_eq!(sha256_hex(&std::fs::read(path).unwrap()), sha256_hex(&data));
    wait_for(&mut out, |e| *e == MsrpEvent::Closed).await;
    alice.ua.shutdown().await;
    bob.ua.shutdown().await;
}
