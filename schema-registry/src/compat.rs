//! Avro schema compatibility: whether a new version may be registered under a subject, decided
//! the way Confluent Schema Registry decides it.
//!
//! Every compatibility level reduces to one question asked in some direction against some of the
//! subject's versions: can a *reader* schema decode data written with a *writer* schema?
//! [`can_read`] answers that question; [`check`] asks it as a [`Level`] requires (BACKWARD: the
//! new schema reads the latest version; FORWARD: the latest version reads the new schema; FULL:
//! both; the `_TRANSITIVE` forms: against every version instead of only the latest; NONE: no check).
//!
//! Confluent answers the reader/writer question with Avro Java's `SchemaCompatibility`, an
//! implementation of the specification's "Schema Resolution" rules. We implement those rules here
//! by walking both `apache_avro::Schema` trees rather than calling the crate's own
//! `schema_compatibility` module, because a registry has to tell its user *why* a schema was
//! refused, and that module only says yes or no (and has known gaps). The rules, from the Avro
//! 1.11 specification:
//!
//! - Primitive types read themselves, and the writer's type may be promoted: `int` to `long`,
//!   `float` or `double`; `long` to `float` or `double`; `float` to `double`; `string` to `bytes`
//!   and `bytes` to `string`.
//! - Records, enums and fixed types match when their unqualified names are equal, or when one of
//!   the reader's aliases is the writer's full name. The specification and Avro Java (since 1.9,
//!   so Confluent too) ignore the namespace here, so moving a type to another namespace is a
//!   compatible change.
//! - Records: each reader field reads the writer field of the same name (or of one of the reader
//!   field's aliases); a reader field the writer lacks needs a default. Writer fields the reader
//!   lacks are skipped.
//! - Enums: every writer symbol must be a reader symbol, unless the reader has a default symbol.
//! - Fixed: the sizes must be equal. Arrays: the items must match. Maps: the values must match.
//! - Unions: when the writer is a union, the reader must read every one of its branches; when only
//!   the reader is a union, one of its branches must read the writer.
//!
//! One place is deliberately stricter than Avro Java (and so than Confluent): **logical types are
//! types of their own**. A `decimal` matches only a `decimal` with the same precision, scale and
//! underlying type (the same `fixed`, or `bytes`); `date`, `time-*`, `timestamp-*`,
//! `local-timestamp-*`, `uuid`, `big-decimal` and `duration` each match only themselves, and a
//! logical type and its underlying primitive match in neither direction. Avro Java looks only at
//! the underlying types, so it accepts changing `int` to `date`, `timestamp-millis` to
//! `timestamp-micros` or `decimal(10,2)` to `decimal(10,3)`; each of these changes the meaning of
//! every stored value without changing a byte of it, which is exactly what a compatibility check
//! is for, so we refuse them.
//!
//! Named types are resolved within each schema, recursive types included. A type the schema
//! refers to but does not define (a Confluent schema reference) cannot be checked; callers must
//! inline referenced types first (`Schema::denormalize`), and such a reference is otherwise
//! reported as a reason.
//!
//! Each reason is one line: the path from the root of the schema, then what is wrong, e.g.
//! `/fields/price: reader type bytes (decimal 10,2) does not match writer type string`. Paths are
//! built from `/fields/<name>`, `/items` (array items) and `/values` (map values); `/` is the root.
//! A pair of records is compared once: where the same pair is met again, a single line refers to
//! the path where its reasons were given (a type used twice by a type used twice by ... would
//! otherwise cost exponential time and reasons).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use apache_avro::schema::{
    Alias, DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, Name, RecordSchema, UnionSchema, UuidSchema,
};
use apache_avro::Schema;

/// Confluent's compatibility levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// The new schema can read data written with the latest version.
    #[default]
    Backward,
    /// The new schema can read data written with every version.
    BackwardTransitive,
    /// The latest version can read data written with the new schema.
    Forward,
    /// Every version can read data written with the new schema.
    ForwardTransitive,
    /// Both `Backward` and `Forward`.
    Full,
    /// Both `BackwardTransitive` and `ForwardTransitive`.
    FullTransitive,
    /// No check at all.
    None,
}

/// Every level, in the order Confluent documents them.
const LEVELS: [Level; 7] = [
    Level::Backward,
    Level::BackwardTransitive,
    Level::Forward,
    Level::ForwardTransitive,
    Level::Full,
    Level::FullTransitive,
    Level::None,
];

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
            Level::None => "NONE",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compatibility level name that is not one of Confluent's seven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown compatibility level {0:?}: expected BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, \
     FULL_TRANSITIVE or NONE"
)]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;

    /// Accepts exactly the names `Display` writes (upper case, as Confluent stores them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LEVELS
            .into_iter()
            .find(|level| level.as_str() == s)
            .ok_or_else(|| UnknownLevel(s.to_owned()))
    }
}

/// Whether data written with `writer` can be read with `reader`, by the Avro specification's
/// schema resolution rules (with logical types kept strict, see the module documentation).
/// `Ok(())` when it can; otherwise every reason found, each one short line naming the path in
/// the schema, e.g. "/fields/price: reader type bytes (decimal 10,2) does not match writer type
/// string".
pub fn can_read(reader: &Schema, writer: &Schema) -> Result<(), Vec<String>> {
    let mut checker = Checker {
        reader_names: named_types(reader),
        writer_names: named_types(writer),
        stack: Vec::new(),
        assumed: None,
        done: HashMap::new(),
    };
    let mut reasons = Vec::new();
    checker.compare(reader, writer, "", &mut reasons);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Checks a new schema against the existing versions of a subject, given oldest first as
/// (version number, schema) pairs, under `level`, as Confluent does: BACKWARD = the new schema
/// can read the latest version; FORWARD = the latest version can read the new schema; FULL =
/// both; the `_TRANSITIVE` forms check every existing version instead of only the latest; NONE =
/// always compatible. Returns every reason, each naming the version it concerns (empty =
/// compatible; also empty when there are no existing versions).
pub fn check(level: Level, new: &Schema, existing: &[(i32, &Schema)]) -> Vec<String> {
    let (backward, forward, transitive) = match level {
        Level::Backward => (true, false, false),
        Level::BackwardTransitive => (true, false, true),
        Level::Forward => (false, true, false),
        Level::ForwardTransitive => (false, true, true),
        Level::Full => (true, true, false),
        Level::FullTransitive => (true, true, true),
        Level::None => return Vec::new(),
    };
    let against = if transitive {
        existing
    } else {
        existing.last().map(std::slice::from_ref).unwrap_or_default()
    };
    let mut reasons = Vec::new();
    for &(version, old) in against {
        if backward {
            if let Err(found) = can_read(new, old) {
                reasons.extend(
                    found
                        .into_iter()
                        .map(|r| format!("new schema cannot read data written with version {version}: {r}")),
                );
            }
        }
        if forward {
            if let Err(found) = can_read(old, new) {
                reasons.extend(
                    found
                        .into_iter()
                        .map(|r| format!("version {version} cannot read data written with the new schema: {r}")),
                );
            }
        }
    }
    reasons
}

/// The named types a schema defines (records, enums, fixed, and logical types on fixed), by full
/// name and by each alias, so that `Schema::Ref`s can be followed.
type NamedTypes<'a> = HashMap<Name, &'a Schema>;

fn named_types(schema: &Schema) -> NamedTypes<'_> {
    let mut names = HashMap::new();
    collect_named_types(schema, &mut names);
    names
}

