//! ferry-capture-mysql against the real MariaDB of the development stack:
//! snapshot, binlog stream, restarts by GTID, DDL, rotation, validation.

use std::time::Duration;

use ferry_core::envelope::Connector;
use ferry_core::envelope::{ChangeEvent, Op, Snapshot, SourceDetail};
use ferry_core::schema_change::{SchemaChange, SchemaChangeCodec};
use ferry_core::value::Datum;
use ferry_tests::mariadb::{server_id, start_capture, wait_position, MariaDatabase, SERVER};
use ferry_tests::{count_committed, read_topic, read_topic_keys, unique, SERVICES_REGISTRY};

fn int(d: &Datum) -> i64 {
    match d {
        Datum::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

fn events(received: &[ferry_tests::Received]) -> Vec<ChangeEvent> {
    received.iter().filter_map(|r| r.event.clone()).collect()
}

fn ids(events: &[ChangeEvent], op: Op) -> Vec<i64> {
    let mut ids: Vec<i64> = events
        .iter()
        .filter(|e| e.op == op)
        .map(|e| int(&e.after.as_ref().or(e.before.as_ref()).expect("a row")[0]))
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn snapshot_then_stream_then_resume_by_gtid() {
    let db = MariaDatabase::create().await;
    db.execute(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20), qty INT);
         INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);",
    )
    .await;
    let prefix = unique("mycap");
    let topic = format!("{prefix}.{}.items", db.name);
    let id = server_id();
    let capture = start_capture(&db, &prefix, id, &[]);

    let snapshot = events(&read_topic(&topic, 3, SERVICES_REGISTRY).await);
    assert_eq!(ids(&snapshot, Op::Read), [1, 2, 3]);
    assert_eq!(
        snapshot.iter().filter(|e| e.source.snapshot == Snapshot::Last).count(),
        1
    );
    wait_position(&prefix).await;

    db.execute(
        "START TRANSACTION;
         INSERT INTO items VALUES (4, 'four', 4);
         UPDATE items SET qty = 20 WHERE id = 2;
         COMMIT;
         UPDATE items SET id = 5 WHERE id = 1;
         DELETE FROM items WHERE id = 3;",
    )
    .await;
    // 3 reads + insert + update + key change (delete, tombstone, create) + delete + tombstone.
    let all = read_topic(&topic, 10, SERVICES_REGISTRY).await;
    let streamed = events(&all);
    assert_eq!(ids(&streamed, Op::Create), [4, 5]);
    assert_eq!(ids(&streamed, Op::Update), [2]);
    assert_eq!(ids(&streamed, Op::Delete), [1, 3]);
    assert_eq!(
        all.iter().filter(|r| r.event.is_none()).count(),
        2,
        "a tombstone after each delete"
    );
    let update = streamed.iter().find(|e| e.op == Op::Update).unwrap();
    assert_eq!(update.before.as_ref().unwrap()[2], Datum::Int(2));
    assert_eq!(update.after.as_ref().unwrap()[2], Datum::Int(20));
    let insert = streamed
        .iter()
        .find(|e| e.op == Op::Create && int(&e.after.as_ref().unwrap()[0]) == 4)
        .unwrap();
    let block = insert.transaction.as_ref().expect("transaction block");
    assert_eq!(block.id, update.transaction.as_ref().unwrap().id, "one transaction");
    match &insert.source.detail {
        SourceDetail::Mysql {
            gtid,
            file,
            pos,
            server_id,
            ..
        } => {
            assert_eq!(
                gtid.as_deref(),
                Some(block.id.as_str()),
                "the transaction id is its GTID"
            );
            assert!(
                file.starts_with("mysql-bin.") && *pos > 4 && *server_id > 0,
                "{file}:{pos} {server_id}"
            );
        }
        other => panic!("{other:?}"),
    }

    // A clean stop, changes while stopped, a restart: only the new ones come.
    assert!(capture.terminate().success(), "clean stop");
    db.execute("INSERT INTO items VALUES (10, 'while stopped', 10)").await;
    let capture = start_capture(&db, &prefix, id, &[]);
    let after = events(&read_topic(&topic, 11, SERVICES_REGISTRY).await);
    assert_eq!(after.last().map(|e| int(&e.after.as_ref().unwrap()[0])), Some(10));
    db.execute("INSERT INTO items VALUES (11, 'after', 11)").await;
    read_topic(&topic, 12, SERVICES_REGISTRY).await;
    assert_eq!(
        count_committed(&topic, Duration::from_secs(3)).await,
        12,
        "nothing twice"
    );
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn ddl_rotation_and_truncate_mid_stream() {
    let db = MariaDatabase::create().await;
    db.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, a VARCHAR(10))")
        .await;
    let prefix = unique("mycap");
    let topic = format!("{prefix}.{}.t", db.name);
    let capture = start_capture(&db, &prefix, server_id(), &[]);
    wait_position(&prefix).await;

    db.execute(
        "INSERT INTO t VALUES (1, 'before');
         ALTER TABLE t ADD COLUMN b INT NOT NULL DEFAULT 7;
         INSERT INTO t VALUES (2, 'after', 8);
         FLUSH BINARY LOGS;
         INSERT INTO t VALUES (3, 'rotated', 9);
         TRUNCATE TABLE t;
         INSERT INTO t VALUES (4, 'fresh', 10);",
    )
    .await;
    // 3 inserts, a truncate in each of 3 partitions, 1 insert.
    let all = events(&read_topic(&topic, 7, SERVICES_REGISTRY).await);
    let creates: Vec<&ChangeEvent> = all.iter().filter(|e| e.op == Op::Create).collect();
    let row = |id: i64| {
        creates
            .iter()
            .find(|e| int(&e.after.as_ref().unwrap()[0]) == id)
            .and_then(|e| e.after.clone())
            .unwrap_or_else(|| panic!("row {id}"))
    };
    assert_eq!(row(1).len(), 2, "a row written before the DDL keeps the old columns");
    assert_eq!(row(2), vec![Datum::Int(2), Datum::Text("after".into()), Datum::Int(8)]);
    assert_eq!(row(3)[2], Datum::Int(9), "read across the rotation");
    assert_eq!(row(4)[1], Datum::Text("fresh".into()));
    assert_eq!(all.iter().filter(|e| e.op == Op::Truncate).count(), 3);
    let file_of = |id: i64| {
        creates
            .iter()
            .find(|e| int(&e.after.as_ref().unwrap()[0]) == id)
            .map(|e| match &e.source.detail {
                SourceDetail::Mysql { file, .. } => file.clone(),
                other => panic!("{other:?}"),
            })
    };
    assert_ne!(file_of(2), file_of(3), "the rotation moved to a new file");

    // The schema history: the statement, then the version registered for it.
    let codec = SchemaChangeCodec::new(&prefix, Connector::Mysql).unwrap();
    let history: Vec<SchemaChange> = ferry_tests::read_raw(&format!("{prefix}.schema-changes"), 2)
        .await
        .into_iter()
        .map(|(_, value)| {
            let value = value.expect("a value");
            let (_, body) = ferry_core::wire::decode(&value).expect("wire format");
            codec.decode_value(body).expect("a schema change")
        })
        .collect();
    assert!(
        history[0].ddl.as_deref().is_some_and(|d| d.contains("ADD COLUMN b")) && history[0].database == db.name,
        "{history:?}"
    );
    assert_eq!(history[1].table.as_deref(), Some("t"));
    assert!(history[1].schema_id.is_some());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn kill_9_mid_transaction_resumes_from_the_last_whole_one() {
    let db = MariaDatabase::create().await;
    db.execute("CREATE TABLE log (id INT PRIMARY KEY, v INT)").await;
    let prefix = unique("mycap");
    let topic = format!("{prefix}.{}.log", db.name);
    let id = server_id();
    let mut capture = start_capture(&db, &prefix, id, &[]);
    wait_position(&prefix).await;
    let mut next = 0;
    for round in 0..4 {
        // A large transaction, killed while it streams.
        let values: Vec<String> = (next..next + 5_000).map(|i| format!("({i}, {round})")).collect();
        db.execute(&format!("INSERT INTO log VALUES {}", values.join(",")))
            .await;
        next += 5_000;
        tokio::time::sleep(Duration::from_millis(150 * round as u64)).await;
        capture.kill9();
        capture = start_capture(&db, &prefix, id, &[]);
    }
    let want = next as usize;
    let received = read_topic_keys(&topic, want, SERVICES_REGISTRY).await;
    let mut seen: Vec<i64> = events(&received)
        .iter()
        .map(|e| int(&e.after.as_ref().unwrap()[0]))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        want,
        "every row arrived (duplicates are allowed: at-least-once into Kafka)"
    );
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn every_problem_is_one_line_and_a_failure_exit() {
    let db = MariaDatabase::create().await;
    db.execute("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let user = unique("ferry_weak");
    db.execute(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON *.* TO '{user}'@'%';"
    ))
    .await;
    let source = format!("mysql://{user}:pw@127.0.0.1:3306");
    let tables = format!("{}.t,{}.missing", db.name, db.name);
    let brokers = ferry_tests::brokers();
    let run = |args: Vec<String>| {
        std::process::Command::new(ferry_tests::binary("ferry-capture-mysql"))
            .args(args)
            .output()
            .expect("run")
    };
    let out = run([
        "--source",
        &source,
        "--server-id",
        "1",
        "--prefix",
        &unique("bad"),
        "--tables",
        &tables,
        "--brokers",
        &brokers,
    ]
    .map(String::from)
    .to_vec());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    for needle in [
        "lacks REPLICATION SLAVE",
        "lacks BINLOG MONITOR",
        "missing does not exist",
        "--server-id 1 is already used by the source server itself",
    ] {
        assert!(last.contains(needle), "{needle:?} not in {last:?}");
    }
    assert!(!stderr.contains("pw@"), "the password is never printed: {stderr}");

    let out = run(["--source", SERVER, "--prefix", "p"].map(String::from).to_vec());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server-id is required"));
    let out = run([
        "--source",
        "mysql://root@127.0.0.1:1",
        "--server-id",
        "9",
        "--prefix",
        "p",
    ]
    .map(String::from)
    .to_vec());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect to MySQL/MariaDB at mysql://root@127.0.0.1:1")
    );
    db.execute(&format!("DROP USER '{user}'@'%'")).await;
}

