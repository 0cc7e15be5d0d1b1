//! Keyless tables under at-least-once delivery.
//!
//! Without Kafka transactions, a capture that restarts, or reconnects to its
//! source, sends again what it published after its last stored position. A
//! table with a key does not mind: the same changes of the same keys, in the
//! same order, converge on the same rows in every target. A keyless table
//! does: its inserts are appends, and an append sent twice is a second row in
//! every target.
//!
//! So for each keyless table the publisher keeps the source position of the
//! last event known to be in Kafka, and drops a streamed event at or before
//! it. When the table is first registered, that position is read back from
//! the end of the table's topic (a keyless table's events all go to partition
//! 0, and an idempotent producer leaves there a prefix of what it sent); then
//! each event sent advances it. Positions compare within one source log only:
//! PostgreSQL by (commit LSN, place in the transaction), MySQL/MariaDB by
//! (server id, binlog file, position, row); an event of another server is
//! never dropped. With `--exactly-once`, Kafka itself drops what an aborted
//! transaction sent, and none of this runs.
//!
//! Snapshot rows have no order to compare: a keyless table whose snapshot was
//! interrupted is read again whole (see the README's limits).

use std::collections::HashMap;
use std::time::Duration;

use ferry_core::envelope::{ChangeEvent, Connector, SourceDetail, SourceInfo, TransactionBlock};
use ferry_core::kafka::{EndIsNoError, KafkaSettings};
use ferry_core::meta::TableId;
use ferry_core::position::PgLsn;
use ferry_core::registry::RegistryClient;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::publish::PublishError;

/// Where a streamed event is in its source's log, in the order capture sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Postgres {
        commit: u64,
        order: i64,
    },
    Mysql {
        server_id: i64,
        file: String,
        pos: i64,
        row: i32,
    },
}

impl Position {
    /// The position of a streamed event; none for snapshot rows, MongoDB, or
    /// a PostgreSQL event without its transaction block.
    pub fn of(source: &SourceInfo, transaction: Option<&TransactionBlock>) -> Option<Position> {
        if source.snapshot != ferry_core::envelope::Snapshot::False {
            return None;
        }
        match &source.detail {
            SourceDetail::Postgres { .. } => {
                // The transaction's id is `xid:commit LSN`.
                let t = transaction?;
                let commit: PgLsn = t.id.rsplit_once(':')?.1.parse().ok()?;
                Some(Position::Postgres {
                    commit: commit.0,
                    order: t.total_order,
                })
            }
            SourceDetail::Mysql {
                server_id,
                file,
                pos,
                row,
                ..
            } => Some(Position::Mysql {
                server_id: *server_id,
                file: file.to_string(),
                pos: *pos,
                row: *row,
            }),
            SourceDetail::Mongodb { .. } => None,
        }
    }

    /// Whether an event at `self` was sent no later than one at `last`.
    fn at_or_before(&self, last: &Position) -> bool {
        match (self, last) {
            (Position::Postgres { commit, order }, Position::Postgres { commit: c, order: o }) => {
                (commit, order) <= (c, o)
            }
            (
                Position::Mysql {
                    server_id,
                    file,
                    pos,
                    row,
                },
                Position::Mysql {
                    server_id: s,
                    file: f,
                    pos: p,
                    row: r,
                },
            ) => {
                // Binlog files are numbered: a longer name is a later file.
                server_id == s && ((file.len(), file), pos, row) <= ((f.len(), f), p, r)
            }
            _ => false,
        }
    }
}

/// The last position in Kafka of each keyless table.
#[derive(Debug, Default)]
pub struct Resent {
    last: HashMap<TableId, Option<Position>>,
}

impl Resent {
    /// Whether `table` is followed already.
    pub fn follows(&self, table: &TableId) -> bool {
        self.last.contains_key(table)
    }

    /// Follows `table`, whose last event in Kafka is at `last`.
    pub fn follow(&mut self, table: TableId, last: Option<Position>) {
        self.last.insert(table, last);
    }

