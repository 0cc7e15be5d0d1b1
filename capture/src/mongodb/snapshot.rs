//! The snapshot: collections read while the cluster moves on, then the change
//! stream from the cluster time taken before the first read.
//!
//! ```text
//!  cluster time T0 (a command's operationTime) ─► stored as the stream's start
//!  each collection: estimatedDocumentCount; above --snapshot-chunk-docs, split at
//!      _id values sampled by $sample and sorted by the server
//!  chunks: find with hint {_id: 1} and min/max bounds (index bounds, so ids of
//!      every BSON type fall in exactly one chunk), read concern majority
//!  documents ─► crate::snapshot::collect ─► op "r" events; each collection recorded once in Kafka
//! ```
//!
//! The reads are not one point-in-time view: a document may change while they
//! run. The stream starts at T0, before the first read, so every change after
//! T0 is published after the snapshot, in order, whatever the read saw; a
//! document read in its newer state is then set again to states it already
//! passed, ending at the latest one. Events are keyed by `_id` and carry whole
//! documents, so a target that applies them in order ends equal to the source:
//! the overlap is a few repeated events, never a gap.
//!
//! Everything read from a new starting point (`--snapshot always`, history
//! lost, a first start killed before it stored T0) is another matter: the
//! changes between the earlier reading and T0 are in no event, so a
//! collection whose topic holds events gets a truncate first (`reread`, see
//! crate::snapshot), as does one renamed into the include list.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bson::{doc, Bson, Document};
use ferry_core::meta::TableId;
use ferry_core::position::{ClusterTime, SourcePosition};
use futures::TryStreamExt;
use mongodb::options::{Hint, ReadConcern};
use mongodb::Client;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::mongodb::change::read_event;
use crate::mongodb::error::CaptureError;
use crate::offsets::SnapshotState;
use crate::publish::Publisher;
use crate::snapshot::{collect, Collect, FromWorker, TableProgress, BATCH_ROWS};

/// Documents per chunk of a large collection by default.
pub const CHUNK_DOCS: u64 = 250_000;
/// At most this many chunks per collection (the sample's size).
const MAX_CHUNKS: u64 = 1_000;

/// The cluster's time now: where a stream opened after a snapshot starts.
pub async fn cluster_time(client: &Client) -> Result<ClusterTime, CaptureError> {
    let mut session = client.start_session().await?;
    client
        .database("admin")
        .run_command(doc! {"ping": 1})
        .session(&mut session)
        .await?;
    let t = session.operation_time().ok_or_else(|| {
        CaptureError::Config("the source reports no cluster time: change streams need a replica set".into())
    })?;
    Ok(ClusterTime {
        t: t.time,
        i: t.increment,
    })
}

/// One part of a collection: `_id` from `min` (inclusive) to `max` (exclusive).
#[derive(Debug)]
struct Chunk {
    collection: usize,
    min: Option<Bson>,
    max: Option<Bson>,
}

/// What the snapshot's events say about where they come from.
#[derive(Debug)]
pub struct SnapshotSpec<'a> {
    pub prefix: &'a str,
    /// The offsets key of the [`SnapshotState`].
    pub state_key: &'a str,
    pub chunk_docs: u64,
    pub workers: usize,
    /// The stream starts here.
    pub at: ClusterTime,
}

