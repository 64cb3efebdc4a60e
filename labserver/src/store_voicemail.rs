//! Voicemail in the store (migration 0004): mailbox settings (enabled, PIN hash, greeting file)
//! and one row per message (mailbox, caller, time, duration, file, new/old). The audio itself
//! lives in files under the voicemail directory. A deposit writes its row *before* recording
//! (state "recording", `is_new` = 2, invisible to counts and listings) and completes it after the
//! file is closed, so a crash in the middle leaves a row the media server recovers at its next
//! start ([`Store::voicemail_recordings`]); a deleted message's row goes before its file.

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::store::{Store, StoreError, with_pool};

/// One stored voicemail message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailMessage {
    /// Random identifier (hex), also the file's stem.
    pub id: String,
    /// The mailbox owner (local username).
    pub mailbox: String,
    /// The caller's URI (From of the INVITE).
    pub caller: String,
    /// The caller's display name, if any.
    pub caller_name: Option<String>,
    /// When the message was left (Unix milliseconds).
    pub received_at: i64,
    /// Length of the recording in milliseconds.
    pub duration_ms: i64,
    /// The audio file.
    pub path: String,
    /// Not listened to yet.
    pub is_new: bool,
}

/// The settings of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailBox {
    /// The owner (local username).
    pub username: String,
    /// Calls go to this mailbox on no answer, busy or not registered.
    pub enabled: bool,
    /// Hex SHA-256 of `username:pin`; `None` = the configured default PIN.
    pub pin_hash: Option<String>,
    /// The recorded greeting file; `None` = the default prompt.
    pub greeting: Option<String>,
}

/// The hash a PIN is stored as: hex SHA-256 of `username:pin`.
pub fn pin_hash(username: &str, pin: &str) -> String {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(pin.as_bytes());
    hex::encode(h.finalize())
}

const UPSERT_PIN: &str = "INSERT INTO voicemail_boxes (username, pin_hash, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (username) DO UPDATE SET pin_hash = $2, updated_at = $3";
const UPSERT_GREETING: &str = "INSERT INTO voicemail_boxes (username, greeting, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (username) DO UPDATE SET greeting = $2, updated_at = $3";
const UPSERT_ENABLED: &str = "INSERT INTO voicemail_boxes (username, enabled, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (username) DO UPDATE SET enabled = $2, updated_at = $3";
const SELECT_MESSAGES: &str = "SELECT id, mailbox, caller, caller_name, received_at, duration_ms, \
     path, is_new FROM voicemail_messages WHERE mailbox = $1 AND is_new < 2 \
     ORDER BY is_new DESC, received_at ASC, id ASC";
const SELECT_RECORDING: &str = "SELECT id, mailbox, caller, caller_name, received_at, duration_ms, \
     path, is_new FROM voicemail_messages WHERE is_new = 2 ORDER BY received_at ASC, id ASC";
/// `is_new` of a message whose recording is still being written.
const RECORDING: i64 = 2;
const DELETE_MESSAGE: &str = "DELETE FROM voicemail_messages WHERE mailbox = $1 AND id = $2 \
     RETURNING id, mailbox, caller, caller_name, received_at, duration_ms, path, is_new";

/// The value of an upsert.
enum Value {
    Int(i64),
    Text(Option<String>),
}

/// Builds a [`VoicemailMessage`] from a row of either database.
macro_rules! message_from_row {
    ($r:expr) => {{
        let r = $r;
        (|| -> Result<VoicemailMessage, StoreError> {
            let is_new: i64 = r.try_get("is_new").map_err(StoreError::Query)?;
            Ok(VoicemailMessage {
                id: r.try_get("id").map_err(StoreError::Query)?,
                mailbox: r.try_get("mailbox").map_err(StoreError::Query)?,
                caller: r.try_get("caller").map_err(StoreError::Query)?,
                caller_name: r.try_get("caller_name").map_err(StoreError::Query)?,
                received_at: r.try_get("received_at").map_err(StoreError::Query)?,
                duration_ms: r.try_get("duration_ms").map_err(StoreError::Query)?,
                path: r.try_get("path").map_err(StoreError::Query)?,
                is_new: is_new != 0,
            })
        })()
    }};
}

