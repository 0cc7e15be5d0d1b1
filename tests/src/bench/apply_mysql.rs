//! `ferry-bench apply-mysql [EVENTS]`: the log of `ferry-bench apply` (EVENTS
//! change events on a narrow and a wide table) applied by `ferry-apply-mysql`
//! into an empty MariaDB database, timed from its start until the target's
//! stored offsets reach the end of every topic. Beside it, MariaDB's own bulk
//! path: `LOAD DATA INFILE` of the same tables' rows (written first with
//! `SELECT ... INTO OUTFILE`; only the load is timed) into empty copies.

use std::time::{Duration, Instant};

use ferry_apply::mysql::value::{write_literal, Fit};
use ferry_core::value::Datum;
use ferry_tests::mariadb::MariaDatabase;
use ferry_tests::{unique, wait_for};
use mysql_async::prelude::Queryable;

use super::apply::{captured_log, spawn_apply_to};

pub async fn throughput(events: i64) {
    let log = captured_log(events).await;
    let target = MariaDatabase::create().await;
    let conn = target.conn().await;
    let group = unique("bench");
    let shares = super::CpuShares::start();
    let started = Instant::now();
    let apply = spawn_apply_to("ferry-apply-mysql", &target.url(), &log.prefix, &group, &[]);
    let applied = "SELECT CAST(COALESCE(SUM(next_offset), 0) AS SIGNED) FROM _ferry_offsets WHERE consumer_group = ?";
    let conn = std::sync::Arc::new(tokio::sync::Mutex::new(conn));
    wait_for("apply to reach the end of the log", Duration::from_secs(3600), || {
        let (conn, group) = (std::sync::Arc::clone(&conn), group.clone());
        async move {
            let done: Option<i64> = conn.lock().await.exec_first(applied, (group,)).await.ok().flatten();
            (done? >= log.total).then_some(())
        }
    })
    .await;
    let ferry = started.elapsed();
    let apply_cpu = apply.id().and_then(super::proc_cpu_seconds).unwrap_or(f64::NAN);
    let shares = shares.report(apply.id(), 0.0);
    drop(apply);
    let mut conn = std::sync::Arc::into_inner(conn).expect("one owner").into_inner();
    let mut rows = 0;
    for table in ["n", "w"] {
        let sql = format!("SELECT count(*) FROM {table}");
        let got: Option<i64> = conn.query_first(&sql).await.expect("count");
        let want: i64 = log.client.query_one(&sql, &[]).await.expect("count").get(0);
        assert_eq!(got, Some(want), "table {table} differs");
        rows += want;
    }

    // Reference: MariaDB loading the same rows from its own dump format.
    let mut loaded = Duration::ZERO;
    for table in ["n", "w"] {
        let file = std::env::temp_dir().join(unique(&format!("ferry_bench_{table}")));
        let file = file.display().to_string();
        conn.query_drop(format!(
            "CREATE TABLE {table}_copy LIKE {table}; SELECT * FROM {table} INTO OUTFILE '{file}'"
        ))
        .await
        .expect("dump");
        super::settle().await;
        let started = Instant::now();
        conn.query_drop(format!("LOAD DATA INFILE '{file}' INTO TABLE {table}_copy"))
            .await
            .expect("load");
        loaded += started.elapsed();
        let _ = std::fs::remove_file(&file);
    }
    let ferry_rate = events as f64 / ferry.as_secs_f64();
    let load_rate = rows as f64 / loaded.as_secs_f64();
    println!("| measure | rows | seconds | rows/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `LOAD DATA INFILE` of the {rows} rows the tables end with (reference: MariaDB) | {rows} | {:.1} | {load_rate:.0} |",
        loaded.as_secs_f64()
    );
    println!(
        "| ferry-apply-mysql, {events} change events ({} messages with tombstones) from Kafka | {events} | {:.1} | {ferry_rate:.0} |",
        log.total,
        ferry.as_secs_f64()
    );
    println!();
    println!(
        "ferry-apply-mysql used {apply_cpu:.1} s of CPU ({:.1} µs per event). {shares}.",
        apply_cpu * 1e6 / events as f64
    );
    println!();
    println!(
        "Events: 4/7 inserts, 2/7 updates, 1/7 deletes, on a 3-column and a 17-column table; applied from the \
         beginning of the log into an empty MariaDB database (defaults: 2 writers, batches up to 20,000 \
         messages), timed from the start of apply until the target's stored offsets reach the end of every topic."
    );
}