    /// Whether `event` of `table` is in Kafka already; if not, it is the last now.
    pub fn sent_before(&mut self, table: &TableId, event: &ChangeEvent) -> bool {
        let Some(last) = self.last.get_mut(table) else {
            return false;
        };
        let Some(position) = Position::of(&event.source, event.transaction.as_ref()) else {
            return false;
        };
        if last.as_ref().is_some_and(|l| position.at_or_before(l)) {
            return true;
        }
        *last = Some(position);
        false
    }
}

/// How far back from the end of a topic to look for the last event (past
/// messages without a value).
const TAIL: i64 = 64;

/// The position of the last event in partition 0 of `topic`, if it holds one.
pub async fn last_in_kafka(
    kafka: &KafkaSettings,
    registry: &RegistryClient,
    connector: Connector,
    topic: &str,
) -> Result<Option<Position>, PublishError> {
    // The end is where the consumer says so: the last offsets may be markers
    // of Kafka transactions (an earlier run with --exactly-once), never delivered.
    let consumer: BaseConsumer<EndIsNoError> = kafka
        .consumer(&format!("ferry-capture-tail-{topic}"))
        .set("isolation.level", "read_uncommitted")
        .set("enable.partition.eof", "true")
        .create_with_context(EndIsNoError)?;
    let topic_owned = topic.to_owned();
    let last = tokio::task::spawn_blocking(move || last_value(&consumer, &topic_owned))
        .await
        .map_err(|e| PublishError::Stopped(e.to_string()))??;
    let Some(payload) = last else {
        return Ok(None);
    };
    let (id, avro) = ferry_core::wire::decode(&payload).map_err(|e| PublishError::Stopped(format!("{topic}: {e}")))?;
    let writer = registry.schema(id).await?;
    let (source, transaction) = ferry_core::envelope::locate(connector, &writer.json, avro)?;
    Ok(Position::of(&source, transaction.as_ref()))
}

/// The value of the last message of partition 0 of `topic` that has one.
fn last_value(consumer: &BaseConsumer<EndIsNoError>, topic: &str) -> Result<Option<Vec<u8>>, PublishError> {
    let timeout = Duration::from_secs(30);
    let (low, high) = consumer.fetch_watermarks(topic, 0, timeout)?;
    if high <= low {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset((high - TAIL).max(low)))?;
    consumer.assign(&assignment)?;
    let mut last = None;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let message = match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(last),
            Some(message) => message?,
        };
        if let Some(payload) = message.payload() {
            last = Some(payload.to_vec());
        }
        if message.offset() + 1 >= high {
            return Ok(last);
        }
    }
    Err(PublishError::Stopped(format!(
        "reading the end of {topic} to find the last event it holds took over {timeout:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::Position;

    fn pg(commit: u64, order: i64) -> Position {
        Position::Postgres { commit, order }
    }

    fn my(server_id: i64, file: &str, pos: i64, row: i32) -> Position {
        Position::Mysql {
            server_id,
            file: file.into(),
            pos,
            row,
        }
    }

    #[test]
    fn positions_order_as_the_log_does() {
        assert!(pg(100, 3).at_or_before(&pg(100, 3)));
        assert!(pg(100, 9).at_or_before(&pg(200, 1)));
        assert!(!pg(200, 1).at_or_before(&pg(100, 9)));
        assert!(my(1, "bin.000009", 900, 2).at_or_before(&my(1, "bin.000010", 4, 0)));
        assert!(my(1, "bin.999999", 900, 2).at_or_before(&my(1, "bin.1000000", 4, 0)));
        assert!(!my(1, "bin.000010", 4, 1).at_or_before(&my(1, "bin.000010", 4, 0)));
        // Another server's log: never taken as sent.
        assert!(!my(2, "bin.000001", 4, 0).at_or_before(&my(1, "bin.000010", 4, 0)));
        assert!(!pg(1, 1).at_or_before(&my(1, "bin.000010", 4, 0)));
    }
}
