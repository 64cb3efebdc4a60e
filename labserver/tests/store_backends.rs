//! The store on both back ends: every method, and data surviving a restart.
//!
//! SQLite runs in a temporary directory. PostgreSQL runs against `TANDEM_TEST_POSTGRES_URL`
//! when it is set (in a fresh database created for the run and dropped after it); otherwise,
//! when the PostgreSQL server binaries (`initdb`, `pg_ctl`) are found, against a throw-away
//! cluster started in a temporary directory on a free loopback port (as the `postgres` user,
//! or `nobody`, when the test runs as root) and stopped when the test ends; otherwise the
//! PostgreSQL test says that it skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use tandem_labserver::store::{Backend, Binding, Cdr, Store, StoreError};
use tandem_proto::auth::Algorithm;

const ALICE_SECRET_MD5: &str = "8989e28f26ca2dcc8c9dfe2265e3dc8b";
const ALICE_SECRET_SHA256: &str =
    "a7d83e670383d723ed8802cfc0e05f29ed0d1d10f3a76899171c4550ac0dfefc";
const ALICE_CHANGED_MD5: &str = "3277abf0590e8365be3435a862320c7d";
const ALICE_CHANGED_SHA256: &str =
    "bdb654db2079b2e16dc40c3dce777a2c8260977eab5b401478d20047266a0f34";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn binding(aor: &str, contact: &str, expires_at: i64) -> Binding {
    Binding {
        aor: aor.to_owned(),
        contact: contact.to_owned(),
        expires_at,
        q: None,
        call_id: format!("cid-{contact}"),
        cseq: 1,
        flow: None,
        user_agent: None,
        instance: None,
        reg_id: None,
        features: None,
    }
}

fn cdr(call_id: &str, start_at: i64) -> Cdr {
    Cdr {
        call_id: call_id.to_owned(),
        caller: "sip:alice@tandem.lab".to_owned(),
        callee: "sip:bob@tandem.lab".to_owned(),
        start_at,
        answer_at: None,
        end_at: None,
        cause: "no-answer".to_owned(),
        status: Some(480),
    }
}

