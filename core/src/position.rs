//! Source positions: where in a source's change log an event came from, and
//! where capture resumes after a restart.
//!
//! Positions are stored in Kafka (the offsets topic) as JSON, so they are
//! serialisable and human-readable there: an LSN is `"16/B374D848"` as PostgreSQL
//! prints it, a GTID set is the server's own text. Order matters for acknowledging
//! a source (never move a slot or a stored position backward), so positions are
//! ordered where the source defines an order: LSNs and binlog coordinates totally,
//! GTID sets partially (one set contains another), resume tokens by their
//! `_data` hex, whose byte order MongoDB keeps equal to log order.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A text that does not parse as the position type it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid {kind}")]
pub struct BadPosition {
    pub kind: &'static str,
    pub text: String,
}

fn bad(kind: &'static str, text: &str) -> BadPosition {
    BadPosition {
        kind,
        text: text.to_owned(),
    }
}

/// A PostgreSQL WAL location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct PgLsn(pub u64);

impl fmt::Display for PgLsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for PgLsn {
    type Err = BadPosition;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s.split_once('/').ok_or_else(|| bad("PostgreSQL LSN", s))?;
        let part = |p: &str| {
            u32::from_str_radix(p, 16)
                .ok()
                .filter(|_| !p.is_empty() && p.len() <= 8)
                .ok_or_else(|| bad("PostgreSQL LSN", s))
        };
        Ok(PgLsn((u64::from(part(hi)?) << 32) | u64::from(part(lo)?)))
    }
}

impl From<PgLsn> for String {
    fn from(lsn: PgLsn) -> String {
        lsn.to_string()
    }
}

impl TryFrom<String> for PgLsn {
    type Error = BadPosition;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A place in the MySQL/MariaDB binlog: the file, the event's offset in it, and
/// the row within a rows event (one event can carry many rows).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub pos: u64,
    pub row: u32,
}

impl BinlogPosition {
    /// The file's sequence number (`mysql-bin.000042` → 42), which orders files
    /// even past `999999`, where the zero padding stops working.
    fn sequence(&self) -> Option<u64> {
        self.file.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
    }
}

impl Ord for BinlogPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.sequence(), &self.file, self.pos, self.row).cmp(&(other.sequence(), &other.file, other.pos, other.row))
    }
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A MariaDB GTID: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MariadbGtid {
    pub domain: u32,
    pub server_id: u32,
    pub sequence: u64,
}

/// The set of transactions a server has executed: MySQL's `uuid:1-5:7-9,...`
/// (intervals per source server) or MariaDB's `0-1-100,1-2-50` (the last
/// sequence per replication domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "GtidSetText", try_from = "GtidSetText")]
pub enum GtidSet {
    /// Closed intervals of transaction numbers per server UUID, sorted and merged.
    Mysql(BTreeMap<Uuid, Vec<(u64, u64)>>),
    /// The last GTID seen per domain.
    Mariadb(BTreeMap<u32, MariadbGtid>),
}

impl GtidSet {
    /// Adds one executed MySQL transaction, merging adjacent intervals.
    pub fn add_mysql(&mut self, server: Uuid, txn: u64) -> Result<(), GtidFlavourMismatch> {
        let GtidSet::Mysql(map) = self else {
            return Err(GtidFlavourMismatch);
        };
        let ranges = map.entry(server).or_default();
        ranges.push((txn, txn));
        *ranges = merge(std::mem::take(ranges));
        Ok(())
    }

    /// Records a MariaDB GTID as the latest of its domain.
    pub fn add_mariadb(&mut self, gtid: MariadbGtid) -> Result<(), GtidFlavourMismatch> {
        let GtidSet::Mariadb(map) = self else {
            return Err(GtidFlavourMismatch);
        };
        map.insert(gtid.domain, gtid);
        Ok(())
    }

    /// Whether every transaction in `other` is in `self`. Sets of different
    /// flavours contain nothing of each other.
    pub fn contains(&self, other: &GtidSet) -> bool {
        match (self, other) {
            (GtidSet::Mysql(mine), GtidSet::Mysql(theirs)) => theirs.iter().all(|(uuid, ranges)| {
                let have = mine.get(uuid).map(Vec::as_slice).unwrap_or(&[]);
                ranges
                    .iter()
                    .all(|&(lo, hi)| have.iter().any(|&(a, b)| a <= lo && hi <= b))
            }),
            (GtidSet::Mariadb(mine), GtidSet::Mariadb(theirs)) => theirs
                .values()
                .all(|g| mine.get(&g.domain).is_some_and(|m| m.sequence >= g.sequence)),
            _ => false,
        }
    }
}

