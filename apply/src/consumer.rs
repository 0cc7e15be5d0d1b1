//! The Kafka side of apply: one consumer in the group, polled on its own thread.
//!
//! The consumer never commits to Kafka; the target holds the offsets. So when
//! the group assigns partitions, the rebalance callback (which librdkafka runs on
//! the polling thread, before any message of the new assignment is fetched) reads
//! the stored offsets from the target and starts each partition there, or at
//! `--from` for a partition the target has never seen. Before partitions are
//! revoked, the callback hands a [`Polled::Revoke`] to the pipeline and waits
//! until every pending batch is written, so the next owner starts exactly after
//! it. Polling on a plain thread is what makes both waits possible: the callback
//! can block on the target without stalling the async runtime.
//!
//! Caught up on a broker that answers empty fetches at once, the thread rests
//! between fetches ([`IdleFetch`]) instead of spending a core asking again;
//! that is why every partition starts at a concrete offset.
//!
//! Lag in messages comes from librdkafka's statistics (the last stable offset of
//! each partition) against the offsets the writers have stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use std::ops::Range;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use ferry_core::document::DOCUMENT_GONE_HEADER;
use ferry_core::envelope::TRUNCATE_PARTITIONS_HEADER;
use ferry_core::kafka::IdleFetch;

use crate::batch::Position;
use crate::decode::MessageHeaders;
use crate::error::ApplyError;
use crate::settings::{ApplySettings, StartFrom};
use crate::target::Target;

/// Most messages handed over at once.
const HANDOFF: usize = 2_000;

/// How long a caught-up consumer stops fetching before it asks again (see [`IdleFetch`]).
const IDLE_PAUSE: Duration = Duration::from_millis(10);

/// What the polling thread hands the pipeline, in order.
#[derive(Debug)]
pub enum Polled {
    /// Messages in the order polled: what was waiting, handed over together
    /// (one thread wake-up per run of messages, not one per message).
    Messages(Run),
    /// Partitions are about to be revoked: write everything pending, then answer.
    Revoke(oneshot::Sender<()>),
    /// The consumer cannot go on (the target could not be asked for offsets).
    Failed(ApplyError),
}

/// A run of polled messages, copied out of librdkafka together: their keys
/// and values into one buffer, their topic names shared, the headers apply
/// reads already read. So a message costs no allocation of its own on the
/// polling thread, and none to free on the pipeline's (where a message of
/// librdkafka's own copied out whole cost four of each).
#[derive(Debug, Default)]
pub struct Run {
    bytes: Vec<u8>,
    messages: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    at: Position,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: MessageHeaders,
}

/// One message of a [`Run`].
#[derive(Debug, Clone, Copy)]
pub struct RunMessage<'a> {
    pub at: &'a Position,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: MessageHeaders,
}

impl Run {
    fn with_capacity(messages: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            messages: Vec::with_capacity(messages),
        }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = RunMessage<'_>> {
        self.messages.iter().map(|m| RunMessage {
            at: &m.at,
            key: m.key.clone().map(|r| &self.bytes[r]),
            value: m.value.clone().map(|r| &self.bytes[r]),
            headers: m.headers,
        })
    }

    fn push(&mut self, topic: Arc<str>, m: &BorrowedMessage<'_>) {
        let mut copy = |b: Option<&[u8]>| {
            b.map(|b| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(b);
                start..self.bytes.len()
            })
        };
        let key = copy(m.key());
        let value = copy(m.payload());
        // Read once: librdkafka parses a message's headers at each call.
        let mut headers = MessageHeaders::default();
        for h in m.headers().iter().flat_map(|h| h.iter()) {
            let value = || h.value.and_then(|v| std::str::from_utf8(v).ok());
            match h.key {
                TRUNCATE_PARTITIONS_HEADER if headers.partitions.is_none() => {
                    headers.partitions = value().and_then(|v| v.parse().ok());
                }
                DOCUMENT_GONE_HEADER => headers.document_gone |= value() == Some("true"),
                _ => {}
            }
        }
        self.messages.push(Entry {
            at: Position {
                topic,
                partition: m.partition(),
                offset: m.offset(),
            },
            key,
            value,
            headers,
        });
    }
}

