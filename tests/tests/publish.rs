//! The capture publisher against the real broker and registry: events arrive
//! in the Confluent wire format and decode to what was sent, deletes get
//! tombstones, and a position is acknowledged only once Kafka holds every event
//! before it — never after a failed delivery.

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ferry_capture::offsets::Offsets;
use ferry_capture::publish::{Publisher, PublisherSettings};
use ferry_core::codec::TableCodec;
use ferry_core::envelope::{ChangeEvent, Connector, Op, Snapshot, SourceDetail, SourceInfo};
use ferry_core::kafka::KafkaSettings;
use ferry_core::meta::{Column, DataType, TableId, TableMeta};
use ferry_core::position::{PgLsn, SourcePosition};
use ferry_core::registry::RegistryClient;
use ferry_core::value::Datum;
use ferry_core::wire;
use ferry_tests::{brokers, unique, PrivateBroker, Registry};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

fn table() -> TableMeta {
    TableMeta::new(
        TableId::new("public", "orders"),
        vec![
            Column::new("id", DataType::Int64, "bigint").not_null(),
            Column::new("note", DataType::Text, "text"),
        ],
        &["id"],
    )
    .unwrap()
}

fn event(op: Op, id: i64, note: Option<&str>, lsn: u64) -> ChangeEvent {
    let row = vec![Datum::Int(id), note.map_or(Datum::Null, |n| Datum::Text(n.into()))];
    ChangeEvent {
        op,
        before: matches!(op, Op::Update | Op::Delete).then(|| row.clone()),
        after: (op != Op::Delete).then_some(row),
        source: SourceInfo {
            name: "p".into(),
            ts_ms: 1,
            snapshot: Snapshot::False,
            db: "db".into(),
            detail: SourceDetail::Postgres {
                schema: "public".into(),
                table: "orders".into(),
                tx_id: Some(1),
                lsn: Some(PgLsn(lsn)),
            },
        },
        ts_ms: 2,
        transaction: None,
        unchanged: vec![],
    }
}

fn settings(prefix: &str, kafka: KafkaSettings, offsets_topic: &str) -> PublisherSettings {
    PublisherSettings {
        kafka,
        prefix: prefix.to_owned(),
        connector: Connector::Postgres,
        partitions: 3,
        tombstones: true,
        transaction_topic: true,
        exactly_once: false,
        offsets_topic: offsets_topic.to_owned(),
    }
}

fn position(lsn: u64) -> SourcePosition {
    SourcePosition::Postgres { lsn: PgLsn(lsn) }
}

/// A registry of the test's own, and a publisher with `orders` registered.
async fn start_publisher(
    kafka: KafkaSettings,
    prefix: &str,
    offsets_topic: &str,
) -> (Registry, Arc<RegistryClient>, Publisher) {
    let registry = Registry::start().await;
    let client = Arc::new(RegistryClient::new(&registry.url.parse().unwrap()).unwrap());
    let mut publisher = Publisher::start(settings(prefix, kafka, offsets_topic), client.clone())
        .await
        .unwrap();
    publisher.register_table(table()).await.unwrap();
    (registry, client, publisher)
}

/// Sends one insert with its checkpoint and waits until it is acknowledged.
async fn send_acknowledged(publisher: &mut Publisher, id: i64, lsn: u64) {
    publisher
        .send(&table().id, &event(Op::Create, id, Some("kept"), lsn))
        .await
        .unwrap();
    checkpoint_acknowledged(publisher, lsn).await;
}

/// Checkpoints `lsn` after what was sent and waits until it is acknowledged.
async fn checkpoint_acknowledged(publisher: &mut Publisher, lsn: u64) {
    publisher.checkpoint(position(lsn)).await.unwrap();
    let mut acked = publisher.acknowledged();
    tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|p| *p == Some(position(lsn))))
        .await
        .expect("acknowledged in time")
        .unwrap();
}

