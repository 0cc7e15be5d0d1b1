//! `ferry validate`: is the target equal to the source, row for row?
//!
//! ```text
//!  source tables (--tables) ─► per table, in parallel (--parallel):
//!     source meta (columns, types, key) ─► the target's table of the same name in its default schema
//!     both sides streamed in key order ─► merge by key ─► missing / extra / changed rows
//!     keyless tables: every row's canonical hash, sorted, compared as multisets
//!  report: per table rows on each side and a verdict naming the first differing keys
//! ```
//!
//! Values are compared in canonical form (`canon.rs`), so a MariaDB source and
//! a PostgreSQL target with the same data are equal. Nothing is held in memory
//! but a few batches per side (keyless tables: 8 bytes per row).

pub mod canon;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use ferry_capture::filter::TableFilter;
use ferry_core::meta::{Column, DataType, TableId, TableMeta};
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use self::canon::{canonical, compare_keys};
use crate::db::Db;

/// What to compare.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Db,
    pub target: Db,
    pub tables: TableFilter,
    /// Tables compared at once.
    pub parallel: usize,
    /// Differing keys named per kind and table.
    pub show: usize,
}

/// One table's comparison.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    pub target: String,
    pub source_rows: u64,
    pub target_rows: u64,
    /// Rows of the source the target lacks, by key.
    pub missing: u64,
    /// Rows of the target the source lacks.
    pub extra: u64,
    /// Rows on both sides whose values differ.
    pub changed: u64,
    /// The first keys of each kind (a keyless table's rows themselves).
    pub missing_keys: Vec<String>,
    pub extra_keys: Vec<String>,
    pub changed_keys: Vec<String>,
    /// Why the rows could not be compared (no such table in the target, columns it lacks).
    pub problem: Option<String>,
}

impl TableReport {
    pub fn equal(&self) -> bool {
        self.problem.is_none() && self.missing == 0 && self.extra == 0 && self.changed == 0
    }

    pub fn verdict(&self) -> String {
        match &self.problem {
            Some(p) => p.clone(),
            None if self.equal() => "equal".into(),
            None => format!(
                "DIFFERENT: {} missing, {} extra, {} changed",
                self.missing, self.extra, self.changed
            ),
        }
    }
}

/// Compares every included table; the reports in table order.
pub async fn validate(options: Options) -> Result<Vec<TableReport>, String> {
    let tables = options.source.tables(&options.tables).await?;
    if tables.is_empty() {
        return Err("the source has no table that --tables includes".into());
    }
    let options = Arc::new(options);
    let permits = Arc::new(Semaphore::new(options.parallel.max(1)));
    let mut tasks = Vec::with_capacity(tables.len());
    for id in tables {
        let options = Arc::clone(&options);
        let permits = Arc::clone(&permits);
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
            compare_table(&options, &id).await
        }));
    }
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        reports.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(reports)
}

/// Compares one table.
async fn compare_table(options: &Options, id: &TableId) -> Result<TableReport, String> {
    let meta = options.source.meta(id).await?;
    let target = TableId::new(options.target.default_schema(), id.table.clone());
    let mut report = TableReport {
        table: id.to_string(),
        target: target.to_string(),
        ..TableReport::default()
    };
    let Some(names) = options.target.column_names(&target).await? else {
        report.problem = Some(format!("MISSING: the target has no table {target}"));
        return Ok(report);
    };
    let lacking: Vec<&str> = meta
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| !names.iter().any(|n| n == c))
        .collect();
    if !lacking.is_empty() {
        report.problem = Some(format!(
            "DIFFERENT: the target table lacks columns {}",
            lacking.join(", ")
        ));
        return Ok(report);
    }
    let (stx, mut srx) = mpsc::channel(4);
    let (ttx, mut trx) = mpsc::channel(4);
    let (source, target_db) = (options.source.clone(), options.target.clone());
    let (columns, key) = (meta.columns.clone(), meta.key.clone());
    let (sid, tid) = (id.clone(), target.clone());
    let (c2, k2) = (columns.clone(), key.clone());
    tokio::spawn(async move { source.scan(&sid, &columns, &key, stx).await });
    tokio::spawn(async move { target_db.scan(&tid, &c2, &k2, ttx).await });
    let mut source_rows = Side::new(&mut srx, &meta);
    let mut target_rows = Side::new(&mut trx, &meta);
    if meta.key.is_empty() {
        compare_keyless(&mut source_rows, &mut target_rows, &mut report, options.show).await?;
    } else {
        compare_keyed(&meta, &mut source_rows, &mut target_rows, &mut report, options.show).await?;
    }
    Ok(report)
}

