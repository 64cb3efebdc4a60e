//! The stored-message queue on both back ends (SQLite and PostgreSQL: same migrations, same
//! SQL), and store-and-forward through an in-process lab whose store is PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod im_util;
mod sip_util;

use std::collections::HashMap;

use im_util::{BOB, Postgres, assert_quiet, body, message, submit, take_message};
use sip_util::{DOMAIN, Lab, test_config};
use tandem_labserver::store::Store;
use tandem_labserver::store_im::{InsertOutcome, NewStoredMessage};

fn new_message(aor: &str, key: &str, body: &[u8], submitted_at: i64) -> NewStoredMessage {
    NewStoredMessage {
        stored_id: format!("id-{key}"),
        submit_key: format!("key-{key}"),
        aor: aor.to_owned(),
        from_header: "\"A\" <sip:alice@tandem.lab>;tag=1".to_owned(),
        to_header: format!("<{aor}>"),
        content_type: "text/plain".to_owned(),
        body: body.to_vec(),
        submitted_at,
    }
}

/// Every queue operation, with checks of what each left in the store.
async fn exercise(store: &Store) {
    let carol = "sip:carol@tandem.lab";
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        let m = new_message(BOB, key, &[0, 159, 255, b'x'], 1000 + i as i64);
        assert_eq!(
            store.insert_stored_message(&m, 3).await.unwrap(),
            InsertOutcome::Stored
        );
    }
    // A resubmission (same key) is a duplicate even when the quota is full; a new one is refused.
    let dup = new_message(BOB, "a", b"again", 5000);
    assert_eq!(
        store.insert_stored_message(&dup, 3).await.unwrap(),
        InsertOutcome::Duplicate
    );
    let over = new_message(BOB, "d", b"over", 5000);
    assert_eq!(
        store.insert_stored_message(&over, 3).await.unwrap(),
        InsertOutcome::QuotaFull
    );
    // The quota is per recipient.
    let other = new_message(carol, "e", b"for carol", 500);
    assert_eq!(
        store.insert_stored_message(&other, 3).await.unwrap(),
        InsertOutcome::Stored
    );
    assert_eq!(store.count_stored_messages(BOB).await.unwrap(), 3);
    let mut aors = store.stored_message_aors().await.unwrap();
    aors.sort();
    assert_eq!(aors, [BOB, carol]);

    let list = store.list_stored_messages(BOB).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|m| m.stored_id.as_str())
            .collect::<Vec<_>>(),
        ["id-a", "id-b", "id-c"]
    );
    let first = store.next_stored_message(BOB).await.unwrap().unwrap();
    assert_eq!(first, list[0]);
    assert_eq!(first.body, [0, 159, 255, b'x']);
    assert_eq!(first.from_header, "\"A\" <sip:alice@tandem.lab>;tag=1");
    assert_eq!(
        (first.attempts, first.next_attempt_at, first.in_flight_at),
        (0, 1000, None)
    );

    store
        .mark_stored_in_flight(first.seq, 7000, 9000)
        .await
        .unwrap();
    let m = store.next_stored_message(BOB).await.unwrap().unwrap();
    assert_eq!(
        (m.attempts, m.next_attempt_at, m.in_flight_at),
        (1, 9000, Some(7000))
    );
    store.release_stored_message(first.seq).await.unwrap();
    let m = store.next_stored_message(BOB).await.unwrap().unwrap();
    assert_eq!((m.attempts, m.in_flight_at), (1, None));

    assert!(store.delete_stored_message(first.seq).await.unwrap());
    assert!(!store.delete_stored_message(first.seq).await.unwrap());
    assert_eq!(
        store
            .next_stored_message(BOB)
            .await
            .unwrap()
            .unwrap()
            .stored_id,
        "id-b"
    );
    // Older than 1001 ms: carol's (500) and none of bob's left (1001, 1002).
    assert_eq!(store.purge_stored_messages(1001).await.unwrap(), 1);
    assert!(store.next_stored_message(carol).await.unwrap().is_none());
    assert_eq!(store.count_stored_messages(BOB).await.unwrap(), 2);
}

#[tokio::test]
async fn sqlite_queue_operations_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).await.unwrap();
    exercise(&store).await;
    store.close().await;
    let store = Store::open_in(dir.path()).await.unwrap();
    assert_eq!(store.count_stored_messages(BOB).await.unwrap(), 2);
    store.close().await;
}

#[tokio::test]
async fn postgres_queue_operations_and_delivery_through_the_lab() {
    let Some(pg) = Postgres::start().await else {
        return;
    };
    let store = Store::open(&pg.url).await.unwrap();
    exercise(&store).await;
    // Start over with an empty queue for the SIP part.
    for m in store.list_stored_messages(BOB).await.unwrap() {
        store.delete_stored_message(m.seq).await.unwrap();
    }
    for u in ["alice", "bob"] {
        store.add_user(u, DOMAIN, &format!("{u}pw")).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let mut lab = Lab {
        server: None,
        store: store.clone(),
        dir,
        udp: "127.0.0.1:9".parse().unwrap(),
        tcp: "127.0.0.1:9".parse().unwrap(),
        tls: None,
        tls_client: None,
        config,
    };
    lab.boot().await;
    let mut alice = lab.ua("alice").await;
    for i in 0..10 {
        let req = message(&mut alice, BOB, "text/plain", &format!("pg {i}"));
        assert_eq!(submit(&mut alice, req).await.0.status, 202);
    }
    // A restart on the same database keeps them.
    lab.stop().await;
    lab.boot().await;
    let mut bob = lab.ua("bob").await;
    bob.register_self().await;
    let mut seen = HashMap::new();
    for i in 0..10 {
        assert_eq!(
            body(&take_message(&bob, &mut seen, 200).await),
            format!("pg {i}")
        );
    }
    assert_quiet(&bob, &mut seen, 1.5).await;
    assert_eq!(store.count_stored_messages(BOB).await.unwrap(), 0);
    lab.stop().await;
    store.close().await;
    drop(pg);
}
