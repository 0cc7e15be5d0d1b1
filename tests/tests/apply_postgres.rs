//! PostgreSQL → Kafka → PostgreSQL end to end: `ferry-capture-postgres` and
//! `ferry-apply-postgres` as processes against the real servers. Every test
//! makes its own source and target databases and topic prefix, and ends by
//! comparing every row of the target with the source.

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferry_tests::{
    start_apply, start_capture, table_rows, unique, wait_equal, wait_for, wait_streaming, PgDatabase, Running,
};

const CATCH_UP: Duration = Duration::from_secs(90);

/// A source database with `ddl` run in it, an empty target, and a capture of
/// the source under a fresh prefix, streaming.
async fn captured(name: &str, ddl: &str) -> (PgDatabase, PgDatabase, String, Running) {
    let source = PgDatabase::create();
    let target = PgDatabase::create();
    source.execute(ddl).await;
    let prefix = unique(name);
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    (source, target, prefix, capture)
}

#[tokio::test]
async fn snapshot_and_live_changes_arrive_row_for_row() {
    use ferry_tests::workload::{big_value, row_for_row_changes, ROW_FOR_ROW, ROW_FOR_ROW_TABLES};
    let (source, target, prefix, capture) = captured("e2e", ROW_FOR_ROW_TABLES).await;
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    let big = big_value();
    source.execute(&row_for_row_changes(&big)).await;
    wait_equal(&source, &target, ROW_FOR_ROW, CATCH_UP).await;
    // The unchanged large value kept its target copy.
    let t = target.client().await;
    let kept: String = t
        .query_one("SELECT big FROM orders WHERE id = 1002", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, big);
    // Ferry's offsets sit next to the rows.
    let stored: i64 = t
        .query_one("SELECT count(*) FROM _ferry_offsets", &[])
        .await
        .unwrap()
        .get(0);
    assert!(stored >= 4, "{stored} offsets stored");
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn a_schema_change_mid_stream_adds_the_column() {
    use ferry_tests::workload::{SCHEMA_BEFORE, SCHEMA_CHANGE};
    let (source, target, prefix, capture) = captured("schema", SCHEMA_BEFORE).await;
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    wait_equal(&source, &target, &["items"], CATCH_UP).await;
    source.execute(SCHEMA_CHANGE).await;
    wait_equal(&source, &target, &["items"], CATCH_UP).await;
    let types = target
        .strings(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'items'::regclass AND attnum > 0 ORDER BY attnum",
        )
        .await;
    assert_eq!(
        types,
        vec![
            "bigint",
            "text",
            "numeric(8,2)",
            "text[]",
            "timestamp without time zone"
        ]
    );
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn two_groups_fan_out_and_replays_rebuild_an_empty_and_a_stale_target() {
    let source = PgDatabase::create();
    let (first, second, replayed) = (PgDatabase::create(), PgDatabase::create(), PgDatabase::create());
    source
        .execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
             INSERT INTO accounts SELECT i, 100 FROM generate_series(1, 200) i;",
        )
        .await;
    let prefix = unique("fan");
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let a = start_apply(&first, &prefix, &unique("a"), &["--metrics", &metrics]);
    let b = start_apply(&second, &prefix, &unique("b"), &["--workers", "1", "--batch-size", "7"]);
    for i in 0..20 {
        source
            .execute(&format!(
                "UPDATE accounts SET balance = balance - {i} WHERE id = {};
                 UPDATE accounts SET balance = balance + {i} WHERE id = {};
                 DELETE FROM accounts WHERE id = {};",
                i + 1,
                i + 2,
                150 + i
            ))
            .await;
    }
    wait_equal(&source, &first, &["accounts"], CATCH_UP).await;
    wait_equal(&source, &second, &["accounts"], CATCH_UP).await;
    // What apply did, in /metrics; /health says it streams.
    let http = reqwest::Client::new();
    let health = http.get(format!("http://{metrics}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let text = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in {text}"))
    };
    assert_eq!(
        value("ferry_apply_rows_total{table=\"public.accounts\",op=\"r\"}"),
        200.0
    );
    assert_eq!(
        value("ferry_apply_rows_total{table=\"public.accounts\",op=\"u\"}"),
        40.0
    );
    assert_eq!(
        value("ferry_apply_rows_total{table=\"public.accounts\",op=\"d\"}"),
        20.0
    );
    assert!(value("ferry_apply_lag_ms") >= 0.0);
    assert!(text.contains("ferry_apply_batch_seconds"), "{text}");
    assert!(capture.terminate().success());
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    // The log alone rebuilds the table in an empty database.
    let c = start_apply(&replayed, &prefix, &unique("replay"), &["--from", "earliest"]);
    wait_equal(&source, &replayed, &["accounts"], CATCH_UP).await;
    assert!(c.terminate().success());
    // And mends a stale one: the snapshot's rows, new keys as far as the log
    // tells, are there already with other values.
    first.execute("UPDATE accounts SET balance = -1").await;
    let d = start_apply(&first, &prefix, &unique("mend"), &["--from", "earliest"]);
    wait_equal(&source, &first, &["accounts"], CATCH_UP).await;
    assert!(d.terminate().success());
}