/// One side's rows as the engine printed them, one at a time.
struct Side<'a> {
    rx: &'a mut mpsc::Receiver<Result<Vec<Vec<Option<String>>>, String>>,
    columns: &'a [Column],
    batch: std::vec::IntoIter<Vec<Option<String>>>,
    rows: u64,
}

impl<'a> Side<'a> {
    fn new(rx: &'a mut mpsc::Receiver<Result<Vec<Vec<Option<String>>>, String>>, meta: &'a TableMeta) -> Self {
        Self {
            rx,
            columns: &meta.columns,
            batch: Vec::new().into_iter(),
            rows: 0,
        }
    }

    async fn next(&mut self) -> Result<Option<Vec<Option<String>>>, String> {
        loop {
            if let Some(row) = self.batch.next() {
                self.rows += 1;
                return Ok(Some(row));
            }
            match self.rx.recv().await {
                Some(batch) => self.batch = batch?.into_iter(),
                None => return Ok(None),
            }
        }
    }

    /// The next row in canonical form.
    async fn next_canonical(&mut self) -> Result<Option<Vec<Option<String>>>, String> {
        Ok(self.next().await?.map(|row| canonical_row(self.columns, &row)))
    }

    /// The next row with its key in canonical form.
    async fn next_keyed(&mut self, meta: &TableMeta) -> Result<Option<Keyed>, String> {
        Ok(self.next().await?.map(|raw| Keyed {
            key: meta
                .key
                .iter()
                .map(|&i| canonical(&meta.columns[i], raw[i].as_deref()).unwrap_or_default())
                .collect(),
            raw,
        }))
    }
}

fn canonical_row(columns: &[Column], row: &[Option<String>]) -> Vec<Option<String>> {
    row.iter()
        .zip(columns)
        .map(|(v, c)| canonical(c, v.as_deref()))
        .collect()
}

/// A row as printed, and its key canonical. Two rows printed alike are
/// equal; only rows printed differently are brought to canonical form to
/// compare, which spares most of the work between databases of one engine.
struct Keyed {
    raw: Vec<Option<String>>,
    key: Vec<String>,
}

impl Keyed {
    fn same(&self, other: &Keyed, columns: &[Column]) -> bool {
        self.raw == other.raw || canonical_row(columns, &self.raw) == canonical_row(columns, &other.raw)
    }

    fn text(&self, meta: &TableMeta) -> String {
        let parts: Vec<String> = meta
            .key
            .iter()
            .zip(&self.key)
            .map(|(&i, v)| format!("{}={v}", meta.columns[i].name))
            .collect();
        format!("({})", parts.join(", "))
    }
}

fn note(keys: &mut Vec<String>, count: &mut u64, show: usize, key: impl FnOnce() -> String) {
    *count += 1;
    if keys.len() < show {
        keys.push(key());
    }
}

