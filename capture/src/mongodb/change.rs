//! Change-stream documents to Ferry's events. Pure, so it is proven on real
//! change events recorded from MongoDB's documentation and test suites
//! (`fixtures/change_events.json`, each with its source).
//!
//! | operationType | published |
//! |---|---|
//! | `insert` | `op = "c"`, `after` = `fullDocument` |
//! | `update` | `op = "u"`, `updateDescription`; `after` = `fullDocument` when asked for (`--full-document`); `before` = the pre-image when asked for (`--before`) |
//! | `replace` | `op = "u"`, `after` = the new document |
//! | `delete` | `op = "d"` (then a tombstone); `before` = the pre-image when asked for |
//! | `drop`, `rename` (of the old name) | `op = "t"`: the collection is gone, a target empties it |
//! | `dropDatabase` | nothing more: each collection's `drop` came first |
//! | `invalidate` | nothing: the stream reopens after it |
//! | anything else (index DDL with expanded events) | nothing |
//!
//! `source.ts_ms` is the event's `wallTime` (MongoDB 6.0+), else its cluster
//! time's seconds; `source.ord` is the cluster time's increment; `lsid` is the
//! session's UUID, and `lsid` with `txnNumber` identify a multi-document
//! transaction (`<lsid>:<txnNumber>`).

use bson::{Bson, Document};
use ferry_core::document::{extjson, DocumentEvent, UpdateDescription};
use ferry_core::envelope::{Op, Snapshot, SourceDetail, SourceInfo};
use ferry_core::meta::TableId;
use ferry_core::position::{ClusterTime, ResumeToken};

use crate::now_ms;

/// What a change-stream document means for the topics.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A document changed. `gone`: an update whose document was deleted before
    /// it could be looked up (`after` is null; its delete follows).
    Document {
        collection: TableId,
        event: DocumentEvent,
        gone: bool,
    },
    /// The collection was dropped or renamed away (`event` is its truncate);
    /// `renamed_to` names the new name of a rename.
    Gone {
        collection: TableId,
        event: DocumentEvent,
        renamed_to: Option<TableId>,
    },
    /// The stream ended (`invalidate`): it is opened again after this event.
    Invalidated,
    /// Nothing to publish (`dropDatabase`, DDL of expanded events).
    Nothing,
}

/// One change-stream document, read.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// Resume after it here.
    pub token: ResumeToken,
    pub cluster_time: ClusterTime,
    /// `<lsid>:<txnNumber>` of a multi-document transaction.
    pub transaction: Option<String>,
    pub change: Change,
}

/// A change-stream document that is not what MongoDB sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("change event {token}: {reason}")]
pub struct Malformed {
    pub token: String,
    pub reason: String,
}

/// How the stream was opened, which the events' meaning depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading<'a> {
    pub prefix: &'a str,
    /// `fullDocument` was asked for on updates (`updateLookup` or `required`).
    pub full_document: bool,
}

/// The resume token of a change-stream document (`_id._data`).
pub fn token(doc: &Document) -> Option<ResumeToken> {
    match doc.get_document("_id").ok()?.get("_data")? {
        Bson::String(hex) => Some(ResumeToken(hex.clone())),
        _ => None,
    }
}

