//! The binlog stream: the server sends its binlog as a replica would receive
//! it; row events become change events, transactions end at their XID.
//!
//! ```text
//!  connect as a replica (--server-id) ─► MariaDB: @mariadb_slave_capability=4 (real GTID events),
//!     @slave_connect_state = stored GTID list, file '' at 4   (resume by GTID)
//!     or the stored file and position                          (no GTID yet, MySQL)
//!  Rotate ─► current file          GTID (MariaDB 162 parsed here, MySQL 33) ─► transaction opens
//!  Table map ─► columns from its full metadata; a new shape registers a new schema version
//!  Write/Update/Delete rows ─► events (a key change: delete + create)
//!  XID (or COMMIT, or a DDL on its own) ─► END record, checkpoint {file, end of event, GTID set}
//!  TRUNCATE TABLE ─► a truncate event     compressed events (165–167) ─► a definite error
//! ```
//!
//! The stored position is always the end of a whole transaction, so a restart
//! never starts inside one. Column names, keys and types come from each table
//! map's full metadata (`binlog_row_metadata=FULL`), not from the table as it
//! is now, so events written before a DDL decode with the columns they were
//! written with; the new schema version is registered before its first row.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::config::SecretUrl;
use ferry_core::envelope::{ChangeEvent, Op, SmolStr, Snapshot, SourceDetail, SourceInfo};
use ferry_core::meta::{TableId, TableMeta};
use ferry_core::mysql::MysqlConfig;
use ferry_core::position::{BinlogPosition, GtidSet, MariadbGtid, SourcePosition};
use ferry_core::value::Datum;
use futures::StreamExt;
use mysql_async::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest};

use crate::filter::TableFilter;
use crate::mysql::error::CaptureError;
use crate::mysql::types::{self, SourceColumn};
use crate::now_ms;
use crate::publish::Publisher;
use crate::transaction::OpenTransaction;
use ferry_core::schema_change::SchemaChange;

/// How often the server sends a heartbeat when it has nothing else: a dead
/// connection shows within a few of them.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// No event (not even a heartbeat) for this long: the connection is dead.
const SILENCE: Duration = Duration::from_secs(30);

/// MariaDB's own event types, which the binlog crate does not decode.
const MARIADB_ANNOTATE_ROWS: u8 = 160;
const MARIADB_GTID: u8 = 162;
const MARIADB_GTID_LIST: u8 = 163;
/// Compressed query and rows events (`log_bin_compress=ON`).
const MARIADB_COMPRESSED: std::ops::RangeInclusive<u8> = 165..=171;

/// Where to start reading.
#[derive(Debug, Clone)]
pub struct Start {
    pub binlog: BinlogPosition,
    pub gtids: Option<GtidSet>,
}

/// An open binlog stream.
pub struct Opened {
    stream: BinlogStream,
    /// Whether events carry a checksum (`binlog_checksum` is not NONE).
    checksums: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("checksums", &self.checksums)
            .finish_non_exhaustive()
    }
}

/// Opens the binlog stream at `start` as replica `server_id`.
pub async fn open(
    opts: &MysqlConfig,
    url: &SecretUrl,
    server_id: u32,
    mariadb: bool,
    start: &Start,
) -> Result<Opened, CaptureError> {
    let mut conn = ferry_core::mysql::connect(opts, url).await?;
    let checksum: Option<String> = conn.query_first("SELECT @@GLOBAL.binlog_checksum").await?;
    let checksums = checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
    let heartbeat_ns = HEARTBEAT.as_nanos();
    conn.query_drop(format!("SET @master_heartbeat_period = {heartbeat_ns}"))
        .await?;
    let by_gtid = match (&start.gtids, mariadb) {
        (Some(set @ GtidSet::Mariadb(map)), true) if !map.is_empty() => {
            // The text is digits, dashes and commas only (GtidSet's Display).
            conn.query_drop(format!(
                "SET @mariadb_slave_capability = 4, @slave_connect_state = '{set}', \
                 @slave_gtid_strict_mode = 0, @slave_gtid_ignore_duplicates = 0"
            ))
            .await?;
            true
        }
        (_, true) => {
            conn.query_drop("SET @mariadb_slave_capability = 4").await?;
            false
        }
        _ => false,
    };
    let request = if by_gtid {
        BinlogStreamRequest::new(server_id).with_filename(b"").with_pos(4u64)
    } else {
        BinlogStreamRequest::new(server_id)
            .with_filename(start.binlog.file.as_bytes())
            .with_pos(start.binlog.pos)
    };
    Ok(Opened {
        stream: conn.get_binlog_stream(request).await?,
        checksums,
    })
}

