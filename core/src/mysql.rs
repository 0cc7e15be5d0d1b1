//! What every MySQL/MariaDB end of Ferry (capture's source, apply's target)
//! does the same way: connect from a URL with the session Ferry relies on,
//! quote names, and say what the server said.
//!
//! Every session runs in UTC (`time_zone = '+00:00'`), so `TIMESTAMP` values
//! read and written as text are instants whatever the server's zone, and in
//! utf8mb4, so every character of every text column survives.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use crate::config::SecretUrl;
use crate::meta::TableId;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{flag} {url} is not a MySQL URL: {reason}")]
    BadUrl {
        flag: &'static str,
        url: String,
        reason: String,
    },
    #[error("cannot connect to MySQL/MariaDB at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("MySQL/MariaDB at {url} refused the login: {reason}")]
    Refused { url: String, reason: String },
}

impl ConnectError {
    /// Whether trying again later may succeed (the server is down or restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

/// The URL given as `flag`, parsed, with Ferry's session settings.
pub fn opts(url: &SecretUrl, flag: &'static str) -> Result<Opts, ConnectError> {
    let opts = Opts::from_url(url.expose().as_str()).map_err(|e| ConnectError::BadUrl {
        flag,
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    Ok(OptsBuilder::from_opts(opts)
        .init(vec!["SET time_zone = '+00:00', NAMES utf8mb4"])
        .into())
}

/// A connection made with `opts`.
pub async fn connect(opts: &Opts, url: &SecretUrl) -> Result<Conn, ConnectError> {
    Conn::new(opts.clone()).await.map_err(|e| match &e {
        mysql_async::Error::Server(s) => ConnectError::Refused {
            url: url.to_string(),
            reason: format!("{} (error {})", s.message, s.code),
        },
        _ => ConnectError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        },
    })
}

/// The server's error code, when the server answered with an error.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Whether the server is MariaDB (rather than MySQL), from `VERSION()`.
pub async fn is_mariadb(conn: &mut Conn) -> Result<bool, mysql_async::Error> {
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    Ok(version.is_some_and(|v| v.contains("MariaDB")))
}

/// A table's qualified name quoted for SQL: `` `db`.`table` ``.
pub fn quoted(table: &TableId) -> String {
    format!("{}.{}", quote_ident(&table.schema), quote_ident(&table.table))
}

/// An identifier quoted for SQL: `` `a``b` ``.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quoted(&TableId::new("d b", "t")), "`d b`.`t`");
    }
}
