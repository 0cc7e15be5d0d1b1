//! What every apply binary is told: the flags and config keys they share, and
//! the validated [`ApplySettings`] the pipeline runs with.
//!
//! Each target binary flattens [`ApplyArgs`] into its own clap struct and adds
//! its `--target` and the options only it has (a clap and serde struct,
//! [`NoOptions`] for none, e.g. DuckDB's `--mode`); [`ApplyFile`] is the
//! matching TOML shape. So `ferry-apply-postgres` and the other targets take
//! the same options with the same defaults, written once, and a target's own
//! options are flags, variables and config keys like the shared ones.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use ferry_core::config::{Credentials, RegistryAccess, Secret, SecretUrl};
use ferry_core::kafka::KafkaSettings;
use ferry_core::meta::TableId;
use ferry_core::telemetry::LogFormat;
use serde::{Deserialize, Serialize};

/// Where a group starts reading a partition for which the target holds no offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
    /// The first message at or after this time, ms since the epoch.
    Timestamp(i64),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            other => {
                if let Ok(ms) = other.parse::<i64>() {
                    return Ok(StartFrom::Timestamp(ms));
                }
                chrono::DateTime::parse_from_rfc3339(other)
                    .map(|t| StartFrom::Timestamp(t.timestamp_millis()))
                    .map_err(|_| {
                        format!(
                            "--from {other:?} is not earliest, latest, an RFC 3339 time \
                             (2026-01-31T12:00:00Z) or milliseconds since 1970"
                        )
                    })
            }
        }
    }
}

impl<'de> Deserialize<'de> for StartFrom {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What to do with an event the target rejects or that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop, naming the topic, partition, offset and key.
    #[default]
    Fail,
    /// Write it with its error to the dead-letter topic and go on.
    Dlq,
}

/// `SRC_SCHEMA.SRC_TABLE=TGT_SCHEMA.TGT_TABLE` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableMap(HashMap<TableId, TableId>);

impl TableMap {
    /// Parses a comma-separated list of `a.b=c.d`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let table = |s: &str| {
            s.trim()
                .split_once('.')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .map(|(a, b)| TableId::new(a, b))
        };
        list.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|pair| {
                pair.split_once('=')
                    .and_then(|(s, t)| Some((table(s)?, table(t)?)))
                    .ok_or_else(|| {
                        format!("--table-map entry {pair:?} is not SRC_SCHEMA.SRC_TABLE=TGT_SCHEMA.TGT_TABLE")
                    })
            })
            .collect::<Result<_, _>>()
            .map(TableMap)
    }

    /// The target table of source table `source`: as mapped, or the table of the
    /// same name in `default_schema`.
    pub fn target(&self, source: &TableId, default_schema: &str) -> TableId {
        self.0
            .get(source)
            .cloned()
            .unwrap_or_else(|| TableId::new(default_schema, source.table.clone()))
    }
}

