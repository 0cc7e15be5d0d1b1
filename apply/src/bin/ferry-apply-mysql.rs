//! `ferry-apply-mysql`: [`ferry_apply::cli::main`] with the MySQL/MariaDB target.

use std::process::ExitCode;

use ferry_apply::mysql::MyConnect;
use ferry_apply::settings::NoOptions;
use ferry_core::config::SecretUrl;

/// As for ferry-apply-postgres: every event's values are allocated and freed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    ferry_apply::cli::main(
        "ferry-apply-mysql",
        "a MySQL or MariaDB database",
        "mysql://USER:PASSWORD@HOST:PORT/DATABASE (the database is where source tables go)",
        |url: SecretUrl, _: NoOptions| MyConnect::new(url),
    )
    .await
}
