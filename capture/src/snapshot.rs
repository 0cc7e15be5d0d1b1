//! What every source's snapshot shares: workers read tables in chunks and hand
//! rows over a channel; [`collect`] turns them into `op = "r"` events, reports
//! progress, and records each table as read once all its events are in Kafka.
//!
//! A table read again may have events of an earlier reading in Kafka: of a
//! snapshot interrupted (or a first start killed before it stored its
//! position), or of everything before `--snapshot always` or a lost position.
//! A row deleted between the two readings would stay in a target (the stream
//! starts at the new reading and never carries that delete), so such a table
//! gets a truncate event before its rows ([`Collect::reread`]): a consumer
//! empties it and loads the new reading, with no gap and no double.
//!
//! A table counts as done only when every one of its events is in Kafka:
//! [`SnapshotState`] is stored through the publisher after them. A crash
//! loses only the tables in progress, which the next start reads again. One
//! event is held back so that the snapshot's very last event can say
//! `snapshot = "last"`. Memory is bounded by the channel.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferry_core::document::DocumentEvent;
use ferry_core::envelope::{ChangeEvent, Op, Snapshot};
use ferry_core::meta::TableId;
use ferry_core::position::SourcePosition;
use ferry_core::value::Datum;
use tokio::sync::mpsc;

use crate::now_ms;
use crate::offsets::SnapshotState;
use crate::publish::{Encoded, PublishError, Publisher, TableEncoder, COMMIT_EVENTS};

/// Rows a worker hands over at once.
pub const BATCH_ROWS: usize = 1_000;
/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What a worker sends: a batch of rows of table `.0`, or `None` when one of
/// the table's chunks is done. A row is a table's values (`Vec<Datum>`) or a
/// MongoDB document.
pub type FromWorker<E, R = Vec<Datum>> = Result<(usize, Option<Vec<R>>), E>;

/// A snapshot's event, as a source builds it from a row.
pub trait ReadEvent: Sized + Sync {
    /// This event, made the snapshot's very last.
    fn mark_last(&mut self);
    /// The truncate event of the table this event's row belongs to.
    fn into_truncate(self) -> Self;
    /// Queues it on `table`'s topic.
    fn send(
        &self,
        table: &TableId,
        publisher: &mut Publisher,
    ) -> impl std::future::Future<Output = Result<(), PublishError>> + Send;
    /// Queues `events`, in order, on `table`'s topic: one by one unless a
    /// source has a faster way.
    fn send_all(
        events: &[Self],
        table: &TableId,
        publisher: &mut Publisher,
    ) -> impl std::future::Future<Output = Result<(), PublishError>> + Send {
        async move {
            for event in events {
                event.send(table, publisher).await?;
            }
            Ok(())
        }
    }
}

/// A MongoDB collection's snapshot events go to the publisher one by one.
impl ReadEvent for DocumentEvent {
    fn mark_last(&mut self) {
        self.source.snapshot = Snapshot::Last;
    }

    fn into_truncate(mut self) -> Self {
        self.op = Op::Truncate;
        self.after = None;
        self
    }

    fn send(
        &self,
        table: &TableId,
        publisher: &mut Publisher,
    ) -> impl std::future::Future<Output = Result<(), PublishError>> + Send {
        publisher.send_document(table, self, false)
    }
}

/// A row as a table source's worker hands it over: its event encoded, and
/// for the last row of a batch also its values (the snapshot's very last
/// event is encoded again saying so). The default is an empty row, from
/// which a truncate is made.
///
/// Workers encode so that the coordinator, one task for every table, only
/// hands events to the producer: encoding there was the stage that held the
/// snapshot back, always runnable on a busy machine while the workers
/// waited half the time.
#[derive(Debug)]
pub struct EncodedRow {
    encoded: Option<Encoded>,
    values: Option<Vec<Datum>>,
}

impl Default for EncodedRow {
    fn default() -> Self {
        Self {
            encoded: None,
            values: Some(Vec::new()),
        }
    }
}

/// A worker's batch of [`EncodedRow`]s in the making.
#[derive(Debug)]
pub struct EncodedBatch {
    rows: Vec<EncodedRow>,
    /// The values of the batch's last row so far.
    last: Option<Vec<Datum>>,
}

impl Default for EncodedBatch {
    fn default() -> Self {
        Self {
            rows: Vec::with_capacity(BATCH_ROWS),
            last: None,
        }
    }
}

