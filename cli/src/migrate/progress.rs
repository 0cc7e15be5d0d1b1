//! How far a migration is, from Kafka and the targets alone: per table topic,
//! the messages capture has put in it (high minus low watermark) and, per
//! target, those its apply group has applied (the offsets it stores in the
//! target, next to the rows) and how long the first change it has yet to
//! apply has waited (that message's Kafka timestamp). Nothing in-process is
//! consulted, so `ferry cutover` sees what `ferry migrate` sees.
//!
//! The live view ([`View`]) adds what successive readings tell: each
//! table's state (snapshotting, catching up, streaming), rows per second
//! and, from the source's row estimates, the time left.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_core::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::db::Db;

const TIMEOUT: Duration = Duration::from_secs(30);

/// How long a reading waits for the first unapplied message of a partition.
const AGE_WAIT: Duration = Duration::from_millis(500);

/// A target whose oldest unapplied change has waited less than this keeps
/// up: the table is streaming, not catching up. While the source takes
/// writes, a reading almost always finds a few changes on their way.
const KEEPING_UP_MS: i64 = 1_000;

/// One table topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicProgress {
    pub topic: String,
    /// Messages in the topic.
    pub captured: i64,
    /// Per target, in `--target` order.
    pub applied: Vec<Applied>,
}

/// One table topic in one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Messages applied.
    pub done: i64,
    /// Whether every partition is applied to its end.
    pub complete: bool,
    /// How long the oldest message not yet applied has been in Kafka, in ms
    /// (`None`: caught up, or not read in time).
    pub lag_ms: Option<i64>,
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
    // The targets' offsets before the watermarks, so that no target seems
    // to have applied more than the topics hold.
    let mut stored = Vec::with_capacity(targets.len());
    for (db, group) in targets {
        // No offsets table yet: nothing applied.
        stored.push(db.group_offsets(group).await.unwrap_or_default());
    }
    let consumer: BaseConsumer = kafka
        .consumer("ferry-migrate-progress")
        // One message per partition is all `ages` reads.
        .set("max.partition.fetch.bytes", "65536")
        .create()
        .map_err(|e| format!("cannot reach the brokers at {}: {e}", kafka.brokers))?;
    let prefix_owned = prefix.to_owned();
    let consumer = std::sync::Arc::new(consumer);
    let reader = std::sync::Arc::clone(&consumer);
    let marks = tokio::task::spawn_blocking(move || -> Result<Watermarks, String> {
        let consumer = reader;
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
    let mut applied = Vec::with_capacity(targets.len());
    for offsets in stored {
        let mut per_topic: BTreeMap<String, Applied> = BTreeMap::new();
        let mut behind = Vec::new();
        for (topic, partitions) in &marks {
            let mut a = Applied {
                complete: true,
                ..Applied::default()
            };
            for (p, low, high) in partitions {
                let next = offsets
                    .iter()
                    .find(|o| &o.topic == topic && o.partition == *p)
                    .map_or(*low, |o| o.next_offset.max(*low));
                a.done += next - low;
                if next < *high {
                    a.complete = false;
                    behind.push((topic.clone(), *p, next));
                }
            }
            per_topic.insert(topic.clone(), a);
        }
        let reader = std::sync::Arc::clone(&consumer);
        let ages = tokio::task::spawn_blocking(move || ages(&reader, &behind))
            .await
            .map_err(|e| e.to_string())?;
        let now = chrono::Utc::now().timestamp_millis();
        for ((topic, _), at) in ages {
            if let Some(a) = per_topic.get_mut(&topic) {
                let age = (now - at).max(0);
                a.lag_ms = Some(a.lag_ms.map_or(age, |l| l.max(age)));
            }
        }
        applied.push(per_topic);
    }
    Ok(marks
        .into_iter()
        .map(|(topic, partitions)| TopicProgress {
            captured: partitions.iter().map(|(_, low, high)| high - low).sum(),
            applied: applied
                .iter()
                .map(|t| t.get(&topic).copied().unwrap_or_default())
                .collect(),
            topic,
        })
        .collect())
}

/// The Kafka timestamp (ms) of the message at each of `positions` (topic,
/// partition, offset) that arrives within [`AGE_WAIT`].
fn ages(consumer: &BaseConsumer, positions: &[(String, i32, i64)]) -> BTreeMap<(String, i32), i64> {
    let mut found = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in positions {
        if list
            .add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .is_err()
        {
            return found;
        }
    }
    if positions.is_empty() || consumer.assign(&list).is_err() {
        return found;
    }
    let deadline = Instant::now() + AGE_WAIT;
    while found.len() < positions.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            if let Some(at) = m.timestamp().to_millis() {
                found.entry((m.topic().to_owned(), m.partition())).or_insert(at);
            }
        }
    }
    let _ = consumer.unassign();
    found
}

