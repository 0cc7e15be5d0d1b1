//! `ferry-capture-postgres`: flags and config, then [`ferry_capture::postgres::run`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferry_capture::filter::TableFilter;
use ferry_capture::offsets::DEFAULT_TOPIC;
use ferry_capture::policy::SnapshotMode;
use ferry_capture::postgres::{run, CaptureError, PgCaptureConfig};
use ferry_core::config::{self, SecretUrl};
use ferry_core::kafka::KafkaSettings;
use ferry_core::process::{exit_code, shutdown_signal};
use ferry_core::telemetry::{init_logging, LogFormat};
use serde::{Deserialize, Serialize};

/// Captures a PostgreSQL database's changes (snapshot, then logical decoding) into Kafka.
#[derive(Debug, Parser, Serialize)]
#[command(name = "ferry-capture-postgres", version)]
struct Args {
    /// TOML config file; its keys are the long flag names with `_` for `-`.
    #[arg(long, env = "FERRY_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE
    #[arg(long, env = "FERRY_SOURCE", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// Kafka brokers [default: 127.0.0.1:9092].
    #[arg(long, env = "FERRY_BROKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    /// Schema registry URL [default: http://127.0.0.1:8081].
    #[arg(long, env = "FERRY_REGISTRY", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    registry: Option<String>,
    /// Topic prefix: topics are <prefix>.<schema>.<table>.
    #[arg(long, env = "FERRY_PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    /// Tables to capture: 'public.orders,inventory.*' [default: all].
    #[arg(long, env = "FERRY_TABLES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tables: Option<String>,
    /// initial | never | always | initial_only | when_needed [default: initial].
    #[arg(long, env = "FERRY_SNAPSHOT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<SnapshotMode>,
    /// Connections reading the snapshot at once; large tables are read in chunks [default: 2].
    #[arg(long, env = "FERRY_SNAPSHOT_WORKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_workers: Option<usize>,
    /// Heap pages per snapshot chunk (8 KiB each) [default: 4096].
    #[arg(long, env = "FERRY_SNAPSHOT_CHUNK_PAGES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_chunk_pages: Option<i64>,
    /// Replication slot [default: ferry_<prefix>].
    #[arg(long, env = "FERRY_SLOT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<String>,
    /// Publication [default: ferry_<prefix>].
    #[arg(long, env = "FERRY_PUBLICATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    publication: Option<String>,
    /// Partitions of the table topics Ferry creates [default: 3].
    #[arg(long, env = "FERRY_PARTITIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    partitions: Option<i32>,
    /// Do not write a tombstone after each delete.
    #[arg(long, env = "FERRY_NO_TOMBSTONES")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_tombstones: bool,
    /// Do not write BEGIN/END records to <prefix>.transaction.
    #[arg(long, env = "FERRY_NO_TRANSACTION_TOPIC")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_transaction_topic: bool,
    /// Seconds between heartbeat messages written into the WAL; 0 turns them off [default: 10].
    #[arg(long, env = "FERRY_HEARTBEAT_INTERVAL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat_interval: Option<u64>,
    /// Publish events and positions in Kafka transactions: exactly-once into
    /// Kafka for read_committed consumers (the brokers must support transactions).
    #[arg(long, env = "FERRY_EXACTLY_ONCE")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    exactly_once: bool,
    /// Serve /metrics and /health on HOST:PORT.
    #[arg(long, env = "FERRY_METRICS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<std::net::SocketAddr>,
    /// Offsets topic [default: _ferry_offsets].
    #[arg(long, env = "FERRY_OFFSETS_TOPIC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    offsets_topic: Option<String>,
    /// human or json [default: human].
    #[arg(long, env = "FERRY_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
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
    #[serde(default = "default_snapshot_chunk_pages")]
    snapshot_chunk_pages: i64,
    slot: Option<String>,
    publication: Option<String>,
    #[serde(default = "default_partitions")]
    partitions: i32,
    #[serde(default)]
    no_tombstones: bool,
    #[serde(default)]
    no_transaction_topic: bool,
    #[serde(default = "default_heartbeat_interval")]
    heartbeat_interval: u64,
    metrics: Option<std::net::SocketAddr>,
    #[serde(default)]
    exactly_once: bool,
    #[serde(default = "default_offsets_topic")]
    offsets_topic: String,
    #[serde(default)]
    log_format: LogFormat,
    /// librdkafka properties passed through (`[kafka]` table).
    #[serde(default)]
    kafka: BTreeMap<String, String>,
}

fn default_registry() -> SecretUrl {
    SecretUrl::parse("http://127.0.0.1:8081").unwrap_or_else(|_| unreachable!("a valid literal URL"))
}
fn default_snapshot_workers() -> usize {
    2
}
fn default_snapshot_chunk_pages() -> i64 {
    ferry_capture::postgres::snapshot::CHUNK_PAGES
}
fn default_heartbeat_interval() -> u64 {
    10
}
fn default_partitions() -> i32 {
    3
}
fn default_offsets_topic() -> String {
    DEFAULT_TOPIC.into()
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

async fn main_inner(args: Args) -> Result<(), MainError> {
    let file: FileConfig = config::load(args.config.as_deref(), &args)?;
    init_logging(file.log_format);
    let source = file.source.ok_or(MainError::Missing(
        "--source is required: postgres://USER:PASSWORD@HOST:PORT/DATABASE",
    ))?;
    let prefix = file.prefix.ok_or(MainError::Missing(
        "--prefix is required: topics are named <prefix>.<schema>.<table>",
    ))?;
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(MainError::Invalid(format!(
            "--prefix {prefix:?} must be letters, digits, '.', '_' or '-': it names Kafka topics"
        )));
    }
    let tables = TableFilter::parse(&file.tables).map_err(|e| config::ConfigError::Invalid(e.to_string()))?;
    let config = PgCaptureConfig {
        source,
        kafka: KafkaSettings {
            brokers: file.brokers,
            options: file.kafka,
        },
        registry: file.registry,
        slot: file.slot.unwrap_or_else(|| PgCaptureConfig::default_name(&prefix)),
        publication: file
            .publication
            .unwrap_or_else(|| PgCaptureConfig::default_name(&prefix)),
        prefix,
        tables,
        snapshot: file.snapshot,
        snapshot_workers: file.snapshot_workers.max(1),
        snapshot_chunk_pages: file.snapshot_chunk_pages.max(1),
        partitions: file.partitions,
        tombstones: !file.no_tombstones,
        transaction_topic: !file.no_transaction_topic,
        exactly_once: file.exactly_once,
        offsets_topic: file.offsets_topic,
        heartbeat: (file.heartbeat_interval > 0).then(|| std::time::Duration::from_secs(file.heartbeat_interval)),
        metrics: file.metrics,
    };
    tracing::info!(source = %config.source, prefix = %config.prefix, "ferry-capture-postgres starting");
    run(config, shutdown_signal()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    exit_code("ferry-capture-postgres", main_inner(Args::parse()).await)
}
