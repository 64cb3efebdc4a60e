//! Persistent storage: users (HA1 only), registrations, call records; SQLite or PostgreSQL.
//!
//! One [`Store`] over either an SQLite pool (zero configuration: a file in the data directory,
//! WAL journal, `synchronous=NORMAL`) or a PostgreSQL pool. Both run the same schema, kept in
//! `labserver/migrations/{sqlite,postgres}` and embedded in the binary; every query is
//! parameterised, and the same SQL text serves both back ends (`$n` placeholders).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tandem_proto::auth::{self, Algorithm};

/// File name of the SQLite database inside the data directory.
pub const SQLITE_FILE_NAME: &str = "lab.db";

/// How long an SQLite connection waits for a lock held by another connection.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long acquiring a pooled connection may take before the operation fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Errors from opening or using the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL names neither SQLite nor PostgreSQL.
    #[error("unsupported database URL {0:?}: expected sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    /// The database URL could not be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    /// The directory for the SQLite file could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory that could not be created.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached or opened.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// Applying the embedded schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// A stored value is outside the range its Rust type allows.
    #[error("stored value in column {column} is out of range: {value}")]
    OutOfRange {
        /// The column holding the bad value.
        column: &'static str,
        /// The value found.
        value: i64,
    },
    /// A caller-supplied value cannot be stored.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which argument was rejected.
        field: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// A user account: the digest credentials themselves are never returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user part of the address-of-record (and the digest username).
    pub username: String,
    /// The domain (and digest realm) the user belongs to.
    pub domain: String,
    /// When the account was created or its password last set (Unix seconds).
    pub created_at: i64,
}

/// One registered contact of an address-of-record (RFC 3261 §10).
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The canonical address-of-record, e.g. `sip:alice@tandem.lab`.
    pub aor: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// When the binding expires (Unix seconds).
    pub expires_at: i64,
    /// The Contact's `q` preference, if given.
    pub q: Option<f32>,
    /// Call-ID of the REGISTER that created or refreshed the binding.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// Where the REGISTER came from, e.g. `tcp:1.2.3.4:5062` (connection reuse, NAT).
    pub flow: Option<String>,
    /// The registering agent's User-Agent header.
    pub user_agent: Option<String>,
    /// The Contact's `+sip.instance` parameter (RFC 5626).
    pub instance: Option<String>,
    /// The Contact's `reg-id` parameter (RFC 5626).
    pub reg_id: Option<u32>,
    /// The Contact's feature tags (RFC 3840), `;`-separated as registered, e.g. `+sip.ice;audio`.
    pub features: Option<String>,
}

/// A call detail record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdr {
    /// The INVITE's Call-ID (unique key).
    pub call_id: String,
    /// The caller's URI (From).
    pub caller: String,
    /// The callee's URI (To / Request-URI).
    pub callee: String,
    /// When the INVITE arrived (Unix milliseconds).
    pub start_at: i64,
    /// When the call was answered (Unix milliseconds), if it was.
    pub answer_at: Option<i64>,
    /// When the call ended (Unix milliseconds), if it has.
    pub end_at: Option<i64>,
    /// How the call ended: `answered`, `busy`, `no-answer`, `cancelled`, `failed:480`, …
    pub cause: String,
    /// The final status code sent to the caller, if any.
    pub status: Option<u16>,
}

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The lab server's persistent store, cheap to clone (a pooled handle).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: Pool,
}

