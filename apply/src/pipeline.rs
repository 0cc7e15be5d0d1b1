//! The apply pipeline, the same for every target.
//!
//! ```text
//!  consumer thread ──Polled──► dispatcher: decode (registry) ──► writer 0 ─► batch ─► Target::write (rows + offsets, one txn)
//!  (rebalance: offsets                      route by partition ─► writer 1 ─► ...
//!   from the target)
//! ```
//!
//! A partition always goes to the same writer, and a writer applies its
//! messages in order, so a row's changes reach the target in source order;
//! partitions on different writers are applied in parallel. A writer takes what
//! is waiting (up to `--batch-size` messages, or `--batch-wait` for more) and
//! writes it as one batch in one target transaction with its offsets.
//!
//! Anything that goes wrong in a way that may pass (target, broker or registry
//! unreachable, a partition moved by a rebalance) ends the session: pending
//! batches are dropped unwritten, and after a back-off a new session starts from
//! the offsets stored in the target, so nothing is lost and nothing applied
//! twice. Events that can never be applied stop apply, or with `--on-error dlq`
//! go to the dead-letter topic.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::metrics::Phase;
use ferry_core::registry::RegistryClient;
use ferry_core::status::Reporter;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinSet;

use crate::batch::{Barrier, Batch, Change, ChangeKind, FastHash};
use crate::consumer::{Applied, ConsumerThread, Polled, Run, RunMessage};
use crate::decode::{DecodeFailure, Decoder};
use crate::dlq::DeadLetters;
use crate::error::ApplyError;
use crate::settings::{ApplySettings, OnError};
use crate::target::{Connect, Target, TargetError};

/// Runs of messages (each up to 2,000) the consumer thread may have handed
/// over but not yet decoded.
const POLL_QUEUE: usize = 8;
/// Runs of decoded changes waiting for each writer.
const WRITER_QUEUE: usize = 8;
/// Longest wait between two sessions.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

enum ToWriter {
    /// Changes in the order of their partitions.
    Changes(Vec<Change>),
    /// Write what is pending, then answer.
    Flush(oneshot::Sender<()>),
}

