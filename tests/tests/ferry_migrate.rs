//! `ferry migrate` end to end: a full load into PostgreSQL and MariaDB at
//! once that validates and stops by itself, and a full load with changes
//! under a live write workload, ended by a cutover.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use ferry_tests::mariadb::MariaDatabase;
use ferry_tests::{binary, brokers, unique, PgDatabase};
use mysql_async::prelude::Queryable;
use tokio::io::AsyncWriteExt;

const DEADLINE: Duration = Duration::from_secs(240);

const SCHEMA: &str = "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, since date);
     CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, total numeric(12,2), at timestamptz, note text);
     INSERT INTO customers SELECT i, 'customer ' || i, date '2020-01-01' + i FROM generate_series(1, 2000) i;
     INSERT INTO orders SELECT i, 1 + i % 2000, i * 0.25, '2024-01-01'::timestamptz + i * interval '1 minute',
                               CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ' || i END
                        FROM generate_series(1, 20000) i;";

#[tokio::test]
async fn full_load_into_postgres_and_mariadb_at_once_validates_and_stops() {
    let source = PgDatabase::create();
    source.execute(SCHEMA).await;
    let (pg, my) = (PgDatabase::create(), MariaDatabase::create().await);
    let prefix = unique("mig");
    let (pg_url, my_url) = (pg.url(), my.url());
    let (_, view) = ferry_tests::ferry_full_load(&source.url(), &[&pg_url, &my_url], &prefix).await;
    // The live view, per table and target.
    let orders = view
        .lines()
        .rev()
        .skip_while(|l| !l.starts_with("public.orders "))
        .take(1)
        .collect::<String>();
    assert!(orders.contains("loaded") && orders.contains("20,0"), "{view}");
    assert!(
        view.contains("  target 1 MySQL") && view.contains("caught up"),
        "{view}"
    );

    // ferry cutover of the same migration finds nothing left to apply.
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(binary("ferry"))
            .args([
                "cutover",
                "--source",
                &source.url(),
                "--target",
                &pg_url,
                "--target",
                &my_url,
            ])
            .args(["--prefix", &prefix, "--brokers", &brokers()])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// A source with [`SCHEMA`], an empty target, and `ferry migrate
/// --mode full-load-and-cdc` between them, its stdin and stdout piped.
async fn cdc_migration(stderr: Stdio) -> (PgDatabase, PgDatabase, tokio::process::Child) {
    let source = PgDatabase::create();
    source.execute(SCHEMA).await;
    let target = PgDatabase::create();
    let prefix = unique("mig");
    let child = ferry_tests::ferry_migrate(&source.url(), &[&target.url()], &prefix, "full-load-and-cdc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    (source, target, child)
}

/// Types `cutover` into the migration and waits for it to end.
async fn cut_over(mut child: tokio::process::Child) -> std::process::Output {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"cutover\n").await.unwrap();
    stdin.flush().await.unwrap();
    tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the migration ends after the cutover")
        .unwrap()
}

#[tokio::test]
async fn full_load_and_changes_under_writes_then_cutover() {
    let (source, _target, child) = cdc_migration(Stdio::null()).await;
    // Writes while the migration runs: new rows, updates, deletes.
    let client = source.client().await;
    for round in 0..20 {
        client
            .batch_execute(&format!(
                "INSERT INTO orders (id, customer, total) VALUES ({}, 1, 9.99);
                 UPDATE orders SET total = total + 1 WHERE id % 50 = {round};
                 DELETE FROM orders WHERE id = {};
                 UPDATE customers SET name = name || '+' WHERE id = {};",
                100_000 + round,
                1 + round * 3,
                1 + round
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Writes stopped: cut over.
    let out = cut_over(child).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("target 0 equals the source: safe to switch to"),
        "{stdout}"
    );
}

/// An apply that stops while the cutover waits for the targets to catch up
/// (here: the target rejects a row) ends the migration with its error; the
/// targets would never catch up, so waiting on would wait for good.
#[tokio::test]
async fn an_apply_failing_during_the_cutover_wait_ends_the_migration() {
    let (source, target, child) = cdc_migration(Stdio::piped()).await;
    let target_client = target.client().await;
    ferry_tests::wait_for("the load to reach the target", DEADLINE, || async {
        let loaded = target_client
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .ok()?
            .get::<_, i64>(0);
        (loaded == 20_000).then_some(())
    })
    .await;
    // A row the target refuses, then the cutover at once.
    target
        .execute("ALTER TABLE orders ADD CONSTRAINT small CHECK (total < 1000000)")
        .await;
    source
        .execute("INSERT INTO orders (id, customer, total) VALUES (900001, 1, 5000000)")
        .await;
    let out = cut_over(child).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("apply to target 0") && last.contains("900001"),
        "{stderr}"
    );
}

#[tokio::test]
async fn full_load_between_postgres_databases_carries_defaults_sequences_indexes_and_foreign_keys() {
    let source = PgDatabase::create();
    source
        .execute(
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
             CREATE FUNCTION only_in_the_source() RETURNS int LANGUAGE sql AS 'SELECT 7';
             CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL UNIQUE, feel mood DEFAULT 'ok',
                                     since date NOT NULL DEFAULT current_date, lucky int DEFAULT only_in_the_source());
             CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                  customer_id int NOT NULL REFERENCES customers ON DELETE CASCADE,
                                  total numeric(10,2) NOT NULL DEFAULT 0, note text);
             CREATE INDEX orders_by_customer ON orders (customer_id);
             CREATE INDEX orders_with_notes ON orders (lower(note)) WHERE note IS NOT NULL;
             INSERT INTO customers (email) SELECT 'c' || i || '@example.com' FROM generate_series(1, 300) i;
             INSERT INTO orders (customer_id, total, note)
               SELECT 1 + i % 300, i, CASE WHEN i % 3 = 0 THEN 'n' || i END FROM generate_series(1, 3000) i;",
        )
        .await;
    let target = PgDatabase::create();
    let (stdout, _) = ferry_tests::ferry_full_load(&source.url(), &[&target.url()], &unique("mig")).await;
    assert!(
        stdout.contains("left to the operator: default of public.customers.lucky"),
        "a default calling a function the target lacks is reported: {stdout}"
    );

    let client = target.client().await;
    // The enum type and the defaults, the unique and the other indexes, the foreign key.
    let feel = target
        .strings(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'customers'::regclass AND attname = 'feel'",
        )
        .await;
    assert_eq!(feel, ["mood"]);
    let defaults = target
        .strings(
            "SELECT table_name || '.' || column_name || '=' || column_default FROM information_schema.columns
             WHERE table_schema = 'public' AND column_default IS NOT NULL AND table_name NOT LIKE '\\_ferry%'
             ORDER BY 1",
        )
        .await;
    assert_eq!(
        defaults,
        [
            "customers.feel='ok'::mood",
            "customers.id=nextval('customers_id_seq'::regclass)",
            "customers.since=CURRENT_DATE",
            "orders.total=0",
        ],
        "{stdout}"
    );
    let indexes = target
        .strings(
            "SELECT indexname::text FROM pg_indexes
             WHERE schemaname = 'public' AND tablename NOT LIKE '\\_ferry%' ORDER BY 1",
        )
        .await;
    assert_eq!(
        indexes,
        [
            "customers_email_key",
            "customers_pkey",
            "orders_by_customer",
            "orders_pkey",
            "orders_with_notes"
        ],
        "{stdout}"
    );
    let fk = target
        .strings("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f'")
        .await;
    assert_eq!(
        fk,
        ["FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE CASCADE"]
    );
    // The sequences stand where the source's do: the next rows get new keys.
    client
        .batch_execute(
            "INSERT INTO customers (email) VALUES ('new@example.com');
             INSERT INTO orders (customer_id) VALUES (301);",
        )
        .await
        .unwrap();
    let ids = target
        .strings("SELECT (SELECT max(id) FROM customers) || ' ' || (SELECT max(id) FROM orders)")
        .await;
    assert_eq!(ids, ["301 3001"]);
    // The unique index holds.
    assert!(client
        .batch_execute("INSERT INTO customers (email) VALUES ('c1@example.com')")
        .await
        .is_err());
}

