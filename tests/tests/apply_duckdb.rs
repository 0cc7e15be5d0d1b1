//! PostgreSQL and MariaDB → Kafka → DuckDB end to end: the capture binaries as
//! processes against the real servers, `ferry-apply-duckdb` into a DuckDB file
//! of the test's own (in a temporary directory).
//!
//! DuckDB lets no other process open a file that one writes to, so a test
//! cannot look into the file while the apply binary runs: where it must watch
//! the target while changes arrive, it runs the same pipeline in its own
//! process ([`InProcess`]); the kill test kills the real binary, watching its
//! `/metrics`, and then checks through the in-process pipeline that resumes
//! from the offsets the binary stored.

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use duckdb::Connection;
use ferry_apply::duckdb::Mode;
use ferry_tests::duck::{duck_rows, DuckDir, InProcess};
use ferry_tests::{start_capture, unique, wait_for, wait_rows, wait_streaming, PgDatabase, Running};

const CATCH_UP: Duration = Duration::from_secs(120);

/// PostgreSQL's rows of `sql`; a failing query panics.
async fn pg_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    ferry_tests::pg_text_rows(client, sql)
        .await
        .unwrap_or_else(|| panic!("{sql} failed"))
}

/// Waits until each pair of queries (PostgreSQL, DuckDB) returns the same rows.
async fn wait_same(source: &PgDatabase, target: &InProcess, pairs: &[(&str, &str)]) {
    let pg = source.client().await;
    for (pg_sql, duck_sql) in pairs {
        wait_rows(
            duck_sql,
            CATCH_UP,
            || pg_rows(&pg, pg_sql),
            || async { target.rows(duck_sql).unwrap_or_default() },
        )
        .await;
    }
}

/// The same query on both sides.
fn same(sql: &str) -> (&str, &str) {
    (sql, sql)
}

/// A source database with `ddl` run in it and a capture of it under a fresh
/// prefix, streaming.
async fn captured(name: &str, ddl: &str) -> (PgDatabase, String, Running) {
    let source = PgDatabase::create();
    source.execute(ddl).await;
    let prefix = unique(name);
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    (source, prefix, capture)
}