/// The concrete pool behind a [`Store`] (visible to the crate's other `store_*` modules).
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever concrete pool the store has; the body is
/// type-checked once per back end, so the same query code serves both.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Store {
    /// Opens the database at `url` (`sqlite:///path/lab.db`, created if missing, or
    /// `postgres://…`) and applies any pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(StoreError::InvalidUrl)?;
            Self::open_sqlite(options).await
        } else if lower.starts_with("postgres:") || lower.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await
                .map_err(StoreError::Connect)?;
            POSTGRES_MIGRATOR.run(&pool).await?;
            Ok(Store {
                pool: Pool::Postgres(pool),
            })
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// Opens (creating if missing) the SQLite database `data_dir/lab.db`.
    pub async fn open_in(data_dir: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new().filename(data_dir.join(SQLITE_FILE_NAME));
        Self::open_sqlite(options).await
    }

    async fn open_sqlite(options: SqliteConnectOptions) -> Result<Store, StoreError> {
        let filename = options.get_filename().to_path_buf();
        let in_memory = filename.as_os_str() == ":memory:" || filename.as_os_str().is_empty();
        if !in_memory && let Some(parent) = filename.parent().filter(|p| !p.as_os_str().is_empty())
        {
            // The database holds credentials (HA1s): a new directory is owner-only.
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(parent)
                .map_err(|source| StoreError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut pool_options = SqlitePoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        if in_memory {
            // Each connection to ":memory:" is a separate database: keep exactly one, forever.
            pool_options = pool_options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            pool_options = pool_options.max_connections(4);
        }
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        SQLITE_MIGRATOR.run(&pool).await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
        })
    }

    /// Which database engine this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every pooled connection (SQLite checkpoints its WAL); further calls fail.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }

    /// Creates a user, or replaces an existing user's credentials; stores only
    /// HA1 = H(username:domain:password) for MD5 and SHA-256 (the realm is the domain).
    pub async fn add_user(
        &self,
        username: &str,
        domain: &str,
        password: &str,
    ) -> Result<(), StoreError> {
        self.add_user_in_realm(username, domain, domain, password)
            .await
    }

    /// Like [`Store::add_user`], with the HA1s computed for a digest realm other than the
    /// domain (for a server configured with `auth.realm`).
    pub async fn add_user_in_realm(
        &self,
        username: &str,
        domain: &str,
        realm: &str,
        password: &str,
    ) -> Result<(), StoreError> {
        check_name("username", username)?;
        check_name("domain", domain)?;
        if realm.is_empty() || realm.contains('"') {
            return Err(StoreError::InvalidInput {
                field: "realm",
                reason: "must be non-empty and contain no double quote",
            });
        }
        let ha1_md5 = auth::ha1(Algorithm::Md5, username, realm, password);
        let ha1_sha256 = auth::ha1(Algorithm::Sha256, username, realm, password);
        let now = unix_now();
        const SQL: &str = "INSERT INTO users (username, domain, ha1_md5, ha1_sha256, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (username, domain) DO UPDATE SET \
             ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256, \
             created_at = excluded.created_at";
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(username)
                .bind(domain)
                .bind(&ha1_md5)
                .bind(&ha1_sha256)
                .bind(now)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// Deletes a user; returns whether one existed.
    pub async fn delete_user(&self, username: &str, domain: &str) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM users WHERE username = $1 AND domain = $2";
        let affected = with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(username)
                .bind(domain)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    /// Lists every user, ordered by domain then username.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        const SQL: &str =
            "SELECT username, domain, created_at FROM users ORDER BY domain, username";
        with_pool!(self, pool => {
            let rows = sqlx::query(SQL).fetch_all(pool).await.map_err(StoreError::Query)?;
            rows.iter()
                .map(|row| {
                    Ok(User {
                        username: row.try_get("username").map_err(StoreError::Query)?,
                        domain: row.try_get("domain").map_err(StoreError::Query)?,
                        created_at: row.try_get("created_at").map_err(StoreError::Query)?,
                    })
                })
                .collect()
        })
    }

    /// The stored HA1 (lowercase hex) of a user for a digest algorithm: MD5 and MD5-sess use
    /// the MD5 HA1, SHA-256 and SHA-256-sess the SHA-256 one. `None` if there is no such user.
    pub async fn ha1(
        &self,
        username: &str,
        domain: &str,
        algorithm: Algorithm,
    ) -> Result<Option<String>, StoreError> {
        let sql = match ha1_column(algorithm) {
            Ha1Column::Md5 => {
                "SELECT ha1_md5 AS ha1 FROM users WHERE username = $1 AND domain = $2"
            }
            Ha1Column::Sha256 => {
                "SELECT ha1_sha256 AS ha1 FROM users WHERE username = $1 AND domain = $2"
            }
        };
        with_pool!(self, pool => {
            let row = sqlx::query(sql)
                .bind(username)
                .bind(domain)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::Query)?;
            row.map(|r| r.try_get::<String, _>("ha1").map_err(StoreError::Query))
                .transpose()
        })
    }

    /// Whether a user exists.
    pub async fn user_exists(&self, username: &str, domain: &str) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT 1 AS one FROM users WHERE username = $1 AND domain = $2";
        let found = with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(username)
                .bind(domain)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::Query)?
                .is_some()
        });
        Ok(found)
    }

    /// Creates or replaces the binding for (`b.aor`, `b.contact`).
    pub async fn save_binding(&self, b: &Binding) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO bindings \
             (aor, contact, expires_at, q, call_id, cseq, flow, user_agent, instance, reg_id, features, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (aor, contact) DO UPDATE SET \
             expires_at = excluded.expires_at, q = excluded.q, call_id = excluded.call_id, \
             cseq = excluded.cseq, flow = excluded.flow, user_agent = excluded.user_agent, \
             instance = excluded.instance, reg_id = excluded.reg_id, features = excluded.features, \
             updated_at = excluded.updated_at";
        let q = b.q.map(f64::from);
        let cseq = i64::from(b.cseq);
        let reg_id = b.reg_id.map(i64::from);
        let now = unix_now();
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(&b.aor)
                .bind(&b.contact)
                .bind(b.expires_at)
                .bind(q)
                .bind(&b.call_id)
                .bind(cseq)
                .bind(b.flow.as_deref())
                .bind(b.user_agent.as_deref())
                .bind(b.instance.as_deref())
                .bind(reg_id)
                .bind(b.features.as_deref())
                .bind(now)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// Removes one binding (no error if it does not exist).
    pub async fn delete_binding(&self, aor: &str, contact: &str) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM bindings WHERE aor = $1 AND contact = $2";
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(aor)
                .bind(contact)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// Creates or replaces every binding in `bindings` in one transaction (multi-row statements);
    /// when a (`aor`, `contact`) pair appears more than once, the last one wins. Either all are
    /// written or, on error, none.
    pub async fn save_bindings(&self, bindings: &[Binding]) -> Result<(), StoreError> {
        self.write_bindings(bindings, &[]).await
    }

    /// Removes every (`aor`, `contact`) binding listed, in one transaction (missing ones are
    /// ignored). Either all are removed or, on error, none.
    pub async fn delete_bindings_batch(&self, keys: &[(String, String)]) -> Result<(), StoreError> {
        self.write_bindings(&[], keys).await
    }

    /// Applies `saves` (as [`Store::save_bindings`]) and `deletes` (as
    /// [`Store::delete_bindings_batch`]) in one transaction: deletes first, then saves, so a pair
    /// in both ends up saved. Either everything is applied or, on error, nothing.
    pub async fn write_bindings(
        &self,
        saves: &[Binding],
        deletes: &[(String, String)],
    ) -> Result<(), StoreError> {
        if saves.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        // ON CONFLICT DO UPDATE may not touch a row twice in one statement (PostgreSQL), so
        // duplicates within the batch are dropped, keeping the last.
        let saves = dedup_last(saves);
        let now = unix_now();
        let style = Placeholders::for_backend(self.backend());
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::Query)?;
            for chunk in batch_chunks(deletes) {
                let sql = delete_bindings_sql(chunk.len(), style);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (aor, contact) in chunk {
                    query = query.bind(aor.as_str()).bind(contact.as_str());
                }
                query.execute(&mut *tx).await.map_err(StoreError::Query)?;
            }
            for chunk in batch_chunks(&saves) {
                let sql = save_bindings_sql(chunk.len(), style);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for b in chunk {
                    query = query
                        .bind(b.aor.as_str())
                        .bind(b.contact.as_str())
                        .bind(b.expires_at)
                        .bind(b.q.map(f64::from))
                        .bind(b.call_id.as_str())
                        .bind(i64::from(b.cseq))
                        .bind(b.flow.as_deref())
                        .bind(b.user_agent.as_deref())
                        .bind(b.instance.as_deref())
                        .bind(b.reg_id.map(i64::from))
                        .bind(b.features.as_deref())
                        .bind(now);
                }
                query.execute(&mut *tx).await.map_err(StoreError::Query)?;
            }
            tx.commit().await.map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// Removes every binding of an address-of-record (`Contact: *`).
    pub async fn delete_bindings(&self, aor: &str) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM bindings WHERE aor = $1";
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(aor)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// Every binding still valid at `now_unix` (expiring strictly later), ordered by AoR and contact.
    pub async fn load_bindings(&self, now_unix: i64) -> Result<Vec<Binding>, StoreError> {
        const SQL: &str = "SELECT aor, contact, expires_at, q, call_id, cseq, flow, user_agent, \
             instance, reg_id, features FROM bindings WHERE expires_at > $1 ORDER BY aor, contact";
        with_pool!(self, pool => {
            let rows = sqlx::query(SQL)
                .bind(now_unix)
                .fetch_all(pool)
                .await
                .map_err(StoreError::Query)?;
            rows.iter()
                .map(|row| {
                    let q: Option<f64> = row.try_get("q").map_err(StoreError::Query)?;
                    let cseq: i64 = row.try_get("cseq").map_err(StoreError::Query)?;
                    let reg_id: Option<i64> = row.try_get("reg_id").map_err(StoreError::Query)?;
                    Ok(Binding {
                        aor: row.try_get("aor").map_err(StoreError::Query)?,
                        contact: row.try_get("contact").map_err(StoreError::Query)?,
                        expires_at: row.try_get("expires_at").map_err(StoreError::Query)?,
                        // q is a preference in [0, 1]: narrowing to f32 is the stored precision.
                        #[allow(clippy::cast_possible_truncation)]
                        q: q.map(|v| v as f32),
                        call_id: row.try_get("call_id").map_err(StoreError::Query)?,
                        cseq: to_u32("cseq", cseq)?,
                        flow: row.try_get("flow").map_err(StoreError::Query)?,
                        user_agent: row.try_get("user_agent").map_err(StoreError::Query)?,
                        instance: row.try_get("instance").map_err(StoreError::Query)?,
                        reg_id: reg_id.map(|v| to_u32("reg_id", v)).transpose()?,
                        features: row.try_get("features").map_err(StoreError::Query)?,
                    })
                })
                .collect()
        })
    }

    /// Deletes every binding expired at `now_unix` (expiring at or before it); returns how many.
    pub async fn purge_expired(&self, now_unix: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM bindings WHERE expires_at <= $1";
        let affected = with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(now_unix)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?
                .rows_affected()
        });
        Ok(affected)
    }

    /// Records a call, replacing any earlier record with the same Call-ID.
    pub async fn insert_cdr(&self, cdr: &Cdr) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO cdrs \
             (call_id, caller, callee, start_at, answer_at, end_at, cause, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (call_id) DO UPDATE SET \
             caller = excluded.caller, callee = excluded.callee, start_at = excluded.start_at, \
             answer_at = excluded.answer_at, end_at = excluded.end_at, cause = excluded.cause, \
             status = excluded.status";
        let status = cdr.status.map(i32::from);
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(&cdr.call_id)
                .bind(&cdr.caller)
                .bind(&cdr.callee)
                .bind(cdr.start_at)
                .bind(cdr.answer_at)
                .bind(cdr.end_at)
                .bind(&cdr.cause)
                .bind(status)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }

    /// The most recent `limit` call records, newest first (a negative limit is treated as 0).
    pub async fn list_cdrs(&self, limit: i64) -> Result<Vec<Cdr>, StoreError> {
        const SQL: &str = "SELECT call_id, caller, callee, start_at, answer_at, end_at, cause, status \
             FROM cdrs ORDER BY start_at DESC, call_id DESC LIMIT $1";
        let limit = limit.max(0);
        with_pool!(self, pool => {
            let rows = sqlx::query(SQL)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(StoreError::Query)?;
            rows.iter()
                .map(|row| {
                    let status: Option<i32> = row.try_get("status").map_err(StoreError::Query)?;
                    Ok(Cdr {
                        call_id: row.try_get("call_id").map_err(StoreError::Query)?,
                        caller: row.try_get("caller").map_err(StoreError::Query)?,
                        callee: row.try_get("callee").map_err(StoreError::Query)?,
                        start_at: row.try_get("start_at").map_err(StoreError::Query)?,
                        answer_at: row.try_get("answer_at").map_err(StoreError::Query)?,
                        end_at: row.try_get("end_at").map_err(StoreError::Query)?,
                        cause: row.try_get("cause").map_err(StoreError::Query)?,
                        status: status
                            .map(|v| {
                                u16::try_from(v).map_err(|_| StoreError::OutOfRange {
                                    column: "status",
                                    value: i64::from(v),
                                })
                            })
                            .transpose()?,
                    })
                })
                .collect()
        })
    }

    /// Reads a server state value (e.g. `demo_users_created`).
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT value FROM meta WHERE key = $1";
        with_pool!(self, pool => {
            let row = sqlx::query(SQL)
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::Query)?;
            row.map(|r| r.try_get::<String, _>("value").map_err(StoreError::Query))
                .transpose()
        })
    }

    /// Writes a server state value, replacing any earlier one.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value";
        with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(key)
                .bind(value)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?;
        });
        Ok(())
    }
}

