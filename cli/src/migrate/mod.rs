//! `ferry migrate`: one source to one or more targets through Kafka, with the
//! capture and one apply per target running in this process on the very code
//! of the `ferry-capture-*` and `ferry-apply-*` binaries.
//!
//! ```text
//!  source ──► capture (prefix P) ──► Kafka: P.<schema>.<table> ──► apply group P.to.0 ──► target 0
//!                                                              └─► apply group P.to.1 ──► target 1 ...
//!  every second: progress (progress.rs: topics' watermarks vs each target's stored offsets)
//!  full-load:          capture reads a snapshot and stops; when every target has applied
//!                      every message, the applies stop and each target is validated
//!  full-load-and-cdc:  then the changes keep flowing until Ctrl-C, or `cutover` on stdin
//!  cdc:                changes from now on only
//!  cutover:            once the source's writes have stopped, waits until every target has
//!                      applied everything, validates each, says which are safe to switch to
//! ```
//!
//! Between databases of one engine (PostgreSQL, MySQL/MariaDB) the tables
//! are created before the load as the source has them, their indexes and
//! foreign keys after it (`schema/`).
//!
//! Engines come from the URL schemes: sources `postgres://`, `mysql://`,
//! `mongodb://`; targets `postgres://`, `mysql://` and `duckdb://PATH` (its
//! mirror tables). Apply group `i` is
//! `<prefix>.to.<i>` (the `--target`'s place), so a migration restarted with
//! the same flags resumes where it was: capture from its stored position, each
//! apply from the offsets in its target.

pub mod progress;
pub mod schema;

use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ferry_apply::settings::{ApplySettings, OnError, StartFrom, TableMap};
use ferry_capture::settings::{CaptureFile, CaptureSettings};
use ferry_core::config::{RegistryAccess, SecretUrl};
use ferry_core::kafka::KafkaSettings;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::schema::Schema;
use crate::db::Db;
use crate::validate::{self, TableReport};

/// What to migrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The tables as they are now, then stop.
    FullLoad,
    /// The tables, then every change until cutover.
    FullLoadAndCdc,
    /// Changes from now on.
    Cdc,
}

/// A migration's flags.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: String,
    pub targets: Vec<String>,
    pub tables: String,
    pub mode: Mode,
    pub prefix: String,
    /// The brokers, with the librdkafka properties to reach them.
    pub kafka: KafkaSettings,
    pub registry: String,
}

/// The apply group of the `i`th target.
pub fn group(prefix: &str, i: usize) -> String {
    format!("{prefix}.to.{i}")
}

