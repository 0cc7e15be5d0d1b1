//! MongoDB: change-stream documents through Ferry's real conversion and
//! publisher into Kafka, then ferry-apply-postgres into `(id text, doc jsonb)`
//! tables — here, with no MongoDB server. And, where `FERRY_TEST_MONGODB_URI`
//! points at a replica set, `mongodb_live_*`: the binary end to end (snapshot
//! and stream, resume after kill -9, history lost). Without it those report
//! that they were skipped and why (scripts/test leaves them out and says so).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson, Document};
use ferry_capture::mongodb::change::{self, Change, Reading};
use ferry_capture::offsets::{snapshot_key, Offsets, SnapshotState, DEFAULT_TOPIC};
use ferry_capture::publish::{Publisher, PublisherSettings};
use ferry_core::envelope::Connector;
use ferry_core::kafka::KafkaSettings;
use ferry_core::position::{ClusterTime, SourcePosition};
use ferry_core::registry::RegistryClient;
use ferry_tests::mariadb::{text_rows, MariaDatabase};
use ferry_tests::{
    apply_until_exit, brokers, pg_text_rows, start_apply, start_apply_with, unique, wait_rows, PgDatabase, Running,
    SERVICES_REGISTRY,
};

const DEADLINE: Duration = Duration::from_secs(60);

fn kafka() -> KafkaSettings {
    KafkaSettings {
        brokers: brokers(),
        options: Default::default(),
    }
}

async fn publisher(prefix: &str) -> Publisher {
    let registry = Arc::new(RegistryClient::new(&SERVICES_REGISTRY.parse().unwrap()).unwrap());
    let settings = PublisherSettings {
        kafka: kafka(),
        prefix: prefix.to_owned(),
        connector: Connector::Mongodb,
        partitions: 3,
        tombstones: true,
        transaction_topic: true,
        exactly_once: false,
        offsets_topic: DEFAULT_TOPIC.to_owned(),
    };
    Publisher::start(settings, registry).await.unwrap()
}

/// A change-stream document in the shape the server sends (see the fixtures
/// in capture/src/mongodb/fixtures), for collection `db.coll`.
fn event(n: u32, db: &str, coll: &str, operation: &str, fields: Document) -> Document {
    let mut d = doc! {
        "_id": {"_data": format!("8263A1B2C3{n:08X}2B022C0100296E5A1004")},
        "operationType": operation,
        "clusterTime": Bson::Timestamp(bson::Timestamp { time: 1_700_000_000 + n, increment: 1 }),
        "wallTime": bson::DateTime::from_millis(1_700_000_000_000 + i64::from(n) * 1000),
        "ns": {"db": db, "coll": coll},
    };
    d.extend(fields);
    d
}

