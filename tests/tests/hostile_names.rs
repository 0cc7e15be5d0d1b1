//! Hostile identifiers end to end: tables and columns named with double
//! quotes, backticks, single quotes, spaces, unicode, SQL keywords,
//! semicolons and comment marks go from PostgreSQL and MariaDB sources, by
//! snapshot and by stream (inserts, updates, key changes, deletes, an added
//! column), into PostgreSQL, MariaDB and DuckDB targets and arrive equal;
//! the statements hidden in the names never run: the `victim` table each
//! side holds keeps its rows, and no table appears but those expected.
//!
//! Type names travel in schemas too, which anyone may register: forged ones
//! reach a target's DDL only as plain types. Two tables whose names map to
//! one topic stop capture at start, naming both, before any topic is made.
//!
//! The DDL below is written out by hand, not with Ferry's quoting, so that a
//! quoting bug cannot hide itself; the queries that read the rows back quote
//! with Ferry's functions (a bug there makes them miss).

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferry_apply::duckdb::Mode;
use ferry_core::envelope::Connector;
use ferry_core::meta::{Column, DataType, TableId, TableMeta};
use ferry_core::value::Datum;
use ferry_tests::duck::{duck_rows, DuckDir, InProcess};
use ferry_tests::forge::Forged;
use ferry_tests::mariadb::{self, MariaDatabase};
use ferry_tests::{pg_text_rows, start_apply_with, start_capture, unique, wait_rows, wait_streaming, PgDatabase};

const CATCH_UP: Duration = Duration::from_secs(120);

/// A source table, its name and its columns as they are at the end.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
}

/// The PostgreSQL source's tables (schema `public`).
const PG_TABLES: &[Table] = &[
    Table {
        name: "x\"; DROP TABLE victim; --",
        columns: &["select", "o'reilly", "a`b", "order", "group; --", "Ünïcødé 表"],
    },
    Table {
        name: "Ünïcødé 表",
        columns: &["\"quoted\"", "it's", "group"],
    },
    Table {
        name: "order",
        columns: &[
            "id; DROP TABLE victim",
            "'); DROP TABLE victim; --",
            "added\"; DROP TABLE victim; --",
        ],
    },
];

/// The source's tables, a `victim` holding row 1 beside them.
const PG_DDL: &str = r#"
CREATE TABLE victim (id int PRIMARY KEY);
INSERT INTO victim VALUES (1);
CREATE TABLE "x""; DROP TABLE victim; --" (
    "select" int PRIMARY KEY, "o'reilly" text, "a`b" text, "order" numeric(10,2), "group; --" text, "Ünïcødé 表" text);
INSERT INTO "x""; DROP TABLE victim; --" VALUES
    (1, 'it''s', '`b`', 1.10, '; DROP TABLE victim; --', 'ü'), (2, NULL, 'two', 2.20, NULL, '表');
