//! Kafka messages to [`Change`]s: the Confluent wire header names the writer's
//! schema, the registry gives it once per id, and the envelope schema alone is
//! enough to rebuild the table (its columns, types and key) — apply never asks
//! the source.
//!
//! A MongoDB collection's events (`ferry_core::document`) become changes of
//! the table of `collection_meta`: `id` (the key) and `doc` (the document as
//! relaxed extended JSON). Such a table needs whole documents: an update
//! without one (a capture run with `--full-document off`) is undecodable,
//! since applying only the changed fields would need the stored document;
//! an update whose document was deleted before capture looked it up is
//! skipped, as its delete follows.
//!
//! Topics matched by the subscription that do not carry table changes (a
//! prefix's `.transaction` and `.message` topics, say) are skipped, once logged;
//! their offsets still advance. A message whose schema is not a table's
//! envelope is only skipped on such a topic: on one whose value subject
//! (`<topic>-value`, the TopicNameStrategy every capture uses) holds a table's
//! envelope, it is a wrong schema id, and skipping it would lose a change
//! without a word. A message that cannot be decoded is an [`Undecodable`]: the
//! pipeline stops on it or sets it aside (`--on-error`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferry_core::codec::{CodecError, TableCodec};
use ferry_core::document::{collection_meta, relaxed, CollectionCodec};
use ferry_core::envelope::{ChangeEvent, Connector};
use ferry_core::meta::TableId;
use ferry_core::registry::{RegistryClient, RegistryError};
use ferry_core::value::Datum;
use ferry_core::wire;

use crate::batch::{Barrier, Change, ChangeKind, Position};
use crate::settings::TableMap;
use ferry_core::envelope::Op;

/// A message no target can apply, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable(pub String);

/// Why decoding failed.
#[derive(Debug)]
pub enum DecodeFailure {
    /// The registry could not be asked: try again later.
    Registry(RegistryError),
    Undecodable(Undecodable),
}

enum Writer {
    Table {
        codec: Arc<TableCodec>,
        target: Arc<TableId>,
    },
    /// A MongoDB collection; `table` is the codec of its table's shape.
    Collection {
        codec: Box<CollectionCodec>,
        table: Arc<TableCodec>,
        target: Arc<TableId>,
    },
    NotATable,
}

/// What a message's headers say.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageHeaders {
    /// A truncate's: how many partitions carry a copy of it.
    pub partitions: Option<i32>,
    /// An update whose document was gone before capture looked it up.
    pub document_gone: bool,
}

/// Decodes messages, caching one codec per schema id.
#[derive(Debug)]
pub struct Decoder {
    registry: Arc<RegistryClient>,
    table_map: TableMap,
    default_schema: String,
    writers: HashMap<u32, Arc<Writer>>,
    skipped_topics: HashSet<Arc<str>>,
    /// Whether each topic a message of another shape came on carries table changes.
    table_topics: HashMap<Arc<str>, bool>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Table { target, .. } => write!(f, "Table({target})"),
            Writer::Collection { target, .. } => write!(f, "Collection({target})"),
            Writer::NotATable => f.write_str("NotATable"),
        }
    }
}

impl Decoder {
    pub fn new(registry: Arc<RegistryClient>, table_map: TableMap, default_schema: String) -> Self {
        Self {
            registry,
            table_map,
            default_schema,
            writers: HashMap::new(),
            skipped_topics: HashSet::new(),
            table_topics: HashMap::new(),
        }
    }