fn collect_named_types<'a>(schema: &'a Schema, names: &mut NamedTypes<'a>) {
    match schema {
        Schema::Array(array) => collect_named_types(&array.items, names),
        Schema::Map(map) => collect_named_types(&map.types, names),
        Schema::Union(union) => {
            for branch in union.variants() {
                collect_named_types(branch, names);
            }
        }
        Schema::Record(record) => {
            define(schema, &record.name, record.aliases.as_deref(), names);
            for field in &record.fields {
                collect_named_types(&field.schema, names);
            }
        }
        Schema::Enum(EnumSchema { name, aliases, .. })
        | Schema::Fixed(FixedSchema { name, aliases, .. })
        | Schema::Duration(FixedSchema { name, aliases, .. })
        | Schema::Uuid(UuidSchema::Fixed(FixedSchema { name, aliases, .. }))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(FixedSchema { name, aliases, .. }),
            ..
        }) => define(schema, name, aliases.as_deref(), names),
        _ => {}
    }
}

fn define<'a>(schema: &'a Schema, name: &Name, aliases: Option<&[Alias]>, names: &mut NamedTypes<'a>) {
    names.entry(name.clone()).or_insert(schema);
    for alias in aliases.unwrap_or_default() {
        names
            .entry(alias.fully_qualified_name(name.namespace()).into_owned())
            .or_insert(schema);
    }
}

/// Follows a `Schema::Ref` to the type it names; `Err` carries a name the schema does not define.
fn resolve<'a>(schema: &'a Schema, names: &NamedTypes<'a>) -> Result<&'a Schema, &'a Name> {
    match schema {
        Schema::Ref { name } => names.get(name).copied().ok_or(name),
        other => Ok(other),
    }
}

/// One reader/writer comparison.
struct Checker<'a> {
    reader_names: NamedTypes<'a>,
    writer_names: NamedTypes<'a>,
    /// The pairs of records being compared, outermost first. A pair met again while it is being
    /// compared is assumed compatible: that is how the comparison of a recursive type ends, and
    /// if the pair is not compatible, its own comparison says why.
    stack: Vec<(Name, Name)>,
    /// The outermost `stack` entry that the comparison under way has assumed compatible.
    assumed: Option<usize>,
    /// How finished comparisons of record pairs came out, so that each pair is compared once.
    done: HashMap<(Name, Name), Outcome>,
}

/// How the comparison of a pair of records came out.
enum Outcome {
    /// The reader cannot read the writer; the reasons were given at this path.
    Incompatible { reported_at: String },
    /// The reader can read the writer, provided the pair at this `stack` depth (if any) turns out
    /// compatible too; the outcome is forgotten when that pair's comparison ends.
    Compatible { assuming: Option<usize> },
}

impl<'a> Checker<'a> {
    fn compare(&mut self, reader: &'a Schema, writer: &'a Schema, path: &str, reasons: &mut Vec<String>) {
        let reader = match resolve(reader, &self.reader_names) {
            Ok(schema) => schema,
            Err(name) => return reasons.push(undefined(path, "reader", name)),
        };
        let writer = match resolve(writer, &self.writer_names) {
            Ok(schema) => schema,
            Err(name) => return reasons.push(undefined(path, "writer", name)),
        };
        match (reader, writer) {
            // Every value the writer may have written must be readable, whatever the reader is.
            (_, Schema::Union(union)) => {
                for branch in union.variants() {
                    self.compare(reader, branch, path, reasons);
                }
            }
            (Schema::Union(union), _) => self.compare_to_union(reader, union, writer, path, reasons),
            (Schema::Array(r), Schema::Array(w)) => self.compare(&r.items, &w.items, &format!("{path}/items"), reasons),
            (Schema::Map(r), Schema::Map(w)) => self.compare(&r.types, &w.types, &format!("{path}/values"), reasons),
            (Schema::Record(r), Schema::Record(w)) => self.compare_records(reader, writer, r, w, path, reasons),
            (Schema::Enum(r), Schema::Enum(w)) => compare_enums(reader, writer, r, w, path, reasons),
            (Schema::Fixed(r), Schema::Fixed(w))
            | (Schema::Duration(r), Schema::Duration(w))
            | (Schema::Uuid(UuidSchema::Fixed(r)), Schema::Uuid(UuidSchema::Fixed(w))) => {
                compare_fixed(reader, writer, r, w, path, reasons)
            }
            (Schema::Decimal(r), Schema::Decimal(w)) if r.precision == w.precision && r.scale == w.scale => {
                match (&r.inner, &w.inner) {
                    (InnerDecimalSchema::Bytes, InnerDecimalSchema::Bytes) => {}
                    (InnerDecimalSchema::Fixed(rf), InnerDecimalSchema::Fixed(wf)) => {
                        compare_fixed(reader, writer, rf, wf, path, reasons)
                    }
                    _ => reasons.push(mismatch(path, reader, writer, "")),
                }
            }
            _ if reads_unnamed(reader, writer) => {}
            _ => reasons.push(mismatch(path, reader, writer, "")),
        }
    }

    /// A reader union reading a writer that is not a union: some branch must read the writer.
    /// When none does, the reasons given are those of the first branch of the writer's kind (the
    /// branch the specification resolves against, whose failure is the interesting one), or a
    /// single line when there is no such branch.
    fn compare_to_union(
        &mut self,
        reader: &'a Schema,
        union: &'a UnionSchema,
        writer: &'a Schema,
        path: &str,
        reasons: &mut Vec<String>,
    ) {
        let mut closest = None;
        for branch in union.variants() {
            let mut found = Vec::new();
            self.compare(branch, writer, path, &mut found);
            if found.is_empty() {
                return;
            }
            if closest.is_none() && resolve(branch, &self.reader_names).is_ok_and(|b| same_kind(b, writer)) {
                closest = Some(found);
            }
        }
        match closest {
            Some(found) => reasons.extend(found),
            None => reasons.push(format!(
                "{}: no branch of reader type {} can read writer type {}",
                at(path),
                describe(reader),
                describe(writer)
            )),
        }
    }