/// A captured table as the binlog describes it.
#[derive(Debug)]
struct StreamTable {
    meta: TableMeta,
    columns: Vec<SourceColumn>,
}

/// The transaction being read.
#[derive(Debug)]
struct Tx {
    open: OpenTransaction,
    /// Where its first event starts: it committed before any position past it.
    start: BinlogPosition,
    gtid: Option<SmolStr>,
    mariadb_gtid: Option<MariadbGtid>,
    mysql_gtid: Option<(uuid::Uuid, u64)>,
    /// Opened by a `BEGIN`: ends at its XID or `COMMIT`. Without one (a DDL
    /// on its own), it ends with its statement.
    began: bool,
    /// The server that wrote it.
    server_id: u32,
    /// Events published so far.
    emitted: u64,
    /// Events to pass over: already published before a reconnect.
    skip: u64,
}

/// Turns the binlog into published events.
#[derive(Debug)]
pub struct Streamer<'a> {
    pub prefix: &'a str,
    pub filter: &'a TableFilter,
    /// The binlog file being read.
    file: String,
    gtids: Option<GtidSet>,
    tx: Option<Tx>,
    /// The transaction a lost connection interrupted: read again after the
    /// reconnect, its events already published are not published twice.
    resume: Option<Tx>,
    /// Whether events carry a checksum.
    checksums: bool,
    /// Whether this connection's format description arrived (after it, the
    /// crate strips checksums itself).
    described: bool,
    /// Table map id → the table, or `None` when it is not captured.
    maps: HashMap<u64, Option<Arc<StreamTable>>>,
    /// Tables whose snapshot was read after the start, with its position.
    snapshotted_at: HashMap<TableId, BinlogPosition>,
    /// The last position checkpointed: where a reconnect resumes.
    pub checkpointed: Start,
}

impl<'a> Streamer<'a> {
    pub fn new(
        prefix: &'a str,
        filter: &'a TableFilter,
        start: Start,
        snapshotted_at: HashMap<TableId, BinlogPosition>,
    ) -> Self {
        Self {
            prefix,
            filter,
            file: start.binlog.file.clone(),
            gtids: start.gtids.clone(),
            tx: None,
            resume: None,
            checksums: true,
            described: false,
            maps: HashMap::new(),
            snapshotted_at,
            checkpointed: start,
        }
    }

    /// Reads until `shutdown` resolves or the stream fails.
    pub async fn run(
        &mut self,
        opened: Opened,
        publisher: &mut Publisher,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), CaptureError> {
        let Opened { mut stream, checksums } = opened;
        self.checksums = checksums;
        self.described = false;
        tokio::pin!(shutdown);
        let mut commit = tokio::time::interval(crate::publish::COMMIT_AFTER);
        loop {
            let next = tokio::select! {
                _ = &mut shutdown => break,
                _ = commit.tick() => {
                    publisher.tick().await?;
                    continue;
                }
                next = tokio::time::timeout(SILENCE, stream.next()) => next,
            };
            let event = match next {
                Err(_) => {
                    return Err(CaptureError::Binlog {
                        at: self.at(0),
                        reason: format!(
                            "nothing from the server for {} s (not even a heartbeat)",
                            SILENCE.as_secs()
                        ),
                    })
                }
                Ok(None) => {
                    return Err(CaptureError::Binlog {
                        at: self.at(0),
                        reason: "the server ended the binlog stream".into(),
                    })
                }
                Ok(Some(Err(e))) => return Err(self.stream_error(e)),
                Ok(Some(Ok(event))) => event,
            };
            self.handle(&stream, event, publisher).await?;
        }
        stream.close().await.ok();
        Ok(())
    }

    /// Error 1236 (the position is gone) is definite; anything else about
    /// the connection is retried from the last checkpoint.
    fn stream_error(&self, e: mysql_async::Error) -> CaptureError {
        match &e {
            mysql_async::Error::Server(s) if s.code == 1236 => CaptureError::Purged {
                position: match &self.checkpointed.gtids {
                    Some(g) if !g.to_string().is_empty() => {
                        format!(
                            "{}:{} (GTID {g})",
                            self.checkpointed.binlog.file, self.checkpointed.binlog.pos
                        )
                    }
                    _ => format!("{}:{}", self.checkpointed.binlog.file, self.checkpointed.binlog.pos),
                },
                reason: s.message.clone(),
            },
            _ => CaptureError::Mysql(e),
        }
    }

