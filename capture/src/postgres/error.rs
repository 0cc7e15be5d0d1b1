//! Errors of PostgreSQL capture, split the way an operator acts on them:
//! retryable ones (the database, broker or registry went away: restart and
//! resume) and definite ones (the configuration or the data is wrong: fix it).

use ferry_core::meta::TableId;
use pgwire_replication::PgWireError;

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
    Replication(#[from] PgWireError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Type(#[from] TypeError),
    #[error(transparent)]
    Copy(#[from] crate::postgres::binary::Malformed),
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
    #[error("the server ended the replication stream")]
    StreamEnded,
}

pub use ferry_core::pg::pg_message;

/// SQLSTATEs of a session the server ended or cannot serve yet: connection
/// exceptions (class 08), an administrator's or a crash's shutdown, a
/// server starting up, and a slot still held by the walsender of a session
/// just lost (object in use).
const SESSION_LOST: [&str; 5] = ["08", "57P01", "57P02", "57P03", "55006"];

fn session_lost(sqlstate: &str) -> bool {
    SESSION_LOST.iter().any(|s| sqlstate.starts_with(s))
}

impl CaptureError {
    /// Whether the connections to the source went away while the rest
    /// stands: the stream reconnects in place (a failed publisher, or a
    /// definite error, ends the run instead).
    pub fn is_reconnectable(&self) -> bool {
        match self {
            CaptureError::Connect(e) => e.is_retryable(),
            CaptureError::StreamEnded => true,
            CaptureError::Postgres(e) => e.as_db_error().is_none_or(|db| session_lost(db.code().code())),
            CaptureError::Replication(PgWireError::Io(_) | PgWireError::Task(_)) => true,
            CaptureError::Replication(PgWireError::Server(message)) => {
                message.split("SQLSTATE ").nth(1).is_some_and(session_lost)
            }
            _ => false,
        }
    }

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