async fn compare_keyed(
    meta: &TableMeta,
    source: &mut Side<'_>,
    target: &mut Side<'_>,
    report: &mut TableReport,
    show: usize,
) -> Result<(), String> {
    let types: Vec<DataType> = meta.key.iter().map(|&i| meta.columns[i].data_type).collect();
    let (mut s, mut t) = (source.next_keyed(meta).await?, target.next_keyed(meta).await?);
    loop {
        match (&s, &t) {
            (None, None) => break,
            (Some(row), None) => {
                note(&mut report.missing_keys, &mut report.missing, show, || row.text(meta));
                s = source.next_keyed(meta).await?;
            }
            (None, Some(row)) => {
                note(&mut report.extra_keys, &mut report.extra, show, || row.text(meta));
                t = target.next_keyed(meta).await?;
            }
            (Some(a), Some(b)) => match compare_keys(&types, &a.key, &b.key) {
                std::cmp::Ordering::Less => {
                    note(&mut report.missing_keys, &mut report.missing, show, || a.text(meta));
                    s = source.next_keyed(meta).await?;
                }
                std::cmp::Ordering::Greater => {
                    note(&mut report.extra_keys, &mut report.extra, show, || b.text(meta));
                    t = target.next_keyed(meta).await?;
                }
                std::cmp::Ordering::Equal => {
                    if !a.same(b, &meta.columns) {
                        note(&mut report.changed_keys, &mut report.changed, show, || a.text(meta));
                    }
                    s = source.next_keyed(meta).await?;
                    t = target.next_keyed(meta).await?;
                }
            },
        }
    }
    report.source_rows = source.rows;
    report.target_rows = target.rows;
    Ok(())
}

/// A keyless table: its rows as a multiset, by hash.
async fn compare_keyless(
    source: &mut Side<'_>,
    target: &mut Side<'_>,
    report: &mut TableReport,
    show: usize,
) -> Result<(), String> {
    async fn hashes(side: &mut Side<'_>) -> Result<Vec<(u64, String)>, String> {
        let mut out = Vec::new();
        while let Some(row) = side.next_canonical().await? {
            let mut h = DefaultHasher::new();
            row.hash(&mut h);
            // The row's text is kept only while it may be named.
            out.push((h.finish(), String::new()));
            if out.len() <= 64 {
                let values: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
                if let Some((_, text)) = out.last_mut() {
                    *text = format!("({})", values.join(", "));
                }
            }
        }
        out.sort_unstable_by_key(|(h, _)| *h);
        Ok(out)
    }
    let (a, b) = (hashes(source).await?, hashes(target).await?);
    let (mut i, mut j) = (0, 0);
    let text = |r: &(u64, String)| {
        if r.1.is_empty() {
            format!("row hash {:016x}", r.0)
        } else {
            r.1.clone()
        }
    };
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                note(&mut report.missing_keys, &mut report.missing, show, || text(x));
                i += 1;
            }
            (Some(x), None) => {
                note(&mut report.missing_keys, &mut report.missing, show, || text(x));
                i += 1;
            }
            (_, Some(y)) => {
                note(&mut report.extra_keys, &mut report.extra, show, || text(y));
                j += 1;
            }
            (None, None) => break,
        }
    }
    report.source_rows = source.rows;
    report.target_rows = target.rows;
    Ok(())
}

/// The reports as a table for people.
pub fn render(reports: &[TableReport]) -> String {
    let width = reports.iter().map(|r| r.table.len()).max().unwrap_or(5).max(5);
    let mut out = format!(
        "{:<width$}  {:>12}  {:>12}  verdict\n",
        "table", "source rows", "target rows"
    );
    for r in reports {
        out.push_str(&format!(
            "{:<width$}  {:>12}  {:>12}  {}\n",
            r.table,
            r.source_rows,
            r.target_rows,
            r.verdict()
        ));
        for (kind, keys) in [
            ("missing", &r.missing_keys),
            ("extra", &r.extra_keys),
            ("changed", &r.changed_keys),
        ] {
            if !keys.is_empty() {
                out.push_str(&format!("    {kind}: {}\n", keys.join(" ")));
            }
        }
    }
    let different = reports.iter().filter(|r| !r.equal()).count();
    out.push_str(&if different == 0 {
        format!("all {} tables equal\n", reports.len())
    } else {
        format!("{different} of {} tables differ\n", reports.len())
    });
    out
}
