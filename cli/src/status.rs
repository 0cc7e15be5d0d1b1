//! `ferry status`: what every capture and apply process last reported to
//! `_ferry_status` (see `ferry_core::status`): phase, position, lag, events
//! per table and op, last error — and, for a process that stopped reporting
//! without saying why (killed, hung, cut off), how long it has been silent.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_core::kafka::KafkaSettings;
use ferry_core::status::{Report, EVERY, TOPIC};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A report and what it means now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    #[serde(flatten)]
    pub report: Report,
    /// The phase, or `silent` when a running process has not reported for a while.
    pub state: String,
    /// Milliseconds since the report.
    pub age_ms: i64,
}

/// A report's state at `now`: its phase, unless a process that should still
/// be reporting has been silent for three periods.
pub fn state(report: &Report, now_ms: i64) -> String {
    let silent = now_ms - report.updated_ms > 3 * EVERY.as_millis() as i64;
    let ended = matches!(report.phase.as_str(), "stopped" | "failed");
    if silent && !ended {
        "silent".into()
    } else {
        report.phase.clone()
    }
}

/// How long a process that stopped cleanly stays listed (without `all`).
const KEEP_STOPPED_MS: i64 = 10 * 60 * 1000;

/// The latest report of every process (`prefix`: captures of that prefix
/// and every apply group; `group`: that apply group only); processes that
/// stopped cleanly over ten minutes ago only with `all`.
pub async fn read(
    kafka: &KafkaSettings,
    prefix: Option<&str>,
    group: Option<&str>,
    all: bool,
) -> Result<Vec<Status>, String> {
    let consumer: BaseConsumer = kafka
        .consumer("ferry-status")
        .create()
        .map_err(|e| format!("cannot reach the brokers at {}: {e}", kafka.brokers))?;
    let brokers = kafka.brokers.clone();
    // Ages are measured from before the read: reading a long history takes
    // time, which must not make a process that reported in it look silent.
    let now = ferry_core::now_ms();
    // The latest payload per key, parsed once at the end: the topic holds a
    // report every few seconds of every process that ever ran.
    let latest = tokio::task::spawn_blocking(move || -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
        let mut latest = BTreeMap::new();
        let (low, high) = match consumer.fetch_watermarks(TOPIC, 0, TIMEOUT) {
            Ok(w) => w,
            // No process has reported yet.
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownPartition)
                ) =>
            {
                return Ok(latest)
            }
            Err(e) => return Err(format!("cannot read {TOPIC} from the brokers at {brokers}: {e}")),
        };
        if high <= low {
            return Ok(latest);
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(TOPIC, 0, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        consumer.assign(&list).map_err(|e| e.to_string())?;
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message.map_err(|e| format!("reading {TOPIC}: {e}"))?;
            if let (Some(key), Some(value)) = (message.key(), message.payload()) {
                latest.insert(key.to_vec(), value.to_vec());
            }
            if message.offset() >= high - 1 {
                return Ok(latest);
            }
        }
        Err(format!("reading {TOPIC} took longer than {TIMEOUT:?}"))
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(latest
        .into_values()
        .filter_map(|value| serde_json::from_slice::<Report>(&value).ok())
        .filter(|r| match (r.kind.as_str(), prefix, group) {
            (_, _, Some(g)) => r.kind == "apply" && r.name == g,
            ("capture", Some(p), None) => r.name == p,
            _ => true,
        })
        .filter(|r| all || r.phase != "stopped" || now - r.updated_ms < KEEP_STOPPED_MS)
        .map(|report| Status {
            state: state(&report, now),
            age_ms: (now - report.updated_ms).max(0),
            report,
        })
        .collect())
}

/// The statuses as a table for people.
pub fn render(statuses: &[Status]) -> String {
    if statuses.is_empty() {
        return "no capture or apply process has reported yet\n".into();
    }
    let mut out = String::new();
    for s in statuses {
        let r = &s.report;
        let state = if s.state == "silent" {
            format!(
                "SILENT for {} s (was {}: killed, hung or cut off?)",
                s.age_ms / 1000,
                r.phase
            )
        } else {
            s.state.clone()
        };
        out.push_str(&format!(
            "{} {} — {}  [{} on {} pid {}, reported {} s ago]\n",
            r.kind,
            r.name,
            state,
            r.binary,
            r.host,
            r.pid,
            s.age_ms / 1000
        ));
        if let Some(p) = &r.position {
            out.push_str(&format!("    position: {p}\n"));
        }
        if let Some(lag) = r.lag_ms {
            out.push_str(&format!("    lag: {lag:.0} ms\n"));
        }
        for (table, ops) in &r.tables {
            let counts: Vec<String> = ops
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(op, n)| format!("{op}={n}"))
                .collect();
            if !counts.is_empty() {
                out.push_str(&format!("    {table}: {}\n", counts.join(" ")));
            }
        }
        if r.errors > 0 {
            out.push_str(&format!("    errors: {}\n", r.errors));
        }
        if let Some(e) = &r.last_error {
            out.push_str(&format!("    last error: {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_that_stopped_reporting_is_silent() {
        let report = |phase: &str, updated_ms| Report {
            phase: phase.into(),
            updated_ms,
            ..Report::default()
        };
        // Silent once the last report is three periods old.
        let periods = 3 * EVERY.as_millis() as i64;
        assert_eq!(state(&report("streaming", 10_000), 11_000), "streaming");
        assert_eq!(state(&report("streaming", 10_000), 10_000 + periods), "streaming");
        assert_eq!(state(&report("streaming", 10_000), 10_001 + periods), "silent");
        assert_eq!(state(&report("failed", 10_000), 99_000), "failed");
        assert_eq!(state(&report("stopped", 10_000), 99_000), "stopped");
    }
}
