//! `ferry-sweep`: deletes the topics and registry subjects that tests left on
//! the development broker and registry (names made by `unique`, see
//! [`ferry_tests::sweep`]). `scripts/test` runs it before and between its
//! phases; run it by hand after running tests yourself.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let swept = ferry_tests::sweep::delete(ferry_tests::sweep::made_by_a_test).await;
    println!(
        "ferry-sweep: deleted {} topics and {} registry subjects left by tests",
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