/// Reads one change-stream document.
pub fn read(doc: &Document, how: Reading<'_>) -> Result<StreamEvent, Malformed> {
    let token = token(doc).ok_or_else(|| Malformed {
        token: "(none)".into(),
        reason: "no _id._data resume token".into(),
    })?;
    let bad = |reason: &str| Malformed {
        token: token.0.clone(),
        reason: reason.to_owned(),
    };
    let operation = doc.get_str("operationType").map_err(|_| bad("no operationType"))?;
    let cluster_time = match doc.get("clusterTime") {
        Some(Bson::Timestamp(t)) => ClusterTime {
            t: t.time,
            i: t.increment,
        },
        _ => return Err(bad("no clusterTime")),
    };
    let ts_ms = match doc.get("wallTime") {
        Some(Bson::DateTime(d)) => d.timestamp_millis(),
        _ => i64::from(cluster_time.t) * 1000,
    };
    let lsid = doc.get_document("lsid").ok().and_then(|l| l.get("id")).map(session_id);
    let txn_number = match doc.get("txnNumber") {
        Some(Bson::Int64(n)) => Some(*n),
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        _ => None,
    };
    let transaction = match (&lsid, txn_number) {
        (Some(l), Some(n)) => Some(format!("{l}:{n}")),
        _ => None,
    };
    let ns = doc.get_document("ns").ok();
    let collection = ns.and_then(|ns| Some(TableId::new(ns.get_str("db").ok()?, ns.get_str("coll").ok()?)));
    let base = |collection: &TableId, op: Op| DocumentEvent {
        op,
        id: String::new(),
        before: None,
        after: None,
        update: None,
        source: SourceInfo {
            name: how.prefix.to_owned(),
            ts_ms,
            snapshot: Snapshot::False,
            db: collection.schema.clone(),
            detail: SourceDetail::Mongodb {
                collection: collection.table.clone(),
                ord: cluster_time.i as i32,
                resume_token: Some(token.0.clone()),
                lsid: lsid.clone(),
                txn_number,
            },
        },
        ts_ms: now_ms(),
        transaction: None,
    };
    let document = |name: &str| match doc.get(name) {
        Some(Bson::Document(d)) => Some(extjson::canonical(&Bson::Document(d.clone()))),
        _ => None,
    };
    let change = match operation {
        "insert" | "update" | "replace" | "delete" => {
            let collection = collection.ok_or_else(|| bad("no ns.db and ns.coll"))?;
            let id = doc
                .get_document("documentKey")
                .ok()
                .and_then(|k| k.get("_id"))
                .ok_or_else(|| bad("no documentKey._id"))?;
            let op = match operation {
                "insert" => Op::Create,
                "delete" => Op::Delete,
                _ => Op::Update,
            };
            let mut event = base(&collection, op);
            event.id = extjson::relaxed(id);
            event.before = document("fullDocumentBeforeChange");
            if op != Op::Delete {
                event.after = document("fullDocument");
                if event.after.is_none() && op != Op::Update {
                    return Err(bad(&format!("{operation} without fullDocument")));
                }
            }
            if operation == "update" {
                event.update = Some(update_description(doc).ok_or_else(|| bad("update without updateDescription"))?);
            }
            let gone = op == Op::Update && how.full_document && event.after.is_none();
            Change::Document {
                collection,
                event,
                gone,
            }
        }
        "drop" | "rename" => {
            let collection = collection.ok_or_else(|| bad("no ns.db and ns.coll"))?;
            let renamed_to = match operation {
                "rename" => {
                    let to = doc.get_document("to").map_err(|_| bad("rename without to"))?;
                    Some(TableId::new(
                        to.get_str("db").map_err(|_| bad("rename without to.db"))?,
                        to.get_str("coll").map_err(|_| bad("rename without to.coll"))?,
                    ))
                }
                _ => None,
            };
            Change::Gone {
                event: base(&collection, Op::Truncate),
                collection,
                renamed_to,
            }
        }
        "invalidate" => Change::Invalidated,
        _ => Change::Nothing,
    };
    Ok(StreamEvent {
        token,
        cluster_time,
        transaction,
        change,
    })
}

/// A session id as text: the UUID of `lsid.id`, else its extended JSON.
fn session_id(id: &Bson) -> String {
    match id {
        Bson::Binary(b) if b.bytes.len() == 16 => uuid::Uuid::from_slice(&b.bytes)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| extjson::relaxed(id)),
        other => extjson::relaxed(other),
    }
}

fn update_description(doc: &Document) -> Option<UpdateDescription> {
    let d = doc.get_document("updateDescription").ok()?;
    let updated = d.get_document("updatedFields").cloned().unwrap_or_default();
    let removed_fields = match d.get("removedFields") {
        Some(Bson::Array(a)) => a.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let truncated_arrays = match d.get("truncatedArrays") {
        Some(Bson::Array(a)) => a
            .iter()
            .filter_map(|t| {
                let t = t.as_document()?;
                let size = match t.get("newSize")? {
                    Bson::Int32(n) => *n,
                    Bson::Int64(n) => i32::try_from(*n).ok()?,
                    _ => return None,
                };
                Some((t.get_str("field").ok()?.to_owned(), size))
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(UpdateDescription {
        removed_fields,
        updated_fields: extjson::canonical(&Bson::Document(updated)),
        truncated_arrays,
    })
}

/// The `op = "r"` event of a document read by the snapshot.
pub fn read_event(prefix: &str, collection: &TableId, doc: Document, ts_ms: i64) -> DocumentEvent {
    let id = doc.get("_id").map(extjson::relaxed).unwrap_or_default();
    DocumentEvent {
        op: Op::Read,
        id,
        before: None,
        after: Some(extjson::canonical(&Bson::Document(doc))),
        update: None,
        source: SourceInfo {
            name: prefix.to_owned(),
            ts_ms,
            snapshot: Snapshot::True,
            db: collection.schema.clone(),
            detail: SourceDetail::Mongodb {
                collection: collection.table.clone(),
                ord: 0,
                resume_token: None,
                lsid: None,
                txn_number: None,
            },
        },
        ts_ms: now_ms(),
        transaction: None,
    }
}