#[tokio::test]
async fn rows_the_log_creates_are_copied_in_and_merged_where_the_target_has_them() {
    let (source, target, prefix, capture) = captured(
        "created",
        "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, n int);",
    )
    .await;
    // Inserts (copied straight in), updates and deletes of keys created in
    // the same batch or an earlier one, a key deleted and created again.
    for round in 0..10 {
        let from = round * 50 + 1;
        source
            .execute(&format!(
                "INSERT INTO items SELECT i, 'v' || i, i FROM generate_series({from}, {}) i;
                 UPDATE items SET n = n + 1000 WHERE id % 7 = 0;
                 DELETE FROM items WHERE id % 11 = 0;
                 INSERT INTO items VALUES (11, 'again', {round}) ON CONFLICT (id) DO UPDATE SET v = 'again';",
                from + 49
            ))
            .await;
    }
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    wait_equal(&source, &target, &["items"], CATCH_UP).await;
    assert!(apply.terminate().success());
    // A stale target that holds keys the log creates, and lacks others: a
    // second group replays the log into it, merging where copying fails.
    target
        .execute("UPDATE items SET v = 'stale', n = -1; DELETE FROM items WHERE id % 3 = 0;")
        .await;
    let mend = start_apply(&target, &prefix, &unique("mend"), &["--from", "earliest"]);
    wait_equal(&source, &target, &["items"], CATCH_UP).await;
    assert!(mend.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn only_an_immediate_unique_index_on_exactly_the_key_lets_new_rows_be_copied_in() {
    use ferry_apply::postgres::schema::unique_on;
    use ferry_core::meta::TableId;
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE pk (a int, b text, c int, PRIMARY KEY (b, a) INCLUDE (c));
         CREATE TABLE partial (a int, b int); CREATE UNIQUE INDEX ON partial (a) WHERE b > 0;
         CREATE TABLE deferred (a int UNIQUE DEFERRABLE INITIALLY DEFERRED);
         CREATE TABLE expression (a text); CREATE UNIQUE INDEX ON expression (lower(a));
         CREATE TABLE wider (a int, b int, UNIQUE (a, b));
         CREATE TABLE plain (a int);
         CREATE TABLE later (a int, b int, UNIQUE (b)); ALTER TABLE later ADD UNIQUE (a);",
    )
    .await;
    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    let unique = |table: &'static str, columns: &'static [&'static str]| {
        let tx = &tx;
        async move { unique_on(tx, &TableId::new("public", table), columns).await.unwrap() }
    };
    assert!(unique("pk", &["a", "b"]).await);
    assert!(!unique("pk", &["a"]).await);
    assert!(!unique("pk", &["a", "b", "c"]).await);
    assert!(!unique("partial", &["a"]).await);
    assert!(!unique("deferred", &["a"]).await);
    assert!(!unique("expression", &["a"]).await);
    assert!(!unique("wider", &["a"]).await);
    assert!(!unique("plain", &["a"]).await);
    assert!(unique("later", &["a"]).await);
    assert!(!unique("absent", &["a"]).await);
}

/// Values through binary `COPY` land as the same values as through text `COPY`:
/// for every pair of Ferry type and column type apply writes in binary, the
/// edges of each (infinities, BC, NaN, the widest numbers, escapes).
#[tokio::test]
async fn binary_copy_writes_what_text_copy_writes() {
    use ferry_apply::postgres::binary::{binary_form, copy_binary};
    use ferry_apply::postgres::text::copy_text;
    use ferry_core::meta::DataType;
    use ferry_core::pgbinary::Binary;
    use ferry_core::value::{Datum, Special};
    use futures::SinkExt;
    let db = PgDatabase::create();
    let client = db.client().await;
    let copy = |table: String, data: Vec<u8>, binary: bool| {
        let client = &client;
        async move {
            let format = if binary { " (FORMAT binary)" } else { "" };
            let sink = client
                .copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN{format}"))
                .await
                .unwrap();
            let mut sink = std::pin::pin!(sink);
            sink.send(bytes::Bytes::from(data)).await.unwrap();
            sink.as_mut().finish().await.unwrap();
        }
    };
    let dec = |s: &str| Datum::Decimal(s.parse().unwrap());
    let decimal = DataType::Decimal {
        precision: 12,
        scale: 2,
        special: false,
    };
    let stamps = || {
        [
            -1,
            0,
            1_700_000_000_123_456,
            -62_135_596_800_000_001,
            -210_866_803_200_000_000,
            i64::MIN,
            i64::MAX,
        ]
        .map(Datum::Timestamp)
        .to_vec()
    };
    let cases: Vec<(&str, DataType, Vec<Datum>)> = vec![
        (
            "boolean",
            DataType::Boolean,
            vec![Datum::Bool(true), Datum::Bool(false)],
        ),
        (
            "smallint",
            DataType::Int16,
            vec![Datum::Int(-32_768), Datum::Int(32_767), Datum::Int(0)],
        ),
        (
            "integer",
            DataType::Int32,
            vec![Datum::Int(i64::from(i32::MIN)), Datum::Int(i64::from(i32::MAX))],
        ),
        ("integer", DataType::Int16, vec![Datum::Int(-7)]),
        (
            "bigint",
            DataType::Int64,
            vec![Datum::Int(i64::MIN), Datum::Int(i64::MAX)],
        ),
        (
            "real",
            DataType::Float32,
            [0.1, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-45, f32::MAX]
                .map(Datum::Float32)
                .to_vec(),
        ),
        (
            "double precision",
            DataType::Float64,
            [0.1, -0.0, f64::NAN, f64::NEG_INFINITY, f64::MAX, 5e-324, 1.0 / 3.0]
                .map(Datum::Float64)
                .to_vec(),
        ),
        (
            "numeric",
            DataType::Numeric,
            vec![
                dec("0"),
                dec("-0.00"),
                dec("12345.25"),
                dec("-0.00001"),
                dec("142857.14285714285714285714"),
                dec("100000000.000100"),
                dec("-123456789012345678901234567890123456789012345678901234567890.123456789"),
                Datum::Special(Special::NaN),
                Datum::Special(Special::Infinity),
                Datum::Special(Special::NegInfinity),
                Datum::Int(-5),
            ],
        ),
        (
            "numeric(12,2)",
            decimal,
            vec![dec("1234567890.12"), dec("-0.01"), dec("0.50")],
        ),
        (
            "text",
            DataType::Text,
            ["héllo\ttab\\back\nnew\rline", "", "\\N", "ünïcødé 😀"]
                .map(|s| Datum::Text(s.into()))
                .to_vec(),
        ),
        ("varchar(10)", DataType::Text, vec![Datum::Text("abc".into())]),
        ("char(5)", DataType::Text, vec![Datum::Text("ab".into())]),
        (
            "json",
            DataType::Text,
            vec![Datum::Text(r#"{"b": 1,  "a": [1, 2.50]}"#.into())],
        ),
        (
            "jsonb",
            DataType::Text,
            vec![Datum::Text(r#"{"b": 1,  "a": [1, 2.50], "c": "\t"}"#.into())],
        ),
        (
            "bytea",
            DataType::Bytes,
            vec![Datum::Bytes(vec![0, 255, 92, 9]), Datum::Bytes(vec![])],
        ),
        (
            "date",
            DataType::Date,
            [0, 19_000, -719_163, -2_440_588, i32::MIN, i32::MAX]
                .map(Datum::Date)
                .to_vec(),
        ),
        (
            "time",
            DataType::Time,
            [0, 86_400_000_000, 45_296_789_001].map(Datum::Time).to_vec(),
        ),
        ("timestamp", DataType::Timestamp, stamps()),
        ("timestamptz", DataType::TimestampTz, stamps()),
        ("timestamptz", DataType::Timestamp, stamps()),
        ("timestamp", DataType::TimestampTz, stamps()),
        (
            "uuid",
            DataType::Uuid,
            vec![Datum::Uuid(uuid::Uuid::from_u128(
                0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            ))],
        ),
    ];
    client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    for (n, (column, data_type, values)) in cases.into_iter().enumerate() {
        let rows: Vec<Vec<Datum>> = values
            .into_iter()
            .chain([Datum::Null])
            .enumerate()
            .map(|(i, v)| vec![Datum::Int(i as i64), v])
            .collect();
        let rows: Vec<&[Datum]> = rows.iter().map(Vec::as_slice).collect();
        client
            .batch_execute(&format!(
                "CREATE TABLE b{n} (i integer, v {column}); CREATE TABLE t{n} (i integer, v {column});"
            ))
            .await
            .unwrap();
        let cast: String = client
            .query_one(&format!("SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 't{n}'::regclass AND attname = 'v'"), &[])
            .await
            .unwrap()
            .get(0);
        let cast = if cast == "character" { "bpchar".to_owned() } else { cast };
        let form = binary_form(data_type, &cast).unwrap_or_else(|| panic!("{column} ({cast}): no binary form"));
        let binary = copy_binary(&rows, &[0, 1], &[Binary::Int4, form])
            .unwrap_or_else(|| panic!("{column}: a value has no binary form"));
        copy(format!("b{n}"), binary, true).await;
        let zone = data_type == DataType::TimestampTz;
        copy(format!("t{n}"), copy_text(&rows, &[0, 1], &[false, zone]), false).await;
        let differ: Vec<(i32, Option<String>, Option<String>)> = client
            .query(
                &format!(
                    "SELECT i, b.v::text, t.v::text FROM b{n} b FULL JOIN t{n} t USING (i)
                     WHERE b.v::text IS DISTINCT FROM t.v::text OR b.i IS NULL OR t.i IS NULL"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert!(
            differ.is_empty(),
            "{column} from {data_type}: binary, text differ: {differ:?}"
        );
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM b{n}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, rows.len() as i64, "{column}");
    }
    // Pairs without a binary form here, and values a narrower column cannot take.
    assert_eq!(binary_form(DataType::Text, "integer"), None);
    assert_eq!(binary_form(DataType::Float32, "double precision"), None);
    assert_eq!(binary_form(DataType::Duration, "interval"), None);
    assert_eq!(copy_binary(&[&[Datum::Int(40_000)]], &[0], &[Binary::Int2]), None);
}

#[tokio::test]
async fn kill_9_mid_batch_applies_nothing_twice_and_loses_nothing() {
    use ferry_tests::workload::{appended_rows, kill_repeatedly, Workload, TABLES};
    let (source, target, prefix, capture) = captured("kill", TABLES).await;
    let group = unique("g");
    let workload = Workload::start(&source.url());
    // Small batches, so a kill lands inside one more often than not; a stable
    // instance id, so each restart takes its partitions back at once.
    let instance = unique("instance");
    let args = ["--batch-size", "300", "--instance-id", &instance];
    let t = target.client().await;
    let applied = || async {
        let sum = "SELECT coalesce(sum(next_offset), 0)::bigint FROM _ferry_offsets";
        t.query_one(sum, &[]).await.ok().map(|row| row.get::<_, i64>(0))
    };
    kill_repeatedly(5, CATCH_UP, || start_apply(&target, &prefix, &group, &args), applied).await;
    let rounds = workload.stop().await;
    let apply = start_apply(&target, &prefix, &group, &args);
    wait_equal(&source, &target, &["counters", "appended", "emptied"], CATCH_UP).await;
    // Appends have no key: a message applied twice would be a second row.
    let s = source.client().await;
    let count = "SELECT count(*) FROM appended";
    let (in_source, in_target): (i64, i64) = (
        s.query_one(count, &[]).await.unwrap().get(0),
        t.query_one(count, &[]).await.unwrap().get(0),
    );
    assert_eq!(in_target, in_source);
    assert_eq!(in_source, appended_rows(rounds));
    assert_eq!(
        table_rows(&t, "counters").await.unwrap(),
        table_rows(&s, "counters").await.unwrap()
    );
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn every_column_type_arrives_equal() {
    use ferry_tests::pg_types::{insert, update, COLUMNS, ROWS, TYPES};
    let source = PgDatabase::create();
    let target = PgDatabase::create();
    // Both databases print and read values their own odd way; apply's sessions
    // must not depend on either.
    for db in [&source, &target] {
        let name = &db.name;
        db.execute(&format!(
            "ALTER DATABASE {name} SET DateStyle = 'SQL, DMY';
             ALTER DATABASE {name} SET TimeZone = 'America/St_Johns';
             ALTER DATABASE {name} SET IntervalStyle = 'postgres_verbose';
             ALTER DATABASE {name} SET bytea_output = 'escape';"
        ))
        .await;
    }
    let columns: Vec<String> = COLUMNS.iter().map(|c| format!("{} {}", c.name, c.ddl)).collect();
    source
        .execute(&format!(
            "{TYPES}
             CREATE TABLE every_type (id bigint PRIMARY KEY, {});
             ALTER TABLE every_type REPLICA IDENTITY FULL;",
            columns.join(", ")
        ))
        .await;
    // The enum, domain and composite exist in the target too, so the columns keep them.
    target.execute(TYPES).await;
    let rows = |first: i64| -> String {
        (0..ROWS)
            .map(Some)
            .chain([None])
            .zip(first..)
            .map(|(row, id)| insert(id, row))
            .collect()
    };
    source.execute(&rows(1)).await;
    let prefix = unique("types");
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    source.execute(&rows(11)).await;
    let changes: String = [(8, Some(0)), (2, Some(4)), (13, None), (17, Some(1))]
        .iter()
        .map(|(id, row)| update(*id, *row))
        .collect();
    source
        .execute(&format!("{changes} DELETE FROM every_type WHERE id = 14;"))
        .await;
    wait_equal(&source, &target, &["every_type"], CATCH_UP).await;
    let types = "SELECT attname::text || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = 'every_type'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum";
    let (s, t) = (source.client().await, target.client().await);
    let listed = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get(0)).collect::<Vec<String>>();
    assert_eq!(
        listed(t.query(types, &[]).await.unwrap()),
        listed(s.query(types, &[]).await.unwrap())
    );
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

/// A source whose `orders` the target refuses for quantities of 100 or more.
async fn poison_setup() -> (PgDatabase, PgDatabase, String, Running) {
    let (source, target, prefix, capture) =
        captured("poison", "CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL);").await;
    target
        .execute("CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL CHECK (qty < 100));")
        .await;
    source
        .execute(
            "INSERT INTO orders VALUES (1, 5); INSERT INTO orders VALUES (2, 500); INSERT INTO orders VALUES (3, 7);",
        )
        .await;
    (source, target, prefix, capture)
}

#[tokio::test]
async fn a_rejected_row_stops_apply_naming_where_it_is() {
    let (_source, target, prefix, capture) = poison_setup().await;
    let (success, last) = ferry_tests::apply_until_exit("ferry-apply-postgres", &target.url(), &prefix, CATCH_UP).await;
    assert!(!success);
    assert!(
        last.starts_with("ferry-apply-postgres: table public.orders: the target rejected a row")
            && last.contains("orders_qty_check")
            && last.contains(&format!("topic {prefix}.public.orders partition"))
            && last.contains("offset")
            && last.contains("key (id=2)")
            && last.contains("--on-error dlq"),
        "{last}"
    );
    // Nothing of the failed batch was kept.
    let t = target.client().await;
    let kept: i64 = t
        .query_one("SELECT count(*) FROM orders WHERE qty >= 100", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 0);
    assert!(capture.terminate().success());
}

/// `ferry-apply-postgres` of `prefix` into `target` with dead letters to
/// `dlq`, once `table` holds just `rows`.
async fn apply_with_dead_letters(target: &PgDatabase, prefix: &str, dlq: &str, table: &str, rows: &[&str]) -> Running {
    let apply = start_apply(target, prefix, &unique("g"), &["--on-error", "dlq", "--dlq-topic", dlq]);
    wait_for(&format!("rows {rows:?}"), CATCH_UP, || async {
        let t = target.client().await;
        (table_rows(&t, table).await.ok()? == rows).then_some(())
    })
    .await;
    apply
}

#[tokio::test]
async fn dead_letters_hold_rejected_and_undecodable_events() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let (source, target, prefix, capture) = poison_setup().await;
    // Not an event at all, on a topic apply subscribes to.
    let garbage_topic = format!("{prefix}.garbage");
    let producer: BaseProducer = ferry_core::kafka::KafkaSettings::new(ferry_tests::brokers())
        .producer()
        .create()
        .unwrap();
    producer
        .send(BaseRecord::<[u8], [u8]>::to(&garbage_topic).payload(b"not avro".as_slice()))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let dlq = unique("dlq");
    // The good rows arrive, the bad one does not, and apply goes on.
    let apply = apply_with_dead_letters(&target, &prefix, &dlq, "orders", &["(1,5)", "(3,7)"]).await;
    source.execute("INSERT INTO orders VALUES (4, 8)").await;
    wait_for("row 4 after the dead letter", CATCH_UP, || async {
        let t = target.client().await;
        let rows = table_rows(&t, "orders").await.ok()?;
        (rows.len() == 3).then_some(())
    })
    .await;

    let letters = ferry_tests::read_letters(&dlq, 2, CATCH_UP);
    assert_eq!(letters.len(), 2, "{letters:?}");
    let garbage = letters
        .iter()
        .find(|l| l.headers["ferry.topic"] == garbage_topic)
        .expect("the garbage");
    assert_eq!(garbage.payload.as_deref(), Some(b"not avro".as_slice()));
    assert!(
        garbage.headers["ferry.error"].contains("magic byte"),
        "{:?}",
        garbage.headers
    );
    let rejected = letters
        .iter()
        .find(|l| l.headers["ferry.topic"] == format!("{prefix}.public.orders"))
        .expect("the rejected row");
    assert!(
        rejected.headers["ferry.error"].contains("orders_qty_check"),
        "{:?}",
        rejected.headers
    );
    assert!(rejected.headers["ferry.offset"].parse::<i64>().is_ok());
    // The original event, byte for byte: the wire header and the Avro envelope.
    assert_eq!(rejected.payload.as_ref().unwrap()[0], 0);
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

/// What a corrupt length claims: 400 MiB, under apache-avro's own 512 MiB
/// limit, so only Ferry's check stands between it and the allocation.
const CLAIMED: i64 = 400 << 20;

/// Forged events of `public.notes` under a fresh prefix, as a capture would
/// write them (real schema ids): rows 1, 2 and 3, row 2's note with a length
/// that claims [`CLAIMED`] bytes.
async fn corrupt_setup() -> String {
    use ferry_core::envelope::Connector;
    use ferry_core::meta::{Column, DataType, TableId, TableMeta};
    use ferry_core::value::Datum;
    let prefix = unique("corrupt");
    let meta = TableMeta::new(
        TableId::new("public", "notes"),
        vec![
            Column::new("id", DataType::Int32, "integer").not_null(),
            Column::new("note", DataType::Text, "text"),
        ],
        &["id"],
    )
    .unwrap();
    let forged = ferry_tests::forge::Forged::register(&prefix, meta, Connector::Postgres).await;
    let row = |id: i64, note: &str| vec![Datum::Int(id), Datum::Text(note.into())];
    forged.send_insert(row(1, "one"));
    let (key, good) = forged.insert(row(2, "two"));
    // "two" is its length (3, zig-zag 6) and its bytes.
    let at = good.windows(4).position(|w| w == b"\x06two").unwrap();
    let mut bad = good[..at].to_vec();
    let mut zigzag = (CLAIMED << 1) as u64;
    while zigzag >= 0x80 {
        bad.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    bad.push(zigzag as u8);
    bad.extend_from_slice(&good[at + 1..]);
    forged.send(key.as_deref(), &bad);
    forged.send_insert(row(3, "three"));
    prefix
}

/// The error a corrupt length gives, to its "the N bytes left".
fn corrupt_error() -> String {
    format!("corrupt Avro payload: string length {CLAIMED} exceeds the ")
}

#[tokio::test]
async fn a_corrupt_length_stops_apply_without_allocating_it() {
    let prefix = corrupt_setup().await;
    let target = PgDatabase::create();
    let (success, last) = ferry_tests::apply_until_exit("ferry-apply-postgres", &target.url(), &prefix, CATCH_UP).await;
    assert!(!success);
    assert!(
        last.contains(&corrupt_error()) && last.contains(" bytes left") && last.contains("--on-error dlq"),
        "{last}"
    );
    // Nothing at or after it was applied.
    let t = target.client().await;
    let rows = table_rows(&t, "notes").await.unwrap_or_default();
    assert!(rows.iter().all(|r| r.starts_with("(1,")), "{rows:?}");
}

#[tokio::test]
async fn a_corrupt_length_becomes_a_dead_letter() {
    let prefix = corrupt_setup().await;
    let target = PgDatabase::create();
    let dlq = unique("dlq");
    let apply = apply_with_dead_letters(&target, &prefix, &dlq, "notes", &["(1,one)", "(3,three)"]).await;
    let letters = ferry_tests::read_letters(&dlq, 1, CATCH_UP);
    assert_eq!(letters.len(), 1, "{letters:?}");
    let error = &letters[0].headers["ferry.error"];
    assert!(error.contains(&corrupt_error()), "{error}");
    assert!(apply.terminate().success());
}

#[tokio::test]
async fn lost_target_connections_are_retried_and_lose_nothing() {
    use ferry_tests::workload::{drops_round, metric, DROPS_TABLES};
    let (source, target, prefix, capture) = captured("drop", DROPS_TABLES).await;
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let apply = start_apply(
        &target,
        &prefix,
        &unique("g"),
        &["--metrics", &metrics, "--batch-size", "50"],
    );
    let t = target.client().await;
    let killed = format!(
        "SELECT count(pg_terminate_backend(pid))::bigint FROM pg_stat_activity
         WHERE datname = '{}' AND application_name = 'ferry-apply-postgres'",
        target.name
    );
    let mut terminated = 0;
    for round in 0..10 {
        source.execute(&drops_round(round)).await;
        // The target drops apply's connections (a restart, a failover, an idle killer).
        tokio::time::sleep(Duration::from_millis(150)).await;
        terminated += t.query_one(&killed, &[]).await.unwrap().get::<_, i64>(0);
    }
    assert!(terminated > 0, "no apply connection was ever dropped");
    wait_equal(&source, &target, &["events", "log"], CATCH_UP).await;
    assert!(metric(&metrics, "ferry_apply_restarts_total").await >= 1.0);
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn two_processes_of_one_group_share_the_partitions_and_hand_them_over() {
    let (source, target, prefix, capture) = captured(
        "share",
        "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
         INSERT INTO counters SELECT i, 0 FROM generate_series(1, 60) i;
         CREATE TABLE appended (k int, v int); ALTER TABLE appended REPLICA IDENTITY FULL;",
    )
    .await;
    let group = unique("g");
    let args = ["--batch-size", "100"];
    let first = start_apply(&target, &prefix, &group, &args);
    let second = start_apply(&target, &prefix, &group, &args);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (source.url(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let client = ferry_tests::connect_pg(&url).await;
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client
                    .batch_execute(&format!(
                        "UPDATE counters SET n = n + 1 WHERE id % 7 = {}; INSERT INTO appended VALUES ({rounds}, 1);",
                        rounds % 7
                    ))
                    .await
                    .unwrap();
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            rounds
        })
    };
    let t = target.client().await;
    let applied = "SELECT coalesce(sum(next_offset), 0)::bigint FROM _ferry_offsets";
    let progress = |after: i64| {
        let t = &t;
        async move {
            wait_for("apply to make progress", CATCH_UP, || async move {
                let now: i64 = t.query_one(applied, &[]).await.ok()?.get(0);
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
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds: i64 = writer.await.unwrap();
    wait_equal(&source, &target, &["counters", "appended"], CATCH_UP).await;
    let appended: i64 = t.query_one("SELECT count(*) FROM appended", &[]).await.unwrap().get(0);
    assert_eq!(appended, rounds, "each append exactly once");
    assert!(first.terminate().success());
    assert!(capture.terminate().success());
}

/// A caught-up apply rests between fetches by pausing its partitions (see
/// `IdleFetch`). Rebalances that take partitions away from an idle member and
/// give them back, while it rests, must leave every partition fetching.
#[tokio::test]
async fn an_idle_member_keeps_fetching_across_rebalances() {
    let (source, target, prefix, capture) = captured(
        "idlerebal",
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT i, 0 FROM generate_series(1, 100) i;",
    )
    .await;
    let group = unique("g");
    let first = start_apply(&target, &prefix, &group, &[]);
    wait_equal(&source, &target, &["t"], CATCH_UP).await;
    // Apply's connections to this target database (each member opens several).
    let t = target.client().await;
    let connections = || async {
        t.query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'ferry-apply-postgres'",
            &[],
        )
        .await
        .ok()
        .map(|row| row.get::<_, i64>(0))
    };
    let alone = connections().await.expect("count the first member's connections");
    // Idle: the first member rests. A second one joins (every partition is
    // revoked and assigned again), and rows change in every partition.
    let second = start_apply(&target, &prefix, &group, &[]);
    wait_for("the second member to connect", CATCH_UP, || async {
        connections().await.filter(|&n| n > alone)
    })
    .await;
    for round in 1..=3 {
        source.execute(&format!("UPDATE t SET v = {round}")).await;
        wait_equal(&source, &target, &["t"], CATCH_UP).await;
    }
    // It leaves: its partitions go back to the idle first member.
    assert!(second.terminate().success());
    for round in 4..=6 {
        source.execute(&format!("UPDATE t SET v = {round}")).await;
        wait_equal(&source, &target, &["t"], CATCH_UP).await;
    }
    assert!(first.terminate().success());
    assert!(capture.terminate().success());
}

#[tokio::test]
async fn an_apply_started_before_its_topics_exist_waits_without_errors() {
    use ferry_tests::workload::metric;
    let (source, target) = (PgDatabase::create(), PgDatabase::create());
    source
        .execute("CREATE TABLE early (id int PRIMARY KEY, v text); INSERT INTO early VALUES (1, 'one');")
        .await;
    let prefix = unique("early");
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let log = std::env::temp_dir().join(format!("{prefix}.apply.log"));
    let (url, brokers) = (target.url(), ferry_tests::brokers());
    let topics = format!("{prefix}\\..*");
    let apply = Running::start_logged(
        "ferry-apply-postgres",
        &[
            "--target",
            &url,
            "--topics",
            &topics,
            "--group",
            &unique("g"),
            "--metrics",
            &metrics,
        ],
        &[("FERRY_LOG", "info"), ("FERRY_BROKERS", &brokers)],
        &log,
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("apply to say no topic matches yet", CATCH_UP, || {
        let said = read_log().contains("no topic matches --topics yet");
        async move { said.then_some(()) }
    })
    .await;
    let capture = start_capture(&source, &prefix, &[]);
    wait_streaming(&source, &prefix).await;
    source.execute("INSERT INTO early VALUES (2, 'two')").await;
    wait_equal(&source, &target, &["early"], CATCH_UP).await;
    let kafka_errors = metric(&metrics, "ferry_apply_errors_total{kind=\"kafka\"}").await;
    assert_eq!(kafka_errors, 0.0, "waiting for topics counted as Kafka errors");
    assert!(apply.terminate().success());
    assert!(capture.terminate().success());
    let said = read_log();
    assert_eq!(
        said.matches("no topic matches --topics yet").count(),
        1,
        "said once, not at every metadata refresh: {said}"
    );
    for noise in ["ERROR", "WARN"] {
        assert!(!said.contains(noise), "apply logged {noise} while it waited: {said}");
    }
    let _ = std::fs::remove_file(&log);
}
