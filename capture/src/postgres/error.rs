//! Errors of PostgreSQL capture.

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
