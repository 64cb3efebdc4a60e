//! Stored page-mode messages (`stored_messages`, migration `0002_im.sql`): the durable queue
//! behind [`crate::im`]'s store-and-forward. Every statement is the same `$n` SQL on SQLite and
//! PostgreSQL; each method is one statement, so each is atomic and committed when it returns.

use sqlx::Row;

use crate::store::{Store, StoreError, with_pool};

/// A message waiting for its recipient to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The delivery order (global, increasing with submission).
    pub seq: i64,
    /// The stable identity of the message, sent as `Tandem-Stored-Id` on every attempt.
    pub stored_id: String,
    /// The recipient's canonical address-of-record, e.g. `sip:bob@tandem.lab`.
    pub aor: String,
    /// The submission's From header value (display name, URI and tag), kept verbatim.
    pub from_header: String,
    /// The submission's To header value, kept verbatim.
    pub to_header: String,
    /// The submission's Content-Type.
    pub content_type: String,
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// When the lab server accepted it (Unix milliseconds).
    pub submitted_at: i64,
    /// Delivery attempts started so far.
    pub attempts: i64,
    /// Earliest time of the next periodic attempt (Unix milliseconds).
    pub next_attempt_at: i64,
    /// When the current (or last interrupted) attempt started, if one is in flight.
    pub in_flight_at: Option<i64>,
}

/// A message to store (the queue fields are set by the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStoredMessage {
    /// The stable identity to deliver it with.
    pub stored_id: String,
    /// Identifies the submission transaction (From-tag, Call-ID, CSeq); a second insert with the
    /// same key is a retransmission and is not stored again.
    pub submit_key: String,
    /// The recipient's canonical address-of-record.
    pub aor: String,
    /// The From header value.
    pub from_header: String,
    /// The To header value.
    pub to_header: String,
    /// The Content-Type.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// When it was accepted (Unix milliseconds).
    pub submitted_at: i64,
}

/// What [`Store::insert_stored_message`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// The message is stored (committed).
    Stored,
    /// A message with the same submission key was stored before (a retransmission).
    Duplicate,
    /// The recipient already has `max_per_user` stored messages: nothing was stored.
    QuotaFull,
}

const COLUMNS: &str = "seq, stored_id, aor, from_header, to_header, content_type, body, \
     submitted_at, attempts, next_attempt_at, in_flight_at";

fn message_from_row<R>(row: &R) -> Result<StoredMessage, StoreError>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredMessage {
        seq: row.try_get("seq").map_err(StoreError::Query)?,
        stored_id: row.try_get("stored_id").map_err(StoreError::Query)?,
        aor: row.try_get("aor").map_err(StoreError::Query)?,
        from_header: row.try_get("from_header").map_err(StoreError::Query)?,
        to_header: row.try_get("to_header").map_err(StoreError::Query)?,
        content_type: row.try_get("content_type").map_err(StoreError::Query)?,
        body: row.try_get("body").map_err(StoreError::Query)?,
        submitted_at: row.try_get("submitted_at").map_err(StoreError::Query)?,
        attempts: row.try_get("attempts").map_err(StoreError::Query)?,
        next_attempt_at: row.try_get("next_attempt_at").map_err(StoreError::Query)?,
        in_flight_at: row.try_get("in_flight_at").map_err(StoreError::Query)?,
    })
}