/// Whether every target has applied every message of every table topic.
pub fn caught_up(progress: &[TopicProgress]) -> bool {
    !progress.is_empty() && progress.iter().all(|t| t.applied.iter().all(|a| a.complete))
}

/// Where the capture is, for the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Starting or reading its snapshot.
    Snapshot,
    /// Streaming changes.
    Streaming,
    /// Done: a full load's snapshot is all in Kafka.
    Done,
}

/// The live view: rates and times left from successive readings.
#[derive(Debug)]
pub struct View {
    prefix: String,
    /// The targets' names, in `--target` order.
    names: Vec<String>,
    /// The source's row estimate per table (`schema.table`), 0 when unknown.
    estimates: BTreeMap<String, i64>,
    last: Option<(Instant, Vec<TopicProgress>)>,
    /// Per topic, rows per second captured, then applied into each target.
    rates: BTreeMap<String, Vec<f64>>,
}

impl View {
    pub fn new(prefix: &str, names: Vec<String>, estimates: BTreeMap<String, i64>) -> View {
        View {
            prefix: prefix.to_owned(),
            names,
            estimates,
            last: None,
            rates: BTreeMap::new(),
        }
    }

    /// Takes a reading made at `at` into the rates (smoothed over a few readings).
    pub fn update(&mut self, at: Instant, now: &[TopicProgress]) {
        if let Some((then, previous)) = &self.last {
            let seconds = at.duration_since(*then).as_secs_f64();
            if seconds > 0.0 {
                for t in now {
                    let Some(p) = previous.iter().find(|p| p.topic == t.topic) else {
                        continue;
                    };
                    let counts = |x: &TopicProgress| {
                        std::iter::once(x.captured)
                            .chain(x.applied.iter().map(|a| a.done))
                            .collect::<Vec<_>>()
                    };
                    let rates = self.rates.entry(t.topic.clone()).or_default();
                    for (k, (a, b)) in counts(t).into_iter().zip(counts(p)).enumerate() {
                        let rate = (a - b).max(0) as f64 / seconds;
                        match rates.get_mut(k) {
                            Some(r) => *r = 0.5 * *r + 0.5 * rate,
                            None => rates.push(rate),
                        }
                    }
                }
            }
        }
        self.last = Some((at, now.to_vec()));
    }

    /// The view: a line per table, under it a line per target.
    pub fn render(&self, now: &[TopicProgress], capture: Capture) -> String {
        let table = |t: &TopicProgress| t.topic[self.prefix.len() + 1..].to_owned();
        let width = now
            .iter()
            .map(|t| table(t).len())
            .chain(self.names.iter().map(|n| n.len() + 2))
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!(
            "{:<width$}  {:<12}  {:>22}  {:>10}\n",
            "table", "state", "rows", "rows/s"
        );
        for t in now {
            let name = table(t);
            let estimate = self.estimates.get(&name).copied().unwrap_or(0);
            let rates = self.rates.get(&t.topic);
            let rate = |k: usize| rates.and_then(|r| r.get(k)).copied().unwrap_or(0.0);
            let snapshotting = capture == Capture::Snapshot && (estimate == 0 || t.captured < estimate);
            let state = if snapshotting {
                "snapshotting"
            } else if t
                .applied
                .iter()
                .all(|a| a.complete || a.lag_ms.is_some_and(|l| l < KEEPING_UP_MS))
            {
                if capture == Capture::Done {
                    "loaded"
                } else {
                    "streaming"
                }
            } else {
                "catching up"
            };
            let rows = if snapshotting && estimate > t.captured {
                format!("{} of ~{}", count(t.captured), count(estimate))
            } else {
                count(t.captured)
            };
            out.push_str(&format!(
                "{name:<width$}  {state:<12}  {rows:>22}  {:>10}\n",
                count(rate(0) as i64)
            ));
            // What a target has yet to apply: what is in Kafka, and while the
            // snapshot runs, the rest of the source's estimate.
            let total = if snapshotting {
                t.captured.max(estimate)
            } else {
                t.captured
            };
            for (k, (a, target)) in t.applied.iter().zip(&self.names).enumerate() {
                let speed = rate(k + 1);
                let behind = if a.complete {
                    "caught up".to_owned()
                } else {
                    let lag = a.lag_ms.map_or_else(|| "-".into(), millis);
                    let eta = if speed >= 1.0 {
                        millis(((total - a.done).max(0) as f64 / speed * 1000.0) as i64)
                    } else {
                        "-".into()
                    };
                    format!("lag {lag}, {} to apply, ETA {eta}", count(t.captured - a.done))
                };
                out.push_str(&format!(
                    "{:<width$}  {:<12}  {:>22}  {:>10}  {behind}\n",
                    format!("  {target}"),
                    "",
                    count(a.done),
                    count(speed as i64),
                ));
            }
        }
        out
    }
}

