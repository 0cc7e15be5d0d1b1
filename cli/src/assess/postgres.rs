//! The facts `ferry assess` gathers from a PostgreSQL source.

use ferry_capture::filter::TableFilter;
use ferry_capture::postgres::{catalog, validate};
use ferry_core::config::SecretUrl;
use ferry_core::meta::TableId;
use ferry_core::pg::{pg_message, quoted};

use super::{foreign_keys, large_columns, TableFacts};

use super::Facts;

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
        "its value is not carried by apply: ferry migrate into PostgreSQL sets it at the end if a serial or identity column owns it; otherwise set it on the target at cutover (SELECT setval(...))",
    ),
    (
        "SELECT 'index ' || schemaname || '.' || indexname || ' on ' || tablename FROM pg_indexes i
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conname = i.indexname AND k.contype = 'p')",
        "secondary index not created by apply: ferry migrate into PostgreSQL creates it after the load; otherwise create it on the target (after the load is faster)",
    ),
];

pub async fn facts(
    config: &ferry_core::pg::PgConfig,
    url: &SecretUrl,
    filter: &TableFilter,
    publication: &str,
) -> Result<Facts, String> {
    let client = ferry_core::pg::connect(config, url).await.map_err(|e| e.to_string())?;
    let (tables, problems) = validate::validate(&client, filter, "ferry", publication)
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
    let excess_privileges = excess_privileges(&client, &tables).await.map_err(|e| pg_message(&e))?;
    Ok(Facts {
        engine: "PostgreSQL",
        problems,
        metas,
        tables: facts,
        not_migrated,
        excess_privileges,
    })
}

/// What the role may do beyond what capture needs (REPLICATION, SELECT on
/// its tables, and owning them only to create the publication).
async fn excess_privileges(
    client: &tokio_postgres::Client,
    tables: &[TableId],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let role = client
        .query_one(
            "SELECT current_user::text, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let name: String = role.get(0);
    if role.get::<_, bool>(1) {
        return Ok(vec![format!(
            "role {name} is a superuser: capture needs only REPLICATION, SELECT on its tables and a publication; \
             use a role with just those (README, Least privilege)"
        )]);
    }
    let mut excess: Vec<String> = [(2, "CREATEROLE"), (3, "CREATEDB"), (4, "BYPASSRLS")]
        .into_iter()
        .filter(|(i, _)| role.get::<_, bool>(*i))
        .map(|(_, what)| format!("role {name} has {what}, which capture does not need: ALTER ROLE {name} NO{what}"))
        .collect();
    let mut writable = Vec::new();
    for table in tables {
        let row = client
            .query_one(
                "SELECT has_table_privilege($1::text::regclass, 'INSERT, UPDATE, DELETE, TRUNCATE')",
                &[&quoted(table)],
            )
            .await?;
        if row.get::<_, bool>(0) {
            writable.push(quoted(table));
        }
    }
    if !writable.is_empty() {
        excess.push(format!(
            "role {name} may write to {}, which capture only reads: revoke INSERT, UPDATE, DELETE and TRUNCATE \
             (a role that owns a table may always write it: have the owner create the publication, and capture with --publication)",
            writable.join(", ")
        ));
    }
    Ok(excess)
}
