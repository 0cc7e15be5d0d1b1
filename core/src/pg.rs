//! What every PostgreSQL end of Ferry (capture's source, apply's target) does
//! the same way: connect from a URL (encrypted as its `sslmode` says), and
//! say what the server said.

use std::str::FromStr;
use std::sync::Mutex;

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::config::SecretUrl;
use crate::meta::TableId;
use crate::tls::{Dialect, TlsMode, TlsOptions};

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
    #[error("PostgreSQL at {url} refused the connection: {reason}")]
    Refused { url: String, reason: String },
    #[error("no TLS connection to PostgreSQL at {url}: {reason}; check sslmode, sslrootcert, sslcert and sslkey")]
    Tls { url: String, reason: String },
}

impl ConnectError {
    /// Whether trying again later may succeed (the server is down or restarting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

/// A PostgreSQL URL, parsed: the session settings and how to encrypt it.
#[derive(Debug, Clone)]
pub struct PgConfig {
    pub session: tokio_postgres::Config,
    pub tls: TlsOptions,
}

/// The TLS connector for `tls`, made once per process for each setting and
/// shared by every connection after: making one loads the system's trusted
/// certificates, which cost a tenth of a second of CPU per connection (an
/// apply's three connections spent more on it than on its first 20,000
/// events). Certificate and key files are therefore read at the first
/// connection that names them; a process restart reads them again.
fn shared_connector(tls: &TlsOptions) -> Result<MakeTlsConnector, String> {
    static MADE: Mutex<Vec<(TlsOptions, MakeTlsConnector)>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = made.iter().find(|(t, _)| t == tls) {
        return Ok(c.clone());
    }
    let c = connector(tls)?;
    made.push((tls.clone(), c.clone()));
    Ok(c)
}

/// The URL given as `flag`, parsed; libpq's TLS parameters (see
/// [`crate::tls`]) are read here, as tokio-postgres knows only some of them.
pub fn config(url: &SecretUrl, flag: &'static str) -> Result<PgConfig, ConnectError> {
    let bad = |reason: String| ConnectError::BadUrl {
        flag,
        url: url.to_string(),
        reason,
    };
    let mut plain = url.expose().clone();
    let tls = TlsOptions::take(&mut plain, Dialect::Postgres).map_err(|e| bad(e.to_string()))?;
    let mut session = tokio_postgres::Config::from_str(plain.as_str()).map_err(|e| bad(e.to_string()))?;
    session.ssl_mode(match tls.mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    });
    Ok(PgConfig { session, tls })
}

/// An OpenSSL connector that checks what `tls.mode` asks for.
fn connector(tls: &TlsOptions) -> Result<MakeTlsConnector, String> {
    let file = |what: &str, path: &std::path::Path, e: openssl::error::ErrorStack| {
        format!("{what} {} is not usable: {e}", path.display())
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    if tls.mode.verifies() {
        builder.set_verify(SslVerifyMode::PEER);
        if let Some(ca) = &tls.ca {
            builder.set_ca_file(ca).map_err(|e| file("sslrootcert", ca, e))?;
        }
    } else {
        builder.set_verify(SslVerifyMode::NONE);
    }
    if let Some((cert, key)) = &tls.identity {
        builder
            .set_certificate_chain_file(cert)
            .map_err(|e| file("sslcert", cert, e))?;
        builder
            .set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| file("sslkey", key, e))?;
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    let check_host = tls.mode == TlsMode::VerifyFull;
    connector.set_callback(move |connect, _host| {
        connect.set_verify_hostname(check_host);
        Ok(())
    });
    Ok(connector)
}

/// What a server says at login that passes: it is starting, shutting down,
/// or has no connection slot free.
const TRANSIENT_AT_CONNECT: [SqlState; 4] = [
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::ADMIN_SHUTDOWN,
    SqlState::TOO_MANY_CONNECTIONS,
    SqlState::CONFIGURATION_LIMIT_EXCEEDED,
];

/// A query connection made with `config`, driven on its own task.
pub async fn connect(config: &PgConfig, url: &SecretUrl) -> Result<Client, ConnectError> {
    let failed = |e: tokio_postgres::Error| {
        let reason = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned());
        // tokio-postgres's TLS failures ("error performing TLS handshake",
        // "server does not support TLS") are settings to fix, not outages.
        if e.as_db_error().is_none() && reason.contains("TLS") {
            ConnectError::Tls {
                url: url.to_string(),
                reason: chain(&e),
            }
        } else if e.code().is_some_and(|c| !TRANSIENT_AT_CONNECT.contains(c)) {
            // A wrong password, a missing database or role: nothing to wait for.
            ConnectError::Refused {
                url: url.to_string(),
                reason: pg_message(&e),
            }
        } else {
            ConnectError::Unreachable {
                url: url.to_string(),
                reason,
            }
        }
    };
    let client = if config.tls.mode == TlsMode::Disable {
        let (client, connection) = config.session.connect(NoTls).await.map_err(failed)?;
        drive(connection);
        client
    } else {
        let tls = shared_connector(&config.tls).map_err(|reason| ConnectError::Tls {
            url: url.to_string(),
            reason,
        })?;
        let (client, connection) = config.session.connect(tls).await.map_err(failed)?;
        drive(connection);
        client
    };
    Ok(client)
}

/// An error with its causes, `a: b: c`: OpenSSL's reason (a certificate that
/// does not verify) is only in the cause.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
}

/// A table's qualified name quoted for SQL: `"schema"."table"`.
pub fn quoted(table: &TableId) -> String {
    format!("{}.{}", quote_ident(&table.schema), quote_ident(&table.table))
}

/// An identifier quoted for SQL: `"a""b"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