/// MariaDB's rows of `sql`; a failing query panics.
async fn maria_rows(db: &MariaDatabase, sql: &str) -> Vec<String> {
    let mut conn = db.conn().await;
    let rows = ferry_tests::mariadb::text_rows(&mut conn, sql).await;
    conn.disconnect().await.ok();
    rows.unwrap_or_else(|| panic!("{sql} failed"))
}

use ferry_tests::pg_text_rows as pg_rows;

/// Waits until each pair of queries (MariaDB source, PostgreSQL target)
/// returns the same rows.
async fn wait_same(
    source: &MariaDatabase,
    target: &ferry_tests::PgDatabase,
    pairs: &[(&str, &str)],
    timeout: Duration,
) {
    let client = target.client().await;
    for (maria, pg) in pairs {
        ferry_tests::wait_rows(
            pg,
            timeout,
            || maria_rows(source, maria),
            || async { pg_rows(&client, pg).await.unwrap_or_default() },
        )
        .await;
    }
}

#[tokio::test]
async fn mariadb_to_postgres_snapshot_and_stream() {
    let source = MariaDatabase::create().await;
    source
        .execute(
            "CREATE TABLE orders (
                id INT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(12,3), big BIGINT UNSIGNED,
                ts DATETIME(6), at TIMESTAMP(3) NULL, state ENUM('new','paid'), tags SET('a','b','c'),
                doc JSON, raw VARBINARY(16), flag BIT(1), ratio DOUBLE, small TINYINT UNSIGNED, y YEAR,
                span TIME(6), bits BIT(10), spot POINT, f FLOAT, mu MEDIUMINT UNSIGNED, d DATE, z DATE
             ) CHARACTER SET utf8mb4;
             CREATE TABLE notes (n INT, body TEXT CHARACTER SET latin1);
             INSERT INTO orders VALUES
               (1, 'Grüße 🚀', 1.5, 18446744073709551615, '2024-01-02 03:04:05.123456', '2024-05-06 07:08:09.120',
                'new', 'a,c', '{\"k\": [1, 2]}', X'00FF10', b'1', 0.25, 255, 2024,
                '-838:59:59.000000', b'1010101011', ST_PointFromText('POINT(1.5 -2)'), 1.5, 16777215, '2024-02-29', '0000-00-00'),
               (2, '', -0.001, 0, '1000-01-01 00:00:00.000001', NULL, 'paid', '', NULL, X'', b'0', -12345.678, 0, 1901,
                '100:00:00.250000', b'0', NULL, -0.125, 0, '1000-01-01', '2020-01-02');
             INSERT INTO notes VALUES (1, 'café'), (1, 'café');",
        )
        .await;
    let target = ferry_tests::PgDatabase::create();
    let prefix = unique("my2pg");
    let capture = start_capture(&source, &prefix, server_id(), &[]);
    let apply = ferry_tests::start_apply(&target, &prefix, &unique("g"), &[]);
    wait_position(&prefix).await;
    source
        .execute(
            "INSERT INTO orders (id, name, amount, big, ts, state, flag) VALUES (3, 'three', 3, 3, NOW(6), 'new', b'1');
             UPDATE orders SET name = 'one!', amount = amount * 2, tags = 'b' WHERE id = 1;
             UPDATE orders SET id = 20 WHERE id = 2;
             DELETE FROM orders WHERE id = 3;
             INSERT INTO orders (id, name) VALUES (4, 'four');
             INSERT INTO notes VALUES (2, 'naïve');
             DELETE FROM notes WHERE n = 2;
             INSERT INTO notes VALUES (3, 'x');",
        )
        .await;
    let maria = "SELECT id, name, CAST(amount AS CHAR), CAST(big AS CHAR),
                   DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'),
                   state, tags, doc, HEX(raw), CAST(flag + 0 AS CHAR), CAST(ratio AS CHAR), small, y,
                   CAST(ROUND(TIME_TO_SEC(span) * 1000000) AS CHAR), LPAD(HEX(bits), 4, '0'), HEX(ST_AsWKB(spot)),
                   CAST(f AS CHAR), mu, CAST(d AS CHAR), NULLIF(CAST(z AS CHAR), '0000-00-00')
                 FROM orders";
    let pg = "SELECT id::text, name, amount::text, big::text,
                to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
                state, tags, doc, upper(encode(raw, 'hex')), flag::int::text, ratio::text, small::text, y::text,
                (extract(epoch FROM span) * 1000000)::bigint::text, upper(encode(bits, 'hex')), upper(encode(spot, 'hex')),
                f::text, mu::text, d::text, z::text
              FROM orders";
    wait_same(
        &source,
        &target,
        &[
            (maria, pg),
            ("SELECT n, body FROM notes", "SELECT n::text, body FROM notes"),
        ],
        Duration::from_secs(90),
    )
    .await;
    assert!(capture.terminate().success());
    assert!(apply.terminate().success());
}

