//! The local history: instant messages and call records in an SQLite file (sqlx, with
//! migrations), searchable by peer and text.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tandem_proto::msg::Uri;

use crate::account::Account;
use crate::im::{MessageOutcome, ReceivedMessage, base_type};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Why a history operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The database file could not be opened or created.
    #[error("cannot open the history {path}: {source}")]
    Open {
        /// The database path.
        path: PathBuf,
        /// The underlying error.
        source: sqlx::Error,
    },
    /// The schema migration failed.
    #[error("history migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("history query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored value is not what we wrote (e.g. an unknown direction).
    #[error("corrupt history row: {0}")]
    Corrupt(String),
}

/// Which way a message or call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Direction {
    /// We received it.
    Incoming,
    /// We sent or placed it.
    Outgoing,
}

impl Direction {
    /// `in` or `out`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "in",
            Direction::Outgoing => "out",
        }
    }
}

impl FromStr for Direction {
    type Err = HistoryError;

    fn from_str(s: &str) -> Result<Self, HistoryError> {
        match s {
            "in" => Ok(Direction::Incoming),
            "out" => Ok(Direction::Outgoing),
            other => Err(HistoryError::Corrupt(format!("direction {other:?}"))),
        }
    }
}

/// One instant message in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Our AoR (`sip:alice@tandem.lab`).
    pub account: String,
    /// The other party's URI.
    pub peer: String,
    /// Sent or received.
    pub direction: Direction,
    /// The message id (IMDN Message-ID, stored id or Call-ID); unique per peer and direction.
    pub message_id: String,
    /// The content type.
    pub content_type: String,
    /// The content.
    pub body: Bytes,
    /// When it was sent (RFC 3339).
    pub datetime: String,
    /// Delivery status (`sent`, `stored`, `received`, `delivered`, `displayed`, …).
    pub status: String,
}

impl MessageRecord {
    /// The record of a message we sent.
    pub fn outgoing(
        account: &Account,
        to: &Uri,
        content_type: &str,
        body: &Bytes,
        outcome: &MessageOutcome,
    ) -> Self {
        MessageRecord {
            account: account
                .aor()
                .map(|u| u.to_string())
                .unwrap_or_else(|_| format!("sip:{}@{}", account.user, account.domain)),
            peer: peer_key(&to.to_string()),
            direction: Direction::Outgoing,
            message_id: outcome.message_id.clone(),
            content_type: content_type.to_string(),
            body: body.clone(),
            datetime: outcome.datetime.clone(),
            status: if outcome.status == 0 {
                "sending"
            } else if outcome.stored {
                "stored"
            } else {
                "sent"
            }
            .into(),
        }
    }

    /// The record of a message we received.
    pub fn incoming(message: &ReceivedMessage) -> Self {
        MessageRecord {
            account: peer_key(&message.to),
            peer: peer_key(&message.from),
            direction: Direction::Incoming,
            message_id: message.message_id.clone(),
            content_type: message.content_type.clone(),
            body: message.body.clone(),
            datetime: message
                .datetime
                .clone()
                .unwrap_or_else(crate::im::now_rfc3339),
            status: "received".into(),
        }
    }

