//! Errors of MySQL/MariaDB capture, split the way an operator acts on them:
//! retryable ones (the server, broker or registry went away: resume from the
//! last durable position) and definite ones (fix the configuration or the
//! source).

use crate::mysql::types::TypeError;
use crate::mysql::validate::Problem;
use crate::offsets::OffsetsError;
use crate::publish::PublishError;

/// Why MySQL/MariaDB capture stopped.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Connect(#[from] ferry_core::mysql::ConnectError),
    #[error("MySQL/MariaDB: {}", mysql_message(.0))]
    Mysql(#[from] mysql_async::Error),
    /// The server no longer has the binlog from the stored position.
    #[error(
        "the source no longer has the binlog from the stored position {position} ({reason}); \
         start with --snapshot when_needed (or always) to read the tables again"
    )]
    Purged { position: String, reason: String },
    /// Compressed binlog events: their rows cannot be read.
    #[error(
        "binlog event type {event_type} at {file}:{pos} is compressed (log_bin_compress=ON); \
         Ferry cannot read compressed events: SET GLOBAL log_bin_compress=OFF and re-snapshot"
    )]
    Compressed { event_type: u8, file: String, pos: u64 },
    #[error("binlog at {at}: {reason}")]
    Binlog { at: String, reason: String },
    #[error("table {table}: {error}")]
    Type { table: String, error: TypeError },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    #[error(transparent)]
    Registry(#[from] ferry_core::registry::RegistryError),
}

/// What the server said, with its error code.
pub fn mysql_message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} (error {})", s.message, s.code),
        other => other.to_string(),
    }
}

impl CaptureError {
    /// Whether the binlog connection went away while the rest stands: the
    /// stream reconnects in place (a failed publisher ends the run instead).
    pub fn is_reconnectable(&self) -> bool {
        match self {
            CaptureError::Mysql(_) | CaptureError::Connect(_) => self.is_retryable(),
            // Silence, or the server ending the stream (a restart).
            CaptureError::Binlog { reason, .. } => !reason.contains("does not decode") && !reason.contains("malformed"),
            _ => false,
        }
    }

    /// Whether restarting may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            CaptureError::Connect(e) => e.is_retryable(),
            CaptureError::Mysql(e) => match e {
                mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
                // Shutdown in progress, connection killed, server gone.
                mysql_async::Error::Server(s) => matches!(s.code, 1053 | 1927 | 2006 | 2013),
                _ => false,
            },
            CaptureError::Offsets(_) => true,
            CaptureError::Publish(e) => e.is_retryable(),
            CaptureError::Registry(e) => e.is_retryable(),
            _ => false,
        }
    }
}
