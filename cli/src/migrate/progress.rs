//! How far a migration is, from Kafka and the targets alone: per table topic,
//! the messages capture has put in it (high minus low watermark) and, per
//! target, those its apply group has applied (the offsets it stores in the
//! target, next to the rows). Nothing in-process is consulted, so `ferry
//! cutover` sees what `ferry migrate` sees.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_core::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::db::Db;

const TIMEOUT: Duration = Duration::from_secs(30);

/// One table topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicProgress {
    pub topic: String,
    /// Messages in the topic.
    pub captured: i64,
    /// Per target (in `--target` order), messages applied, and whether every
    /// partition is applied to its end.
    pub applied: Vec<(i64, bool)>,
}

/// Per topic, each partition's low and high watermark.
type Watermarks = BTreeMap<String, Vec<(i32, i64, i64)>>;

/// Whether `topic` is a table topic of `prefix` (`<prefix>.<schema>.<table>`,
/// not `<prefix>.transaction` and the like).
pub fn is_table_topic(prefix: &str, topic: &str) -> bool {
    topic
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| rest.contains('.'))
}

/// The progress of every table topic of `prefix` into `targets` (each with
/// its apply group).
pub async fn read(kafka: &KafkaSettings, prefix: &str, targets: &[(Db, String)]) -> Result<Vec<TopicProgress>, String> {
    let consumer: BaseConsumer = kafka
        .consumer("ferry-migrate-progress")
        .create()
        .map_err(|e| format!("cannot reach the brokers at {}: {e}", kafka.brokers))?;
    let prefix_owned = prefix.to_owned();
    let marks = tokio::task::spawn_blocking(move || -> Result<Watermarks, String> {
        let metadata = consumer
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| format!("cannot read the brokers' metadata: {e}"))?;
        let mut marks = BTreeMap::new();
        for t in metadata
            .topics()
            .iter()
            .filter(|t| is_table_topic(&prefix_owned, t.name()))
        {
            let mut partitions = Vec::new();
            for p in t.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(t.name(), p.id(), TIMEOUT)
                    .map_err(|e| format!("topic {} partition {}: {e}", t.name(), p.id()))?;
                partitions.push((p.id(), low, high));
            }
            marks.insert(t.name().to_owned(), partitions);
        }
        Ok(marks)
    })
    .await
    .map_err(|e| e.to_string())??;
    let mut stored = Vec::with_capacity(targets.len());
    for (db, group) in targets {
        // No offsets table yet: nothing applied.
        let offsets = db.group_offsets(group).await.unwrap_or_default();
        stored.push(offsets);
    }
    Ok(marks
        .into_iter()
        .map(|(topic, partitions)| {
            let captured = partitions.iter().map(|(_, low, high)| high - low).sum();
            let applied = stored
                .iter()
                .map(|offsets| {
                    let mut done = 0;
                    let mut complete = true;
                    for (p, low, high) in &partitions {
                        let next = offsets
                            .iter()
                            .find(|o| o.topic == topic && o.partition == *p)
                            .map_or(*low, |o| o.next_offset.max(*low));
                        done += next - low;
                        complete &= next >= *high;
                    }
                    (done, complete)
                })
                .collect();
            TopicProgress {
                topic,
                captured,
                applied,
            }
        })
        .collect())
}

/// Whether every target has applied every message of every table topic.
pub fn caught_up(progress: &[TopicProgress]) -> bool {
    !progress.is_empty() && progress.iter().all(|t| t.applied.iter().all(|(_, complete)| *complete))
}

/// The progress as a table for people; `names` are the targets' columns.
pub fn render(progress: &[TopicProgress], names: &[String], prefix: &str) -> String {
    let width = progress
        .iter()
        .map(|t| t.topic.len() - prefix.len() - 1)
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:<width$}  {:>12}", "table", "captured");
    for name in names {
        out.push_str(&format!("  {name:>24}"));
    }
    out.push('\n');
    for t in progress {
        out.push_str(&format!("{:<width$}  {:>12}", &t.topic[prefix.len() + 1..], t.captured));
        for (done, complete) in &t.applied {
            let state = if *complete {
                format!("{done} (caught up)")
            } else {
                format!("{done} (lag {})", t.captured - done)
            };
            out.push_str(&format!("  {state:>24}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_topics_are_told_from_the_prefixs_own() {
        assert!(is_table_topic("m.1", "m.1.public.orders"));
        assert!(!is_table_topic("m.1", "m.1.transaction"));
        assert!(!is_table_topic("m", "mm.public.orders"));
        let t = |applied| TopicProgress {
            topic: "p.s.t".into(),
            captured: 10,
            applied,
        };
        assert!(caught_up(&[t(vec![(10, true), (10, true)])]));
        assert!(!caught_up(&[t(vec![(10, true), (7, false)])]));
        assert!(!caught_up(&[]));
        assert!(render(&[t(vec![(7, false)])], &["pg".into()], "p").contains("7 (lag 3)"));
    }
}
