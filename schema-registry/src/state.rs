//! The registry's state, and the fold that builds it from the storage topic.
//!
//! The compacted topic is the only source of truth. Every instance reads it from
//! the beginning at start and keeps reading, applying each record with
//! [`State::apply`], which is deterministic: the same records in the same order
//! give every instance the same subjects, versions and ids. Nothing changes the
//! state except a record read back from the topic — not even the writer's own
//! requests, which produce a record and wait until it comes back.
//!
//! ```text
//!  offset:  0            1                  2                    3
//!           Writer{1}    Schema{s,v1,w:a-0}  Writer{2}            Schema{s,v2,w:a-1}
//!           instance a   epoch 1, id 1       instance b           epoch 1  ← rejected:
//!                                                                 a was fenced at 2
//! ```
//!
//! Writers are fenced by epoch: an instance that may write first appends a
//! `Writer` claim with a higher epoch; from that offset on, records written
//! under an older epoch are rejected by every instance. Claims have their own
//! keys, so compaction never removes one.
//!
//! Every other record's key is unique to the write that made it (`write` is the
//! instance id and a sequence number). Compaction keeps the latest record per
//! key, so with unique keys it removes nothing but what a tombstone removes: a
//! later, rejected record can never push an accepted one out of the topic.
//! Permanent deletes first append a `purged` marker (which keeps the id from being
//! reused after compaction), then tombstone the records that held the schema.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compat::Level;

/// Confluent's registry modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    #[default]
    Readwrite,
    Readonly,
    /// Registration may name the id (and version) to use: for copying another
    /// registry's schemas with their ids.
    Import,
}

/// A reference from one schema to a named type registered under another subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// The key of a storage record (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum RecordKey {
    Writer {
        epoch: u64,
    },
    Schema {
        subject: String,
        version: i32,
        write: String,
    },
    Config {
        subject: Option<String>,
        write: String,
    },
    Mode {
        subject: Option<String>,
        write: String,
    },
}

impl RecordKey {
    fn write_id(&self) -> Option<&str> {
        match self {
            RecordKey::Writer { .. } => None,
            RecordKey::Schema { write, .. } | RecordKey::Config { write, .. } | RecordKey::Mode { write, .. } => {
                Some(write)
            }
        }
    }
}

/// A writer's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterValue {
    pub instance: String,
    /// Where the writer listens, for telling clients of other instances.
    pub url: String,
}

/// One version of a subject, as a record states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    pub epoch: u64,
    pub id: u32,
    /// The schema in canonical form; empty in a `purged` marker.
    pub schema: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub purged: bool,
}

/// A compatibility level set (or, `None`, removed) for a subject or globally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigValue {
    pub epoch: u64,
    pub level: Option<Level>,
}

/// A mode set (or, `None`, removed) for a subject or globally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeValue {
    pub epoch: u64,
    pub mode: Option<Mode>,
}

/// A storage record's value, decoded according to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    Writer(WriterValue),
    Schema(SchemaValue),
    Config(ConfigValue),
    Mode(ModeValue),
}

/// A schema as stored under an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaEntry {
    pub schema: String,
    pub references: Vec<Reference>,
    /// The answer to `GET /schemas/ids/{id}`, rendered once: `{"schema": ..., "references": [...]}`.
    pub by_id_body: Arc<[u8]>,
}

impl SchemaEntry {
    fn new(schema: String, references: Vec<Reference>) -> Self {
        let mut body = serde_json::json!({ "schema": schema });
        if !references.is_empty() {
            body["references"] = serde_json::json!(references);
        }
        Self {
            by_id_body: body.to_string().into_bytes().into(),
            schema,
            references,
        }
    }
}

/// A version of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub id: u32,
    pub deleted: bool,
    /// The records that hold this version, tombstoned by a permanent delete.
    pub keys: Vec<RecordKey>,
}

/// Everything the registry knows, folded from the topic.
#[derive(Debug, Default)]
pub struct State {
    /// This instance's id: verdicts on its own writes are kept for it.
    instance: String,
    subjects: BTreeMap<String, BTreeMap<i32, Version>>,
    schemas: HashMap<u32, SchemaEntry>,
    by_content: HashMap<(String, Vec<Reference>), u32>,
    /// One more than the largest id ever seen, purged ones included.
    next_id: u32,
    epoch: u64,
    writer: Option<WriterValue>,
    global_level: Option<Level>,
    subject_levels: HashMap<String, Level>,
    global_mode: Option<Mode>,
    subject_modes: HashMap<String, Mode>,
    /// Whether each of this instance's writes was accepted, by write id.
    verdicts: HashMap<String, bool>,
}