/// Which stored HA1 column answers a digest algorithm.
enum Ha1Column {
    Md5,
    Sha256,
}

fn ha1_column(algorithm: Algorithm) -> Ha1Column {
    match algorithm.base() {
        Algorithm::Md5 | Algorithm::Md5Sess => Ha1Column::Md5,
        Algorithm::Sha256 | Algorithm::Sha256Sess => Ha1Column::Sha256,
    }
}

/// Most rows one multi-row binding statement carries (11 parameters each: far below the
/// SQLite and PostgreSQL parameter limits).
const MAX_BATCH_ROWS: usize = 128;

/// Splits `items` into chunks of [`MAX_BATCH_ROWS`] and then power-of-two sizes, so that the
/// statements built for them take at most eight shapes and stay in the prepared-statement cache.
fn batch_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = if items.len() >= MAX_BATCH_ROWS {
            MAX_BATCH_ROWS
        } else {
            // The largest power of two not above the length.
            1 << (usize::BITS - 1 - items.len().leading_zeros())
        };
        let (head, tail) = items.split_at(n);
        items = tail;
        Some(head)
    })
}

/// How bind parameters are written in a generated statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` (SQLite: sqlx resolves each named or numbered parameter through
    /// `sqlite3_bind_parameter_name`, a linear scan, which makes wide statements quadratic).
    Anonymous,
}