CREATE TABLE "Ünïcødé 表" ("""quoted""" int PRIMARY KEY, "it's" text, "group" int);
INSERT INTO "Ünïcødé 表" VALUES (1, 'a', 1), (2, 'b', 2);
CREATE TABLE "order" ("id; DROP TABLE victim" int PRIMARY KEY, "'); DROP TABLE victim; --" text);
INSERT INTO "order" VALUES (1, 'x'), (2, '''); DROP TABLE victim; --');
"#;

/// Changes streamed after the snapshot: every kind, and a column added.
const PG_CHANGES: &str = r#"
INSERT INTO "x""; DROP TABLE victim; --" VALUES (3, 'o''reilly', 'b`3', 3.30, 'g; --', '表3');
UPDATE "x""; DROP TABLE victim; --" SET "o'reilly" = 'it''s; DROP TABLE victim; --', "order" = 9.99 WHERE "select" = 1;
DELETE FROM "x""; DROP TABLE victim; --" WHERE "select" = 2;
UPDATE "Ünïcødé 表" SET "it's" = 'ü', "group" = 7 WHERE """quoted""" = 1;
DELETE FROM "Ünïcødé 表" WHERE """quoted""" = 2;
INSERT INTO "Ünïcødé 表" VALUES (3, NULL, NULL);
UPDATE "order" SET "id; DROP TABLE victim" = 10 WHERE "id; DROP TABLE victim" = 1;
DELETE FROM "order" WHERE "id; DROP TABLE victim" = 2;
ALTER TABLE "order" ADD COLUMN "added""; DROP TABLE victim; --" int;
INSERT INTO "order" VALUES (3, 'three', 33);
"#;

/// `SELECT` of every column of `table`, from `from`, names quoted by `quote`.
fn select(table: &Table, quote: fn(&str) -> String, from: &str) -> String {
    let columns: Vec<String> = table.columns.iter().map(|c| quote(c)).collect();
    format!("SELECT {} FROM {from}", columns.join(", "))
}

/// The sorted names `expected`, with `prefix` before each.
fn names(prefix: &str, expected: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = expected.iter().map(|n| format!("{prefix}{n}")).collect();
    out.sort();
    out
}

/// A PostgreSQL source with [`PG_DDL`], captured under a fresh prefix and
/// streaming: what the test changes next is streamed.
async fn pg_source(name: &str) -> (PgDatabase, String, ferry_tests::Running) {
    let source = PgDatabase::create();
    source.execute(PG_DDL).await;
    let prefix = unique(name);
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    (source, prefix, capture)
}

/// The tables of every schema of a PostgreSQL database but the system's, as `schema.table`.
const PG_ALL_TABLES: &str = "SELECT n.nspname || '.' || c.relname FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%'";

/// The tables of a target that took [`PG_TABLES`] and held `victim`.
fn pg_tables_in_target(prefix: &str) -> Vec<String> {
    let mut expected: Vec<&str> = PG_TABLES.iter().map(|t| t.name).collect();
    expected.extend(["victim", "_ferry_offsets", "_ferry_barriers"]);
    names(prefix, &expected)
}

#[tokio::test]
async fn postgres_to_postgres() {
    let (source, prefix, capture) = pg_source("hostile_pg").await;
    let target = PgDatabase::create();
    target
        .execute("CREATE TABLE victim (id int PRIMARY KEY); INSERT INTO victim VALUES (999);")
        .await;
    let apply = ferry_tests::start_apply(&target, &prefix, &unique("g"), &[]);
    source.execute(PG_CHANGES).await;
    let (s, t) = (source.client().await, target.client().await);
    for table in PG_TABLES {
        let from = ferry_core::pg::quoted(&TableId::new("public", table.name));
        let sql = select(table, ferry_core::pg::quote_ident, &from);
        wait_rows(
            table.name,
            CATCH_UP,
            || async { pg_text_rows(&s, &sql).await.unwrap() },
            || async { pg_text_rows(&t, &sql).await.unwrap_or_default() },
        )
        .await;
    }
    assert_eq!(pg_text_rows(&s, "SELECT id FROM victim").await.unwrap(), ["1"]);
    assert_eq!(pg_text_rows(&t, "SELECT id FROM victim").await.unwrap(), ["1", "999"]);
    assert_eq!(
        pg_text_rows(&t, PG_ALL_TABLES).await.unwrap(),
        pg_tables_in_target("public.")
    );
    let mut source_tables: Vec<&str> = PG_TABLES.iter().map(|t| t.name).collect();
    source_tables.push("victim");
    assert_eq!(
        pg_text_rows(&s, PG_ALL_TABLES).await.unwrap(),
        names("public.", &source_tables)
    );
    // A source type the target has is kept, quotes and all.
    let types = pg_text_rows(
        &t,
        r#"SELECT format_type(atttypid, atttypmod) FROM pg_attribute
           WHERE attrelid = '"x""; DROP TABLE victim; --"'::regclass AND attname = 'order'"#,
    )
    .await
    .unwrap();
    assert_eq!(types, ["numeric(10,2)"]);
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn postgres_to_mariadb() {
    let (source, prefix, capture) = pg_source("hostile_my").await;
    let target = MariaDatabase::create().await;
    target
        .execute("CREATE TABLE victim (id int PRIMARY KEY); INSERT INTO victim VALUES (999);")
        .await;
    let apply = start_apply_with("ferry-apply-mysql", &target.url(), &prefix, &unique("g"), &[]);
    source.execute(PG_CHANGES).await;
    let s = source.client().await;
    let my = tokio::sync::Mutex::new(target.conn().await);
    for table in PG_TABLES {
        let pg_sql = select(
            table,
            ferry_core::pg::quote_ident,
            &ferry_core::pg::quoted(&TableId::new("public", table.name)),
        );
        let my_sql = select(
            table,
            ferry_core::mysql::quote_ident,
            &ferry_core::mysql::quote_ident(table.name),
        );
        wait_rows(
            table.name,
            CATCH_UP,
            || async { pg_text_rows(&s, &pg_sql).await.unwrap() },
            || async {
                mariadb::text_rows(&mut *my.lock().await, &my_sql)
                    .await
                    .unwrap_or_default()
            },
        )
        .await;
    }
    let mut my = my.into_inner();
    assert_eq!(
        mariadb::text_rows(&mut my, "SELECT id FROM victim").await.unwrap(),
        ["1", "999"]
    );
    let tables = format!(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}'",
        target.name
    );
    assert_eq!(
        mariadb::text_rows(&mut my, &tables).await.unwrap(),
        pg_tables_in_target("")
    );
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_duckdb_and_its_export() {
    let (source, prefix, capture) = pg_source("hostile_duck").await;
    let duck = DuckDir::create();
    {
        let conn = duckdb::Connection::open(duck.file()).unwrap();
        conn.execute_batch("CREATE TABLE victim (id int); INSERT INTO victim VALUES (999);")
            .unwrap();
    }
    let apply = InProcess::start(&duck.file(), &prefix, &unique("g"), Mode::Both);
    source.execute(PG_CHANGES).await;
    let s = source.client().await;
    for table in PG_TABLES {
        let from = ferry_core::pg::quoted(&TableId::new("public", table.name));
        let pg_sql = select(table, ferry_core::pg::quote_ident, &from);
        let duck_sql = select(
            table,
            ferry_apply::duckdb::quote_ident,
            &ferry_apply::duckdb::quoted(&TableId::new("main", table.name)),
        );
        wait_rows(
            table.name,
            CATCH_UP,
            || async { pg_text_rows(&s, &pg_sql).await.unwrap() },
            || async { apply.rows(&duck_sql).unwrap_or_default() },
        )
        .await;
    }
    assert_eq!(apply.rows("SELECT id FROM victim").unwrap(), ["1", "999"]);
    let mut expected: Vec<String> = pg_tables_in_target("main.");
    let histories = PG_TABLES.iter().map(|t| t.name).chain(["victim"]);
    expected.extend(histories.map(|t| format!("main.{t}__history")));
    expected.sort();
    let all_tables = "SELECT table_schema || '.' || table_name FROM information_schema.tables
                      WHERE table_catalog = current_database()";
    assert_eq!(apply.rows(all_tables).unwrap(), expected);
    apply.stop().await;

    // Every table's Parquet files land in a directory of its own inside --to.
    let (lake, _) = duck.export();
    let mut beside: Vec<String> = std::fs::read_dir(&duck.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("target.duckdb"))
        .collect();
    beside.sort();
    assert_eq!(beside, ["lake"]);
    let dirs = std::fs::read_dir(&lake).unwrap().count();
    assert_eq!(dirs, expected.len() - 2, "one directory a table, Ferry's own left out");
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let table = &PG_TABLES[0];
    let parquet = ferry_apply::duckdb::export::directory(&lake, &TableId::new("main", table.name));
    let from = format!("read_parquet('{}/*.parquet')", parquet.display());
    let pg_sql = select(
        table,
        ferry_core::pg::quote_ident,
        &ferry_core::pg::quote_ident(table.name),
    );
    assert_eq!(
        duck_rows(&conn, &select(table, ferry_apply::duckdb::quote_ident, &from)),
        pg_text_rows(&s, &pg_sql).await
    );
    assert!(capture.terminate().success());
}

/// The MariaDB source's tables.
const MY_TABLES: &[Table] = &[
    Table {
        name: "x`; DROP TABLE victim; #",
        columns: &["select", "o'reilly", "\"order\"", "Ünïcødé 表"],
    },
    Table {
        name: "group",
        columns: &["a`b", "it's; --"],
    },
];

#[tokio::test]
async fn mariadb_to_postgres() {
    let source = MariaDatabase::create().await;
    source
        .execute(
            "CREATE TABLE victim (id int PRIMARY KEY); INSERT INTO victim VALUES (1);
             CREATE TABLE `x``; DROP TABLE victim; #` (`select` int PRIMARY KEY, `o'reilly` text,
                 `\"order\"` decimal(10,2), `Ünïcødé 表` text);
             INSERT INTO `x``; DROP TABLE victim; #` VALUES (1, 'it''s', 1.10, 'ü'), (2, NULL, NULL, '表');
             CREATE TABLE `group` (`a``b` int PRIMARY KEY, `it's; --` text);
             INSERT INTO `group` VALUES (1, '`; DROP TABLE victim; #'), (2, 'b');",
        )
        .await;
    let target = PgDatabase::create();
    target
        .execute("CREATE TABLE victim (id int PRIMARY KEY); INSERT INTO victim VALUES (999);")
        .await;
    let prefix = unique("hostile_from_my");
    let capture = mariadb::start_capture(&source, &prefix, mariadb::server_id(), &[]);
    mariadb::wait_position(&prefix).await;
    let apply = ferry_tests::start_apply(&target, &prefix, &unique("g"), &[]);
    source
        .execute(
            "INSERT INTO `x``; DROP TABLE victim; #` VALUES (3, 'o''reilly', 3.30, '表3');
             UPDATE `x``; DROP TABLE victim; #` SET `o'reilly` = '; DROP TABLE victim; --' WHERE `select` = 1;
             DELETE FROM `x``; DROP TABLE victim; #` WHERE `select` = 2;
             UPDATE `group` SET `a``b` = 10 WHERE `a``b` = 1;
             DELETE FROM `group` WHERE `a``b` = 2;",
        )
        .await;
    let mut my = source.conn().await;
    let t = target.client().await;
    for table in MY_TABLES {
        let my_sql = select(
            table,
            ferry_core::mysql::quote_ident,
            &ferry_core::mysql::quote_ident(table.name),
        );
        let want = mariadb::text_rows(&mut my, &my_sql).await.unwrap();
        let pg_sql = select(
            table,
            ferry_core::pg::quote_ident,
            &ferry_core::pg::quoted(&TableId::new("public", table.name)),
        );
        wait_rows(
            table.name,
            CATCH_UP,
            || async { want.clone() },
            || async { pg_text_rows(&t, &pg_sql).await.unwrap_or_default() },
        )
        .await;
    }
    assert_eq!(
        mariadb::text_rows(&mut my, "SELECT id FROM victim").await.unwrap(),
        ["1"]
    );
    assert_eq!(pg_text_rows(&t, "SELECT id FROM victim").await.unwrap(), ["1", "999"]);
    let mut expected: Vec<&str> = MY_TABLES.iter().map(|t| t.name).collect();
    expected.extend(["victim", "_ferry_offsets", "_ferry_barriers"]);
    assert_eq!(
        pg_text_rows(&t, PG_ALL_TABLES).await.unwrap(),
        names("public.", &expected)
    );
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn tables_sharing_a_topic_stop_capture_naming_both() {
    let source = PgDatabase::create();
    source
        .execute(r#"CREATE TABLE "a b" (id int PRIMARY KEY); CREATE TABLE a_b (id int PRIMARY KEY);"#)
        .await;
    let prefix = unique("clash");
    let args = ferry_tests::capture_args(&source, &prefix, &[]);
    let out = tokio::time::timeout(
        CATCH_UP,
        tokio::process::Command::new(ferry_tests::binary("ferry-capture-postgres"))
            .args(&args)
            .output(),
    )
    .await
    .expect("capture stops by itself")
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(r#"tables "public"."a b" and "public"."a_b" would share topic"#)
            && last.contains(&format!("{prefix}.public.a_b")),
        "{last}"
    );
    assert_eq!(ferry_tests::topic_count(&format!("{prefix}.public.a_b")), 0);
}

/// A table of forged events whose int columns claim the source types
/// `hostile` (statements in disguise), with one row: 1, then 7 in each.
async fn forged_table(prefix: &str, connector: Connector, hostile: &[&str]) {
    let mut columns = vec![Column::new("id", DataType::Int64, "bigint").not_null()];
    columns.extend(
        hostile
            .iter()
            .enumerate()
            .map(|(i, ty)| Column::new(format!("v{i}"), DataType::Int32, *ty)),
    );
    let meta = TableMeta::new(TableId::new("src", "forged"), columns, &["id"]).unwrap();
    let mut row = vec![Datum::Int(1)];
    row.extend(hostile.iter().map(|_| Datum::Int(7)));
    Forged::register(prefix, meta, connector).await.send_insert(row);
}

#[tokio::test]
async fn forged_type_names_reach_the_ddl_only_as_plain_types() {
    let victim = "CREATE TABLE victim (id int PRIMARY KEY); INSERT INTO victim VALUES (999);";
    // MySQL: type names the old check took for `int`, then pasted whole.
    let my_target = MariaDatabase::create().await;
    my_target.execute(victim).await;
    let my_prefix = unique("forged_my");
    let my_types = ["int); DROP TABLE victim; #", "int(11) unsigned; DROP TABLE victim"];
    forged_table(&my_prefix, Connector::Mysql, &my_types).await;
    let my_apply = start_apply_with("ferry-apply-mysql", &my_target.url(), &my_prefix, &unique("g"), &[]);
    // PostgreSQL: a statement in disguise, and a name to_regtype raises on
    // (before PostgreSQL 16) in the batch's transaction.
    let pg_target = PgDatabase::create();
    pg_target.execute(victim).await;
    let pg_prefix = unique("forged_pg");
    let pg_types = ["int); DROP TABLE victim; --", "int) , evil (int"];
    forged_table(&pg_prefix, Connector::Postgres, &pg_types).await;
    let pg_apply = ferry_tests::start_apply(&pg_target, &pg_prefix, &unique("g"), &[]);

    let row = ["1|7|7".to_owned()];
    let my = tokio::sync::Mutex::new(my_target.conn().await);
    ferry_tests::wait_for("the forged row in MariaDB", CATCH_UP, || async {
        let got = mariadb::text_rows(&mut *my.lock().await, "SELECT * FROM forged").await;
        (got.as_deref() == Some(&row[..])).then_some(())
    })
    .await;
    let mut my = my.into_inner();
    let types = "SELECT COLUMN_TYPE FROM information_schema.COLUMNS
                 WHERE TABLE_NAME = 'forged' AND TABLE_SCHEMA = DATABASE() ORDER BY ORDINAL_POSITION";
    let mut want = vec!["bigint(20)", "int(11)", "int(11)"];
    want.sort_unstable();
    assert_eq!(mariadb::text_rows(&mut my, types).await.unwrap(), want);
    assert_eq!(
        mariadb::text_rows(&mut my, "SELECT id FROM victim").await.unwrap(),
        ["999"]
    );

    let t = pg_target.client().await;
    ferry_tests::wait_for("the forged row in PostgreSQL", CATCH_UP, || async {
        (pg_text_rows(&t, "SELECT * FROM forged").await.as_deref() == Some(&row[..])).then_some(())
    })
    .await;
    let types = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = 'forged'::regclass AND attnum > 0";
    assert_eq!(pg_text_rows(&t, types).await.unwrap(), ["bigint", "integer", "integer"]);
    assert_eq!(pg_text_rows(&t, "SELECT id FROM victim").await.unwrap(), ["999"]);
    assert!(my_apply.terminate().success());
    assert!(pg_apply.terminate().success());
}
