//! Every built-in PostgreSQL type through `ferry-capture-postgres` and back, exactly.
//!
//! One table has a column of each type (see [`COLUMNS`], which lists each type with
//! its edge cases). Rows are written before capture starts (snapshot reads, op `r`)
//! and while it streams (inserts `c`; updates `u` and a delete `d`, whose old rows
//! come from REPLICA IDENTITY FULL), including rows that are all NULL. Every value
//! of every event, decoded from Kafka through the registry, is compared with what
//! PostgreSQL itself says the value is, read back on a separate connection; no
//! expected value is written down in this file:
//!
//! - integers, floats, booleans, bytea, uuid, date, time and timestamp[tz], which
//!   Ferry carries as Avro values, against the server's **binary** wire form (its
//!   internal representation, independent of the text Ferry parses): float bits
//!   (NaN by NaN-ness, so `-0` and subnormals count), dates and times counted from
//!   PostgreSQL's epoch 2000-01-01 and moved to 1970, ±infinity as its sentinels;
//! - numerics against their exact decimal text: every digit and the scale
//!   (`NaN`, `Infinity`, `-Infinity` by name);
//! - every type Ferry carries as text (money, interval, timetz, arrays, json, xml,
//!   network, bit strings, enum, domain, ranges, composite, geometric, the text
//!   family) against the type's output text under the session settings capture
//!   pins ([`SESSION_OPTIONS`]).
//!
//! The database's own defaults print dates, time zones, intervals, bytea and
//! floats differently from those settings, so a capture session (snapshot or
//! walsender) that did not pin them would deliver different values.
//!
//! So the test cannot pass by accepting anything, each delivered value is also
//! perturbed (one digit, bit, microsecond, character or byte; rescaled; dropped to
//! NULL) and the comparison must reject every perturbation. The registry's schema
//! must name every column's PostgreSQL type in `ferry.source_type` (checked against
//! `format_type`) and Ferry's mapping in `ferry.type`.
//!
//! Not covered, as documented in `capture/src/postgres/types.rs`: timestamps after
//! 294247-01-10 04:00:54.775806, which PostgreSQL accepts but an `i64` of
//! microseconds since 1970 cannot hold (the latest one that fits is in the table).

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ferry_capture::postgres::replication::SESSION_OPTIONS;
use ferry_core::envelope::{ChangeEvent, Op};
use ferry_core::meta::DataType;
use ferry_core::registry::RegistryClient;
use ferry_core::value::{Datum, Decimal, Special};
use ferry_tests::pg_types::{column_list, columns, insert, update, COLUMNS, ROWS, TYPES};
use ferry_tests::{read_topic, topic_count, unique, wait_for, PgDatabase, Running, SERVICES_REGISTRY};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

/// What PostgreSQL says one stored value is.
#[derive(Debug, Clone)]
struct PgValue {
    /// The type's output text under capture's session settings; `None` for NULL.
    text: Option<String>,
    /// The binary wire form: the server's own representation; `None` for NULL.
    binary: Option<Vec<u8>>,
}

/// PostgreSQL's old and new row, which an event's `before` and `after` must be.
type OldAndNew<'a> = (Option<&'a Vec<PgValue>>, Option<&'a Vec<PgValue>>);

/// Any value, as the raw bytes of its binary wire form.
#[derive(Debug)]
struct Binary(Vec<u8>);

