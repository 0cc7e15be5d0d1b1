//! The fault suite: Ferry's promise (nothing committed at a source is lost or
//! applied twice, whatever crashes) tried under faults injected in a random
//! order that a printed seed reproduces.
//!
//! Each round starts the write workload on both sources, injects one fault
//! (the faults are dealt from a shuffled deck, so each comes as often as the
//! others), lets the workload go on, stops it, and then waits until
//! `ferry validate` finds every target equal to its source. Then it checks the
//! workload's own invariant on both sides: the counters' sum equals the
//! ledger's, and the source's equals what the writer was told it
//! committed (see [`workload`]). A round that does not converge within the
//! deadline fails the suite, and the logs of every process are kept.
//!
//! The processes run under a supervisor that restarts what exits (see
//! [`stack`]): a process that stops on an error it deems final is restarted, as
//! systemd or Kubernetes would, and the exit is reported.

mod inject;
mod proxy;
mod stack;
mod workload;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use inject::Fault;
use stack::{Pipeline, Stack};

/// A database engine, as source or target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MariaDb,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::MariaDb => "mariadb",
        }
    }

    fn capture_binary(self) -> &'static str {
        match self {
            Engine::Postgres => "ferry-capture-postgres",
            Engine::MariaDb => "ferry-capture-mysql",
        }
    }

    fn apply_binary(self) -> &'static str {
        match self {
            Engine::Postgres => "ferry-apply-postgres",
            Engine::MariaDb => "ferry-apply-mysql",
        }
    }
}

/// splitmix64: small, and the same sequence for a seed on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub seed: u64,
    pub faults: Vec<Fault>,
    /// How long a round may take to converge after its fault.
    pub converge: Duration,
}

impl Options {
    /// Every fault, `rounds` rounds, a seed from the clock unless given.
    pub fn new(rounds: usize, seed: Option<u64>) -> Options {
        let seed = seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        Options {
            rounds,
            seed,
            faults: Fault::ALL.to_vec(),
            converge: Duration::from_secs(300),
        }
    }
}

/// One round: its fault, what the workload did meanwhile, and the verdict.
#[derive(Debug)]
pub struct Round {
    pub fault: Fault,
    pub rows: u64,
    pub transactions: u64,
    pub uncertain: u64,
    /// Processes that exited by themselves and were restarted.
    pub exits: Vec<String>,
    pub converged: Duration,
    pub verdict: Result<(), String>,
}

#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub planned: usize,
    pub pipelines: Vec<String>,
    pub rounds: Vec<Round>,
    /// Faults that cannot be made here, and why.
    pub skipped: Vec<(Fault, String)>,
    /// Why the suite could not start, if it could not.
    pub setup: Result<(), String>,
    /// Where the processes' logs are: kept when the suite fails.
    pub logs: PathBuf,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.setup.is_ok() && self.rounds.len() == self.planned && self.rounds.iter().all(|r| r.verdict.is_ok())
    }
}

