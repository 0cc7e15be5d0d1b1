//! Which tables a capture includes: `--tables 'public.orders,inventory.*'`.
//!
//! Each pattern is `schema.table`, where `*` matches any run of characters in
//! either part. An empty list includes every table. A pattern without `*` that
//! matches no table is an error at start (the operator misspelt it), reported
//! by the source's validation.

use ferry_core::meta::TableId;

/// A list of `schema.table` patterns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableFilter {
    patterns: Vec<(String, String)>,
}

/// A pattern that is not `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table pattern {0:?} is not schema.table (e.g. public.orders or inventory.*)")]
pub struct BadPattern(pub String);

impl TableFilter {
    /// Parses a comma-separated list; blanks are ignored.
    pub fn parse(list: &str) -> Result<Self, BadPattern> {
        let patterns = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('.') {
                Some((s, t)) if !s.is_empty() && !t.is_empty() => Ok((s.to_owned(), t.to_owned())),
                _ => Err(BadPattern(p.to_owned())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    pub fn includes(&self, table: &TableId) -> bool {
        self.patterns.is_empty()
            || self
                .patterns
                .iter()
                .any(|(s, t)| glob(s, &table.schema) && glob(t, &table.table))
    }

    /// The `(schema, table)` patterns; empty when every table is included.
    pub fn patterns(&self) -> &[(String, String)] {
        &self.patterns
    }

    /// Whether some table of `schema` could be included.
    pub fn includes_schema(&self, schema: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|(s, _)| glob(s, schema))
    }

    /// Patterns without a wildcard that match none of `tables`: misspelt names.
    pub fn unmatched(&self, tables: &[TableId]) -> Vec<String> {
        self.patterns
            .iter()
            .filter(|(s, t)| !s.contains('*') && !t.contains('*'))
            .filter(|(s, t)| !tables.iter().any(|id| glob(s, &id.schema) && glob(t, &id.table)))
            .map(|(s, t)| format!("{s}.{t}"))
            .collect()
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str, t: &str) -> TableId {
        TableId::new(s, t)
    }

    #[test]
    fn patterns_match_schema_and_table() {
        let f = TableFilter::parse("public.orders, inventory.*,a*.x*y").unwrap();
        assert!(f.includes(&id("public", "orders")));
        assert!(!f.includes(&id("public", "orders2")));
        assert!(f.includes(&id("inventory", "anything")));
        assert!(f.includes(&id("abc", "xy")));
        assert!(f.includes(&id("a", "x_long_y")));
        assert!(!f.includes(&id("a", "xyz")));
        assert!(TableFilter::parse("").unwrap().includes(&id("any", "thing")));
        assert!(f.includes_schema("inventory") && f.includes_schema("abc") && !f.includes_schema("shop"));
        assert!(TableFilter::parse("orders").is_err());
        assert!(TableFilter::parse("public.").is_err());
    }

    #[test]
    fn misspelt_names_are_found() {
        let f = TableFilter::parse("public.orders,public.ordres,inventory.*").unwrap();
        assert_eq!(f.unmatched(&[id("public", "orders")]), vec!["public.ordres"]);
    }

    #[test]
    fn glob_edges() {
        assert!(glob("*", ""));
        assert!(glob("a*a", "aa"));
        assert!(!glob("a*a", "a"));
        assert!(glob("*b*", "abc"));
        assert!(!glob("abc", "ab"));
    }
}