    fn at(&self, pos: u64) -> String {
        format!("{}:{pos}", self.file)
    }

    async fn handle(
        &mut self,
        stream: &BinlogStream,
        event: Event,
        publisher: &mut Publisher,
    ) -> Result<(), CaptureError> {
        let header = event.header();
        let kind = header.event_type_raw();
        let end = u64::from(header.log_pos());
        let start_pos = end.saturating_sub(u64::from(header.event_size()));
        let ts_ms = i64::from(header.timestamp()) * 1000;
        match kind {
            MARIADB_GTID => {
                let gtid = parse_mariadb_gtid(event.data(), header.server_id())
                    .ok_or_else(|| self.malformed("MariaDB GTID", start_pos))?;
                let text = format!("{}-{}-{}", gtid.domain, gtid.server_id, gtid.sequence);
                self.begin(Some(text), start_pos, ts_ms, header.server_id());
                if let Some(tx) = &mut self.tx {
                    tx.mariadb_gtid = Some(gtid);
                }
                return Ok(());
            }
            MARIADB_GTID_LIST => {
                // Sent after the fake Rotate when resuming: the server's state
                // at that point. Our own set already says where we are.
                return Ok(());
            }
            MARIADB_ANNOTATE_ROWS => return Ok(()),
            k if MARIADB_COMPRESSED.contains(&k) => {
                return Err(CaptureError::Compressed {
                    event_type: k,
                    file: self.file.clone(),
                    pos: start_pos,
                })
            }
            _ => {}
        }
        let Some(data) = event.read_data().map_err(|e| CaptureError::Binlog {
            at: self.at(start_pos),
            reason: format!("event type {kind} does not decode: {e}"),
        })?
        else {
            return Ok(());
        };
        match data {
            EventData::RotateEvent(rotate) => {
                // The first Rotate is made up by the server (at position 0)
                // and comes before the format description, so the crate
                // cannot know that it carries a checksum: its 4 bytes are
                // still on the name.
                let name = rotate.name_raw();
                let name = match name.len().checked_sub(4) {
                    Some(len) if !self.described && self.checksums => &name[..len],
                    _ => name,
                };
                self.file = String::from_utf8_lossy(name).into_owned();
                self.maps.clear();
            }
            EventData::GtidEvent(gtid) => {
                let sid = uuid::Uuid::from_bytes(gtid.sid());
                let text = format!("{sid}:{}", gtid.gno());
                self.begin(Some(text), start_pos, ts_ms, header.server_id());
                if let Some(tx) = &mut self.tx {
                    tx.mysql_gtid = Some((sid, gtid.gno()));
                }
            }
            EventData::QueryEvent(query) => {
                let sql = query.query();
                let statement = sql.trim();
                if statement.eq_ignore_ascii_case("BEGIN") {
                    if self.tx.is_none() {
                        self.begin(None, start_pos, ts_ms, header.server_id());
                    }
                    if let Some(tx) = &mut self.tx {
                        tx.began = true;
                    }
                } else if statement.eq_ignore_ascii_case("COMMIT") {
                    self.commit(end, publisher).await?;
                } else {
                    let schema = query.schema().into_owned();
                    if let Some(table) = truncated_table(statement, &schema) {
                        self.truncate(table, start_pos, ts_ms, publisher).await?;
                    } else {
                        // Table maps after a DDL describe the new shape.
                        self.maps.clear();
                        // Statements of other databases are not this capture's history.
                        if self.filter.includes_schema(&schema) {
                            tracing::info!(schema = %schema, ddl = %statement, "DDL");
                            self.schema_change(&schema, Some(statement), None, start_pos, publisher)
                                .await?;
                        }
                    }
                    if self.tx.as_ref().is_none_or(|tx| !tx.began) {
                        self.commit(end, publisher).await?;
                    }
                }
            }
            EventData::FormatDescriptionEvent(_) => self.described = true,
            EventData::XidEvent(_) => self.commit(end, publisher).await?,
            EventData::TableMapEvent(tme) => self.table_map(&tme, publisher).await?,
            EventData::RowsEvent(rows) => self.rows(stream, &rows, start_pos, publisher).await?,
            _ => {}
        }
        Ok(())
    }

