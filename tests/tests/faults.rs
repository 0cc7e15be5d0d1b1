//! The fault suite's short run: every fault injected twice, in an order from a
//! random seed (FERRY_FAULTS_SEED repeats one; FERRY_FAULTS_ROUNDS sets the
//! rounds). It restarts PostgreSQL and MariaDB, so it is `disruptive_` and runs
//! alone after the other tests.

use ferry_tests::faults::{self, Fault, Options};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disruptive_every_fault_loses_nothing_and_applies_nothing_twice() {
    let options = Options::new(
        env("FERRY_FAULTS_ROUNDS").unwrap_or(2 * Fault::ALL.len()),
        env("FERRY_FAULTS_SEED"),
    );
    eprintln!("fault suite: seed {} (FERRY_FAULTS_SEED={0} repeats it)", options.seed);
    let report = faults::run(options).await;
    println!("{report}");
    assert!(report.passed(), "{report}");
}
