//! The change stream: events in order, published; the resume token stored as
//! the position once they are in Kafka.
//!
//! One stream covers every included collection: a database's stream when the
//! include list names one database, else the whole deployment's, filtered by
//! a `$match` on the namespace (so collections created later that match a
//! pattern are captured from their first insert).
//!
//! Events of one multi-document transaction (same `lsid` and `txnNumber`)
//! come together; they are numbered in `transaction`, framed by BEGIN and END
//! records, and the position moves only past the whole transaction. A quiet
//! second closes an open transaction and stores
//! the stream's latest token, so a quiet source's stored token stays recent
//! and never falls off the oplog.

use bson::{doc, Bson, Document};
use ferry_core::meta::TableId;
use ferry_core::position::{ResumeToken, SourcePosition};
use mongodb::change_stream::ChangeStream;
use mongodb::options::{FullDocumentBeforeChangeType, FullDocumentType};
use mongodb::Client;
use serde::Deserialize;

use ferry_core::names::regex_escape;

use crate::filter::TableFilter;
use crate::mongodb::change::{self, Change, Reading};
use crate::mongodb::error::CaptureError;
use crate::mongodb::{Images, MongoCaptureConfig};
use crate::publish::Publisher;
use crate::transaction::OpenTransaction;

/// Why streaming stopped without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for.
    Shutdown,
    /// A collection was renamed to an included name: its documents must be
    /// read (they came by no insert).
    Reread(TableId),
    /// The stream was invalidated: open it again after the checkpoint.
    Invalidated,
}

/// Reads the stream and publishes its events.
#[derive(Debug)]
pub struct Streamer<'a> {
    config: &'a MongoCaptureConfig,
    /// The position every event up to which is published (stored once in Kafka).
    pub checkpointed: SourcePosition,
    open: Option<OpenTransaction>,
    /// The token of the last event read.
    last: Option<ResumeToken>,
}

/// `$match` on the namespace: one clause per include pattern.
pub fn pipeline(filter: &TableFilter) -> Vec<Document> {
    if filter.patterns().is_empty() {
        return Vec::new();
    }
    let regex = |glob: &str| {
        let parts: Vec<String> = glob.split('*').map(regex_escape).collect();
        format!("^{}$", parts.join(".*"))
    };
    let mut clauses: Vec<Bson> = filter
        .patterns()
        .iter()
        .map(|(db, coll)| {
            Bson::Document(doc! {
                "ns.db": {"$regex": regex(db)},
                "ns.coll": {"$regex": regex(coll)},
            })
        })
        .collect();
    // dropDatabase has no ns.coll; invalidate has no ns at all.
    clauses.push(Bson::Document(
        doc! {"operationType": {"$in": ["dropDatabase", "invalidate"]}},
    ));
    vec![doc! {"$match": {"$or": clauses}}]
}

/// The one database every include pattern names, if there is one: its stream
/// needs privileges on that database only.
pub fn single_database(filter: &TableFilter) -> Option<&str> {
    let first = &filter.patterns().first()?.0;
    (!first.contains('*') && filter.patterns().iter().all(|(db, _)| db == first)).then_some(first.as_str())
}

/// The driver's token for `token`.
pub fn driver_token(token: &ResumeToken) -> Result<mongodb::change_stream::event::ResumeToken, CaptureError> {
    #[derive(Deserialize)]
    struct Wrapped {
        t: mongodb::change_stream::event::ResumeToken,
    }
    let bad = |e: &dyn std::fmt::Display| CaptureError::Config(format!("stored resume token {}: {e}", token.0));
    let bytes = bson::serialize_to_vec(&doc! {"t": {"_data": &token.0}}).map_err(|e| bad(&e))?;
    let wrapped: Wrapped = bson::deserialize_from_slice(&bytes).map_err(|e| bad(&e))?;
    Ok(wrapped.t)
}

/// Ferry's token for the driver's.
fn our_token(token: &mongodb::change_stream::event::ResumeToken) -> Option<ResumeToken> {
    match bson::serialize_to_bson(token).ok()? {
        Bson::Document(d) => d.get_str("_data").ok().map(|s| ResumeToken(s.to_owned())),
        _ => None,
    }
}

impl<'a> Streamer<'a> {
    pub fn new(config: &'a MongoCaptureConfig, from: SourcePosition) -> Self {
        Self {
            config,
            checkpointed: from,
            open: None,
            last: None,
        }
    }

    fn token_text(&self) -> String {
        match &self.checkpointed {
            SourcePosition::Mongodb { token: Some(t), .. } => t.0.clone(),
            SourcePosition::Mongodb {
                cluster_time: Some(c), ..
            } => format!("cluster time {}.{}", c.t, c.i),
            other => format!("{other:?}"),
        }
    }

    /// Opens the stream after the checkpoint.
    async fn open(&self, client: &Client) -> Result<ChangeStream<Document>, CaptureError> {
        let filter = &self.config.common.tables;
        let database = single_database(filter).map(|db| client.database(db));
        let watch = match &database {
            Some(db) => db.watch(),
            None => client.watch(),
        };
        let watch = watch
            .pipeline(pipeline(filter))
            .max_await_time(std::time::Duration::from_secs(1))
            .full_document(match self.config.full_document {
                Images::Off => FullDocumentType::Other("default".into()),
                Images::WhenAvailable => FullDocumentType::UpdateLookup,
                Images::Required => FullDocumentType::Required,
            })
            .full_document_before_change(match self.config.before {
                Images::Off => FullDocumentBeforeChangeType::Off,
                Images::WhenAvailable => FullDocumentBeforeChangeType::WhenAvailable,
                Images::Required => FullDocumentBeforeChangeType::Required,
            });
        let watch = match &self.checkpointed {
            SourcePosition::Mongodb { token: Some(t), .. } => watch.start_after(driver_token(t)?),
            SourcePosition::Mongodb {
                cluster_time: Some(c), ..
            } => watch.start_at_operation_time(bson::Timestamp {
                time: c.t,
                increment: c.i,
            }),
            _ => watch,
        };
        let stream = watch
            .await
            .map_err(|e| CaptureError::from_stream(e, &self.token_text()))?;
        Ok(stream.with_type::<Document>())
    }