impl Placeholders {
    fn for_backend(backend: Backend) -> Placeholders {
        match backend {
            Backend::Sqlite => Placeholders::Anonymous,
            Backend::Postgres => Placeholders::Numbered,
        }
    }
}

/// `INSERT … VALUES (…), (…) ON CONFLICT … DO UPDATE` for `rows` bindings.
fn save_bindings_sql(rows: usize, style: Placeholders) -> String {
    const COLUMNS: usize = 12;
    let mut sql = String::with_capacity(400 + rows * 60);
    sql.push_str(
        "INSERT INTO bindings \
         (aor, contact, expires_at, q, call_id, cseq, flow, user_agent, instance, reg_id, features, updated_at) \
         VALUES ",
    );
    push_placeholder_rows(&mut sql, rows, COLUMNS, style);
    sql.push_str(
        " ON CONFLICT (aor, contact) DO UPDATE SET \
         expires_at = excluded.expires_at, q = excluded.q, call_id = excluded.call_id, \
         cseq = excluded.cseq, flow = excluded.flow, user_agent = excluded.user_agent, \
         instance = excluded.instance, reg_id = excluded.reg_id, features = excluded.features, \
             updated_at = excluded.updated_at",
    );
    sql
}

/// `DELETE … WHERE (aor, contact) IN (VALUES (…), …)` for `rows` keys.
fn delete_bindings_sql(rows: usize, style: Placeholders) -> String {
    let mut sql = String::with_capacity(64 + rows * 12);
    sql.push_str("DELETE FROM bindings WHERE (aor, contact) IN (VALUES ");
    push_placeholder_rows(&mut sql, rows, 2, style);
    sql.push(')');
    sql
}