/// The wide table of `ferry-bench apply` as `ferry-apply-mysql` creates it.
const WIDE: &str = "(id BIGINT PRIMARY KEY, a INT, b BIGINT, c DECIMAL(12,2), d DOUBLE, e LONGTEXT, f LONGTEXT,
    g DATETIME(6), h DATE, i BOOLEAN, j CHAR(36), k LONGTEXT, l VARCHAR(40), m DECIMAL(65,30), o SMALLINT,
    p LONGBLOB, q LONGTEXT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin";
const WIDE_COLUMNS: &[&str] = &[
    "id", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "o", "p", "q",
];

/// Row `i` of the wide table, shaped like the PostgreSQL benchmark's.
fn wide_row(i: i64, round: i64) -> Vec<Datum> {
    let hash = format!(
        "{:032x}",
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
    );
    let decimal = |s: String| Datum::Decimal(s.parse().expect("decimal"));
    vec![
        Datum::Int(i),
        Datum::Int(i % 1000 + round),
        Datum::Int(i * 7),
        decimal(format!("{}.{:02}", i / 4, i % 4 * 25)),
        Datum::Float64(i as f64 / 3.0),
        Datum::Text(if round == 0 { hash.clone() } else { "updated".into() }),
        Datum::Text("x".repeat(50)),
        Datum::Timestamp(1_704_067_200_000_000 + i * 1_000_000),
        Datum::Date(19_723 + (i % 1000) as i32),
        Datum::Bool(i % 2 == 0),
        Datum::Uuid(hash.parse().expect("uuid")),
        Datum::Text(format!("{{\"i\": {i}, \"tag\": \"bench\"}}")),
        Datum::Text(hash[..32].to_owned()),
        decimal(format!("{}.{:020}", i / 7, (i % 7) * 142_857_142_857_142_857)),
        Datum::Int(i % 30_000),
        Datum::Bytes(hash.as_bytes()[..16].to_vec()),
        Datum::Text(format!("row {i}")),
    ]
}

/// A value in `LOAD DATA`'s default text form (tab-separated, backslash
/// escapes): its literal without the quotes, or its bytes.
fn tsv(datum: &Datum, out: &mut Vec<u8>) {
    let mut literal = String::new();
    let text: &[u8] = match datum {
        Datum::Text(t) => t.as_bytes(),
        Datum::Bytes(b) => b,
        other => {
            write_literal(other, Fit::Any, &mut literal).expect("a value MariaDB holds");
            literal.trim_matches('\'').as_bytes()
        }
    };
    for &byte in text {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0 => out.extend_from_slice(b"\\0"),
            other => out.push(other),
        }
    }
}