/// The options every apply binary shares, as flags (each also a `FERRY_*`
/// variable and a key of the `--config` file).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ApplyArgs {
    /// TOML config file; its keys are the long flag names with `_` for `-`.
    #[arg(long, env = "FERRY_CONFIG")]
    #[serde(skip)]
    pub config: Option<std::path::PathBuf>,
    /// Kafka brokers [default: 127.0.0.1:9092].
    #[arg(long, env = "FERRY_BROKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// Schema registry URL [default: http://127.0.0.1:8081].
    #[arg(long, env = "FERRY_REGISTRY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Topics to apply, a regular expression matched against whole names (e.g. 'app\..*').
    #[arg(long, env = "FERRY_TOPICS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topics: Option<String>,
    /// Consumer group; its offsets live in the target.
    #[arg(long, env = "FERRY_GROUP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A stable name for this process in the group (Kafka static membership): a
    /// restart under the same name resumes at once instead of after a rebalance.
    #[arg(long, env = "FERRY_INSTANCE_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Where a partition without a stored offset starts: earliest, latest, or a time
    /// (RFC 3339 or ms since 1970) [default: earliest].
    #[arg(long, env = "FERRY_FROM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// 'SRC_SCHEMA.SRC_TABLE=TGT_SCHEMA.TGT_TABLE,...' [default: same table name, target's default schema].
    #[arg(long, env = "FERRY_TABLE_MAP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_map: Option<String>,
    /// fail | dlq: what to do with an event the target rejects [default: fail].
    #[arg(long, env = "FERRY_ON_ERROR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// Dead-letter topic [default: _ferry_dlq.GROUP].
    #[arg(long, env = "FERRY_DLQ_TOPIC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq_topic: Option<String>,
    /// Parallel writers, each with its own target connection; a partition always
    /// goes to the same one [default: 2].
    #[arg(long, env = "FERRY_WORKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Most events in one target transaction [default: 20000].
    #[arg(long, env = "FERRY_BATCH_SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// How long a writer waits for more events before writing a batch smaller than
    /// --batch-size; 0 writes as soon as nothing more is waiting [default: 0].
    #[arg(long, env = "FERRY_BATCH_WAIT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_wait_ms: Option<u64>,
    /// Serve /metrics and /health on HOST:PORT.
    #[arg(long, env = "FERRY_METRICS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// human or json [default: human].
    #[arg(long, env = "FERRY_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[command(flatten)]
    #[serde(flatten)]
    pub credentials: Credentials,
    #[command(flatten)]
    #[serde(flatten)]
    pub kafka_flags: ferry_core::kafka::KafkaFlags,
}

/// A `--target`: a URL takes the password given apart from it, a file none.
pub trait TargetAddress: Sized {
    fn with_password(self, password: Option<&Secret>) -> Result<Self, String>;
}

impl TargetAddress for SecretUrl {
    fn with_password(self, password: Option<&Secret>) -> Result<Self, String> {
        SecretUrl::with_password(self, password).map_err(|e| e.to_string())
    }
}

/// The options of a target binary that has none beyond the shared ones.
#[derive(Debug, Clone, Copy, Default, clap::Args, Serialize, Deserialize)]
pub struct NoOptions {}

/// The config file's keys (and the flags laid over them), before validation:
/// the shared ones, the target `A` (a URL, a path) and the binary's own `O`.
#[derive(Debug, Deserialize)]
pub struct ApplyFile<A, O> {
    pub target: Option<A>,
    #[serde(default = "ferry_core::kafka::default_brokers")]
    pub brokers: String,
    #[serde(default = "default_registry")]
    pub registry: SecretUrl,
    pub topics: Option<String>,
    pub group: Option<String>,
    pub instance_id: Option<String>,
    #[serde(default)]
    pub from: StartFrom,
    #[serde(default)]
    pub table_map: String,
    #[serde(default)]
    pub on_error: OnError,
    pub dlq_topic: Option<String>,
    #[serde(default = "default_workers")]
    pub workers: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub batch_wait_ms: u64,
    pub metrics: Option<SocketAddr>,
    #[serde(default)]
    pub log_format: LogFormat,
    /// librdkafka properties passed through (`[kafka]` table).
    #[serde(default, deserialize_with = "ferry_core::kafka::deserialize_options")]
    pub kafka: BTreeMap<String, String>,
    #[serde(flatten)]
    pub credentials: Credentials,
    #[serde(flatten)]
    pub kafka_flags: ferry_core::kafka::KafkaFlags,
    /// The target binary's own keys.
    #[serde(flatten)]
    pub options: O,
    /// Keys no one takes, refused by [`ApplyFile::settings`] (serde's
    /// `deny_unknown_fields` does not work beside `flatten`).
    #[serde(flatten)]
    unknown: BTreeMap<String, serde::de::IgnoredAny>,
    /// The `--config` file the keys came from, for naming it in errors.
    #[serde(skip)]
    pub file: Option<std::path::PathBuf>,
}

