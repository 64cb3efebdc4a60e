//! XCAP documents in the store (RFC 4825): whole documents keyed by application usage, user and
//! name, with their entity tags. Conditional writes are single statements, so two clients racing
//! with the same `If-Match` cannot both win.

use sqlx::Row;

use crate::store::{Store, StoreError, with_pool};

/// One stored XCAP document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XcapDocument {
    /// The application usage (`pres-rules`, `resource-lists`, …).
    pub auid: String,
    /// The owner (XCAP User Identifier, `user@domain`).
    pub xui: String,
    /// The document name inside the user's directory.
    pub name: String,
    /// The entity tag of this version (without quotes).
    pub etag: String,
    /// The MIME type the document was stored with.
    pub content_type: String,
    /// The document bytes.
    pub body: Vec<u8>,
    /// When this version was written (Unix seconds).
    pub updated_at: i64,
}

/// The precondition of a write or delete (HTTP `If-Match` / `If-None-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XcapCondition {
    /// No precondition.
    None,
    /// Only if the stored version has this entity tag.
    IfMatch(String),
    /// Only if a document exists at all (`If-Match: *`).
    IfExists,
    /// Only if no document exists (`If-None-Match: *`).
    IfAbsent,
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XcapWrite {
    /// A new document was created.
    Created,
    /// An existing document was replaced.
    Replaced,
    /// The precondition failed; nothing changed.
    PreconditionFailed,
}

/// What a conditional delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XcapDelete {
    /// The document was removed.
    Deleted,
    /// There was no such document.
    NotFound,
    /// The precondition failed; nothing changed.
    PreconditionFailed,
}

const SELECT: &str = "SELECT auid, xui, name, etag, content_type, body, updated_at \
     FROM xcap_documents WHERE auid = $1 AND xui = $2 AND name = $3";
const INSERT_IF_ABSENT: &str = "INSERT INTO xcap_documents \
     (auid, xui, name, etag, content_type, body, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (auid, xui, name) DO NOTHING";
const UPDATE_ANY: &str = "UPDATE xcap_documents SET etag = $4, content_type = $5, body = $6, \
     updated_at = $7 WHERE auid = $1 AND xui = $2 AND name = $3";
const UPDATE_IF_MATCH: &str = "UPDATE xcap_documents SET etag = $4, content_type = $5, body = $6, \
     updated_at = $7 WHERE auid = $1 AND xui = $2 AND name = $3 AND etag = $8";
const DELETE_ANY: &str = "DELETE FROM xcap_documents WHERE auid = $1 AND xui = $2 AND name = $3";
const DELETE_IF_MATCH: &str =
    "DELETE FROM xcap_documents WHERE auid = $1 AND xui = $2 AND name = $3 AND etag = $4";