impl<'a> FromSql<'a> for Binary {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Binary(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A connection with the session settings capture's own connections have.
async fn oracle(db: &PgDatabase) -> Client {
    let mut config: tokio_postgres::Config = db.url().parse().unwrap();
    config.options(SESSION_OPTIONS);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Every row as PostgreSQL holds it now, by id: each value as text (simple
/// query protocol) and in binary (extended protocol).
async fn pg_rows(client: &Client) -> BTreeMap<i64, Vec<PgValue>> {
    let select = format!("SELECT id, {} FROM every_type ORDER BY id", column_list());
    let texts: Vec<Vec<Option<String>>> = client
        .simple_query(&select)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect()),
            _ => None,
        })
        .collect();
    let binaries = client.query(&select, &[]).await.unwrap();
    assert_eq!(texts.len(), binaries.len());
    texts
        .into_iter()
        .zip(binaries)
        .map(|(texts, row)| {
            let values: Vec<PgValue> = texts
                .into_iter()
                .enumerate()
                .map(|(i, text)| {
                    let binary = row.get::<_, Option<Binary>>(i).map(|b| b.0);
                    assert_eq!(text.is_none(), binary.is_none());
                    PgValue { text, binary }
                })
                .collect();
            let id = i64::from_be_bytes(values[0].binary.as_deref().unwrap().try_into().unwrap());
            (id, values)
        })
        .collect()
}

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const EPOCH_2000_DAYS: i32 = 10_957;
const EPOCH_2000_MICROS: i64 = 946_684_800_000_000;

fn be<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("{} bytes in the binary form, expected {N}", raw.len()))
}

/// Whether `got` is exactly the value PostgreSQL holds; the error says what was expected.
fn agrees(ty: DataType, pg: &PgValue, got: &Datum) -> Result<(), String> {
    let (Some(text), Some(raw)) = (&pg.text, &pg.binary) else {
        return match got {
            Datum::Null => Ok(()),
            _ => Err("PostgreSQL holds NULL".into()),
        };
    };
    let expected = match ty {
        DataType::Boolean => Datum::Bool(raw.as_slice() == [1]),
        DataType::Int16 => Datum::Int(i16::from_be_bytes(be(raw)?).into()),
        DataType::Int32 => Datum::Int(i32::from_be_bytes(be(raw)?).into()),
        // oid and xid are unsigned 32-bit on the wire.
        DataType::Int64 if raw.len() == 4 => Datum::Int(u32::from_be_bytes(be(raw)?).into()),
        DataType::Int64 => Datum::Int(i64::from_be_bytes(be(raw)?)),
        // Datum's == says -0 == 0 and NaN != NaN: compare bits, NaN by NaN-ness.
        DataType::Float32 => {
            let want = f32::from_bits(u32::from_be_bytes(be(raw)?));
            return match got {
                Datum::Float32(f) if f.to_bits() == want.to_bits() || (f.is_nan() && want.is_nan()) => Ok(()),
                _ => Err(format!("expected Float32({want:?}), bits {:#010x}", want.to_bits())),
            };
        }
        DataType::Float64 => {
            let want = f64::from_bits(u64::from_be_bytes(be(raw)?));
            return match got {
                Datum::Float64(f) if f.to_bits() == want.to_bits() || (f.is_nan() && want.is_nan()) => Ok(()),
                _ => Err(format!("expected Float64({want:?}), bits {:#018x}", want.to_bits())),
            };
        }
        // Every digit and the scale: the decimal text must be PostgreSQL's own.
        DataType::Decimal { .. } | DataType::Numeric => {
            let shown = match got {
                Datum::Decimal(d) => d.to_string(),
                Datum::Special(s) => s.as_str().to_owned(),
                _ => return Err("expected a decimal".into()),
            };
            return if shown == *text {
                Ok(())
            } else {
                Err(format!("it reads as {shown:?}"))
            };
        }
        DataType::Text => Datum::Text(text.clone()),
        DataType::Bytes => Datum::Bytes(raw.clone()),
        DataType::Date => Datum::Date(match i32::from_be_bytes(be(raw)?) {
            infinity @ (i32::MIN | i32::MAX) => infinity,
            days => days.checked_add(EPOCH_2000_DAYS).ok_or("date beyond i32 days")?,
        }),
        DataType::Time | DataType::Duration => Datum::Time(i64::from_be_bytes(be(raw)?)),
        DataType::Timestamp | DataType::TimestampTz => Datum::Timestamp(match i64::from_be_bytes(be(raw)?) {
            infinity @ (i64::MIN | i64::MAX) => infinity,
            micros => micros
                .checked_add(EPOCH_2000_MICROS)
                .ok_or("timestamp beyond i64 micros")?,
        }),
        DataType::Uuid => Datum::Uuid(uuid::Uuid::from_slice(raw).map_err(|e| e.to_string())?),
    };
    if *got == expected {
        Ok(())
    } else {
        Err(format!("expected {expected:?}"))
    }
}