/// Exercises every store method on an empty store; leaves known data behind for
/// [`check_after_restart`].
async fn exercise(store: &Store) {
    let t = now();

    // Users.
    assert!(store.list_users().await.unwrap().is_empty());
    store
        .add_user("alice", "tandem.lab", "secret")
        .await
        .unwrap();
    store.add_user("bob", "tandem.lab", "bobpw").await.unwrap();
    store.add_user("alice", "other.lab", "x").await.unwrap();
    let users = store.list_users().await.unwrap();
    let names: Vec<(&str, &str)> = users
        .iter()
        .map(|u| (u.domain.as_str(), u.username.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("other.lab", "alice"),
            ("tandem.lab", "alice"),
            ("tandem.lab", "bob")
        ]
    );
    assert!(users.iter().all(|u| (u.created_at - t).abs() < 60));
    assert!(store.user_exists("alice", "tandem.lab").await.unwrap());
    assert!(!store.user_exists("carol", "tandem.lab").await.unwrap());
    assert!(!store.user_exists("bob", "other.lab").await.unwrap());

    for (alg, want) in [
        (Algorithm::Md5, ALICE_SECRET_MD5),
        (Algorithm::Md5Sess, ALICE_SECRET_MD5),
        (Algorithm::Sha256, ALICE_SECRET_SHA256),
        (Algorithm::Sha256Sess, ALICE_SECRET_SHA256),
    ] {
        assert_eq!(
            store
                .ha1("alice", "tandem.lab", alg)
                .await
                .unwrap()
                .as_deref(),
            Some(want),
            "{alg:?}"
        );
    }
    assert_eq!(
        store
            .ha1("carol", "tandem.lab", Algorithm::Md5)
            .await
            .unwrap(),
        None
    );

    // Replacing a password keeps one account and changes both HA1s.
    store
        .add_user("alice", "tandem.lab", "changed")
        .await
        .unwrap();
    assert_eq!(store.list_users().await.unwrap().len(), 3);
    assert_eq!(
        store
            .ha1("alice", "tandem.lab", Algorithm::Md5)
            .await
            .unwrap()
            .as_deref(),
        Some(ALICE_CHANGED_MD5)
    );
    assert_eq!(
        store
            .ha1("alice", "tandem.lab", Algorithm::Sha256)
            .await
            .unwrap()
            .as_deref(),
        Some(ALICE_CHANGED_SHA256)
    );

    // A realm other than the domain.
    store
        .add_user_in_realm("alice", "other.lab", "Other Realm", "x")
        .await
        .unwrap();
    assert_eq!(
        store
            .ha1("alice", "other.lab", Algorithm::Sha256)
            .await
            .unwrap(),
        Some(tandem_proto::auth::ha1(
            Algorithm::Sha256,
            "alice",
            "Other Realm",
            "x"
        ))
    );
    assert_eq!(store.list_users().await.unwrap().len(), 3);
    assert!(matches!(
        store
            .add_user_in_realm("alice", "other.lab", "bad\"realm", "x")
            .await,
        Err(StoreError::InvalidInput { field: "realm", .. })
    ));

    assert!(store.delete_user("alice", "other.lab").await.unwrap());
    assert!(!store.delete_user("alice", "other.lab").await.unwrap());
    assert_eq!(store.list_users().await.unwrap().len(), 2);

    assert!(matches!(
        store.add_user("", "tandem.lab", "pw").await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.add_user("eve", "tandem .lab", "pw").await,
        Err(StoreError::InvalidInput { .. })
    ));

    // Bindings.
    let alice = "sip:alice@tandem.lab";
    let bob = "sip:bob@tandem.lab";
    let full = Binding {
        aor: alice.to_owned(),
        contact: "<sip:alice@192.0.2.10:5062;transport=tcp>;+sip.instance=\"<urn:uuid:1>\""
            .to_owned(),
        expires_at: t + 3600,
        q: Some(0.7),
        call_id: "reg-1@host".to_owned(),
        cseq: u32::MAX,
        flow: Some("tcp:192.0.2.10:5062".to_owned()),
        user_agent: Some("Tandem/0.1 \"quoted\" ünïcode".to_owned()),
        instance: Some("<urn:uuid:1>".to_owned()),
        reg_id: Some(u32::MAX),
        features: Some("+sip.ice;audio;+sip.methods=\"INVITE,BYE\"".to_owned()),
    };
    store.save_binding(&full).await.unwrap();
    store
        .save_binding(&binding(alice, "sip:alice@192.0.2.11", t + 60))
        .await
        .unwrap();
    store
        .save_binding(&binding(bob, "sip:bob@192.0.2.20", t + 120))
        .await
        .unwrap();
    store
        .save_binding(&binding(bob, "sip:bob@192.0.2.21", t - 1))
        .await
        .unwrap();
    store
        .save_binding(&binding(bob, "sip:bob@192.0.2.22", t))
        .await
        .unwrap();

    let loaded = store.load_bindings(t).await.unwrap();
    let keys: Vec<(&str, &str)> = loaded
        .iter()
        .map(|b| (b.aor.as_str(), b.contact.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (alice, full.contact.as_str()),
            (alice, "sip:alice@192.0.2.11"),
            (bob, "sip:bob@192.0.2.20"),
        ],
        "expired (expires_at <= now) bindings are not loaded"
    );
    assert_eq!(loaded[0], full, "every field round-trips");
    assert_eq!(loaded[1], binding(alice, "sip:alice@192.0.2.11", t + 60));

    // Upsert on (aor, contact): a refresh replaces the row.
    let mut refreshed = binding(alice, "sip:alice@192.0.2.11", t + 1800);
    refreshed.cseq = 2;
    refreshed.q = Some(1.0);
    refreshed.flow = Some("udp:192.0.2.11:5060".to_owned());
    store.save_binding(&refreshed).await.unwrap();
    let loaded = store.load_bindings(t).await.unwrap();
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded[1], refreshed);

    // Purge: the two at or before `t`.
    assert_eq!(store.purge_expired(t).await.unwrap(), 2);
    assert_eq!(store.purge_expired(t).await.unwrap(), 0);

    store
        .delete_binding(alice, "sip:alice@192.0.2.11")
        .await
        .unwrap();
    store.delete_binding(alice, "sip:nobody@x").await.unwrap();
    let loaded = store.load_bindings(t).await.unwrap();
    assert_eq!(loaded.len(), 2);
    store.delete_bindings(bob).await.unwrap();
    let loaded = store.load_bindings(t).await.unwrap();
    assert_eq!(loaded, vec![full.clone()]);
    // Everything expires eventually.
    assert!(store.load_bindings(t + 3600).await.unwrap().is_empty());

    // CDRs.
    let base = t * 1000;
    store.insert_cdr(&cdr("c1", base)).await.unwrap();
    store.insert_cdr(&cdr("c2", base + 10)).await.unwrap();
    store.insert_cdr(&cdr("c3", base + 20)).await.unwrap();
    let answered = Cdr {
        call_id: "c2".to_owned(),
        caller: "sip:bob@tandem.lab".to_owned(),
        callee: "sip:carol@tandem.lab".to_owned(),
        start_at: base + 10,
        answer_at: Some(base + 500),
        end_at: Some(base + 5_500),
        cause: "answered".to_owned(),
        status: Some(200),
    };
    store.insert_cdr(&answered).await.unwrap();
    let two = store.list_cdrs(2).await.unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(two[0].call_id, "c3");
    assert_eq!(two[1], answered);
    let all = store.list_cdrs(100).await.unwrap();
    assert_eq!(
        all.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
        vec!["c3", "c2", "c1"]
    );
    let mut unfinished = cdr("c4", base + 30);
    unfinished.status = None;
    unfinished.cause = "failed:503".to_owned();
    store.insert_cdr(&unfinished).await.unwrap();
    assert_eq!(store.list_cdrs(1).await.unwrap(), vec![unfinished]);
    assert!(store.list_cdrs(0).await.unwrap().is_empty());
    assert!(store.list_cdrs(-5).await.unwrap().is_empty());

    // Meta.
    assert_eq!(store.get_meta("demo_users_created").await.unwrap(), None);
    store.set_meta("demo_users_created", "1").await.unwrap();
    store.set_meta("demo_users_created", "2").await.unwrap();
    assert_eq!(
        store
            .get_meta("demo_users_created")
            .await
            .unwrap()
            .as_deref(),
        Some("2")
    );
}

