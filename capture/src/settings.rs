//! What every capture binary is told: the flags and config keys they share,
//! and the validated [`CaptureSettings`] each source runs with.
//!
//! Each source's binary flattens [`CaptureArgs`] into its own clap struct and
//! adds only its own flags; [`CaptureFile`] is the matching TOML shape, whose
//! keys it does not know are handed to the source's own struct (which refuses
//! any it does not know either, so a misspelt key is an error, not ignored).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ferry_core::config::{Credentials, RegistryAccess, SecretUrl};
use ferry_core::envelope::Connector;
use ferry_core::kafka::KafkaSettings;
use ferry_core::telemetry::LogFormat;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::filter::TableFilter;
use crate::offsets::DEFAULT_TOPIC;
use crate::policy::SnapshotMode;
use crate::publish::PublisherSettings;

/// The options every capture binary shares, as flags (each also a `FERRY_*`
/// variable and a key of the `--config` file).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct CaptureArgs {
    /// TOML config file; its keys are the long flag names with `_` for `-`.
    #[arg(long, env = "FERRY_CONFIG")]
    #[serde(skip)]
    pub config: Option<std::path::PathBuf>,
    /// The source database URL.
    #[arg(long, env = "FERRY_SOURCE", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Kafka brokers [default: 127.0.0.1:9092].
    #[arg(long, env = "FERRY_BROKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// Schema registry URL [default: http://127.0.0.1:8081].
    #[arg(long, env = "FERRY_REGISTRY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Topic prefix: topics are <prefix>.<schema>.<table>.
    #[arg(long, env = "FERRY_PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Tables to capture: 'shop.orders,inventory.*' [default: all].
    #[arg(long, env = "FERRY_TABLES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<String>,
    /// initial | never | always | initial_only | when_needed [default: initial].
    #[arg(long, env = "FERRY_SNAPSHOT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotMode>,
    /// Connections reading the snapshot at once; large tables are read in chunks [default: 2].
    #[arg(long, env = "FERRY_SNAPSHOT_WORKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_workers: Option<usize>,
    /// Partitions of the table topics Ferry creates [default: 3].
    #[arg(long, env = "FERRY_PARTITIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Do not write a tombstone after each delete.
    #[arg(long, env = "FERRY_NO_TOMBSTONES")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_tombstones: bool,
    /// Do not write BEGIN/END records to <prefix>.transaction.
    #[arg(long, env = "FERRY_NO_TRANSACTION_TOPIC")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_transaction_topic: bool,
    /// Publish events and positions in Kafka transactions: exactly-once into
    /// Kafka for read_committed consumers (the brokers must support transactions).
    #[arg(long, env = "FERRY_EXACTLY_ONCE")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exactly_once: bool,
    /// Serve /metrics and /health on HOST:PORT.
    #[arg(long, env = "FERRY_METRICS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// Offsets topic [default: _ferry_offsets].
    #[arg(long, env = "FERRY_OFFSETS_TOPIC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offsets_topic: Option<String>,
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

/// The config file's keys (and the flags laid over them), before validation.
#[derive(Debug, Deserialize)]
pub struct CaptureFile {
    source: Option<SecretUrl>,
    #[serde(default = "ferry_core::kafka::default_brokers")]
    brokers: String,
    #[serde(default = "default_registry")]
    registry: SecretUrl,
    prefix: Option<String>,
    #[serde(default)]
    tables: String,
    #[serde(default)]
    snapshot: SnapshotMode,
    #[serde(default = "default_snapshot_workers")]
    snapshot_workers: usize,
    #[serde(default = "default_partitions")]
    partitions: i32,
    #[serde(default)]
    no_tombstones: bool,
    #[serde(default)]
    no_transaction_topic: bool,
    #[serde(default)]
    exactly_once: bool,
    metrics: Option<SocketAddr>,
    #[serde(default = "default_offsets_topic")]
    offsets_topic: String,
    #[serde(default)]
    log_format: LogFormat,
    /// librdkafka properties passed through (`[kafka]` table).
    #[serde(default, deserialize_with = "ferry_core::kafka::deserialize_options")]
    kafka: BTreeMap<String, String>,
    /// Before `rest`, which takes the keys no one else does.
    #[serde(flatten)]
    credentials: Credentials,
    #[serde(flatten)]
    kafka_flags: ferry_core::kafka::KafkaFlags,
    /// The source's own keys.
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
    /// The `--config` file the keys came from, for naming it in errors.
    #[serde(skip)]
    file: Option<std::path::PathBuf>,
}

fn default_registry() -> SecretUrl {
    SecretUrl::parse("http://127.0.0.1:8081").unwrap_or_else(|_| unreachable!("a valid literal URL"))
}
fn default_snapshot_workers() -> usize {
    2
}
fn default_partitions() -> i32 {
    3
}
fn default_offsets_topic() -> String {
    DEFAULT_TOPIC.into()
}