/// The first `n` messages of `topic`: partition, key, and value decoded
/// through the registry (`None`: a tombstone).
async fn read_decoded(client: &RegistryClient, topic: &str, n: usize) -> Vec<(i32, Vec<u8>, Option<ChangeEvent>)> {
    let consumer: StreamConsumer = KafkaSettings::new(brokers()).consumer(&unique("g")).create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut messages = Vec::with_capacity(n);
    for _ in 0..n {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        let value = match m.payload() {
            None => None,
            Some(bytes) => {
                let (id, datum) = wire::decode(bytes).unwrap();
                let schema = client.schema(id).await.unwrap();
                Some(
                    TableCodec::from_value_schema(&schema.json)
                        .unwrap()
                        .decode_value(datum)
                        .unwrap(),
                )
            }
        };
        messages.push((m.partition(), m.key().unwrap_or_default().to_vec(), value));
    }
    messages
}

#[tokio::test]
async fn events_reach_kafka_and_positions_follow_them() {
    let prefix = unique("pub");
    let offsets_topic = unique("_ferry_offsets_test");
    let (_registry, client, mut publisher) =
        start_publisher(KafkaSettings::new(brokers()), &prefix, &offsets_topic).await;
    let sent = [
        event(Op::Create, 1, Some("a"), 10),
        event(Op::Update, 1, Some("b"), 20),
        event(Op::Delete, 1, Some("b"), 30),
        event(Op::Create, 2, None, 40),
    ];
    let t = table().id;
    publisher.send(&t, &sent[0]).await.unwrap();
    publisher.checkpoint(position(10)).await.unwrap();
    for e in &sent[1..] {
        publisher.send(&t, e).await.unwrap();
    }
    checkpoint_acknowledged(&mut publisher, 40).await;
    publisher.finish().await.unwrap();

    // The stored position is the acknowledged one.
    let offsets = Offsets::open(&KafkaSettings::new(brokers()), &offsets_topic)
        .await
        .unwrap();
    assert_eq!(
        offsets.load::<SourcePosition>(&prefix).await.unwrap(),
        Some(position(40))
    );

    // Every message decodes through the registry to what was sent, in order per key.
    let mut by_key: std::collections::BTreeMap<Vec<u8>, Vec<Option<ChangeEvent>>> = Default::default();
    for (_, key, value) in read_decoded(&client, &format!("{prefix}.public.orders"), 5).await {
        assert!(!key.is_empty(), "every message has a key");
        by_key.entry(key).or_default().push(value);
    }
    let streams: Vec<Vec<Option<ChangeEvent>>> = by_key.into_values().collect();
    assert!(streams.contains(&vec![
        Some(sent[0].clone()),
        Some(sent[1].clone()),
        Some(sent[2].clone()),
        None
    ]));
    assert!(streams.contains(&vec![Some(sent[3].clone())]));
}

/// An event Kafka cannot take is refused at the call, naming why, whether
/// sent alone or in a snapshot's batch (the snapshot then stops, and reads
/// the table again when started again).
#[tokio::test]
async fn an_event_kafka_cannot_take_is_refused_at_send() {
    let mut kafka = KafkaSettings::new(brokers());
    kafka.options.insert("message.max.bytes".into(), "2000".into());
    let (_registry, _, mut publisher) = start_publisher(kafka, &unique("pubbig"), &unique("_ferry_offsets_test")).await;
    send_acknowledged(&mut publisher, 1, 10).await;
    let t = table().id;
    let large = "x".repeat(5000);
    let err = publisher
        .send(&t, &event(Op::Create, 2, Some(&large), 20))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    assert_eq!(*publisher.acknowledged().borrow(), Some(position(10)));

    let encoder = publisher.encoder(&t).unwrap();
    let batch: Vec<_> = [(3, "small"), (4, &*large), (5, "small")]
        .into_iter()
        .map(|(id, note)| encoder.encode(&event(Op::Read, id, Some(note), 0)).unwrap())
        .collect();
    let err = publisher
        .send_encoded(&t, &batch.iter().collect::<Vec<_>>())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
}