impl PartialOrd for GtidSet {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering::*;
        match (self.contains(other), other.contains(self)) {
            (true, true) => Some(Equal),
            (true, false) => Some(Greater),
            (false, true) => Some(Less),
            (false, false) => None,
        }
    }
}

/// A GTID of one flavour was added to a set of the other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a MySQL GTID and a MariaDB GTID cannot be mixed in one set")]
pub struct GtidFlavourMismatch;

fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = match self {
            GtidSet::Mysql(map) => map
                .iter()
                .map(|(uuid, ranges)| {
                    let mut s = uuid.to_string();
                    for &(lo, hi) in ranges {
                        if lo == hi {
                            s.push_str(&format!(":{lo}"));
                        } else {
                            s.push_str(&format!(":{lo}-{hi}"));
                        }
                    }
                    s
                })
                .collect(),
            GtidSet::Mariadb(map) => map
                .values()
                .map(|g| format!("{}-{}-{}", g.domain, g.server_id, g.sequence))
                .collect(),
        };
        f.write_str(&parts.join(","))
    }
}

impl GtidSet {
    /// Parses a MySQL GTID set (`uuid:1-5:7`, empty allowed).
    pub fn parse_mysql(s: &str) -> Result<GtidSet, BadPosition> {
        let err = || bad("MySQL GTID set", s);
        let mut map: BTreeMap<Uuid, Vec<(u64, u64)>> = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut pieces = part.split(':');
            let uuid: Uuid = pieces.next().ok_or_else(err)?.parse().map_err(|_| err())?;
            let ranges = map.entry(uuid).or_default();
            for iv in pieces {
                let (lo, hi) = iv.split_once('-').unwrap_or((iv, iv));
                let (lo, hi): (u64, u64) = (lo.parse().map_err(|_| err())?, hi.parse().map_err(|_| err())?);
                if lo == 0 || hi < lo {
                    return Err(err());
                }
                ranges.push((lo, hi));
            }
            if ranges.is_empty() {
                return Err(err());
            }
            *ranges = merge(std::mem::take(ranges));
        }
        Ok(GtidSet::Mysql(map))
    }

    /// Parses a MariaDB GTID list (`0-1-100,1-2-5`, empty allowed).
    pub fn parse_mariadb(s: &str) -> Result<GtidSet, BadPosition> {
        let err = || bad("MariaDB GTID list", s);
        let mut map = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut n = part.splitn(3, '-');
            let mut next = || n.next().ok_or_else(err);
            let gtid = MariadbGtid {
                domain: next()?.parse().map_err(|_| err())?,
                server_id: next()?.parse().map_err(|_| err())?,
                sequence: next()?.parse().map_err(|_| err())?,
            };
            if map.insert(gtid.domain, gtid).is_some() {
                return Err(err());
            }
        }
        Ok(GtidSet::Mariadb(map))
    }
}

/// Serialised form of a GTID set: the flavour and the server's text.
#[derive(Serialize, Deserialize)]
struct GtidSetText {
    flavour: String,
    set: String,
}

impl From<GtidSet> for GtidSetText {
    fn from(g: GtidSet) -> Self {
        let flavour = match g {
            GtidSet::Mysql(_) => "mysql",
            GtidSet::Mariadb(_) => "mariadb",
        };
        GtidSetText {
            flavour: flavour.to_owned(),
            set: g.to_string(),
        }
    }
}

impl TryFrom<GtidSetText> for GtidSet {
    type Error = BadPosition;

    fn try_from(t: GtidSetText) -> Result<Self, Self::Error> {
        match t.flavour.as_str() {
            "mysql" => GtidSet::parse_mysql(&t.set),
            "mariadb" => GtidSet::parse_mariadb(&t.set),
            other => Err(bad("GTID flavour (mysql or mariadb)", other)),
        }
    }
}

/// A MongoDB change-stream resume token: the `_data` hex string of the token
/// document. Tokens compare in log order as strings (MongoDB's KeyString encoding
/// is order-preserving and its hex is upper case).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResumeToken(pub String);

/// Where capture of one source stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum SourcePosition {
    Postgres {
        lsn: PgLsn,
    },
    Mysql {
        binlog: BinlogPosition,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gtids: Option<GtidSet>,
    },
    /// A change stream resumes after `token`; before it has one (a snapshot
    /// just recorded where the stream will start), at `cluster_time`.
    Mongodb {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<ResumeToken>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster_time: Option<ClusterTime>,
    },
}

