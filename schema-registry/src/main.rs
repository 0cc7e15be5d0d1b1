//! `ferry-schema-registry`: flags and config, then [`ferry_schema_registry::run`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferry_core::config::{self, Secret};
use ferry_core::kafka::{KafkaFlags, KafkaSettings};
use ferry_core::process::{exit_code, shutdown_signal};
use ferry_core::telemetry::{init_logging, LogFormat};
use ferry_schema_registry::{run, Config, DEFAULT_TOPIC};
use serde::{Deserialize, Serialize};

/// A Confluent Schema Registry compatible server storing schemas in a Kafka topic.
#[derive(Debug, Parser, Serialize)]
#[command(name = "ferry-schema-registry", version)]
struct Args {
    /// TOML config file; its keys are the long flag names with `_` for `-`.
    #[arg(long, env = "FERRY_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8081].
    #[arg(long, env = "FERRY_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Kafka brokers, host:port[,host:port] [default: 127.0.0.1:9092].
    #[arg(long, env = "FERRY_BROKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    /// Storage topic (compacted, one partition) [default: _ferry_schemas].
    #[arg(long, env = "FERRY_TOPIC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    /// Serve reads only; never take the writer role.
    #[arg(long, env = "FERRY_READ_ONLY")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
    /// Require HTTP basic auth with this user (password from --basic-auth-password).
    #[arg(long, env = "FERRY_BASIC_AUTH_USER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    basic_auth_user: Option<String>,
    /// Password for basic auth (a flag shows in the process list: prefer the
    /// variable or --basic-auth-password-file).
    #[arg(long, env = "FERRY_BASIC_AUTH_PASSWORD", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    basic_auth_password: Option<Secret>,
    /// File holding the password for basic auth.
    #[arg(long, env = "FERRY_BASIC_AUTH_PASSWORD_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    basic_auth_password_file: Option<PathBuf>,
    /// URL other instances name to clients as the writer [default: http://<listen>].
    #[arg(long, env = "FERRY_ADVERTISED_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertised_url: Option<String>,
    /// Serve HTTPS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, env = "FERRY_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// PKCS#8 PEM private key for --tls-cert.
    #[arg(long, env = "FERRY_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// Largest request body, in bytes [default: 16777216].
    #[arg(long, env = "FERRY_MAX_BODY_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<usize>,
    /// Log format: human or json [default: human].
    #[arg(long, env = "FERRY_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    #[command(flatten)]
    #[serde(flatten)]
    kafka_flags: KafkaFlags,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "ferry_core::kafka::default_brokers")]
    brokers: String,
    #[serde(default = "default_topic")]
    topic: String,
    #[serde(default)]
    read_only: bool,
    basic_auth_user: Option<String>,
    basic_auth_password: Option<Secret>,
    basic_auth_password_file: Option<PathBuf>,
    advertised_url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default)]
    log_format: LogFormat,
    /// librdkafka properties passed through (`[kafka]` table).
    #[serde(default, deserialize_with = "ferry_core::kafka::deserialize_options")]
    kafka: BTreeMap<String, String>,
    /// librdkafka properties as `KEY=VALUE` (`--kafka-option`), over `[kafka]`.
    #[serde(default)]
    kafka_option: Vec<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8081".into()
}
fn default_topic() -> String {
    DEFAULT_TOPIC.into()
}
fn default_max_body() -> usize {
    16 * 1024 * 1024
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("basic auth needs both --basic-auth-user and --basic-auth-password")]
    HalfAuth,
    #[error("TLS needs both --tls-cert and --tls-key")]
    HalfTls,
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: String, reason: String },
    #[error(transparent)]
    Server(#[from] ferry_schema_registry::ServerError),
}

async fn main_inner(args: Args) -> Result<(), MainError> {
    let file: FileConfig = config::load(args.config.as_deref(), &args)?;
    init_logging(file.log_format, "info");
    let password = config::password(
        file.basic_auth_password,
        file.basic_auth_password_file.as_deref(),
        "--basic-auth-password-file",
    )?;
    let basic_auth = match (file.basic_auth_user, password) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        _ => return Err(MainError::HalfAuth),
    };
    let tls = match (file.tls_cert, file.tls_key) {
        (Some(cert), Some(key)) => Some(ferry_schema_registry::tls::TlsFiles { cert, key }),
        (None, None) => None,
        _ => return Err(MainError::HalfTls),
    };
    let listener = tokio::net::TcpListener::bind(&file.listen)
        .await
        .map_err(|e| MainError::Listen {
            address: file.listen.clone(),
            reason: e.to_string(),
        })?;
    let flags = KafkaFlags {
        kafka_option: file.kafka_option,
    };
    let kafka = KafkaSettings::with_options(file.brokers, file.kafka)
        .with_flags(&flags)
        .map_err(|e| MainError::Config(config::ConfigError::Invalid(e)))?;
    let config = Config {
        kafka,
        topic: file.topic,
        read_only: file.read_only,
        basic_auth,
        max_body: file.max_body_bytes,
        advertised_url: file.advertised_url,
        tls,
    };
    run(listener, config, shutdown_signal()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    exit_code("ferry-schema-registry", main_inner(args).await)
}