/// The next offset each partition's writer has stored in the target.
pub type Applied = Arc<Mutex<HashMap<(Arc<str>, i32), i64>>>;

struct Context<T> {
    tx: mpsc::Sender<Polled>,
    /// Polled, not yet handed over.
    pending: Mutex<Run>,
    loader: Arc<tokio::sync::Mutex<T>>,
    runtime: Handle,
    group: String,
    from: StartFrom,
    applied: Applied,
    /// Set when partitions were assigned, for the poll loop's [`IdleFetch`].
    assigned: AtomicBool,
}

impl<T: Target> ClientContext for Context<T> {
    fn error(&self, error: KafkaError, reason: &str) {
        ferry_core::kafka::log_client_error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        for (name, topic) in &statistics.topics {
            for (id, p) in &topic.partitions {
                let Some(&next) = applied.get(&(Arc::from(name.as_str()), *id)) else {
                    continue;
                };
                if *id >= 0 && p.ls_offset >= 0 {
                    metrics::gauge!("ferry_apply_lag_messages", "topic" => name.clone(), "partition" => id.to_string())
                        .set((p.ls_offset - next).max(0) as f64);
                }
            }
        }
    }
}

impl<T: Target> ConsumerContext for Context<T> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) if tpl.count() > 0 => {
                // What was polled before the revoke is written before it.
                self.hand_over();
                tracing::info!(partitions = tpl.count(), "partitions revoked: writing what is pending");
                let (ack, done) = oneshot::channel();
                if self.tx.blocking_send(Polled::Revoke(ack)).is_ok() {
                    let _ = done.blocking_recv();
                }
            }
            Rebalance::Assign(tpl) if tpl.count() > 0 => {
                if let Err(e) = self.start_positions(consumer, tpl) {
                    let _ = self.tx.blocking_send(Polled::Failed(e));
                }
                self.assigned.store(true, Ordering::Relaxed);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "group rebalance failed"),
            _ => {}
        }
    }
}

impl<T: Target> Context<T> {
    /// Hands the pending messages to the pipeline; false once it is gone.
    fn hand_over(&self) -> bool {
        let messages = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.is_empty() {
                return true;
            }
            // The next run is likely the size of this one.
            let next = Run::with_capacity(pending.len(), pending.bytes.len());
            std::mem::replace(&mut *pending, next)
        };
        self.tx.blocking_send(Polled::Messages(messages)).is_ok()
    }

    /// Sets where each newly assigned partition starts: its stored offset, or `--from`.
    fn start_positions(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) -> Result<(), ApplyError> {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let stored = self.runtime.block_on(async {
            let mut loader = self.loader.lock().await;
            loader.load_offsets(&self.group, &partitions).await
        })?;
        // Every start is a concrete offset, so that a partition paused before
        // it delivered anything resumes there (see `IdleFetch`), not at a
        // logical end looked up again after messages arrived.
        let watermarks = |e: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>| {
            consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(30))
        };
        let mut by_time = TopicPartitionList::new();
        for mut e in tpl.elements() {
            let offset = match (stored.get(&(e.topic().to_owned(), e.partition())), self.from) {
                (Some(&next), _) => next,
                (None, StartFrom::Earliest) => watermarks(&e)?.0,
                (None, StartFrom::Latest) => watermarks(&e)?.1,
                (None, StartFrom::Timestamp(ms)) => {
                    by_time.add_partition_offset(e.topic(), e.partition(), Offset::Offset(ms))?;
                    continue;
                }
            };
            e.set_offset(Offset::Offset(offset))?;
        }
        if by_time.count() > 0 {
            let found = consumer.offsets_for_times(by_time, Duration::from_secs(30))?;
            for f in found.elements() {
                if let Some(mut e) = tpl.find_partition(f.topic(), f.partition()) {
                    let offset = match f.offset() {
                        Offset::Offset(o) => o,
                        // No message at or after the time: start at the end.
                        _ => watermarks(&e)?.1,
                    };
                    e.set_offset(Offset::Offset(offset))?;
                }
            }
        }
        for e in tpl.elements() {
            tracing::info!(topic = e.topic(), partition = e.partition(), start = ?e.offset(), "partition assigned");
        }
        Ok(())
    }
}

