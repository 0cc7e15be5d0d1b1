//! Rows of one table version: text values (from pgoutput or a snapshot's
//! COPY) and COPY's binary values to [`Datum`]s, and the table version a
//! Relation message describes.

use std::collections::HashMap;

use ferry_core::meta::{Column, TableId, TableMeta};
use ferry_core::pgbinary::{decode, Binary};
use ferry_core::value::Datum;
use tokio_postgres::Client;

use crate::postgres::binary::{binary_form, Fields, Tuples};
use crate::postgres::catalog::{table_meta, CatalogError};
use crate::postgres::copy::{fields, Lines};
use crate::postgres::error::CaptureError;
use crate::postgres::pgoutput::{Cell, Relation};
use crate::postgres::types::{parse_text, pg_type, PgType, TypeError};

/// A table version with its column types ready for parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct PgTable {
    pub meta: TableMeta,
    types: Vec<PgType>,
    /// How each column is read in COPY's binary format, when every one is.
    binary: Option<Vec<Binary>>,
}

impl PgTable {
    pub fn new(meta: TableMeta) -> Self {
        let types = meta
            .columns
            .iter()
            .map(|c| PgType {
                data_type: c.data_type,
                source_type: c.source_type.clone(),
            })
            .collect::<Vec<_>>();
        let binary = types.iter().map(binary_form).collect();
        Self { meta, types, binary }
    }

    /// Whether a snapshot reads the table in COPY's binary format.
    pub fn reads_binary(&self) -> bool {
        self.binary.is_some()
    }

    /// A row from COPY's binary format (see [`PgTable::reads_binary`]).
    pub fn binary_row(&self, fields: Fields<'_>) -> Result<Vec<Datum>, CaptureError> {
        let Some(forms) = &self.binary else {
            return Err(CaptureError::Protocol(format!(
                "table {} has columns COPY's binary format is not read for",
                self.meta.id
            )));
        };
        let mut row = Vec::with_capacity(forms.len());
        for ((value, form), ty) in fields.zip(forms).zip(&self.types) {
            row.push(match value {
                None => Datum::Null,
                Some(bytes) => decode(*form, bytes).map_err(|reason| TypeError::Unparsable {
                    source_type: ty.source_type.clone(),
                    text: format!("{} bytes in COPY's binary format", bytes.len()),
                    reason,
                })?,
            });
        }
        if row.len() != forms.len() {
            return Err(CaptureError::Protocol(format!(
                "COPY of {} gave a row of {} values, not {}",
                self.meta.id,
                row.len(),
                forms.len()
            )));
        }
        Ok(row)
    }

    /// A row from text values in column order (`None` = NULL).
    pub fn parse_row<T: AsRef<[u8]>>(
        &self,
        values: impl Iterator<Item = Option<T>>,
    ) -> Result<Vec<Datum>, CaptureError> {
        let mut row = Vec::with_capacity(self.types.len());
        for (v, ty) in values.zip(&self.types) {
            row.push(match v {
                None => Datum::Null,
                Some(text) => parse_text(ty, text.as_ref())?,
            });
        }
        Ok(row)
    }

    /// A row from pgoutput cells. An unchanged TOAST value is taken from the
    /// old row when that has it (REPLICA IDENTITY FULL); otherwise it is null
    /// and its column is returned in the second list, for the event's `unchanged`.
    pub fn cells_row(&self, cells: &[Cell], old: Option<&[Cell]>) -> Result<(Vec<Datum>, Vec<String>), CaptureError> {
        let mut unchanged = Vec::new();
        let mut row = Vec::with_capacity(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            let ty = self.types.get(i).ok_or(CaptureError::RelationMismatch {
                table: self.meta.id.clone(),
            })?;
            let cell = match (cell, old.and_then(|o| o.get(i))) {
                (Cell::Unchanged, Some(from_old @ Cell::Text(_))) => from_old,
                (cell, _) => cell,
            };
            row.push(match cell {
                Cell::Null => Datum::Null,
                Cell::Text(text) => parse_text(ty, text)?,
                Cell::Unchanged => {
                    unchanged.push(self.meta.columns[i].name.clone());
                    Datum::Null
                }
                Cell::Binary(_) => {
                    return Err(CaptureError::Protocol(
                        "pgoutput sent a binary value, which Ferry never asks for".into(),
                    ))
                }
            });
        }
        if row.len() != self.meta.columns.len() {
            return Err(CaptureError::RelationMismatch {
                table: self.meta.id.clone(),
            });
        }
        Ok((row, unchanged))
    }
}

