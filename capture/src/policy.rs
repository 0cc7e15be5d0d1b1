//! When to snapshot: Debezium's snapshot modes as one small decision, so the
//! sources do not each grow their own flags.
//!
//! | mode | no stored position | stored position |
//! |---|---|---|
//! | `initial` (default) | snapshot, then stream | stream |
//! | `never` | stream from now | stream |
//! | `always` | snapshot, then stream | snapshot again, then stream |
//! | `initial_only` | snapshot, then stop | stop (nothing to do) |
//! | `when_needed` | snapshot, then stream | stream; snapshot again if the source no longer has the position |
//!
//! A snapshot that was interrupted counts as no stored position: it resumes.

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

/// What a capture does at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub snapshot: bool,
    pub stream: bool,
}

impl SnapshotMode {
    /// `stored`: a completed snapshot or streaming position exists.
    /// `position_available`: the source still has the log from that position.
    pub fn plan(self, stored: bool, position_available: bool) -> Plan {
        let fresh = !stored;
        match self {
            SnapshotMode::Initial => Plan {
                snapshot: fresh,
                stream: true,
            },
            SnapshotMode::Never => Plan {
                snapshot: false,
                stream: true,
            },
            SnapshotMode::Always => Plan {
                snapshot: true,
                stream: true,
            },
            SnapshotMode::InitialOnly => Plan {
                snapshot: fresh,
                stream: false,
            },
            SnapshotMode::WhenNeeded => Plan {
                snapshot: fresh || !position_available,
                stream: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_in_the_docs() {
        use SnapshotMode::*;
        let p = |snapshot, stream| Plan { snapshot, stream };
        assert_eq!(Initial.plan(false, true), p(true, true));
        assert_eq!(Initial.plan(true, true), p(false, true));
        assert_eq!(Never.plan(false, true), p(false, true));
        assert_eq!(Always.plan(true, true), p(true, true));
        assert_eq!(InitialOnly.plan(false, true), p(true, false));
        assert_eq!(InitialOnly.plan(true, true), p(false, false));
        assert_eq!(WhenNeeded.plan(true, true), p(false, true));
        assert_eq!(WhenNeeded.plan(true, false), p(true, true));
        assert_eq!("when_needed".parse::<SnapshotMode>(), Ok(WhenNeeded));
        assert!("sometimes".parse::<SnapshotMode>().is_err());
    }
}