    fn malformed(&self, what: &str, pos: u64) -> CaptureError {
        CaptureError::Binlog {
            at: self.at(pos),
            reason: format!("{what} event is malformed"),
        }
    }

    /// The connection was lost: the next one starts again at the last checkpoint.
    pub fn interrupted(&mut self) {
        self.resume = self.tx.take();
        self.maps.clear();
    }

    fn begin(&mut self, gtid: Option<String>, start_pos: u64, ts_ms: i64, server_id: u32) {
        let start = BinlogPosition {
            file: self.file.clone(),
            pos: start_pos,
            row: 0,
        };
        if let Some(mut tx) = self.resume.take().filter(|tx| tx.start == start) {
            tx.skip = std::mem::take(&mut tx.emitted);
            self.tx = Some(tx);
            return;
        }
        let id = gtid.clone().unwrap_or_else(|| format!("{}:{start_pos}", self.file));
        let gtid = gtid.map(SmolStr::from);
        self.tx = Some(Tx {
            open: OpenTransaction::new(id, ts_ms),
            start,
            gtid,
            mariadb_gtid: None,
            mysql_gtid: None,
            began: false,
            server_id,
            emitted: 0,
            skip: 0,
        });
    }

    /// Ends the open transaction at `end` (the end of its last event).
    async fn commit(&mut self, end: u64, publisher: &mut Publisher) -> Result<(), CaptureError> {
        if let Some(tx) = self.tx.take() {
            let mut gtids = self.gtids.take();
            match (&mut gtids, tx.mariadb_gtid, tx.mysql_gtid) {
                (Some(set), Some(g), _) => set.add_mariadb(g).ok(),
                (None, Some(g), _) => {
                    let mut set = GtidSet::Mariadb(Default::default());
                    set.add_mariadb(g).ok();
                    gtids = Some(set);
                    None
                }
                (Some(set), _, Some((sid, gno))) => set.add_mysql(sid, gno).ok(),
                _ => None,
            };
            self.gtids = gtids;
            tx.open.end(publisher).await?;
        }
        let position = Start {
            binlog: BinlogPosition {
                file: self.file.clone(),
                pos: end,
                row: 0,
            },
            gtids: self.gtids.clone(),
        };
        publisher
            .checkpoint(SourcePosition::Mysql {
                binlog: position.binlog.clone(),
                gtids: position.gtids.clone(),
            })
            .await?;
        self.checkpointed = position;
        Ok(())
    }

    async fn table_map(&mut self, tme: &TableMapEvent<'_>, publisher: &mut Publisher) -> Result<(), CaptureError> {
        if self.maps.contains_key(&tme.table_id()) {
            return Ok(());
        }
        let id = TableId::new(tme.database_name(), tme.table_name());
        if !self.filter.includes(&id) || id.schema == "mysql" {
            self.maps.insert(tme.table_id(), None);
            return Ok(());
        }
        let (columns, key) = types::from_table_map(tme).map_err(|error| CaptureError::Type {
            table: id.to_string(),
            error,
        })?;
        let meta = types::table_meta(id.clone(), &columns, key);
        let same = publisher.table(&id).is_some_and(|registered| {
            registered.key == meta.key
                && registered.columns.len() == meta.columns.len()
                && registered
                    .columns
                    .iter()
                    .zip(&meta.columns)
                    .all(|(a, b)| a.name == b.name && a.data_type == b.data_type && a.nullable == b.nullable)
        });
        // The registered version (read from information_schema, with
        // defaults) stands while the binlog describes the same shape.
        let meta = match (same, publisher.table(&id)) {
            (true, Some(registered)) => registered.clone(),
            _ => {
                tracing::info!(table = %id, "registering a new schema version");
                let schema_id = publisher.register_table(meta.clone()).await?;
                let pos = self.tx.as_ref().map_or(0, |tx| tx.start.pos);
                self.schema_change(&id.schema, None, Some((&id.table, schema_id)), pos, publisher)
                    .await?;
                meta
            }
        };
        self.maps
            .insert(tme.table_id(), Some(Arc::new(StreamTable { meta, columns })));
        Ok(())
    }