/// Runs `$query` (an `UPDATE`, built again for each database) on `$store`'s pool: true when it
/// changed a row.
macro_rules! rows_changed {
    ($store:expr, $query:expr) => {
        with_pool!($store, pool => {
            $query
                .execute(pool)
                .await
                .map_err(StoreError::Query)?
                .rows_affected()
        }) > 0
    };
}

/// Runs `$query` (a message `SELECT`, built again for each database) on `$store`'s pool and
/// returns the messages.
macro_rules! fetch_messages {
    ($store:expr, $query:expr) => {
        with_pool!($store, pool => {
            let rows = $query.fetch_all(pool).await.map_err(StoreError::Query)?;
            rows.iter().map(|r| message_from_row!(r)).collect()
        })
    };
}

impl Store {
    /// The settings of `username`'s mailbox, if any were ever stored.
    pub async fn voicemail_box(&self, username: &str) -> Result<Option<VoicemailBox>, StoreError> {
        const SQL: &str =
            "SELECT username, enabled, pin_hash, greeting FROM voicemail_boxes WHERE username = $1";
        with_pool!(self, pool => {
            let row = sqlx::query(SQL)
                .bind(username)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::Query)?;
            row.map(|r| -> Result<VoicemailBox, StoreError> {
                let enabled: i64 = r.try_get("enabled").map_err(StoreError::Query)?;
                Ok(VoicemailBox {
                    username: r.try_get("username").map_err(StoreError::Query)?,
                    enabled: enabled != 0,
                    pin_hash: r.try_get("pin_hash").map_err(StoreError::Query)?,
                    greeting: r.try_get("greeting").map_err(StoreError::Query)?,
                })
            })
            .transpose()
        })
    }

    /// Whether calls to `username` fall back to voicemail (true when no settings are stored).
    pub async fn voicemail_enabled(&self, username: &str) -> Result<bool, StoreError> {
        Ok(self
            .voicemail_box(username)
            .await?
            .is_none_or(|b| b.enabled))
    }

    async fn voicemail_upsert(
        &self,
        sql: &'static str,
        username: &str,
        value: Value,
    ) -> Result<(), StoreError> {
        let now = crate::location::unix_now();
        with_pool!(self, pool => {
            let q = sqlx::query(sql).bind(username);
            let q = match &value {
                Value::Int(e) => q.bind(*e),
                Value::Text(t) => q.bind(t.clone()),
            };
            q.bind(now)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// Sets `username`'s PIN (stored as [`pin_hash`]).
    pub async fn voicemail_set_pin(&self, username: &str, pin: &str) -> Result<(), StoreError> {
        if pin.is_empty() || pin.len() > 16 || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StoreError::InvalidInput {
                field: "pin",
                reason: "must be 1 to 16 digits",
            });
        }
        self.voicemail_upsert(
            UPSERT_PIN,
            username,
            Value::Text(Some(pin_hash(username, pin))),
        )
        .await
    }

    /// Sets (or with `None` clears) `username`'s recorded greeting file.
    pub async fn voicemail_set_greeting(
        &self,
        username: &str,
        path: Option<&str>,
    ) -> Result<(), StoreError> {
        self.voicemail_upsert(
            UPSERT_GREETING,
            username,
            Value::Text(path.map(str::to_owned)),
        )
        .await
    }

    /// Enables or disables the voicemail fallback for `username`.
    pub async fn voicemail_set_enabled(
        &self,
        username: &str,
        enabled: bool,
    ) -> Result<(), StoreError> {
        self.voicemail_upsert(UPSERT_ENABLED, username, Value::Int(i64::from(enabled)))
            .await
    }

    /// Adds a message (its file must be complete already).
    pub async fn voicemail_add(&self, m: &VoicemailMessage) -> Result<(), StoreError> {
        self.voicemail_insert(m, m.duration_ms, i64::from(m.is_new))
            .await
    }

    /// Writes the row of a message about to be recorded (not counted or listed until
    /// [`Store::voicemail_complete`]).
    pub async fn voicemail_begin(&self, m: &VoicemailMessage) -> Result<(), StoreError> {
        self.voicemail_insert(m, 0, RECORDING).await
    }

    /// Inserts message `m` with the given length and `is_new` state.
    async fn voicemail_insert(
        &self,
        m: &VoicemailMessage,
        duration_ms: i64,
        is_new: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO voicemail_messages \
             (id, mailbox, caller, caller_name, received_at, duration_ms, path, is_new) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(&m.id)
                .bind(&m.mailbox)
                .bind(&m.caller)
                .bind(&m.caller_name)
                .bind(m.received_at)
                .bind(duration_ms)
                .bind(&m.path)
                .bind(is_new)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// Completes a recorded message with its length: it becomes a new message. False if there
    /// was no such recording.
    pub async fn voicemail_complete(
        &self,
        mailbox: &str,
        id: &str,
        duration_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE voicemail_messages SET duration_ms = $3, is_new = 1 \
             WHERE mailbox = $1 AND id = $2 AND is_new = 2";
        Ok(rows_changed!(
            self,
            sqlx::query(SQL).bind(mailbox).bind(id).bind(duration_ms)
        ))
    }

    /// Messages whose recording never completed (the server stopped in the middle).
    pub async fn voicemail_recordings(&self) -> Result<Vec<VoicemailMessage>, StoreError> {
        fetch_messages!(self, sqlx::query(SELECT_RECORDING))
    }

    /// The messages of `mailbox`: new ones first, each group oldest first.
    pub async fn voicemail_messages(
        &self,
        mailbox: &str,
    ) -> Result<Vec<VoicemailMessage>, StoreError> {
        fetch_messages!(self, sqlx::query(SELECT_MESSAGES).bind(mailbox))
    }

    /// `(new, old)` message counts of `mailbox`.
    pub async fn voicemail_counts(&self, mailbox: &str) -> Result<(u32, u32), StoreError> {
        const SQL: &str = "SELECT is_new, COUNT(*) AS n FROM voicemail_messages \
             WHERE mailbox = $1 AND is_new < 2 GROUP BY is_new";
        let pairs: Vec<(i64, i64)> = with_pool!(self, pool => {
            let rows = sqlx::query(SQL)
                .bind(mailbox)
                .fetch_all(pool)
                .await
                .map_err(StoreError::Query)?;
            rows.iter()
                .map(|r| -> Result<(i64, i64), StoreError> {
                    Ok((
                        r.try_get("is_new").map_err(StoreError::Query)?,
                        r.try_get("n").map_err(StoreError::Query)?,
                    ))
                })
                .collect::<Result<_, _>>()?
        });
        let (mut new, mut old) = (0u32, 0u32);
        for (is_new, n) in pairs {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            if is_new != 0 {
                new = new.saturating_add(n);
            } else {
                old = old.saturating_add(n);
            }
        }
        Ok((new, old))
    }

    /// Marks message `id` of `mailbox` as heard (old); false if there is no such message.
    pub async fn voicemail_mark_old(&self, mailbox: &str, id: &str) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE voicemail_messages SET is_new = 0 WHERE mailbox = $1 AND id = $2 AND is_new = 1";
        Ok(rows_changed!(self, sqlx::query(SQL).bind(mailbox).bind(id)))
    }

    /// Deletes message `id` of `mailbox` and returns it (the caller removes its file).
    pub async fn voicemail_delete(
        &self,
        mailbox: &str,
        id: &str,
    ) -> Result<Option<VoicemailMessage>, StoreError> {
        with_pool!(self, pool => {
            let row = sqlx::query(DELETE_MESSAGE)
                .bind(mailbox)
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::Query)?;
            row.as_ref().map(|r| message_from_row!(r)).transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/lab.db", dir.path().display());
        (Store::open(&url).await.unwrap(), dir)
    }

    fn message(id: &str, at: i64, is_new: bool) -> VoicemailMessage {
        VoicemailMessage {
            id: id.into(),
            mailbox: "alice".into(),
            caller: "sip:bob@lab".into(),
            caller_name: Some("Bob".into()),
            received_at: at,
            duration_ms: 1500,
            path: format!("/tmp/{id}.opus"),
            is_new,
        }
    }

    #[tokio::test]
    async fn messages_counts_and_order() {
        let (s, _dir) = store().await;
        assert_eq!(s.voicemail_counts("alice").await.unwrap(), (0, 0));
        s.voicemail_add(&message("a", 3, true)).await.unwrap();
        s.voicemail_add(&message("b", 1, false)).await.unwrap();
        s.voicemail_add(&message("c", 2, true)).await.unwrap();
        assert_eq!(s.voicemail_counts("alice").await.unwrap(), (2, 1));
        let ids: Vec<String> = s
            .voicemail_messages("alice")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["c", "a", "b"]);
        assert!(s.voicemail_mark_old("alice", "c").await.unwrap());
        assert!(!s.voicemail_mark_old("bob", "c").await.unwrap());
        assert_eq!(s.voicemail_counts("alice").await.unwrap(), (1, 2));
        let gone = s.voicemail_delete("alice", "a").await.unwrap().unwrap();
        assert_eq!(gone, message("a", 3, true));
        assert!(s.voicemail_delete("alice", "a").await.unwrap().is_none());
        assert_eq!(s.voicemail_counts("alice").await.unwrap(), (0, 2));
        assert_eq!(s.voicemail_counts("bob").await.unwrap(), (0, 0));
    }

    #[tokio::test]
    async fn recordings_are_invisible_until_complete() {
        let (s, _dir) = store().await;
        let m = message("r", 5, true);
        s.voicemail_begin(&m).await.unwrap();
        assert_eq!(s.voicemail_counts("alice").await.unwrap(), (0, 0));
        assert!(s.voicemail_messages("alice").await.unwrap().is_empty());
        assert!(!s.voicemail_mark_old("alice", "r").await.unwrap());
        let pending = s.voicemail_recordings().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].duration_ms, 0);
        assert!(s.voicemail_complete("alice", "r", 2500).await.unwrap());
        assert!(!s.voicemail_complete("alice", "r", 2500).await.unwrap());
        assert!(s.voicemail_recordings().await.unwrap().is_empty());
        assert_eq!(s.voicemail_counts("alice").await.unwrap(), (1, 0));
        let listed = s.voicemail_messages("alice").await.unwrap();
        assert_eq!(listed[0].duration_ms, 2500);
        assert!(listed[0].is_new);
    }

    #[tokio::test]
    async fn mailbox_settings() {
        let (s, _dir) = store().await;
        assert!(s.voicemail_enabled("alice").await.unwrap());
        assert!(s.voicemail_box("alice").await.unwrap().is_none());
        s.voicemail_set_pin("alice", "4321").await.unwrap();
        assert!(s.voicemail_set_pin("alice", "12a").await.is_err());
        assert!(s.voicemail_set_pin("alice", "").await.is_err());
        s.voicemail_set_greeting("alice", Some("/vm/alice/greeting.opus"))
            .await
            .unwrap();
        s.voicemail_set_enabled("alice", false).await.unwrap();
        let b = s.voicemail_box("alice").await.unwrap().unwrap();
        assert_eq!(
            b.pin_hash.as_deref(),
            Some(pin_hash("alice", "4321").as_str())
        );
        assert_eq!(b.greeting.as_deref(), Some("/vm/alice/greeting.opus"));
        assert!(!b.enabled);
        assert!(!s.voicemail_enabled("alice").await.unwrap());
        s.voicemail_set_enabled("alice", true).await.unwrap();
        s.voicemail_set_greeting("alice", None).await.unwrap();
        let b = s.voicemail_box("alice").await.unwrap().unwrap();
        assert!(b.enabled && b.greeting.is_none() && b.pin_hash.is_some());
    }
}
