//! `ferry`, the operator's tool, on top of the capture and apply libraries
//! and the same Kafka path. Each command is a module with a `run`; the binary
//! only parses flags.

pub mod assess;
pub mod db;
pub mod migrate;
pub mod replay;
pub mod status;
pub mod topics;
pub mod validate;
