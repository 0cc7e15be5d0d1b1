//! The facts `ferry assess` gathers from a MySQL or MariaDB source: the
//! tables of its URL's database.

use ferry_capture::filter::TableFilter;
use ferry_capture::mysql::validate;
use ferry_core::config::SecretUrl;
use mysql_async::prelude::Queryable;

use super::{foreign_keys, large_columns, Facts, TableFacts};

/// A replica id no real replica uses, for the validation's uniqueness check.
const ASSESS_SERVER_ID: u32 = 4_294_000_001;

/// Objects of the database, with what Ferry leaves to the operator.
const NOT_CARRIED: [(&str, &str); 5] = [
    (
        "SELECT CONCAT('view ', TABLE_NAME) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?",
        "not copied: create it on the target",
    ),
    (
        "SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?",
        "not copied: create it on the target",
    ),
    (
        "SELECT CONCAT('trigger ', TRIGGER_NAME, ' on ', EVENT_OBJECT_TABLE) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
        "not copied (and it must not fire twice on replicated rows): create it on the target at cutover",
    ),
    (
        "SELECT CONCAT('event ', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?",
        "not copied: create it on the target",
    ),
    (
        "SELECT DISTINCT CONCAT('index ', INDEX_NAME, ' on ', TABLE_NAME) FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = ? AND INDEX_NAME <> 'PRIMARY'",
        "secondary index not created by apply: ferry migrate into MySQL/MariaDB creates it after the load; otherwise create it on the target (after the load is faster)",
    ),
];

pub async fn facts(
    opts: &ferry_core::mysql::MysqlConfig,
    url: &SecretUrl,
    database: &str,
    filter: &TableFilter,
) -> Result<Facts, String> {
    let mut conn = ferry_core::mysql::connect(opts, url).await.map_err(|e| e.to_string())?;
    let mariadb = ferry_core::mysql::is_mariadb(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    // The URL's database: its tables, as the filter further narrows them.
    let scoped = |t: &ferry_core::meta::TableId| t.schema == database;
    let (metas, problems) = validate::validate(&mut conn, filter, ASSESS_SERVER_ID, mariadb)
        .await
        .map_err(|e| e.to_string())?;
    let metas: Vec<_> = metas.into_iter().filter(|m| scoped(&m.id)).collect();
    let problems = problems.iter().map(ToString::to_string).collect();
    let mut facts = Vec::new();
    for meta in &metas {
        let row: Option<(Option<u64>, Option<u64>, Option<u64>)> = conn
            .exec_first(
                "SELECT TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&meta.id.schema, &meta.id.table),
            )
            .await
            .map_err(|e| e.to_string())?;
        let (rows, data, index) = row.unwrap_or_default();
        facts.push(TableFacts {
            table: meta.id.to_string(),
            rows_estimate: rows.unwrap_or_default(),
            bytes: data.unwrap_or_default() + index.unwrap_or_default(),
            primary_key: !meta.key.is_empty(),
            large_columns: large_columns(meta),
        });
    }
    let mut not_migrated = Vec::new();
    for (sql, what) in NOT_CARRIED {
        let names: Vec<String> = conn.exec(sql, (database,)).await.map_err(|e| e.to_string())?;
        not_migrated.extend(names.into_iter().map(|n| format!("{n}: {what}")));
    }
    let counters: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND AUTO_INCREMENT IS NOT NULL",
            (database,),
        )
        .await
        .map_err(|e| e.to_string())?;
    not_migrated.extend(
        counters
            .into_iter()
            .map(|t| format!("AUTO_INCREMENT counter of {t}: not carried by apply: ferry migrate into MySQL/MariaDB sets it at the end; otherwise set it on the target at cutover")),
    );
    let fks: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ?",
            (database,),
        )
        .await
        .map_err(|e| e.to_string())?;
    if let Some(n) = fks.filter(|n| *n > 0) {
        not_migrated.push(foreign_keys(n));
    }
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.map_err(|e| e.to_string())?;
    Ok(Facts {
        engine: if mariadb { "MariaDB" } else { "MySQL" },
        problems,
        metas,
        tables: facts,
        not_migrated,
        excess_privileges: excess_privileges(&grants, database),
    })
}

/// Privileges capture does not need: it needs REPLICATION SLAVE, BINLOG
/// MONITOR (MySQL: REPLICATION CLIENT) and SELECT. Global grants and grants
/// on `database` count; one line per grant that has more.
fn excess_privileges(grants: &[String], database: &str) -> Vec<String> {
    const NEEDED: [&str; 5] = [
        "USAGE",
        "SELECT",
        "REPLICATION SLAVE",
        "BINLOG MONITOR",
        "REPLICATION CLIENT",
    ];
    let scopes = ["*.*".to_owned(), format!("`{database}`.*")];
    grants
        .iter()
        .filter_map(|grant| {
            let (privileges, rest) = grant.strip_prefix("GRANT ")?.split_once(" ON ")?;
            let (scope, _) = rest.split_once(" TO ")?;
            if !scopes.iter().any(|s| s == scope) {
                return None;
            }
            let mut extra: Vec<&str> = privileges
                .split(", ")
                .filter(|p| !NEEDED.contains(p))
                .collect();
            if rest.contains(" WITH GRANT OPTION") {
                extra.push("GRANT OPTION");
            }
            (!extra.is_empty()).then(|| {
                format!(
                    "{} on {scope}, which capture does not need (it needs REPLICATION SLAVE, BINLOG MONITOR and SELECT): \
                     REVOKE {} ON {scope} FROM the user",
                    extra.join(", "),
                    extra.join(", ")
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::excess_privileges;

    #[test]
    fn grants_beyond_capture_s_are_excess() {
        let grants = [
            "GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `ferry`@`%`".to_owned(),
            "GRANT INSERT, DELETE ON `shop`.* TO `ferry`@`%`".to_owned(),
            "GRANT ALL PRIVILEGES ON `other`.* TO `ferry`@`%`".to_owned(),
        ];
        let excess = excess_privileges(&grants, "shop");
        assert_eq!(excess.len(), 1, "{excess:?}");
        assert!(excess[0].starts_with("INSERT, DELETE on `shop`.*"), "{excess:?}");
        let root = ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION".to_owned()];
        let excess = excess_privileges(&root, "shop");
        assert!(
            excess[0].starts_with("ALL PRIVILEGES, GRANT OPTION on *.*"),
            "{excess:?}"
        );
        let least = ["GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `ferry`@`%`".to_owned()];
        assert!(excess_privileges(&least, "shop").is_empty());
    }
}