/// The polling thread; stops when told or when the pipeline drops its receiver.
#[derive(Debug)]
pub struct ConsumerThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConsumerThread {
    /// Subscribes to the settings' topics and starts polling into `tx`.
    pub fn start<T: Target>(
        settings: &ApplySettings,
        loader: Arc<tokio::sync::Mutex<T>>,
        applied: Applied,
        tx: mpsc::Sender<Polled>,
    ) -> Result<Self, ApplyError> {
        let mut config = settings.kafka.consumer(&settings.group);
        if let Some(id) = &settings.instance_id {
            // Static membership: a restarted process with the same id gets its
            // partitions back at once, without a rebalance.
            config.set("group.instance.id", id);
        }
        for (key, value) in [
            // New topics matching the pattern are picked up within seconds.
            ("topic.metadata.refresh.interval.ms", "5000"),
            // A process that died (kill -9, a lost host) gives its partitions
            // up after 10 s (brokers that expire members by session) or 60 s
            // (brokers that wait for the rebalance timeout), not 45 s and 5
            // minutes: this thread polls all the time, and only a batch
            // written at a revoke or a full pipeline holds it.
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "3000"),
            ("max.poll.interval.ms", "60000"),
            ("statistics.interval.ms", "5000"),
            // Ends are what tells the poll loop to rest (see `IdleFetch`).
            ("enable.partition.eof", "true"),
        ] {
            if !settings.kafka.options.contains_key(key) {
                config.set(key, value);
            }
        }
        let context = Context {
            tx: tx.clone(),
            pending: Mutex::new(Run::default()),
            loader,
            runtime: Handle::current(),
            group: settings.group.clone(),
            from: settings.from,
            applied,
            assigned: AtomicBool::new(false),
        };
        let consumer: BaseConsumer<Context<T>> = config.create_with_context(context)?;
        consumer.subscribe(&[&settings.topics])?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ferry-consumer".into())
            .spawn(move || poll(consumer, tx, stopping))
            .map_err(|e| ApplyError::Config(format!("cannot start the consumer thread: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops polling and leaves the group.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for ConsumerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn poll<T: Target>(consumer: BaseConsumer<Context<T>>, tx: mpsc::Sender<Polled>, stop: Arc<AtomicBool>) {
    let mut wait = Duration::from_millis(100);
    let mut idle = IdleFetch::new(IDLE_PAUSE);
    // Topic names, each shared by every position in it.
    let mut topics: Vec<Arc<str>> = Vec::new();
    let mut told_none_match = false;
    while !stop.load(Ordering::Relaxed) {
        let polled = consumer.poll(idle.wait(wait));
        if consumer.context().assigned.swap(false, Ordering::Relaxed) {
            idle.active();
        }
        match polled {
            None => {
                // Nothing more waiting: hand over what there is.
                if !consumer.context().hand_over() {
                    break;
                }
                idle.wake_if_due(&consumer);
                wait = Duration::from_millis(100);
            }
            Some(Ok(m)) => {
                idle.active();
                let full = {
                    let mut pending = consumer.context().pending.lock().unwrap_or_else(|e| e.into_inner());
                    let topic = match topics.iter().find(|t| &***t == m.topic()) {
                        Some(t) => Arc::clone(t),
                        None => {
                            topics.push(Arc::from(m.topic()));
                            Arc::clone(&topics[topics.len() - 1])
                        }
                    };
                    pending.push(topic, &m);
                    pending.len() >= HANDOFF
                };
                if full && !consumer.context().hand_over() {
                    break;
                }
                wait = Duration::ZERO;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if idle.reached_end(&consumer, partition) && !consumer.context().hand_over() {
                    break;
                }
            }
            // No topic matches --topics yet (librdkafka looks again at every
            // metadata refresh): no error, as the capture may not have made
            // its topics yet.
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                if !told_none_match {
                    told_none_match = true;
                    tracing::info!("no topic matches --topics yet; waiting for one");
                }
            }
            Some(Err(e)) => {
                metrics::counter!("ferry_apply_errors_total", "kind" => "kafka").increment(1);
                tracing::warn!(error = %e, "Kafka consumer error; librdkafka retries");
            }
        }
    }
    // Dropping the consumer leaves the group; its revoke callback finds the
    // pipeline's receiver dropped and returns at once.
    drop(tx);
    drop(consumer);
}