/// Appends `($1, $2, …), ($k, …)` (or `(?, ?, …), …`): `rows` tuples of `columns` placeholders.
fn push_placeholder_rows(sql: &mut String, rows: usize, columns: usize, style: Placeholders) {
    use std::fmt::Write as _;
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            match style {
                // Writing to a String cannot fail.
                Placeholders::Numbered => {
                    let _ = write!(sql, "${n}");
                }
                Placeholders::Anonymous => sql.push('?'),
            }
        }
        sql.push(')');
    }
}

/// The bindings with each (`aor`, `contact`) pair kept once, at its last occurrence.
fn dedup_last(bindings: &[Binding]) -> Vec<&Binding> {
    let mut seen: std::collections::HashSet<(&str, &str)> =
        std::collections::HashSet::with_capacity(bindings.len());
    let mut out: Vec<&Binding> = bindings
        .iter()
        .rev()
        .filter(|b| seen.insert((b.aor.as_str(), b.contact.as_str())))
        .collect();
    out.reverse();
    out
}

fn check_name(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::InvalidInput {
            field,
            reason: "must not be empty",
        });
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(StoreError::InvalidInput {
            field,
            reason: "must not contain whitespace or control characters",
        });
    }
    Ok(())
}

fn to_u32(column: &'static str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::OutOfRange { column, value })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("username", "alice").is_ok());
        assert!(check_name("username", "").is_err());
        assert!(check_name("username", "al ice").is_err());
        assert!(check_name("username", "al\nice").is_err());
    }

    fn binding(aor: &str, contact: &str, expires_at: i64) -> Binding {
        Binding {
            aor: aor.to_owned(),
            contact: contact.to_owned(),
            expires_at,
            q: None,
            call_id: "c".to_owned(),
            cseq: 1,
            flow: None,
            user_agent: None,
            instance: None,
            reg_id: None,
            features: None,
        }
    }

    #[tokio::test]
    async fn a_failing_batch_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await.unwrap();
        let t = unix_now() + 600;
        store
            .save_bindings(&[binding("sip:a@x", "sip:a@192.0.2.1", t)])
            .await
            .unwrap();
        let Pool::Sqlite(pool) = &store.pool else {
            panic!("an SQLite store");
        };
        sqlx::query(
            "CREATE TRIGGER reject_bad BEFORE INSERT ON bindings \
             WHEN NEW.contact = 'sip:bad@192.0.2.9' BEGIN SELECT RAISE(ABORT, 'rejected'); END",
        )
        .execute(pool)
        .await
        .unwrap();
        // The delete and the first 200 saves precede the failing row: all are rolled back.
        let mut saves: Vec<Binding> = (0..200)
            .map(|i| binding(&format!("sip:u{i}@x"), "sip:u@192.0.2.2", t))
            .collect();
        saves.push(binding("sip:b@x", "sip:bad@192.0.2.9", t));
        let deletes = [("sip:a@x".to_owned(), "sip:a@192.0.2.1".to_owned())];
        assert!(store.write_bindings(&saves, &deletes).await.is_err());
        let rows = store.load_bindings(0).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].aor, "sip:a@x");
        store.close().await;
    }

    #[test]
    fn batches_take_few_shapes() {
        let items: Vec<u32> = (0..300).collect();
        let sizes: Vec<usize> = batch_chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, [128, 128, 32, 8, 4]);
        let joined: Vec<u32> = batch_chunks(&items).flatten().copied().collect();
        assert_eq!(joined, items);
        assert_eq!(batch_chunks::<u32>(&[]).count(), 0);
        assert_eq!(
            batch_chunks(&[1]).map(<[i32]>::len).collect::<Vec<_>>(),
            [1]
        );
    }

    #[test]
    fn placeholders_are_numbered_across_rows() {
        assert_eq!(
            delete_bindings_sql(2, Placeholders::Numbered),
            "DELETE FROM bindings WHERE (aor, contact) IN (VALUES ($1, $2), ($3, $4))"
        );
        assert_eq!(
            delete_bindings_sql(2, Placeholders::Anonymous),
            "DELETE FROM bindings WHERE (aor, contact) IN (VALUES (?, ?), (?, ?))"
        );
        let sql = save_bindings_sql(3, Placeholders::Numbered);
        assert!(
            sql.contains(
                "($25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36) ON CONFLICT"
            )
        );
    }
}