/// The batch binding methods: multi-row saves (with duplicates and more rows than one statement
/// holds), batch deletes, a combined write, and a failing batch that leaves nothing behind.
/// Leaves no binding behind.
async fn exercise_batches(store: &Store) {
    let t = now();
    let before = store.load_bindings(t).await.unwrap().len();
    let aor = |i: usize| format!("sip:batch{i:04}@tandem.lab");
    let contact = |i: usize| format!("sip:batch{i:04}@192.0.2.1:5070");
    // 300 rows: two full statements and the power-of-two remainder shapes.
    let mut many: Vec<Binding> = (0..300)
        .map(|i| binding(&aor(i), &contact(i), t + 600))
        .collect();
    many[7].q = Some(0.5);
    many[7].flow = Some("udp:192.0.2.1:5070".to_owned());
    many[7].user_agent = Some("batch-ua".to_owned());
    many[7].instance = Some("<urn:uuid:7>".to_owned());
    many[7].reg_id = Some(2);
    // A later duplicate of binding 3 wins.
    let mut dup = binding(&aor(3), &contact(3), t + 900);
    dup.cseq = 42;
    many.push(dup);
    store.save_bindings(&many).await.unwrap();
    store.save_bindings(&[]).await.unwrap();
    let loaded = store.load_bindings(t).await.unwrap();
    let batch: Vec<&Binding> = loaded
        .iter()
        .filter(|b| b.aor.starts_with("sip:batch"))
        .collect();
    assert_eq!(batch.len(), 300);
    let b3 = batch.iter().find(|b| b.aor == aor(3)).unwrap();
    assert_eq!((b3.cseq, b3.expires_at), (42, t + 900));
    let b7 = batch.iter().find(|b| b.aor == aor(7)).unwrap();
    assert_eq!(**b7, many[7]);

    // Refresh some, delete others, in one transaction.
    let refreshed: Vec<Binding> = (0..10)
        .map(|i| {
            let mut b = binding(&aor(i), &contact(i), t + 1200);
            b.cseq = 2;
            b
        })
        .collect();
    let gone: Vec<(String, String)> = (100..300)
        .map(|i| (aor(i), contact(i)))
        .chain([(aor(5000), contact(5000))])
        .collect();
    store.write_bindings(&refreshed, &gone).await.unwrap();
    let loaded = store.load_bindings(t).await.unwrap();
    let batch: Vec<&Binding> = loaded
        .iter()
        .filter(|b| b.aor.starts_with("sip:batch"))
        .collect();
    assert_eq!(batch.len(), 100);
    assert!(
        batch
            .iter()
            .filter(|b| b.aor < aor(10))
            .all(|b| b.cseq == 2 && b.expires_at == t + 1200)
    );

    // Batch deletes (atomicity on failure is covered by the store's unit tests).
    let keep: Vec<(String, String)> = (0..100).map(|i| (aor(i), contact(i))).collect();
    store.delete_bindings_batch(&keep[..50]).await.unwrap();
    let left = store.load_bindings(t).await.unwrap().len();
    assert_eq!(left, before + 50);
    store.delete_bindings_batch(&keep).await.unwrap();
    assert_eq!(store.load_bindings(t).await.unwrap().len(), before);
}

