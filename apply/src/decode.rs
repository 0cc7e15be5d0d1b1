//! Kafka messages to [`Change`]s: the Confluent wire header names the writer's
//! schema, the registry gives it once per id, and the envelope schema alone is
//! enough to rebuild the table (its columns, types and key) — apply never asks
//! the source.
//!
//! Topics matched by the subscription that do not carry table changes (a
//! prefix's `.transaction` and `.message` topics, say) are skipped, once logged;
//! their offsets still advance. A message that cannot be decoded is an
//! [`Undecodable`]: the pipeline stops on it or sets it aside (`--on-error`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferry_core::codec::{CodecError, TableCodec};
use ferry_core::meta::TableId;
use ferry_core::registry::{RegistryClient, RegistryError};
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
    NotATable,
}

/// Decodes messages, caching one codec per schema id.
#[derive(Debug)]
pub struct Decoder {
    registry: Arc<RegistryClient>,
    table_map: TableMap,
    default_schema: String,
    writers: HashMap<u32, Arc<Writer>>,
    skipped_topics: HashSet<Arc<str>>,
    /// Topic names, shared by every position in them rather than allocated per message.
    topics: HashSet<Arc<str>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Table { target, .. } => write!(f, "Table({target})"),
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
            topics: HashSet::new(),
        }
    }

    /// Where a consumed message is.
    pub fn position(&mut self, topic: &str, partition: i32, offset: i64) -> Position {
        let topic = match self.topics.get(topic) {
            Some(t) => Arc::clone(t),
            None => {
                let t: Arc<str> = Arc::from(topic);
                self.topics.insert(Arc::clone(&t));
                t
            }
        };
        Position {
            topic,
            partition,
            offset,
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

    /// The change a message carries; `partitions` is the truncate header
    /// (how many partitions carry a copy of a truncate).
    pub async fn decode(
        &mut self,
        at: Position,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: Option<i32>,
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
            Writer::NotATable => {
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
        let barrier = (event.op == Op::Truncate).then(|| Barrier {
            id: fnv1a(value),
            partitions: partitions.unwrap_or(1).max(1),
        });
        Ok(Change {
            at,
            barrier,
            what: ChangeKind::Row {
                target,
                codec,
                key,
                event,
            },
        })
    }
}

/// FNV-1a of `bytes` in hex: stable across processes and versions, which is
/// all a barrier id needs (its copies are the same bytes).
fn fnv1a(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn barrier_ids_are_fnv1a() {
        assert_eq!(super::fnv1a(b""), "cbf29ce484222325");
        assert_eq!(super::fnv1a(b"a"), "af63dc4c8601ec8c");
    }
}
