//! `ferry-apply-duckdb export`: the file's tables as Parquet, for data lakes.
//!
//! Every table but Ferry's own (`_ferry_offsets`, `_ferry_barriers`) is
//! written to `DIR/<schema>.<table>/` (names made safe as paths, see
//! [`directory`]) as numbered Parquet files of at most
//! `--max-file-mb` each (DuckDB's `COPY ... FILE_SIZE_BYTES`), replacing what
//! that directory held. All tables are read in one read transaction, so the
//! files are one consistent snapshot: a mirror table and its history end at
//! the same batch.
//!
//! DuckDB lets one process open a file that another writes to, not even to
//! read: the export runs while `ferry-apply-duckdb` is stopped (it resumes
//! from its stored offsets afterwards, nothing lost).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ::duckdb::{AccessMode, Connection};
use clap::Parser;
use ferry_core::meta::TableId;

use super::quoted;
use crate::target::{BARRIERS_TABLE, OFFSETS_TABLE};

/// `ferry-apply-duckdb export`'s flags.
#[derive(Debug, Parser)]
#[command(
    name = "ferry-apply-duckdb export",
    about = "Writes every table of a DuckDB file that ferry-apply-duckdb keeps as Parquet files, one directory per \
             table, from one consistent snapshot. Run it while ferry-apply-duckdb is stopped."
)]
pub struct ExportArgs {
    /// The DuckDB file.
    #[arg(long)]
    pub target: PathBuf,
    /// The directory to write into: DIR/SCHEMA.TABLE/data_N.parquet.
    #[arg(long)]
    pub to: PathBuf,
    /// Largest Parquet file, in MiB; a larger table is split into several.
    #[arg(long, default_value_t = 256)]
    pub max_file_mb: u64,
}

/// The tables exported and their rows.
pub fn export(args: &ExportArgs) -> Result<Vec<(TableId, u64)>, String> {
    if args.max_file_mb == 0 {
        return Err("--max-file-mb must be at least 1".into());
    }
    if !args.target.exists() {
        return Err(format!("--target {}: no such file", args.target.display()));
    }
    let conn = Connection::open_with_flags(&args.target, super::config(AccessMode::ReadOnly)?).map_err(|e| {
        format!(
            "--target {}: {e}; DuckDB lets no other process open a file that one writes to: stop \
             ferry-apply-duckdb while exporting (it resumes where it stopped)",
            args.target.display()
        )
    })?;
    std::fs::create_dir_all(&args.to).map_err(|e| format!("--to {}: {e}", args.to.display()))?;
    let fail = |e: ::duckdb::Error| format!("export from {}: {e}", args.target.display());
    conn.execute_batch("BEGIN TRANSACTION").map_err(fail)?;
    let tables: Vec<TableId> = {
        let mut statement = conn
            .prepare(
                "SELECT table_schema, table_name FROM information_schema.tables
                 WHERE table_catalog = current_database() AND table_type = 'BASE TABLE'
                   AND NOT (table_schema = 'main' AND table_name IN (?, ?))
                 ORDER BY 1, 2",
            )
            .map_err(fail)?;
        let rows = statement
            .query_map([OFFSETS_TABLE, BARRIERS_TABLE], |r| {
                Ok(TableId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(fail)?;
        rows.collect::<Result<_, _>>().map_err(fail)?
    };
    let mut done = Vec::new();
    for table in tables {
        let dir = directory(&args.to, &table);
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {}", quoted(&table)), [], |r| r.get(0))
            .map_err(fail)?;
        conn.execute_batch(&format!(
            "COPY (SELECT * FROM {}) TO {} (FORMAT parquet, FILE_SIZE_BYTES {}, OVERWRITE true)",
            quoted(&table),
            quote_literal(&dir.to_string_lossy()),
            args.max_file_mb * 1024 * 1024
        ))
        .map_err(fail)?;
        done.push((table, u64::try_from(rows).unwrap_or(0)));
    }
    conn.execute_batch("COMMIT").map_err(fail)?;
    Ok(done)
}

/// Where `table`'s files go under `to`: `<schema>.<table>`, each part with
/// every character but letters, digits, `_`, `-` and space written as `%XX`
/// (its UTF-8 bytes). A table may be called anything (`../../home`, `a/b`),
/// and the export replaces what its directory holds: no name may reach
/// outside `to`, nor share a directory with another (`a.b` in `s` and `b` in
/// `s.a`).
pub fn directory(to: &Path, table: &TableId) -> PathBuf {
    to.join(format!("{}.{}", path_part(&table.schema), path_part(&table.table)))
}

fn path_part(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_alphanumeric() || matches!(c, '_' | '-' | ' ') {
            out.push(c);
        } else {
            for b in c.encode_utf8(&mut [0; 4]).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `ferry-apply-duckdb export ARGS`: exports, printing a line per table.
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = ExportArgs::parse_from(args);
    match export(&args) {
        Ok(tables) => {
            for (table, rows) in tables {
                println!("{table}: {rows} rows → {}", directory(&args.to, &table).display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry-apply-duckdb export: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::quote_ident;
    use super::*;

    #[test]
    fn each_table_has_its_directory() {
        assert_eq!(
            directory(Path::new("/lake"), &TableId::new("main", "orders")),
            PathBuf::from("/lake/main.orders")
        );
        assert_eq!(quote_literal("a'b"), "'a''b'");
        assert_eq!(quote_ident("x\"y"), "\"x\"\"y\"");
    }

    #[test]
    fn no_table_name_leaves_the_directory_or_shares_one() {
        let to = Path::new("/out");
        let dir = |s: &str, t: &str| directory(to, &TableId::new(s, t));
        assert_eq!(dir("main", "Ünïcødé 表"), Path::new("/out/main.Ünïcødé 表"));
        assert_eq!(dir("main", "../../etc"), Path::new("/out/main.%2E%2E%2F%2E%2E%2Fetc"));
        assert_eq!(dir("..", ".."), Path::new("/out/%2E%2E.%2E%2E"));
        assert_ne!(dir("s", "a.b"), dir("s.a", "b"));
        assert_ne!(dir("s", "a%2Eb"), dir("s", "a.b"));
        for (s, t) in [("main", "../x"), ("/", "/"), ("a\\b", "c\0d")] {
            assert_eq!(dir(s, t).parent(), Some(to), "{s}.{t}");
        }
    }
}