    /// The body as text for `text/*` content.
    pub fn text(&self) -> Option<String> {
        base_type(&self.content_type)
            .starts_with("text/")
            .then(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// One call in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Our AoR.
    pub account: String,
    /// The other party's URI.
    pub peer: String,
    /// Placed or received.
    pub direction: Direction,
    /// The call's Call-ID.
    pub call_id: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it was up, in seconds (0 if never answered).
    pub duration_secs: u64,
    /// How it ended (`answered`, `busy`, `missed`, `cancelled`, …).
    pub outcome: String,
}

/// The peer key used for lookups: the URI without parameters, headers or display name
/// (`sip:bob@tandem.lab`), lowercased host.
pub fn peer_key(uri: &str) -> String {
    match Uri::parse(uri.trim().trim_start_matches('<').trim_end_matches('>')) {
        Ok(mut u) => {
            u.params.clear();
            u.headers.clear();
            u.password = None;
            u.to_string()
        }
        Err(_) => uri.trim().to_string(),
    }
}

/// The history database; cheap to clone.
#[derive(Debug, Clone)]
pub struct History {
    pool: SqlitePool,
}

impl History {
    /// Opens (creating if needed) the history at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<History, HistoryError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|source| HistoryError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(History { pool })
    }

    /// Stores a message; false when one with the same peer, direction and id exists.
    pub async fn record_message(&self, m: &MessageRecord) -> Result<bool, HistoryError> {
        let done = sqlx::query(
            "INSERT OR IGNORE INTO messages \
             (account, peer, direction, message_id, content_type, body, text, datetime, status) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.account)
        .bind(&m.peer)
        .bind(m.direction.as_str())
        .bind(&m.message_id)
        .bind(&m.content_type)
        .bind(m.body.to_vec())
        .bind(m.text())
        .bind(&m.datetime)
        .bind(&m.status)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Updates the status of a sent message (e.g. `delivered`, `displayed` from an IMDN).
    pub async fn set_message_status(
        &self,
        message_id: &str,
        status: &str,
    ) -> Result<bool, HistoryError> {
        let done = sqlx::query(
            "UPDATE messages SET status = ? WHERE message_id = ? AND direction = 'out'",
        )
        .bind(status)
        .bind(message_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Updates the status of a sent message only while it is still `expected` (so a
    /// notification that arrived first is not overwritten).
    pub async fn advance_message_status(
        &self,
        message_id: &str,
        expected: &str,
        status: &str,
    ) -> Result<bool, HistoryError> {
        let done = sqlx::query(
            "UPDATE messages SET status = ? \
             WHERE message_id = ? AND direction = 'out' AND status = ?",
        )
        .bind(status)
        .bind(message_id)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The last `limit` messages exchanged with `peer`, oldest first.
    pub async fn messages_with(
        &self,
        peer: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, HistoryError> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT id, account, peer, direction, message_id, content_type, body, \
             datetime, status FROM messages WHERE peer = ? ORDER BY id DESC LIMIT ?) ORDER BY id",
        )
        .bind(peer_key(peer))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_row).collect()
    }

    /// Messages whose text contains `text` (case-insensitive for ASCII), newest last.
    pub async fn search_messages(
        &self,
        text: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, HistoryError> {
        let escaped: String = text
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let rows = sqlx::query(
            "SELECT * FROM (SELECT id, account, peer, direction, message_id, content_type, body, \
             datetime, status FROM messages WHERE text LIKE ? ESCAPE '\\' \
             ORDER BY id DESC LIMIT ?) ORDER BY id",
        )
        .bind(format!("%{escaped}%"))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_row).collect()
    }

    /// Stores a call record (a second record with the same Call-ID and direction replaces it).
    pub async fn record_call(&self, c: &CallRecord) -> Result<(), HistoryError> {
        sqlx::query(
            "INSERT OR REPLACE INTO calls \
             (account, peer, direction, call_id, started_at, duration_secs, outcome) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.account)
        .bind(peer_key(&c.peer))
        .bind(c.direction.as_str())
        .bind(&c.call_id)
        .bind(&c.started_at)
        .bind(i64::try_from(c.duration_secs).unwrap_or(i64::MAX))
        .bind(&c.outcome)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The last `limit` calls (with `peer` if given), oldest first.
    pub async fn calls_with(
        &self,
        peer: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, HistoryError> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT id, account, peer, direction, call_id, started_at, \
             duration_secs, outcome FROM calls WHERE (? IS NULL OR peer = ?) \
             ORDER BY id DESC LIMIT ?) ORDER BY id",
        )
        .bind(peer.map(peer_key))
        .bind(peer.map(peer_key))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let direction: String = r.try_get("direction")?;
                let secs: i64 = r.try_get("duration_secs")?;
                Ok(CallRecord {
                    account: r.try_get("account")?,
                    peer: r.try_get("peer")?,
                    direction: direction.parse()?,
                    call_id: r.try_get("call_id")?,
                    started_at: r.try_get("started_at")?,
                    duration_secs: u64::try_from(secs).unwrap_or(0),
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect()
    }

    /// Closes the database (waits for open connections).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn message_row(r: &sqlx::sqlite::SqliteRow) -> Result<MessageRecord, HistoryError> {
    let direction: String = r.try_get("direction")?;
    let body: Vec<u8> = r.try_get("body")?;
    Ok(MessageRecord {
        account: r.try_get("account")?,
        peer: r.try_get("peer")?,
        direction: direction.parse()?,
        message_id: r.try_get("message_id")?,
        content_type: r.try_get("content_type")?,
        body: Bytes::from(body),
        datetime: r.try_get("datetime")?,
        status: r.try_get("status")?,
    })
}