impl SourcePosition {
    /// The kind of source it is a position of.
    pub fn connector(&self) -> crate::envelope::Connector {
        use crate::envelope::Connector;
        match self {
            SourcePosition::Postgres { .. } => Connector::Postgres,
            SourcePosition::Mysql { .. } => Connector::Mysql,
            SourcePosition::Mongodb { .. } => Connector::Mongodb,
        }
    }
}

/// A MongoDB cluster time (a BSON timestamp): seconds and an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterTime {
    pub t: u32,
    pub i: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips_and_orders() {
        let lsn: PgLsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<PgLsn>().unwrap(), PgLsn(0));
        assert_eq!(PgLsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert!("1/0".parse::<PgLsn>().unwrap() > "0/FFFFFFFF".parse().unwrap());
        for bad in ["", "16", "/1", "1/", "G/1", "1/123456789", "1/2/3"] {
            assert!(bad.parse::<PgLsn>().is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&lsn).unwrap(), "\"16/B374D848\"");
    }

    #[test]
    fn binlog_positions_order_by_file_number() {
        let p = |f: &str, pos, row| BinlogPosition {
            file: f.into(),
            pos,
            row,
        };
        assert!(p("mysql-bin.000002", 4, 0) > p("mysql-bin.000001", 9999, 3));
        assert!(p("mysql-bin.1000000", 4, 0) > p("mysql-bin.999999", 4, 0));
        assert!(p("b.000001", 100, 2) > p("b.000001", 100, 1));
        assert!(p("b.000001", 101, 0) > p("b.000001", 100, 7));
    }

    #[test]
    fn mysql_gtid_sets() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut set = GtidSet::parse_mysql(&format!("{u}:1-5:7-9")).unwrap();
        assert_eq!(set.to_string(), format!("{u}:1-5:7-9"));
        let before = set.clone();
        set.add_mysql(u.parse().unwrap(), 6).unwrap();
        assert_eq!(set.to_string(), format!("{u}:1-9"));
        assert!(set > before);
        assert!(set.contains(&GtidSet::parse_mysql(&format!("{u}:2-8")).unwrap()));
        let other = GtidSet::parse_mysql("4e11fa47-71ca-11e1-9e33-c80aa9429562:1").unwrap();
        assert_eq!(set.partial_cmp(&other), None);
        assert!(set.contains(&GtidSet::parse_mysql("").unwrap()));
        for bad in ["x:1", u, &format!("{u}:0"), &format!("{u}:5-3")] {
            assert!(GtidSet::parse_mysql(bad).is_err(), "{bad}");
        }
        assert!(set
            .add_mariadb(MariadbGtid {
                domain: 0,
                server_id: 1,
                sequence: 1
            })
            .is_err());
    }

    #[test]
    fn mariadb_gtid_lists() {
        let mut set = GtidSet::parse_mariadb("0-1-100,1-2-50").unwrap();
        assert_eq!(set.to_string(), "0-1-100,1-2-50");
        let old = set.clone();
        set.add_mariadb(MariadbGtid {
            domain: 0,
            server_id: 3,
            sequence: 101,
        })
        .unwrap();
        assert_eq!(set.to_string(), "0-3-101,1-2-50");
        assert!(set > old);
        assert!(!old.contains(&set));
        assert!(GtidSet::parse_mariadb("0-1").is_err());
        assert!(GtidSet::parse_mariadb("0-1-2,0-1-3").is_err());
        assert!(GtidSet::parse_mariadb("a-b-c").is_err());
    }

    #[test]
    fn positions_serialise_as_readable_json() {
        let pos = SourcePosition::Mysql {
            binlog: BinlogPosition {
                file: "mysql-bin.000003".into(),
                pos: 1234,
                row: 2,
            },
            gtids: Some(GtidSet::parse_mariadb("0-1-7").unwrap()),
        };
        let json = serde_json::to_string(&pos).unwrap();
        assert_eq!(
            json,
            r#"{"source":"mysql","binlog":{"file":"mysql-bin.000003","pos":1234,"row":2},"gtids":{"flavour":"mariadb","set":"0-1-7"}}"#
        );
        assert_eq!(serde_json::from_str::<SourcePosition>(&json).unwrap(), pos);
        let pg = SourcePosition::Postgres { lsn: PgLsn(42) };
        assert_eq!(
            serde_json::to_string(&pg).unwrap(),
            r#"{"source":"postgres","lsn":"0/2A"}"#
        );
        assert!(serde_json::from_str::<SourcePosition>(r#"{"source":"postgres","lsn":"nope"}"#).is_err());
        assert!(ResumeToken("8263A1".into()) < ResumeToken("8263B0".into()));
    }
}