/// Converts and publishes `docs` as capture does, checkpointing each.
async fn publish(publisher: &mut Publisher, prefix: &str, docs: &[Document], full_document: bool) {
    let reading = Reading { prefix, full_document };
    for d in docs {
        let read = change::read(d, reading).unwrap();
        match read.change {
            Change::Document {
                collection,
                event,
                gone,
            } => {
                if !publisher.has_collection(&collection) {
                    publisher.register_collection(collection.clone()).await.unwrap();
                }
                publisher.send_document(&collection, &event, gone).await.unwrap();
            }
            Change::Gone { collection, event, .. } => {
                publisher.send_document(&collection, &event, false).await.unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
        publisher
            .checkpoint(SourcePosition::Mongodb {
                token: Some(read.token),
                cluster_time: None,
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn mongodb_events_apply_to_postgres_as_json_documents() {
    let prefix = unique("mg");
    let (db, coll) = ("shop", unique("orders"));
    let oid = bson::oid::ObjectId::parse_str("5f1e2d3c4b5a697887766554").unwrap();
    let full = |id: Bson, body: Document| {
        let mut d = doc! {"_id": id};
        d.extend(body);
        d
    };
    let docs = vec![
        event(
            1,
            db,
            &coll,
            "insert",
            doc! {
                "documentKey": {"_id": oid},
                "fullDocument": full(Bson::ObjectId(oid), doc! {"qty": 5_i32, "big": 9_007_199_254_740_993_i64,
                    "price": "12.50".parse::<bson::Decimal128>().unwrap(), "tags": ["a", ["b", 1_i32]],
                    "at": bson::DateTime::from_millis(1_700_000_000_123)}),
            },
        ),
        event(
            2,
            db,
            &coll,
            "insert",
            doc! {
                "documentKey": {"_id": "abc"}, "fullDocument": {"_id": "abc", "name": "first"},
            },
        ),
        event(
            3,
            db,
            &coll,
            "update",
            doc! {
                "documentKey": {"_id": oid},
                "updateDescription": {"updatedFields": {"qty": 6_i32}, "removedFields": ["big"], "truncatedArrays": []},
                "fullDocument": full(Bson::ObjectId(oid), doc! {"qty": 6_i32, "price": "12.50".parse::<bson::Decimal128>().unwrap(),
                    "tags": ["a", ["b", 1_i32]], "at": bson::DateTime::from_millis(1_700_000_000_123)}),
            },
        ),
        event(
            4,
            db,
            &coll,
            "replace",
            doc! {
                "documentKey": {"_id": "abc"}, "fullDocument": {"_id": "abc", "name": "second", "n": 1.5_f64},
            },
        ),
        event(
            5,
            db,
            &coll,
            "insert",
            doc! {"documentKey": {"_id": 7_i32}, "fullDocument": {"_id": 7_i32, "gone": true}},
        ),
        // The document was deleted before the lookup: skipped, its delete follows.
        event(
            6,
            db,
            &coll,
            "update",
            doc! {
                "documentKey": {"_id": 7_i32},
                "updateDescription": {"updatedFields": {"gone": false}, "removedFields": []},
                "fullDocument": Bson::Null,
            },
        ),
        event(7, db, &coll, "delete", doc! {"documentKey": {"_id": 7_i32}}),
        event(
            8,
            db,
            &coll,
            "insert",
            doc! {
                "documentKey": {"_id": 8_i64}, "fullDocument": {"_id": 8_i64, "in": "transaction"},
                "lsid": {"id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![7; 16] }},
                "txnNumber": 3_i64,
            },
        ),
    ];
    let mut p = publisher(&prefix).await;
    publish(&mut p, &prefix, &docs, true).await;

    let target = PgDatabase::create();
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    let client = target.client().await;
    let sql = format!("SELECT id, doc::text FROM \"{coll}\"");
    let want = vec![
        r#""abc"|{"n": 1.5, "_id": "abc", "name": "second"}"#.to_owned(),
        r#"8|{"in": "transaction", "_id": 8}"#.to_owned(),
        concat!(
            r#"{"$oid":"5f1e2d3c4b5a697887766554"}|{"at": {"$date": "2023-11-14T22:13:20.123Z"}, "_id": {"$oid": "5f1e2d3c4b5a697887766554"}, "qty": 6, "tags": ["a", ["b", 1]], "#,
            r#""price": {"$numberDecimal": "12.50"}}"#
        )
        .to_owned(),
    ];
    let mut want_sorted = want.clone();
    want_sorted.sort();
    wait_rows(
        "documents in PostgreSQL",
        DEADLINE,
        || async { want_sorted.clone() },
        || async { pg_text_rows(&client, &sql).await.unwrap_or_default() },
    )
    .await;
    // jsonb reads as JSON: numbers are numbers.
    let qty: i32 = client
        .query_one(
            &format!("SELECT (doc->>'qty')::int FROM \"{coll}\" WHERE doc ? 'qty'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(qty, 6);

    // Dropping the collection empties the table.
    publish(&mut p, &prefix, &[event(9, db, &coll, "drop", doc! {})], true).await;
    p.finish().await.unwrap();
    wait_rows(
        "the dropped collection's table",
        DEADLINE,
        || async { Vec::new() },
        || async { pg_text_rows(&client, &sql).await.unwrap_or_else(|| vec!["?".into()]) },
    )
    .await;
    apply.terminate();
}

#[tokio::test]
async fn mongodb_update_without_the_whole_document_stops_apply_naming_the_fix() {
    let prefix = unique("mg");
    let coll = unique("items");
    let docs = vec![
        event(
            1,
            "shop",
            &coll,
            "insert",
            doc! {"documentKey": {"_id": 1_i32}, "fullDocument": {"_id": 1_i32, "a": 1_i32}},
        ),
        event(
            2,
            "shop",
            &coll,
            "update",
            doc! {
                "documentKey": {"_id": 1_i32},
                "updateDescription": {"updatedFields": {"a": 2_i32}, "removedFields": []},
            },
        ),
    ];
    let mut p = publisher(&prefix).await;
    publish(&mut p, &prefix, &docs, false).await;
    p.finish().await.unwrap();
    let target = PgDatabase::create();
    let (ok, last) = apply_until_exit("ferry-apply-postgres", &target.url(), &prefix, DEADLINE).await;
    assert!(!ok, "apply should stop");
    assert!(last.contains("--full-document updateLookup"), "{last}");
    // Nothing of the batch was applied.
    let client = target.client().await;
    let rows = pg_text_rows(&client, &format!("SELECT id FROM \"{coll}\"")).await;
    assert!(rows.as_ref().is_none_or(|r| r.len() <= 1), "{rows:?}");
}

#[tokio::test]
async fn mongodb_events_apply_to_mariadb_as_json_text() {
    let prefix = unique("mg");
    let coll = unique("people");
    let docs = vec![
        event(
            1,
            "crm",
            &coll,
            "insert",
            doc! {"documentKey": {"_id": "ann"}, "fullDocument": {"_id": "ann", "age": 41_i32}},
        ),
        event(
            2,
            "crm",
            &coll,
            "insert",
            doc! {"documentKey": {"_id": "bob"}, "fullDocument": {"_id": "bob", "age": 29_i32}},
        ),
        event(
            3,
            "crm",
            &coll,
            "replace",
            doc! {"documentKey": {"_id": "ann"}, "fullDocument": {"_id": "ann", "age": 42_i32, "city": "Oslo"}},
        ),
        event(4, "crm", &coll, "delete", doc! {"documentKey": {"_id": "bob"}}),
    ];
    let mut p = publisher(&prefix).await;
    publish(&mut p, &prefix, &docs, true).await;
    p.finish().await.unwrap();
    let target = MariaDatabase::create().await;
    let apply = start_apply_with("ferry-apply-mysql", &target.url(), &prefix, &unique("g"), &[]);
    let conn = tokio::sync::Mutex::new(target.conn().await);
    let sql = format!("SELECT id, JSON_VALUE(doc, '$.age'), JSON_VALUE(doc, '$.city') FROM `{coll}`");
    wait_rows(
        "documents in MariaDB",
        DEADLINE,
        || async { vec![r#""ann"|42|Oslo"#.to_owned()] },
        || async { text_rows(&mut *conn.lock().await, &sql).await.unwrap_or_default() },
    )
    .await;
    apply.terminate();
}

/// The replica set of `FERRY_TEST_MONGODB_URI`, or `None` (the test then
/// reports that it was skipped, and why).
fn live() -> Option<String> {
    match std::env::var("FERRY_TEST_MONGODB_URI") {
        Ok(uri) if !uri.is_empty() => Some(uri),
        _ => {
            eprintln!(
                "SKIPPED: FERRY_TEST_MONGODB_URI is not set; MongoDB end-to-end tests need a replica set \
                 (docker compose up mongodb, then FERRY_TEST_MONGODB_URI='mongodb://127.0.0.1:27017/?replicaSet=rs0')"
            );
            None
        }
    }
}

fn start_capture(uri: &str, prefix: &str, db: &str, extra: &[&str]) -> Running {
    let collections = format!("{db}.*");
    let broker = brokers();
    let mut args = vec![
        "--source",
        uri,
        "--prefix",
        prefix,
        "--collections",
        &collections,
        "--brokers",
        &broker,
    ];
    args.extend(extra);
    Running::start("ferry-capture-mongodb", &args)
}

/// Every document of `db.coll` as the target's `id|doc` rows would print
/// them (relaxed extended JSON, keys as jsonb orders them).
async fn source_rows(client: &mongodb::Client, db: &str, coll: &str, target: &tokio_postgres::Client) -> Vec<String> {
    use futures::TryStreamExt;
    let docs: Vec<Document> = client
        .database(db)
        .collection::<Document>(coll)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut rows = Vec::new();
    for d in docs {
        let id = ferry_core::document::extjson::relaxed(d.get("_id").unwrap());
        let json = ferry_core::document::extjson::relaxed(&Bson::Document(d));
        // Let PostgreSQL print it, as the target does.
        let doc: String = target
            .query_one("SELECT $1::text::jsonb::text", &[&json])
            .await
            .unwrap()
            .get(0);
        rows.push(format!("{id}|{doc}"));
    }
    rows.sort();
    rows
}

async fn wait_target_equals(mongo: &mongodb::Client, db: &str, coll: &str, target: &PgDatabase) {
    let client = target.client().await;
    let sql = format!("SELECT id, doc::text FROM \"{coll}\"");
    wait_rows(
        &format!("collection {db}.{coll}"),
        Duration::from_secs(120),
        || source_rows(mongo, db, coll, &client),
        || async { pg_text_rows(&client, &sql).await.unwrap_or_default() },
    )
    .await;
}

#[tokio::test]
async fn mongodb_live_snapshot_then_stream_reach_postgres() {
    let Some(uri) = live() else { return };
    let mongo = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let (db, prefix) = (unique("ferry"), unique("mg"));
    let orders = mongo.database(&db).collection::<Document>("orders");
    let before: Vec<Document> = (0..500_i32)
        .map(|i| doc! {"_id": i, "qty": i, "kind": "snapshot"})
        .collect();
    orders.insert_many(before).await.unwrap();
    let capture = start_capture(&uri, &prefix, &db, &["--snapshot-chunk-docs", "100"]);
    let target = PgDatabase::create();
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    for i in 0..100_i32 {
        orders
            .update_one(doc! {"_id": i}, doc! {"$inc": {"qty": 1000}, "$unset": {"kind": ""}})
            .await
            .unwrap();
    }
    orders.delete_many(doc! {"_id": {"$gte": 400}}).await.unwrap();
    orders
        .insert_one(doc! {"_id": bson::oid::ObjectId::new(), "dec": "1.10".parse::<bson::Decimal128>().unwrap()})
        .await
        .unwrap();
    let mut session = mongo.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    orders
        .insert_one(doc! {"_id": "tx-1"})
        .session(&mut session)
        .await
        .unwrap();
    orders
        .replace_one(doc! {"_id": 200}, doc! {"replaced": true})
        .session(&mut session)
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();
    wait_target_equals(&mongo, &db, "orders", &target).await;
    capture.terminate();
    apply.terminate();
    mongo.database(&db).drop().await.unwrap();
}

#[tokio::test]
async fn mongodb_live_kill9_of_capture_loses_nothing() {
    let Some(uri) = live() else { return };
    let mongo = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let (db, prefix) = (unique("ferry"), unique("mg"));
    let items = mongo.database(&db).collection::<Document>("items");
    items.insert_one(doc! {"_id": 0_i64, "n": 0_i64}).await.unwrap();
    let target = PgDatabase::create();
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    let mut capture = start_capture(&uri, &prefix, &db, &[]);
    for round in 1..=3_i64 {
        for i in 0..200_i64 {
            items
                .update_one(doc! {"_id": i % 20}, doc! {"$inc": {"n": 1_i64}})
                .upsert(true)
                .await
                .unwrap();
        }
        capture.kill9();
        items
            .insert_one(doc! {"_id": 1000 + round, "while": "down"})
            .await
            .unwrap();
        capture = start_capture(&uri, &prefix, &db, &[]);
    }
    wait_target_equals(&mongo, &db, "items", &target).await;
    capture.terminate();
    apply.terminate();
    mongo.database(&db).drop().await.unwrap();
}

/// A snapshot whose connection the server closes mid-read starts again in
/// the process: it never exits, counts the restart, and the target ends equal
/// to the source, deletes made meanwhile included. The server closes it by the
/// `failCommand` fail point (a test command: docker-compose.yml starts MongoDB
/// with `enableTestCommands`; on a server without it the test says so and
/// skips).
#[tokio::test]
async fn mongodb_live_snapshot_that_loses_its_connection_starts_again_in_place() {
    let Some(uri) = live() else { return };
    let mongo = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let (db, prefix) = (unique("ferry"), unique("mg"));
    let items = mongo.database(&db).collection::<Document>("items");
    let docs: Vec<Document> = (0..20_000_i64).map(|i| doc! {"_id": i, "n": i}).collect();
    items.insert_many(docs).await.unwrap();
    // The capture's first getMore, the snapshot's second batch, ends with its
    // connection closed.
    let fail = mongo
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": {"times": 1},
            "data": {"failCommands": ["getMore"], "closeConnection": true, "appName": "ferry-capture-mongodb"},
        })
        .await;
    if let Err(e) = fail {
        eprintln!("SKIPPED: the server refuses the failCommand fail point (start it with --setParameter enableTestCommands=1): {e}");
        mongo.database(&db).drop().await.unwrap();
        return;
    }
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let capture = start_capture(&uri, &prefix, &db, &["--metrics", &metrics]);
    let target = PgDatabase::create();
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    items.delete_many(doc! {"_id": {"$lt": 1000_i64}}).await.unwrap();
    items
        .update_many(doc! {"_id": {"$gte": 19_000_i64}}, doc! {"$set": {"n": -1_i64}})
        .await
        .unwrap();
    wait_target_equals(&mongo, &db, "items", &target).await;
    let restarts = ferry_tests::workload::metric(&metrics, "ferry_capture_reconnects_total").await;
    assert!(restarts >= 1.0, "the snapshot started again in place {restarts} times");
    assert!(capture.terminate().success(), "capture ran on and stopped cleanly");
    apply.terminate();
    mongo.database(&db).drop().await.unwrap();
}

#[tokio::test]
async fn mongodb_live_history_lost_is_a_clear_error_and_when_needed_reads_again() {
    let Some(uri) = live() else { return };
    let mongo = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let (db, prefix) = (unique("ferry"), unique("mg"));
    mongo
        .database(&db)
        .collection::<Document>("c")
        .insert_one(doc! {"_id": 1_i32})
        .await
        .unwrap();
    // A stored position from long before the oplog's start.
    let offsets = Offsets::open(&kafka(), DEFAULT_TOPIC).await.unwrap();
    let ancient = SourcePosition::Mongodb {
        token: None,
        cluster_time: Some(ClusterTime { t: 1, i: 1 }),
    };
    offsets.store(&prefix, &ancient).await.unwrap();
    let mut state = SnapshotState::default();
    state.complete(ferry_core::meta::TableId::new(db.clone(), "c"), ancient.clone());
    offsets.store(&snapshot_key(&prefix), &state).await.unwrap();

    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(ferry_tests::binary("ferry-capture-mongodb"))
            .args([
                "--source",
                &uri,
                "--prefix",
                &prefix,
                "--collections",
                &format!("{db}.*"),
            ])
            .args(["--brokers", &brokers()])
            .output(),
    )
    .await
    .expect("capture should stop by itself")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("oplog no longer reaches back") && stderr.contains("--snapshot when_needed"),
        "{stderr}"
    );

    let capture = start_capture(&uri, &prefix, &db, &["--snapshot", "when_needed"]);
    let target = PgDatabase::create();
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    wait_target_equals(&mongo, &db, "c", &target).await;
    capture.terminate();
    apply.terminate();
    mongo.database(&db).drop().await.unwrap();
}

/// `--snapshot always` reads every collection again from a new cluster time,
/// so a document deleted while capture was stopped is in no event: the
/// collection's topic gets a truncate before the new reading, and the target
/// that applied the first reading ends without the document.
#[tokio::test]
async fn mongodb_live_always_truncates_before_reading_again() {
    let Some(uri) = live() else { return };
    let mongo = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let (db, prefix) = (unique("ferry"), unique("mg"));
    let c = mongo.database(&db).collection::<Document>("c");
    c.insert_many([doc! {"_id": 1_i32}, doc! {"_id": 2_i32}, doc! {"_id": 3_i32}])
        .await
        .unwrap();
    let capture = start_capture(&uri, &prefix, &db, &[]);
    let target = PgDatabase::create();
    let apply = start_apply(&target, &prefix, &unique("g"), &[]);
    wait_target_equals(&mongo, &db, "c", &target).await;
    assert!(capture.terminate().success());
    c.delete_one(doc! {"_id": 2_i32}).await.unwrap();

    let capture = start_capture(&uri, &prefix, &db, &["--snapshot", "always"]);
    wait_target_equals(&mongo, &db, "c", &target).await;
    assert!(capture.terminate().success());
    apply.terminate();
    mongo.database(&db).drop().await.unwrap();
}