#[tokio::test]
async fn a_failed_delivery_stops_acknowledgement() {
    let broker = PrivateBroker::start().await;
    let mut kafka = KafkaSettings::new(&broker.address);
    kafka.options.insert("message.timeout.ms".into(), "3000".into());
    let prefix = unique("pubfail");
    let (_registry, _, mut publisher) = start_publisher(kafka, &prefix, "_ferry_offsets").await;
    send_acknowledged(&mut publisher, 1, 10).await;
    let t = table().id;

    // The broker hangs: the next event cannot be delivered.
    broker.freeze();
    publisher
        .send(&t, &event(Op::Create, 2, Some("lost"), 20))
        .await
        .unwrap();
    publisher.checkpoint(position(20)).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), publisher.failed())
        .await
        .unwrap();
    assert!(err.to_string().contains("did not take an event"), "{err}");
    assert!(err.is_retryable());
    assert_eq!(*publisher.acknowledged().borrow(), Some(position(10)));
    let again = publisher.checkpoint(position(30)).await.unwrap_err();
    assert!(again.to_string().contains("did not take an event"), "{again}");

    // What is stored is the last good position.
    broker.thaw();
    let offsets = Offsets::open(&KafkaSettings::new(&broker.address), "_ferry_offsets")
        .await
        .unwrap();
    assert_eq!(
        offsets.load::<SourcePosition>(&prefix).await.unwrap(),
        Some(position(10))
    );
}

/// `n` snapshot events of `table` (ids 1..=n), encoded as a snapshot's workers
/// encode them, sent in batches of 1,000 as a worker hands them over.
async fn send_snapshot_batches(publisher: &mut Publisher, table: &TableId, n: i64) {
    let encoder = publisher.encoder(table).unwrap();
    let ids: Vec<i64> = (1..=n).collect();
    for chunk in ids.chunks(1_000) {
        let encoded: Vec<_> = chunk
            .iter()
            .map(|&id| {
                let mut e = event(Op::Read, id, Some("row"), 0);
                e.source.snapshot = Snapshot::True;
                encoder.encode(&e).unwrap()
            })
            .collect();
        let refs: Vec<_> = encoded.iter().collect();
        publisher.send_encoded(table, &refs).await.unwrap();
    }
}

/// Per partition, the ids of the rows of the first `n` messages of `topic`, in order.
async fn ids_by_partition(client: &RegistryClient, topic: &str, n: usize) -> std::collections::BTreeMap<i32, Vec<i64>> {
    let mut by_partition: std::collections::BTreeMap<i32, Vec<i64>> = Default::default();
    for (partition, _, event) in read_decoded(client, topic, n).await {
        let Datum::Int(id) = event.and_then(|e| e.after).unwrap()[0] else {
            panic!("an int id")
        };
        by_partition.entry(partition).or_default().push(id);
    }
    by_partition
}

/// A snapshot's batches go to the producer in one call each; with a queue of
/// 50 messages almost every call finds it full part way. Every event still
/// arrives once, in order within its partition, and the position after them
/// is acknowledged only once they are all in Kafka.
#[tokio::test]
async fn snapshot_batches_through_a_full_queue_arrive_once_in_order() {
    const ROWS: i64 = 5_000;
    let mut kafka = KafkaSettings::new(brokers());
    kafka.options.insert("queue.buffering.max.messages".into(), "50".into());
    let prefix = unique("pubbatch");
    let (_registry, client, mut publisher) = start_publisher(kafka, &prefix, &unique("_ferry_offsets_test")).await;
    let orders = table();
    let keyless = TableMeta::new(TableId::new("public", "events"), orders.columns.clone(), &[]).unwrap();
    publisher.register_table(keyless.clone()).await.unwrap();
    send_snapshot_batches(&mut publisher, &table().id, ROWS).await;
    send_snapshot_batches(&mut publisher, &keyless.id, ROWS).await;
    checkpoint_acknowledged(&mut publisher, 10).await;
    publisher.finish().await.unwrap();
    assert_eq!(ferry_tests::topic_count(&format!("{prefix}.public.orders")), ROWS);

    let keyed = ids_by_partition(&client, &format!("{prefix}.public.orders"), ROWS as usize).await;
    assert!(keyed.len() > 1, "keys spread over the partitions: {:?}", keyed.keys());
    let mut all: Vec<i64> = Vec::new();
    for ids in keyed.values() {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order within a partition");
        all.extend(ids);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=ROWS).collect::<Vec<_>>(), "each id once");

    // A keyless table's events all go to partition 0, in order.
    let events = ids_by_partition(&client, &format!("{prefix}.public.events"), ROWS as usize).await;
    assert_eq!(events.keys().collect::<Vec<_>>(), [&0]);
    assert_eq!(events[&0], (1..=ROWS).collect::<Vec<_>>());
}