/// Values one step away from `d`: what a rounding, truncating or dropping bug would deliver.
fn near_misses(d: &Datum) -> Vec<Datum> {
    let mut out = match d {
        Datum::Null => return vec![Datum::Text(String::new()), Datum::Int(0)],
        Datum::Bool(b) => vec![Datum::Bool(!b)],
        Datum::Int(i) => vec![Datum::Int(i.wrapping_add(1))],
        Datum::Float32(f) if f.is_nan() => vec![Datum::Float32(0.0)],
        Datum::Float32(f) => vec![Datum::Float32(f32::from_bits(f.to_bits() ^ 1))],
        Datum::Float64(f) if f.is_nan() => vec![Datum::Float64(0.0)],
        Datum::Float64(f) => vec![Datum::Float64(f64::from_bits(f.to_bits() ^ 1))],
        Datum::Decimal(dec) => {
            let mut text = dec.to_string().into_bytes();
            let last = text.last_mut().unwrap();
            *last = if *last == b'9' { b'8' } else { *last + 1 };
            let bumped: Decimal = String::from_utf8(text).unwrap().parse().unwrap();
            vec![
                Datum::Decimal(bumped),
                Datum::Decimal(dec.rescale(dec.scale() + 1).unwrap()),
            ]
        }
        Datum::Special(s) => vec![Datum::Special(match s {
            Special::NaN => Special::Infinity,
            Special::Infinity => Special::NegInfinity,
            Special::NegInfinity => Special::NaN,
        })],
        Datum::Text(s) => {
            let mut chars: Vec<char> = s.chars().collect();
            let longer = format!("{s}x");
            chars.pop();
            vec![Datum::Text(longer), Datum::Text(chars.into_iter().collect())]
        }
        Datum::Bytes(b) => vec![
            Datum::Bytes([b.as_slice(), &[0]].concat()),
            Datum::Bytes(b[..b.len().saturating_sub(1)].to_vec()),
        ],
        Datum::Date(days) => vec![Datum::Date(days ^ 1)],
        Datum::Time(micros) => vec![Datum::Time(micros ^ 1)],
        Datum::Timestamp(micros) => vec![Datum::Timestamp(micros ^ 1)],
        Datum::Uuid(u) => vec![Datum::Uuid(uuid::Uuid::from_u128(u.as_u128() ^ 1))],
    };
    out.retain(|wrong| wrong != d);
    out.push(Datum::Null);
    out
}

/// Compares a delivered row with PostgreSQL's, column by column, recording
/// every difference; returns how many values were compared.
fn compare_row(what: &str, got: Option<&Vec<Datum>>, want: &[PgValue], problems: &mut Vec<String>) -> usize {
    let Some(got) = got else {
        problems.push(format!("{what}: the row is missing"));
        return 0;
    };
    if got.len() != want.len() {
        problems.push(format!("{what}: {} values for {} columns", got.len(), want.len()));
        return 0;
    }
    for ((name, source_type, ty), (datum, pg)) in columns().zip(got.iter().zip(want)) {
        let column = format!("{what}, column {name} ({source_type})");
        match agrees(ty, pg, datum) {
            Err(reason) => problems.push(format!(
                "{column}: PostgreSQL has {:?}, Ferry delivered {datum:?}: {reason}",
                pg.text
            )),
            Ok(()) => {
                for wrong in near_misses(datum) {
                    if agrees(ty, pg, &wrong).is_ok() {
                        problems.push(format!(
                            "{column}: the comparison also accepts {wrong:?} for {:?}",
                            pg.text
                        ));
                    }
                }
            }
        }
    }
    got.len()
}