/// A migration's running parts.
struct Running {
    capture: JoinHandle<Result<(), String>>,
    applies: Vec<JoinHandle<Result<(), String>>>,
    stop_capture: watch::Sender<bool>,
    stop_applies: watch::Sender<bool>,
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

fn capture_settings(o: &Options) -> Result<CaptureSettings, String> {
    let snapshot = match o.mode {
        Mode::FullLoad => "initial_only",
        Mode::FullLoadAndCdc => "initial",
        Mode::Cdc => "never",
    };
    let mut tables = o.tables.clone();
    let source = SecretUrl::parse(&o.source).map_err(|e| format!("--source: {e}"))?;
    // A MySQL source's tables are those of its URL's database (decoded:
    // `my%20db` is `my db`).
    if matches!(source.expose().scheme(), "mysql" | "mariadb") && tables.is_empty() {
        if let crate::db::Db::Mysql { database, .. } = crate::db::Db::parse(&o.source, "--source")? {
            tables = format!("{database}.*");
        }
    }
    let file: CaptureFile = serde_json::from_value(json!({
        "source": o.source, "brokers": o.kafka.brokers, "kafka": o.kafka.options, "registry": o.registry,
        "prefix": o.prefix,
        "tables": tables, "snapshot": snapshot,
    }))
    .map_err(|e| e.to_string())?;
    Ok(file
        .settings::<serde::de::IgnoredAny>("postgres://, mysql:// or mongodb:// URL")?
        .0)
}

/// Starts the capture of the source, by its URL's scheme.
fn start_capture(o: &Options, stop: watch::Receiver<bool>) -> Result<JoinHandle<Result<(), String>>, String> {
    let common = capture_settings(o)?;
    let scheme = common.source.expose().scheme().to_owned();
    let shutdown = stopped(stop);
    Ok(match scheme.as_str() {
        "postgres" | "postgresql" => {
            let name = ferry_capture::postgres::PgCaptureConfig::default_name(&common.prefix);
            let config = ferry_capture::postgres::PgCaptureConfig {
                common,
                snapshot_chunk_pages: ferry_capture::postgres::snapshot::CHUNK_PAGES,
                slot: name.clone(),
                publication: name,
                heartbeat: Some(Duration::from_secs(10)),
            };
            spawn(ferry_capture::postgres::run(config, shutdown))
        }
        "mysql" | "mariadb" => {
            // A replica id of its own, stable for the prefix.
            let server_id = 1_000_000 + (ferry_core::names::fnv1a(common.prefix.as_bytes()) % 1_000_000_000) as u32;
            let config = ferry_capture::mysql::MysqlCaptureConfig {
                common,
                snapshot_chunk_rows: ferry_capture::mysql::snapshot::CHUNK_ROWS,
                server_id,
            };
            spawn(ferry_capture::mysql::run(config, shutdown))
        }
        "mongodb" | "mongodb+srv" => {
            let config = ferry_capture::mongodb::MongoCaptureConfig {
                common,
                full_document: ferry_capture::mongodb::Images::WhenAvailable,
                before: ferry_capture::mongodb::Images::Off,
                snapshot_chunk_docs: ferry_capture::mongodb::snapshot::CHUNK_DOCS,
            };
            spawn(ferry_capture::mongodb::run(config, shutdown))
        }
        other => {
            return Err(format!(
                "--source: ferry migrate reads postgres://, mysql:// and mongodb:// sources, not {other}://"
            ))
        }
    })
}

/// Starts the apply of the `i`th target, `target`.
fn start_apply(
    o: &Options,
    i: usize,
    target: &Db,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<Result<(), String>>, String> {
    let group = group(&o.prefix, i);
    let settings = ApplySettings {
        kafka: o.kafka.clone(),
        registry: RegistryAccess::new(SecretUrl::parse(&o.registry).map_err(|e| format!("--registry: {e}"))?),
        topics: format!("^({}\\..*)$", ferry_core::names::regex_escape(&o.prefix)),
        dlq_topic: format!("_ferry_dlq.{group}"),
        group,
        instance_id: None,
        from: StartFrom::Earliest,
        table_map: TableMap::default(),
        on_error: OnError::Fail,
        workers: 2,
        batch_size: 20_000,
        batch_wait: Duration::ZERO,
        metrics: None,
    };
    let shutdown = stopped(stop);
    Ok(match target {
        Db::Postgres { url, .. } => {
            let connect = ferry_apply::postgres::PgConnect::new(url.clone()).map_err(|e| e.to_string())?;
            spawn(ferry_apply::pipeline::run(settings, connect, shutdown))
        }
        Db::Mysql { url, .. } => {
            let connect = ferry_apply::mysql::MyConnect::new(url.clone())?;
            spawn(ferry_apply::pipeline::run(settings, connect, shutdown))
        }
        // The instance that progress and validation read through too.
        Db::Duckdb(duck) => spawn(ferry_apply::pipeline::run(settings, duck.connect()?, shutdown)),
    })
}

/// Runs `work` (a capture's or an apply's `run`) on its own task.
fn spawn<E: std::fmt::Display>(
    work: impl Future<Output = Result<(), E>> + Send + 'static,
) -> JoinHandle<Result<(), String>> {
    tokio::spawn(async move { work.await.map_err(|e| e.to_string()) })
}

/// Runs the migration until it is done (`full-load`), cut over, or `shutdown`;
/// returns whether every target ended equal to the source (true when
/// stopped before any validation).
pub async fn migrate(o: Options, shutdown: impl Future<Output = ()>) -> Result<bool, String> {
    if o.targets.is_empty() {
        return Err("--target is required (once per target)".into());
    }
    let source_db = Db::parse(&o.source, "--source").ok();
    let targets = target_dbs(&o)?;
    let schema = Schema::read(source_db.as_ref(), &dbs(&targets), &o.tables).await?;
    for (i, (target, _)) in targets.iter().enumerate() {
        report(i, "before the load", &schema.create_tables(target).await?);
    }
    let (stop_capture, capture_rx) = watch::channel(false);
    let (stop_applies, applies_rx) = watch::channel(false);
    let mut running = Running {
        capture: start_capture(&o, capture_rx)?,
        applies: targets
            .iter()
            .enumerate()
            .map(|(i, (db, _))| start_apply(&o, i, db, applies_rx.clone()))
            .collect::<Result<_, _>>()?,
        stop_capture,
        stop_applies,
    };
    let kafka = o.kafka.clone();
    let names: Vec<String> = targets
        .iter()
        .enumerate()
        .map(|(i, (db, _))| format!("target {i} {}", db.engine()))
        .collect();
    // Without estimates the view shows no time left for a snapshot.
    let estimates = match &source_db {
        Some(db) => db.row_estimates().await.unwrap_or_default(),
        None => Default::default(),
    };
    let mut view = progress::View::new(&o.prefix, names, estimates);
    let mut capture_phase = (
        Instant::now(),
        if o.mode == Mode::Cdc {
            progress::Capture::Streaming
        } else {
            progress::Capture::Snapshot
        },
    );
    let mut indexed = false;
    let terminal = std::io::stderr().is_terminal();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Without a terminal the view is printed every 10 s, the first at once.
    let mut last_print: Option<Instant> = None;
    let mut captured_done = false;
    let started = Instant::now();
    let cutover = loop {
        tokio::select! {
            () = &mut shutdown => break false,
            line = lines.next_line(), if o.mode != Mode::FullLoad => {
                match line {
                    Ok(Some(l)) if l.trim() == "cutover" => break true,
                    Ok(Some(_)) => eprintln!("type `cutover` (then Enter) once the source's writes have stopped"),
                    // No terminal input: wait for Ctrl-C.
                    _ => {}
                }
            }
            _ = tick.tick() => {}
        }
        if running.capture.is_finished() && !captured_done {
            captured_done = true;
            let ended = (&mut running.capture).await.map_err(|e| e.to_string())?;
            ended.map_err(|e| format!("capture: {e}"))?;
        }
        if running.applies.iter().any(JoinHandle::is_finished) {
            return Err(apply_ended(&mut running.applies).await);
        }
        let now = progress::read(&kafka, &o.prefix, &targets).await?;
        view.update(Instant::now(), &now);
        let finished = o.mode == Mode::FullLoad && captured_done && progress::caught_up(&now);
        if captured_done {
            capture_phase.1 = progress::Capture::Done;
        } else if capture_phase.0.elapsed() >= Duration::from_secs(5) {
            capture_phase = (Instant::now(), capture_state(&kafka, &o.prefix).await);
        }
        // The load is in: the indexes that cannot fail on changes applied out of order.
        if !indexed && capture_phase.1 != progress::Capture::Snapshot && progress::caught_up(&now) {
            indexed = true;
            for (i, (target, _)) in targets.iter().enumerate() {
                report(i, "after the load", &schema.create_indexes(target).await?);
            }
        }
        if terminal || finished || last_print.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            let view = view.render(&now, capture_phase.1);
            let head = format!(
                "ferry migrate {} ({:?}, {} s)",
                o.prefix,
                o.mode,
                started.elapsed().as_secs()
            );
            if terminal {
                eprint!("\x1b[2J\x1b[H{head}\n{view}");
                if o.mode != Mode::FullLoad {
                    eprintln!("\ntype `cutover` and Enter once writes to the source have stopped; Ctrl-C stops");
                }
            } else {
                eprintln!("{head}\n{view}");
            }
            last_print = Some(Instant::now());
        }
        if finished {
            break true;
        }
    };
    let equal = if cutover {
        if o.mode != Mode::FullLoad {
            eprintln!("cutover: waiting until every target has applied every change");
            // An apply that stops meanwhile would leave the targets behind for good.
            tokio::select! {
                caught_up = wait_caught_up(&kafka, &o.prefix, &targets, Some(&running.capture)) => caught_up?,
                ended = apply_ended(&mut running.applies) => return Err(ended),
            }
        }
        validate_all(source_db.as_ref(), &targets, &o.tables, &schema, indexed).await?
    } else {
        true
    };
    running.stop_applies.send_replace(true);
    running.stop_capture.send_replace(true);
    for apply in running.applies {
        apply
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("apply: {e}"))?;
    }
    if !captured_done {
        running
            .capture
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("capture: {e}"))?;
    }
    Ok(equal)
}

