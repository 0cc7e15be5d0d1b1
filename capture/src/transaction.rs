//! The source transaction being read, as every source numbers its events:
//! `transaction.total_order` and `data_collection_order` in each envelope,
//! a `BEGIN` record before the first event and an `END` record with the
//! counts after the last (see `ferry_core::transaction`). Transactions that
//! touch no captured table publish nothing.

use ferry_core::envelope::{SmolStr, TransactionBlock};
use ferry_core::meta::TableId;
use ferry_core::transaction::{TransactionRecord, TxStatus};

use crate::publish::{PublishError, Publisher};

/// One source transaction's events so far.
#[derive(Debug)]
pub struct OpenTransaction {
    /// The id events carry in `transaction.id`.
    pub id: String,
    /// Commit time at the source.
    pub ts_ms: i64,
    total: i64,
    /// Events per table; a transaction touches few tables, so a list.
    per_table: Vec<(TableId, i64)>,
}

impl OpenTransaction {
    pub fn new(id: String, ts_ms: i64) -> Self {
        Self {
            id,
            ts_ms,
            total: 0,
            per_table: Vec::new(),
        }
    }

    /// The block of the next event, of `table`; the first one publishes `BEGIN`.
    pub async fn next(&mut self, table: &TableId, publisher: &mut Publisher) -> Result<TransactionBlock, PublishError> {
        if self.total == 0 {
            publisher.send_transaction(&self.record(TxStatus::Begin)).await?;
        }
        self.total += 1;
        let at = self.per_table.iter().position(|(t, _)| t == table).unwrap_or_else(|| {
            self.per_table.push((table.clone(), 0));
            self.per_table.len() - 1
        });
        self.per_table[at].1 += 1;
        Ok(TransactionBlock {
            id: SmolStr::new(&self.id),
            total_order: self.total,
            data_collection_order: self.per_table[at].1,
        })
    }

    /// Publishes `END` if the transaction had events.
    pub async fn end(self, publisher: &mut Publisher) -> Result<(), PublishError> {
        if self.total > 0 {
            publisher.send_transaction(&self.record(TxStatus::End)).await?;
        }
        Ok(())
    }

    fn record(&self, status: TxStatus) -> TransactionRecord {
        let mut collections: Vec<(String, i64)> = self
            .per_table
            .iter()
            .map(|(t, n)| (format!("{}.{}", t.schema, t.table), *n))
            .collect();
        collections.sort();
        let end = status == TxStatus::End;
        TransactionRecord {
            status,
            id: self.id.clone(),
            event_count: end.then_some(self.total),
            data_collections: if end { collections } else { vec![] },
            ts_ms: self.ts_ms,
        }
    }
}