/// Reads every collection of `ids`, recording each in `state` once its events
/// are in Kafka; returns the documents read.
pub async fn run(
    spec: &SnapshotSpec<'_>,
    client: &Client,
    ids: &[TableId],
    reread: HashSet<TableId>,
    publisher: &mut Publisher,
    state: &mut SnapshotState,
) -> Result<u64, CaptureError> {
    let mut collections = Vec::with_capacity(ids.len());
    let mut chunks = VecDeque::new();
    for (i, id) in ids.iter().enumerate() {
        if !publisher.has_collection(id) {
            publisher.register_collection(id.clone()).await?;
        }
        let coll = client.database(&id.schema).collection::<Document>(&id.table);
        let estimate = coll.estimated_document_count().await?;
        let bounds = split(&coll, estimate, spec.chunk_docs).await?;
        let mut min = None;
        for max in bounds.into_iter().map(Some).chain([None]) {
            chunks.push_back(Chunk {
                collection: i,
                min: min.take(),
                max: max.clone(),
            });
            min = max;
        }
        let n = chunks.iter().filter(|c| c.collection == i).count();
        collections.push(TableProgress::new(id.clone(), n, estimate));
    }

    let workers = spec.workers.max(1).min(chunks.len().max(1));
    let queue = Arc::new(Mutex::new(chunks));
    let ids = Arc::new(ids.to_vec());
    let (tx, rx) = mpsc::channel::<FromWorker<CaptureError, Document>>(workers * 4);
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(worker(client.clone(), Arc::clone(&ids), Arc::clone(&queue), tx.clone()));
    }
    drop(tx);

    let started = Instant::now();
    let ts_ms = i64::from(spec.at.t) * 1000;
    let collecting = Collect {
        at: SourcePosition::Mongodb {
            token: None,
            cluster_time: Some(spec.at),
        },
        state_key: spec.state_key,
        reread,
        event: |id: &TableId, doc| read_event(spec.prefix, id, doc, ts_ms),
    };
    let docs = collect(&collecting, &mut collections, rx, publisher, state).await?;
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| CaptureError::Config(format!("a snapshot worker failed: {e}")))??;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    tracing::info!(docs, rate = (docs as f64 / secs) as u64, workers, "snapshot read");
    Ok(docs)
}

/// `_id` values that split a collection of about `estimate` documents into
/// chunks of about `chunk_docs`, in index order; none for a small one.
async fn split(
    coll: &mongodb::Collection<Document>,
    estimate: u64,
    chunk_docs: u64,
) -> Result<Vec<Bson>, CaptureError> {
    let parts = (estimate / chunk_docs.max(1)).min(MAX_CHUNKS);
    if parts < 2 {
        return Ok(Vec::new());
    }
    let sampled: Vec<Document> = coll
        .aggregate([
            doc! {"$sample": {"size": (parts - 1) as i64}},
            doc! {"$project": {"_id": 1}},
            doc! {"$sort": {"_id": 1}},
        ])
        .await?
        .try_collect()
        .await?;
    let mut bounds: Vec<Bson> = sampled.into_iter().filter_map(|mut d| d.remove("_id")).collect();
    bounds.dedup();
    Ok(bounds)
}

/// Reads chunks off `queue` until it is empty, sending documents in batches.
async fn worker(
    client: Client,
    ids: Arc<Vec<TableId>>,
    queue: Arc<Mutex<VecDeque<Chunk>>>,
    tx: mpsc::Sender<FromWorker<CaptureError, Document>>,
) -> Result<(), CaptureError> {
    loop {
        let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
        let Some(chunk) = next else { return Ok(()) };
        let id = &ids[chunk.collection];
        let coll = client
            .database(&id.schema)
            .collection::<Document>(&id.table)
            .clone_with_type::<Document>();
        let mut find = coll
            .find(doc! {})
            .hint(Hint::Keys(doc! {"_id": 1}))
            .read_concern(ReadConcern::majority())
            .batch_size(BATCH_ROWS as u32);
        if let Some(min) = chunk.min {
            find = find.min(doc! {"_id": min});
        }
        if let Some(max) = chunk.max {
            find = find.max(doc! {"_id": max});
        }
        let mut cursor = match find.await {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return Ok(());
            }
        };
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        loop {
            match cursor.try_next().await {
                Ok(Some(doc)) => {
                    batch.push(doc);
                    if batch.len() == BATCH_ROWS
                        && tx
                            .send(Ok((chunk.collection, Some(std::mem::take(&mut batch)))))
                            .await
                            .is_err()
                    {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() && tx.send(Ok((chunk.collection, Some(batch)))).await.is_err() {
            return Ok(());
        }
        if tx.send(Ok((chunk.collection, None))).await.is_err() {
            return Ok(());
        }
    }
}