/// `ferry-bench apply-mysql-paths ROWS`: the two ways a batch can be written
/// into MariaDB, on ROWS rows of the wide table in batches of 20,000 (one
/// transaction each), once into an empty table (all inserts) and once more
/// (all updates): multi-row `INSERT ... VALUES ... ON DUPLICATE KEY UPDATE`
/// statements of literals of at most 4 MiB (what `ferry-apply-mysql` does), and
/// `LOAD DATA LOCAL INFILE` into a temporary staging table followed by one
/// `INSERT ... SELECT ... ON DUPLICATE KEY UPDATE`.
pub async fn write_paths(rows: i64) {
    let db = MariaDatabase::create().await;
    let mut conn = db.conn().await;
    // The session ferry-apply-mysql runs in.
    for sql in ["SET time_zone = '+00:00', NAMES utf8mb4"]
        .iter()
        .chain(ferry_apply::mysql::SESSION)
    {
        conn.query_drop(*sql).await.expect("session");
    }
    let update: Vec<String> = WIDE_COLUMNS[1..].iter().map(|c| format!("{c} = VALUES({c})")).collect();
    let update = format!(" ON DUPLICATE KEY UPDATE {}", update.join(", "));
    const BATCH: i64 = 20_000;
    let mut results = Vec::new();
    for path in ["insert", "load"] {
        let table = format!("w_{path}");
        conn.query_drop(format!("CREATE TABLE {table} {WIDE}"))
            .await
            .expect("table");
        for round in 0..2 {
            let started = Instant::now();
            let mut from = 1;
            while from <= rows {
                let to = (from + BATCH - 1).min(rows);
                conn.query_drop("START TRANSACTION").await.expect("begin");
                if path == "insert" {
                    let head = format!("INSERT INTO {table} ({}) VALUES ", WIDE_COLUMNS.join(", "));
                    let mut sql = head.clone();
                    let mut n = 0;
                    for i in from..=to {
                        if n > 0 {
                            sql.push_str(", ");
                        }
                        sql.push('(');
                        for (j, d) in wide_row(i, round).iter().enumerate() {
                            if j > 0 {
                                sql.push_str(", ");
                            }
                            write_literal(d, Fit::Any, &mut sql).expect("a value MariaDB holds");
                        }
                        sql.push(')');
                        n += 1;
                        if sql.len() > 4 << 20 || i == to {
                            sql.push_str(&update);
                            conn.query_drop(std::mem::replace(&mut sql, head.clone()))
                                .await
                                .expect("insert");
                            n = 0;
                        }
                    }
                } else {
                    let mut data = Vec::new();
                    for i in from..=to {
                        for (j, d) in wide_row(i, round).iter().enumerate() {
                            if j > 0 {
                                data.push(b'\t');
                            }
                            tsv(d, &mut data);
                        }
                        data.push(b'\n');
                    }
                    let stream = futures::stream::once(async move { Ok(bytes::Bytes::from(data)) });
                    conn.set_infile_handler(async move { Ok(Box::pin(stream) as mysql_async::InfileData) });
                    conn.query_drop(format!(
                        "CREATE TEMPORARY TABLE IF NOT EXISTS stage LIKE {table}; DELETE FROM stage"
                    ))
                    .await
                    .expect("stage");
                    conn.query_drop("LOAD DATA LOCAL INFILE 'batch' INTO TABLE stage")
                        .await
                        .expect("load");
                    conn.query_drop(format!("INSERT INTO {table} SELECT * FROM stage{update}"))
                        .await
                        .expect("merge");
                }
                conn.query_drop("COMMIT").await.expect("commit");
                from = to + 1;
            }
            results.push((path, round, started.elapsed()));
        }
        let count: Option<i64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {table} WHERE e = 'updated'"))
            .await
            .expect("count");
        assert_eq!(count, Some(rows), "{path}: every row updated");
    }
    let a: Vec<(String, String)> = conn
        .query("SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, a, b, c, d, e, f, g, h, i, j, k, l, m, o, HEX(p), q) ORDER BY id)), '' FROM w_insert")
        .await
        .expect("checksum");
    let b: Vec<(String, String)> = conn
        .query("SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, a, b, c, d, e, f, g, h, i, j, k, l, m, o, HEX(p), q) ORDER BY id)), '' FROM w_load")
        .await
        .expect("checksum");
    assert_eq!(a, b, "both paths wrote the same rows");
    println!("| path | inserts rows/s | updates rows/s |");
    println!("|---|---:|---:|");
    for path in ["insert", "load"] {
        let rate = |round| {
            let (_, _, took) = results
                .iter()
                .find(|(p, r, _)| *p == path && *r == round)
                .expect("measured");
            rows as f64 / took.as_secs_f64()
        };
        let name = if path == "insert" {
            "multi-row `INSERT ... ON DUPLICATE KEY UPDATE` of literals (taken)"
        } else {
            "`LOAD DATA LOCAL INFILE` into a temporary table, then `INSERT ... SELECT ... ON DUPLICATE KEY UPDATE`"
        };
        println!("| {name} | {:.0} | {:.0} |", rate(0), rate(1));
    }
    println!();
    println!("{rows} rows of the 17-column table in batches of 20,000, one transaction each.");
}