/// What every capture runs with, validated.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub source: SecretUrl,
    pub kafka: KafkaSettings,
    pub registry: RegistryAccess,
    pub prefix: String,
    pub tables: TableFilter,
    pub snapshot: SnapshotMode,
    /// Connections reading the snapshot at once.
    pub snapshot_workers: usize,
    pub partitions: i32,
    pub tombstones: bool,
    pub transaction_topic: bool,
    /// Events and positions in Kafka transactions.
    pub exactly_once: bool,
    pub offsets_topic: String,
    /// Where to serve `/metrics` and `/health`.
    pub metrics: Option<SocketAddr>,
}

impl CaptureSettings {
    /// How the publisher of a capture of `connector` publishes.
    pub fn publisher(&self, connector: Connector) -> PublisherSettings {
        PublisherSettings {
            kafka: self.kafka.clone(),
            prefix: self.prefix.clone(),
            connector,
            partitions: self.partitions,
            tombstones: self.tombstones,
            transaction_topic: self.transaction_topic,
            exactly_once: self.exactly_once,
            offsets_topic: self.offsets_topic.clone(),
        }
    }
}

/// Reads `--config`, the `FERRY_*` environment and the flags (`args`), and
/// returns the settings and the source's own keys (`S`), or a one-line error
/// naming what to fix. Logging starts once they are valid: until then an
/// error is that one line on stderr, not a log line as well.
pub fn load<S: DeserializeOwned>(
    args: &impl Serialize,
    config: Option<&std::path::Path>,
    source_form: &str,
) -> Result<(CaptureSettings, S), String> {
    let mut file: CaptureFile = ferry_core::config::load(config, args).map_err(|e| e.to_string())?;
    file.file = config.map(std::path::Path::to_path_buf);
    let log_format = file.log_format;
    let settings = file.settings(source_form)?;
    ferry_core::telemetry::init_logging(log_format, "info");
    Ok(settings)
}

impl CaptureFile {
    /// The settings and the source's own keys (`S`), or a one-line error
    /// naming what to fix. `source_form` shows the URL the source takes.
    pub fn settings<S: DeserializeOwned>(self, source_form: &str) -> Result<(CaptureSettings, S), String> {
        let source = self
            .source
            .ok_or_else(|| format!("--source is required: {source_form}"))?;
        let password = self.credentials.database().map_err(|e| e.to_string())?;
        let source = source.with_password(password.as_ref()).map_err(|e| e.to_string())?;
        let registry = self.credentials.registry(self.registry).map_err(|e| e.to_string())?;
        let prefix = self
            .prefix
            .ok_or("--prefix is required: topics are named <prefix>.<schema>.<table>")?;
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(format!(
                "--prefix {prefix:?} must be letters, digits, '.', '_' or '-': it names Kafka topics"
            ));
        }
        let tables = TableFilter::parse(&self.tables).map_err(|e| e.to_string())?;
        let own = ferry_core::config::own_keys(self.file.as_deref(), self.rest).map_err(|e| e.to_string())?;
        let settings = CaptureSettings {
            source,
            kafka: KafkaSettings::with_options(self.brokers, self.kafka).with_flags(&self.kafka_flags)?,
            registry,
            prefix,
            tables,
            snapshot: self.snapshot,
            snapshot_workers: self.snapshot_workers.max(1),
            partitions: self.partitions,
            tombstones: !self.no_tombstones,
            transaction_topic: !self.no_transaction_topic,
            exactly_once: self.exactly_once,
            offsets_topic: self.offsets_topic,
            metrics: self.metrics,
        };
        Ok((settings, own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Own {
        #[serde(default)]
        server_id: u32,
    }

    fn file(toml: &str) -> CaptureFile {
        let value: toml::Value = toml::from_str(toml).unwrap();
        serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()
    }

    #[test]
    fn the_source_keys_go_to_the_source_and_unknown_keys_are_errors() {
        let (settings, own) = file("source = 'mysql://u@h/db'\nprefix = 'p'\nserver_id = 7\npartitions = 5")
            .settings::<Own>("mysql://…")
            .unwrap();
        assert_eq!((settings.partitions, own), (5, Own { server_id: 7 }));
        let err = file("source = 'mysql://u@h/db'\nprefix = 'p'\nserver_idd = 7")
            .settings::<Own>("mysql://…")
            .unwrap_err();
        assert!(err.contains("server_idd"), "{err}");
        let err = file("prefix = 'p'").settings::<Own>("mysql://USER@HOST").unwrap_err();
        assert!(err.contains("--source is required: mysql://USER@HOST"), "{err}");
        let err = file("source = 'mysql://u@h/db'\nprefix = 'a b'")
            .settings::<Own>("")
            .unwrap_err();
        assert!(err.contains("--prefix"), "{err}");
    }
}
