//! The write workload the fault suite runs on each source while it injects
//! faults: single-row and multi-row transactions, deletes, updates and, once
//! per round, a large transaction, on three tables:
//!
//! - `accounts`: a counter each increment adds one to, in the same transaction
//!   as one row of delta 1 appended to `ledger`. On either side, the counters'
//!   sum equals the ledger's; an event applied twice or lost breaks that.
//! - `ledger`: keyless and append-only, so an insert applied twice is a second row.
//! - `items`: inserted, updated and deleted by key.
//!
//! A transaction whose outcome the writer cannot know (the connection broke
//! before its COMMIT was answered) is counted as uncertain: the source's
//! counters must then lie between the acknowledged increments and those plus
//! the uncertain ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::{Engine, Rng};

/// Rows of `accounts`.
pub const ACCOUNTS: i64 = 200;

/// The workload's tables on a source of `engine`, with the accounts at zero
/// and one row in each other table (apply creates a table at its first event).
pub fn tables(engine: Engine) -> String {
    let keyless = match engine {
        Engine::Postgres => "ALTER TABLE ledger REPLICA IDENTITY FULL;",
        Engine::MariaDb => "",
    };
    let accounts: Vec<String> = (1..=ACCOUNTS).map(|i| format!("({i}, 0, 'account {i}', 0)")).collect();
    format!(
        "CREATE TABLE accounts (id int PRIMARY KEY, counter bigint NOT NULL, note varchar(100), amount numeric(12,2));
         CREATE TABLE ledger (account int NOT NULL, delta int NOT NULL, note varchar(40)); {keyless}
         CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, body varchar(200));
         INSERT INTO accounts VALUES {};
         INSERT INTO ledger VALUES (0, 0, 'opening'); INSERT INTO items VALUES (0, 0, 'opening');",
        accounts.join(",")
    )
}

/// What the writer did, over every round so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub transactions: u64,
    /// Rows inserted, updated or deleted by acknowledged transactions.
    pub rows: u64,
    pub increments: i64,
    /// Transactions whose outcome is unknown, and their increments.
    pub uncertain: u64,
    pub uncertain_increments: i64,
}

/// The writer's state between rounds: its random choices, the next item key.
#[derive(Debug)]
pub struct Script {
    rng: Rng,
    next_item: i64,
    pub tally: Tally,
    pub last_error: Option<String>,
}

/// One transaction: its SQL, the rows it changes, the increments it makes.
struct Transaction {
    sql: String,
    rows: u64,
    increments: i64,
}

impl Script {
    pub fn new(seed: u64) -> Script {
        Script {
            rng: Rng::new(seed),
            next_item: 1,
            tally: Tally::default(),
            last_error: None,
        }
    }

    fn items(&mut self, n: i64) -> String {
        let values: Vec<String> = (0..n)
            .map(|_| {
                let id = self.next_item;
                self.next_item += 1;
                format!("({id}, {}, 'item {id}')", self.rng.below(1000))
            })
            .collect();
        format!("INSERT INTO items VALUES {};", values.join(","))
    }

    fn existing_item(&mut self) -> i64 {
        let recent = self.next_item.min(500) as u64;
        self.next_item - 1 - self.rng.below(recent.max(1)) as i64
    }

    fn increment(&mut self) -> String {
        let k = 1 + self.rng.below(ACCOUNTS as u64);
        format!(
            "UPDATE accounts SET counter = counter + 1, amount = amount + 1.25 WHERE id = {k};
             INSERT INTO ledger VALUES ({k}, 1, 'inc');"
        )
    }

