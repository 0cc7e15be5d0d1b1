//! DuckDB targets of the tests: a file in a directory of its own, the apply
//! pipeline into it run in the test's process, and its rows in the tests' one
//! text form (see [`crate::pg_text_rows`]).
//!
//! DuckDB lets no other process open a file that one writes to, so a test
//! that must watch the target while changes arrive runs the same pipeline in
//! its own process ([`ferry_apply::pipeline::run`] with [`DuckConnect`],
//! which is all `ferry-apply-duckdb` does after parsing its flags) and reads
//! through a connection of that database instance.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use duckdb::types::Value;
use duckdb::Connection;
use ferry_apply::duckdb::{DuckConnect, DuckFile, DuckOptions, Mode};
use ferry_apply::settings::{ApplySettings, OnError, StartFrom, TableMap};
use ferry_core::config::SecretUrl;
use ferry_core::kafka::KafkaSettings;

use crate::{brokers, unique, NULL_CELL};

/// A DuckDB file in a directory of its own, removed at the end.
#[derive(Debug)]
pub struct DuckDir {
    pub dir: PathBuf,
}

impl DuckDir {
    pub fn create() -> DuckDir {
        let dir = std::env::temp_dir().join(unique("ferry-duck"));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        DuckDir { dir }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join("target.duckdb")
    }

    /// Runs `ferry-apply-duckdb export` of the file into `lake/` beside it,
    /// which must succeed; returns that directory and what the export printed.
    pub fn export(&self) -> (PathBuf, String) {
        let lake = self.dir.join("lake");
        let out = std::process::Command::new(crate::binary("ferry-apply-duckdb"))
            .args(["export", "--target"])
            .arg(self.file())
            .arg("--to")
            .arg(&lake)
            .output()
            .expect("run ferry-apply-duckdb export");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (lake, String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for DuckDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The apply pipeline into a DuckDB file, run in this process.
#[derive(Debug)]
pub struct InProcess {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ferry_apply::ApplyError>>,
    /// A connection of the same database instance, for reading.
    reader: Mutex<Connection>,
}

impl InProcess {
    pub fn start(file: &Path, prefix: &str, group: &str, mode: Mode) -> InProcess {
        InProcess::start_as(file, prefix, group, mode, None)
    }

    /// [`InProcess::start`] as the group's static member `instance` (the
    /// instance a killed process was: its partitions come back at once).
    pub fn start_as(file: &Path, prefix: &str, group: &str, mode: Mode, instance: Option<&str>) -> InProcess {
        ferry_core::telemetry::init_logging(ferry_core::telemetry::LogFormat::Human, "info");
        let connect = DuckConnect::open(
            DuckFile(file.to_owned()),
            DuckOptions {
                mode: Some(mode),
                ..Default::default()
            },
        )
        .expect("open the DuckDB file");
        let reader = Mutex::new(connect.connection().expect("a reading connection"));
        let settings = ApplySettings {
            kafka: KafkaSettings::new(brokers()),
            registry: ferry_core::config::RegistryAccess::new(
                SecretUrl::parse(crate::SERVICES_REGISTRY).expect("registry URL"),
            ),
            topics: format!("^({}\\..*)$", prefix.replace('.', "\\.")),
            group: group.to_owned(),
            instance_id: instance.map(str::to_owned),
            from: StartFrom::Earliest,
            table_map: TableMap::default(),
            on_error: OnError::Fail,
            dlq_topic: format!("_ferry_dlq.{group}"),
            workers: 2,
            batch_size: 20_000,
            batch_wait: Duration::ZERO,
            metrics: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = ferry_apply::pipeline::run(settings, connect, async {
                let _ = stopped.await;
            })
            .await;
            // Said at once: the test would otherwise only see rows that never come.
            if let Err(e) = &result {
                eprintln!("in-process apply stopped: {e}");
            }
            result
        });
        InProcess { stop, task, reader }
    }

    /// The rows `sql` returns, as [`crate::pg_text_rows`] prints them
    /// (`None` on error: a table may not exist yet).
    pub fn rows(&self, sql: &str) -> Option<Vec<String>> {
        duck_rows(&self.reader.lock().unwrap_or_else(|e| e.into_inner()), sql)
    }

    /// Stops the pipeline (it writes what it holds) and closes the database.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the pipeline task").expect("the pipeline");
    }
}

/// A DuckDB value as text (`∅` for NULL); timestamps and the like are
/// formatted by the queries themselves.
fn text(v: Value) -> String {
    match v {
        Value::Null => NULL_CELL.to_owned(),
        Value::Boolean(b) => if b { "t" } else { "f" }.to_owned(),
        Value::SmallInt(i) => i.to_string(),
        Value::Int(i) => i.to_string(),
        Value::BigInt(i) => i.to_string(),
        Value::HugeInt(i) => i.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Text(s) => s,
        other => format!("{other:?}"),
    }
}

/// The rows of `sql`, each as its columns' text joined by `|`, sorted.
pub fn duck_rows(conn: &Connection, sql: &str) -> Option<Vec<String>> {
    let mut statement = conn.prepare(sql).map_err(|e| eprintln!("{sql}: {e}")).ok()?;
    let mut rows = statement.query([]).ok()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ok()? {
        let n = row.as_ref().column_count();
        let cells: Vec<String> = (0..n)
            .map(|i| row.get::<_, Value>(i).map_or_else(|e| format!("({e})"), text))
            .collect();
        out.push(cells.join("|"));
    }
    out.sort();
    Some(out)
}
