//! `ferry replay`: moves an apply group back, so that its target applies the
//! log again from a point in time (or from the start, to rebuild a target
//! whose tables were dropped).
//!
//! An apply group's position is the offsets it stores in the target itself
//! (next to the rows, for exactly-once), so replay rewrites those, in one
//! target transaction, and forgets the group's truncate barriers (the
//! truncates it will read again). Replayed events are applied as before:
//! upserts and deletes by key converge on the same rows, a keyless table gets
//! its rows again — drop (or empty) the tables to rebuild them rather than
//! replay over them. The group must not be running: its next batch would
//! store its old position again. Kafka says whether it has members; a
//! member left behind by a killed process (brokers drop it after its session
//! times out) can be passed over with `--force`.

use std::time::Duration;

use ferry_core::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::db::{Db, StoredOffset};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Where to move the group to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Earliest,
    /// Milliseconds since the epoch: the first message at or after it.
    Time(i64),
}

impl std::str::FromStr for From {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "earliest" {
            return Ok(From::Earliest);
        }
        if let Ok(ms) = s.parse::<i64>() {
            return Ok(From::Time(ms));
        }
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| From::Time(t.timestamp_millis()))
            .map_err(|_| {
                format!(
                    "--from {s:?}: use earliest, milliseconds since 1970, or an RFC 3339 time (2026-11-23T10:00:00Z)"
                )
            })
    }
}

/// One partition moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// Moves `group`'s stored offsets in `target` back to `from`; returns what moved.
pub async fn replay(
    target: &Db,
    kafka: &KafkaSettings,
    group: &str,
    from: From,
    force: bool,
) -> Result<Vec<Moved>, String> {
    let stored = target.group_offsets(group).await?;
    if stored.is_empty() {
        return Err(format!(
            "the target holds no offsets of apply group {group:?}: check --group (apply stores them in its target's _ferry_offsets)"
        ));
    }
    let consumer: BaseConsumer = kafka
        .consumer(&format!("ferry-replay-{group}"))
        .create()
        .map_err(|e| format!("cannot reach the brokers at {}: {e}", kafka.brokers))?;
    let group_name = group.to_owned();
    let partitions: Vec<(String, i32)> = stored.iter().map(|o| (o.topic.clone(), o.partition)).collect();
    let (members, targets) = tokio::task::spawn_blocking(move || -> Result<(usize, Vec<i64>), String> {
        let members = consumer
            .fetch_group_list(Some(&group_name), TIMEOUT)
            .map(|list| list.groups().iter().map(|g| g.members().len()).sum())
            .unwrap_or(0);
        let mut targets = Vec::with_capacity(partitions.len());
        for (topic, partition) in &partitions {
            let offset = match from {
                From::Earliest => {
                    consumer
                        .fetch_watermarks(topic, *partition, TIMEOUT)
                        .map_err(|e| format!("topic {topic} partition {partition}: {e}"))?
                        .0
                }
                From::Time(ms) => {
                    let mut list = TopicPartitionList::new();
                    list.add_partition_offset(topic, *partition, Offset::Offset(ms))
                        .map_err(|e| e.to_string())?;
                    let found = consumer
                        .offsets_for_times(list, TIMEOUT)
                        .map_err(|e| format!("topic {topic} partition {partition}: {e}"))?;
                    match found.find_partition(topic, *partition).map(|p| p.offset()) {
                        Some(Offset::Offset(o)) => o,
                        // No message at or after the time: the partition's end.
                        _ => {
                            consumer
                                .fetch_watermarks(topic, *partition, TIMEOUT)
                                .map_err(|e| format!("topic {topic} partition {partition}: {e}"))?
                                .1
                        }
                    }
                }
            };
            targets.push(offset);
        }
        Ok((members, targets))
    })
    .await
    .map_err(|e| e.to_string())??;
    if members > 0 && !force {
        return Err(format!(
            "apply group {group:?} has {members} running member(s): stop its ferry-apply processes first \
             (or pass --force if they are gone and the brokers have not noticed yet)"
        ));
    }
    let mut moved = Vec::new();
    let mut new = Vec::new();
    for (o, to) in stored.iter().zip(targets) {
        // Only ever back: a later time leaves a partition where it is.
        let to = to.min(o.next_offset);
        new.push(StoredOffset {
            next_offset: to,
            ..o.clone()
        });
        moved.push(Moved {
            topic: o.topic.clone(),
            partition: o.partition,
            from: o.next_offset,
            to,
        });
    }
    target.move_group(group, &new).await?;
    Ok(moved)
}
