//! Connections, the publication and the replication slot.
//!
//! The replication connection is encrypted exactly as the query connections
//! are (the URL's `sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
//!
//! Every session Ferry opens pins the settings that make PostgreSQL's text
//! output exact and parseable (ISO dates in UTC, ISO 8601 intervals, hex
//! bytea, shortest-exact floats): the snapshot's query connection and the
//! walsender, whose session settings also govern pgoutput's text values.

use std::time::Duration;

use ferry_core::config::SecretUrl;
use ferry_core::meta::TableId;
use ferry_core::pg::PgConfig;
use ferry_core::position::PgLsn;
use ferry_core::tls::{TlsMode, TlsOptions};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, SslMode, TlsConfig};
use tokio_postgres::Client;

use crate::postgres::error::CaptureError;
use crate::postgres::validate::{quote_ident, quoted};

/// Session settings for exact text output.
pub const SESSION_OPTIONS: &str =
    "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 -c bytea_output=hex -c extra_float_digits=1";

fn parsed(url: &SecretUrl) -> Result<PgConfig, CaptureError> {
    Ok(ferry_core::pg::config(url, "--source")?)
}

/// A query connection with the pinned settings.
pub async fn connect(url: &SecretUrl) -> Result<Client, CaptureError> {
    let mut config = parsed(url)?;
    config
        .session
        .options(SESSION_OPTIONS)
        .application_name("ferry-capture-postgres");
    Ok(ferry_core::pg::connect(&config, url).await?)
}

/// Where a replication session starts.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// The stream begins after this position.
    pub from: PgLsn,
    /// What the slot is told Kafka holds: `from` at a start, older after a
    /// reconnect (the publisher still makes what lies between durable).
    pub acked: PgLsn,
}

/// A gated replication session (SQL and replication commands until `start`).
pub async fn replication(
    url: &SecretUrl,
    slot: &str,
    publication: &str,
    start: Option<Start>,
) -> Result<ReplicationClient, CaptureError> {
    let PgConfig { session: config, tls } = parsed(url)?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let mut repl = ReplicationConfig::new(
        host.clone(),
        config.get_user().unwrap_or("postgres"),
        password,
        config.get_dbname().unwrap_or("postgres"),
        slot,
        publication,
    )
    .with_port(port)
    .with_options(SESSION_OPTIONS)
    .with_application_name("ferry-capture-postgres")
    .with_status_interval(Duration::from_secs(1))
    .with_tls(replication_tls(tls, &host));
    if let Some(Start { from, acked }) = start {
        repl = repl.with_start_lsn(Lsn(from.0)).with_ack_lsn(Lsn(acked.0));
    }
    Ok(ReplicationClient::connect_gated(repl).await?)
}

/// The query connections' TLS settings, for the replication connection to
/// `host`. An IP address is its own server name, so verify-full checks it
/// against the certificate's IP addresses, as libpq does.
fn replication_tls(tls: TlsOptions, host: &str) -> TlsConfig {
    let (cert, key) = tls.identity.unzip();
    let ip = host.parse::<std::net::IpAddr>().is_ok();
    TlsConfig {
        mode: match tls.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require => SslMode::Require,
            TlsMode::VerifyCa => SslMode::VerifyCa,
            TlsMode::VerifyFull => SslMode::VerifyFull,
        },
        ca_pem_path: tls.ca,
        sni_hostname: ip.then(|| host.to_owned()),
        client_cert_pem_path: cert,
        client_key_pem_path: key,
    }
}

/// Creates the publication, or adds the tables it lacks.
pub async fn ensure_publication(client: &Client, name: &str, tables: &[TableId]) -> Result<(), CaptureError> {
    let list = |ts: &[&TableId]| ts.iter().map(|t| quoted(t)).collect::<Vec<_>>().join(", ");
    let exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await?
        .is_some();
    let all: Vec<&TableId> = tables.iter().collect();
    let sql = if !exists {
        format!("CREATE PUBLICATION {} FOR TABLE {}", quote_ident(name), list(&all))
    } else {
        let published: Vec<TableId> = client
            .query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
                &[&name],
            )
            .await?
            .iter()
            .map(|r| TableId::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        let missing: Vec<&TableId> = tables.iter().filter(|t| !published.contains(t)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        format!("ALTER PUBLICATION {} ADD TABLE {}", quote_ident(name), list(&missing))
    };
    client.batch_execute(&sql).await.map_err(|e| {
        CaptureError::Config(format!(
            "cannot set up publication {name} ({}): run `{sql}` as the tables' owner, or grant ownership",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        ))
    })
}

/// Whether the slot exists.
pub async fn slot_exists(client: &Client, slot: &str) -> Result<bool, CaptureError> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await?
        .is_some())
}

/// (Re)creates the slot on the replication session with an exported snapshot:
/// returns the consistent point and the snapshot's name, valid until the
/// session's next command.
pub async fn create_slot(
    repl: &mut ReplicationClient,
    slot: &str,
    exists: bool,
) -> Result<(PgLsn, String), CaptureError> {
    if exists {
        repl.simple_query(&format!("DROP_REPLICATION_SLOT {}", quote_ident(slot)))
            .await?;
    }
    exporting_slot(repl, slot, "").await
}

/// A new exported snapshot for tables read after the slot was made (an
/// interrupted snapshot, tables added to the include list): a temporary slot
/// on its own session, gone when the session ends. Returns the session (keep
/// it idle while the snapshot is in use), the consistent point and the name.
pub async fn temporary_snapshot(
    url: &SecretUrl,
    slot: &str,
    publication: &str,
) -> Result<(ReplicationClient, PgLsn, String), CaptureError> {
    let temporary = format!("{slot}_snapshot_{}", std::process::id());
    let mut repl = replication(url, &temporary, publication, None).await?;
    let (at, name) = exporting_slot(&mut repl, &temporary, " TEMPORARY").await?;
    Ok((repl, at, name))
}

async fn exporting_slot(repl: &mut ReplicationClient, slot: &str, kind: &str) -> Result<(PgLsn, String), CaptureError> {
    let rows = repl
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {}{kind} LOGICAL pgoutput (SNAPSHOT 'export')",
            quote_ident(slot)
        ))
        .await?;
    let text = |i: usize| {
        rows.first()
            .and_then(|r| r.get(i).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| CaptureError::Protocol("CREATE_REPLICATION_SLOT returned no row".into()))
    };
    let lsn: PgLsn = text(1)?
        .parse()
        .map_err(|e| CaptureError::Protocol(format!("consistent point: {e}")))?;
    Ok((lsn, text(2)?))
}