/// Runs the suite; the report says how it went.
pub async fn run(options: Options) -> Report {
    let logs = std::env::temp_dir().join(crate::unique("ferry-faults"));
    std::fs::create_dir_all(&logs).expect("the log directory");
    let mut rng = Rng::new(options.seed);
    let mut stack = Stack::start(&logs, &mut rng).await;
    let mut report = Report {
        seed: options.seed,
        planned: options.rounds,
        pipelines: stack.pipelines.iter().map(|p| p.name.clone()).collect(),
        rounds: Vec::new(),
        skipped: Vec::new(),
        setup: Ok(()),
        logs: logs.clone(),
    };
    let mut faults = options.faults.clone();
    let unavailable = [
        (
            Fault::FillTargetDisk,
            stack.disk.as_ref().map(|_| ()).map_err(Clone::clone),
        ),
        (Fault::KillBroker, inject::broker_keeps_acknowledged()),
    ];
    for (fault, available) in unavailable {
        if let (Err(why), true) = (available, faults.contains(&fault)) {
            report.skipped.push((fault, why));
            faults.retain(|f| *f != fault);
        }
    }
    report.setup = converge(&mut stack, options.converge)
        .await
        .map_err(|e| format!("the initial snapshot: {e}"));
    let mut deck = Vec::new();
    for _ in 0..options.rounds {
        if report.setup.is_err() || faults.is_empty() {
            break;
        }
        if deck.is_empty() {
            deck = faults.clone();
            for i in (1..deck.len()).rev() {
                deck.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let fault = deck.pop().expect("a dealt fault");
        let round = run_round(&mut stack, fault, &mut rng, options.converge).await;
        let failed = round.verdict.is_err();
        report.rounds.push(round);
        if failed {
            break;
        }
    }
    drop(stack);
    if report.passed() {
        let _ = std::fs::remove_dir_all(&logs);
    }
    report
}

fn written(stack: &Stack) -> (u64, u64, u64) {
    stack
        .pipelines
        .iter()
        .map(|p| p.script().tally)
        .fold((0, 0, 0), |(r, t, u), x| {
            (r + x.rows, t + x.transactions, u + x.uncertain)
        })
}

async fn run_round(stack: &mut Stack, fault: Fault, rng: &mut Rng, deadline: Duration) -> Round {
    let (rows, transactions, uncertain) = written(stack);
    let exits = stack.exits().len();
    stack.pipelines.iter_mut().for_each(Pipeline::start_writing);
    stack.run_for(Duration::from_millis(1000 + rng.below(3000))).await;
    let injected = fault.inject(stack, rng).await;
    stack.run_for(Duration::from_millis(1000 + rng.below(3000))).await;
    for p in &mut stack.pipelines {
        p.stop_writing().await;
    }
    let started = Instant::now();
    let verdict = match injected {
        Err(e) => Err(format!("injecting {}: {e}", fault.name())),
        Ok(()) => converge(stack, deadline).await,
    };
    let now = written(stack);
    Round {
        fault,
        rows: now.0 - rows,
        transactions: now.1 - transactions,
        uncertain: now.2 - uncertain,
        exits: stack.exits().split_off(exits),
        converged: started.elapsed(),
        verdict,
    }
}

/// Waits until every target equals its source, then checks the invariants.
async fn converge(stack: &mut Stack, deadline: Duration) -> Result<(), String> {
    let end = Instant::now() + deadline;
    for i in 0..stack.pipelines.len() {
        let (source, target) = (
            stack.pipelines[i].source.url.clone(),
            stack.pipelines[i].target.url.clone(),
        );
        loop {
            match stack.tending(validate(&source, &target)).await {
                Ok(()) => break,
                Err(e) if Instant::now() >= end => {
                    return Err(format!(
                        "{}: the target was not equal to the source {} s after the workload stopped: {e}",
                        stack.pipelines[i].name,
                        deadline.as_secs()
                    ))
                }
                Err(_) => stack.run_for(Duration::from_secs(1)).await,
            }
        }
        invariants(&stack.pipelines[i]).await?;
    }
    Ok(())
}

/// `ferry validate` of the two databases: Ok when every table is equal.
async fn validate(source: &str, target: &str) -> Result<(), String> {
    let out = tokio::process::Command::new(crate::binary("ferry"))
        .args(["validate", "--source", source, "--target", target, "--show", "3"])
        .env("FERRY_LOG", "warn")
        .output()
        .await
        .map_err(|e| format!("run ferry validate: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = [out.stdout, out.stderr].concat();
    Err(String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" / "))
}

/// On both sides, the counters' sum equals the ledger's; at the source,
/// it lies between the increments acknowledged to the writer and those plus
/// the ones whose commit went unanswered.
async fn invariants(p: &Pipeline) -> Result<(), String> {
    let tally = p.script().tally;
    for side in [&p.source, &p.target] {
        let mut conn = side.conn().await?;
        let counters = conn.integer("SELECT SUM(counter) FROM accounts").await?;
        let ledger = conn.integer("SELECT SUM(delta) FROM ledger").await?;
        if counters != ledger {
            return Err(format!(
                "{} {}: the counters add up to {counters} but the ledger to {ledger}",
                p.name, side.name
            ));
        }
        let acknowledged = tally.increments..=tally.increments + tally.uncertain_increments;
        if !acknowledged.contains(&counters) {
            return Err(format!(
                "{} {}: the counters add up to {counters}, outside the {acknowledged:?} the writer committed",
                p.name, side.name
            ));
        }
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Fault suite, seed {}, pipelines {}",
            self.seed,
            self.pipelines.join(" and ")
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| round | fault | rows written | transactions | uncertain | exits | converged | verdict |"
        )?;
        writeln!(f, "|---:|---|---:|---:|---:|---:|---:|---|")?;
        for (i, r) in self.rounds.iter().enumerate() {
            let verdict = r
                .verdict
                .as_ref()
                .map_or_else(|e| format!("FAILED: {e}"), |()| "equal".to_owned());
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} | {:.1} s | {verdict} |",
                i + 1,
                r.fault.name(),
                r.rows,
                r.transactions,
                r.uncertain,
                r.exits.len(),
                r.converged.as_secs_f64()
            )?;
        }
        writeln!(f)?;
        for fault in Fault::ALL {
            let n = self.rounds.iter().filter(|r| r.fault == fault).count();
            if n > 0 {
                writeln!(f, "- {} ({}): {n} round(s)", fault.name(), fault.describe())?;
            }
        }
        for (fault, why) in &self.skipped {
            writeln!(f, "- {}: not injected here: {why}", fault.name())?;
        }
        for exit in self.rounds.iter().flat_map(|r| &r.exits) {
            writeln!(f, "- exited and restarted: {exit}")?;
        }
        let rows: u64 = self.rounds.iter().map(|r| r.rows).sum();
        let transactions: u64 = self.rounds.iter().map(|r| r.transactions).sum();
        let uncertain: u64 = self.rounds.iter().map(|r| r.uncertain).sum();
        writeln!(f)?;
        writeln!(
            f,
            "{} of {} rounds, {rows} rows written in {transactions} transactions ({uncertain} of unknown outcome)",
            self.rounds.len(),
            self.planned
        )?;
        match (&self.setup, self.passed()) {
            (Err(e), _) => writeln!(f, "verdict: FAILED before the first round: {e}")?,
            (Ok(()), true) => writeln!(
                f,
                "verdict: PASSED: after every round each target equalled its source and every counter its ledger"
            )?,
            (Ok(()), false) => writeln!(f, "verdict: FAILED; the processes' logs are in {}", self.logs.display())?,
        }
        write!(f, "rerun: ferry-faults --seed {} --rounds {}", self.seed, self.planned)
    }
}
