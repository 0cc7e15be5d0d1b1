//! `ferry-apply-duckdb`: [`ferry_apply::cli::main`] with the DuckDB target, and
//! `ferry-apply-duckdb export` ([`ferry_apply::duckdb::export`]).

use std::process::ExitCode;

use ferry_apply::duckdb::{export, DuckConnect};

/// As for ferry-apply-postgres: every event's values are allocated and freed.
/// DuckDB's C++ allocates as much again; mimalloc's `override` feature (set
/// in the workspace's Cargo.toml) makes this binary's own `malloc`, `free` and
/// `operator new` mimalloc's, so DuckDB and librdkafka use it too instead of
/// glibc's malloc: 5.4–6.7 µs of CPU per event against 7.0–7.5 in alternated
/// runs of `scripts/bench apply-duckdb` (Intel, 2 cores, 2026-12-05).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("export") {
        return export::main(std::env::args().skip(1));
    }
    ferry_apply::cli::main(
        "ferry-apply-duckdb",
        "a DuckDB file",
        "PATH of the DuckDB file, created if absent (`ferry-apply-duckdb export --help`: its tables as Parquet)",
        DuckConnect::open,
    )
    .await
}
