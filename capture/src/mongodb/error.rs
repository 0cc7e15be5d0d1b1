//! Errors of MongoDB capture, split the way an operator acts on them:
//! retryable ones (the server, broker or registry went away: resume from the
//! last durable resume token) and definite ones (fix the configuration or the
//! source).

use mongodb::error::ErrorKind;

use crate::mongodb::change::Malformed;
use crate::offsets::OffsetsError;
use crate::publish::PublishError;

/// MongoDB's `ChangeStreamHistoryLost`: the oplog no longer reaches back to
/// the resume point.
const HISTORY_LOST: i32 = 286;

/// Why MongoDB capture stopped.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    Config(String),
    #[error("MongoDB: {}", mongo_message(.0))]
    Mongo(#[from] mongodb::error::Error),
    /// The oplog no longer holds the stored resume point.
    #[error(
        "the source's oplog no longer reaches back to the stored resume token {token} ({reason}); \
         start with --snapshot when_needed (or always) to read the collections again"
    )]
    HistoryLost { token: String, reason: String },
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    #[error(transparent)]
    Registry(#[from] ferry_core::registry::RegistryError),
}

/// What the server or driver said, with the server's error code.
pub fn mongo_message(e: &mongodb::error::Error) -> String {
    match &*e.kind {
        ErrorKind::Command(c) => format!("{} ({} {})", c.message, c.code_name, c.code),
        ErrorKind::Authentication { message, .. } => {
            format!("authentication failed ({message}); check the user and password of --source")
        }
        ErrorKind::InvalidArgument { message, .. } => message.clone(),
        ErrorKind::ServerSelection { message, .. } => format!(
            "no server reachable ({}); check the host and port of --source and that the server runs",
            message.split(", labels").next().unwrap_or(message)
        ),
        _ => e.to_string(),
    }
}

/// The server's error code, if the server answered with one.
pub fn code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

impl CaptureError {
    /// `e` as a history-lost error naming `token`, or as itself.
    pub fn from_stream(e: mongodb::error::Error, token: &str) -> Self {
        if code(&e) == Some(HISTORY_LOST) || e.to_string().contains("ChangeStreamHistoryLost") {
            return CaptureError::HistoryLost {
                token: token.to_owned(),
                reason: mongo_message(&e),
            };
        }
        CaptureError::Mongo(e)
    }

    /// Whether the source went away while the rest stands: the stream is
    /// reopened in place (a failed publisher ends the run instead).
    pub fn is_reconnectable(&self) -> bool {
        matches!(self, CaptureError::Mongo(_)) && self.is_retryable()
    }

    /// Whether restarting may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            CaptureError::Mongo(e) => match &*e.kind {
                ErrorKind::Io(_) | ErrorKind::ServerSelection { .. } | ErrorKind::ConnectionPoolCleared { .. } => true,
                // Shutting down, stepped down, not primary, network trouble.
                ErrorKind::Command(c) => {
                    matches!(
                        c.code,
                        6 | 7 | 89 | 91 | 189 | 9001 | 10107 | 11600 | 11602 | 13435 | 13436
                    )
                }
                _ => e.labels().contains("ResumableChangeStreamError"),
            },
            CaptureError::Offsets(_) => true,
            CaptureError::Publish(e) => e.is_retryable(),
            CaptureError::Registry(e) => e.is_retryable(),
            _ => false,
        }
    }
}
