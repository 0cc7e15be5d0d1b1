//! A MariaDB database of the development stack for one test, and ways to look
//! into it.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::{unique, wait_for};

/// The development server, as root (no password on loopback).
pub const SERVER: &str = "mysql://root@127.0.0.1:3306";

/// A database made for one test (dropped by nobody: names are unique).
#[derive(Debug)]
pub struct MariaDatabase {
    pub name: String,
}

impl MariaDatabase {
    pub async fn create() -> MariaDatabase {
        let name = unique("ferry_test");
        let mut conn = connect(SERVER).await;
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .expect("create database");
        conn.disconnect().await.ok();
        MariaDatabase { name }
    }

    /// `mysql://root@127.0.0.1:3306/<name>`.
    pub fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    /// A connection as root, with this database as the default.
    pub async fn conn(&self) -> mysql_async::Conn {
        connect(&self.url()).await
    }

    /// Runs `sql` (several statements allowed) and panics on error.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.conn().await;
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.disconnect().await.ok();
    }
}

/// A connection to `url`, waiting up to 30 s for the server (it may be restarting).
pub async fn connect(url: &str) -> mysql_async::Conn {
    let opts = mysql_async::Opts::from_url(url).expect("a MySQL URL");
    wait_for(&format!("MariaDB at {url}"), Duration::from_secs(30), || {
        let opts = opts.clone();
        async move { mysql_async::Conn::new(opts).await.ok() }
    })
    .await
}

/// Every row of `table` (in the connection's database), each as its values'
/// SQL literals joined by `,`, sorted.
pub async fn table_rows(conn: &mut mysql_async::Conn, table: &str) -> Result<Vec<String>, mysql_async::Error> {
    let rows: Vec<mysql_async::Row> = conn.query(format!("SELECT * FROM {table}")).await?;
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|row| {
            row.unwrap()
                .iter()
                .map(|v| v.as_sql(true))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    out.sort();
    Ok(out)
}

/// A replica id no other test uses (ids are per server, tests share one).
pub fn server_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = (std::process::id() % 100_000) * 1_000 + 1_000;
    base + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Arguments of `ferry-capture-mysql` for the tables of `db` under `prefix`
/// as replica `server_id`, then `extra`.
pub fn capture_args(db: &MariaDatabase, prefix: &str, server_id: u32, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--source",
        SERVER,
        "--server-id",
        &server_id.to_string(),
        "--prefix",
        prefix,
        "--tables",
        &format!("{}.*", db.name),
        "--brokers",
        &crate::brokers(),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// `ferry-capture-mysql` of the database `db` under `prefix` as replica
/// `server_id`, then `extra`.
pub fn start_capture(db: &MariaDatabase, prefix: &str, server_id: u32, extra: &[&str]) -> crate::Running {
    let args = capture_args(db, prefix, server_id, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::Running::start("ferry-capture-mysql", &args)
}

/// Waits until the capture under `prefix` has stored a position (its
/// snapshot is open, so what the test writes next is streamed).
pub async fn wait_position(prefix: &str) -> ferry_core::position::SourcePosition {
    let offsets = ferry_capture::offsets::Offsets::open(
        &ferry_core::kafka::KafkaSettings::new(crate::brokers()),
        "_ferry_offsets",
    )
    .await
    .expect("offsets topic");
    wait_for(
        "the capture's position to be stored",
        Duration::from_secs(60),
        || async {
            offsets
                .load::<ferry_core::position::SourcePosition>(prefix)
                .await
                .ok()
                .flatten()
        },
    )
    .await
}

/// The rows `sql` returns, each as its columns' text (`∅` for NULL) joined by
/// `|`, sorted: comparable with [`crate::pg_text_rows`]. An error is `None`
/// (the table may not exist yet).
pub async fn text_rows(conn: &mut mysql_async::Conn, sql: &str) -> Option<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.ok()?;
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|row| {
            row.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => crate::NULL_CELL.to_owned(),
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => other.as_sql(true),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    Some(out)
}