/// A chunk's COPY data as rows: in the binary format where the table's
/// columns allow it (see `binary.rs`), else in the text format.
#[derive(Debug)]
pub enum CopyRows {
    Text(Lines),
    Binary(Tuples),
}

impl CopyRows {
    pub fn of(table: &PgTable) -> Self {
        if table.reads_binary() {
            CopyRows::Binary(Tuples::default())
        } else {
            CopyRows::Text(Lines::default())
        }
    }

    /// Adds `data` and calls `row` with the values of every row it completes.
    pub fn feed(
        &mut self,
        table: &PgTable,
        data: &[u8],
        mut row: impl FnMut(Vec<Datum>) -> Result<(), CaptureError>,
    ) -> Result<(), CaptureError> {
        match self {
            CopyRows::Text(lines) => lines.feed(data, |line| row(table.parse_row(fields(line))?)),
            CopyRows::Binary(tuples) => tuples.feed(data, |values| row(table.binary_row(values)?)),
        }
    }

    /// Whether the data ended in the middle of a row.
    pub fn unfinished(&self) -> bool {
        match self {
            CopyRows::Text(lines) => lines.has_partial_row(),
            CopyRows::Binary(tuples) => tuples.unfinished(),
        }
    }
}

/// Type names by (type oid, typmod), looked up once each.
#[derive(Debug, Default)]
pub struct TypeNames(HashMap<(u32, i32), String>);

impl TypeNames {
    async fn name(&mut self, client: &Client, oid: u32, typmod: i32) -> Result<String, tokio_postgres::Error> {
        if let Some(n) = self.0.get(&(oid, typmod)) {
            return Ok(n.clone());
        }
        let name: String = client
            .query_one("SELECT format_type($1::bigint::oid, $2)", &[&i64::from(oid), &typmod])
            .await?
            .get(0);
        self.0.insert((oid, typmod), name.clone());
        Ok(name)
    }
}

/// The table version a Relation message describes: its columns and types as
/// of that point in the WAL; NOT NULL, defaults and the primary key from the
/// catalog as it is now (columns the catalog no longer has are nullable, without default).
pub async fn relation_table(client: &Client, names: &mut TypeNames, rel: &Relation) -> Result<PgTable, CaptureError> {
    let id = TableId::new(rel.namespace.clone(), rel.name.clone());
    let catalog = match table_meta(client, &id).await {
        Ok(meta) => Some(meta),
        Err(CatalogError::Postgres(e)) if e.as_db_error().is_some() => None,
        Err(e) => return Err(e.into()),
    };
    let mut columns = Vec::with_capacity(rel.columns.len());
    for c in &rel.columns {
        let name = names.name(client, c.type_oid, c.type_modifier).await?;
        let ty = pg_type(c.type_oid, c.type_modifier, &name);
        let known = catalog.as_ref().and_then(|m| m.column(&c.name));
        columns.push(Column {
            name: c.name.clone(),
            data_type: ty.data_type,
            source_type: ty.source_type,
            nullable: known.is_none_or(|k| k.nullable),
            default: known.and_then(|k| k.default.clone()),
        });
    }
    let key: Vec<String> = catalog
        .as_ref()
        .map(|m| m.key_columns().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let key: Vec<&str> = key
        .iter()
        .map(String::as_str)
        .filter(|k| columns.iter().any(|c| c.name == *k))
        .collect();
    Ok(PgTable::new(
        TableMeta::new(id, columns, &key).map_err(CatalogError::from)?,
    ))
}
