//! Kafka client settings for no-loss delivery, and topic creation.
//!
//! Producers wait for every in-sync replica (`acks=all`) and are idempotent, so
//! a retried send cannot be written twice or out of order within a partition.
//! Consumers never commit on their own: apply stores offsets in the target in
//! the same transaction as the rows, and reads only committed transactional data.
//! Any key of a config file's `[kafka]` table, any `FERRY_KAFKA_*`
//! environment variable (`FERRY_KAFKA_SASL_PASSWORD` is `sasl.password`) and
//! any `--kafka-option KEY=VALUE` flag passes through to librdkafka unchanged
//! (security settings, tuning), after Ferry's own, so an operator can override
//! them; as for every setting, the environment wins over the file and a flag
//! over both.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::TopicPartitionList;
use serde::{Deserialize, Serialize};

/// The development broker, every binary's default.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// [`DEFAULT_BROKERS`], for `#[serde(default = "...")]`.
pub fn default_brokers() -> String {
    DEFAULT_BROKERS.to_owned()
}

/// How to reach the brokers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// librdkafka properties passed through as they are (`security.protocol`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The prefix of the environment variables that set librdkafka properties.
const ENV_PREFIX: &str = "FERRY_KAFKA_";

/// Messages a producer holds before its sender waits (see [`KafkaSettings::producer`]).
pub const PRODUCER_QUEUE_MESSAGES: u32 = 30_000;
/// Kilobytes a producer holds before its sender waits: 64 MiB.
pub const PRODUCER_QUEUE_KBYTES: u32 = 65_536;

/// The librdkafka properties among `vars`: `FERRY_KAFKA_SECURITY_PROTOCOL=SSL`
/// is `security.protocol=SSL` (librdkafka's property names have dots, never underscores).
pub fn environment_options(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter_map(|(name, value)| {
            let property = name.strip_prefix(ENV_PREFIX)?;
            (!property.is_empty()).then(|| (property.to_ascii_lowercase().replace('_', "."), value))
        })
        .collect()
}

/// Reads a config file's `[kafka]` table as librdkafka properties, whether
/// its keys are quoted (`"security.protocol" = "SSL"`) or, as TOML reads an
/// unquoted dotted key, nested (`security.protocol = "SSL"`); numbers and
/// booleans are given as librdkafka's text.
pub fn deserialize_options<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    fn flatten(prefix: &str, value: serde_json::Value, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        use serde_json::Value;
        let text = match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                    flatten(&key, v, out)?;
                }
                return Ok(());
            }
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null | Value::Array(_) => {
                return Err(format!("kafka property {prefix} must be a string, number or boolean"))
            }
        };
        out.insert(prefix.to_owned(), text);
        Ok(())
    }
    let mut out = BTreeMap::new();
    flatten("", serde_json::Value::deserialize(d)?, &mut out).map_err(serde::de::Error::custom)?;
    Ok(out)
}

/// librdkafka properties given as flags (`--kafka-option KEY=VALUE`, repeated;
/// `kafka_option = ["KEY=VALUE"]` in a config file).
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
pub struct KafkaFlags {
    /// A librdkafka property, e.g. security.protocol=SASL_SSL (repeat for more;
    /// also the [kafka] table of --config and FERRY_KAFKA_* variables).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kafka_option: Vec<String>,
}

impl KafkaFlags {
    /// The properties, or an error naming the flag that is not KEY=VALUE.
    pub fn options(&self) -> Result<BTreeMap<String, String>, String> {
        self.kafka_option
            .iter()
            .map(|o| match o.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
                _ => Err(format!(
                    "--kafka-option {o:?} is not KEY=VALUE (a librdkafka property, e.g. security.protocol=SSL)"
                )),
            })
            .collect()
    }
}

