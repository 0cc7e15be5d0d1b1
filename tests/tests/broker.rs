//! Broker conformance: what Ferry relies on from a Kafka-compatible broker.
//!
//! Runs against whatever broker `FERRY_TEST_BROKERS` points at (the dev broker by
//! default), so changing the broker is one setting and one run. Transactions are
//! checked only where the broker claims them (`FERRY_BROKER_TRANSACTIONS=true`);
//! Ferry itself is correct without them.

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use ferry_core::kafka::{ensure_topics, KafkaSettings, TopicSpec};
use ferry_tests::{brokers, repo_root, skip_without_transactions, unique};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn settings() -> KafkaSettings {
    KafkaSettings::new(brokers())
}

async fn new_topic(partitions: i32) -> String {
    let name = unique("conformance");
    let admin = settings().admin().expect("admin client");
    ensure_topics(
        &admin,
        &[TopicSpec {
            name: name.clone(),
            partitions,
            compacted: false,
        }],
    )
    .await
    .expect("create topic");
    name
}

fn producer() -> FutureProducer {
    settings().producer().create().expect("producer")
}

/// Sends and waits for the broker's acknowledgement: (partition, offset).
async fn send(p: &FutureProducer, topic: &str, key: &str, payload: &str) -> (i32, i64) {
    let delivery = p
        .send(FutureRecord::to(topic).key(key).payload(payload), TIMEOUT)
        .await
        .map_err(|(e, _)| e)
        .expect("delivery");
    (delivery.partition, delivery.offset)
}

fn consumer(group: &str) -> StreamConsumer {
    settings().consumer(group).create().expect("consumer")
}

/// Reads `n` messages from the consumer: (partition, offset, key, payload).
async fn read(c: &StreamConsumer, n: usize) -> Vec<(i32, i64, String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(TIMEOUT, c.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived within {TIMEOUT:?}", out.len()))
            .expect("consume");
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        out.push((m.partition(), m.offset(), text(m.key()), text(m.payload())));
    }
    out
}

#[tokio::test]
async fn metadata_lists_the_broker_and_the_topic() {
    let topic = new_topic(3).await;
    let c = consumer(&unique("meta"));
    let md = c.fetch_metadata(Some(&topic), TIMEOUT).expect("metadata");
    assert!(!md.brokers().is_empty(), "no brokers in metadata");
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("topic in metadata");
    assert_eq!(t.partitions().len(), 3);
    assert!(t.error().is_none(), "{:?}", t.error());
}

#[tokio::test]
async fn keys_go_to_one_partition_in_order() {
    let topic = new_topic(3).await;
    let p = producer();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    for i in 0..60 {
        let key = format!("k{}", i % 6);
        let (partition, _) = send(&p, &topic, &key, &i.to_string()).await;
        let first = *partition_of.entry(key.clone()).or_insert(partition);
        assert_eq!(first, partition, "key {key} moved partition");
    }
    let used: std::collections::HashSet<_> = partition_of.values().collect();
    assert!(used.len() > 1, "six keys all hashed to one partition of three");

    let c = consumer(&unique("order"));
    c.subscribe(&[&topic]).expect("subscribe");
    let mut last: HashMap<String, i32> = HashMap::new();
    for (partition, _, key, payload) in read(&c, 60).await {
        assert_eq!(partition_of[&key], partition);
        let n: i32 = payload.parse().expect("payload");
        assert!(
            last.get(&key).is_none_or(|&prev| prev < n),
            "key {key}: {n} after {last:?}"
        );
        last.insert(key, n);
    }
}

#[tokio::test]
async fn headers_round_trip() {
    let topic = new_topic(1).await;
    let p = producer();
    let headers = OwnedHeaders::new().insert(Header {
        key: "ferry-schema",
        value: Some("v1".as_bytes()),
    });
    p.send(FutureRecord::to(&topic).key("k").payload("x").headers(headers), TIMEOUT)
        .await
        .map_err(|(e, _)| e)
        .expect("delivery");
    let c = consumer(&unique("headers"));
    c.subscribe(&[&topic]).expect("subscribe");
    let m = tokio::time::timeout(TIMEOUT, c.recv())
        .await
        .expect("in time")
        .expect("consume");
    let h = m.headers().expect("headers");
    assert_eq!(h.count(), 1);
    let first = h.get(0);
    assert_eq!(first.key, "ferry-schema");
    assert_eq!(first.value, Some("v1".as_bytes()));
}

