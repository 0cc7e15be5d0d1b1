//! `ferry-bench validate [ROWS]`: `ferry validate` of two PostgreSQL
//! databases holding the same narrow table of ROWS rows (`id bigint` key, an
//! `int`, a short text), beside the reference: both tables read in key order
//! as text by `COPY (SELECT ... ORDER BY id) TO STDOUT` at once, to
//! /dev/null — the reading validate cannot do without.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{binary, PgDatabase};

const TABLE: &str = "CREATE TABLE t (id bigint PRIMARY KEY, n int, name text)";

async fn fill(db: &PgDatabase, rows: i64) {
    db.execute(&format!(
        "{TABLE}; INSERT INTO t SELECT i, i % 1000, 'name ' || i FROM generate_series(1, {rows}) i"
    ))
    .await;
    // Not in the transaction of the statements above.
    db.execute("VACUUM ANALYZE t").await;
}

fn copy_out(db: &PgDatabase) -> std::process::Child {
    Command::new("psql")
        .args([
            &db.url(),
            "-c",
            "COPY (SELECT id::text, n::text, name FROM t ORDER BY id) TO STDOUT",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("psql")
}

pub async fn throughput(rows: i64) {
    let (source, target) = (PgDatabase::create(), PgDatabase::create());
    fill(&source, rows).await;
    fill(&target, rows).await;

    let started = Instant::now();
    let (mut a, mut b) = (copy_out(&source), copy_out(&target));
    assert!(a.wait().expect("psql").success() && b.wait().expect("psql").success());
    let reference = started.elapsed();

    let started = Instant::now();
    let out = Command::new(binary("ferry"))
        .args(["validate", "--source", &source.url(), "--target", &target.url()])
        .output()
        .expect("ferry validate");
    let ferry = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!("| measure | rows per side | seconds | rows/s compared | vs reference |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| both sides `COPY (SELECT ... ORDER BY id) TO STDOUT` at once (reference) | {rows} | {:.2} | {:.0} | 1.00 |",
        reference.as_secs_f64(),
        rate(reference)
    );
    println!(
        "| `ferry validate` | {rows} | {:.2} | {:.0} | {:.2} |",
        ferry.as_secs_f64(),
        rate(ferry),
        rate(ferry) / rate(reference)
    );
}