/// Waits for the first of `applies` to end (they run until told to stop, so
/// any end is a failure) and says which one and why.
async fn apply_ended(applies: &mut [JoinHandle<Result<(), String>>]) -> String {
    if applies.is_empty() {
        return std::future::pending().await;
    }
    let (ended, i, _) = futures::future::select_all(applies.iter_mut()).await;
    let why = match ended {
        Ok(Ok(())) => "stopped".to_owned(),
        Ok(Err(e)) => e,
        Err(e) => e.to_string(),
    };
    format!("apply to target {i}: {why}")
}

/// Where the capture of `prefix` is, by its last status report.
async fn capture_state(kafka: &KafkaSettings, prefix: &str) -> progress::Capture {
    let reports = crate::status::read(kafka, Some(prefix), None, true)
        .await
        .unwrap_or_default();
    match reports
        .iter()
        .find(|s| s.report.kind == "capture" && s.report.name == prefix)
        .map(|s| s.report.phase.as_str())
    {
        Some("streaming") => progress::Capture::Streaming,
        Some("stopped") => progress::Capture::Done,
        _ => progress::Capture::Snapshot,
    }
}

/// The targets, each with its apply group.
fn target_dbs(o: &Options) -> Result<Vec<(Db, String)>, String> {
    o.targets
        .iter()
        .enumerate()
        .map(|(i, t)| Ok((Db::parse(t, "--target")?, group(&o.prefix, i))))
        .collect()
}