    async fn rows(
        &mut self,
        stream: &BinlogStream,
        rows: &RowsEventData<'_>,
        start_pos: u64,
        publisher: &mut Publisher,
    ) -> Result<(), CaptureError> {
        let Some(Some(table)) = self.maps.get(&rows.table_id()).cloned() else {
            return Ok(());
        };
        if self.skipped(&table.meta.id) {
            return Ok(());
        }
        let tme = stream.get_tme(rows.table_id()).ok_or_else(|| CaptureError::Binlog {
            at: self.at(start_pos),
            reason: format!("a rows event of {} without its table map", table.meta.id),
        })?;
        let op = match rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Op::Create,
            RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => Op::Update,
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => Op::Delete,
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(CaptureError::Binlog {
                    at: self.at(start_pos),
                    reason: "a partial JSON update (binlog_row_value_options=PARTIAL_JSON): set it to '' on the source"
                        .into(),
                })
            }
        };
        for (row, images) in rows.rows(tme).enumerate() {
            let (before, after) = images.map_err(|e| CaptureError::Binlog {
                at: self.at(start_pos),
                reason: format!("row {row} of {} does not decode: {e}", table.meta.id),
            })?;
            let before = before.map(|r| self.values(&table, &r, start_pos)).transpose()?;
            let after = after.map(|r| self.values(&table, &r, start_pos)).transpose()?;
            let position = (start_pos, row as u32);
            match (op, before, after) {
                (Op::Update, Some(old), Some(new)) if table.meta.key.iter().any(|&i| old[i] != new[i]) => {
                    // A key change, as Debezium gives it: a delete of the old
                    // key (with its tombstone), then a create of the new one.
                    self.emit(&table, Op::Delete, Some(old), None, position, publisher)
                        .await?;
                    self.emit(&table, Op::Create, None, Some(new), position, publisher)
                        .await?;
                }
                (op, before, after) => self.emit(&table, op, before, after, position, publisher).await?,
            }
        }
        Ok(())
    }

    /// Whether the open transaction is already in the table's snapshot.
    fn skipped(&self, table: &TableId) -> bool {
        match (&self.tx, self.snapshotted_at.get(table)) {
            (Some(tx), Some(at)) => tx.start < *at,
            _ => false,
        }
    }

    fn values(&self, table: &StreamTable, row: &BinlogRow, pos: u64) -> Result<Vec<Datum>, CaptureError> {
        (0..table.columns.len())
            .map(|i| {
                let column = &table.columns[i];
                let value = row.as_ref(i).ok_or_else(|| CaptureError::Binlog {
                    at: self.at(pos),
                    reason: format!(
                        "a row of {} lacks column {} (binlog_row_image must be FULL)",
                        table.meta.id, column.name
                    ),
                })?;
                types::from_binlog(&column.kind, value).map_err(|error| CaptureError::Type {
                    table: format!("{} column {} at {}", table.meta.id, column.name, self.at(pos)),
                    error,
                })
            })
            .collect()
    }

    async fn truncate(
        &mut self,
        table: TableId,
        start_pos: u64,
        ts_ms: i64,
        publisher: &mut Publisher,
    ) -> Result<(), CaptureError> {
        if !self.filter.includes(&table) || publisher.table(&table).is_none() || self.skipped(&table) {
            return Ok(());
        }
        if self.tx.is_none() {
            self.begin(None, start_pos, ts_ms, 0);
        }
        let meta = publisher.table(&table).cloned().ok_or_else(|| CaptureError::Binlog {
            at: self.at(start_pos),
            reason: format!("truncate of unknown table {table}"),
        })?;
        let stream_table = StreamTable { meta, columns: vec![] };
        self.emit(&stream_table, Op::Truncate, None, None, (start_pos, 0), publisher)
            .await
    }

    /// The `source` block of what the open transaction wrote at `pos`.
    fn source(&self, db: &str, table: Option<&str>, pos: u64, row: u32) -> SourceInfo {
        let (ts_ms, gtid, server_id) = match &self.tx {
            Some(tx) => (tx.open.ts_ms, tx.gtid.clone(), tx.server_id),
            None => (now_ms(), None, 0),
        };
        SourceInfo {
            name: SmolStr::new(self.prefix),
            ts_ms,
            snapshot: Snapshot::False,
            db: SmolStr::new(db),
            detail: SourceDetail::Mysql {
                table: table.map(SmolStr::new),
                server_id: i64::from(server_id),
                gtid,
                file: SmolStr::new(&self.file),
                pos: pos as i64,
                row: row as i32,
                thread: None,
                query: None,
            },
        }
    }

    /// Records a DDL statement, or a table's new schema version, on `<prefix>.schema-changes`.
    async fn schema_change(
        &self,
        database: &str,
        ddl: Option<&str>,
        version: Option<(&str, u32)>,
        pos: u64,
        publisher: &mut Publisher,
    ) -> Result<(), CaptureError> {
        let change = SchemaChange {
            database: database.to_owned(),
            ddl: ddl.map(str::to_owned),
            table: version.map(|(t, _)| t.to_owned()),
            schema_id: version.map(|(_, id)| id),
            source: self.source(database, version.map(|(t, _)| t), pos, 0),
            ts_ms: now_ms(),
        };
        Ok(publisher.send_schema_change(&change).await?)
    }

    async fn emit(
        &mut self,
        table: &StreamTable,
        op: Op,
        before: Option<Vec<Datum>>,
        after: Option<Vec<Datum>>,
        (pos, row): (u64, u32),
        publisher: &mut Publisher,
    ) -> Result<(), CaptureError> {
        let id = &table.meta.id;
        let transaction = match &mut self.tx {
            Some(tx) if tx.skip > 0 => {
                tx.skip -= 1;
                tx.emitted += 1;
                return Ok(());
            }
            Some(tx) => {
                tx.emitted += 1;
                Some(tx.open.next(id, publisher).await?)
            }
            None => None,
        };
        let event = ChangeEvent {
            op,
            before,
            after,
            source: self.source(&id.schema, Some(&id.table), pos, row),
            ts_ms: now_ms(),
            transaction,
            unchanged: vec![],
        };
        publisher.send(id, &event).await?;
        Ok(())
    }
}

