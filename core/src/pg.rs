//! What every PostgreSQL end of Ferry (capture's source, apply's target) does
//! the same way: connect from a URL, and say what the server said.

use std::str::FromStr;

use tokio_postgres::Client;

use crate::config::SecretUrl;
use crate::meta::TableId;

/// The server's own message (tokio-postgres prints only "db error"), with
/// SQLSTATE and detail when there is one.
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                m.push_str(&format!(": {detail}"));
            }
            m
        }
        None => e.to_string(),
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{flag} {url} is not a PostgreSQL URL: {reason}")]
    BadUrl {
        flag: &'static str,
        url: String,
        reason: String,
    },
    #[error("cannot connect to PostgreSQL at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The URL given as `flag`, parsed.
pub fn config(url: &SecretUrl, flag: &'static str) -> Result<tokio_postgres::Config, ConnectError> {
    tokio_postgres::Config::from_str(url.expose().as_str()).map_err(|e| ConnectError::BadUrl {
        flag,
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// A query connection made with `config`, driven on its own task.
pub async fn connect(config: &tokio_postgres::Config, url: &SecretUrl) -> Result<Client, ConnectError> {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| ConnectError::Unreachable {
            url: url.to_string(),
            reason: e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// A table's qualified name quoted for SQL: `"schema"."table"`.
pub fn quoted(table: &TableId) -> String {
    format!("{}.{}", quote_ident(&table.schema), quote_ident(&table.table))
}

/// An identifier quoted for SQL: `"a""b"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