/// The (op, id) an event is about.
fn event_key(e: &ChangeEvent) -> (&'static str, i64) {
    let row = e.after.as_ref().or(e.before.as_ref()).expect("a row");
    match row.first() {
        Some(Datum::Int(id)) => (e.op.code(), *id),
        other => panic!("no id: {other:?}"),
    }
}

/// Every event of `topic` once all of `expected` arrived (duplicates are allowed:
/// delivery into Kafka is at-least-once).
async fn read_events(topic: &str, expected: &BTreeSet<(&'static str, i64)>) -> Vec<ChangeEvent> {
    wait_for(
        &format!("{expected:?} on {topic}"),
        Duration::from_secs(120),
        || async {
            let count = usize::try_from(topic_count(topic)).ok()?;
            if count < expected.len() {
                return None;
            }
            let events: Vec<ChangeEvent> = read_topic(topic, count, SERVICES_REGISTRY)
                .await
                .into_iter()
                .filter_map(|m| m.event)
                .collect();
            let seen: BTreeSet<_> = events.iter().map(event_key).collect();
            seen.is_superset(expected).then_some(events)
        },
    )
    .await
}

/// Every registered version of the topic's value schema names each column's
/// PostgreSQL type and Ferry's mapping of it.
async fn assert_schemas_name_the_types(topic: &str) {
    let registry = RegistryClient::new(&SERVICES_REGISTRY.parse().unwrap()).unwrap();
    let subject = format!("{SERVICES_REGISTRY}/subjects/{topic}-value/versions");
    let versions: Vec<u32> = reqwest::get(&subject).await.unwrap().json().await.unwrap();
    assert!(!versions.is_empty());
    for version in versions {
        let body: serde_json::Value = reqwest::get(format!("{subject}/{version}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = u32::try_from(body["id"].as_u64().unwrap()).unwrap();
        let schema = registry.schema(id).await.unwrap();
        let before = schema.json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "before")
            .unwrap();
        let fields = before["type"][1]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), columns().count(), "version {version}");
        for (field, (name, source_type, ty)) in fields.iter().zip(columns()) {
            assert_eq!(field["ferry.column"], name, "version {version}");
            assert_eq!(
                field["ferry.source_type"], source_type,
                "version {version}, column {name}"
            );
            assert_eq!(field["ferry.type"], ty.to_string(), "version {version}, column {name}");
        }
    }
}

