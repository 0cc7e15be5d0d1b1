//! `ferry`: flags, then the command's `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry_capture::filter::TableFilter;
use ferry_cli::db::Db;
use ferry_cli::{assess, migrate, replay, status, topics, validate};
use ferry_core::config::SecretUrl;
use ferry_core::kafka::KafkaSettings;
use ferry_core::process::shutdown_signal;
use ferry_core::registry::RegistryClient;
use ferry_core::telemetry::{init_logging, LogFormat};

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
        /// The target database, whose default schema holds the source's tables: postgres://..., mysql://.../DATABASE or duckdb://PATH.
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
    /// Lists Ferry's topics: partitions, messages and their registry subjects.
    Topics {
        /// Only the topics of this capture prefix [default: every topic but Kafka's own].
        #[arg(long, env = "FERRY_PREFIX")]
        prefix: Option<String>,
        #[command(flatten)]
        stack: Stack,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Migrates a source into one or more targets: full load, full load and changes, or changes only.
    Migrate {
        #[command(flatten)]
        migration: Migration,
        #[arg(long, value_enum, default_value = "full-load-and-cdc")]
        mode: migrate::Mode,
    },
    /// Once writes to the source have stopped: waits until a migration's targets have every change, then validates them.
    Cutover {
        #[command(flatten)]
        migration: Migration,
    },
    /// Before a migration: source readiness, tables and sizes, type conversions, load time, what is not carried over.
    Assess {
        /// The source database: postgres://... or mysql://.../DATABASE.
        #[arg(long, env = "FERRY_SOURCE", hide_env_values = true)]
        source: String,
        /// A target, to show the type each column gets there.
        #[arg(long, env = "FERRY_TARGET", hide_env_values = true)]
        target: Option<String>,
        /// Tables to assess: 'public.orders,inventory.*' [default: all].
        #[arg(long, default_value = "")]
        tables: String,
        /// PostgreSQL: the publication capture will use (a pre-made one spares
        /// the capture's role owning the tables).
        #[arg(long, default_value = "ferry")]
        publication: String,
        /// Print the assessment as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What every capture and apply process last reported: phase, position, lag, events per table, errors.
    Status {
        /// Only the capture of this prefix (and the apply groups).
        #[arg(long, env = "FERRY_PREFIX")]
        prefix: Option<String>,
        /// Only this apply group.
        #[arg(long)]
        group: Option<String>,
        /// Also the processes that stopped cleanly over ten minutes ago.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        kafka: Brokers,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Moves an apply group back so its target applies the log again from --from.
    Replay {
        /// The target holding the group's offsets: postgres://..., mysql://.../DATABASE or duckdb://PATH.
        #[arg(long, env = "FERRY_TARGET", hide_env_values = true)]
        target: String,
        /// The apply group (ferry-apply's --group).
        #[arg(long)]
        group: String,
        /// earliest, milliseconds since 1970, or an RFC 3339 time.
        #[arg(long)]
        from: replay::From,
        /// Move it even though Kafka still lists members of the group.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        stack: Stack,
    },
}

/// What a migration is: `ferry migrate` and `ferry cutover` take the same.
#[derive(Debug, clap::Args)]
struct Migration {
    /// The source: postgres://..., mysql://.../DATABASE or mongodb://...
    #[arg(long, env = "FERRY_SOURCE", hide_env_values = true)]
    source: String,
    /// A target (postgres://..., mysql://.../DATABASE or duckdb://PATH); once per target, always in the same order.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Tables to migrate: 'public.orders,inventory.*' [default: all].
    #[arg(long, default_value = "")]
    tables: String,
    /// Topic prefix of the migration; the same flags resume it.
    #[arg(long, env = "FERRY_PREFIX", default_value = "migrate")]
    prefix: String,
    #[command(flatten)]
    stack: Stack,
}

impl Migration {
    fn options(self, mode: migrate::Mode) -> Result<migrate::Options, String> {
        Ok(migrate::Options {
            source: self.source,
            targets: self.targets,
            tables: self.tables,
            mode,
            prefix: self.prefix,
            kafka: self.stack.kafka.settings()?,
            registry: self.stack.registry,
        })
    }
}

/// The Kafka brokers and how to reach them.
#[derive(Debug, clap::Args)]
struct Brokers {
    /// Kafka brokers.
    #[arg(long, env = "FERRY_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[command(flatten)]
    flags: ferry_core::kafka::KafkaFlags,
}

impl Brokers {
    /// The brokers with the FERRY_KAFKA_* variables and --kafka-option flags.
    fn settings(&self) -> Result<KafkaSettings, String> {
        KafkaSettings::new(self.brokers.clone()).with_flags(&self.flags)
    }
}

/// Where the Kafka stack is.
#[derive(Debug, clap::Args)]
struct Stack {
    #[command(flatten)]
    kafka: Brokers,
    /// Schema registry URL.
    #[arg(
        long,
        env = "FERRY_REGISTRY",
        default_value = "http://127.0.0.1:8081",
        hide_env_values = true
    )]
    registry: String,
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
        Command::Topics { prefix, stack, json } => {
            let registry = SecretUrl::parse(&stack.registry).map_err(|e| format!("--registry: {e}"))?;
            let registry = RegistryClient::new(&registry).map_err(|e| e.to_string())?;
            let list = topics::list(&stack.kafka.settings()?, &registry, prefix.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
            } else {
                print!("{}", topics::render(&list));
            }
            Ok(true)
        }
        Command::Migrate { migration, mode } => migrate::migrate(migration.options(mode)?, shutdown_signal()).await,
        Command::Cutover { migration } => migrate::cutover(&migration.options(migrate::Mode::FullLoadAndCdc)?).await,
        Command::Assess {
            source,
            target,
            tables,
            publication,
            json,
        } => {
            let source = Db::parse(&source, "--source")?;
            let target = target.map(|t| Db::parse(&t, "--target")).transpose()?;
            let filter = TableFilter::parse(&tables).map_err(|e| format!("--tables: {e}"))?;
            let assessment = assess::assess(&source, target.as_ref(), &filter, &publication).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&assessment).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", assess::render(&assessment));
            }
            Ok(assessment.ready())
        }
        Command::Status {
            prefix,
            group,
            all,
            kafka,
            json,
        } => {
            let statuses = status::read(&kafka.settings()?, prefix.as_deref(), group.as_deref(), all).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&statuses).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", status::render(&statuses));
            }
            Ok(true)
        }
        Command::Replay {
            target,
            group,
            from,
            force,
            stack,
        } => {
            let target = Db::parse(&target, "--target")?;
            let moved = replay::replay(&target, &stack.kafka.settings()?, &group, from, force).await?;
            for m in &moved {
                println!("{} partition {}: {} -> {}", m.topic, m.partition, m.from, m.to);
            }
            println!(
                "apply group {group} moved back on {} partitions; start it again to replay",
                moved.len()
            );
            Ok(true)
        }
    }
}

/// `ferry migrate` runs captures and applies in this process, so it allocates
/// as their own binaries do (see `ferry-apply-duckdb`'s allocator): mimalloc,
/// for Ferry's code and, by its `override` feature, for librdkafka's and DuckDB's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(LogFormat::Human, "warn");
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::from(2)
        }
    }
}
