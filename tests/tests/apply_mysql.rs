//! PostgreSQL → Kafka → MariaDB end to end: `ferry-capture-postgres` and
//! `ferry-apply-mysql` as processes against the real servers. Every test makes
//! its own source and target databases and topic prefix, and ends by comparing
//! the target's rows with the source's, each side printed in one normal form
//! (the two engines print timestamps, decimals and bytes differently).

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_tests::mariadb::MariaDatabase;
use ferry_tests::{start_apply_with, start_capture, unique, wait_for, wait_rows, wait_streaming, PgDatabase, Running};
use mysql_async::prelude::Queryable;

const CATCH_UP: Duration = Duration::from_secs(120);

/// `ferry-apply-mysql` of the topics of `prefix` into `target` as `group`.
fn start_apply(target: &MariaDatabase, prefix: &str, group: &str, extra: &[&str]) -> Running {
    start_apply_with("ferry-apply-mysql", &target.url(), prefix, group, extra)
}

/// A source database with `ddl` run in it, an empty MariaDB database, and a
/// capture of the source under a fresh prefix, streaming.
async fn captured(name: &str, ddl: &str) -> (PgDatabase, MariaDatabase, String, Running) {
    let source = PgDatabase::create();
    let target = MariaDatabase::create().await;
    source.execute(ddl).await;
    let prefix = unique(name);
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    (source, target, prefix, capture)
}

/// A value as the tests compare it; NULL is `∅`.
/// PostgreSQL's rows of `sql`; a failing query panics.
async fn pg_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    ferry_tests::pg_text_rows(client, sql)
        .await
        .unwrap_or_else(|| panic!("{sql} failed"))
}

/// Waits until each pair of queries (PostgreSQL, MariaDB) returns the same rows.
async fn wait_same(source: &PgDatabase, target: &MariaDatabase, pairs: &[(&str, &str)]) {
    let pg = source.client().await;
    let my = tokio::sync::Mutex::new(target.conn().await);
    for (pg_sql, my_sql) in pairs {
        wait_rows(
            my_sql,
            CATCH_UP,
            || pg_rows(&pg, pg_sql),
            || async {
                ferry_tests::mariadb::text_rows(&mut *my.lock().await, my_sql)
                    .await
                    .unwrap_or_default()
            },
        )
        .await;
    }
}

/// The same query on both sides.
fn same(sql: &str) -> (&str, &str) {
    (sql, sql)
}

async fn my_scalar(target: &MariaDatabase, sql: &str) -> Option<i64> {
    let mut conn = target.conn().await;
    let value: Option<Option<i64>> = conn.query_first(sql).await.ok();
    conn.disconnect().await.ok();
    value.flatten()
}