#[tokio::test]
async fn every_type_round_trips_exactly_through_snapshot_and_stream() {
    let started = Instant::now();
    let db = PgDatabase::create();
    // Defaults that print every value differently from the settings capture pins,
    // so a session of capture's that missed them would show in its values.
    let name = &db.name;
    db.execute(&format!(
        "ALTER DATABASE {name} SET DateStyle = 'SQL, DMY';
         ALTER DATABASE {name} SET TimeZone = 'America/St_Johns';
         ALTER DATABASE {name} SET IntervalStyle = 'postgres_verbose';
         ALTER DATABASE {name} SET bytea_output = 'escape';
         ALTER DATABASE {name} SET extra_float_digits = -3;"
    ))
    .await;
    let table: Vec<String> = COLUMNS.iter().map(|c| format!("{} {}", c.name, c.ddl)).collect();
    db.execute(&format!(
        "{TYPES}
         CREATE TABLE every_type (id bigint PRIMARY KEY, {});
         ALTER TABLE every_type REPLICA IDENTITY FULL;",
        table.join(", ")
    ))
    .await;
    let client = oracle(&db).await;

    // The type names this file expects are PostgreSQL's own.
    let catalog: Vec<(String, String)> = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'every_type'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let listed: Vec<(String, String)> = columns().map(|(n, t, _)| (n.to_owned(), t.to_owned())).collect();
    assert_eq!(catalog, listed);

    // Rows 1..=7 hold the value rows and 8 is all NULL; read by the snapshot.
    let value_rows = (0..ROWS).map(Some).chain([None]);
    let snapshot_ids: Vec<i64> = (1..=8).collect();
    let streamed_ids: Vec<i64> = (11..=18).collect();
    let inserts = |ids: &[i64]| -> String {
        ids.iter()
            .zip(value_rows.clone())
            .map(|(id, row)| insert(*id, row))
            .collect()
    };
    db.execute(&inserts(&snapshot_ids)).await;

    let prefix = unique("pgtypes");
    let topic = format!("{prefix}.public.every_type");
    let brokers = ferry_tests::brokers();
    let capture = Running::start(
        "ferry-capture-postgres",
        &["--source", &db.url(), "--prefix", &prefix, "--brokers", &brokers],
    );
    ferry_tests::wait_streaming(&db, &prefix).await;

    // The same rows again while streaming, then updates (NULL to values, values
    // to other values, values to NULL) and a delete.
    db.execute(&inserts(&streamed_ids)).await;
    let before_changes = pg_rows(&client).await;
    let updated = [(8, Some(0)), (2, Some(4)), (13, None), (17, Some(1))];
    let deleted = 14;
    let changes: String = updated.iter().map(|(id, row)| update(*id, *row)).collect();
    db.execute(&format!("{changes} DELETE FROM every_type WHERE id = {deleted};"))
        .await;
    let after_changes = pg_rows(&client).await;
    assert_eq!(before_changes.len(), 16);

    // What each event must carry: (op, id) -> (PostgreSQL's `before`, `after`).
    let mut expected: BTreeMap<(&str, i64), OldAndNew> = BTreeMap::new();
    for id in &snapshot_ids {
        expected.insert((Op::Read.code(), *id), (None, Some(&before_changes[id])));
    }
    for id in &streamed_ids {
        expected.insert((Op::Create.code(), *id), (None, Some(&before_changes[id])));
    }
    for (id, _) in &updated {
        let row = (Some(&before_changes[id]), Some(&after_changes[id]));
        expected.insert((Op::Update.code(), *id), row);
    }
    expected.insert((Op::Delete.code(), deleted), (Some(&before_changes[&deleted]), None));

    let keys: BTreeSet<_> = expected.keys().copied().collect();
    let events = read_events(&topic, &keys).await;
    let mut problems = Vec::new();
    let mut compared = 0;
    let mut non_null: BTreeSet<&str> = BTreeSet::new();
    for event in &events {
        let key = event_key(event);
        let Some((before, after)) = expected.get(&key) else {
            problems.push(format!("unexpected event {key:?}"));
            continue;
        };
        let what = format!("op {} id {}", key.0, key.1);
        if !event.unchanged.is_empty() {
            problems.push(format!("{what}: values not sent: {:?}", event.unchanged));
        }
        for (side, want, got) in [("before", before, &event.before), ("after", after, &event.after)] {
            match want {
                Some(want) => {
                    compared += compare_row(&format!("{what} {side}"), got.as_ref(), want, &mut problems);
                    for (value, (name, _, _)) in want.iter().zip(columns()) {
                        if value.text.is_some() {
                            non_null.insert(name);
                        }
                    }
                }
                None if got.is_some() => problems.push(format!("{what}: unexpected {side} row")),
                None => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Every row of every event was compared, and every column with values, not only NULLs.
    let rows_compared = expected
        .values()
        .map(|(b, a)| usize::from(b.is_some()) + usize::from(a.is_some()));
    assert!(compared >= rows_compared.sum::<usize>() * columns().count());
    assert_eq!(non_null.len(), columns().count());

    assert_schemas_name_the_types(&topic).await;
    assert!(capture.terminate().success(), "clean stop");
    eprintln!(
        "{} events, {compared} values of {} columns compared in {:?}",
        events.len(),
        columns().count(),
        started.elapsed()
    );
}