fn restart_mariadb() {
    let status = std::process::Command::new(ferry_tests::repo_root().join("scripts/services"))
        .args(["restart", "mariadb"])
        .status()
        .expect("run scripts/services");
    assert!(status.success(), "MariaDB restart failed");
}

/// Restarts MariaDB: run alone (`scripts/test` runs `disruptive_` tests after
/// the others, one at a time).
#[tokio::test]
async fn disruptive_a_server_restart_mid_stream_resumes_by_gtid_with_nothing_twice() {
    let db = MariaDatabase::create().await;
    db.execute("CREATE TABLE log (id INT PRIMARY KEY, v VARCHAR(20))").await;
    let prefix = unique("mycap");
    let topic = format!("{prefix}.{}.log", db.name);
    let capture = start_capture(&db, &prefix, server_id(), &[]);
    wait_position(&prefix).await;
    let values = |from: i32, to: i32| {
        (from..to)
            .map(|i| format!("({i}, 'v{i}')"))
            .collect::<Vec<_>>()
            .join(",")
    };
    db.execute(&format!("INSERT INTO log VALUES {}", values(0, 20_000)))
        .await;
    restart_mariadb();
    db.execute(&format!("INSERT INTO log VALUES {}", values(20_000, 20_100)))
        .await;
    let received = read_topic(&topic, 20_100, SERVICES_REGISTRY).await;
    let mut ids: Vec<i64> = events(&received)
        .iter()
        .map(|e| int(&e.after.as_ref().unwrap()[0]))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20_100, "every row");
    assert_eq!(
        count_committed(&topic, Duration::from_secs(3)).await,
        20_100,
        "nothing twice"
    );
    assert!(capture.terminate().success(), "the capture lived through the restart");
}

