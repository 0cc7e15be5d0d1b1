//! Source-neutral table metadata.
//!
//! Every source describes its tables in these terms, and every target reads them
//! back out of the Avro schema (see [`crate::schema`]), so a PostgreSQL table can be
//! created in MariaDB without either side knowing the other. [`DataType`] is the
//! small set of shapes a value can have on the wire; the source's own type name is
//! kept beside it (`source_type`) so a target of the same engine can recreate the
//! exact column type, and a target of another engine can pick the closest one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A table (or collection) at the source: `schema` is the PostgreSQL schema, the
/// MySQL database, or the MongoDB database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId {
    pub schema: String,
    pub table: String,
}

impl TableId {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// The shape of a column's values on the wire.
///
/// Anything a source has that is not listed travels as [`DataType::Text`] in the
/// source's own text form, with the source type name kept in the schema, so
/// nothing is lost and a target of the same engine can cast it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Fixed precision and scale (Avro `decimal`). `special` is set when the
    /// source can also hold `NaN`, `Infinity` and `-Infinity` in such a column
    /// (PostgreSQL `numeric(p,s)`); those then travel as strings in a union.
    Decimal {
        precision: u32,
        scale: u32,
        special: bool,
    },
    /// A decimal without declared precision or scale (PostgreSQL `numeric`):
    /// each value keeps its own scale, so it travels as its exact decimal text.
    Numeric,
    Text,
    Bytes,
    /// Days since 1970-01-01; `i32::MIN` / `i32::MAX` stand for -infinity / infinity.
    Date,
    /// Microseconds since midnight.
    Time,
    /// A signed length of time in microseconds: MySQL `TIME`, which runs from
    /// `-838:59:59` to `838:59:59` (Debezium's `MicroTime`).
    Duration,
    /// Wall-clock time without zone, microseconds since 1970-01-01 00:00:00;
    /// `i64::MIN` / `i64::MAX` stand for -infinity / infinity.
    Timestamp,
    /// An instant, microseconds since 1970-01-01 00:00:00 UTC; infinities as above.
    TimestampTz,
    Uuid,
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Boolean => f.write_str("boolean"),
            DataType::Int16 => f.write_str("int16"),
            DataType::Int32 => f.write_str("int32"),
            DataType::Int64 => f.write_str("int64"),
            DataType::Float32 => f.write_str("float32"),
            DataType::Float64 => f.write_str("float64"),
            DataType::Decimal {
                precision,
                scale,
                special,
            } => {
                write!(f, "decimal({precision},{scale})")?;
                if *special {
                    f.write_str("+special")?;
                }
                Ok(())
            }
            DataType::Numeric => f.write_str("numeric"),
            DataType::Text => f.write_str("text"),
            DataType::Bytes => f.write_str("bytes"),
            DataType::Date => f.write_str("date"),
            DataType::Time => f.write_str("time"),
            DataType::Duration => f.write_str("duration"),
            DataType::Timestamp => f.write_str("timestamp"),
            DataType::TimestampTz => f.write_str("timestamptz"),
            DataType::Uuid => f.write_str("uuid"),
        }
    }
}

/// The text is not one of the forms [`DataType`]'s `Display` writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Ferry data type {0:?}")]
pub struct UnknownDataType(pub String);

impl FromStr for DataType {
    type Err = UnknownDataType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownDataType(s.to_owned());
        Ok(match s {
            "boolean" => DataType::Boolean,
            "int16" => DataType::Int16,
            "int32" => DataType::Int32,
            "int64" => DataType::Int64,
            "float32" => DataType::Float32,
            "float64" => DataType::Float64,
            "numeric" => DataType::Numeric,
            "text" => DataType::Text,
            "bytes" => DataType::Bytes,
            "date" => DataType::Date,
            "time" => DataType::Time,
            "duration" => DataType::Duration,
            "timestamp" => DataType::Timestamp,
            "timestamptz" => DataType::TimestampTz,
            "uuid" => DataType::Uuid,
            other => {
                let (body, special) = match other.strip_suffix("+special") {
                    Some(body) => (body, true),
                    None => (other, false),
                };
                let args = body
                    .strip_prefix("decimal(")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .ok_or_else(unknown)?;
                let (p, s) = args.split_once(',').ok_or_else(unknown)?;
                DataType::Decimal {
                    precision: p.trim().parse().map_err(|_| unknown())?,
                    scale: s.trim().parse().map_err(|_| unknown())?,
                    special,
                }
            }
        })
    }
}