    fn compare_records(
        &mut self,
        reader: &Schema,
        writer: &Schema,
        r: &'a RecordSchema,
        w: &'a RecordSchema,
        path: &str,
        reasons: &mut Vec<String>,
    ) {
        if !names_match(&r.name, r.aliases.as_deref(), &w.name) {
            return reasons.push(mismatch(path, reader, writer, " (names differ)"));
        }
        let pair = (r.name.clone(), w.name.clone());
        match self.done.get(&pair) {
            Some(Outcome::Incompatible { reported_at }) => {
                return reasons.push(format!(
                    "{}: reader type {} cannot read writer type {}, for the reasons given at {reported_at}",
                    at(path),
                    describe(reader),
                    describe(writer)
                ));
            }
            Some(Outcome::Compatible { assuming }) => {
                self.assumed = self.assumed.into_iter().chain(*assuming).min();
                return;
            }
            None => {}
        }
        if let Some(depth) = self.stack.iter().position(|p| *p == pair) {
            self.assumed = self.assumed.into_iter().chain([depth]).min();
            return;
        }
        let depth = self.stack.len();
        let outer_assumed = self.assumed.take();
        let reported = reasons.len();
        self.stack.push(pair.clone());
        for field in &r.fields {
            let field_path = format!("{path}/fields/{}", field.name);
            let written = w.fields.iter().find(|f| f.name == field.name).or_else(|| {
                field
                    .aliases
                    .iter()
                    .find_map(|alias| w.fields.iter().find(|f| &f.name == alias))
            });
            match written {
                Some(written) => self.compare(&field.schema, &written.schema, &field_path, reasons),
                None if field.default.is_some() => {}
                None => reasons.push(format!(
                    "{field_path}: reader field {} has no default and is missing from the writer",
                    field.name
                )),
            }
        }
        self.stack.pop();
        // Outcomes that assumed this pair compatible were only good while it was being compared.
        self.done
            .retain(|_, outcome| !matches!(outcome, Outcome::Compatible { assuming: Some(d) } if *d >= depth));
        let assuming = self.assumed.filter(|&d| d < depth);
        self.assumed = outer_assumed.into_iter().chain(assuming).min();
        // Reasons found are real whatever was assumed; only "compatible" depends on assumptions.
        let outcome = if reasons.len() > reported {
            Outcome::Incompatible {
                reported_at: at(path).to_owned(),
            }
        } else {
            Outcome::Compatible { assuming }
        };
        self.done.insert(pair, outcome);
    }
}

fn compare_enums(
    reader: &Schema,
    writer: &Schema,
    r: &EnumSchema,
    w: &EnumSchema,
    path: &str,
    reasons: &mut Vec<String>,
) {
    if !names_match(&r.name, r.aliases.as_deref(), &w.name) {
        return reasons.push(mismatch(path, reader, writer, " (names differ)"));
    }
    if r.default.is_some() {
        return;
    }
    let known: HashSet<&String> = r.symbols.iter().collect();
    let missing: Vec<&str> = w
        .symbols
        .iter()
        .filter(|symbol| !known.contains(symbol))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        reasons.push(format!(
            "{}: writer symbols [{}] of enum {} are not reader symbols, and the reader has no default symbol",
            at(path),
            missing.join(", "),
            w.name
        ));
    }
}

/// A fixed type, or a logical type on one: `reader` and `writer` are the whole types, for messages.
fn compare_fixed(
    reader: &Schema,
    writer: &Schema,
    r: &FixedSchema,
    w: &FixedSchema,
    path: &str,
    reasons: &mut Vec<String>,
) {
    if !names_match(&r.name, r.aliases.as_deref(), &w.name) {
        reasons.push(mismatch(path, reader, writer, " (names differ)"));
    } else if r.size != w.size {
        reasons.push(mismatch(path, reader, writer, " (sizes differ)"));
    }
}

/// The specification's name match: equal unqualified names, or a reader alias that is the
/// writer's full name.
fn names_match(reader: &Name, reader_aliases: Option<&[Alias]>, writer: &Name) -> bool {
    reader.name() == writer.name()
        || reader_aliases
            .unwrap_or_default()
            .iter()
            .any(|alias| *alias.fully_qualified_name(reader.namespace()) == *writer)
}

/// Whether `reader` reads `writer` when both are unnamed, non-container types: the same
/// primitive, a promotion, or the same logical type that has no parameters.
fn reads_unnamed(reader: &Schema, writer: &Schema) -> bool {
    use Schema as S;
    matches!(
        (reader, writer),
        (S::Null, S::Null)
            | (S::Boolean, S::Boolean)
            | (S::Int, S::Int)
            | (S::Long, S::Long | S::Int)
            | (S::Float, S::Float | S::Long | S::Int)
            | (S::Double, S::Double | S::Float | S::Long | S::Int)
            | (S::Bytes, S::Bytes | S::String)
            | (S::String, S::String | S::Bytes)
            | (S::BigDecimal, S::BigDecimal)
            | (S::Uuid(UuidSchema::String), S::Uuid(UuidSchema::String))
            | (S::Uuid(UuidSchema::Bytes), S::Uuid(UuidSchema::Bytes))
            | (S::Date, S::Date)
            | (S::TimeMillis, S::TimeMillis)
            | (S::TimeMicros, S::TimeMicros)
            | (S::TimestampMillis, S::TimestampMillis)
            | (S::TimestampMicros, S::TimestampMicros)
            | (S::TimestampNanos, S::TimestampNanos)
            | (S::LocalTimestampMillis, S::LocalTimestampMillis)
            | (S::LocalTimestampMicros, S::LocalTimestampMicros)
            | (S::LocalTimestampNanos, S::LocalTimestampNanos)
    )
}