/// Purges binary logs: run alone.
#[tokio::test]
async fn disruptive_a_purged_binlog_is_a_definite_error_and_when_needed_reads_again() {
    let db = MariaDatabase::create().await;
    db.execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
        .await;
    let prefix = unique("mycap");
    let topic = format!("{prefix}.{}.t", db.name);
    let id = server_id();
    let capture = start_capture(&db, &prefix, id, &[]);
    read_topic(&topic, 2, SERVICES_REGISTRY).await;
    wait_position(&prefix).await;
    assert!(capture.terminate().success());

    db.execute("INSERT INTO t VALUES (3)").await;
    db.execute("FLUSH BINARY LOGS").await;
    let mut conn = db.conn().await;
    let row: mysql_async::Row = {
        use mysql_async::prelude::Queryable;
        conn.query_first("SHOW MASTER STATUS").await.unwrap().unwrap()
    };
    let current: String = row.get(0).unwrap();
    // The old file goes once the server's binlog checkpoint moved past it.
    ferry_tests::wait_for("the old binlogs to be purged", Duration::from_secs(60), || async {
        use mysql_async::prelude::Queryable;
        db.execute(&format!("PURGE BINARY LOGS TO '{current}'")).await;
        let logs: Vec<mysql_async::Row> = db.conn().await.query("SHOW BINARY LOGS").await.ok()?;
        (logs.len() == 1).then_some(())
    })
    .await;

    let out = tokio::process::Command::new(ferry_tests::binary("ferry-capture-mysql"))
        .args(["--source", SERVER, "--server-id", &id.to_string(), "--prefix", &prefix])
        .args([
            "--tables",
            &format!("{}.*", db.name),
            "--brokers",
            &ferry_tests::brokers(),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the capture stops at once")
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no longer has the binlog") && stderr.contains("--snapshot when_needed"),
        "{stderr}"
    );

    let capture = start_capture(&db, &prefix, id, &["--snapshot", "when_needed"]);
    ferry_tests::wait_for("the second reading", Duration::from_secs(60), || async {
        (ferry_tests::topic_count(&topic) >= 5).then_some(())
    })
    .await;
    let n = usize::try_from(ferry_tests::topic_count(&topic)).expect("a count");
    let all = events(&read_topic(&topic, n, SERVICES_REGISTRY).await);
    assert_eq!(
        ids(&all, Op::Read),
        [1, 1, 2, 2, 3],
        "read again, with the row the purge took"
    );
    assert!(
        all.iter().any(|e| e.op == Op::Truncate),
        "a truncate before the second reading"
    );
    assert!(capture.terminate().success());
}

/// `--snapshot always` reads every table again at a new position, so a row
/// deleted while capture was stopped is in no event: the table's topic gets a
/// truncate before the new reading, and a target that applied the first
/// reading ends without the row.
#[tokio::test]
async fn always_truncates_before_reading_again_so_a_delete_while_stopped_reaches_targets() {
    let source = MariaDatabase::create().await;
    source
        .execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);")
        .await;
    let prefix = unique("myalways");
    let id = server_id();
    let capture = start_capture(&source, &prefix, id, &[]);
    wait_position(&prefix).await;
    assert!(capture.terminate().success());
    source.execute("DELETE FROM t WHERE id = 2").await;

    let capture = start_capture(&source, &prefix, id, &["--snapshot", "always"]);
    read_again_after_a_truncate(&source, &prefix).await;
    assert!(capture.terminate().success());
}

