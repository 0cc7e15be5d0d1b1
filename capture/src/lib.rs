//! Ferry's capture sources, one module per source database.

pub mod postgres;
