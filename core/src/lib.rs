//! Ferry's change-event model, shared by every capture, apply and tool binary.
//!
//! ```text
//!  source rows ──► meta::TableMeta + value::Datum ──► codec::TableCodec ──► Avro bytes
//!                                                         │                   │
//!                  schema:: (Avro schemas, Debezium       │        wire:: (0x00 + schema id)
//!                  envelope of envelope::)  ──────────────┘                   │
//!                                              registry::RegistryClient ──────┘
//! ```
//!
//! Nothing here talks to a database: sources and targets live in `ferry-capture`
//! and `ferry-apply`. What is here is what both ends must agree on, so it is
//! written once: the event model, how it maps to Avro, where a source stands
//! (`position`), and the settings every binary shares (Kafka, config, logging).

pub mod codec;
pub mod config;
pub mod document;
pub mod envelope;
pub mod kafka;
pub mod message;
pub mod meta;
pub mod metrics;
pub mod mysql;
pub mod names;
pub mod pg;
pub mod pgbinary;
pub mod position;
pub mod process;
pub mod read;
pub mod registry;
pub mod schema;
pub mod schema_change;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod transaction;
pub mod value;
pub mod wire;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