impl KafkaSettings {
    /// `brokers`, with the librdkafka properties of the environment.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self::with_options(brokers, BTreeMap::new())
    }

    /// `brokers`, with `options` (a config file's) and, over them, the
    /// librdkafka properties of the environment.
    pub fn with_options(brokers: impl Into<String>, mut options: BTreeMap<String, String>) -> Self {
        options.extend(environment_options(std::env::vars()));
        Self {
            brokers: brokers.into(),
            options,
        }
    }

    /// These settings with `flags` laid over them.
    pub fn with_flags(mut self, flags: &KafkaFlags) -> Result<Self, String> {
        self.options.extend(flags.options()?);
        Ok(self)
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    /// A producer that loses nothing it acknowledged and never duplicates a retry.
    ///
    /// Its queue holds [`PRODUCER_QUEUE_MESSAGES`] messages, not librdkafka's
    /// 100,000: a snapshot keeps the queue full, and from a queue that long
    /// each message is read back to be sent so long after it was written that
    /// it has left the CPU's cache. With 30,000 the snapshot took a fifth less
    /// CPU per row (1.13-1.19 µs against 1.42-1.51, alternated runs of
    /// `scripts/bench capture-snapshot`) and 15-20% more rows/s, and the
    /// broker took a producer's messages as fast as before; at 10,000 and
    /// fewer the broker's round trips held both back. 30,000 messages still
    /// keep about a million a second in flight to brokers 25 ms away; raise
    /// it (`[kafka] queue.buffering.max.messages`) for farther ones. The
    /// queue's bytes are capped too, at [`PRODUCER_QUEUE_KBYTES`] rather than
    /// librdkafka's 1 GiB (the Java producer's `buffer.memory` is 32 MiB), so
    /// wide rows cannot fill memory.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("max.in.flight.requests.per.connection", "5")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", PRODUCER_QUEUE_MESSAGES.to_string())
            .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES.to_string());
        self.finish(c)
    }

    /// A transactional producer: events and the source position commit together.
    pub fn transactional_producer(&self, transactional_id: &str) -> ClientConfig {
        let mut c = self.producer();
        c.set("transactional.id", transactional_id);
        self.finish(c)
    }

    /// A consumer whose offsets are the caller's business: no automatic commit or
    /// offset store, only committed transactional data, from the beginning when
    /// the group has no position.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            // Large enough for any fetch response, whatever the broker makes of
            // fetch.max.bytes (librdkafka requires it above fetch.max.bytes).
            .set("receive.message.max.bytes", "200000000");
        self.finish(c)
    }

    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
        self.finish(self.base()).create()
    }
}

/// The context of a reader that asked to be told when it reaches a
/// partition's end (`enable.partition.eof`): librdkafka reports that as an
/// error too, which this context does not log.
#[derive(Debug)]
pub struct EndIsNoError;

impl ClientContext for EndIsNoError {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
}

/// What [`ClientContext::error`] does by default, except for two reports
/// that are no errors: a partition's end, which librdkafka reports either way
/// as an error too, and a subscription that no topic matches yet (an apply
/// started before its capture made the topics), which it reports at every
/// metadata refresh until one does.
pub fn log_client_error(error: KafkaError, reason: &str) {
    use rdkafka::error::RDKafkaErrorCode::{PartitionEOF, UnknownTopicOrPartition};
    match error {
        KafkaError::PartitionEOF(_) | KafkaError::Global(PartitionEOF) => {}
        KafkaError::Global(UnknownTopicOrPartition) if reason.contains("Subscribed topic not available") => {
            tracing::debug!("librdkafka: {reason}");
        }
        _ => tracing::error!("librdkafka: {error}: {reason}"),
    }
}

impl ConsumerContext for EndIsNoError {}

