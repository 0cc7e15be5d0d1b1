//! When to snapshot: Debezium's snapshot modes as one small decision, so the
//! sources do not each grow their own flags.
//!
//! | mode | no stored position | stored position |
//! |---|---|---|
//! | `initial` (default) | snapshot, then stream | snapshot the tables not yet read, then stream |
//! | `never` | stream from now | stream |
//! | `always` | snapshot, then stream | snapshot everything again, then stream |
//! | `initial_only` | snapshot, then stop | snapshot the tables not yet read, then stop |
//! | `when_needed` | snapshot, then stream | as `initial`; everything again if the source no longer has the position |
//!
//! A table read again whose topic already holds events gets a truncate event
//! first (see crate::snapshot), so that rows deleted since the earlier reading
//! leave targets too.
//!
//! "The tables not yet read" are those of the include list without a complete
//! snapshot in the offsets topic: what an interrupted snapshot had left, and
//! tables added to the include list since. With none, it is plain streaming.

use serde::{Deserialize, Serialize};

/// `--snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    #[default]
    Initial,
    Never,
    Always,
    InitialOnly,
    WhenNeeded,
}

impl std::str::FromStr for SnapshotMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            format!("unknown snapshot mode {s:?}; use initial, never, always, initial_only or when_needed")
        })
    }
}

/// Which tables to snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every table, from a new starting point (earlier snapshots are void).
    All,
    /// The tables without a complete snapshot.
    Missing,
    /// None.
    Nothing,
}

/// What a capture does at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub snapshot: Scope,
    pub stream: bool,
}

impl SnapshotMode {
    /// `stored`: a completed snapshot or streaming position exists.
    /// `position_available`: the source still has the log from that position.
    pub fn plan(self, stored: bool, position_available: bool) -> Plan {
        let initial = if stored { Scope::Missing } else { Scope::All };
        let (snapshot, stream) = match self {
            SnapshotMode::Initial => (initial, true),
            SnapshotMode::Never => (Scope::Nothing, true),
            SnapshotMode::Always => (Scope::All, true),
            SnapshotMode::InitialOnly => (initial, false),
            SnapshotMode::WhenNeeded if !position_available => (Scope::All, true),
            SnapshotMode::WhenNeeded => (initial, true),
        };
        Plan { snapshot, stream }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_in_the_docs() {
        use Scope::{All, Missing, Nothing};
        use SnapshotMode::*;
        let p = |snapshot, stream| Plan { snapshot, stream };
        assert_eq!(Initial.plan(false, true), p(All, true));
        assert_eq!(Initial.plan(true, true), p(Missing, true));
        assert_eq!(Never.plan(false, true), p(Nothing, true));
        assert_eq!(Never.plan(true, true), p(Nothing, true));
        assert_eq!(Always.plan(true, true), p(All, true));
        assert_eq!(InitialOnly.plan(false, true), p(All, false));
        assert_eq!(InitialOnly.plan(true, true), p(Missing, false));
        assert_eq!(WhenNeeded.plan(true, true), p(Missing, true));
        assert_eq!(WhenNeeded.plan(true, false), p(All, true));
        assert_eq!(WhenNeeded.plan(false, false), p(All, true));
        assert_eq!("when_needed".parse::<SnapshotMode>(), Ok(WhenNeeded));
        assert!("sometimes".parse::<SnapshotMode>().is_err());
    }
}
