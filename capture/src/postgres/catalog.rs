//! Table metadata read from the catalog: columns, types, nullability,
//! defaults and primary key, as [`TableMeta`].
//!
//! The primary key comes from the catalog, never from pgoutput's Relation
//! message: its key flags describe the replica identity, which with REPLICA
//! IDENTITY FULL flags every column. A table without a primary key has no Kafka
//! key (its events are unkeyed).

use ferry_core::meta::{Column, MetaError, TableId, TableMeta};
use tokio_postgres::Client;

use crate::postgres::types::pg_type;
use crate::postgres::validate::quoted;

/// Reading a table's metadata failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading the catalog: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// The metadata of one table, as it is now.
pub async fn table_meta(client: &Client, table: &TableId) -> Result<TableMeta, CatalogError> {
    let name = quoted(table);
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid::oid::bigint, a.atttypmod, format_type(a.atttypid, a.atttypmod),
                    a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
             FROM pg_attribute a
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&name],
        )
        .await?;
    let columns: Vec<Column> = rows
        .iter()
        .map(|r| {
            let oid = u32::try_from(r.get::<_, i64>(1)).unwrap_or_default();
            let ty = pg_type(oid, r.get(2), r.get::<_, &str>(3));
            Column {
                name: r.get(0),
                data_type: ty.data_type,
                source_type: ty.source_type,
                nullable: !r.get::<_, bool>(4),
                default: r.get(5),
            }
        })
        .collect();
    let key: Vec<String> = client
        .query(
            "SELECT a.attname::text
             FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&name],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    Ok(TableMeta::new(table.clone(), columns, &key)?)
}
