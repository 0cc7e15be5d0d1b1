//! What every target binary is, apart from its target: the `--target` flag
//! beside the shared [`ApplyArgs`], the config file, logging, and
//! [`pipeline::run`] until SIGINT or SIGTERM, ending with a one-line error
//! and exit code 1 if it fails.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use ferry_core::config::{self, SecretUrl};
use ferry_core::process::{exit_code, shutdown_signal};
use ferry_core::telemetry::init_logging;
use serde::Serialize;

use crate::settings::{ApplyArgs, ApplyFile};
use crate::target::Connect;
use crate::{pipeline, ApplyError};

/// A target binary's flags.
#[derive(Debug, clap::Parser, Serialize)]
pub struct TargetArgs {
    /// The target database's URL.
    #[arg(long, env = "FERRY_TARGET", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    common: ApplyArgs,
}

/// A target binary: `name` (`ferry-apply-postgres`) applies to `what` (for
/// `--help`) at a `--target` written like `url_form`, connected by `connect`.
pub async fn main<C: Connect>(
    name: &'static str,
    what: &'static str,
    url_form: &'static str,
    connect: impl FnOnce(SecretUrl) -> Result<C, String>,
) -> ExitCode {
    let matches = TargetArgs::command()
        .name(name)
        .bin_name(name)
        .about(format!("Applies change events from Kafka to {what}, exactly once."))
        .mut_arg("target", |a| a.help(url_form.to_owned()))
        .get_matches();
    let result = match TargetArgs::from_arg_matches(&matches) {
        Ok(args) => run(name, url_form, args, connect).await,
        Err(e) => e.exit(),
    };
    exit_code(name, result)
}

async fn run<C: Connect>(
    name: &str,
    url_form: &str,
    args: TargetArgs,
    connect: impl FnOnce(SecretUrl) -> Result<C, String>,
) -> Result<(), ApplyError> {
    let file: ApplyFile =
        config::load(args.common.config.as_deref(), &args).map_err(|e| ApplyError::Config(e.to_string()))?;
    init_logging(file.log_format);
    let (settings, target) = file.settings().map_err(ApplyError::Config)?;
    let target = target.ok_or_else(|| ApplyError::Config(format!("--target is required: {url_form}")))?;
    tracing::info!(target = %target, group = %settings.group, "{name} starting");
    let connect = connect(target).map_err(ApplyError::Config)?;
    pipeline::run(settings, connect, shutdown_signal()).await
}