/// `1234567` → `1,234,567`.
fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A duration for people: `850 ms`, `12.3 s`, `4 min 05 s`.
fn millis(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {:02} s", ms / 60_000, ms % 60_000 / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(captured: i64, applied: &[(i64, bool)]) -> TopicProgress {
        TopicProgress {
            topic: "p.s.t".into(),
            captured,
            applied: applied
                .iter()
                .map(|&(done, complete)| Applied {
                    done,
                    complete,
                    lag_ms: (!complete).then_some(1500),
                })
                .collect(),
        }
    }

    #[test]
    fn table_topics_are_told_from_the_prefixs_own() {
        assert!(is_table_topic("m.1", "m.1.public.orders"));
        assert!(!is_table_topic("m.1", "m.1.transaction"));
        assert!(!is_table_topic("m", "mm.public.orders"));
        assert!(caught_up(&[topic(10, &[(10, true), (10, true)])]));
        assert!(!caught_up(&[topic(10, &[(10, true), (7, false)])]));
        assert!(!caught_up(&[]));
    }

    #[test]
    fn the_view_tells_state_rate_lag_and_time_left() {
        let estimates = BTreeMap::from([("s.t".to_owned(), 10_000)]);
        let mut view = View::new("p", vec!["target 0 PostgreSQL".into()], estimates);
        let start = Instant::now();
        view.update(start, &[topic(1_000, &[(0, false)])]);
        let now = [topic(3_000, &[(1_000, false)])];
        view.update(start + Duration::from_secs(1), &now);
        let text = view.render(&now, Capture::Snapshot);
        let table = text.lines().nth(1).unwrap();
        assert!(table.starts_with("s.t ") && table.contains("snapshotting"), "{text}");
        assert!(table.contains("3,000 of ~10,000") && table.contains("2,000"), "{text}");
        // Applying 1,000 rows/s; 9,000 rows of the estimate left.
        let target = text.lines().nth(2).unwrap();
        assert!(target.starts_with("  target 0 PostgreSQL"), "{text}");
        assert!(target.contains("lag 1.5 s, 2,000 to apply, ETA 9.0 s"), "{text}");
        let done = [topic(10_000, &[(10_000, true)])];
        assert!(view.render(&done, Capture::Streaming).contains("streaming"));
        // A few changes on their way, the oldest 200 ms old: streaming; 1.5 s: catching up.
        let mut live = topic(10_000, &[(9_990, false)]);
        assert!(view.render(&[live.clone()], Capture::Streaming).contains("catching up"));
        live.applied[0].lag_ms = Some(200);
        let text = view.render(&[live], Capture::Streaming);
        assert!(
            text.contains("streaming") && text.contains("lag 200 ms, 10 to apply"),
            "{text}"
        );
        assert!(view.render(&done, Capture::Done).contains("loaded"));
        assert!(view.render(&done, Capture::Done).contains("caught up"));
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(millis(250_000), "4 min 10 s");
    }
}