/// What [`exercise`] left behind, seen through a newly opened store.
async fn check_after_restart(store: &Store) {
    let t = now();
    let users = store.list_users().await.unwrap();
    assert_eq!(
        users
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        vec!["alice", "bob"]
    );
    assert_eq!(
        store
            .ha1("alice", "tandem.lab", Algorithm::Sha256)
            .await
            .unwrap()
            .as_deref(),
        Some(ALICE_CHANGED_SHA256)
    );
    let bindings = store.load_bindings(t - 5).await.unwrap();
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].cseq, u32::MAX);
    assert_eq!(bindings[0].instance.as_deref(), Some("<urn:uuid:1>"));
    let cdrs = store.list_cdrs(10).await.unwrap();
    assert_eq!(cdrs.len(), 4);
    assert_eq!(cdrs[2].cause, "answered");
    assert_eq!(
        store
            .get_meta("demo_users_created")
            .await
            .unwrap()
            .as_deref(),
        Some("2")
    );
}

#[tokio::test]
async fn sqlite_every_method_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let store = Store::open_in(&data).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    exercise(&store).await;
    exercise_batches(&store).await;
    assert!(data.join("lab.db").exists());
    assert!(
        data.join("lab.db-wal").exists(),
        "the database runs in WAL mode"
    );
    store.close().await;

    let reopened = Store::open_in(&data).await.unwrap();
    check_after_restart(&reopened).await;
    reopened.close().await;

    // The same file through a URL.
    let url = format!("sqlite://{}", data.join("lab.db").display());
    let by_url = Store::open(&url).await.unwrap();
    check_after_restart(&by_url).await;
    by_url.close().await;
}

#[tokio::test]
async fn sqlite_in_memory_url() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    exercise(&store).await;
    exercise_batches(&store).await;
    store.close().await;
}