#[tokio::test]
async fn watermarks_count_what_was_acknowledged() {
    let topic = new_topic(1).await;
    let p = producer();
    let mut offsets = Vec::new();
    for i in 0..25 {
        offsets.push(send(&p, &topic, "k", &i.to_string()).await.1);
    }
    assert_eq!(offsets, (0..25).collect::<Vec<i64>>(), "offsets are not 0..25 in order");
    let c = consumer(&unique("wm"));
    assert_eq!(c.fetch_watermarks(&topic, 0, TIMEOUT).expect("watermarks"), (0, 25));
}

#[tokio::test]
async fn a_group_resumes_from_its_committed_offset() {
    let topic = new_topic(1).await;
    let p = producer();
    for i in 0..10 {
        send(&p, &topic, "k", &i.to_string()).await;
    }
    let group = unique("resume");
    {
        let c = consumer(&group);
        c.subscribe(&[&topic]).expect("subscribe");
        let got = read(&c, 4).await;
        assert_eq!(got.last().map(|m| m.3.as_str()), Some("3"));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(4)).expect("offset");
        c.commit(&tpl, CommitMode::Sync).expect("commit");
        let committed = c.committed(TIMEOUT).expect("committed");
        assert_eq!(
            committed.find_partition(&topic, 0).map(|e| e.offset()),
            Some(Offset::Offset(4))
        );
    }
    let c = consumer(&group);
    c.subscribe(&[&topic]).expect("subscribe");
    let got = read(&c, 6).await;
    let payloads: Vec<&str> = got.iter().map(|m| m.3.as_str()).collect();
    assert_eq!(payloads, ["4", "5", "6", "7", "8", "9"]);
}

#[tokio::test]
async fn an_idempotent_producer_is_accepted() {
    let topic = new_topic(1).await;
    let p = producer();
    for i in 0..100 {
        // Not awaited one by one: several batches in flight, as capture sends.
        let _ = p.send_result(FutureRecord::to(&topic).key("k").payload(&i.to_string()));
    }
    p.flush(TIMEOUT).expect("flush");
    let c = consumer(&unique("idem"));
    c.subscribe(&[&topic]).expect("subscribe");
    let payloads: Vec<String> = read(&c, 100).await.into_iter().map(|m| m.3).collect();
    assert_eq!(payloads, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(
        c.fetch_watermarks(&topic, 0, TIMEOUT).expect("watermarks").1,
        100,
        "duplicates written"
    );
}

#[tokio::test]
async fn transactions_hide_aborted_records() {
    if skip_without_transactions() {
        return;
    }
    let topic = new_topic(1).await;
    let p: FutureProducer = settings()
        .transactional_producer(&unique("tx"))
        .create()
        .expect("transactional producer");
    p.init_transactions(TIMEOUT).expect("init transactions");
    p.begin_transaction().expect("begin");
    send(&p, &topic, "k", "committed-1").await;
    send(&p, &topic, "k", "committed-2").await;
    p.commit_transaction(TIMEOUT).expect("commit");
    p.begin_transaction().expect("begin");
    send(&p, &topic, "k", "aborted").await;
    p.abort_transaction(TIMEOUT).expect("abort");
    p.begin_transaction().expect("begin");
    send(&p, &topic, "k", "committed-3").await;
    p.commit_transaction(TIMEOUT).expect("commit");

    let c = consumer(&unique("txread"));
    c.subscribe(&[&topic]).expect("subscribe");
    let payloads: Vec<String> = read(&c, 3).await.into_iter().map(|m| m.3).collect();
    assert_eq!(payloads, ["committed-1", "committed-2", "committed-3"]);
}

/// Restarts the broker: run alone (`scripts/test` runs `disruptive_` tests
/// after the others, one at a time).
#[tokio::test]
async fn disruptive_acknowledged_messages_survive_a_broker_restart() {
    let topic = new_topic(2).await;
    let p = producer();
    for i in 0..50 {
        send(&p, &topic, &format!("k{}", i % 5), &i.to_string()).await;
    }
    drop(p);
    let status = Command::new(repo_root().join("scripts/services"))
        .args(["restart", "broker"])
        .status()
        .expect("run scripts/services");
    assert!(status.success(), "broker restart failed");
    let c = consumer(&unique("restart"));
    c.subscribe(&[&topic]).expect("subscribe");
    let mut payloads: Vec<i32> = read(&c, 50)
        .await
        .into_iter()
        .map(|m| m.3.parse().expect("int"))
        .collect();
    payloads.sort_unstable();
    assert_eq!(payloads, (0..50).collect::<Vec<_>>());
}