/// One column of a source table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: DataType,
    /// The source's own type name, e.g. `numeric(10,2)`, `varchar(255)`, `jsonb`.
    pub source_type: String,
    pub nullable: bool,
    /// The column default as the source's SQL text, when it has one.
    pub default: Option<String>,
}

impl Column {
    pub fn new(name: impl Into<String>, data_type: DataType, source_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            data_type,
            source_type: source_type.into(),
            nullable: true,
            default: None,
        }
    }

    pub fn not_null(mut self) -> Self {
        self.nullable = false;
        self
    }

    pub fn with_default(mut self, default: impl Into<String>) -> Self {
        self.default = Some(default.into());
        self
    }
}

/// A table's columns in source order, and which of them form the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    pub id: TableId,
    pub columns: Vec<Column>,
    /// Positions in `columns` of the primary key (or replica identity), in key
    /// order. Empty for a keyless table: its events carry no Kafka key.
    pub key: Vec<usize>,
}

/// The metadata does not describe a usable table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("table {table}: key column {column:?} is not a column of the table")]
    UnknownKeyColumn { table: TableId, column: String },
    #[error("table {table}: column {column:?} appears twice")]
    DuplicateColumn { table: TableId, column: String },
    #[error("table {table} has no columns")]
    NoColumns { table: TableId },
}

impl TableMeta {
    /// Builds the metadata, resolving key column names to positions.
    pub fn new(id: TableId, columns: Vec<Column>, key_columns: &[&str]) -> Result<Self, MetaError> {
        if columns.is_empty() {
            return Err(MetaError::NoColumns { table: id });
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|o| o.name == c.name) {
                return Err(MetaError::DuplicateColumn {
                    table: id,
                    column: c.name.clone(),
                });
            }
        }
        let key = key_columns
            .iter()
            .map(|k| {
                columns
                    .iter()
                    .position(|c| c.name == *k)
                    .ok_or_else(|| MetaError::UnknownKeyColumn {
                        table: id.clone(),
                        column: (*k).to_owned(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { id, columns, key })
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.key.iter().map(|&i| &self.columns[i])
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_type_text_round_trips() {
        let all = [
            DataType::Boolean,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::Float32,
            DataType::Float64,
            DataType::Decimal {
                precision: 38,
                scale: 0,
                special: false,
            },
            DataType::Decimal {
                precision: 1000,
                scale: 999,
                special: true,
            },
            DataType::Numeric,
            DataType::Text,
            DataType::Bytes,
            DataType::Date,
            DataType::Time,
            DataType::Duration,
            DataType::Timestamp,
            DataType::TimestampTz,
            DataType::Uuid,
        ];
        for t in all {
            assert_eq!(t.to_string().parse::<DataType>(), Ok(t), "{t}");
        }
        for bad in ["", "decimal(1)", "decimal(a,b)", "decimal(1,2", "int"] {
            assert!(bad.parse::<DataType>().is_err(), "{bad}");
        }
    }

    #[test]
    fn key_columns_resolve_to_positions() {
        let id = TableId::new("public", "t");
        let cols = vec![
            Column::new("a", DataType::Int32, "integer"),
            Column::new("b", DataType::Text, "text"),
        ];
        let meta = TableMeta::new(id.clone(), cols.clone(), &["b", "a"]).unwrap();
        assert_eq!(meta.key, vec![1, 0]);
        assert_eq!(
            TableMeta::new(id.clone(), cols.clone(), &["c"]),
            Err(MetaError::UnknownKeyColumn {
                table: id.clone(),
                column: "c".into()
            })
        );
        let dup = vec![cols[0].clone(), cols[0].clone()];
        assert!(matches!(
            TableMeta::new(id.clone(), dup, &[]),
            Err(MetaError::DuplicateColumn { .. })
        ));
        assert!(matches!(
            TableMeta::new(id, vec![], &[]),
            Err(MetaError::NoColumns { .. })
        ));
    }
}
