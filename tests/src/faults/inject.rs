//! The faults, and how each is made on this machine.

use std::time::Duration;

use super::stack::{Side, Stack};
use super::workload::Conn;
use super::{Engine, Rng};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillCapture,
    KillApply,
    KillRegistry,
    KillBroker,
    RestartPostgres,
    RestartMariaDb,
    DropConnections,
    LockTargets,
    FillTargetDisk,
    CutNetwork,
}

/// How long a fault that lasts (a lock, a full disk, a cut) holds: longer than
/// apply's batches wait and than the clients' request timeouts' first retries.
const HOLD: Duration = Duration::from_secs(12);

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::KillCapture,
        Fault::KillApply,
        Fault::KillRegistry,
        Fault::KillBroker,
        Fault::RestartPostgres,
        Fault::RestartMariaDb,
        Fault::DropConnections,
        Fault::LockTargets,
        Fault::FillTargetDisk,
        Fault::CutNetwork,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillCapture => "kill-capture",
            Fault::KillApply => "kill-apply",
            Fault::KillRegistry => "kill-registry",
            Fault::KillBroker => "kill-broker",
            Fault::RestartPostgres => "restart-postgres",
            Fault::RestartMariaDb => "restart-mariadb",
            Fault::DropConnections => "drop-connections",
            Fault::LockTargets => "lock-targets",
            Fault::FillTargetDisk => "fill-target-disk",
            Fault::CutNetwork => "cut-network",
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    /// What the fault does, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::KillCapture => "kill -9 of each capture, at random moments",
            Fault::KillApply => "kill -9 of each apply, at random moments",
            Fault::KillRegistry => "kill -9 of the schema registry",
            Fault::KillBroker => "kill -9 of the broker",
            Fault::RestartPostgres => "PostgreSQL fast shutdown and start (a source and a target)",
            Fault::RestartMariaDb => "MariaDB shutdown and start (a source and a target)",
            Fault::DropConnections => "every connection to the sources and targets killed by the server",
            Fault::LockTargets => "an exclusive lock on every target table, held 12 s",
            Fault::FillTargetDisk => "the PostgreSQL target's file system full for 12 s",
            Fault::CutNetwork => "the network between the captures and the broker cut for 12 s",
        }
    }

    /// Makes the fault happen, and heals it when it lasts.
    pub async fn inject(self, stack: &mut Stack, rng: &mut Rng) -> Result<(), String> {
        match self {
            Fault::KillCapture | Fault::KillApply => {
                for i in 0..stack.pipelines.len() {
                    stack.run_for(Duration::from_millis(rng.below(2000))).await;
                    let p = &mut stack.pipelines[i];
                    if self == Fault::KillCapture {
                        p.capture.kill9();
                    } else {
                        p.apply.kill9();
                    }
                }
            }
            Fault::KillRegistry => stack.registry.kill9(),
            Fault::KillBroker => stack.broker.kill9(),
            Fault::RestartPostgres => restart(stack, "postgres").await?,
            Fault::RestartMariaDb => restart(stack, "mariadb").await?,
            Fault::DropConnections => {
                for side in stack.pipelines.iter().flat_map(|p| [&p.source, &p.target]) {
                    drop_connections(side).await?;
                }
            }
            Fault::LockTargets => {
                let targets: Vec<(Engine, String)> = stack
                    .pipelines
                    .iter()
                    .map(|p| (p.target.engine, p.target.url.clone()))
                    .collect();
                let locks = futures::future::try_join_all(targets.into_iter().map(|(e, url)| hold_lock(e, url)));
                stack.tending(locks).await?;
            }
            Fault::FillTargetDisk => {
                let disk = stack.disk.as_ref().map_err(Clone::clone)?;
                disk.fill().await?;
                stack.run_for(HOLD).await;
                let disk = stack.disk.as_ref().map_err(Clone::clone)?;
                disk.free().await?;
            }
            Fault::CutNetwork => {
                stack.proxy.cut();
                stack.run_for(HOLD).await;
                stack.proxy.heal();
            }
        }
        Ok(())
    }
}

/// Whether the broker keeps what it acknowledged through a restart
/// (`FERRY_BROKER_DURABLE=true`, as Apache Kafka does). The development broker
/// saves its state every few seconds and loses the rest when it stops, by
/// `kill -9` or SIGTERM alike (see the README): no client can then keep its
/// promise, so the suite does not kill it.
pub fn broker_keeps_acknowledged() -> Result<(), String> {
    if std::env::var("FERRY_BROKER_DURABLE").is_ok_and(|v| v == "true") {
        Ok(())
    } else {
        Err(
            "the development broker loses what it acknowledged in the last seconds before it stops; \
             FERRY_BROKER_DURABLE=true runs this fault against a broker that keeps it"
                .to_owned(),
        )
    }
}

async fn restart(stack: &mut Stack, service: &str) -> Result<(), String> {
    let script = crate::repo_root().join("scripts/services");
    let out = stack
        .tending(tokio::process::Command::new(script).args(["restart", service]).output())
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "scripts/services restart {service}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Has the server end every connection to `side`'s database, and the
/// replication connections reading its server's log.
async fn drop_connections(side: &Side) -> Result<(), String> {
    let mut conn = side.conn().await?;
    match side.engine {
        Engine::Postgres => {
            // A logical walsender belongs to the database it decodes.
            let sql = format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
                side.name
            );
            conn.integer(&sql).await?;
        }
        Engine::MariaDb => {
            use mysql_async::prelude::Queryable;
            let Conn::Maria(c) = &mut conn else {
                unreachable!("a MariaDB side opens a MariaDB connection")
            };
            let ids: Vec<u64> = c
                .query(format!(
                    "SELECT id FROM information_schema.processlist WHERE id <> CONNECTION_ID()
                     AND (db = '{}' OR command LIKE 'Binlog Dump%')",
                    side.name
                ))
                .await
                .map_err(|e| e.to_string())?;
            for id in ids {
                // Gone already is fine.
                let _ = c.query_drop(format!("KILL {id}")).await;
            }
        }
    }
    Ok(())
}

/// Locks every table of the target at `url` exclusively for [`HOLD`].
async fn hold_lock(engine: Engine, url: String) -> Result<(), String> {
    let mut conn = Conn::open(engine, &url).await?;
    let (lock, unlock) = match engine {
        Engine::Postgres => (
            "BEGIN; LOCK TABLE accounts, ledger, items IN ACCESS EXCLUSIVE MODE;",
            "COMMIT",
        ),
        Engine::MariaDb => ("LOCK TABLES accounts WRITE, ledger WRITE, items WRITE", "UNLOCK TABLES"),
    };
    // Apply's writers lock the tables one by one as their batches reach
    // them, so taking all three at once can deadlock with one of them; the
    // server then ends one side, sometimes this one: it tries again.
    let mut attempts = 0;
    while let Err(e) = conn.batch(lock).await {
        attempts += 1;
        if attempts == 5 || !e.contains("deadlock") {
            return Err(e);
        }
        conn.batch("ROLLBACK").await?;
    }
    tokio::time::sleep(HOLD).await;
    conn.batch(unlock).await
}