/// The history's ops of the rows of `table` where `filter`, in log order.
fn ops(target: &InProcess, table: &str, filter: &str) -> String {
    let rows = target
        .rows(&format!(
            "SELECT string_agg(__op, '' ORDER BY __partition, __offset) FROM {table}__history WHERE {filter}"
        ))
        .unwrap();
    rows.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_snapshot_and_live_changes_mirror_history_and_parquet() {
    use ferry_tests::workload::{big_value, row_for_row_changes, ROW_FOR_ROW_TABLES};
    let (source, prefix, capture) = captured("duck_e2e", ROW_FOR_ROW_TABLES).await;
    let duck = DuckDir::create();
    let apply = InProcess::start(&duck.file(), &prefix, &unique("g"), Mode::Both);
    let big = big_value();
    source.execute(&row_for_row_changes(&big)).await;
    let orders = (
        "SELECT id, note, amount, md5(big), to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM orders",
        "SELECT id, note, amount, md5(big), strftime(CAST(\"at\" AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f') FROM orders",
    );
    let tables = [
        orders,
        same("SELECT order_id, sku, qty FROM lines"),
        same("SELECT line, n FROM log"),
        same("SELECT line FROM journal"),
        same("SELECT id, v FROM scratch"),
    ];
    wait_same(&source, &apply, &tables).await;
    // The unchanged large value kept its target copy.
    assert_eq!(
        apply.rows("SELECT big FROM orders WHERE id = 1002"),
        Some(vec![big.clone()])
    );
    // Every event in order per key: a snapshot read, a delete and an insert
    // again in one transaction; an insert and an update in one transaction.
    assert_eq!(ops(&apply, "orders", "id = 2"), "rdc");
    assert_eq!(ops(&apply, "orders", "id = 2001"), "cu");
    assert_eq!(ops(&apply, "orders", "id = 1002"), "cu");
    // A key change: a delete of the old key, an insert of the new (another partition).
    assert_eq!(ops(&apply, "orders", "id = 3"), "rd");
    assert_eq!(ops(&apply, "orders", "id = 10003"), "c");
    assert_eq!(ops(&apply, "orders", "id = 14"), "ru");
    assert_eq!(ops(&apply, "orders", "id = 77"), "rud");
    // The update that left the large value unchanged says so.
    assert_eq!(
        apply.rows("SELECT note, __unchanged, big IS NULL FROM orders__history WHERE id = 1002 AND __op = 'u'"),
        Some(vec!["toast kept|big|t".to_owned()])
    );
    // Each key's last event is the mirror's row (but for values left unchanged).
    assert_eq!(
        apply.rows(
            "SELECT id, note, amount FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY __offset DESC) AS n
             FROM orders__history) WHERE n = 1 AND __op <> 'd'"
        ),
        apply.rows("SELECT id, note, amount FROM orders")
    );
    // Live events carry their source commit time, position and transaction.
    let live = apply
        .rows(&format!(
            "SELECT count(*) FILTER (WHERE __source_ts IS NULL OR __tx_id IS NULL OR __topic <> '{prefix}.public.orders'),
                    count(*) FROM orders__history WHERE __op <> 'r'"
        ))
        .unwrap();
    let (missing, total) = live[0].split_once('|').unwrap();
    assert_eq!(missing, "0");
    assert!(total.parse::<i64>().unwrap() > 100, "{total} live events");
    // A truncate is one event of the history (once, not per partition), and
    // the rows before it stay there. (Keyless rows spread over partitions: no
    // order across them.)
    let mut journal: Vec<char> = ops(&apply, "journal", "true").chars().collect();
    journal.sort_unstable();
    assert_eq!(String::from_iter(journal), "ccrt");
    // Ferry's offsets are in the file.
    let stored = apply.rows("SELECT count(*) FROM _ferry_offsets").unwrap();
    assert!(stored[0].parse::<i64>().unwrap() >= 5, "{stored:?} offsets stored");
    let mirror = apply
        .rows("SELECT id, note, amount, md5(big), \"at\" FROM orders")
        .unwrap();
    apply.stop().await;

    // The Parquet export of the stopped file reads back equal to the mirror.
    let (lake, printed) = duck.export();
    assert!(printed.contains("main.orders: "), "{printed}");
    assert!(!printed.contains("_ferry_offsets"), "{printed}");
    let conn = Connection::open_in_memory().unwrap();
    let parquet = |table: &str| format!("read_parquet('{}/*.parquet')", lake.join(table).display());
    assert_eq!(
        duck_rows(
            &conn,
            &format!(
                "SELECT id, note, amount, md5(big), \"at\" FROM {}",
                parquet("main.orders")
            )
        ),
        Some(mirror)
    );
    let file = Connection::open(duck.file()).unwrap();
    for table in ["lines", "log", "journal", "scratch", "orders__history"] {
        assert_eq!(
            duck_rows(&conn, &format!("SELECT * FROM {}", parquet(&format!("main.{table}")))),
            duck_rows(&file, &format!("SELECT * FROM {table}")),
            "{table}"
        );
    }
    assert!(capture.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_mid_stream_adds_the_column_to_mirror_and_history() {
    use ferry_tests::workload::{SCHEMA_BEFORE, SCHEMA_CHANGE};
    let (source, prefix, capture) = captured("duck_schema", SCHEMA_BEFORE).await;
    let duck = DuckDir::create();
    let apply = InProcess::start(&duck.file(), &prefix, &unique("g"), Mode::Both);
    wait_same(&source, &apply, &[same("SELECT id, name FROM items")]).await;
    source.execute(SCHEMA_CHANGE).await;
    wait_same(
        &source,
        &apply,
        &[(
            "SELECT id, name, price, tags, to_char(seen, 'YYYY-MM-DD HH24:MI:SS.US') FROM items",
            "SELECT id, name, price, tags, strftime(seen, '%Y-%m-%d %H:%M:%S.%f') FROM items",
        )],
    )
    .await;
    assert_eq!(
        apply.rows(
            "SELECT column_name || ' ' || data_type FROM information_schema.columns
             WHERE table_name = 'items' ORDER BY ordinal_position"
        ),
        Some(
            [
                "id BIGINT",
                "name VARCHAR",
                "price DECIMAL(8,2)",
                "seen TIMESTAMP",
                "tags VARCHAR"
            ]
            .map(str::to_owned)
            .to_vec()
        )
    );
    assert_eq!(
        apply.rows("SELECT id, __op, price FROM items__history"),
        Some(["1|r|∅", "1|u|1.50", "2|c|12.50"].map(str::to_owned).to_vec())
    );
    apply.stop().await;
    assert!(capture.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_applies_nothing_twice_and_loses_nothing() {
    use ferry_tests::workload::{appended_rows, rows_applied, Workload, TABLES};
    let (source, prefix, capture) = captured("duck_kill", TABLES).await;
    let duck = DuckDir::create();
    let group = unique("g");
    let workload = Workload::start(&source.url());
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let file = duck.file().display().to_string();
    // Small batches, so a kill lands inside one more often than not; a stable
    // instance id, so each restart takes its partitions back at once.
    let instance = unique("instance");
    let args = [
        "--batch-size",
        "300",
        "--instance-id",
        &instance,
        "--metrics",
        &metrics,
        "--mode",
        "both",
    ];
    for kill in 0..4 {
        // Half the runs checkpoint after every commit, so that kills land in
        // checkpoints; the others never checkpoint (the default threshold is
        // far away), so that each restart replays DuckDB's log.
        let checkpoint = if kill % 2 == 1 { "0" } else { "1024" };
        let args = [&args[..], &["--checkpoint-mb", checkpoint]].concat();
        let apply = ferry_tests::start_apply_with("ferry-apply-duckdb", &file, &prefix, &group, &args);
        wait_for("apply to write a batch", CATCH_UP, || async {
            rows_applied(&metrics).await.filter(|&n| n > 0)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(150 + 97 * kill)).await;
        apply.kill9();
    }
    let rounds = workload.stop().await;
    let apply = InProcess::start_as(&duck.file(), &prefix, &group, Mode::Both, Some(&instance));
    wait_same(
        &source,
        &apply,
        &[
            same("SELECT * FROM counters"),
            same("SELECT * FROM emptied"),
            same("SELECT k, v, COUNT(*) FROM appended GROUP BY k, v"),
            // Every increment is one update in the history, exactly once.
            (
                "SELECT id, n FROM counters",
                "SELECT id, count(*) FILTER (WHERE __op = 'u') FROM counters__history GROUP BY id",
            ),
        ],
    )
    .await;
    // Appends have no key: a message applied twice would be a second row.
    assert_eq!(
        apply.rows("SELECT count(*) FROM appended"),
        Some(vec![appended_rows(rounds).to_string()])
    );
    apply.stop().await;
    assert!(capture.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_snapshot_and_live_changes_arrive_row_for_row() {
    use ferry_tests::mariadb::{server_id, start_capture as start_my_capture, text_rows, wait_position, MariaDatabase};
    let source = MariaDatabase::create().await;
    source
        .execute(
            "CREATE TABLE things (id INT PRIMARY KEY, name VARCHAR(20), amount DECIMAL(12,3), at DATETIME(6),
               span TIME(6), day DATE, raw VARBINARY(8), big BIGINT UNSIGNED, flag BOOLEAN);
             CREATE TABLE notes (line TEXT);
             INSERT INTO things VALUES (1, 'one', 1.5, '2024-01-01 00:00:00.000001', '-838:59:59.999999',
               '1000-01-01', X'00FF', 18446744073709551615, TRUE),
               (2, 'two''s', -0.001, NULL, '12:00:00', '9999-12-31', X'', 0, FALSE);
             INSERT INTO notes VALUES ('a'), ('a'), ('b');",
        )
        .await;
    let prefix = unique("duck_my");
    let capture = start_my_capture(&source, &prefix, server_id(), &[]);
    wait_position(&prefix).await;
    let duck = DuckDir::create();
    let apply = InProcess::start(&duck.file(), &prefix, &unique("g"), Mode::Both);
    source
        .execute(
            "INSERT INTO things VALUES (3, 'three', 3, '2038-01-19 03:14:07.5', '00:00:00.000001', '2024-02-29',
               X'DEADBEEF', 42, NULL);
             UPDATE things SET name = 'uno', amount = amount * 2 WHERE id = 1;
             DELETE FROM things WHERE id = 2;
             START TRANSACTION; INSERT INTO things (id, name) VALUES (4, 'four');
               UPDATE things SET name = 'FOUR' WHERE id = 4; COMMIT;
             DELETE FROM notes WHERE line = 'a' LIMIT 1;
             INSERT INTO notes VALUES ('c');",
        )
        .await;
    let my_things = "SELECT id, name, amount, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'), span, day, HEX(raw), big,
                     flag FROM things";
    let duck_things = "SELECT id, name, amount, strftime(\"at\", '%Y-%m-%d %H:%M:%S.%f'), CAST(span AS VARCHAR),
                       CAST(day AS VARCHAR), hex(raw), big,
                       CAST(flag AS INTEGER) FROM things";
    let mut my = source.conn().await;
    for (my_sql, duck_sql) in [
        (my_things, duck_things),
        ("SELECT line FROM notes", "SELECT line FROM notes"),
    ] {
        let want = text_rows(&mut my, my_sql).await.unwrap();
        wait_rows(
            duck_sql,
            CATCH_UP,
            || async { want.clone() },
            || async { apply.rows(duck_sql).unwrap_or_default() },
        )
        .await;
    }
    assert_eq!(
        apply.rows(
            "SELECT column_name || ' ' || data_type FROM information_schema.columns
             WHERE table_name = 'things'"
        ),
        Some(
            // Sorted; BOOLEAN is MariaDB's TINYINT(1), an int16 on the wire.
            [
                "amount DECIMAL(12,3)",
                "at TIMESTAMP",
                "big DECIMAL(20,0)",
                "day DATE",
                "flag SMALLINT",
                "id INTEGER",
                "name VARCHAR",
                "raw BLOB",
                "span INTERVAL",
            ]
            .map(str::to_owned)
            .to_vec()
        )
    );
    assert_eq!(ops(&apply, "things", "id = 4"), "cu");
    assert_eq!(ops(&apply, "things", "id = 2"), "rd");
    assert_eq!(ops(&apply, "notes", "true"), "rrrdc");
    // MariaDB names its transactions by GTID.
    assert_eq!(
        apply.rows("SELECT count(*) FROM things__history WHERE __op <> 'r' AND __tx_id IS NULL"),
        Some(vec!["0".to_owned()])
    );
    apply.stop().await;
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn bad_flags_get_one_line_naming_what_to_fix() {
    for (args, want) in [
        (
            vec!["--target", "duckdb://x.duckdb", "--topics", "a", "--group", "g"],
            "is not a file path",
        ),
        (
            vec!["--target", "/nonexistent-dir/x.duckdb", "--topics", "a", "--group", "g"],
            "--target /nonexistent-dir/x.duckdb",
        ),
        (
            vec!["export", "--target", "/nonexistent.duckdb", "--to", "/tmp/x"],
            "no such file",
        ),
    ] {
        let out = tokio::process::Command::new(ferry_tests::binary("ferry-apply-duckdb"))
            .args(&args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("ferry-apply-duckdb") && last.contains(want),
            "{args:?}: {stderr}"
        );
    }
    // Values clap refuses, with what it would take.
    for (args, want) in [
        (["--mode", "sideways"], "mirror, history, both"),
        (["--checkpoint-mb", "lots"], "invalid value 'lots' for '--checkpoint-mb"),
    ] {
        let out = tokio::process::Command::new(ferry_tests::binary("ferry-apply-duckdb"))
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(want), "{args:?}");
    }
}

/// DuckDB and librdkafka allocate from mimalloc, not glibc (the workspace's
/// `mimalloc` feature `override`, worth a sixth of apply's CPU), in
/// `ferry-apply-duckdb` and in `ferry`, whose `migrate` runs the same apply in
/// its process: each binary defines `malloc`, `free` and `operator new`
/// itself, which only mimalloc's override puts there, so they come before
/// glibc's for every library in it.
#[test]
fn the_binaries_bring_their_own_malloc_for_duckdb_and_librdkafka() {
    for name in ["ferry-apply-duckdb", "ferry"] {
        let binary = ferry_tests::binary(name);
        let out = std::process::Command::new("nm")
            .arg("--defined-only")
            .arg(&binary)
            .output()
            .expect("nm (binutils) runs");
        assert!(
            out.status.success(),
            "nm failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let symbols = String::from_utf8_lossy(&out.stdout);
        for wanted in ["malloc", "free", "_Znwm"] {
            assert!(
                symbols.lines().any(|l| l.ends_with(&format!(" T {wanted}"))),
                "{} does not define {wanted}: DuckDB and librdkafka would allocate from glibc's malloc",
                binary.display()
            );
        }
    }
}