/// A MariaDB GTID event's body: sequence (8), domain (4), flags (1), ...
/// (the server is the event's).
fn parse_mariadb_gtid(data: &[u8], server_id: u32) -> Option<MariadbGtid> {
    let sequence = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    data.get(12)?;
    Some(MariadbGtid {
        domain,
        server_id,
        sequence,
    })
}

/// The table of a `TRUNCATE [TABLE] [db.]name` statement, in `schema` by default.
fn truncated_table(statement: &str, schema: &str) -> Option<TableId> {
    let rest = keyword(statement.trim(), "TRUNCATE")?;
    let name = keyword(rest, "TABLE").unwrap_or(rest);
    let parts = split_name(name.trim().trim_end_matches(';').trim_end())?;
    match parts.as_slice() {
        [table] => Some(TableId::new(schema, table.clone())),
        [db, table] => Some(TableId::new(db.clone(), table.clone())),
        _ => None,
    }
}

/// The text after a leading keyword `word` (any case) and its white space.
fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(char::is_whitespace)).then(|| rest.trim_start())
}

/// `a.b`, `` `a`.`b` ``, `` `a.b` `` → the parts, unquoted.
fn split_name(name: &str) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut chars = name.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '`' if quoted && chars.peek() == Some(&'`') => {
                chars.next();
                parts.last_mut()?.push('`');
            }
            '`' => quoted = !quoted,
            '.' if !quoted => parts.push(String::new()),
            c if c.is_whitespace() && !quoted => return None,
            c => parts.last_mut()?.push(c),
        }
    }
    (!quoted && parts.iter().all(|p| !p.is_empty())).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gtid_bodies() {
        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend(7u32.to_le_bytes());
        body.push(1);
        let gtid = parse_mariadb_gtid(&body, 3).unwrap();
        assert_eq!((gtid.domain, gtid.server_id, gtid.sequence), (7, 3, 42));
        assert!(parse_mariadb_gtid(&body[..10], 3).is_none());
    }

    #[test]
    fn truncate_statements() {
        let t = |s| truncated_table(s, "shop");
        assert_eq!(t("TRUNCATE TABLE orders"), Some(TableId::new("shop", "orders")));
        assert_eq!(
            t("truncate `my db`.`odd``name`"),
            Some(TableId::new("my db", "odd`name"))
        );
        assert_eq!(t("TRUNCATE TABLE other.t;"), Some(TableId::new("other", "t")));
        assert_eq!(t("TRUNCATE `a.b`"), Some(TableId::new("shop", "a.b")));
        assert_eq!(t("ALTER TABLE t ADD c int"), None);
    }
}
