//! MySQL/MariaDB column types: what each becomes on the wire, and how its
//! values are read from a snapshot (text protocol) and from the binlog.
//!
//! (Being written; see the interface below.)

use ferry_core::meta::Column;
use ferry_core::value::Datum;
use mysql_async::binlog::events::TableMapEvent;
use mysql_async::binlog::value::BinlogValue;

/// A column as the source describes it, from `information_schema` (at start)
/// or from a table map event's full metadata (while streaming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    pub name: String,
    pub kind: Kind,
    pub nullable: bool,
    /// The default as SQL text, when `information_schema` gives one.
    pub default: Option<String>,
    /// The source's type text, e.g. `int(10) unsigned`, `enum('a','b')`.
    pub source_type: String,
}

/// The normalised type of a column: everything needed to decode its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {}

/// A value or a type Ferry cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

/// A column from `information_schema.COLUMNS`.
pub fn from_information_schema(
    _name: &str,
    _column_type: &str,
    _data_type: &str,
    _charset: Option<&str>,
    _nullable: bool,
    _default: Option<String>,
) -> Result<SourceColumn, TypeError> {
    Err(TypeError("not yet".into()))
}

/// The columns of a table map event (needs `binlog_row_metadata=FULL`) and
/// the positions of its primary key columns.
pub fn from_table_map(_tme: &TableMapEvent<'_>) -> Result<(Vec<SourceColumn>, Vec<usize>), TypeError> {
    Err(TypeError("not yet".into()))
}

/// Whether two descriptions decode values the same way (names and kinds equal).
pub fn same_shape(a: &[SourceColumn], b: &[SourceColumn]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.name == y.name && x.kind == y.kind)
}

/// Ferry's column for a source column.
pub fn column(_c: &SourceColumn) -> Column {
    unimplemented!()
}

/// A value read by a text-protocol query (session `time_zone = '+00:00'`).
pub fn from_text(_kind: &Kind, _text: &[u8]) -> Result<Datum, TypeError> {
    Err(TypeError("not yet".into()))
}

/// A value of a binlog rows event.
pub fn from_binlog(_kind: &Kind, _value: &BinlogValue<'_>) -> Result<Datum, TypeError> {
    Err(TypeError("not yet".into()))
}