impl Store {
    /// The document `auid`/`xui`/`name`, if stored.
    pub async fn xcap_get(
        &self,
        auid: &str,
        xui: &str,
        name: &str,
    ) -> Result<Option<XcapDocument>, StoreError> {
        with_pool!(self, pool => {
            let row = sqlx::query(SELECT)
                .bind(auid)
                .bind(xui)
                .bind(name)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::Query)?;
            row.map(|r| -> Result<XcapDocument, StoreError> {
                Ok(XcapDocument {
                    auid: r.try_get("auid").map_err(StoreError::Query)?,
                    xui: r.try_get("xui").map_err(StoreError::Query)?,
                    name: r.try_get("name").map_err(StoreError::Query)?,
                    etag: r.try_get("etag").map_err(StoreError::Query)?,
                    content_type: r.try_get("content_type").map_err(StoreError::Query)?,
                    body: r.try_get("body").map_err(StoreError::Query)?,
                    updated_at: r.try_get("updated_at").map_err(StoreError::Query)?,
                })
            })
            .transpose()
        })
    }

    /// Writes `doc` (its `etag` is the new version's tag) if `condition` holds.
    pub async fn xcap_put(
        &self,
        doc: &XcapDocument,
        condition: &XcapCondition,
    ) -> Result<XcapWrite, StoreError> {
        match condition {
            XcapCondition::IfAbsent => Ok(if self.xcap_insert(doc).await? {
                XcapWrite::Created
            } else {
                XcapWrite::PreconditionFailed
            }),
            XcapCondition::IfMatch(etag) => Ok(if self.xcap_update(doc, Some(etag)).await? {
                XcapWrite::Replaced
            } else {
                XcapWrite::PreconditionFailed
            }),
            XcapCondition::IfExists => Ok(if self.xcap_update(doc, None).await? {
                XcapWrite::Replaced
            } else {
                XcapWrite::PreconditionFailed
            }),
            XcapCondition::None => {
                // Insert, else replace; a delete racing in between makes the update miss, so
                // try again (a bounded number of times).
                for _ in 0..3 {
                    if self.xcap_insert(doc).await? {
                        return Ok(XcapWrite::Created);
                    }
                    if self.xcap_update(doc, None).await? {
                        return Ok(XcapWrite::Replaced);
                    }
                }
                Err(StoreError::InvalidInput {
                    field: "xcap document",
                    reason: "concurrent writers kept replacing and deleting it",
                })
            }
        }
    }

    /// Deletes the document if `condition` holds (`IfAbsent` never deletes anything).
    pub async fn xcap_delete(
        &self,
        auid: &str,
        xui: &str,
        name: &str,
        condition: &XcapCondition,
    ) -> Result<XcapDelete, StoreError> {
        let affected = match condition {
            XcapCondition::IfAbsent => {
                return Ok(if self.xcap_get(auid, xui, name).await?.is_some() {
                    XcapDelete::PreconditionFailed
                } else {
                    XcapDelete::NotFound
                });
            }
            XcapCondition::IfMatch(etag) => with_pool!(self, pool => {
                sqlx::query(DELETE_IF_MATCH)
                    .bind(auid)
                    .bind(xui)
                    .bind(name)
                    .bind(etag)
                    .execute(pool)
                    .await
                    .map_err(StoreError::Query)?
                    .rows_affected()
            }),
            XcapCondition::None | XcapCondition::IfExists => with_pool!(self, pool => {
                sqlx::query(DELETE_ANY)
                    .bind(auid)
                    .bind(xui)
                    .bind(name)
                    .execute(pool)
                    .await
                    .map_err(StoreError::Query)?
                    .rows_affected()
            }),
        };
        if affected > 0 {
            return Ok(XcapDelete::Deleted);
        }
        let exists = self.xcap_get(auid, xui, name).await?.is_some();
        Ok(
            if exists && matches!(condition, XcapCondition::IfMatch(_)) {
                XcapDelete::PreconditionFailed
            } else {
                XcapDelete::NotFound
            },
        )
    }

    /// How many documents `xui` stores, over all application usages.
    pub async fn xcap_count(&self, xui: &str) -> Result<usize, StoreError> {
        const SQL: &str = "SELECT COUNT(*) AS n FROM xcap_documents WHERE xui = $1";
        let n: i64 = with_pool!(self, pool => {
            sqlx::query(SQL)
                .bind(xui)
                .fetch_one(pool)
                .await
                .map_err(StoreError::Query)?
                .try_get("n")
                .map_err(StoreError::Query)?
        });
        usize::try_from(n).map_err(|_| StoreError::OutOfRange {
            column: "count",
            value: n,
        })
    }

    async fn xcap_insert(&self, doc: &XcapDocument) -> Result<bool, StoreError> {
        let affected = with_pool!(self, pool => {
            sqlx::query(INSERT_IF_ABSENT)
                .bind(&doc.auid)
                .bind(&doc.xui)
                .bind(&doc.name)
                .bind(&doc.etag)
                .bind(&doc.content_type)
                .bind(&doc.body)
                .bind(doc.updated_at)
                .execute(pool)
                .await
                .map_err(StoreError::Query)?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    async fn xcap_update(
        &self,
        doc: &XcapDocument,
        etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let affected = with_pool!(self, pool => {
            let query = match etag {
                Some(_) => sqlx::query(UPDATE_IF_MATCH),
                None => sqlx::query(UPDATE_ANY),
            };
            let mut query = query
                .bind(&doc.auid)
                .bind(&doc.xui)
                .bind(&doc.name)
                .bind(&doc.etag)
                .bind(&doc.content_type)
                .bind(&doc.body)
                .bind(doc.updated_at);
            if let Some(e) = etag {
                query = query.bind(e);
            }
            query.execute(pool).await.map_err(StoreError::Query)?.rows_affected()
        });
        Ok(affected > 0)
    }
}
