//! `IdleFetch`, the rest a caught-up consumer takes on a broker that answers
//! empty fetches at once, against the real broker: a resting consumer still
//! gets what arrives, and one dropped in the middle of a rest is destroyed
//! (librdkafka's destroy waits for every reference to a partition, and a rest
//! once held some: an apply stopped while resting hung for good).

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ferry_core::kafka::{ensure_topics, EndIsNoError, IdleFetch, KafkaSettings, TopicSpec};
use ferry_tests::{brokers, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TIMEOUT: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 3;

/// A new topic with a message in each partition.
async fn topic_with_messages() -> String {
    let settings = KafkaSettings::new(brokers());
    let topic = unique("idle");
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: PARTITIONS,
        compacted: false,
    };
    ensure_topics(&settings.admin().unwrap(), &[spec]).await.unwrap();
    let producer: FutureProducer = settings.producer().create().unwrap();
    for p in 0..PARTITIONS {
        send(&producer, &topic, p, "before").await;
    }
    topic
}

async fn send(producer: &FutureProducer, topic: &str, partition: i32, payload: &str) {
    producer
        .send(
            FutureRecord::<(), _>::to(topic).partition(partition).payload(payload),
            TIMEOUT,
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// A group member of `topic` that reports partition ends, as apply's is.
fn consumer(topic: &str) -> BaseConsumer<EndIsNoError> {
    let consumer: BaseConsumer<EndIsNoError> = KafkaSettings::new(brokers())
        .consumer(&unique("idle"))
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create_with_context(EndIsNoError)
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Polls as apply's loop does until `until` holds for a payload or, with
/// `None`, until the consumer rests; the payloads polled.
fn poll_until(
    consumer: &BaseConsumer<EndIsNoError>,
    idle: &mut IdleFetch,
    mut until: impl FnMut(Option<&str>) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut payloads = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "not within {TIMEOUT:?}; polled {payloads:?}");
        match consumer.poll(idle.wait(Duration::from_millis(100))) {
            None => idle.wake_if_due(consumer),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if idle.reached_end(consumer, p) && until(None) {
                    return payloads;
                }
            }
            Some(Ok(m)) => {
                idle.active();
                let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                let done = until(Some(&payload));
                payloads.push(payload);
                if done {
                    return payloads;
                }
            }
            Some(Err(e)) => panic!("consume: {e}"),
        }
    }
}

#[tokio::test]
async fn a_consumer_dropped_while_resting_is_destroyed() {
    let topic = topic_with_messages().await;
    let mut idle = IdleFetch::new(Duration::from_secs(60));
    let consumer = consumer(&topic);
    let polled = poll_until(&consumer, &mut idle, |p| p.is_none());
    assert_eq!(
        polled.len(),
        PARTITIONS as usize,
        "every partition's message before the rest"
    );
    // Resting for a minute; the rest outlives the consumer, as when apply's
    // pipeline goes away in the middle of one.
    let (done, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = done.send(());
    });
    dropped
        .recv_timeout(TIMEOUT)
        .expect("the consumer was not destroyed: something still holds its partitions");
    drop(idle);
}

#[tokio::test]
async fn a_resting_consumer_gets_what_arrives_later_in_every_partition() {
    let topic = topic_with_messages().await;
    let mut idle = IdleFetch::new(Duration::from_millis(10));
    let consumer = consumer(&topic);
    poll_until(&consumer, &mut idle, |p| p.is_none());
    let producer: FutureProducer = KafkaSettings::new(brokers()).producer().create().unwrap();
    for p in 0..PARTITIONS {
        send(&producer, &topic, p, &format!("after {p}")).await;
    }
    let mut seen = 0;
    let polled = poll_until(&consumer, &mut idle, |p| {
        seen += usize::from(p.is_some_and(|p| p.starts_with("after")));
        seen == PARTITIONS as usize
    });
    let mut after: Vec<&String> = polled.iter().filter(|p| p.starts_with("after")).collect();
    after.sort();
    assert_eq!(after, ["after 0", "after 1", "after 2"]);
}
