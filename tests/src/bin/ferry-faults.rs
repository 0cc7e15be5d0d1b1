//! `ferry-faults`: the fault suite (see [`ferry_tests::faults`]) for long runs
//! by hand; `scripts/test` runs a short one. The development services must be
//! up (`scripts/services up`) and Ferry's binaries built. It restarts
//! PostgreSQL and MariaDB: run it alone.
//!
//! ```text
//! ferry-faults [--rounds N] [--seed S] [--faults kill-broker,cut-network,...]
//! ```

use clap::Parser;
use ferry_tests::faults::{self, Fault, Options};

#[derive(Parser)]
#[command(about = "Injects faults into running Ferry pipelines and proves every target still equals its source")]
struct Args {
    /// Rounds, one fault each (the faults are dealt in turn from a shuffled deck).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// The seed of every random choice [default: from the clock]; the report prints it.
    #[arg(long)]
    seed: Option<u64>,
    /// Only these faults, comma-separated [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_fault)]
    faults: Vec<Fault>,
    /// Seconds a round may take to converge after its fault.
    #[arg(long, default_value_t = 300)]
    converge_seconds: u64,
}

fn parse_fault(name: &str) -> Result<Fault, String> {
    Fault::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
        format!("unknown fault {name:?}; known: {}", known.join(", "))
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut options = Options::new(args.rounds, args.seed);
    if !args.faults.is_empty() {
        options.faults = args.faults;
    }
    options.converge = std::time::Duration::from_secs(args.converge_seconds);
    println!("ferry-faults: seed {}, {} rounds", options.seed, options.rounds);
    let report = faults::run(options).await;
    println!("{report}");
    if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