    async fn writer(&mut self, id: u32) -> Result<Arc<Writer>, DecodeFailure> {
        if let Some(w) = self.writers.get(&id) {
            return Ok(Arc::clone(w));
        }
        let schema = match self.registry.schema(id).await {
            Ok(s) => s,
            Err(e) if e.is_retryable() => return Err(DecodeFailure::Registry(e)),
            Err(e) => return Err(DecodeFailure::Undecodable(Undecodable(format!("schema id {id}: {e}")))),
        };
        let collection = CollectionCodec::from_value_schema(&schema.json)
            .transpose()
            .map_err(|e| DecodeFailure::Undecodable(Undecodable(format!("schema id {id} is not usable: {e}"))))?;
        if let Some(codec) = collection {
            let meta = collection_meta(codec.id());
            let target = Arc::new(self.table_map.target(&meta.id, &self.default_schema));
            let table = TableCodec::new("ferry", meta, Connector::Mongodb)
                .map_err(|e| DecodeFailure::Undecodable(Undecodable(format!("schema id {id}: {e}"))))?;
            let writer = Arc::new(Writer::Collection {
                codec: Box::new(codec),
                table: Arc::new(table),
                target,
            });
            self.writers.insert(id, Arc::clone(&writer));
            return Ok(writer);
        }
        let writer = match TableCodec::from_value_schema(&schema.json) {
            Ok(codec) => {
                let target = Arc::new(self.table_map.target(&codec.meta().id, &self.default_schema));
                Writer::Table {
                    codec: Arc::new(codec),
                    target,
                }
            }
            Err(CodecError::NotAnEnvelope(_)) => Writer::NotATable,
            Err(e) => {
                return Err(DecodeFailure::Undecodable(Undecodable(format!(
                    "schema id {id} is not usable: {e}"
                ))))
            }
        };
        let writer = Arc::new(writer);
        self.writers.insert(id, Arc::clone(&writer));
        Ok(writer)
    }

    /// Whether `topic` carries table changes: the latest schema of its value
    /// subject is a table's (or collection's) envelope. A topic without such a
    /// subject (one a capture did not name) does not.
    async fn carries_tables(&mut self, topic: &Arc<str>) -> Result<bool, DecodeFailure> {
        if let Some(&known) = self.table_topics.get(topic) {
            return Ok(known);
        }
        let carries = match self.registry.latest(&format!("{topic}-value")).await {
            Ok((_, id)) => match self.writer(id).await {
                Ok(writer) => !matches!(*writer, Writer::NotATable),
                Err(DecodeFailure::Undecodable(_)) => false,
                Err(e) => return Err(e),
            },
            Err(e) if e.is_retryable() => return Err(DecodeFailure::Registry(e)),
            Err(_) => false,
        };
        self.table_topics.insert(Arc::clone(topic), carries);
        Ok(carries)
    }

    /// The change a message carries.
    pub async fn decode(
        &mut self,
        at: Position,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: MessageHeaders,
    ) -> Result<Change, DecodeFailure> {
        let undecodable = |what: String| DecodeFailure::Undecodable(Undecodable(what));
        let Some(value) = value else {
            // A tombstone: for log compaction, nothing to apply.
            return Ok(Change {
                at,
                what: ChangeKind::Skip,
                barrier: None,
            });
        };
        let (id, datum) = wire::decode(value).map_err(|e| undecodable(format!("value: {e}")))?;
        let (codec, target) = match &*self.writer(id).await? {
            Writer::Table { codec, target } => (Arc::clone(codec), Arc::clone(target)),
            Writer::Collection { codec, table, target } => {
                let event = document_change(codec, key, datum, headers).map_err(undecodable)?;
                return Ok(row_change(at, event, table, target, value, headers));
            }
            Writer::NotATable => {
                if self.carries_tables(&at.topic).await? {
                    return Err(undecodable(format!(
                        "schema id {id} is not a table's change event, yet topic {} carries table changes \
                         (subject {}-value): a wrong schema id",
                        at.topic, at.topic
                    )));
                }
                if self.skipped_topics.insert(Arc::clone(&at.topic)) {
                    tracing::info!(topic = %at.topic, schema_id = id, "skipping a topic that does not carry table changes");
                }
                return Ok(Change {
                    at,
                    what: ChangeKind::Skip,
                    barrier: None,
                });
            }
        };
        let event = codec
            .decode_value(datum)
            .map_err(|e| undecodable(format!("value with schema id {id}: {e}")))?;
        let key =
            match key {
                Some(k) if !codec.meta().key.is_empty() => Some(
                    wire::decode(k)
                        .map_err(|e| undecodable(format!("key: {e}")))?
                        .1
                        .to_vec(),
                ),
                // Keyed rows always travel with their key; should one not, its
                // key columns stand in (rows collapse by key within a batch).
                _ if !codec.meta().key.is_empty() => event.after.as_ref().or(event.before.as_ref()).map(|row| {
                    format!("{:?}", codec.meta().key.iter().map(|&i| &row[i]).collect::<Vec<_>>()).into_bytes()
                }),
                _ => None,
            };
        let event = Some((key, event));
        Ok(row_change(at, event, &codec, &target, value, headers))
    }
}