/// `ferry cutover` of a migration running elsewhere: waits until it has
/// caught up, then validates every target; whether all are equal.
pub async fn cutover(o: &Options) -> Result<bool, String> {
    let source = Db::parse(&o.source, "--source")?;
    let targets = target_dbs(o)?;
    eprintln!("cutover: waiting until every target has applied every change (stop writes to the source first)");
    wait_caught_up(&o.kafka, &o.prefix, &targets, None).await?;
    let schema = Schema::read(Some(&source), &dbs(&targets), &o.tables).await?;
    validate_all(Some(&source), &targets, &o.tables, &schema, false).await
}

/// Waits until the capture has read its snapshot and streams (by its status
/// report), the table topics stop growing (the source's writes have
/// stopped), and every target has applied all of them.
///
/// `task` is the capture when it runs in this process: while it runs, a
/// report that is late only says the process is busy (a loaded machine can
/// hold the reporter's tick back for seconds), not that the capture stopped.
pub async fn wait_caught_up(
    kafka: &KafkaSettings,
    prefix: &str,
    targets: &[(Db, String)],
    task: Option<&JoinHandle<Result<(), String>>>,
) -> Result<(), String> {
    let mut previous: Option<Vec<i64>> = None;
    loop {
        let capture = crate::status::read(kafka, Some(prefix), None, true)
            .await?
            .into_iter()
            .find(|s| s.report.kind == "capture" && s.report.name == prefix);
        match capture.as_ref().map(|s| (s.state.as_str(), &s.report.last_error)) {
            Some(("streaming" | "stopped", _)) => {}
            Some(("failed", error)) => {
                return Err(format!(
                    "the capture of {prefix} failed: {}",
                    error.as_deref().unwrap_or("?")
                ))
            }
            Some(("silent", _)) if task.is_none_or(JoinHandle::is_finished) => {
                return Err(format!("the capture of {prefix} is not running (it stopped reporting)"))
            }
            _ => {
                // Still starting or reading its snapshot.
                previous = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let now = progress::read(kafka, prefix, targets).await?;
        let captured: Vec<i64> = now.iter().map(|t| t.captured).collect();
        if progress::caught_up(&now) && previous.as_ref() == Some(&captured) {
            return Ok(());
        }
        previous = Some(captured);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The targets' databases.
fn dbs(targets: &[(Db, String)]) -> Vec<&Db> {
    targets.iter().map(|(db, _)| db).collect()
}

/// Prints what a schema step did in target `i`, if it had anything to do.
fn report(i: usize, step: &str, outcome: &schema::Outcome) {
    if outcome.created.is_empty() && outcome.left.is_empty() {
        return;
    }
    for line in outcome.render(step).lines() {
        println!("target {i}: {line}");
    }
}

/// Validates every target against the source and prints the verdicts; for
/// each equal target, completes its schema (`schema.rs`: the other indexes
/// unless `indexed`, unique indexes, foreign keys, sequences); whether all
/// are equal.
pub async fn validate_all(
    source: Option<&Db>,
    targets: &[(Db, String)],
    tables: &str,
    schema: &Schema,
    indexed: bool,
) -> Result<bool, String> {
    let Some(source) = source else {
        println!("the targets have every change; a MongoDB source cannot be validated row by row here");
        return Ok(true);
    };
    let mut all = true;
    for (i, (target, _)) in targets.iter().enumerate() {
        let reports: Vec<TableReport> = validate::validate(validate::Options {
            source: source.clone(),
            target: target.clone(),
            tables: ferry_capture::filter::TableFilter::parse(tables).map_err(|e| e.to_string())?,
            parallel: 4,
            show: 10,
        })
        .await?;
        let equal = reports.iter().all(TableReport::equal);
        all &= equal;
        println!("target {i} ({}):", target.engine());
        print!("{}", validate::render(&reports));
        if equal {
            report(i, "at the end", &schema.finish(source, target, indexed).await?);
            println!("target {i} equals the source: safe to switch to");
        }
    }
    Ok(all)
}
