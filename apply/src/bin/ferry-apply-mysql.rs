//! `ferry-apply-mysql`: flags and config, then [`ferry_apply::pipeline::run`]
//! with the MySQL/MariaDB target.

use std::process::ExitCode;

use clap::Parser;
use ferry_apply::mysql::MyConnect;
use ferry_apply::settings::{ApplyArgs, ApplyFile};
use ferry_apply::{pipeline, ApplyError};
use ferry_core::config;
use ferry_core::process::{exit_code, shutdown_signal};
use ferry_core::telemetry::init_logging;
use serde::Serialize;

/// As for ferry-apply-postgres: every event's values are allocated and freed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Applies change events from Kafka to a MySQL or MariaDB database, exactly once.
#[derive(Debug, Parser, Serialize)]
#[command(name = "ferry-apply-mysql", version)]
struct Args {
    /// mysql://USER:PASSWORD@HOST:PORT/DATABASE (the database is where source tables go).
    #[arg(long, env = "FERRY_TARGET", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    common: ApplyArgs,
}

async fn main_inner(args: Args) -> Result<(), ApplyError> {
    let file: ApplyFile =
        config::load(args.common.config.as_deref(), &args).map_err(|e| ApplyError::Config(e.to_string()))?;
    init_logging(file.log_format);
    let (settings, target) = file.settings().map_err(ApplyError::Config)?;
    let target = target
        .ok_or_else(|| ApplyError::Config("--target is required: mysql://USER:PASSWORD@HOST:PORT/DATABASE".into()))?;
    tracing::info!(target = %target, group = %settings.group, "ferry-apply-mysql starting");
    let connect = MyConnect::new(target).map_err(ApplyError::Config)?;
    pipeline::run(settings, connect, shutdown_signal()).await
}

#[tokio::main]
async fn main() -> ExitCode {
    exit_code("ferry-apply-mysql", main_inner(Args::parse()).await)
}
