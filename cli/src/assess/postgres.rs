//! The facts `ferry assess` gathers from a PostgreSQL source.

use ferry_capture::filter::TableFilter;
use ferry_capture::postgres::{catalog, validate};
use ferry_core::config::SecretUrl;
use ferry_core::meta::TableMeta;
use ferry_core::pg::{pg_message, quoted};

use super::{foreign_keys, large_columns, TableFacts};

/// What a source engine's assessment is made of: the engine, the capture's
/// problems, the tables' metadata and facts, and what is not carried over.
pub type Facts = (&'static str, Vec<String>, Vec<TableMeta>, Vec<TableFacts>, Vec<String>);

/// Objects of user schemas, with what Ferry leaves to the operator.
const NOT_CARRIED: [(&str, &str); 6] = [
    (
        "SELECT 'view ' || schemaname || '.' || viewname FROM pg_views
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
        "not copied: create it on the target",
    ),
    (
        "SELECT 'materialized view ' || schemaname || '.' || matviewname FROM pg_matviews",
        "not copied: create and refresh it on the target",
    ),
    (
        "SELECT CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END || n.nspname || '.' || p.proname
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
        "not copied: create it on the target",
    ),
    (
        "SELECT 'trigger ' || t.tgname || ' on ' || n.nspname || '.' || c.relname
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
        "not copied (and it must not fire twice on replicated rows): create it on the target at cutover",
    ),
    (
        "SELECT 'sequence ' || schemaname || '.' || sequencename FROM pg_sequences",
        "its value is not carried: set it on the target at cutover (SELECT setval(...))",
    ),
    (
        "SELECT 'index ' || schemaname || '.' || indexname || ' on ' || tablename FROM pg_indexes i
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conname = i.indexname AND k.contype = 'p')",
        "secondary index not created by apply: create it on the target (after the load is faster)",
    ),
];

pub async fn facts(config: &tokio_postgres::Config, url: &SecretUrl, filter: &TableFilter) -> Result<Facts, String> {
    let client = ferry_core::pg::connect(config, url).await.map_err(|e| e.to_string())?;
    let (tables, problems) = validate::validate(&client, filter, "ferry")
        .await
        .map_err(|e| pg_message(&e))?;
    let problems = problems.iter().map(ToString::to_string).collect();
    let mut metas = Vec::new();
    let mut facts = Vec::new();
    for id in tables.iter().filter(|t| !t.table.starts_with("_ferry_")) {
        let meta = catalog::table_meta(&client, id)
            .await
            .map_err(|e| format!("table {id}: {e}"))?;
        let row = client
            .query_one(
                "SELECT greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid)
                 FROM pg_class c WHERE c.oid = $1::text::regclass",
                &[&quoted(id)],
            )
            .await
            .map_err(|e| pg_message(&e))?;
        facts.push(TableFacts {
            table: id.to_string(),
            rows_estimate: row.get::<_, i64>(0).max(0) as u64,
            bytes: row.get::<_, i64>(1).max(0) as u64,
            primary_key: !meta.key.is_empty(),
            large_columns: large_columns(&meta),
        });
        metas.push(meta);
    }
    let mut not_migrated = Vec::new();
    for (sql, what) in NOT_CARRIED {
        for row in client.query(sql, &[]).await.map_err(|e| pg_message(&e))? {
            not_migrated.push(format!("{}: {what}", row.get::<_, String>(0)));
        }
    }
    let fks: i64 = client
        .query_one("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", &[])
        .await
        .map_err(|e| pg_message(&e))?
        .get(0);
    if fks > 0 {
        not_migrated.push(foreign_keys(fks));
    }
    Ok(("PostgreSQL", problems, metas, facts, not_migrated))
}