#[tokio::test]
async fn bad_urls_are_rejected() {
    assert!(matches!(
        Store::open("mysql://localhost/x").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    assert!(matches!(
        Store::open_in(&blocker.join("sub")).await,
        Err(StoreError::CreateDir { .. })
    ));
    // Nothing listens on a port we just released.
    let port = free_port();
    assert!(matches!(
        Store::open(&format!(
            "postgres://nobody@127.0.0.1:{port}/x?connect_timeout=2"
        ))
        .await,
        Err(StoreError::Connect(_))
    ));
}

#[tokio::test]
async fn postgres_every_method_and_restart() {
    let (server_url, _cluster) = match std::env::var("TANDEM_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => match TempCluster::start() {
            Ok(cluster) => (cluster.url(), Some(cluster)),
            Err(why) => {
                eprintln!(
                    "SKIPPED postgres_every_method_and_restart: TANDEM_TEST_POSTGRES_URL is unset \
                     and no temporary PostgreSQL cluster could be started ({why})"
                );
                return;
            }
        },
    };
    eprintln!("postgres test: server {server_url}");
    let db = TempDatabase::create(&server_url).await;
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    exercise(&store).await;
    exercise_batches(&store).await;
    store.close().await;
    let reopened = Store::open(&db.url).await.unwrap();
    check_after_restart(&reopened).await;
    reopened.close().await;
    db.drop_now().await;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A database created for one test run on a PostgreSQL server, dropped afterwards (also
/// when the test fails, from `Drop`).
struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl TempDatabase {
    async fn create(server_url: &str) -> TempDatabase {
        use sqlx::Connection;
        let name = format!(
            "tandem_test_{}_{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut conn = sqlx::PgConnection::connect(server_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        TempDatabase {
            admin_url: server_url.to_owned(),
            url: with_database(server_url, &name),
            name,
            dropped: false,
        }
    }

    async fn drop_now(mut self) {
        drop_database(&self.admin_url, &self.name).await;
        self.dropped = true;
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
        let _ = conn.close().await;
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside the test's runtime: clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&admin_url, &name));
            }
        })
        .join();
    }
}

/// `url` with its database (path) replaced by `name`, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A PostgreSQL cluster in a temporary directory, stopped (and removed) on drop.
struct TempCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
    port: u16,
}

impl TempCluster {
    fn start() -> Result<TempCluster, String> {
        let bin = find_pg_bin().ok_or("initdb/pg_ctl not found")?;
        // PostgreSQL refuses to run as root: run it as an unprivileged user then.
        let run_as = if is_root() {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| uid_of(u).is_some())
                .ok_or("running as root and there is no postgres or nobody user")?;
            Some(user.to_owned())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("tandem-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        if let Some(user) = &run_as {
            let uid = uid_of(user).ok_or("no uid")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), None).map_err(|e| e.to_string())?;
        }
        let out = pg_command(&bin, "initdb", run_as.as_deref())
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-A",
                "trust",
                "-U",
                "tandem",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // A port picked now may be taken before the server binds it: try a few.
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            match pg_ctl_start(&bin, run_as.as_deref(), dir.path(), port) {
                Ok(()) => {
                    return Ok(TempCluster {
                        dir,
                        bin,
                        run_as,
                        port,
                    });
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    fn url(&self) -> String {
        format!("postgres://tandem@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl", self.run_as.as_deref())
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn pg_ctl_start(bin: &Path, run_as: Option<&str>, dir: &Path, port: u16) -> Result<(), String> {
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        dir.display()
    );
    let log = dir.join("postgres.log");
    let out = pg_command(bin, "pg_ctl", run_as)
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "30", "-o", &opts, "start"])
        .output()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    }
}

fn pg_command(bin: &Path, tool: &str, run_as: Option<&str>) -> Command {
    let path = bin.join(tool);
    match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(path);
            c
        }
        None => Command::new(path),
    }
}

/// The directory holding `initdb` and `pg_ctl`: on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_pg_bin() -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn uid_of(user: &str) -> Option<u32> {
    let out = Command::new("id").args(["-u", user]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[test]
fn with_database_replaces_the_path() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