/// The specification's shallow "match" used to pick a reader union branch: the same kind of type
/// (and, for named types, matching names), or a promotion.
fn same_kind(reader: &Schema, writer: &Schema) -> bool {
    if std::mem::discriminant(reader) != std::mem::discriminant(writer) {
        return reads_unnamed(reader, writer);
    }
    match (reader.name(), writer.name()) {
        (Some(r), Some(w)) => names_match(r, reader.aliases().map(Vec::as_slice), w),
        _ => true,
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn mismatch(path: &str, reader: &Schema, writer: &Schema, why: &str) -> String {
    format!(
        "{}: reader type {} does not match writer type {}{why}",
        at(path),
        describe(reader),
        describe(writer)
    )
}

fn undefined(path: &str, side: &str, name: &Name) -> String {
    format!(
        "{}: {side} type {name} is not defined in the {side} schema (referenced schemas must be inlined before checking)",
        at(path)
    )
}

/// A short, one-line description of a type for messages: named types by name, logical types as
/// their underlying type with the logical type in parentheses.
fn describe(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Array(array) => format!("array<{}>", describe(&array.items)),
        Schema::Map(map) => format!("map<{}>", describe(&map.types)),
        Schema::Union(union) => {
            let branches: Vec<String> = union.variants().iter().map(describe).collect();
            format!("union [{}]", branches.join(", "))
        }
        Schema::Record(record) => format!("record {}", record.name),
        Schema::Enum(e) => format!("enum {}", e.name),
        Schema::Fixed(fixed) => describe_fixed(fixed),
        Schema::Decimal(decimal) => {
            let inner = match &decimal.inner {
                InnerDecimalSchema::Bytes => "bytes".to_owned(),
                InnerDecimalSchema::Fixed(fixed) => describe_fixed(fixed),
            };
            format!("{inner} (decimal {},{})", decimal.precision, decimal.scale)
        }
        Schema::BigDecimal => "bytes (big-decimal)".into(),
        Schema::Uuid(UuidSchema::String) => "string (uuid)".into(),
        Schema::Uuid(UuidSchema::Bytes) => "bytes (uuid)".into(),
        Schema::Uuid(UuidSchema::Fixed(fixed)) => format!("{} (uuid)", describe_fixed(fixed)),
        Schema::Date => "int (date)".into(),
        Schema::TimeMillis => "int (time-millis)".into(),
        Schema::TimeMicros => "long (time-micros)".into(),
        Schema::TimestampMillis => "long (timestamp-millis)".into(),
        Schema::TimestampMicros => "long (timestamp-micros)".into(),
        Schema::TimestampNanos => "long (timestamp-nanos)".into(),
        Schema::LocalTimestampMillis => "long (local-timestamp-millis)".into(),
        Schema::LocalTimestampMicros => "long (local-timestamp-micros)".into(),
        Schema::LocalTimestampNanos => "long (local-timestamp-nanos)".into(),
        Schema::Duration(fixed) => format!("{} (duration)", describe_fixed(fixed)),
        Schema::Ref { name } => name.to_string(),
    }
}

fn describe_fixed(fixed: &FixedSchema) -> String {
    format!("fixed {}[{}]", fixed.name, fixed.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn parse(text: &str) -> Schema {
        Schema::parse_str(text).unwrap_or_else(|e| panic!("test schema does not parse: {e}\n{text}"))
    }

    /// A record `ferry.test.Rec` with the given fields (JSON objects, comma separated).
    fn rec(fields: &str) -> String {
        format!(r#"{{"type":"record","name":"Rec","namespace":"ferry.test","fields":[{fields}]}}"#)
    }

    /// A record `ferry.test.Rec` with one field `f` of the given type (JSON).
    fn one(ty: &str) -> String {
        rec(&format!(r#"{{"name":"f","type":{ty}}}"#))
    }

    fn enum_of(symbols: &str, default: Option<&str>) -> String {
        let default = default.map(|d| format!(r#","default":"{d}""#)).unwrap_or_default();
        one(&format!(
            r#"{{"type":"enum","name":"Color","symbols":[{symbols}]{default}}}"#
        ))
    }

    fn linked_list(value: &str, extra: &str) -> String {
        format!(
            r#"{{"type":"record","name":"Node","namespace":"ferry.test","fields":[
                {{"name":"value","type":{value}}},
                {{"name":"next","type":["null","Node"],"default":null}}{extra}]}}"#
        )
    }

    /// A record using the record type `Point` twice: defined inline, then by name.
    fn points(point_fields: &str) -> String {
        rec(&format!(
            r#"{{"name":"from","type":{{"type":"record","name":"Point","fields":[{point_fields}]}}}},
               {{"name":"to","type":"Point"}}"#
        ))
    }

    fn nested(inner_fields: &str) -> String {
        rec(&format!(
            r#"{{"name":"inner","type":{{"type":"record","name":"Inner","fields":[{inner_fields}]}}}}"#
        ))
    }

    const DECIMAL_10_2: &str = r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#;

    /// An evolution from `old` to `new`, with whether the new schema can read the old one's data
    /// (`backward`) and whether the old schema can read the new one's (`forward`).
    struct Case {
        name: &'static str,
        old: String,
        new: String,
        backward: bool,
        forward: bool,
    }

    fn case(name: &'static str, old: String, new: String, backward: bool, forward: bool) -> Case {
        Case {
            name,
            old,
            new,
            backward,
            forward,
        }
    }

    fn matrix() -> Vec<Case> {
        let a_int = r#"{"name":"a","type":"int"}"#;
        let b_string = r#"{"name":"b","type":"string"}"#;
        let b_defaulted = r#"{"name":"b","type":"string","default":"x"}"#;
        vec![
            case(
                "identical record",
                rec(&format!("{a_int},{b_string}")),
                rec(&format!("{a_int},{b_string}")),
                true,
                true,
            ),
            case(
                "field added with default",
                rec(a_int),
                rec(&format!("{a_int},{b_defaulted}")),
                true,
                true,
            ),
            case(
                "field added without default",
                rec(a_int),
                rec(&format!("{a_int},{b_string}")),
                false,
                true,
            ),
            case(
                "field with default removed",
                rec(&format!("{a_int},{b_defaulted}")),
                rec(a_int),
                true,
                true,
            ),
            case(
                "field without default removed",
                rec(&format!("{a_int},{b_string}")),
                rec(a_int),
                true,
                false,
            ),
            case(
                "field renamed with an alias",
                rec(a_int),
                rec(r#"{"name":"z","type":"int","aliases":["a"]}"#),
                true,
                false,
            ),
            case(
                "field renamed without an alias",
                rec(a_int),
                rec(r#"{"name":"z","type":"int"}"#),
                false,
                false,
            ),
            case("int promoted to long", one(r#""int""#), one(r#""long""#), true, false),
            case("long narrowed to int", one(r#""long""#), one(r#""int""#), false, true),
            case("int promoted to float", one(r#""int""#), one(r#""float""#), true, false),
            case(
                "int promoted to double",
                one(r#""int""#),
                one(r#""double""#),
                true,
                false,
            ),
            case(
                "long promoted to float",
                one(r#""long""#),
                one(r#""float""#),
                true,
                false,
            ),
            case(
                "long promoted to double",
                one(r#""long""#),
                one(r#""double""#),
                true,
                false,
            ),
            case(
                "float promoted to double",
                one(r#""float""#),
                one(r#""double""#),
                true,
                false,
            ),
            case(
                "double narrowed to float",
                one(r#""double""#),
                one(r#""float""#),
                false,
                true,
            ),
            case("string to bytes", one(r#""string""#), one(r#""bytes""#), true, true),
            case("bytes to string", one(r#""bytes""#), one(r#""string""#), true, true),
            case("int to string", one(r#""int""#), one(r#""string""#), false, false),
            case("boolean to int", one(r#""boolean""#), one(r#""int""#), false, false),
            case(
                "top-level int to long",
                r#""int""#.into(),
                r#""long""#.into(),
                true,
                false,
            ),
            case(
                "enum symbol added",
                enum_of(r#""A","B""#, None),
                enum_of(r#""A","B","C""#, None),
                true,
                false,
            ),
            case(
                "enum symbol removed",
                enum_of(r#""A","B","C""#, None),
                enum_of(r#""A","B""#, None),
                false,
                true,
            ),
            case(
                "enum symbol added, old enum has a default",
                enum_of(r#""A","B""#, Some("A")),
                enum_of(r#""A","B","C""#, Some("A")),
                true,
                true,
            ),
            case(
                "enum symbol removed, new enum has a default",
                enum_of(r#""A","B","C""#, None),
                enum_of(r#""A","B""#, Some("A")),
                true,
                true,
            ),
            case(
                "enum renamed",
                one(r#"{"type":"enum","name":"Color","symbols":["A"]}"#),
                one(r#"{"type":"enum","name":"Colour","symbols":["A"]}"#),
                false,
                false,
            ),
            case(
                "enum to string",
                enum_of(r#""A""#, None),
                one(r#""string""#),
                false,
                false,
            ),
            case(
                "fixed unchanged",
                one(r#"{"type":"fixed","name":"Hash","size":16}"#),
                one(r#"{"type":"fixed","name":"Hash","size":16}"#),
                true,
                true,
            ),
            case(
                "fixed size changed",
                one(r#"{"type":"fixed","name":"Hash","size":16}"#),
                one(r#"{"type":"fixed","name":"Hash","size":32}"#),
                false,
                false,
            ),
            case(
                "fixed renamed",
                one(r#"{"type":"fixed","name":"Hash","size":16}"#),
                one(r#"{"type":"fixed","name":"Digest","size":16}"#),
                false,
                false,
            ),
            case(
                "array of int to array of long",
                one(r#"{"type":"array","items":"int"}"#),
                one(r#"{"type":"array","items":"long"}"#),
                true,
                false,
            ),
            case(
                "array of long to array of int",
                one(r#"{"type":"array","items":"long"}"#),
                one(r#"{"type":"array","items":"int"}"#),
                false,
                true,
            ),
            case(
                "map of float to map of double",
                one(r#"{"type":"map","values":"float"}"#),
                one(r#"{"type":"map","values":"double"}"#),
                true,
                false,
            ),
            case(
                "array to map",
                one(r#"{"type":"array","items":"int"}"#),
                one(r#"{"type":"map","values":"int"}"#),
                false,
                false,
            ),
            case(
                "nested record: deep field type changed",
                nested(r#"{"name":"x","type":"int"}"#),
                nested(r#"{"name":"x","type":"string"}"#),
                false,
                false,
            ),
            case(
                "nested record: deep field added with default",
                nested(r#"{"name":"x","type":"int"}"#),
                nested(r#"{"name":"x","type":"int"},{"name":"y","type":"int","default":0}"#),
                true,
                true,
            ),
            case(
                "nested record: deep field added without default",
                nested(r#"{"name":"x","type":"int"}"#),
                nested(r#"{"name":"x","type":"int"},{"name":"y","type":"int"}"#),
                false,
                true,
            ),
            case(
                "union gains a branch",
                one(r#"["null","string"]"#),
                one(r#"["null","string","int"]"#),
                true,
                false,
            ),
            case(
                "union loses a branch",
                one(r#"["null","string","int"]"#),
                one(r#"["null","string"]"#),
                false,
                true,
            ),
            case(
                "non-union to union",
                one(r#""string""#),
                one(r#"["null","string"]"#),
                true,
                false,
            ),
            case(
                "union to non-union",
                one(r#"["null","string"]"#),
                one(r#""string""#),
                false,
                true,
            ),
            case(
                "int to nullable long",
                one(r#""int""#),
                one(r#"["null","long"]"#),
                true,
                false,
            ),
            case(
                "nullable field made non-nullable",
                rec(r#"{"name":"n","type":["null","string"],"default":null}"#),
                rec(r#"{"name":"n","type":"string"}"#),
                false,
                true,
            ),
            case(
                "nullable record gains a field without default",
                one(r#"["null",{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"}]}]"#),
                one(
                    r#"["null",{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"},{"name":"y","type":"int"}]}]"#,
                ),
                false,
                true,
            ),
            case("decimal unchanged", one(DECIMAL_10_2), one(DECIMAL_10_2), true, true),
            case(
                "decimal precision changed",
                one(DECIMAL_10_2),
                one(r#"{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}"#),
                false,
                false,
            ),
            case(
                "decimal scale changed",
                one(DECIMAL_10_2),
                one(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":3}"#),
                false,
                false,
            ),
            case("bytes to decimal", one(r#""bytes""#), one(DECIMAL_10_2), false, false),
            case(
                "decimal on bytes to decimal on fixed",
                one(DECIMAL_10_2),
                one(r#"{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":10,"scale":2}"#),
                false,
                false,
            ),
            case(
                "decimal on fixed, size changed",
                one(r#"{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":10,"scale":2}"#),
                one(r#"{"type":"fixed","name":"Money","size":16,"logicalType":"decimal","precision":10,"scale":2}"#),
                false,
                false,
            ),
            case(
                "int to date",
                one(r#""int""#),
                one(r#"{"type":"int","logicalType":"date"}"#),
                false,
                false,
            ),
            case(
                "date unchanged",
                one(r#"{"type":"int","logicalType":"date"}"#),
                one(r#"{"type":"int","logicalType":"date"}"#),
                true,
                true,
            ),
            case(
                "timestamp-millis to timestamp-micros",
                one(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
                one(r#"{"type":"long","logicalType":"timestamp-micros"}"#),
                false,
                false,
            ),
            case(
                "timestamp-millis to local-timestamp-millis",
                one(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
                one(r#"{"type":"long","logicalType":"local-timestamp-millis"}"#),
                false,
                false,
            ),
            case(
                "long to timestamp-millis",
                one(r#""long""#),
                one(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
                false,
                false,
            ),
            case(
                "time-millis to time-micros",
                one(r#"{"type":"int","logicalType":"time-millis"}"#),
                one(r#"{"type":"long","logicalType":"time-micros"}"#),
                false,
                false,
            ),
            case(
                "string to uuid",
                one(r#""string""#),
                one(r#"{"type":"string","logicalType":"uuid"}"#),
                false,
                false,
            ),
            case(
                "uuid unchanged",
                one(r#"{"type":"string","logicalType":"uuid"}"#),
                one(r#"{"type":"string","logicalType":"uuid"}"#),
                true,
                true,
            ),
            case(
                "linked list unchanged",
                linked_list(r#""int""#, ""),
                linked_list(r#""int""#, ""),
                true,
                true,
            ),
            case(
                "linked list value promoted",
                linked_list(r#""int""#, ""),
                linked_list(r#""long""#, ""),
                true,
                false,
            ),
            case(
                "linked list gains a field without default",
                linked_list(r#""int""#, ""),
                linked_list(r#""int""#, r#",{"name":"label","type":"string"}"#),
                false,
                true,
            ),
            case(
                "named type referenced twice, unchanged",
                points(r#"{"name":"x","type":"int"}"#),
                points(r#"{"name":"x","type":"int"}"#),
                true,
                true,
            ),
            case(
                "named type referenced twice, promoted",
                points(r#"{"name":"x","type":"int"}"#),
                points(r#"{"name":"x","type":"long"}"#),
                true,
                false,
            ),
            case(
                "named type referenced twice, gains a field without default",
                points(r#"{"name":"x","type":"int"}"#),
                points(r#"{"name":"x","type":"int"},{"name":"y","type":"int"}"#),
                false,
                true,
            ),
            case(
                "record renamed",
                rec(a_int),
                r#"{"type":"record","name":"Other","namespace":"ferry.test","fields":[{"name":"a","type":"int"}]}"#
                    .into(),
                false,
                false,
            ),
            case(
                "record renamed with an alias",
                rec(a_int),
                r#"{"type":"record","name":"Other","namespace":"ferry.test","aliases":["Rec"],
                    "fields":[{"name":"a","type":"int"}]}"#
                    .into(),
                true,
                false,
            ),
            case(
                "namespace changed",
                rec(a_int),
                r#"{"type":"record","name":"Rec","namespace":"ferry.moved","fields":[{"name":"a","type":"int"}]}"#
                    .into(),
                true,
                true,
            ),
        ]
    }

    fn expected(level: Level, backward: bool, forward: bool) -> bool {
        match level {
            Level::Backward | Level::BackwardTransitive => backward,
            Level::Forward | Level::ForwardTransitive => forward,
            Level::Full | Level::FullTransitive => backward && forward,
            Level::None => true,
        }
    }

    #[test]
    fn compatibility_matrix() {
        let cases = matrix();
        assert!(cases.len() >= 35, "only {} cases", cases.len());
        let mut failures = Vec::new();
        for case in &cases {
            let old = parse(&case.old);
            let new = parse(&case.new);
            let backward = can_read(&new, &old);
            let forward = can_read(&old, &new);
            if backward.is_ok() != case.backward {
                failures.push(format!(
                    "{}: new reads old: expected {}, got {backward:?}",
                    case.name, case.backward
                ));
            }
            if forward.is_ok() != case.forward {
                failures.push(format!(
                    "{}: old reads new: expected {}, got {forward:?}",
                    case.name, case.forward
                ));
            }
            for level in LEVELS {
                let reasons = check(level, &new, &[(1, &old)]);
                if reasons.is_empty() != expected(level, case.backward, case.forward) {
                    failures.push(format!("{}: {level}: got {reasons:?}", case.name));
                }
                for reason in &reasons {
                    assert!(!reason.contains('\n'), "{}: multi-line reason {reason:?}", case.name);
                    assert!(
                        reason.contains("version 1"),
                        "{}: reason names no version: {reason}",
                        case.name
                    );
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    /// Three versions where the new schema passes against the latest but not against the first,
    /// with the expected verdict under every level.
    fn assert_levels(versions: [&str; 3], new: &str, expected: [(Level, bool); 7]) {
        let versions: Vec<Schema> = versions.iter().map(|s| parse(s)).collect();
        let existing: Vec<(i32, &Schema)> = versions.iter().zip(1..).map(|(s, n)| (n, s)).collect();
        let new = parse(new);
        for (level, compatible) in expected {
            let reasons = check(level, &new, &existing);
            assert_eq!(reasons.is_empty(), compatible, "{level}: {reasons:?}");
            if !compatible {
                assert!(reasons.iter().all(|r| r.contains("version 1")), "{level}: {reasons:?}");
            }
        }
    }

    #[test]
    fn transitive_backward_fails_where_backward_passes() {
        // v2 gave b a default, the new schema takes it away: it reads v2's data, not v1's.
        assert_levels(
            [
                &rec(r#"{"name":"a","type":"int"}"#),
                &rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}"#),
                &rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}"#),
            ],
            &rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#),
            [
                (Level::Backward, true),
                (Level::BackwardTransitive, false),
                (Level::Forward, true),
                (Level::ForwardTransitive, true),
                (Level::Full, true),
                (Level::FullTransitive, false),
                (Level::None, true),
            ],
        );
    }

    #[test]
    fn transitive_forward_fails_where_forward_passes() {
        // v1 required b, v2 gave it a default, the new schema drops it: v2 reads it, v1 cannot.
        assert_levels(
            [
                &rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#),
                &rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}"#),
                &rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}"#),
            ],
            &rec(r#"{"name":"a","type":"int"}"#),
            [
                (Level::Backward, true),
                (Level::BackwardTransitive, true),
                (Level::Forward, true),
                (Level::ForwardTransitive, false),
                (Level::Full, true),
                (Level::FullTransitive, false),
                (Level::None, true),
            ],
        );
    }

    #[test]
    fn transitive_full_fails_where_full_passes() {
        // v1 wrote an int, v2 and v3 a long: the long-typed new schema is fully compatible with v3
        // only, since v1's schema cannot read longs.
        assert_levels(
            [&one(r#""int""#), &one(r#""long""#), &one(r#""long""#)],
            &one(r#""long""#),
            [
                (Level::Backward, true),
                (Level::BackwardTransitive, true),
                (Level::Forward, true),
                (Level::ForwardTransitive, false),
                (Level::Full, true),
                (Level::FullTransitive, false),
                (Level::None, true),
            ],
        );
    }

    #[test]
    fn non_transitive_levels_use_the_last_version_given() {
        let v1 = parse(&one(r#""string""#));
        let v2 = parse(&one(r#""int""#));
        let new = parse(&one(r#""long""#));
        assert!(check(Level::Backward, &new, &[(1, &v1), (2, &v2)]).is_empty());
        assert!(!check(Level::Backward, &new, &[(2, &v2), (1, &v1)]).is_empty());
    }

    #[test]
    fn nothing_to_check_against_is_compatible() {
        let new = parse(&one(r#""int""#));
        for level in LEVELS {
            assert!(check(level, &new, &[]).is_empty(), "{level}");
        }
    }

    #[test]
    fn none_accepts_anything() {
        let old = parse(&one(r#""int""#));
        let new = parse(r#""string""#);
        assert!(check(Level::None, &new, &[(1, &old)]).is_empty());
        assert!(!check(Level::Full, &new, &[(1, &old)]).is_empty());
    }

    #[test]
    fn reasons_name_the_version_and_the_direction() {
        let old = parse(&rec(r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#));
        let new = parse(&rec(r#"{"name":"a","type":"long"},{"name":"c","type":"string"}"#));
        assert_eq!(
            check(Level::Full, &new, &[(7, &old)]),
            [
                "new schema cannot read data written with version 7: /fields/c: reader field c has no default and is \
                 missing from the writer",
                "version 7 cannot read data written with the new schema: /fields/a: reader type int does not match \
                 writer type long",
                "version 7 cannot read data written with the new schema: /fields/b: reader field b has no default and \
                 is missing from the writer",
            ]
        );
    }

    fn reasons(reader: &str, writer: &str) -> Vec<String> {
        can_read(&parse(reader), &parse(writer)).expect_err("expected incompatible schemas")
    }

    #[test]
    fn reason_for_a_decimal_read_from_a_string() {
        assert_eq!(
            reasons(
                &rec(&format!(r#"{{"name":"price","type":{DECIMAL_10_2}}}"#)),
                &rec(r#"{"name":"price","type":"string"}"#)
            ),
            ["/fields/price: reader type bytes (decimal 10,2) does not match writer type string"]
        );
    }

    #[test]
    fn reasons_give_the_path_into_nested_types() {
        assert_eq!(
            reasons(
                &nested(r#"{"name":"x","type":"int"}"#),
                &nested(r#"{"name":"x","type":"string"}"#)
            ),
            ["/fields/inner/fields/x: reader type int does not match writer type string"]
        );
        assert_eq!(
            reasons(
                &one(r#"{"type":"array","items":{"type":"map","values":"int"}}"#),
                &one(r#"{"type":"array","items":{"type":"map","values":"long"}}"#)
            ),
            ["/fields/f/items/values: reader type int does not match writer type long"]
        );
        assert_eq!(
            reasons(r#""int""#, r#""long""#),
            ["/: reader type int does not match writer type long"]
        );
    }

    #[test]
    fn every_reason_is_reported() {
        let found = reasons(
            &rec(r#"{"name":"a","type":"int"},{"name":"b","type":"int"},{"name":"c","type":"int"}"#),
            &rec(r#"{"name":"a","type":"string"},{"name":"b","type":"long"}"#),
        );
        assert_eq!(
            found,
            [
                "/fields/a: reader type int does not match writer type string",
                "/fields/b: reader type int does not match writer type long",
                "/fields/c: reader field c has no default and is missing from the writer",
            ]
        );
    }

    #[test]
    fn reasons_for_named_types() {
        assert_eq!(
            reasons(&enum_of(r#""A""#, None), &enum_of(r#""A","B","C""#, None)),
            ["/fields/f: writer symbols [B, C] of enum ferry.test.Color are not reader symbols, and the reader has no \
              default symbol"]
        );
        assert_eq!(
            reasons(
                &one(r#"{"type":"fixed","name":"Hash","size":16}"#),
                &one(r#"{"type":"fixed","name":"Hash","size":32}"#)
            ),
            ["/fields/f: reader type fixed ferry.test.Hash[16] does not match writer type fixed ferry.test.Hash[32] \
              (sizes differ)"]
        );
        assert_eq!(
            reasons(
                &rec(r#"{"name":"a","type":"int"}"#),
                r#"{"type":"record","name":"Other","fields":[{"name":"a","type":"int"}]}"#
            ),
            ["/: reader type record ferry.test.Rec does not match writer type record Other (names differ)"]
        );
    }

    #[test]
    fn reasons_for_logical_types() {
        assert_eq!(
            reasons(&one(r#"{"type":"int","logicalType":"date"}"#), &one(r#""int""#)),
            ["/fields/f: reader type int (date) does not match writer type int"]
        );
        assert_eq!(
            reasons(
                &one(r#"{"type":"long","logicalType":"timestamp-micros"}"#),
                &one(r#"{"type":"long","logicalType":"timestamp-millis"}"#)
            ),
            ["/fields/f: reader type long (timestamp-micros) does not match writer type long (timestamp-millis)"]
        );
        assert_eq!(
            reasons(&one(r#"{"type":"string","logicalType":"uuid"}"#), &one(r#""string""#)),
            ["/fields/f: reader type string (uuid) does not match writer type string"]
        );
    }

    #[test]
    fn reasons_for_unions() {
        assert_eq!(
            reasons(&one(r#""string""#), &one(r#"["null","string"]"#)),
            ["/fields/f: reader type string does not match writer type null"]
        );
        assert_eq!(
            reasons(&one(r#"["null","string"]"#), &one(r#"["null","string","int"]"#)),
            ["/fields/f: no branch of reader type union [null, string] can read writer type int"]
        );
        // The branch of the writer's kind explains the failure better than "no branch can read it".
        assert_eq!(
            reasons(
                &one(
                    r#"["null",{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"},{"name":"y","type":"int"}]}]"#
                ),
                &one(r#"["null",{"type":"record","name":"Inner","fields":[{"name":"x","type":"int"}]}]"#)
            ),
            ["/fields/f/fields/y: reader field y has no default and is missing from the writer"]
        );
    }

    #[test]
    fn a_named_type_used_twice_is_checked_at_both_places() {
        assert_eq!(
            reasons(
                &points(r#"{"name":"x","type":"int"},{"name":"y","type":"int"}"#),
                &points(r#"{"name":"x","type":"int"}"#)
            ),
            [
                "/fields/from/fields/y: reader field y has no default and is missing from the writer",
                "/fields/to: reader type record ferry.test.Point cannot read writer type record ferry.test.Point, for \
                 the reasons given at /fields/from",
            ]
        );
    }

    /// `T0` uses `T1` twice, which uses `T2` twice, and so on: 2^depth paths lead to the leaf.
    /// With `back_edges`, every type can also hold a `T0` again.
    fn doubling(depth: usize, leaf: &str, back_edges: bool) -> String {
        let up = if back_edges {
            r#",{"name":"up","type":["null","T0"],"default":null}"#
        } else {
            ""
        };
        let mut ty =
            format!(r#"{{"type":"record","name":"T{depth}","fields":[{{"name":"leaf","type":"{leaf}"}}{up}]}}"#);
        for i in (0..depth).rev() {
            let next = i + 1;
            ty = format!(
                r#"{{"type":"record","name":"T{i}","fields":[{{"name":"a","type":{ty}}},{{"name":"b","type":"T{next}"}}{up}]}}"#
            );
        }
        ty
    }

    #[test]
    fn an_outcome_that_assumed_an_incompatible_pair_is_not_reused() {
        // P is compared inside Q, assuming Q readable, which it is not: P must be compared again
        // when met outside Q.
        let schema = |bad: &str| {
            rec(&format!(
                r#"{{"name":"first","type":{{"type":"record","name":"Q","fields":[
                    {{"name":"p","type":{{"type":"record","name":"P","fields":[
                        {{"name":"q","type":["null","Q"],"default":null}}]}}}},
                    {{"name":"bad","type":"{bad}"}}]}}}},
                   {{"name":"second","type":"P"}}"#
            ))
        };
        assert_eq!(
            reasons(&schema("int"), &schema("long")),
            [
                "/fields/first/fields/bad: reader type int does not match writer type long",
                "/fields/second/fields/q: reader type record ferry.test.Q cannot read writer type record ferry.test.Q, \
                 for the reasons given at /fields/first",
            ]
        );
        assert_eq!(can_read(&parse(&schema("long")), &parse(&schema("int"))), Ok(()));
    }

    #[test]
    fn a_type_reached_along_exponentially_many_paths_is_checked_once() {
        for back_edges in [false, true] {
            let narrow = parse(&doubling(40, "int", back_edges));
            let wide = parse(&doubling(40, "long", back_edges));
            assert_eq!(can_read(&wide, &narrow), Ok(()));
            assert_eq!(can_read(&narrow, &narrow), Ok(()));
            let found = can_read(&narrow, &wide).unwrap_err();
            assert_eq!(found.len(), 41, "{found:#?}");
            assert_eq!(
                found[0],
                format!(
                    "{}/fields/leaf: reader type int does not match writer type long",
                    "/fields/a".repeat(40)
                )
            );
            assert_eq!(
                found[40],
                "/fields/b: reader type record T1 cannot read writer type record T1, for the reasons given at /fields/a"
            );
        }
    }

    #[test]
    fn recursive_types_are_compared_once_per_pair() {
        assert_eq!(
            reasons(&linked_list(r#""int""#, ""), &linked_list(r#""string""#, "")),
            ["/fields/value: reader type int does not match writer type string"]
        );
        // Mutually recursive types, and one defined through a union.
        let tree = |leaf: &str| {
            format!(
                r#"{{"type":"record","name":"Tree","fields":[
                    {{"name":"children","type":{{"type":"array","items":{{"type":"record","name":"Child","fields":[
                        {{"name":"tree","type":["null","Tree"]}},{{"name":"leaf","type":{leaf}}}]}}}}}}]}}"#
            )
        };
        assert!(can_read(&parse(&tree(r#""long""#)), &parse(&tree(r#""int""#))).is_ok());
        assert_eq!(
            reasons(&tree(r#""int""#), &tree(r#""long""#)),
            ["/fields/children/items/fields/leaf: reader type int does not match writer type long"]
        );
    }

    #[test]
    fn enum_and_fixed_aliases_match_the_writer_name() {
        let old = parse(&one(r#"{"type":"enum","name":"Color","symbols":["A"]}"#));
        let new = parse(&one(
            r#"{"type":"enum","name":"Colour","aliases":["Color"],"symbols":["A"]}"#,
        ));
        assert!(can_read(&new, &old).is_ok());
        assert!(can_read(&old, &new).is_err());
        let old = parse(&one(r#"{"type":"fixed","name":"Hash","size":4}"#));
        let new = parse(&one(
            r#"{"type":"fixed","name":"Digest","aliases":["ferry.test.Hash"],"size":4}"#,
        ));
        assert!(can_read(&new, &old).is_ok());
    }

    #[test]
    fn a_reference_by_alias_resolves() {
        let schema = parse(&rec(
            r#"{"name":"a","type":{"type":"fixed","name":"Hash","aliases":["Digest"],"size":4}},
               {"name":"b","type":"Digest"}"#,
        ));
        assert!(can_read(&schema, &schema).is_ok());
    }

    #[test]
    fn external_references_must_be_inlined_first() {
        let money = r#"{"type":"fixed","name":"Money","namespace":"ferry.test","size":8}"#;
        let (schema, referenced) =
            Schema::parse_str_with_list(&rec(r#"{"name":"price","type":"Money"}"#), [money]).unwrap();
        assert_eq!(
            can_read(&schema, &schema),
            Err(vec![
                "/fields/price: reader type ferry.test.Money is not defined in the reader schema (referenced schemas \
                 must be inlined before checking)"
                    .to_owned()
            ])
        );
        let mut inlined = schema.clone();
        inlined.denormalize(&referenced).unwrap();
        assert!(can_read(&inlined, &inlined).is_ok());
    }

    #[test]
    fn level_names_round_trip() {
        for level in LEVELS {
            assert_eq!(level.to_string().parse::<Level>(), Ok(level));
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{level}\""));
            assert_eq!(serde_json::from_str::<Level>(&json).unwrap(), level);
        }
        assert_eq!(
            serde_json::to_string(&Level::BackwardTransitive).unwrap(),
            r#""BACKWARD_TRANSITIVE""#
        );
        assert_eq!(
            serde_json::from_str::<Level>(r#""BACKWARD_TRANSITIVE""#).unwrap(),
            Level::BackwardTransitive
        );
        assert_eq!("FULL_TRANSITIVE".parse(), Ok(Level::FullTransitive));
        assert_eq!(Level::default(), Level::Backward);
    }

    #[test]
    fn unknown_level_names_are_refused() {
        for bad in ["backward", "Backward", "", "BACKWARDS", " FULL", "TRANSITIVE"] {
            let err = bad.parse::<Level>().unwrap_err();
            assert_eq!(err, UnknownLevel(bad.to_owned()));
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(serde_json::from_str::<Level>(r#""backward""#).is_err());
    }

    /// Random Avro types: primitives, logical types, arrays, maps, nullable unions and records
    /// (named `R` for now; `number_records` makes the names unique).
    fn avro_type() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!("null")),
            Just(json!("boolean")),
            Just(json!("int")),
            Just(json!("long")),
            Just(json!("float")),
            Just(json!("double")),
            Just(json!("bytes")),
            Just(json!("string")),
            Just(json!({"type": "int", "logicalType": "date"})),
            Just(json!({"type": "long", "logicalType": "timestamp-micros"})),
            Just(json!({"type": "string", "logicalType": "uuid"})),
            Just(json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2})),
            Just(json!({"type": "enum", "name": "R", "symbols": ["A", "B"]})),
            Just(json!({"type": "fixed", "name": "R", "size": 4})),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|t| json!({"type": "array", "items": t})),
                inner.clone().prop_map(|t| json!({"type": "map", "values": t})),
                inner.clone().prop_map(|t| if t == json!("null") || t.is_array() {
                    t
                } else {
                    json!(["null", t])
                }),
                prop::collection::vec(inner, 1..4).prop_map(|types| {
                    let fields: Vec<Value> = types
                        .into_iter()
                        .enumerate()
                        .map(|(i, t)| json!({"name": format!("f{i}"), "type": t}))
                        .collect();
                    json!({"type": "record", "name": "R", "fields": fields})
                }),
            ]
        })
    }

    /// Gives every named type a unique name, in document order.
    fn number_records(value: &mut Value, next: &mut usize) {
        match value {
            Value::Object(object) => {
                let named = ["record", "enum", "fixed"]
                    .iter()
                    .any(|kind| object.get("type") == Some(&json!(kind)));
                if named {
                    object.insert("name".into(), json!(format!("T{next}")));
                    *next += 1;
                }
                for child in object.values_mut() {
                    number_records(child, next);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| number_records(item, next)),
            _ => {}
        }
    }

    /// A top-level record with one field `a` of the given type.
    fn top(ty: &Value, extra: Option<Value>) -> Schema {
        let mut fields = vec![json!({"name": "a", "type": ty})];
        fields.extend(extra);
        let mut schema = json!({"type": "record", "name": "Top", "namespace": "ferry.prop", "fields": fields});
        number_records(&mut schema, &mut 0);
        Schema::parse(&schema).unwrap_or_else(|e| panic!("generated schema does not parse: {e}\n{schema}"))
    }

    proptest! {
        #[test]
        fn every_schema_reads_itself(ty in avro_type()) {
            let schema = top(&ty, None);
            prop_assert_eq!(can_read(&schema, &schema), Ok(()));
            for level in LEVELS {
                prop_assert!(check(level, &schema, &[(1, &schema), (2, &schema)]).is_empty());
            }
        }

        #[test]
        fn adding_a_defaulted_field_is_fully_compatible(ty in avro_type()) {
            let old = top(&ty, None);
            let new = top(&ty, Some(json!({"name": "added", "type": "long", "default": 0})));
            prop_assert!(check(Level::FullTransitive, &new, &[(1, &old)]).is_empty());
        }

        #[test]
        fn making_a_field_nullable_is_backward_but_not_forward(ty in avro_type()) {
            prop_assume!(ty != json!("null") && !ty.is_array());
            let old = top(&ty, None);
            let new = top(&json!(["null", ty]), None);
            prop_assert!(check(Level::Backward, &new, &[(1, &old)]).is_empty());
            prop_assert!(!check(Level::Forward, &new, &[(1, &old)]).is_empty());
        }
    }
}