/// What the tests of a reading again end with: apply's target ends equal to
/// the source (`t` without row 2, deleted between two readings), and `t`'s
/// topic holds both readings, the second after a truncate.
async fn read_again_after_a_truncate(source: &MariaDatabase, prefix: &str) {
    let target = ferry_tests::PgDatabase::create();
    let apply = ferry_tests::start_apply(&target, prefix, &unique("g"), &[]);
    wait_same(
        source,
        &target,
        &[("SELECT id FROM t", "SELECT id::text FROM t")],
        Duration::from_secs(60),
    )
    .await;
    assert!(apply.terminate().success());
    let topic = format!("{prefix}.{}.t", source.name);
    let n = usize::try_from(ferry_tests::topic_count(&topic)).expect("a count");
    let all = events(&read_topic(&topic, n, SERVICES_REGISTRY).await);
    assert_eq!(
        ids(&all, Op::Read),
        [1, 1, 2, 3, 3],
        "read twice, the second time without 2"
    );
    assert!(
        all.iter().any(|e| e.op == Op::Truncate),
        "a truncate before the second reading"
    );
}

/// Writes `transactions` transactions into `counters` (an increment) and
/// `ledger` (one row, or 200 rows every 100th transaction) of `url`.
fn workload(url: String, transactions: i32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use mysql_async::prelude::Queryable;
        let mut conn = ferry_tests::mariadb::connect(&url).await;
        for i in 0..transactions {
            let many = if i % 100 == 0 { 200 } else { 1 };
            conn.query_drop(format!(
                "START TRANSACTION;
                 INSERT INTO ledger SELECT {i}, seq, CONCAT('row ', seq) FROM seq_1_to_{many};
                 UPDATE counters SET n = n + 1 WHERE id = {};
                 COMMIT;",
                i % 10
            ))
            .await
            .expect("workload");
        }
    })
}

