//! Ferry's apply side: consume change events from Kafka and write them into
//! targets, exactly once.
//!
//! ```text
//!  Kafka ─► consumer (consumer.rs; offsets from the target at assignment)
//!        ─► decode (decode.rs; schemas from the registry)
//!        ─► writers (pipeline.rs; one batch = one target transaction with its offsets, batch.rs)
//!        ─► Target (target.rs): postgres/, mysql/, duckdb/
//! ```
//!
//! The pipeline is the same for every target; a target implements the small
//! [`target::Target`] trait (write a batch and its offsets in one transaction,
//! read offsets back, find the rows it rejects). Each binary parses
//! [`settings::ApplyArgs`] plus its `--target` and calls [`pipeline::run`]
//! ([`cli::main`] does that for each).

pub mod batch;
pub mod calendar;
pub mod cli;
pub mod consumer;
pub mod decode;
pub mod dlq;
pub mod duckdb;
pub mod error;
pub mod mysql;
pub mod pipeline;
pub mod postgres;
pub mod settings;
pub mod target;

pub use error::ApplyError;
