//! Names on the wire: Kafka topics and Avro identifiers.
//!
//! Source tables may be called anything (`"Order Items"`, `prix_€`, `select`),
//! but Kafka topics allow only `[a-zA-Z0-9._-]` and Avro names only
//! `[A-Za-z_][A-Za-z0-9_]*`. Both are sanitised the way Debezium does it: every
//! character outside the set becomes `_`, so the same table always gets the same
//! name. The original column name travels in the schema (`ferry.column`), which is
//! what targets use; the sanitised name only has to be valid and unique, and
//! [`unique_avro_names`] makes it unique within one record.
//!
//! Topics cannot be made unique that way: a topic's name is what consumers
//! subscribe to, so a suffix would change with the order tables were found in.
//! Two tables whose topics would be one (`"a b"` and `a_b`, or schema `s.a`
//! table `b` and schema `s` table `a.b`) would mix their events in one topic
//! under two schemas, so [`table_topics`] refuses them, naming both, before a
//! capture starts, and a capture's publisher refuses a table added later whose
//! topic another table already has.

use crate::meta::TableId;

/// Kafka's longest legal topic name.
const MAX_TOPIC_LEN: usize = 249;

/// Replaces what Avro does not allow in a name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn avro_name(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// A dotted Avro namespace made of sanitised parts.
pub fn avro_namespace<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    parts.into_iter().map(avro_name).collect::<Vec<_>>().join(".")
}

/// Sanitised names for a record's fields, unique within the record: a name that
/// collides with an earlier one (`"a b"` and `"a_b"`) gets `_2`, `_3`, ... in
/// source order, so the result is the same every time for the same columns.
pub fn unique_avro_names<'a>(raw: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in raw {
        let base = avro_name(name);
        let mut candidate = base.clone();
        let mut n = 2;
        while out.contains(&candidate) {
            candidate = format!("{base}_{n}");
            n += 1;
        }
        out.push(candidate);
    }
    out
}

/// Replaces what Kafka does not allow in a topic name.
pub fn topic_part(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The topic of a table's change events: `<prefix>.<schema>.<table>`.
pub fn table_topic(prefix: &str, table: &TableId) -> Result<String, NameError> {
    let topic = format!(
        "{}.{}.{}",
        topic_part(prefix),
        topic_part(&table.schema),
        topic_part(&table.table)
    );
    check_topic(topic)
}

/// The topic of each of `tables`, in order; two tables that would share one
/// are an error naming both (see the module's documentation).
pub fn table_topics<'a>(prefix: &str, tables: impl IntoIterator<Item = &'a TableId>) -> Result<Vec<String>, NameError> {
    let mut seen: std::collections::HashMap<String, &TableId> = std::collections::HashMap::new();
    let mut topics = Vec::new();
    for table in tables {
        let topic = table_topic(prefix, table)?;
        match seen.get(&topic) {
            Some(first) if *first != table => return Err(NameError::collision(topic, first, table)),
            _ => {
                seen.insert(topic.clone(), table);
            }
        }
        topics.push(topic);
    }
    Ok(topics)
}

/// A topic named after the prefix: `<prefix>.<suffix>` (`transaction`, `schema-changes`).
pub fn prefix_topic(prefix: &str, suffix: &str) -> Result<String, NameError> {
    check_topic(format!("{}.{suffix}", topic_part(prefix)))
}

/// `s` with every regular-expression metacharacter escaped, to match itself.
pub fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| ("\\^$.|?*+()[]{}".contains(c).then_some('\\')).into_iter().chain([c]))
        .collect()
}

/// FNV-1a of `bytes`: stable across processes and versions, for ids that
/// must come out the same wherever they are computed.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn check_topic(topic: String) -> Result<String, NameError> {
    if topic.len() > MAX_TOPIC_LEN {
        return Err(NameError::TopicTooLong { topic });
    }
    Ok(topic)
}

/// A name that cannot be made legal by replacing characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("topic name {topic:?} is longer than Kafka's 249 characters; choose a shorter --prefix")]
    TopicTooLong { topic: String },
    #[error(
        "tables {first} and {second} would share topic {topic:?} (characters Kafka does not allow in a topic \
         become _); rename one of them or leave one out with --tables"
    )]
    TopicCollision {
        topic: String,
        /// Both tables as `"schema"."table"`, quoted so that any name prints on one line.
        first: String,
        second: String,
    },
}

impl NameError {
    /// `first` and `second` both map to `topic`.
    pub fn collision(topic: String, first: &TableId, second: &TableId) -> NameError {
        let shown = |t: &TableId| format!("{:?}.{:?}", t.schema, t.table);
        NameError::TopicCollision {
            topic,
            first: shown(first),
            second: shown(second),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avro_names_are_valid_and_deterministic() {
        assert_eq!(avro_name("orders"), "orders");
        assert_eq!(avro_name("Order Items"), "Order_Items");
        assert_eq!(avro_name("prix_€"), "prix__");
        assert_eq!(avro_name("2fa"), "_2fa");
        assert_eq!(avro_name(""), "_");
        assert_eq!(avro_name("名前"), "__");
        assert_eq!(avro_name("a-b.c"), "a_b_c");
        assert_eq!(avro_namespace(["my-app", "public", "t"]), "my_app.public.t");
    }

    #[test]
    fn colliding_field_names_get_suffixes_in_order() {
        assert_eq!(
            unique_avro_names(["a b", "a_b", "a-b", "a_b_2", "c"]),
            vec!["a_b", "a_b_2", "a_b_3", "a_b_2_2", "c"]
        );
    }

    #[test]
    fn topics_keep_dots_and_dashes() {
        let t = TableId::new("inventory", "Order Items");
        assert_eq!(table_topic("shop-1", &t).unwrap(), "shop-1.inventory.Order_Items");
        assert_eq!(prefix_topic("shop", "transaction").unwrap(), "shop.transaction");
        let long = TableId::new("s", "x".repeat(300));
        assert!(matches!(table_topic("p", &long), Err(NameError::TopicTooLong { .. })));
    }

    #[test]
    fn tables_sharing_a_topic_are_refused_naming_both() {
        let distinct = [
            TableId::new("s", "a b"),
            TableId::new("s", "a-b"),
            TableId::new("s", "a b"),
        ];
        assert_eq!(table_topics("p", &distinct).unwrap(), ["p.s.a_b", "p.s.a-b", "p.s.a_b"]);
        let clash = [
            TableId::new("s", "a b"),
            TableId::new("s", "x"),
            TableId::new("s", "a\"b"),
        ];
        let err = table_topics("p", &clash).unwrap_err().to_string();
        assert_eq!(
            err,
            "tables \"s\".\"a b\" and \"s\".\"a\\\"b\" would share topic \"p.s.a_b\" (characters Kafka does not \
             allow in a topic become _); rename one of them or leave one out with --tables"
        );
        let dotted = [TableId::new("s.a", "b"), TableId::new("s", "a.b")];
        assert!(matches!(
            table_topics("p", &dotted),
            Err(NameError::TopicCollision { .. })
        ));
    }
}