impl Store {
    /// Stores `message` unless its submission key is already stored or its recipient already
    /// has `max_per_user` messages; committed when this returns [`InsertOutcome::Stored`].
    ///
    /// The quota check and the insert are one statement (exact on SQLite, whose writers are
    /// serialised; on PostgreSQL concurrent submissions may overshoot it by a few).
    pub async fn insert_stored_message(
        &self,
        message: &NewStoredMessage,
        max_per_user: u32,
    ) -> Result<InsertOutcome, StoreError> {
        const INSERT: &str = "INSERT INTO stored_messages \
             (stored_id, submit_key, aor, from_header, to_header, content_type, body, \
              submitted_at, attempts, next_attempt_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, 0, $8 \
             WHERE (SELECT COUNT(*) FROM stored_messages WHERE aor = $3) < $9 \
             ON CONFLICT (submit_key) DO NOTHING";
        const EXISTS: &str = "SELECT COUNT(*) AS n FROM stored_messages WHERE submit_key = $1";
        let max = i64::from(max_per_user);
        let (inserted, existing) = with_pool!(self, pool => {
            let inserted = sqlx::query(INSERT)
                .bind(&message.stored_id)
                .bind(&message.submit_key)
                .bind(&message.aor)
                .bind(&message.from_header)
                .bind(&message.to_header)
                .bind(&message.content_type)
                .bind(&message.body)
                .bind(message.submitted_at)
                .bind(max)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?
                .rows_affected();
            let existing: i64 = if inserted == 0 {
                sqlx::query(EXISTS)
                    .bind(&message.submit_key)
                    .fetch_one(pool)
                    .await
                    .map_err(StoreError::Query)?
                    .try_get("n")
                    .map_err(StoreError::Query)?
            } else {
                0
            };
            (inserted, existing)
        });
        Ok(if inserted > 0 {
            InsertOutcome::Stored
        } else if existing > 0 {
            InsertOutcome::Duplicate
        } else {
            InsertOutcome::QuotaFull
        })
    }

    /// The first message (lowest `seq`) waiting for `aor`, if any.
    pub async fn next_stored_message(
        &self,
        aor: &str,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM stored_messages WHERE aor = $1 ORDER BY seq LIMIT 1");
        with_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(aor)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::Query)?;
            row.as_ref().map(message_from_row).transpose()
        })
    }

    /// Every message waiting for `aor`, in delivery order.
    pub async fn list_stored_messages(&self, aor: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM stored_messages WHERE aor = $1 ORDER BY seq");
        with_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(aor)
                .fetch_all(pool)
                .await
                .map_err(StoreError::Query)?;
            rows.iter().map(message_from_row).collect()
        })
    }

    /// Every address-of-record with at least one stored message.
    pub async fn stored_message_aors(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT DISTINCT aor FROM stored_messages";
        with_pool!(self, pool => {
            let rows = sqlx::query(SQL).fetch_all(pool).await.map_err(StoreError::Query)?;
            rows.iter()
                .map(|r| r.try_get::<String, _>("aor").map_err(StoreError::Query))
                .collect()
        })
    }

    /// Marks message `seq` as in flight from `now_ms` (one more attempt; the next periodic
    /// attempt not before `next_attempt_at`); committed before the MESSAGE is sent.
    pub async fn mark_stored_in_flight(
        &self,
        seq: i64,
        now_ms: i64,
        next_attempt_at: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE stored_messages SET attempts = attempts + 1, \
             in_flight_at = $2, next_attempt_at = $3 WHERE seq = $1";
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(seq)
                .bind(now_ms)
                .bind(next_attempt_at)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// Ends the in-flight state of message `seq` after a failed attempt (it stays queued).
    pub async fn release_stored_message(&self, seq: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE stored_messages SET in_flight_at = NULL WHERE seq = $1";
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(seq)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// Deletes message `seq` (delivered, refused for good, or expired); whether it existed.
    pub async fn delete_stored_message(&self, seq: i64) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM stored_messages WHERE seq = $1";
        let n = with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(seq)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Deletes every message submitted before `before_ms`; how many were deleted.
    pub async fn purge_stored_messages(&self, before_ms: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM stored_messages WHERE submitted_at < $1";
        with_pool!(self, pool => {
            Ok(sqlx::query(SQL)
                .bind(before_ms)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?
                .rows_affected())
        })
    }

    /// How many messages wait for `aor`.
    pub async fn count_stored_messages(&self, aor: &str) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) AS n FROM stored_messages WHERE aor = $1";
        let n: i64 = with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(aor)
                .fetch_one(pool)
                .await
                .map_err(StoreError::Query)?
                .try_get("n")
                .map_err(StoreError::Query)?
        });
        u64::try_from(n).map_err(|_| StoreError::OutOfRange {
            column: "count",
            value: n,
        })
    }
}