impl EncodedBatch {
    /// Adds the read event of `values`: `template` (a table's read event)
    /// with them as its row, stamped now, encoded by `encoder`.
    pub fn push(
        &mut self,
        encoder: &TableEncoder,
        template: &mut ChangeEvent,
        values: Vec<Datum>,
    ) -> Result<(), PublishError> {
        let now = now_ms();
        (template.ts_ms, template.source.ts_ms) = (now, now);
        template.after = Some(values);
        let encoded = encoder.encode(template);
        self.last = template.after.take();
        self.rows.push(EncodedRow {
            encoded: Some(encoded?),
            values: None,
        });
        Ok(())
    }

    /// Whether it holds [`BATCH_ROWS`] rows: time to hand it over.
    pub fn is_full(&self) -> bool {
        self.rows.len() >= BATCH_ROWS
    }

    /// The rows so far, the last with its values; the batch starts again empty.
    pub fn take(&mut self) -> Vec<EncodedRow> {
        let mut rows = std::mem::replace(&mut self.rows, Vec::with_capacity(BATCH_ROWS));
        if let Some(row) = rows.last_mut() {
            row.values = self.last.take();
        }
        rows
    }
}

/// A snapshot event of a table source: as a worker encoded it, or (the very
/// last, a truncate) the event itself, for the publisher to encode. Boxed,
/// since almost every row has none and the collector moves every row.
#[derive(Debug)]
pub struct EncodedRead {
    encoded: Option<Encoded>,
    event: Option<Box<ChangeEvent>>,
}

impl EncodedRead {
    /// `row` as the collector sends it; `event` makes the read event of
    /// values a worker kept.
    pub fn new(row: EncodedRow, event: impl FnOnce(Vec<Datum>) -> ChangeEvent) -> Self {
        Self {
            encoded: row.encoded,
            event: row.values.map(|values| Box::new(event(values))),
        }
    }

    fn encoded(&self) -> Option<&Encoded> {
        self.encoded.as_ref()
    }
}

impl ReadEvent for EncodedRead {
    fn mark_last(&mut self) {
        if let Some(event) = &mut self.event {
            event.source.snapshot = Snapshot::Last;
            self.encoded = None;
        }
    }

    fn into_truncate(self) -> Self {
        Self {
            encoded: None,
            event: self.event.map(|mut event| {
                event.op = Op::Truncate;
                event.after = None;
                event
            }),
        }
    }

    async fn send(&self, table: &TableId, publisher: &mut Publisher) -> Result<(), PublishError> {
        match (&self.encoded, &self.event) {
            (Some(encoded), _) => publisher.send_encoded(table, &[encoded]).await,
            (None, Some(event)) => publisher.send(table, event).await,
            (None, None) => Ok(()),
        }
    }

    /// Runs of encoded events go to the publisher as one.
    async fn send_all(events: &[Self], table: &TableId, publisher: &mut Publisher) -> Result<(), PublishError> {
        for run in events.chunk_by(|a, b| a.encoded.is_some() == b.encoded.is_some()) {
            if run[0].encoded.is_some() {
                let encoded: Vec<&Encoded> = run.iter().filter_map(EncodedRead::encoded).collect();
                publisher.send_encoded(table, &encoded).await?;
            } else {
                for event in run {
                    event.send(table, publisher).await?;
                }
            }
        }
        Ok(())
    }
}

/// A table being read.
#[derive(Debug)]
pub struct TableProgress {
    pub id: TableId,
    chunks_left: usize,
    rows: u64,
    estimate: u64,
    started: Instant,
    /// `ferry_capture_snapshot_rows{table}`.
    rows_gauge: metrics::Gauge,
}

impl TableProgress {
    /// A table read in `chunks` chunks, about `estimate` rows.
    pub fn new(id: TableId, chunks: usize, estimate: u64) -> Self {
        let label = id.to_string();
        metrics::gauge!("ferry_capture_snapshot_rows_estimate", "table" => label.clone()).set(estimate as f64);
        let rows_gauge = metrics::gauge!("ferry_capture_snapshot_rows", "table" => label);
        rows_gauge.set(0.0);
        Self {
            id,
            chunks_left: chunks,
            rows: 0,
            estimate,
            started: Instant::now(),
            rows_gauge,
        }
    }
}