/// Sets (or, with `None`, removes) a setting kept globally and per subject.
fn set_scoped<T>(
    global: &mut Option<T>,
    per_subject: &mut HashMap<String, T>,
    subject: &Option<String>,
    value: Option<T>,
) {
    match (subject, value) {
        (None, value) => *global = value,
        (Some(s), Some(value)) => {
            per_subject.insert(s.clone(), value);
        }
        (Some(s), None) => {
            per_subject.remove(s);
        }
    }
}

impl State {
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            next_id: 1,
            ..Self::default()
        }
    }

    /// Applies one record read from the topic; `None` is a tombstone.
    pub fn apply(&mut self, key: &RecordKey, value: Option<RecordValue>) {
        let accepted = self.accept(key, value);
        if let Some(write) = key.write_id() {
            if write.starts_with(&self.instance) {
                self.verdicts.insert(write.to_owned(), accepted);
            }
        }
    }

    fn accept(&mut self, key: &RecordKey, value: Option<RecordValue>) -> bool {
        let Some(value) = value else {
            self.tombstone(key);
            return true;
        };
        match (key, value) {
            (RecordKey::Writer { epoch }, RecordValue::Writer(w)) => {
                if *epoch <= self.epoch {
                    return false;
                }
                self.epoch = *epoch;
                self.writer = Some(w);
                true
            }
            (RecordKey::Schema { subject, version, .. }, RecordValue::Schema(v)) => {
                if v.epoch < self.epoch {
                    return false;
                }
                self.apply_schema(key, subject, *version, v)
            }
            (RecordKey::Config { subject, .. }, RecordValue::Config(c)) => {
                c.epoch >= self.epoch && {
                    set_scoped(&mut self.global_level, &mut self.subject_levels, subject, c.level);
                    true
                }
            }
            (RecordKey::Mode { subject, .. }, RecordValue::Mode(m)) => {
                m.epoch >= self.epoch && {
                    set_scoped(&mut self.global_mode, &mut self.subject_modes, subject, m.mode);
                    true
                }
            }
            _ => false,
        }
    }

    fn apply_schema(&mut self, key: &RecordKey, subject: &str, version: i32, v: SchemaValue) -> bool {
        self.next_id = self.next_id.max(v.id.saturating_add(1));
        if v.purged {
            if let Some(versions) = self.subjects.get_mut(subject) {
                versions.remove(&version);
                if versions.is_empty() {
                    self.subjects.remove(subject);
                }
            }
            self.forget_unused(v.id);
            return true;
        }
        let content = (v.schema.clone(), v.references.clone());
        match self.schemas.get(&v.id) {
            // An id always means one schema.
            Some(existing) if existing.schema != v.schema || existing.references != v.references => return false,
            Some(_) => {}
            None => {
                if self.by_content.contains_key(&content) {
                    // The same schema has another id already.
                    return false;
                }
                self.schemas.insert(v.id, SchemaEntry::new(v.schema, v.references));
                self.by_content.insert(content, v.id);
            }
        }
        let versions = self.subjects.entry(subject.to_owned()).or_default();
        let entry = versions.entry(version).or_insert_with(|| Version {
            id: v.id,
            deleted: v.deleted,
            keys: Vec::new(),
        });
        if entry.id != v.id {
            // A version number always means one schema.
            return false;
        }
        entry.deleted = v.deleted;
        entry.keys.push(key.clone());
        true
    }

    fn tombstone(&mut self, key: &RecordKey) {
        if let RecordKey::Schema { subject, version, .. } = key {
            if let Some(v) = self.subjects.get_mut(subject).and_then(|vs| vs.get_mut(version)) {
                v.keys.retain(|k| k != key);
            }
        }
    }

    /// Drops an id's schema once no version of any subject uses it. The id is
    /// still counted in `next_id`, so it is never given out again.
    fn forget_unused(&mut self, id: u32) {
        let used = self.subjects.values().any(|vs| vs.values().any(|v| v.id == id));
        if !used {
            if let Some(entry) = self.schemas.remove(&id) {
                self.by_content.remove(&(entry.schema, entry.references));
            }
        }
    }

    /// The verdict on one of this instance's writes, once its record was applied.
    pub fn verdict(&mut self, write: &str) -> Option<bool> {
        self.verdicts.remove(write)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn writer(&self) -> Option<&WriterValue> {
        self.writer.as_ref()
    }

    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Subjects, with or without those whose versions are all soft-deleted.
    pub fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, vs)| include_deleted || vs.values().any(|v| !v.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// A subject's versions, or `None` if the subject does not exist.
    pub fn versions(&self, subject: &str) -> Option<&BTreeMap<i32, Version>> {
        self.subjects.get(subject)
    }

    pub fn schema(&self, id: u32) -> Option<&SchemaEntry> {
        self.schemas.get(&id)
    }

    /// The id a schema already has anywhere in the registry.
    pub fn id_of(&self, schema: &str, references: &[Reference]) -> Option<u32> {
        self.by_content.get(&(schema.to_owned(), references.to_vec())).copied()
    }

    /// (subject, version) pairs that use the id.
    pub fn uses_of(&self, id: u32, include_deleted: bool) -> Vec<(String, i32)> {
        self.subjects
            .iter()
            .flat_map(|(s, vs)| {
                vs.iter()
                    .filter(move |(_, v)| v.id == id && (include_deleted || !v.deleted))
                    .map(move |(n, _)| (s.clone(), *n))
            })
            .collect()
    }

    /// Ids of schemas whose references name this subject version.
    pub fn referenced_by(&self, subject: &str, version: i32) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .schemas
            .iter()
            .filter(|(_, e)| {
                e.references
                    .iter()
                    .any(|r| r.subject == subject && r.version == version)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    pub fn global_level(&self) -> Option<Level> {
        self.global_level
    }

    pub fn subject_level(&self, subject: &str) -> Option<Level> {
        self.subject_levels.get(subject).copied()
    }

    /// The level that applies to a subject: its own, else the global one, else BACKWARD.
    pub fn effective_level(&self, subject: &str) -> Level {
        self.subject_level(subject).or(self.global_level).unwrap_or_default()
    }

    pub fn global_mode(&self) -> Option<Mode> {
        self.global_mode
    }

    pub fn subject_mode(&self, subject: &str) -> Option<Mode> {
        self.subject_modes.get(subject).copied()
    }

    pub fn effective_mode(&self, subject: &str) -> Mode {
        self.subject_mode(subject).or(self.global_mode).unwrap_or_default()
    }

    /// Number of distinct live schemas (for metrics).
    pub fn schema_count(&self) -> usize {
        let live: HashSet<u32> = self
            .subjects
            .values()
            .flat_map(|vs| vs.values().map(|v| v.id))
            .collect();
        live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(state: &mut State, epoch: u64, instance: &str) {
        state.apply(
            &RecordKey::Writer { epoch },
            Some(RecordValue::Writer(WriterValue {
                instance: instance.into(),
                url: format!("http://{instance}"),
            })),
        );
    }

    fn schema_key(subject: &str, version: i32, write: &str) -> RecordKey {
        RecordKey::Schema {
            subject: subject.into(),
            version,
            write: write.into(),
        }
    }

    fn schema_value(epoch: u64, id: u32, schema: &str) -> Option<RecordValue> {
        Some(RecordValue::Schema(SchemaValue {
            epoch,
            id,
            schema: schema.into(),
            references: vec![],
            deleted: false,
            purged: false,
        }))
    }

    #[test]
    fn fenced_writers_are_rejected_by_everyone() {
        let mut s = State::new("a");
        claim(&mut s, 1, "a");
        s.apply(&schema_key("t", 1, "a-0"), schema_value(1, 1, "\"string\""));
        assert_eq!(s.verdict("a-0"), Some(true));
        claim(&mut s, 2, "b");
        s.apply(&schema_key("t", 2, "a-1"), schema_value(1, 2, "\"long\""));
        assert_eq!(s.verdict("a-1"), Some(false));
        assert_eq!(s.versions("t").map(|v| v.len()), Some(1));
        // An older claim after a newer one changes nothing.
        claim(&mut s, 2, "c");
        assert_eq!(s.writer().map(|w| w.instance.as_str()), Some("b"));
        // Verdicts are kept only for the instance's own writes.
        s.apply(&schema_key("t", 2, "b-0"), schema_value(2, 2, "\"long\""));
        assert_eq!(s.verdict("b-0"), None);
        assert_eq!(s.next_id(), 3);
    }

    #[test]
    fn an_id_is_one_schema_and_a_version_is_one_id() {
        let mut s = State::new("a");
        claim(&mut s, 1, "a");
        s.apply(&schema_key("x", 1, "a-0"), schema_value(1, 1, "\"string\""));
        // Same schema under another subject shares the id.
        s.apply(&schema_key("y", 1, "a-1"), schema_value(1, 1, "\"string\""));
        assert_eq!(s.uses_of(1, false), vec![("x".to_owned(), 1), ("y".to_owned(), 1)]);
        // Another schema under a taken id, or the same schema under a second id: rejected.
        s.apply(&schema_key("z", 1, "a-2"), schema_value(1, 1, "\"int\""));
        assert_eq!(s.verdict("a-2"), Some(false));
        s.apply(&schema_key("z", 1, "a-3"), schema_value(1, 2, "\"string\""));
        assert_eq!(s.verdict("a-3"), Some(false));
        // A taken version number with another id: rejected.
        s.apply(&schema_key("x", 1, "a-4"), schema_value(1, 3, "\"int\""));
        assert_eq!(s.verdict("a-4"), Some(false));
        assert_eq!(s.id_of("\"string\"", &[]), Some(1));
        assert!(s.versions("z").is_none());
    }

    #[test]
    fn purged_ids_are_never_reused() {
        let mut s = State::new("a");
        claim(&mut s, 1, "a");
        let k = schema_key("x", 1, "a-0");
        s.apply(&k, schema_value(1, 7, "\"string\""));
        let soft = schema_key("x", 1, "a-1");
        s.apply(
            &soft,
            Some(RecordValue::Schema(SchemaValue {
                epoch: 1,
                id: 7,
                schema: "\"string\"".into(),
                references: vec![],
                deleted: true,
                purged: false,
            })),
        );
        assert_eq!(s.subjects(false), Vec::<String>::new());
        assert_eq!(s.subjects(true), vec!["x"]);
        assert_eq!(s.versions("x").map(|v| v[&1].keys.len()), Some(2));
        s.apply(
            &schema_key("x", 1, "a-2"),
            Some(RecordValue::Schema(SchemaValue {
                epoch: 1,
                id: 7,
                schema: String::new(),
                references: vec![],
                deleted: true,
                purged: true,
            })),
        );
        s.apply(&k, None);
        s.apply(&soft, None);
        assert!(s.versions("x").is_none());
        assert!(s.schema(7).is_none());
        assert_eq!(s.next_id(), 8);

        // After compaction only the marker is left: the id still counts.
        let mut replay = State::new("b");
        claim(&mut replay, 1, "a");
        replay.apply(
            &schema_key("x", 1, "a-2"),
            Some(RecordValue::Schema(SchemaValue {
                epoch: 1,
                id: 7,
                schema: String::new(),
                references: vec![],
                deleted: true,
                purged: true,
            })),
        );
        assert_eq!(replay.next_id(), 8);
        assert!(replay.subjects(true).is_empty());
    }

    #[test]
    fn config_and_mode_fall_back_to_global_then_default() {
        let mut s = State::new("a");
        claim(&mut s, 1, "a");
        assert_eq!(s.effective_level("x"), Level::Backward);
        let config = |subject: Option<&str>, level, write: &str| {
            (
                RecordKey::Config {
                    subject: subject.map(str::to_owned),
                    write: write.into(),
                },
                Some(RecordValue::Config(ConfigValue { epoch: 1, level })),
            )
        };
        let (k, v) = config(None, Some(Level::Full), "a-0");
        s.apply(&k, v);
        assert_eq!(s.effective_level("x"), Level::Full);
        let (k, v) = config(Some("x"), Some(Level::None), "a-1");
        s.apply(&k, v);
        assert_eq!(s.effective_level("x"), Level::None);
        assert_eq!(s.effective_level("y"), Level::Full);
        let (k, v) = config(Some("x"), None, "a-2");
        s.apply(&k, v);
        assert_eq!(s.effective_level("x"), Level::Full);
        s.apply(
            &RecordKey::Mode {
                subject: None,
                write: "a-3".into(),
            },
            Some(RecordValue::Mode(ModeValue {
                epoch: 1,
                mode: Some(Mode::Readonly),
            })),
        );
        assert_eq!(s.effective_mode("x"), Mode::Readonly);
    }

    #[test]
    fn record_keys_are_json_with_a_kind() {
        let k = schema_key("orders-value", 3, "a-9");
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"Schema","subject":"orders-value","version":3,"write":"a-9"}"#
        );
        assert_eq!(serde_json::from_str::<RecordKey>(&json).unwrap(), k);
        assert_eq!(serde_json::to_string(&Mode::Readwrite).unwrap(), "\"READWRITE\"");
    }
}