/// Rests a caught-up consumer of a broker that answers an empty fetch at once.
///
/// A Kafka broker holds an empty fetch for `fetch.wait.max.ms`; the
/// development broker answers at once, so a caught-up librdkafka consumer asks
/// again and again: a core's worth of fetches between it and the broker, taken
/// from capture and the target. So once every assigned partition has reported
/// its end (`enable.partition.eof`) soon after the last message or the last
/// rest ([`QUICK_END`]: the broker did not hold the fetch), fetching pauses for
/// a moment. A broker that holds fetches never gets here.
///
/// A paused partition resumes after the last message polled from it, or at its
/// assigned start when it delivered none (so a consumer that rests must start
/// its partitions at concrete offsets, not at a logical end that would be
/// looked up again after messages arrived); resuming bumps librdkafka's fetch
/// version, which makes the next empty fetch report the end again. librdkafka
/// names only the partition number of an end, so ends are counted by number:
/// a count can run ahead when one topic's partition ends twice, which pauses
/// early and costs only a fetch again after the rest.
///
/// librdkafka applies a resume on its main thread and does not wake the
/// broker's thread, which then fetches only when its own wait of up to a second
/// ends (3–17 s waits for a new schema, then p50 527 ms end to end, were this).
/// A request to the broker wakes it: after resuming, [`IdleFetch::wake_if_due`]
/// asks the leader of one assigned partition for its watermarks. With several
/// brokers that all answer empty fetches at once, the others' partitions wait
/// for that second.
///
/// The paused partitions are kept as names, never as a `TopicPartitionList`:
/// a list that librdkafka filled holds references to its partitions, and a
/// consumer destroyed while one is alive never finishes (its broker thread
/// waits for them): an apply stopped during a rest hung in its restart.
#[derive(Debug)]
pub struct IdleFetch {
    pause: Duration,
    ends: HashMap<i32, usize>,
    /// The end of the rest, and the partitions it paused.
    resting: Option<(Instant, Vec<(String, i32)>)>,
    /// The last message or the end of the last rest.
    active_at: Instant,
}

/// An end reported sooner than this after the last activity came from a fetch
/// the broker did not hold: Kafka holds one for `fetch.wait.max.ms`, 500 ms by
/// default, and reports an end only after that. (Not much less: on a busy
/// machine the development broker's at-once answer can take tens of ms, and an
/// end not rested on is not reported again until the next message.)
pub const QUICK_END: Duration = Duration::from_millis(250);

impl IdleFetch {
    pub fn new(pause: Duration) -> Self {
        Self {
            pause,
            ends: HashMap::new(),
            resting: None,
            active_at: Instant::now(),
        }
    }

    /// How long to poll: while resting, until the rest ends.
    pub fn wait(&self, otherwise: Duration) -> Duration {
        self.resting
            .as_ref()
            .map_or(otherwise, |(until, _)| until.saturating_duration_since(Instant::now()))
    }

    /// Notes activity: a message polled, or partitions assigned.
    pub fn active(&mut self) {
        self.active_at = Instant::now();
    }

    /// Counts an end; true when it paused fetching (so pending messages are handed over).
    pub fn reached_end<X: ConsumerContext>(&mut self, consumer: &impl Consumer<X>, partition: i32) -> bool {
        *self.ends.entry(partition).or_default() += 1;
        if self.resting.is_some() || self.active_at.elapsed() > QUICK_END {
            return false;
        }
        let Ok(assigned) = consumer.assignment() else {
            return false;
        };
        let mut waiting = HashMap::<i32, usize>::new();
        for e in assigned.elements() {
            *waiting.entry(e.partition()).or_default() += 1;
        }
        let all = waiting
            .iter()
            .all(|(p, n)| self.ends.get(p).is_some_and(|ended| ended >= n));
        if !all || assigned.count() == 0 {
            return false;
        }
        if let Err(e) = consumer.pause(&assigned) {
            tracing::warn!(error = %e, "could not pause fetching at the end of the partitions");
            return false;
        }
        let paused = assigned
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        self.resting = Some((Instant::now() + self.pause, paused));
        true
    }

    /// Resumes fetching once the rest is over, and wakes the broker's thread.
    ///
    /// It resumes the partitions it paused, assigned or not: librdkafka keeps
    /// a partition's pause across a rebalance, so one revoked during the rest
    /// and assigned again later would otherwise never fetch again.
    pub fn wake_if_due<X: ConsumerContext>(&mut self, consumer: &impl Consumer<X>) {
        let Some((until, paused)) = &self.resting else {
            return;
        };
        if Instant::now() < *until {
            return;
        }
        let mut list = TopicPartitionList::with_capacity(paused.len());
        for (topic, partition) in paused {
            list.add_partition(topic, *partition);
        }
        if let Err(e) = consumer.resume(&list) {
            // Tried again at the next poll.
            tracing::warn!(error = %e, "could not resume fetching");
            return;
        }
        drop(list);
        if let Some((topic, partition)) = paused.first() {
            // Only to wake the thread; an error changes nothing (it wakes within a second anyway).
            let _ = consumer.fetch_watermarks(topic, *partition, Duration::from_secs(1));
        }
        self.resting = None;
        self.ends.clear();
        self.active_at = Instant::now();
    }
}