fn default_registry() -> SecretUrl {
    SecretUrl::parse("http://127.0.0.1:8081").unwrap_or_else(|_| unreachable!("a valid literal URL"))
}
fn default_workers() -> usize {
    2
}
fn default_batch_size() -> usize {
    20_000
}

/// Everything the apply pipeline needs, validated.
#[derive(Debug, Clone)]
pub struct ApplySettings {
    pub kafka: KafkaSettings,
    pub registry: RegistryAccess,
    /// The subscription, anchored: `^(REGEX)$`.
    pub topics: String,
    pub group: String,
    /// Static group membership (`group.instance.id`).
    pub instance_id: Option<String>,
    pub from: StartFrom,
    pub table_map: TableMap,
    pub on_error: OnError,
    pub dlq_topic: String,
    pub workers: usize,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub metrics: Option<SocketAddr>,
}

impl<A: TargetAddress, O> ApplyFile<A, O> {
    /// The settings, the target and the binary's own options, or a one-line
    /// error naming the flag to fix.
    pub fn settings(self) -> Result<(ApplySettings, Option<A>, O), String> {
        if let Some(key) = self.unknown.keys().next() {
            return Err(ferry_core::config::unknown_key(self.file.as_deref(), key).to_string());
        }
        let topics = self
            .topics
            .filter(|t| !t.trim().is_empty())
            .ok_or("--topics is required: a regular expression of the topics to apply, e.g. 'app\\..*'")?;
        let group = self
            .group
            .filter(|g| !g.trim().is_empty())
            .ok_or("--group is required: the consumer group whose offsets this target keeps")?;
        if self.batch_size == 0 || self.workers == 0 {
            return Err("--batch-size and --workers must be at least 1".into());
        }
        let password = self.credentials.database().map_err(|e| e.to_string())?;
        let target = self.target.map(|t| t.with_password(password.as_ref())).transpose()?;
        let registry = self.credentials.registry(self.registry).map_err(|e| e.to_string())?;
        let settings = ApplySettings {
            kafka: KafkaSettings::with_options(self.brokers, self.kafka).with_flags(&self.kafka_flags)?,
            registry,
            topics: format!("^({topics})$"),
            dlq_topic: self.dlq_topic.unwrap_or_else(|| format!("_ferry_dlq.{group}")),
            group,
            instance_id: self.instance_id,
            from: self.from,
            table_map: TableMap::parse(&self.table_map)?,
            on_error: self.on_error,
            workers: self.workers,
            batch_size: self.batch_size,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            metrics: self.metrics,
        };
        Ok((settings, target, self.options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!("earliest".parse(), Ok(StartFrom::Earliest));
        assert_eq!("latest".parse(), Ok(StartFrom::Latest));
        assert_eq!("1700000000000".parse(), Ok(StartFrom::Timestamp(1_700_000_000_000)));
        assert_eq!(
            "2023-11-14T22:13:20Z".parse(),
            Ok(StartFrom::Timestamp(1_700_000_000_000))
        );
        let err = "yesterday".parse::<StartFrom>().unwrap_err();
        assert!(err.contains("--from \"yesterday\""), "{err}");
    }

    #[test]
    fn table_maps_parse_and_default_to_the_target_schema() {
        let map = TableMap::parse("public.orders=sales.orders_copy, inv.items=inv.items2").unwrap();
        assert_eq!(
            map.target(&TableId::new("public", "orders"), "public"),
            TableId::new("sales", "orders_copy")
        );
        assert_eq!(
            map.target(&TableId::new("shop", "orders"), "public"),
            TableId::new("public", "orders")
        );
        for bad in ["orders=x.y", "a.b=c", "a.b"] {
            assert!(TableMap::parse(bad).unwrap_err().contains(bad), "{bad}");
        }
    }
}