/// Where the snapshot was read and how its events look.
#[derive(Debug)]
pub struct Collect<'a, F> {
    /// The position the snapshot was read at: recorded for each table.
    pub at: SourcePosition,
    /// Tables read again whose topic already holds rows of an interrupted
    /// snapshot: each is truncated (an `op = "t"` event) before its rows.
    pub reread: HashSet<TableId>,
    /// The offsets key of the [`SnapshotState`].
    pub state_key: &'a str,
    /// The read event of a row of a table (from an empty row: the event a
    /// truncate is made of).
    pub event: F,
}

/// Publishes the rows the workers send until every sender is gone; records
/// each finished table in `state`. Returns the rows read.
pub async fn collect<E, R, V, F>(
    spec: &Collect<'_, F>,
    tables: &mut [TableProgress],
    mut rx: mpsc::Receiver<FromWorker<E, R>>,
    publisher: &mut Publisher,
    state: &mut SnapshotState,
) -> Result<u64, E>
where
    E: From<PublishError>,
    R: Default,
    V: ReadEvent,
    F: Fn(&TableId, R) -> V,
{
    let remaining = metrics::gauge!("ferry_capture_snapshot_tables_remaining");
    remaining.set(tables.len() as f64);
    let mut rows = 0u64;
    // A table whose final event is the held one is recorded once that is sent.
    let mut held: Option<(usize, V)> = None;
    let mut waiting: Vec<usize> = Vec::new();
    for table in tables.iter().filter(|t| spec.reread.contains(&t.id)) {
        let truncate = (spec.event)(&table.id, R::default()).into_truncate();
        truncate.send(&table.id, publisher).await?;
    }
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        let message = tokio::select! {
            m = rx.recv() => m,
            _ = progress.tick() => {
                log_progress(tables);
                continue;
            }
        };
        match message {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok((t, Some(batch)))) => {
                tables[t].rows += batch.len() as u64;
                tables[t].rows_gauge.set(tables[t].rows as f64);
                if rows / COMMIT_EVENTS < (rows + batch.len() as u64) / COMMIT_EVENTS {
                    publisher.commit_snapshot_rows().await?;
                }
                rows += batch.len() as u64;
                let id = &tables[t].id;
                let mut events: Vec<V> = batch.into_iter().map(|row| (spec.event)(id, row)).collect();
                // The batch's last event is held back, the one held before goes first.
                let Some(last) = events.pop() else { continue };
                if let Some((previous_table, previous)) = held.replace((t, last)) {
                    previous.send(&tables[previous_table].id, publisher).await?;
                    for done in waiting.drain(..) {
                        complete(spec, &tables[done], publisher, state).await?;
                    }
                }
                V::send_all(&events, &tables[t].id, publisher).await?;
            }
            Some(Ok((t, None))) => {
                tables[t].chunks_left -= 1;
                if tables[t].chunks_left == 0 {
                    if held.as_ref().is_some_and(|(h, _)| *h == t) {
                        waiting.push(t);
                    } else {
                        complete(spec, &tables[t], publisher, state).await?;
                    }
                }
            }
        }
    }
    if let Some((t, mut last)) = held {
        last.mark_last();
        last.send(&tables[t].id, publisher).await?;
    }
    for done in waiting {
        complete(spec, &tables[done], publisher, state).await?;
    }
    Ok(rows)
}

/// Records a table whose every event has been sent: stored once they are in Kafka.
async fn complete<F>(
    spec: &Collect<'_, F>,
    table: &TableProgress,
    publisher: &mut Publisher,
    state: &mut SnapshotState,
) -> Result<(), PublishError> {
    state.complete(table.id.clone(), spec.at.clone());
    publisher.store_after_sent(spec.state_key.to_owned(), state).await?;
    metrics::gauge!("ferry_capture_snapshot_tables_remaining").decrement(1.0);
    let secs = table.started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(table = %table.id, rows = table.rows, rate = (table.rows as f64 / secs) as u64, "snapshot of table done");
    Ok(())
}

fn log_progress(tables: &[TableProgress]) {
    for t in tables.iter().filter(|t| t.chunks_left > 0 && t.rows > 0) {
        let secs = t.started.elapsed().as_secs_f64().max(1e-9);
        let rate = t.rows as f64 / secs;
        let eta = (t.estimate.saturating_sub(t.rows) as f64 / rate.max(1.0)).round() as u64;
        tracing::info!(
            table = %t.id,
            rows = t.rows,
            of_about = t.estimate,
            rate = rate as u64,
            eta_s = eta,
            "snapshot progress"
        );
    }
}
