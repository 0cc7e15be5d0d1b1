//! `ferry topics`: Ferry's topics with their partitions, how many messages
//! they hold, and the subjects the registry keeps for them.
//!
//! "Messages" is the sum over partitions of high minus low watermark: what a
//! reader from the start would get (compacted topics count their gaps too).
//! Kafka's protocol as rdkafka exposes it has no byte sizes per topic.

use std::time::Duration;

use ferry_core::kafka::KafkaSettings;
use ferry_core::registry::RegistryClient;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A subject's latest version and schema id.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Subject {
    pub subject: String,
    pub version: u32,
    pub id: u32,
}

/// One topic.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Topic {
    pub topic: String,
    pub partitions: usize,
    pub messages: i64,
    pub subjects: Vec<Subject>,
}

/// Whether `topic` belongs to Ferry (with `prefix`: to that capture).
fn wanted(topic: &str, prefix: Option<&str>) -> bool {
    match prefix {
        Some(p) => topic.strip_prefix(p).is_some_and(|rest| rest.starts_with('.')),
        None => !topic.starts_with("__"),
    }
}

/// The topics of `prefix` (every topic but Kafka's own without one), sorted.
pub async fn list(
    kafka: &KafkaSettings,
    registry: &RegistryClient,
    prefix: Option<&str>,
) -> Result<Vec<Topic>, String> {
    let consumer: BaseConsumer = kafka
        .consumer("ferry-topics")
        .create()
        .map_err(|e| format!("cannot reach the brokers at {}: {e}", kafka.brokers))?;
    let prefix_owned = prefix.map(str::to_owned);
    let counted = tokio::task::spawn_blocking(move || -> Result<Vec<(String, usize, i64)>, String> {
        let metadata = consumer
            .fetch_metadata(None, TIMEOUT)
            .map_err(|e| format!("cannot read the brokers' metadata: {e}"))?;
        let mut out = Vec::new();
        for t in metadata.topics() {
            if !wanted(t.name(), prefix_owned.as_deref()) {
                continue;
            }
            let mut messages = 0;
            for p in t.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(t.name(), p.id(), TIMEOUT)
                    .map_err(|e| format!("topic {} partition {}: {e}", t.name(), p.id()))?;
                messages += high - low;
            }
            out.push((t.name().to_owned(), t.partitions().len(), messages));
        }
        Ok(out)
    })
    .await
    .map_err(|e| e.to_string())??;
    let known = registry.subjects().await.map_err(|e| e.to_string())?;
    let mut topics = Vec::with_capacity(counted.len());
    for (topic, partitions, messages) in counted {
        let mut subjects = Vec::new();
        for suffix in ["key", "value"] {
            let subject = format!("{topic}-{suffix}");
            if known.contains(&subject) {
                let (version, id) = registry.latest(&subject).await.map_err(|e| e.to_string())?;
                subjects.push(Subject { subject, version, id });
            }
        }
        topics.push(Topic {
            topic,
            partitions,
            messages,
            subjects,
        });
    }
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(topics)
}

/// The topics as a table for people.
pub fn render(topics: &[Topic]) -> String {
    let width = topics.iter().map(|t| t.topic.len()).max().unwrap_or(5).max(5);
    let mut out = format!(
        "{:<width$}  {:>10}  {:>12}  subjects (version, schema id)\n",
        "topic", "partitions", "messages"
    );
    for t in topics {
        let subjects: Vec<String> = t
            .subjects
            .iter()
            .map(|s| format!("{} (v{}, id {})", s.subject, s.version, s.id))
            .collect();
        out.push_str(&format!(
            "{:<width$}  {:>10}  {:>12}  {}\n",
            t.topic,
            t.partitions,
            t.messages,
            subjects.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_prefix_takes_its_own_topics_only() {
        assert!(super::wanted("shop.public.orders", Some("shop")));
        assert!(!super::wanted("shopping.public.orders", Some("shop")));
        assert!(super::wanted("_ferry_offsets", None));
        assert!(!super::wanted("__consumer_offsets", None));
    }
}