#[tokio::test]
async fn snapshot_and_live_changes_arrive_row_for_row() {
    use ferry_tests::workload::{big_value, row_for_row_changes, ROW_FOR_ROW_TABLES};
    let (source, target, prefix, capture) = captured("my_e2e", ROW_FOR_ROW_TABLES).await;
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    let big = big_value();
    source.execute(&row_for_row_changes(&big)).await;
    wait_same(
        &source,
        &target,
        &[
            (
                "SELECT id, note, amount, md5(big), to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM orders",
                "SELECT id, note, amount, MD5(big), DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f') FROM orders",
            ),
            // LINES is a keyword in MySQL.
            ("SELECT order_id, sku, qty FROM lines", "SELECT order_id, sku, qty FROM `lines`"),
            same("SELECT line, n FROM log"),
            same("SELECT line FROM journal"),
            same("SELECT id, v FROM scratch"),
        ],
    )
    .await;
    // The unchanged large value kept its target copy.
    let mut conn = target.conn().await;
    let kept: Option<String> = conn
        .query_first("SELECT big FROM orders WHERE id = 1002")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some(big.as_str()));
    // The tables as created: keys, NOT NULL, the closest types, a binary collation.
    let columns: Vec<(String, String, String)> = conn
        .query(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('orders', 'lines')
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
        )
        .await
        .unwrap();
    let columns: Vec<String> = columns
        .into_iter()
        .map(|(n, t, null)| format!("{n} {t} {null}"))
        .collect();
    assert_eq!(
        columns,
        [
            "order_id int(11) NO",
            "sku varchar(20) NO",
            "qty int(11) YES",
            "id int(11) NO",
            "note longtext YES",
            "amount decimal(10,2) YES",
            "big longtext YES",
            "at datetime(6) YES"
        ]
    );
    let stored = my_scalar(&target, "SELECT COUNT(*) FROM _ferry_offsets").await.unwrap();
    assert!(stored >= 4, "{stored} offsets stored");
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn a_schema_change_mid_stream_adds_the_column() {
    use ferry_tests::workload::{SCHEMA_BEFORE, SCHEMA_CHANGE};
    let (source, target, prefix, capture) = captured("my_schema", SCHEMA_BEFORE).await;
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    let items = same("SELECT * FROM items");
    wait_same(&source, &target, &[items]).await;
    source.execute(SCHEMA_CHANGE).await;
    wait_same(
        &source,
        &target,
        &[(
            "SELECT id, name, price, tags, to_char(seen, 'YYYY-MM-DD HH24:MI:SS.US') FROM items",
            "SELECT id, name, price, tags, seen FROM items",
        )],
    )
    .await;
    let mut conn = target.conn().await;
    let types: Vec<String> = conn
        .query(
            "SELECT COLUMN_TYPE FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'items' ORDER BY ORDINAL_POSITION",
        )
        .await
        .unwrap();
    assert_eq!(
        types,
        ["bigint(20)", "longtext", "decimal(8,2)", "longtext", "datetime(6)"]
    );
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

/// Two writers make one absent table fit two schema versions of it at once
/// (a partition still on the version before a column was added, another
/// already past it): whichever `CREATE TABLE` comes first, the writer with
/// the newer version ends with every column it needs. Many fresh tables, so
/// that the writers meet in every order.
#[tokio::test]
async fn writers_on_two_schema_versions_both_make_a_new_table_fit() {
    use ferry_apply::mysql::schema::{ensure, Server};
    use ferry_core::envelope::Connector;
    use ferry_core::meta::{Column, DataType, TableId, TableMeta};
    let target = MariaDatabase::create().await;
    let (mut first, mut second) = (target.conn().await, target.conn().await);
    let version: String = first.query_first("SELECT VERSION()").await.unwrap().unwrap();
    let server = Server::parse(&version);
    let columns = |added: bool| {
        let mut columns = vec![
            Column::new("id", DataType::Int64, "bigint"),
            Column::new("name", DataType::Text, "text"),
        ];
        if added {
            columns.push(Column::new("added", DataType::Text, "text"));
        }
        columns
    };
    for round in 0..30 {
        let id = TableId::new(target.name.clone(), format!("t{round}"));
        let before = TableMeta::new(id.clone(), columns(false), &["id"]).unwrap();
        let after = TableMeta::new(id.clone(), columns(true), &["id"]).unwrap();
        let (old, new) = tokio::join!(
            ensure(&mut first, &id, &before, Connector::Postgres, server),
            ensure(&mut second, &id, &after, Connector::Postgres, server),
        );
        let names = |c: Vec<ferry_apply::mysql::schema::TargetColumn>| -> Vec<String> {
            c.into_iter().map(|c| c.name).collect()
        };
        let (old, new) = (names(old.unwrap()), names(new.unwrap()));
        assert_eq!(
            new,
            ["id", "name", "added"],
            "round {round}: the newer version's writer"
        );
        assert!(old.starts_with(&["id".into(), "name".into()]), "round {round}: {old:?}");
    }
}

/// Waits until the target holds the steady workload's tables as the source
/// does after `rounds` rounds, each append exactly once.
async fn workload_arrived(source: &PgDatabase, target: &MariaDatabase, rounds: i64) {
    wait_same(
        source,
        target,
        &[
            same("SELECT * FROM counters"),
            same("SELECT * FROM emptied"),
            same("SELECT k, v, COUNT(*) FROM appended GROUP BY k, v"),
        ],
    )
    .await;
    // Appends have no key: a message applied twice would be a second row.
    let appended = my_scalar(target, "SELECT COUNT(*) FROM appended").await.unwrap();
    assert_eq!(appended, ferry_tests::workload::appended_rows(rounds));
}

#[tokio::test]
async fn kill_9_mid_batch_applies_nothing_twice_and_loses_nothing() {
    use ferry_tests::workload::{kill_repeatedly, Workload, TABLES};
    let (source, target, prefix, capture) = captured("my_kill", TABLES).await;
    let group = unique("g");
    let workload = Workload::start(&source.url());
    // Small batches, so a kill lands inside one more often than not; a stable
    // instance id, so each restart takes its partitions back at once.
    let instance = unique("instance");
    let args = ["--batch-size", "300", "--instance-id", &instance];
    let applied = "SELECT CAST(COALESCE(SUM(next_offset), 0) AS SIGNED) FROM _ferry_offsets";
    kill_repeatedly(
        5,
        CATCH_UP,
        || start_apply(&target, &prefix, &group, &args),
        || my_scalar(&target, applied),
    )
    .await;
    let rounds = workload.stop().await;
    let apply = start_apply(&target, &prefix, &group, &args);
    workload_arrived(&source, &target, rounds).await;
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn two_processes_of_one_group_share_the_partitions_and_hand_them_over() {
    use ferry_tests::workload::{Workload, TABLES};
    let (source, target, prefix, capture) = captured("my_share", TABLES).await;
    let group = unique("g");
    let args = ["--batch-size", "100"];
    let first = start_apply(&target, &prefix, &group, &args);
    let second = start_apply(&target, &prefix, &group, &args);
    let workload = Workload::start(&source.url());
    let applied = "SELECT CAST(COALESCE(SUM(next_offset), 0) AS SIGNED) FROM _ferry_offsets";
    let progress = |after: i64| {
        let target = &target;
        async move {
            wait_for("apply to make progress", CATCH_UP, || async move {
                let now = my_scalar(target, applied).await?;
                (now > after).then_some(now)
            })
            .await
        }
    };
    let before = progress(0).await;
    // One process leaves while rows keep coming: its partitions move to the
    // other, which starts them exactly where the target says.
    assert!(second.terminate().success());
    progress(before).await;
    let rounds = workload.stop().await;
    workload_arrived(&source, &target, rounds).await;
    assert!(first.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn a_rejected_row_stops_apply_naming_where_it_is() {
    let (source, target, prefix, capture) = captured(
        "my_poison",
        "CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL);",
    )
    .await;
    target
        .execute("CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL, CONSTRAINT qty_small CHECK (qty < 100))")
        .await;
    source
        .execute(
            "INSERT INTO orders VALUES (1, 5); INSERT INTO orders VALUES (2, 500); INSERT INTO orders VALUES (3, 7);",
        )
        .await;
    let (success, last) = ferry_tests::apply_until_exit("ferry-apply-mysql", &target.url(), &prefix, CATCH_UP).await;
    assert!(!success);
    assert!(
        last.starts_with(&format!(
            "ferry-apply-mysql: table {}.orders: the target rejected a row",
            target.name
        )) && last.contains("qty_small")
            && last.contains(&format!("topic {prefix}.public.orders partition"))
            && last.contains("offset")
            && last.contains("key (id=2)")
            && last.contains("--on-error dlq"),
        "{last}"
    );
    // Nothing of the failed batch was kept.
    assert_eq!(
        my_scalar(&target, "SELECT COUNT(*) FROM orders WHERE qty >= 100").await,
        Some(0)
    );
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn lost_target_connections_are_retried_and_lose_nothing() {
    use ferry_tests::workload::{drops_round, metric, DROPS_TABLES};
    let (source, target, prefix, capture) = captured("my_drop", DROPS_TABLES).await;
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let apply = start_apply(
        &target,
        &prefix,
        &unique("g"),
        &["--metrics", &metrics, "--batch-size", "50"],
    );
    let mut t = target.conn().await;
    let theirs = format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND ID <> CONNECTION_ID()",
        target.name
    );
    let mut killed = 0;
    for round in 0..10 {
        source.execute(&drops_round(round)).await;
        // The target drops apply's connections (a restart, a failover, an idle killer).
        tokio::time::sleep(Duration::from_millis(150)).await;
        for id in t.query::<u64, _>(&theirs).await.unwrap() {
            // Gone meanwhile, or killed: either way not there any more.
            killed += u32::from(t.query_drop(format!("KILL CONNECTION {id}")).await.is_ok());
        }
    }
    assert!(killed > 0, "no apply connection was ever dropped");
    wait_same(
        &source,
        &target,
        &[
            same("SELECT * FROM events"),
            same("SELECT line, COUNT(*) FROM log GROUP BY line"),
        ],
    )
    .await;
    assert!(metric(&metrics, "ferry_apply_restarts_total").await >= 1.0);
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

/// How a column of the every-type table compares, by its Ferry type.
fn normal(ferry_type: &str, value: &str) -> String {
    let trim_fraction = |v: &str| {
        if v.contains('.') {
            v.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            v.to_owned()
        }
    };
    match ferry_type {
        "float32" => format!("{:?}", value.parse::<f64>().unwrap() as f32),
        "float64" => format!("{:?}", value.parse::<f64>().unwrap()),
        t if t.starts_with("decimal") || t == "numeric" => {
            let v = trim_fraction(value);
            if v == "-0" {
                "0".into()
            } else {
                v
            }
        }
        "time" | "timestamp" => trim_fraction(value),
        "timestamptz" => trim_fraction(value.trim_end_matches("+00")),
        _ => value.to_owned(),
    }
}

#[tokio::test]
async fn every_column_type_arrives_equal_or_as_a_dead_letter() {
    use ferry_tests::pg_types::{COLUMNS, ROWS, TYPES};
    // numeric(1000,500) has no MariaDB type: a table with it stops apply (see the unit tests).
    let columns: Vec<_> = COLUMNS.iter().filter(|c| c.name != "n_wide").collect();
    let source = PgDatabase::create();
    let target = MariaDatabase::create().await;
    let defs: Vec<String> = columns.iter().map(|c| format!("{} {}", c.name, c.ddl)).collect();
    source
        .execute(&format!(
            "{TYPES} CREATE TABLE every_type (id bigint PRIMARY KEY, {});",
            defs.join(", ")
        ))
        .await;
    // One value a row, so a value MariaDB cannot hold sets aside only itself.
    let rows = |live: bool| -> String {
        let mut sql = String::new();
        for (i, c) in columns.iter().enumerate() {
            for (r, value) in c.values.iter().enumerate().take(ROWS) {
                if (r >= ROWS / 2) == live {
                    let id = i * 10 + r + 1;
                    sql.push_str(&format!(
                        "INSERT INTO every_type (id, {}) VALUES ({id}, {value});",
                        c.name
                    ));
                }
            }
        }
        sql
    };
    source.execute(&rows(false)).await;
    let prefix = unique("my_types");
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    let dlq = unique("dlq");
    let apply = start_apply(
        &target,
        &prefix,
        &unique("g"),
        &["--on-error", "dlq", "--dlq-topic", &dlq],
    );
    source.execute(&rows(true)).await;

    // What MariaDB cannot hold, by Ferry type, as a PostgreSQL condition on `v`.
    let refused = |ferry_type: &str| -> &str {
        match ferry_type {
            // MariaDB keeps no negative zero.
            "float32" | "float64" => "v::text IN ('NaN', 'Infinity', '-Infinity', '-0')",
            "date" => "NOT isfinite(v) OR v < '0001-01-01' OR v > '9999-12-31'",
            "timestamp" => "NOT isfinite(v) OR v < '0001-01-01' OR v >= '10000-01-01'",
            "timestamptz" => {
                "NOT isfinite(v) OR v AT TIME ZONE 'UTC' < '0001-01-01' OR v AT TIME ZONE 'UTC' >= '10000-01-01'"
            }
            t if t.starts_with("decimal") || t == "numeric" => {
                "CASE WHEN v IN ('NaN', 'Infinity', '-Infinity') THEN true ELSE abs(v) >= 1e35 OR v <> round(v, 30) END"
            }
            _ => "false",
        }
    };
    let pg = source.client().await;
    let mut want_refused = BTreeSet::new();
    let mut want = Vec::new();
    for c in &columns {
        let (name, ty) = (c.name, c.ferry_type);
        for row in pg_rows(
            &pg,
            &format!(
                // A composite of NULLs IS NULL, but is a value.
                "SELECT id, CASE WHEN v::text IS NULL THEN 'null' WHEN {} THEN 'refused' ELSE 'kept' END,
                   {} FROM (SELECT id, {name} AS v FROM every_type) r",
                refused(ty),
                match ty {
                    "boolean" => "v::int",
                    "bytes" => "encode(v, 'hex')",
                    _ => "v",
                }
            ),
        )
        .await
        {
            let mut parts = row.splitn(3, '|');
            let (id, fate, value) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            match fate {
                "refused" => {
                    want_refused.insert(id.parse::<i64>().unwrap());
                }
                "kept" => want.push((name, id.to_owned(), normal(ty, value))),
                _ => {}
            }
        }
    }
    let total = i64::try_from(columns.len() * ROWS).unwrap();
    let kept = total - i64::try_from(want_refused.len()).unwrap();
    wait_for("every row that fits to arrive", CATCH_UP, || async {
        (my_scalar(&target, "SELECT COUNT(*) FROM every_type").await == Some(kept)).then_some(())
    })
    .await;
    wait_for("every refused row in the dead-letter topic", CATCH_UP, || async {
        (ferry_tests::topic_count(&dlq) == total - kept).then_some(())
    })
    .await;
    let mut conn = target.conn().await;
    let present: BTreeSet<i64> = conn
        .query::<i64, _>("SELECT id FROM every_type")
        .await
        .unwrap()
        .into_iter()
        .collect();
    let absent: BTreeSet<i64> = (0..columns.len())
        .flat_map(|i| (0..ROWS).map(move |r| i64::try_from(i * 10 + r + 1).unwrap()))
        .filter(|id| !present.contains(id))
        .collect();
    assert_eq!(absent, want_refused);
    // Every value that arrived is the source's.
    let mut wrong = Vec::new();
    for c in &columns {
        let expr = match c.ferry_type {
            "bytes" => format!("LOWER(HEX(`{}`))", c.name),
            "float32" | "float64" => format!("CAST(`{}` AS DOUBLE)", c.name),
            _ => format!("`{}`", c.name),
        };
        let got: Vec<(String, Option<String>)> = conn
            .query(format!(
                "SELECT CAST(id AS CHAR), CAST({expr} AS CHAR) FROM every_type WHERE `{}` IS NOT NULL ORDER BY id",
                c.name
            ))
            .await
            .unwrap();
        let got: Vec<(&str, String, String)> = got
            .into_iter()
            .map(|(id, v)| (c.name, id, normal(c.ferry_type, &v.unwrap_or_default())))
            .collect();
        let mut expected: Vec<_> = want.iter().filter(|(n, _, _)| *n == c.name).cloned().collect();
        expected.sort_by_key(|(_, id, _)| id.parse::<i64>().unwrap());
        if got != expected {
            wrong.push(format!("column {} ({}): got {got:?}, want {expected:?}", c.name, c.ddl));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The closest types.
    let types: Vec<(String, String)> = conn
        .query(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'every_type'",
        )
        .await
        .unwrap();
    let type_of = |name: &str| types.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str()).unwrap();
    for (column, want) in [
        ("id", "bigint(20)"),
        ("i2", "smallint(6)"),
        ("i4", "int(11)"),
        ("n_fixed", "decimal(12,4)"),
        ("n_free", "decimal(65,30)"),
        ("f4", "float"),
        ("f8", "double"),
        ("t", "longtext"),
        ("vc", "longtext"),
        ("by", "longblob"),
        ("b", "tinyint(1)"),
        ("d", "date"),
        ("tm", "time(6)"),
        ("ts", "datetime(6)"),
        ("tstz", "datetime(6)"),
        ("u", "char(36)"),
        ("js", "longtext"),
    ] {
        assert_eq!(type_of(column), want, "{column}");
    }
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn mariadb_to_mariadb_keeps_every_type_and_value() {
    use ferry_tests::mariadb::{server_id, start_capture as start_my_capture, table_rows, wait_position};
    let source = MariaDatabase::create().await;
    let target = MariaDatabase::create().await;
    let columns = "id int PRIMARY KEY, ti tinyint, tu tinyint unsigned, mi mediumint, mu mediumint unsigned,
        i int, iu int unsigned, bi bigint, bu bigint unsigned, d decimal(30,10), f float, dbl double,
        b1 bit(1), b10 bit(10), c char(5), vc varchar(20), t text, l1 varchar(10) CHARACTER SET latin1,
        bn binary(4), vb varbinary(10), bl blob, dt date, dtm datetime(6), dt0 datetime, ts timestamp(3) NULL,
        tm time(6), yr year, e enum('a','b c'), st set('x','y'), js json, g geometry, pt point";
    let row = |id: i64, values: &str| format!("INSERT INTO every_my VALUES ({id}, {values});");
    let values = [
        "-128, 255, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
         '-12345678901234567890.0123456789', -3.40282e38, 2.2250738585072014e-308, 1, b'1111111111', 'ab',
         'it''s \\\\ ü 🚀', 'text', 'café', X'00FF0001', X'', X'DEADBEEF', '1000-01-01', '1000-01-01 00:00:00.000001',
         '9999-12-31 23:59:59', '1970-01-01 00:00:01.001', '-838:59:59.999999', 1901, 'b c', 'x,y',
         '{\"k\": [1, 2.5, null, \"ü\"]}', ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))', 4326), POINT(1.5, -2)",
        "127, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0, '0.0000000001', 0.1, -0.1, 0, b'0', '',
         '', '', '', X'00000000', X'00', X'', '9999-12-31', '9999-12-31 23:59:59.999999', '2024-02-29 12:00:00',
         '2038-01-19 03:14:07.999', '838:59:59', 2155, 'a', '', '[]', NULL, POINT(0, 0)",
        "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
    ];
    source
        .execute(&format!(
            "CREATE TABLE every_my ({columns}) CHARACTER SET utf8mb4; {}{}",
            row(1, values[0]),
            row(2, values[1])
        ))
        .await;
    let prefix = unique("my_my");
    let capture = start_my_capture(&source, &prefix, server_id(), &[]);
    wait_position(&prefix).await;
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    source
        .execute(&format!(
            "{}{}{} UPDATE every_my SET vc = 'changed', tm = '-00:00:00.000001' WHERE id = 1; DELETE FROM every_my WHERE id = 2;",
            row(3, values[2]),
            row(4, values[0]),
            row(5, values[1])
        ))
        .await;
    let (mut s, t) = (source.conn().await, tokio::sync::Mutex::new(target.conn().await));
    let want = table_rows(&mut s, "every_my").await.unwrap();
    wait_rows(
        "every_my",
        CATCH_UP,
        || {
            let want = want.clone();
            async move { want }
        },
        || async { table_rows(&mut *t.lock().await, "every_my").await.unwrap_or_default() },
    )
    .await;
    let types = "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'every_my' ORDER BY ORDINAL_POSITION";
    let source_types: Vec<(String, String)> = s.query(types).await.unwrap();
    let target_types: Vec<(String, String)> = t.lock().await.query(types).await.unwrap();
    assert_eq!(target_types, source_types);
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn a_table_map_sends_a_table_to_another_database() {
    let (source, target, prefix, capture) = captured(
        "my_map",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one');",
    )
    .await;
    // A database that does not exist yet: apply creates it.
    let other = unique("ferry_test_other");
    let map = format!("public.t={other}.t2");
    let apply = start_apply(&target, &prefix, &unique("g"), &["--table-map", &map]);
    source.execute("INSERT INTO t VALUES (2, 'two')").await;
    let other_rows = format!("SELECT id, v FROM `{other}`.t2");
    wait_same(&source, &target, &[("SELECT id, v FROM t", other_rows.as_str())]).await;
    // Nothing went to the default database but Ferry's own tables.
    let mut conn = target.conn().await;
    let tables: Vec<String> = conn
        .query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1")
        .await
        .unwrap();
    assert_eq!(tables, ["_ferry_barriers", "_ferry_offsets"]);
    conn.query_drop(format!("DROP DATABASE `{other}`")).await.unwrap();
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}