/// A source for [`workload`].
async fn workload_source() -> MariaDatabase {
    let source = MariaDatabase::create().await;
    source
        .execute(
            "CREATE TABLE counters (id INT PRIMARY KEY, n BIGINT NOT NULL);
             CREATE TABLE ledger (seq INT NOT NULL, k INT NOT NULL, note VARCHAR(30), PRIMARY KEY (seq, k));
             INSERT INTO counters SELECT seq, 0 FROM seq_0_to_9;",
        )
        .await;
    source
}

/// Waits until PostgreSQL's `counters` and `ledger` equal MariaDB's.
async fn wait_workload_equal(source: &MariaDatabase, target: &ferry_tests::PgDatabase) {
    let pairs = [
        ("SELECT id, n FROM counters", "SELECT id::text, n::text FROM counters"),
        (
            "SELECT seq, k, note FROM ledger",
            "SELECT seq::text, k::text, note FROM ledger",
        ),
    ];
    wait_same(source, target, &pairs, Duration::from_secs(180)).await;
}

/// The whole path under kill -9: MariaDB → capture → apply → PostgreSQL, each
/// killed several times while a workload runs; the target ends equal to the
/// source (capture may send a transaction twice, which keyed rows absorb).
#[tokio::test]
async fn kill_9_of_capture_and_apply_mid_workload_target_equals_source() {
    let source = workload_source().await;
    let target = ferry_tests::PgDatabase::create();
    let prefix = unique("mykill");
    let group = unique("g");
    let id = server_id();
    let apply_args = ["--instance-id", "kill-test"];
    let mut capture = start_capture(&source, &prefix, id, &[]);
    let mut apply = ferry_tests::start_apply(&target, &prefix, &group, &apply_args);
    wait_position(&prefix).await;
    let writer = workload(source.url(), 1_500);
    for round in 0..6u64 {
        tokio::time::sleep(Duration::from_millis(400 + 150 * round)).await;
        if round % 2 == 0 {
            capture.kill9();
            capture = start_capture(&source, &prefix, id, &[]);
        } else {
            apply.kill9();
            apply = ferry_tests::start_apply(&target, &prefix, &group, &apply_args);
        }
    }
    writer.await.expect("writer");
    wait_workload_equal(&source, &target).await;
    assert!(capture.terminate().success());
    assert!(apply.terminate().success());
}

