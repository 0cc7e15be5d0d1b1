//! `ferry`: flags, then the command's `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry_capture::filter::TableFilter;
use ferry_cli::validate::{self, db::Db};

/// Ferry, the operator's tool.
#[derive(Debug, Parser)]
#[command(name = "ferry", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compares a target with its source row for row, across engines; exit code 1 if they differ.
    Validate {
        /// The source database: postgres://... or mysql://.../DATABASE.
        #[arg(long, env = "FERRY_SOURCE", hide_env_values = true)]
        source: String,
        /// The target database, whose default schema holds the source's tables.
        #[arg(long, env = "FERRY_TARGET", hide_env_values = true)]
        target: String,
        /// Tables to compare: 'public.orders,inventory.*' [default: all].
        #[arg(long, default_value = "")]
        tables: String,
        /// Tables compared at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Differing keys named per kind and table.
        #[arg(long, default_value_t = 10)]
        show: usize,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
    },
}

async fn run(cli: Cli) -> Result<bool, String> {
    match cli.command {
        Command::Validate {
            source,
            target,
            tables,
            parallel,
            show,
            json,
        } => {
            let options = validate::Options {
                source: Db::parse(&source, "--source")?,
                target: Db::parse(&target, "--target")?,
                tables: TableFilter::parse(&tables).map_err(|e| format!("--tables: {e}"))?,
                parallel,
                show,
            };
            let reports = validate::validate(options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?);
            } else {
                print!("{}", validate::render(&reports));
            }
            Ok(reports.iter().all(validate::TableReport::equal))
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::from(2)
        }
    }
}
