//! Ferry's capture sources, one module per source database, and what they
//! share: publishing events to Kafka ([`publish`]) and keeping the position
//! each capture reached ([`offsets`]).

pub mod delivery;
pub mod filter;
pub mod mysql;
pub mod offsets;
pub mod policy;
pub mod postgres;
pub mod publish;
