//! What every MySQL/MariaDB end of Ferry (capture's source, apply's target)
//! does the same way: connect from a URL with the session Ferry relies on,
//! quote names, and say what the server said.
//!
//! Every session runs in UTC (`time_zone = '+00:00'`), so `TIMESTAMP` values
//! read and written as text are instants whatever the server's zone, and in
//! utf8mb4, so every character of every text column survives. Connections are
//! encrypted as the URL's `ssl-mode` says (TLS when the server offers it, by default).

use mysql_async::prelude::Queryable;
use mysql_async::{ClientIdentity, Conn, DriverError, IoError, Opts, OptsBuilder, SslOpts};

use crate::config::SecretUrl;
use crate::meta::TableId;
use crate::tls::{Dialect, TlsMode, TlsOptions};

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
    #[error("no TLS connection to MySQL/MariaDB at {url}: {reason}; check ssl-mode, ssl-ca, ssl-cert and ssl-key")]
    Tls { url: String, reason: String },
}

impl ConnectError {
    /// Whether trying again later may succeed (the server is down or restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

/// A MySQL/MariaDB URL, parsed: the options of every connection, and whether
/// TLS may be dropped for a server that does not offer it.
#[derive(Debug, Clone)]
pub struct MysqlConfig {
    pub opts: Opts,
    tls: TlsMode,
}

impl MysqlConfig {
    /// The same connections, also running `statements` when they open.
    pub fn with_init(mut self, statements: impl IntoIterator<Item = String>) -> Self {
        let init: Vec<String> = self.opts.init().iter().cloned().chain(statements).collect();
        self.opts = OptsBuilder::from_opts(self.opts).init(init).into();
        self
    }
}

/// The URL given as `flag`, parsed, with Ferry's session settings and the
/// MySQL client's TLS parameters (see [`crate::tls`]). Parameters of
/// mysql_async's own (`require_ssl`, ...) are honoured when no `ssl-*` one is given.
pub fn opts(url: &SecretUrl, flag: &'static str) -> Result<MysqlConfig, ConnectError> {
    let bad = |reason: String| ConnectError::BadUrl {
        flag,
        url: url.to_string(),
        reason,
    };
    let mut plain = url.expose().clone();
    let tls = TlsOptions::take(&mut plain, Dialect::Mysql).map_err(|e| bad(e.to_string()))?;
    let opts = Opts::from_url(plain.as_str()).map_err(|e| bad(e.to_string()))?;
    let mode = tls.mode;
    let mut builder = OptsBuilder::from_opts(opts.clone()).init(vec!["SET time_zone = '+00:00', NAMES utf8mb4"]);
    if opts.ssl_opts().is_none() || plain.as_str() != url.expose().as_str() {
        builder = builder.ssl_opts(ssl_opts(tls));
    }
    Ok(MysqlConfig {
        opts: builder.into(),
        tls: mode,
    })
}

fn ssl_opts(tls: TlsOptions) -> Option<SslOpts> {
    crate::tls::install_crypto_provider();
    let verifies = tls.mode.verifies();
    let opts = match tls.mode {
        TlsMode::Disable => return None,
        _ => SslOpts::default()
            .with_danger_accept_invalid_certs(!verifies)
            .with_danger_skip_domain_validation(tls.mode != TlsMode::VerifyFull),
    };
    let opts = match tls.ca {
        Some(ca) => opts.with_root_certs(vec![ca.into()]).with_disable_built_in_roots(true),
        None => opts,
    };
    Some(
        opts.with_client_identity(
            tls.identity
                .map(|(cert, key)| ClientIdentity::new(cert.into(), key.into())),
        ),
    )
}

/// A connection made with `config`; with `ssl-mode=PREFERRED` (the default),
/// a plain one to a server that offers no TLS.
pub async fn connect(config: &MysqlConfig, url: &SecretUrl) -> Result<Conn, ConnectError> {
    let failed = |e: mysql_async::Error| match &e {
        mysql_async::Error::Server(s) => ConnectError::Refused {
            url: url.to_string(),
            reason: format!("{} (error {})", s.message, s.code),
        },
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => ConnectError::Tls {
            url: url.to_string(),
            reason: "the server does not offer TLS".into(),
        },
        mysql_async::Error::Io(IoError::Tls(t)) => ConnectError::Tls {
            url: url.to_string(),
            reason: t.to_string(),
        },
        // rustls's handshake failures (an untrusted certificate) come wrapped in I/O errors.
        mysql_async::Error::Io(IoError::Io(io)) if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
            ConnectError::Tls {
                url: url.to_string(),
                reason: io.to_string(),
            }
        }
        _ => ConnectError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        },
    };
    match Conn::new(config.opts.clone()).await {
        Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)) if config.tls == TlsMode::Prefer => {
            let plain = OptsBuilder::from_opts(config.opts.clone()).ssl_opts(None::<SslOpts>);
            Conn::new(plain).await.map_err(failed)
        }
        result => result.map_err(failed),
    }
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
