//! Errors of PostgreSQL capture, split the way an operator acts on them:
//! retryable ones (the database, broker or registry went away: restart and
//! resume) and definite ones (the configuration or the data is wrong: fix it).

use ferry_core::meta::TableId;

use crate::offsets::OffsetsError;
use crate::postgres::catalog::CatalogError;
use crate::postgres::types::TypeError;
use crate::postgres::validate::Problem;
use crate::publish::PublishError;

/// A pgoutput message that does not follow the protocol. Definite: the same
/// bytes would fail again, so capture stops and names the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("pgoutput message ends early, reading {what} at byte {at}")]
    Truncated { what: &'static str, at: usize },
    #[error("pgoutput {what} has unknown tag {tag:#04x}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("pgoutput {what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("{extra} unexpected bytes after a pgoutput message")]
    TrailingBytes { extra: usize },
}

/// Why PostgreSQL capture stopped.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Connect(#[from] ferry_core::pg::ConnectError),
    #[error("PostgreSQL: {}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("replication connection: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Type(#[from] TypeError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    #[error(transparent)]
    Registry(#[from] ferry_core::registry::RegistryError),
    #[error("a change of table {table} does not match its Relation message")]
    RelationMismatch { table: TableId },
    #[error("a change names relation {0}, which no Relation message described")]
    UnknownRelation(u32),
}

pub use ferry_core::pg::pg_message;

impl CaptureError {
    /// Whether restarting may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            CaptureError::Connect(e) => e.is_retryable(),
            CaptureError::Replication(_) | CaptureError::Offsets(_) => true,
            CaptureError::Postgres(e) => e.as_db_error().is_none(),
            CaptureError::Publish(e) => e.is_retryable(),
            CaptureError::Registry(e) => e.is_retryable(),
            _ => false,
        }
    }
}
