//! `ferry-capture-mysql`: flags and config, then [`ferry_capture::mysql::run`].

use std::process::ExitCode;

use clap::Parser;
use ferry_capture::mysql::{run, CaptureError, MysqlCaptureConfig};
use ferry_capture::settings::{CaptureArgs, CaptureFile};
use ferry_core::config;
use ferry_core::process::{exit_code, shutdown_signal};
use ferry_core::telemetry::init_logging;
use serde::{Deserialize, Serialize};

/// Captures a MySQL or MariaDB server's changes (snapshot, then the row binlog) into Kafka.
#[derive(Debug, Parser, Serialize)]
#[command(name = "ferry-capture-mysql", version)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    common: CaptureArgs,
    /// The replica id capture registers with; unique among the source's replicas.
    #[arg(long, env = "FERRY_SERVER_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    server_id: Option<u32>,
    /// Rows per snapshot chunk of a large table with an integer key [default: 250000].
    #[arg(long, env = "FERRY_SNAPSHOT_CHUNK_ROWS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_chunk_rows: Option<u64>,
}

/// The config keys of MySQL capture alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Own {
    server_id: Option<u32>,
    #[serde(default = "default_snapshot_chunk_rows")]
    snapshot_chunk_rows: u64,
}

fn default_snapshot_chunk_rows() -> u64 {
    ferry_capture::mysql::snapshot::CHUNK_ROWS
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

async fn main_inner(args: Args) -> Result<(), MainError> {
    let file: CaptureFile = config::load(args.common.config.as_deref(), &args)?;
    init_logging(file.log_format);
    let (common, own) = file
        .settings::<Own>("mysql://USER:PASSWORD@HOST:PORT")
        .map_err(MainError::Invalid)?;
    let server_id = own.server_id.filter(|id| *id > 0).ok_or_else(|| {
        MainError::Invalid(
            "--server-id is required: a number from 1 to 4294967295 that no other replica of the source uses".into(),
        )
    })?;
    let config = MysqlCaptureConfig {
        common,
        server_id,
        snapshot_chunk_rows: own.snapshot_chunk_rows.max(1),
    };
    tracing::info!(source = %config.common.source, prefix = %config.common.prefix, "ferry-capture-mysql starting");
    run(config, shutdown_signal()).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    exit_code("ferry-capture-mysql", main_inner(Args::parse()).await)
}