/// The snapshot's hand-over to the stream under load: writes go on while two
/// workers read a chunked table, capture is killed in the middle of it and
/// restarted (it reads the unfinished table again at a new position), and
/// the target ends equal to the source: no gap, nothing lost.
#[tokio::test]
async fn writes_during_a_chunked_snapshot_and_a_kill_in_it_lose_nothing() {
    let source = MariaDatabase::create().await;
    source
        .execute(
            "CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(40));
             CREATE TABLE small (id INT PRIMARY KEY, v INT NOT NULL);
             INSERT INTO big SELECT seq, 0, CONCAT('note ', seq) FROM seq_1_to_150000;
             INSERT INTO small SELECT seq, 0 FROM seq_1_to_100;
             ANALYZE TABLE big;",
        )
        .await;
    let target = ferry_tests::PgDatabase::create();
    let prefix = unique("mysnap");
    let id = server_id();
    let args = ["--snapshot-workers", "2", "--snapshot-chunk-rows", "10000"];
    let capture = start_capture(&source, &prefix, id, &args);
    let writer = {
        let url = source.url();
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = ferry_tests::mariadb::connect(&url).await;
            for i in 0..600 {
                let row = (i * 251) % 150_000 + 1;
                conn.query_drop(format!(
                    "UPDATE big SET v = v + 1 WHERE id = {row};
                     INSERT INTO big VALUES ({}, 1, 'new');
                     DELETE FROM big WHERE id = {};
                     UPDATE small SET v = v + 1 WHERE id = {};",
                    150_000 + i + 1,
                    (i * 97) % 150_000 + 1,
                    i % 100 + 1
                ))
                .await
                .expect("writes");
            }
        })
    };
    // Killed once some of the snapshot is in Kafka, before all of it is.
    let topic = format!("{prefix}.{}.big", source.name);
    ferry_tests::wait_for("part of the snapshot", Duration::from_secs(120), || async {
        (ferry_tests::topic_count(&topic) > 20_000).then_some(())
    })
    .await;
    capture.kill9();
    let capture = start_capture(&source, &prefix, id, &args);
    let apply = ferry_tests::start_apply(&target, &prefix, &unique("g"), &[]);
    writer.await.expect("writer");
    let pairs = [
        ("SELECT id, v, note FROM big", "SELECT id::text, v::text, note FROM big"),
        ("SELECT id, v FROM small", "SELECT id::text, v::text FROM small"),
    ];
    wait_same(&source, &target, &pairs, Duration::from_secs(240)).await;
    assert!(capture.terminate().success());
    assert!(apply.terminate().success());
}

