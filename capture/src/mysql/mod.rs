//! MySQL/MariaDB capture: a consistent snapshot, then the row binlog,
//! published to Kafka.

pub mod types;
