//! PostgreSQL capture against the real server: validation and the catalog.

use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_capture::filter::TableFilter;
use ferry_capture::postgres::catalog::table_meta;
use ferry_capture::postgres::validate::{validate, Problem};
use ferry_core::meta::{DataType, TableId};
use ferry_tests::{connect_pg, unique, wait_for, PgDatabase};

#[tokio::test]
async fn a_ready_database_passes() {
    let db = PgDatabase::create();
    db.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text);
         CREATE TABLE log (line text); ALTER TABLE log REPLICA IDENTITY FULL;
         CREATE SCHEMA inventory; CREATE TABLE inventory.items (sku text PRIMARY KEY);",
    )
    .await;
    let client = db.client().await;
    let filter = TableFilter::parse("").unwrap();
    let (tables, problems) = validate(&client, &filter, &unique("slot")).await.unwrap();
    assert_eq!(problems, vec![]);
    assert_eq!(
        tables,
        vec![
            TableId::new("inventory", "items"),
            TableId::new("public", "log"),
            TableId::new("public", "orders")
        ]
    );
    let filter = TableFilter::parse("inventory.*").unwrap();
    let (tables, _) = validate(&client, &filter, &unique("slot")).await.unwrap();
    assert_eq!(tables, vec![TableId::new("inventory", "items")]);
}

#[tokio::test]
async fn every_problem_is_reported_at_once() {
    let db = PgDatabase::create();
    let role = unique("norepl");
    db.execute(&format!(
        "CREATE TABLE keyless (a int);
         CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING;
         CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
    ))
    .await;
    let client = connect_pg(&db.url_as(&role)).await;
    let filter = TableFilter::parse("public.*,public.ordres").unwrap();
    let (_, problems) = validate(&client, &filter, &unique("slot")).await.unwrap();
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        problems.contains(&Problem::NoReplicationPrivilege { role: role.clone() }),
        "{lines:#?}"
    );
    assert!(problems.contains(&Problem::UnknownTable {
        pattern: "public.ordres".into()
    }));
    assert!(problems.contains(&Problem::NoIdentity {
        table: TableId::new("public", "keyless"),
        identity: 'd'
    }));
    assert!(problems.contains(&Problem::NoIdentity {
        table: TableId::new("public", "nothing"),
        identity: 'n'
    }));
    assert_eq!(problems.len(), 4, "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains('\n')));
    assert!(lines
        .iter()
        .any(|l| l.contains("ALTER TABLE \"public\".\"keyless\" REPLICA IDENTITY FULL")));
    assert!(lines
        .iter()
        .any(|l| l.contains(&format!("ALTER ROLE {role} REPLICATION"))));
    db.execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}")).await;
}

#[tokio::test]
async fn a_slot_in_use_names_the_process() {
    let db = PgDatabase::create();
    db.execute("CREATE TABLE t (id int PRIMARY KEY)").await;
    let slot = unique("busy");
    let other = unique("wrong_plugin");
    db.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput');
         SELECT pg_create_logical_replication_slot('{other}', 'test_decoding');"
    ))
    .await;
    let mut holder = Command::new("pg_recvlogical")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            &db.name,
            "--slot",
            &slot,
            "--start",
            "-f",
            "/dev/null",
        ])
        .args(["-o", "proto_version=1", "-o", "publication_names=none"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pg_recvlogical");
    let client = db.client().await;
    let pid: i32 = wait_for("pg_recvlogical to hold the slot", Duration::from_secs(30), || async {
        client
            .query_one(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<i32>>(0))
    })
    .await;
    let filter = TableFilter::parse("").unwrap();
    let (_, problems) = validate(&client, &filter, &slot).await.unwrap();
    assert_eq!(
        problems,
        vec![Problem::SlotInUse {
            slot: slot.clone(),
            pid
        }]
    );
    assert!(problems[0].to_string().contains(&pid.to_string()));
    let (_, problems) = validate(&client, &filter, &other).await.unwrap();
    assert!(
        matches!(&problems[..], [Problem::SlotMismatch { what: "plugin", .. }]),
        "{problems:?}"
    );
    let _ = holder.kill();
    let _ = holder.wait();
}

#[tokio::test]
async fn the_catalog_gives_columns_types_and_key() {
    let db = PgDatabase::create();
    db.execute(
        r#"CREATE TABLE "Order Items" (
             "line no" int NOT NULL,
             order_id bigint NOT NULL,
             price numeric(10,2) DEFAULT 0,
             note varchar(20),
             at timestamptz NOT NULL DEFAULT now(),
             tags text[],
             PRIMARY KEY (order_id, "line no"));
           ALTER TABLE "Order Items" DROP COLUMN note;
           ALTER TABLE "Order Items" ADD COLUMN note2 text;"#,
    )
    .await;
    let client = db.client().await;
    let meta = table_meta(&client, &TableId::new("public", "Order Items"))
        .await
        .unwrap();
    let names: Vec<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["line no", "order_id", "price", "at", "tags", "note2"]);
    let key: Vec<&str> = meta.key_columns().map(|c| c.name.as_str()).collect();
    assert_eq!(key, ["order_id", "line no"], "key in primary-key order");
    let price = meta.column("price").unwrap();
    assert_eq!(
        price.data_type,
        DataType::Decimal {
            precision: 10,
            scale: 2,
            special: true
        }
    );
    assert_eq!(price.source_type, "numeric(10,2)");
    assert_eq!(price.default.as_deref(), Some("0"));
    assert!(price.nullable);
    let at = meta.column("at").unwrap();
    assert_eq!((at.data_type, at.nullable), (DataType::TimestampTz, false));
    assert_eq!(at.default.as_deref(), Some("now()"));
    assert_eq!(meta.column("tags").unwrap().source_type, "text[]");
    let keyless = {
        db.execute("CREATE TABLE plain (a int)").await;
        table_meta(&client, &TableId::new("public", "plain")).await.unwrap()
    };
    assert!(keyless.key.is_empty());
}