    fn next(&mut self, large: bool) -> Transaction {
        if large {
            let ledger: Vec<String> = (1..=ACCOUNTS).map(|k| format!("({k}, 1, 'all')")).collect();
            let sql = format!(
                "BEGIN; {} UPDATE accounts SET counter = counter + 1; INSERT INTO ledger VALUES {}; COMMIT;",
                self.items(5000),
                ledger.join(",")
            );
            return Transaction {
                sql,
                rows: 5000 + 2 * ACCOUNTS as u64,
                increments: ACCOUNTS,
            };
        }
        match self.rng.below(100) {
            0..=39 => Transaction {
                sql: format!("BEGIN; {} COMMIT;", self.increment()),
                rows: 2,
                increments: 1,
            },
            40..=59 => {
                let n = 1 + self.rng.below(5) as i64;
                Transaction {
                    sql: self.items(n),
                    rows: n as u64,
                    increments: 0,
                }
            }
            60..=69 => Transaction {
                sql: format!("DELETE FROM items WHERE id = {}", self.existing_item()),
                rows: 1,
                increments: 0,
            },
            70..=84 => Transaction {
                sql: format!(
                    "UPDATE items SET qty = qty + 1, body = 'updated' WHERE id = {}",
                    self.existing_item()
                ),
                rows: 1,
                increments: 0,
            },
            _ => {
                let sql = format!(
                    "BEGIN; {} {} {} {} DELETE FROM items WHERE id = {}; UPDATE items SET qty = 0 WHERE id = {}; COMMIT;",
                    self.increment(),
                    self.increment(),
                    self.increment(),
                    self.items(2),
                    self.existing_item(),
                    self.existing_item(),
                );
                Transaction {
                    sql,
                    rows: 10,
                    increments: 3,
                }
            }
        }
    }
}

/// A connection to a source or target, of either engine.
#[derive(Debug)]
pub enum Conn {
    Pg(tokio_postgres::Client),
    Maria(mysql_async::Conn),
}

impl Conn {
    pub async fn open(engine: Engine, url: &str) -> Result<Conn, String> {
        match engine {
            Engine::Postgres => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                Ok(Conn::Pg(client))
            }
            Engine::MariaDb => {
                let opts = mysql_async::Opts::from_url(url).map_err(|e| e.to_string())?;
                mysql_async::Conn::new(opts)
                    .await
                    .map(Conn::Maria)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Runs `sql`, several statements allowed.
    pub async fn batch(&mut self, sql: &str) -> Result<(), String> {
        let run = async {
            match self {
                Conn::Pg(c) => c.batch_execute(sql).await.map_err(|e| ferry_core::pg::pg_message(&e)),
                Conn::Maria(c) => c.query_drop(sql).await.map_err(|e| e.to_string()),
            }
        };
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within 60 s to {sql:.60}")))
    }

    /// The integer the one-row, one-column query `sql` returns (NULL as 0).
    pub async fn integer(&mut self, sql: &str) -> Result<i64, String> {
        let text = match self {
            Conn::Pg(c) => c
                .simple_query(sql)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
                    _ => None,
                })
                .flatten(),
            Conn::Maria(c) => c
                .query_first::<Option<String>, _>(sql)
                .await
                .map_err(|e| e.to_string())?
                .flatten(),
        };
        text.map_or(Ok(0), |t| t.parse().map_err(|e| format!("{sql}: {t:?}: {e}")))
    }
}

/// The workload writing into one source until stopped.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Script>,
}

impl Writer {
    /// Writes into the source at `url` as fast as one connection goes, one
    /// large transaction after a random number of others; reconnects after
    /// any error.
    pub fn start(engine: Engine, url: &str, mut script: Script) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (url, stop) = (url.to_owned(), Arc::clone(&stop));
            tokio::spawn(async move {
                let large_at = 20 + script.rng.below(300);
                let mut conn: Option<Conn> = None;
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Some(c) = conn.as_mut() else {
                        match Conn::open(engine, &url).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                script.last_error = Some(e);
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                        continue;
                    };
                    let tx = script.next(done == large_at);
                    done += 1;
                    let t = &mut script.tally;
                    match c.batch(&tx.sql).await {
                        Ok(()) => {
                            t.transactions += 1;
                            t.rows += tx.rows;
                            t.increments += tx.increments;
                        }
                        Err(e) => {
                            t.uncertain += 1;
                            t.uncertain_increments += tx.increments;
                            script.last_error = Some(e);
                            conn = None;
                        }
                    }
                }
                script
            })
        };
        Writer { stop, task }
    }

    /// Stops after the transaction in progress; the script to go on with.
    pub async fn stop(self) -> Script {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the workload task")
    }
}
