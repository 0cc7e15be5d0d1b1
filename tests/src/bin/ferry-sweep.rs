//! `ferry-sweep`: deletes the topics and registry subjects that tests and
//! earlier quickstarts left on the development broker and registry (see
//! [`ferry_tests::sweep`]). `scripts/test` runs it before and between its
//! phases; run it by hand after running tests yourself.

use ferry_tests::sweep::{delete, made_by_a_test, made_by_the_quickstart};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let swept = delete(|name| made_by_a_test(name) || made_by_the_quickstart(name)).await;
    println!(
        "ferry-sweep: deleted {} topics and {} registry subjects left by tests and quickstarts",
        swept.topics, swept.subjects
    );
    for failure in &swept.failures {
        eprintln!("ferry-sweep: {failure}");
    }
    if swept.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
