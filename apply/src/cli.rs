//! What every target binary is, apart from its target: the `--target` flag
//! and the binary's own options beside the shared [`ApplyArgs`], the config
//! file, logging, and [`pipeline::run`] until SIGINT or SIGTERM, ending with a
//! one-line error and exit code 1 if it fails.

use std::fmt::{Debug, Display};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use ferry_core::config;
use ferry_core::process::{exit_code, shutdown_signal};
use ferry_core::telemetry::init_logging;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::settings::{ApplyArgs, ApplyFile, TargetAddress};
use crate::target::Connect;
use crate::{pipeline, ApplyError};

/// A target binary's flags: the target, the shared ones, and its own `O`
/// ([`crate::settings::NoOptions`] for none).
#[derive(Debug, clap::Parser, Serialize)]
pub struct TargetArgs<O: clap::Args> {
    /// Where the target is.
    #[arg(long, env = "FERRY_TARGET", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    common: ApplyArgs,
    #[command(flatten)]
    #[serde(flatten)]
    options: O,
}

/// A target binary: `name` (`ferry-apply-postgres`) applies to `what` (for
/// `--help`) at a `--target` written like `target_form` (a URL `A` such as
/// [`ferry_core::config::SecretUrl`], which prints without its password, or a
/// path), with its own options `O`, connected by `connect`.
pub async fn main<C, A, O>(
    name: &'static str,
    what: &'static str,
    target_form: &'static str,
    connect: impl FnOnce(A, O) -> Result<C, String>,
) -> ExitCode
where
    C: Connect,
    A: DeserializeOwned + Display + TargetAddress,
    O: clap::Args + Serialize + DeserializeOwned + Debug,
{
    let matches = TargetArgs::<O>::command()
        .name(name)
        .bin_name(name)
        .about(format!("Applies change events from Kafka to {what}, exactly once."))
        .mut_arg("target", |a| a.help(target_form.to_owned()))
        .get_matches();
    let result = match TargetArgs::<O>::from_arg_matches(&matches) {
        Ok(args) => run(name, target_form, args, connect).await,
        Err(e) => e.exit(),
    };
    exit_code(name, result)
}

async fn run<C, A, O>(
    name: &str,
    target_form: &str,
    args: TargetArgs<O>,
    connect: impl FnOnce(A, O) -> Result<C, String>,
) -> Result<(), ApplyError>
where
    C: Connect,
    A: DeserializeOwned + Display + TargetAddress,
    O: clap::Args + Serialize + DeserializeOwned + Debug,
{
    let mut file: ApplyFile<A, O> =
        config::load(args.common.config.as_deref(), &args).map_err(|e| ApplyError::Config(e.to_string()))?;
    file.file.clone_from(&args.common.config);
    // Logging starts once the settings are valid: until then an error is one
    // line on stderr, not a log line as well.
    let log_format = file.log_format;
    let (settings, target, options) = file.settings().map_err(ApplyError::Config)?;
    let target = target.ok_or_else(|| ApplyError::Config(format!("--target is required: {target_form}")))?;
    init_logging(log_format, "info");
    tracing::info!(target = %target, group = %settings.group, ?options, "{name} starting");
    let connect = connect(target, options).map_err(ApplyError::Config)?;
    pipeline::run(settings, connect, shutdown_signal()).await
}