/// Applies until `shutdown` resolves; on return every batch a writer had
/// started is either written with its offsets or not at all.
pub async fn run<C: Connect>(
    settings: ApplySettings,
    connect: C,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApplyError> {
    let phase = ferry_core::metrics::start(settings.metrics)
        .await
        .map_err(ApplyError::Config)?;
    let status = Reporter::start(&settings.kafka, "apply", &settings.group, phase.subscribe()).await;
    let result = supervise(&settings, connect, shutdown, &phase).await;
    status.finish(result.as_ref().err().map(ToString::to_string)).await;
    result
}

/// Runs sessions until `shutdown`, starting over after a retryable error.
async fn supervise<C: Connect>(
    settings: &ApplySettings,
    connect: C,
    shutdown: impl Future<Output = ()>,
    phase: &watch::Sender<Phase>,
) -> Result<(), ApplyError> {
    let registry = Arc::new(RegistryClient::with_access(&settings.registry)?);
    let connect = Arc::new(connect);
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let result = session(settings, &connect, &registry, &mut shutdown, phase).await;
        match result {
            Ok(()) => {
                phase.send_replace(Phase::Stopping);
                return Ok(());
            }
            Err(e) if e.is_retryable() => {
                phase.send_replace(Phase::Starting);
                metrics::counter!("ferry_apply_restarts_total").increment(1);
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "apply interrupted; resuming from the offsets stored in the target");
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Which writer each partition goes to: a partition first seen goes to the
/// writer with the fewest partitions and stays there for the session, so its
/// messages are written in order and the writers share the partitions evenly.
/// (A hash of the names, the way before, put 4, 5 or all 6 partitions of two
/// 3-partition topics on one of two writers for 69% of names.)
#[derive(Debug)]
struct Routes {
    of: HashMap<(Arc<str>, i32), usize>,
    partitions: Vec<usize>,
    /// The last partition routed: a run holds long stretches of one.
    last: Option<(Arc<str>, i32, usize)>,
}

impl Routes {
    fn new(writers: usize) -> Self {
        Self {
            of: HashMap::new(),
            partitions: vec![0; writers],
            last: None,
        }
    }

    fn writer(&mut self, topic: &Arc<str>, partition: i32) -> usize {
        if let Some((t, p, w)) = &self.last {
            if *p == partition && Arc::ptr_eq(t, topic) {
                return *w;
            }
        }
        let w = self.first_seen(topic, partition);
        self.last = Some((Arc::clone(topic), partition, w));
        w
    }

    fn first_seen(&mut self, topic: &Arc<str>, partition: i32) -> usize {
        if let Some(&w) = self.of.get(&(Arc::clone(topic), partition)) {
            return w;
        }
        let (w, _) = self
            .partitions
            .iter()
            .enumerate()
            .min_by_key(|&(i, n)| (*n, i))
            .unwrap_or((0, &0));
        self.partitions[w] += 1;
        self.of.insert((Arc::clone(topic), partition), w);
        w
    }
}

async fn session<C: Connect>(
    settings: &ApplySettings,
    connect: &Arc<C>,
    registry: &Arc<RegistryClient>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    phase: &watch::Sender<Phase>,
) -> Result<(), ApplyError> {
    let loader = connect.connect().await?;
    let default_schema = loader.default_schema().to_owned();
    let loader = Arc::new(Mutex::new(loader));
    let dead_letters = match settings.on_error {
        OnError::Dlq => Some(Arc::new(DeadLetters::new(settings).await?)),
        OnError::Fail => None,
    };
    let applied = Applied::default();
    let mut writers = JoinSet::new();
    let mut to_writers = Vec::with_capacity(settings.workers);
    for _ in 0..settings.workers {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer = Writer {
            target: connect.connect().await?,
            group: settings.group.clone(),
            batch_size: settings.batch_size,
            batch_wait: settings.batch_wait,
            dead_letters: dead_letters.clone(),
            applied: Arc::clone(&applied),
            held: HashMap::new(),
            checked: HashSet::default(),
            released: VecDeque::new(),
        };
        writers.spawn(writer.run(rx));
        to_writers.push(tx);
    }
    let (tx, mut polled) = mpsc::channel(POLL_QUEUE);
    let consumer = ConsumerThread::start(settings, loader, Arc::clone(&applied), tx)?;
    let mut decoder = Decoder::new(Arc::clone(registry), settings.table_map.clone(), default_schema);
    let mut routes = Routes::new(to_writers.len());
    phase.send_replace(Phase::Streaming);
    tracing::info!(group = %settings.group, topics = %settings.topics, "applying");

    let result = loop {
        tokio::select! {
            biased;
            () = &mut *shutdown => break Ok(()),
            Some(ended) = writers.join_next() => {
                break Err(ended.unwrap_or_else(|e| Err(ApplyError::Config(format!("a writer panicked: {e}")))).err()
                    .unwrap_or(ApplyError::ConsumerStopped));
            }
            next = polled.recv() => match next {
                None => break Err(ApplyError::ConsumerStopped),
                Some(Polled::Failed(e)) => break Err(e),
                Some(Polled::Revoke(ack)) => {
                    if let Err(e) = flush_all(&to_writers).await {
                        break Err(e);
                    }
                    let _ = ack.send(());
                }
                Some(Polled::Messages(messages)) => {
                    if let Err(e) = dispatch(&mut decoder, &mut routes, messages, dead_letters.as_deref(), &to_writers).await {
                        break Err(e);
                    }
                }
            }
        }
    };
    if result.is_ok() {
        tracing::info!("stopping: writing pending batches");
        phase.send_replace(Phase::Stopping);
        flush_all(&to_writers).await?;
    }
    drop(to_writers);
    // The consumer's revoke callback must find the pipeline gone, not wait on it.
    drop(polled);
    consumer.stop().await;
    while let Some(ended) = writers.join_next().await {
        if let Ok(Err(e)) = ended {
            if result.is_ok() {
                return Err(e);
            }
        }
    }
    result
}

/// Decodes `messages` and hands each writer its share, in order.
///
/// A message that stops apply for good (undecodable, with `--on-error fail`)
/// stops it after everything before it is written: the target then ends
/// exactly where the operator is told to look, not at some earlier batch.
async fn dispatch(
    decoder: &mut Decoder,
    routes: &mut Routes,
    messages: Run,
    dead_letters: Option<&DeadLetters>,
    writers: &[mpsc::Sender<ToWriter>],
) -> Result<(), ApplyError> {
    let mut shares: Vec<Vec<Change>> = (0..writers.len()).map(|_| Vec::with_capacity(messages.len())).collect();
    let mut stopped = Ok(());
    for m in messages.iter() {
        match decode(decoder, m, dead_letters).await {
            Ok(change) => shares[routes.writer(&m.at.topic, m.at.partition)].push(change),
            Err(e) => {
                stopped = Err(e);
                break;
            }
        }
    }
    for (writer, share) in writers.iter().zip(shares) {
        // A writer that ended has its error collected by the session.
        if !share.is_empty() && writer.send(ToWriter::Changes(share)).await.is_err() {
            break;
        }
    }
    if stopped.as_ref().is_err_and(|e| !e.is_retryable()) {
        flush_all(writers).await?;
    }
    stopped
}

/// Asks every writer to write what it holds, and waits until they have.
async fn flush_all(writers: &[mpsc::Sender<ToWriter>]) -> Result<(), ApplyError> {
    let mut done = Vec::with_capacity(writers.len());
    for w in writers {
        let (ack, wait) = oneshot::channel();
        if w.send(ToWriter::Flush(ack)).await.is_ok() {
            done.push(wait);
        }
    }
    for wait in done {
        // A writer that failed drops the ack; its error surfaces from join_next.
        let _ = wait.await;
    }
    Ok(())
}

/// Decodes `m`, retrying while the registry is unreachable; an undecodable
/// message stops apply or becomes a dead letter (and a skip).
async fn decode(
    decoder: &mut Decoder,
    m: RunMessage<'_>,
    dead_letters: Option<&DeadLetters>,
) -> Result<Change, ApplyError> {
    let at = m.at;
    let mut backoff = Duration::from_millis(200);
    loop {
        match decoder.decode(at.clone(), m.key, m.value, m.headers).await {
            Ok(change) => return Ok(change),
            Err(DecodeFailure::Registry(e)) if backoff < MAX_BACKOFF => {
                metrics::counter!("ferry_apply_errors_total", "kind" => "registry").increment(1);
                tracing::warn!(error = %e, retry_in = ?backoff, "schema registry unavailable");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(DecodeFailure::Registry(e)) => return Err(e.into()),
            Err(DecodeFailure::Undecodable(u)) => {
                metrics::counter!("ferry_apply_errors_total", "kind" => "undecodable").increment(1);
                let Some(dlq) = dead_letters else {
                    return Err(ApplyError::Undecodable {
                        at: at.to_string(),
                        key: m.key.map_or("(none)".into(), |k| format!("{} bytes", k.len())),
                        reason: u.0,
                    });
                };
                dlq.send(at, m.key, m.value, &u.0).await?;
                return Ok(Change {
                    at: at.clone(),
                    what: ChangeKind::Skip,
                    barrier: None,
                });
            }
        }
    }
}

/// How often a writer holding partitions at a barrier asks whether it is done.
const BARRIER_POLL: Duration = Duration::from_millis(100);

/// A partition waiting at a barrier, and its messages since.
struct Held {
    barrier: String,
    queue: VecDeque<Change>,
}

/// One writer: batches its partitions' changes and writes them.
///
/// A truncate is a barrier (see [`crate::batch::Barrier`]): on reaching it a
/// partition's writer records its arrival in the target, in the transaction
/// that moves its offset past it; the last partition to arrive empties the
/// table in that same transaction. Until then, each partition that arrived
/// holds its later messages, so nothing written after the truncate is lost to
/// it and nothing written before it survives it. A partition whose arrival is
/// stored is held again after a restart, before its first message.
struct Writer<T> {
    target: T,
    group: String,
    batch_size: usize,
    batch_wait: Duration,
    dead_letters: Option<Arc<DeadLetters>>,
    applied: Applied,
    held: HashMap<(Arc<str>, i32), Held>,
    /// Partitions whose stored barriers were looked up this session.
    checked: HashSet<(Arc<str>, i32), FastHash>,
    /// Released messages, applied before anything new.
    released: VecDeque<Change>,
}

impl<T: Target> Writer<T> {
    /// A batch of the kind the target needs (with every event, or collapsed only).
    fn empty_batch(&self) -> Batch {
        if self.target.keeps_history() {
            Batch::with_history()
        } else {
            Batch::default()
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<ToWriter>) -> Result<(), ApplyError> {
        let mut batch = self.empty_batch();
        let mut opened = Instant::now();
        let mut asked = Instant::now();
        loop {
            if !self.held.is_empty() && asked.elapsed() >= BARRIER_POLL {
                self.release().await?;
                asked = Instant::now();
            }
            let next = if !self.released.is_empty() {
                Some(ToWriter::Changes(self.released.drain(..).collect()))
            } else if batch.is_empty() && self.held.is_empty() {
                rx.recv().await
            } else {
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        let mut left = self.batch_wait.saturating_sub(opened.elapsed());
                        if !self.held.is_empty() {
                            left = left.max(BARRIER_POLL);
                        }
                        match tokio::time::timeout(left, rx.recv()).await {
                            Ok(m) => m,
                            Err(_) => {
                                self.write(&mut batch).await?;
                                continue;
                            }
                        }
                    }
                }
            };
            match next {
                // The pipeline is gone: the session ended; pending changes are
                // dropped and read again from the stored offsets.
                None => return Ok(()),
                Some(ToWriter::Flush(ack)) => {
                    self.write(&mut batch).await?;
                    // Partitions may move (a rebalance): what is held is read
                    // again by whoever owns them next.
                    self.held.clear();
                    self.checked.clear();
                    self.released.clear();
                    let _ = ack.send(());
                }
                Some(ToWriter::Changes(changes)) => {
                    for change in changes {
                        self.take(change, &mut batch, &mut opened).await?;
                    }
                }
            }
        }
    }

    /// Adds `change` to the batch (writing it when full), or holds it, or
    /// makes its partition arrive at its barrier.
    async fn take(&mut self, change: Change, batch: &mut Batch, opened: &mut Instant) -> Result<(), ApplyError> {
        let partition = (Arc::clone(&change.at.topic), change.at.partition);
        if self.checked.insert(partition.clone()) {
            if let Some(barrier) = self
                .target
                .open_barriers(&self.group, &partition.0, partition.1)
                .await?
                .into_iter()
                .next()
            {
                tracing::info!(topic = %partition.0, partition = partition.1, "partition waits at a truncate for the others");
                self.held.insert(
                    partition.clone(),
                    Held {
                        barrier,
                        queue: VecDeque::new(),
                    },
                );
            }
        }
        if let Some(held) = self.held.get_mut(&partition) {
            held.queue.push_back(change);
            return Ok(());
        }
        if let Some(barrier) = change.barrier.clone() {
            self.write(batch).await?;
            return self.arrive(change, barrier).await;
        }
        if batch.conflicts(&change) {
            self.write(batch).await?;
        }
        if batch.is_empty() {
            *opened = Instant::now();
        }
        batch.add(change);
        if batch.messages >= self.batch_size {
            self.write(batch).await?;
        }
        Ok(())
    }

    /// Records that a partition reached `barrier` (applying it if it is the last).
    async fn arrive(&mut self, change: Change, barrier: Barrier) -> Result<(), ApplyError> {
        let partition = (Arc::clone(&change.at.topic), change.at.partition);
        let mut arrival = self.empty_batch();
        arrival.add(change);
        let started = Instant::now();
        let done = self.target.arrive(&self.group, &arrival, &barrier).await?;
        self.record(&arrival, started.elapsed());
        if !done {
            self.held.insert(
                partition,
                Held {
                    barrier: barrier.id,
                    queue: VecDeque::new(),
                },
            );
        }
        Ok(())
    }

    /// Lets go of the partitions whose barrier is done.
    async fn release(&mut self) -> Result<(), ApplyError> {
        let mut done = Vec::new();
        for ((topic, partition), held) in &self.held {
            if self.target.barrier_done(&self.group, topic, &held.barrier).await? {
                done.push((Arc::clone(topic), *partition));
            }
        }
        for partition in done {
            if let Some(held) = self.held.remove(&partition) {
                tracing::info!(topic = %partition.0, partition = partition.1, "truncate applied; partition goes on");
                self.released.extend(held.queue);
            }
        }
        Ok(())
    }

    /// Writes `batch` (setting aside rows the target rejects, with `--on-error
    /// dlq`) and empties it.
    async fn write(&mut self, batch: &mut Batch) -> Result<(), ApplyError> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            match self.target.write(&self.group, batch).await {
                Ok(()) => break,
                Err(TargetError::Rejected(reason)) => {
                    metrics::counter!("ferry_apply_errors_total", "kind" => "rejected").increment(1);
                    let rejected = self.target.find_rejected(batch).await?;
                    let Some(first) = rejected.first() else {
                        return Err(TargetError::Permanent(format!(
                            "the target rejected a batch but accepts each of its rows alone: {reason}"
                        ))
                        .into());
                    };
                    let Some(dlq) = &self.dead_letters else {
                        return Err(first.clone().into());
                    };
                    for r in &rejected {
                        let reason = format!("table {}: the target rejected the row: {}", r.table, r.reason);
                        dlq.send_from_log(&r.at, &reason).await?;
                    }
                    let positions: Vec<_> = rejected.into_iter().map(|r| r.at).collect();
                    batch.remove(&positions);
                }
                Err(e) => {
                    let kind = if e.is_retryable() { "target" } else { "target_permanent" };
                    metrics::counter!("ferry_apply_errors_total", "kind" => kind).increment(1);
                    return Err(e.into());
                }
            }
        }
        self.record(batch, started.elapsed());
        *batch = batch.emptied();
        Ok(())
    }

    fn record(&self, batch: &Batch, took: Duration) {
        metrics::histogram!("ferry_apply_batch_messages").record(batch.messages as f64);
        metrics::histogram!("ferry_apply_batch_seconds").record(took.as_secs_f64());
        for (id, table) in &batch.tables {
            for (op, n) in &table.ops {
                metrics::counter!("ferry_apply_rows_total", "table" => id.to_string(), "op" => *op).increment(*n);
            }
        }
        if let Some(source_ms) = batch.newest_source_ms {
            let now = chrono::Utc::now().timestamp_millis();
            metrics::gauge!("ferry_apply_lag_ms").set((now - source_ms).max(0) as f64);
        }
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        for ((topic, partition), (_, next)) in &batch.offsets {
            applied.insert((Arc::clone(topic), *partition), *next);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Routes;

    #[test]
    fn partitions_are_shared_evenly_and_stay_on_their_writer() {
        let mut routes = Routes::new(2);
        let (n, w): (Arc<str>, Arc<str>) = (Arc::from("n"), Arc::from("w"));
        let seen: Vec<usize> = [(&n, 0), (&n, 1), (&n, 2), (&w, 0), (&w, 1), (&w, 2)]
            .iter()
            .map(|&(t, p)| routes.writer(t, p))
            .collect();
        assert_eq!(seen, [0, 1, 0, 1, 0, 1]);
        assert_eq!(routes.writer(&n, 1), 1, "a partition keeps its writer");
        assert_eq!(routes.writer(&n, 1), 1, "and again, from the last one routed");
        assert_eq!(
            routes.writer(&Arc::from("w"), 0),
            1,
            "a topic is its name, not its allocation"
        );
        let mut three = Routes::new(3);
        let t: Arc<str> = Arc::from("t");
        let shares = (0..7).fold([0; 3], |mut n, p| {
            n[three.writer(&t, p)] += 1;
            n
        });
        assert_eq!(shares, [3, 2, 2]);
    }
}