/// A topic Ferry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Keep only the latest value per key (offsets, registry storage).
    pub compacted: bool,
}

/// A topic could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot create topics: {0}")]
    Kafka(#[from] KafkaError),
    #[error("creating topic {topic:?} failed: {code}")]
    Create { topic: String, code: RDKafkaErrorCode },
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
/// Replication is the broker's default.
pub async fn ensure_topics(admin: &AdminClient<DefaultClientContext>, topics: &[TopicSpec]) -> Result<(), TopicError> {
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(-1));
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Create { topic, code }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_is_safe_and_options_override() {
        let mut s = KafkaSettings::new("127.0.0.1:9092");
        s.options.insert("linger.ms".into(), "50".into());
        s.options.insert("security.protocol".into(), "SASL_SSL".into());
        let p = s.producer();
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("linger.ms"), Some("50"));
        assert_eq!(p.get("queue.buffering.max.messages"), Some("30000"));
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        let t = s.transactional_producer("ferry-capture-x");
        assert_eq!(t.get("transactional.id"), Some("ferry-capture-x"));
        let c = s.consumer("g");
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("group.id"), Some("g"));
    }

    #[test]
    fn the_environment_names_properties_with_underscores() {
        let vars = [
            ("FERRY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("FERRY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("FERRY_KAFKA_SSL_CA_LOCATION", "/etc/ca.pem"),
            ("FERRY_KAFKA_", "ignored"),
            ("FERRY_BROKERS", "not a property"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let options = environment_options(vars);
        assert_eq!(
            options.into_iter().collect::<Vec<_>>(),
            [
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.location", "/etc/ca.pem"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn flags_lie_over_the_file() {
        let file = BTreeMap::from([("linger.ms".to_owned(), "5".to_owned())]);
        let flags = KafkaFlags {
            kafka_option: vec!["linger.ms=20".into(), "sasl.username = ferry".into()],
        };
        let settings = KafkaSettings::with_options("b:1", file).with_flags(&flags).unwrap();
        assert_eq!(settings.options.get("linger.ms").map(String::as_str), Some("20"));
        assert_eq!(settings.options.get("sasl.username").map(String::as_str), Some("ferry"));
        let bad = KafkaFlags {
            kafka_option: vec!["security.protocol".into()],
        };
        let err = KafkaSettings::new("b:1").with_flags(&bad).unwrap_err();
        assert!(
            err.starts_with("--kafka-option \"security.protocol\" is not KEY=VALUE"),
            "{err}"
        );
    }

    #[test]
    fn a_kafka_table_reads_quoted_and_dotted_keys() {
        #[derive(Deserialize)]
        struct File {
            #[serde(deserialize_with = "deserialize_options")]
            kafka: BTreeMap<String, String>,
        }
        let file: File = toml::from_str(
            "[kafka]\n\"sasl.mechanism\" = \"PLAIN\"\nsecurity.protocol = \"SASL_SSL\"\nlinger.ms = 20\n\
             enable.ssl.certificate.verification = false\n",
        )
        .unwrap();
        let want = [
            ("enable.ssl.certificate.verification", "false"),
            ("linger.ms", "20"),
            ("sasl.mechanism", "PLAIN"),
            ("security.protocol", "SASL_SSL"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(file.kafka.into_iter().collect::<Vec<_>>(), want);
        let bad: Result<File, _> = toml::from_str("[kafka]\n\"ssl.ca.location\" = [1]\n");
        assert!(bad.err().is_some_and(|e| e
            .to_string()
            .contains("kafka property ssl.ca.location must be a string")));
    }
}