#[tokio::test]
async fn full_load_between_mariadb_databases_carries_keys_foreign_keys_and_auto_increment() {
    let source = MariaDatabase::create().await;
    source
        .execute(
            "CREATE TABLE customers (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, email varchar(80) NOT NULL,
                                     feel enum('sad','ok','happy') NOT NULL DEFAULT 'ok',
                                     since date NOT NULL DEFAULT '2020-01-01', UNIQUE KEY by_email (email));
             CREATE TABLE orders (id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, customer_id int NOT NULL,
                                  total decimal(10,2) NOT NULL DEFAULT 0, note varchar(200),
                                  KEY by_customer (customer_id),
                                  CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
                                    ON DELETE CASCADE,
                                  CONSTRAINT positive CHECK (total >= 0));
             INSERT INTO customers (email) SELECT concat('c', seq, '@example.com') FROM seq_1_to_300;
             INSERT INTO orders (customer_id, total) SELECT 1 + seq % 300, seq FROM seq_1_to_3000;",
        )
        .await;
    let target = MariaDatabase::create().await;
    let (stdout, _) = ferry_tests::ferry_full_load(&source.url(), &[&target.url()], &unique("mig")).await;
    assert!(!stdout.contains("left to the operator"), "{stdout}");

    let mut conn = target.conn().await;
    let show = |table: &'static str| format!("SHOW CREATE TABLE {table}");
    let customers: (String, String) = conn.query_first(show("customers")).await.unwrap().unwrap();
    let orders: (String, String) = conn.query_first(show("orders")).await.unwrap().unwrap();
    for part in [
        "`feel` enum('sad','ok','happy') NOT NULL DEFAULT 'ok'",
        "`since` date NOT NULL DEFAULT '2020-01-01'",
        "UNIQUE KEY `by_email` (`email`)",
    ] {
        assert!(customers.1.contains(part), "{part} in {}\n{stdout}", customers.1);
    }
    for part in [
        "`total` decimal(10,2) NOT NULL DEFAULT 0.00",
        "KEY `by_customer` (`customer_id`)",
        "CONSTRAINT `orders_customer` FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`) ON DELETE CASCADE",
        "CONSTRAINT `positive` CHECK (`total` >= 0)",
    ] {
        assert!(orders.1.contains(part), "{part} in {}\n{stdout}", orders.1);
    }
    // The counters stand where the source's do (past the rows, and past
    // what InnoDB reserved for them): the next rows get the same new keys.
    let mut ids = Vec::new();
    for mut db in [source.conn().await, conn] {
        db.query_drop("INSERT INTO customers (email) VALUES ('new@example.com')")
            .await
            .unwrap();
        db.query_drop("INSERT INTO orders (customer_id) SELECT max(id) FROM customers")
            .await
            .unwrap();
        let next: Option<(i64, i64)> = db
            .query_first("SELECT (SELECT max(id) FROM customers), (SELECT max(id) FROM orders)")
            .await
            .unwrap();
        ids.push(next.unwrap());
    }
    assert!(ids[1].0 > 300 && ids[1].1 > 3000, "{ids:?}");
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn kafka_options_reach_every_client_of_a_migration() {
    let source = PgDatabase::create();
    source
        .execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 50);")
        .await;
    let lake = ferry_tests::duck::DuckDir::create();
    let target = format!("duckdb://{}", lake.file().display());
    // A property librdkafka does not know stops it at once, named.
    let out = tokio::time::timeout(
        DEADLINE,
        ferry_tests::ferry_migrate(&source.url(), &[&target], &unique("mig"), "full-load")
            .args(["--kafka-option", "no.such.property=1"])
            .output(),
    )
    .await
    .expect("a bad property stops the migration")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("No such configuration property: \"no.such.property\""),
        "{stderr}"
    );
    // A good one is passed through, and the migration goes on as usual.
    ferry_tests::ferry_full_load_with(
        &source.url(),
        &[&target],
        &unique("mig"),
        &["--kafka-option", "client.id=ferry-migrate-test"],
    )
    .await;
}