    /// Streams until `shutdown`, an invalidate, a rename into the include
    /// list, or an error.
    pub async fn run(
        &mut self,
        client: &Client,
        publisher: &mut Publisher,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Result<Ended, CaptureError> {
        let mut stream = self.open(client).await?;
        let reading = Reading {
            prefix: &self.config.common.prefix,
            full_document: self.config.full_document != Images::Off,
        };
        loop {
            let next = tokio::select! {
                _ = &mut *shutdown => {
                    self.close(publisher).await?;
                    return Ok(Ended::Shutdown);
                }
                next = stream.next_if_any() => next,
            };
            let doc = match next {
                Ok(Some(doc)) => doc,
                Ok(None) => {
                    // Nothing new for a second: a transaction's events are all
                    // in the oplog at once, so an open one is complete.
                    self.close(publisher).await?;
                    if let Some(token) = stream.resume_token().as_ref().and_then(our_token) {
                        self.checkpoint(token, publisher).await?;
                    }
                    publisher.tick().await?;
                    continue;
                }
                Err(e) => return Err(CaptureError::from_stream(e, &self.token_text())),
            };
            let read = change::read(&doc, reading)?;
            let transaction = read.transaction;
            if self.open.as_ref().map(|t| &t.id) != transaction.as_ref() {
                self.close(publisher).await?;
            }
            self.last = Some(read.token.clone());
            match read.change {
                Change::Document {
                    collection,
                    mut event,
                    gone,
                } if self.config.common.tables.includes(&collection) => {
                    if !publisher.has_collection(&collection) {
                        publisher.register_collection(collection.clone()).await?;
                    }
                    if let Some(id) = &transaction {
                        let ts_ms = event.source.ts_ms;
                        let open = self.open.get_or_insert_with(|| OpenTransaction::new(id.clone(), ts_ms));
                        event.transaction = Some(open.next(&collection, publisher).await?);
                    }
                    publisher.send_document(&collection, &event, gone).await?;
                }
                Change::Document { .. } | Change::Nothing => {}
                Change::Gone {
                    collection,
                    event,
                    renamed_to,
                } => {
                    if publisher.has_collection(&collection) {
                        tracing::info!(collection = %collection, "collection dropped or renamed away: publishing a truncate");
                        publisher.send_document(&collection, &event, false).await?;
                    }
                    if let Some(to) = renamed_to.filter(|to| self.config.common.tables.includes(to)) {
                        self.close(publisher).await?;
                        self.checkpoint(read.token, publisher).await?;
                        tracing::info!(from = %collection, to = %to, "collection renamed into the include list: reading it");
                        return Ok(Ended::Reread(to));
                    }
                }
                Change::Invalidated => {
                    self.close(publisher).await?;
                    self.checkpoint(read.token, publisher).await?;
                    return Ok(Ended::Invalidated);
                }
            }
            if transaction.is_none() {
                if let Some(token) = self.last.clone() {
                    self.checkpoint(token, publisher).await?;
                }
            }
        }
    }

    /// Ends the open transaction and stores the position after it.
    async fn close(&mut self, publisher: &mut Publisher) -> Result<(), CaptureError> {
        if let Some(open) = self.open.take() {
            open.end(publisher).await?;
        }
        if let Some(token) = self.last.clone() {
            self.checkpoint(token, publisher).await?;
        }
        Ok(())
    }

    async fn checkpoint(&mut self, token: ResumeToken, publisher: &mut Publisher) -> Result<(), CaptureError> {
        let position = SourcePosition::Mongodb {
            token: Some(token),
            cluster_time: None,
        };
        if position != self.checkpointed {
            publisher.checkpoint(position.clone()).await?;
            self.checkpointed = position;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_namespace_match_follows_the_include_list() {
        assert!(pipeline(&TableFilter::parse("").unwrap()).is_empty());
        let filter = TableFilter::parse("shop.orders,shop.log*").unwrap();
        assert_eq!(single_database(&filter), Some("shop"));
        let stage = &pipeline(&filter)[0];
        let clauses = stage.get_document("$match").unwrap().get_array("$or").unwrap();
        assert_eq!(
            clauses[1].as_document().unwrap(),
            &doc! {"ns.db": {"$regex": "^shop$"}, "ns.coll": {"$regex": "^log.*$"}}
        );
        assert_eq!(clauses.len(), 3, "and dropDatabase/invalidate");
        assert_eq!(regex_escape("a.b(c)*"), "a\\.b\\(c\\)\\*");
        assert_eq!(single_database(&TableFilter::parse("shop.a,billing.b").unwrap()), None);
        assert_eq!(single_database(&TableFilter::parse("s*.a").unwrap()), None);
    }

    #[test]
    fn stored_tokens_become_the_drivers_and_back() {
        let ours = ResumeToken("8263A1B2C3000000012B022C0100296E5A1004".into());
        let theirs = driver_token(&ours).unwrap();
        assert_eq!(our_token(&theirs), Some(ours));
    }
}