/// A decoded event and its key bytes (for collapsing changes by key).
type Keyed = (Option<Vec<u8>>, ChangeEvent);

/// The change of a decoded event (`None`: nothing to apply).
fn row_change(
    at: Position,
    event: Option<Keyed>,
    codec: &Arc<TableCodec>,
    target: &Arc<TableId>,
    value: &[u8],
    headers: MessageHeaders,
) -> Change {
    let Some((key, event)) = event else {
        return Change {
            at,
            what: ChangeKind::Skip,
            barrier: None,
        };
    };
    let barrier = (event.op == Op::Truncate).then(|| Barrier {
        id: fnv1a(value),
        partitions: headers.partitions.unwrap_or(1).max(1),
    });
    Change {
        at,
        barrier,
        what: ChangeKind::Row {
            target: Arc::clone(target),
            codec: Arc::clone(codec),
            key,
            event,
        },
    }
}

/// A collection's event as a change of its `(id, doc)` table, with its key
/// bytes; `None` for an update whose document was gone.
fn document_change(
    codec: &CollectionCodec,
    key: Option<&[u8]>,
    datum: &[u8],
    headers: MessageHeaders,
) -> Result<Option<Keyed>, String> {
    let key = match key {
        Some(k) => Some(wire::decode(k).map_err(|e| format!("key: {e}"))?.1),
        None => None,
    };
    let id = match key {
        Some(k) => codec.decode_key(k).map_err(|e| format!("key: {e}"))?,
        None => String::new(),
    };
    let event = codec
        .decode_value(id.clone(), datum)
        .map_err(|e| format!("document event: {e}"))?;
    let row = |doc: &Option<String>| -> Result<Vec<Datum>, String> {
        let doc = match doc {
            Some(d) => Datum::Text(relaxed(d).map_err(|e| format!("document {id}: {e}"))?),
            None => Datum::Null,
        };
        Ok(vec![Datum::Text(id.clone()), doc])
    };
    let (before, after) = match event.op {
        Op::Truncate => (None, None),
        Op::Delete => (Some(row(&None)?), None),
        Op::Update if event.after.is_none() && headers.document_gone => return Ok(None),
        Op::Update if event.after.is_none() => {
            return Err(format!(
                "collection {}: an update of document {id} carries no whole document (the capture ran with \
                 --full-document off); a table of documents needs them: run ferry-capture-mongodb with \
                 --full-document updateLookup (the default) or required",
                codec.id()
            ))
        }
        _ => (None, Some(row(&event.after)?)),
    };
    let change = ChangeEvent {
        op: event.op,
        before,
        after,
        source: event.source,
        ts_ms: event.ts_ms,
        transaction: event.transaction,
        unchanged: Vec::new(),
    };
    Ok(Some((key.map(<[u8]>::to_vec), change)))
}

/// FNV-1a of `bytes` in hex: stable across processes and versions, which is
/// all a barrier id needs (its copies are the same bytes).
fn fnv1a(bytes: &[u8]) -> String {
    format!("{:016x}", ferry_core::names::fnv1a(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn barrier_ids_are_fnv1a() {
        assert_eq!(super::fnv1a(b""), "cbf29ce484222325");
        assert_eq!(super::fnv1a(b"a"), "af63dc4c8601ec8c");
    }
}
