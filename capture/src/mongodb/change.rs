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
use ferry_core::envelope::{Op, SmolStr, Snapshot, SourceDetail, SourceInfo};
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
            name: SmolStr::new(how.prefix),
            ts_ms,
            snapshot: Snapshot::False,
            db: SmolStr::new(&collection.schema),
            detail: SourceDetail::Mongodb {
                collection: SmolStr::new(&collection.table),
                ord: cluster_time.i as i32,
                resume_token: Some(SmolStr::new(&token.0)),
                lsid: lsid.as_deref().map(SmolStr::new),
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
            name: SmolStr::new(prefix),
            ts_ms,
            snapshot: Snapshot::True,
            db: SmolStr::new(&collection.schema),
            detail: SourceDetail::Mongodb {
                collection: SmolStr::new(&collection.table),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bson::doc;
    use ferry_core::document::{relaxed, CollectionCodec};
    use serde_json::Value as Json;

    /// Recorded change events and the BSON corpus; each names its source.
    const FIXTURES: &str = include_str!("fixtures/change_events.json");

    fn fixtures(part: &str) -> Vec<Json> {
        let all: Json = serde_json::from_str(FIXTURES).unwrap();
        all[part].as_array().unwrap().clone()
    }

    /// Extended JSON as BSON, by the bson crate's own reader.
    fn bson(json: &Json) -> Bson {
        serde_json::from_str(&json.to_string()).unwrap()
    }

    fn reading(full_document: bool) -> Reading<'static> {
        Reading {
            prefix: "p",
            full_document,
        }
    }

    fn canonical_of(doc: &Document, field: &str) -> Option<String> {
        match doc.get(field) {
            Some(Bson::Document(d)) => Some(extjson::canonical(&Bson::Document(d.clone()))),
            _ => None,
        }
    }

    #[test]
    fn every_recorded_event_reads_as_its_operation_says() {
        let mut seen = std::collections::BTreeSet::new();
        for fixture in fixtures("events") {
            let name = fixture["name"].as_str().unwrap();
            let Bson::Document(doc) = bson(&fixture["event"]) else {
                panic!("{name}: not a document")
            };
            let read = read(&doc, reading(true)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let operation = doc.get_str("operationType").unwrap();
            seen.insert(operation.to_owned());
            assert_eq!(
                read.token.0,
                doc.get_document("_id").unwrap().get_str("_data").unwrap(),
                "{name}"
            );
            let Bson::Timestamp(t) = doc.get("clusterTime").unwrap() else {
                panic!("{name}")
            };
            assert_eq!(
                (read.cluster_time.t, read.cluster_time.i),
                (t.time, t.increment),
                "{name}"
            );
            assert_eq!(
                read.transaction.is_some(),
                doc.contains_key("lsid") && doc.contains_key("txnNumber"),
                "{name}"
            );
            let ns = doc.get_document("ns").ok();
            match (operation, read.change) {
                (
                    "insert" | "update" | "replace" | "delete",
                    Change::Document {
                        collection,
                        event,
                        gone,
                    },
                ) => {
                    let ns = ns.unwrap();
                    assert_eq!(
                        collection,
                        TableId::new(ns.get_str("db").unwrap(), ns.get_str("coll").unwrap())
                    );
                    let key = doc.get_document("documentKey").unwrap().get("_id").unwrap();
                    assert_eq!(event.id, extjson::relaxed(key), "{name}");
                    assert_eq!(event.before, canonical_of(&doc, "fullDocumentBeforeChange"), "{name}");
                    let expected_op = match operation {
                        "insert" => Op::Create,
                        "delete" => Op::Delete,
                        _ => Op::Update,
                    };
                    assert_eq!(event.op, expected_op, "{name}");
                    if operation == "delete" {
                        assert_eq!(event.after, None, "{name}");
                    } else {
                        assert_eq!(event.after, canonical_of(&doc, "fullDocument"), "{name}");
                    }
                    assert_eq!(gone, operation == "update" && event.after.is_none(), "{name}");
                    if operation == "update" {
                        let u = event.update.as_ref().unwrap();
                        let d = doc.get_document("updateDescription").unwrap();
                        assert_eq!(
                            u.updated_fields,
                            extjson::canonical(&Bson::Document(d.get_document("updatedFields").unwrap().clone())),
                            "{name}"
                        );
                        let removed: Vec<String> = d
                            .get_array("removedFields")
                            .map(|a| a.iter().map(|f| f.as_str().unwrap().to_owned()).collect())
                            .unwrap_or_default();
                        assert_eq!(u.removed_fields, removed, "{name}");
                        let truncated = d.get_array("truncatedArrays").map(Vec::len).unwrap_or(0);
                        assert_eq!(u.truncated_arrays.len(), truncated, "{name}");
                    }
                    let SourceDetail::Mongodb {
                        collection: c,
                        ord,
                        resume_token,
                        txn_number,
                        ..
                    } = &event.source.detail
                    else {
                        panic!("{name}")
                    };
                    assert_eq!(
                        (c.as_str(), *ord as u32),
                        (collection.table.as_str(), t.increment),
                        "{name}"
                    );
                    assert_eq!(resume_token.as_deref(), Some(read.token.0.as_str()), "{name}");
                    assert_eq!(txn_number.is_some(), doc.contains_key("txnNumber"), "{name}");
                    let ts = match doc.get("wallTime") {
                        Some(Bson::DateTime(w)) => w.timestamp_millis(),
                        _ => i64::from(t.time) * 1000,
                    };
                    assert_eq!(event.source.ts_ms, ts, "{name}");
                    // The event survives Avro, and a target can read its documents.
                    let codec = CollectionCodec::new("p", &collection).unwrap();
                    let bytes = codec.encode_value(&event).unwrap();
                    assert_eq!(codec.decode_value(event.id.clone(), &bytes).unwrap(), event, "{name}");
                    for d in event.after.iter().chain(&event.before) {
                        relaxed(d).unwrap_or_else(|e| panic!("{name}: {e}"));
                    }
                }
                (
                    "drop",
                    Change::Gone {
                        event,
                        renamed_to: None,
                        ..
                    },
                ) => assert_eq!(event.op, Op::Truncate),
                (
                    "rename",
                    Change::Gone {
                        event,
                        renamed_to: Some(to),
                        ..
                    },
                ) => {
                    assert_eq!(event.op, Op::Truncate);
                    let d = doc.get_document("to").unwrap();
                    assert_eq!(to, TableId::new(d.get_str("db").unwrap(), d.get_str("coll").unwrap()));
                }
                ("dropDatabase", Change::Nothing) | ("invalidate", Change::Invalidated) => {}
                (op, other) => panic!("{name}: {op} read as {other:?}"),
            }
        }
        let every: std::collections::BTreeSet<String> = [
            "insert",
            "update",
            "replace",
            "delete",
            "drop",
            "rename",
            "dropDatabase",
            "invalidate",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(seen, every, "the fixtures cover every operation type");
    }

    #[test]
    fn updates_without_a_looked_up_document_are_gone_only_when_one_was_asked_for() {
        let fixture = fixtures("events").into_iter().find(|f| f["name"] == "update").unwrap();
        let Bson::Document(doc) = bson(&fixture["event"]) else {
            panic!()
        };
        assert!(!doc.contains_key("fullDocument"));
        for (asked, gone_expected) in [(true, true), (false, false)] {
            let Change::Document { gone, event, .. } = read(&doc, reading(asked)).unwrap().change else {
                panic!()
            };
            assert_eq!((gone, event.after), (gone_expected, None));
        }
    }

    #[test]
    fn transaction_events_share_one_id_of_the_session_uuid_and_number() {
        let ids: Vec<String> = fixtures("events")
            .into_iter()
            .filter(|f| f["name"].as_str().unwrap().starts_with("txn_"))
            .map(|f| {
                let Bson::Document(doc) = bson(&f["event"]) else {
                    panic!()
                };
                read(&doc, reading(true)).unwrap().transaction.unwrap()
            })
            .collect();
        assert!(ids.len() >= 2);
        assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
        let (uuid, number) = ids[0].rsplit_once(':').unwrap();
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{uuid}");
        assert!(number.parse::<i64>().is_ok(), "{number}");
    }

    #[test]
    fn malformed_events_are_definite_errors() {
        let fine = doc! {"_id": {"_data": "82"}, "operationType": "insert", "clusterTime": Bson::Timestamp(bson::Timestamp { time: 1, increment: 1 }),
        "ns": {"db": "d", "coll": "c"}, "documentKey": {"_id": 1}, "fullDocument": {"_id": 1}};
        assert!(read(&fine, reading(true)).is_ok());
        for (field, reason) in [
            ("_id", "resume token"),
            ("clusterTime", "clusterTime"),
            ("documentKey", "documentKey"),
            ("fullDocument", "without fullDocument"),
        ] {
            let mut bad = fine.clone();
            bad.remove(field);
            let e = read(&bad, reading(true)).unwrap_err();
            assert!(e.to_string().contains(reason), "{field}: {e}");
        }
    }

    #[test]
    fn every_bson_type_survives_canonical_extended_json() {
        let mut kinds = std::collections::BTreeSet::new();
        for fixture in fixtures("bson") {
            let name = fixture["name"].as_str().unwrap();
            let value = bson(&fixture["value"]);
            let Bson::Document(d) = &value else { panic!("{name}") };
            kinds.insert(format!("{:?}", d.get("x").unwrap().element_type()));
            let ours = extjson::canonical(&value);
            let back: Bson = serde_json::from_str(&ours).unwrap_or_else(|e| panic!("{name}: {ours}: {e}"));
            // NaN is not equal to itself: compare what the writer makes of both.
            assert_eq!(extjson::canonical(&back), ours, "{name}");
            if !ours.contains("NaN") {
                assert_eq!(back, value, "{name}");
            }
            // A relaxed rendering (what a target's JSON column gets) always parses.
            serde_json::from_str::<Json>(&extjson::relaxed(&value)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(kinds.len() >= 19, "BSON types covered: {kinds:?}");
    }

    #[test]
    fn snapshot_reads_are_op_r_keyed_by_relaxed_id() {
        let e = read_event("p", &TableId::new("d", "c"), doc! {"_id": 5_i64, "a": 1_i32}, 42);
        assert_eq!(
            (e.op, e.id.as_str(), e.source.snapshot),
            (Op::Read, "5", Snapshot::True)
        );
        assert_eq!(
            e.after.as_deref(),
            Some(r#"{"_id":{"$numberLong":"5"},"a":{"$numberInt":"1"}}"#)
        );
        assert_eq!(e.source.ts_ms, 42);
    }
}