/// A first start killed before it stored its position leaves rows of its
/// snapshot in the topics and no position. The next start (here: one with an
/// offsets topic of its own, which holds nothing) reads the tables again
/// after a truncate, so a row deleted in between does not outlive its
/// delete in a target.
#[tokio::test]
async fn a_first_start_that_stored_no_position_truncates_before_reading_again() {
    let source = MariaDatabase::create().await;
    source
        .execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);")
        .await;
    let prefix = unique("myfirst");
    let id = server_id();
    for run in ["first", "again"] {
        let offsets = unique(&format!("_ferry_offsets_{run}"));
        let capture = start_capture(
            &source,
            &prefix,
            id,
            &["--snapshot", "initial_only", "--offsets-topic", &offsets],
        );
        assert!(capture.exited(Duration::from_secs(60)).await.success());
        source.execute("DELETE FROM t WHERE id = 2").await;
    }
    read_again_after_a_truncate(&source, &prefix).await;
}

/// The server kills the snapshot's connections while it reads: capture
/// starts again in place (it does not exit), reads the unfinished table
/// again, and the target ends equal to the source, rows deleted meanwhile
/// included (a row of the first reading must not outlive its delete).
#[tokio::test]
async fn connections_killed_during_the_snapshot_start_it_again_in_place() {
    use mysql_async::prelude::Queryable;
    let source = MariaDatabase::create().await;
    source
        .execute(
            "CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL);
             INSERT INTO big SELECT seq, 0 FROM seq_1_to_100000;",
        )
        .await;
    let target = ferry_tests::PgDatabase::create();
    let prefix = unique("mysnaplost");
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    // Capture connects as a user of its own, so that killing its connections
    // leaves other tests' alone.
    let user = unique("ferry_cap");
    source
        .execute(&format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%';"
        ))
        .await;
    let mut args = ferry_tests::mariadb::capture_args(
        &source,
        &prefix,
        server_id(),
        &[
            "--metrics",
            &metrics,
            "--snapshot-chunk-rows",
            "10000",
            // A producer queue of 100 messages paces the snapshot by the
            // broker's round trips (seconds for these rows), so it is still
            // reading when its connections are killed.
            "--kafka-option",
            "queue.buffering.max.messages=100",
        ],
    );
    let source_at = args.iter().position(|a| a == "--source").unwrap() + 1;
    args[source_at] = format!("mysql://{user}:pw@127.0.0.1:3306");
    let capture = ferry_tests::Running::start(
        "ferry-capture-mysql",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let topic = format!("{prefix}.{}.big", source.name);
    ferry_tests::wait_for("part of the snapshot", Duration::from_secs(120), || async {
        (ferry_tests::topic_count(&topic) > 0).then_some(())
    })
    .await;
    let mut conn = source.conn().await;
    let connections: Vec<u64> = conn
        .query(format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
        ))
        .await
        .unwrap();
    assert!(!connections.is_empty(), "the snapshot has connections to kill");
    conn.query_drop(format!("KILL CONNECTION USER '{user}'")).await.unwrap();
    conn.query_drop("DELETE FROM big WHERE id <= 1000; UPDATE big SET v = 1 WHERE id BETWEEN 1001 AND 2000")
        .await
        .unwrap();
    conn.disconnect().await.ok();

    let apply = ferry_tests::start_apply(&target, &prefix, &unique("g"), &[]);
    wait_same(
        &source,
        &target,
        &[("SELECT id, v FROM big", "SELECT id::text, v::text FROM big")],
        Duration::from_secs(240),
    )
    .await;
    // Only a snapshot that lost its source counts here (the binlog stream
    // reconnects without it).
    let restarts = ferry_tests::workload::metric(&metrics, "ferry_capture_reconnects_total").await;
    assert!(restarts >= 1.0, "the snapshot started again in place {restarts} times");
    assert!(capture.terminate().success(), "capture ran on and stopped cleanly");
    assert!(apply.terminate().success());
    source.execute(&format!("DROP USER '{user}'@'%'")).await;
}
