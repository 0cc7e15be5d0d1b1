//! What each capture and apply process is doing, for `ferry status`: every
//! [`EVERY`], and at once when its phase changes, it writes a [`Report`] to
//! the compacted topic `_ferry_status`,
//! keyed by what it is (`capture/<prefix>`, `apply/<group>/<host>:<pid>`).
//!
//! A report is the process's phase, its position, and what its own metrics
//! say (events per table and op, lag, errors), read from the process's
//! Prometheus recorder, so the numbers are the ones `/metrics` serves. A
//! process that stops with an error writes one last report naming it; one
//! killed outright simply stops reporting, which `ferry status` shows by the
//! report's age. Reporting is best effort: a broker that cannot take a
//! report is logged and never stops the work.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kafka::{ensure_topics, KafkaSettings, TopicSpec};
use crate::metrics::Phase;
use crate::now_ms;
use crate::position::SourcePosition;

/// The topic reports go to.
pub const TOPIC: &str = "_ferry_status";
/// How often a process reports when its phase has not changed (a change is
/// reported at once). Not more often: Kafka appends a report for nothing, but
/// a broker that keeps its state in one file (the development broker) writes
/// all of it again after every change, and a report every 2 s kept that at
/// half a core for each idle apply.
pub const EVERY: Duration = Duration::from_secs(10);

/// One process's latest report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `capture` or `apply`.
    pub kind: String,
    /// The capture's prefix or the apply group.
    pub name: String,
    pub binary: String,
    pub host: String,
    pub pid: u32,
    pub started_ms: i64,
    pub updated_ms: i64,
    /// `starting`, `snapshot`, `streaming`, `stopping`, `stopped` or `failed`.
    pub phase: String,
    /// Where it stands (a capture's acknowledged source position).
    pub position: Option<serde_json::Value>,
    /// Source commit to Kafka (capture) or to the target (apply), last seen.
    pub lag_ms: Option<f64>,
    /// Per table, events (capture) or rows applied (apply) per op code.
    pub tables: BTreeMap<String, BTreeMap<String, u64>>,
    /// Errors counted so far (apply: by kind; capture: none yet).
    pub errors: u64,
    pub last_error: Option<String>,
}

/// Writes a process's reports until it finishes.
pub struct Reporter {
    key: String,
    report: Arc<Mutex<Report>>,
    producer: Option<FutureProducer>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// The metric families a report reads, per kind.
fn families(kind: &str) -> (&'static str, &'static str, &'static str) {
    match kind {
        "capture" => (
            "ferry_capture_events_total",
            "ferry_capture_lag_ms",
            "ferry_capture_errors_total",
        ),
        _ => (
            "ferry_apply_rows_total",
            "ferry_apply_lag_ms",
            "ferry_apply_errors_total",
        ),
    }
}

/// Fills `report`'s counts, lag and errors from Prometheus text.
pub fn read_metrics(report: &mut Report, text: &str) {
    let (counts, lag, errors) = families(&report.kind);
    report.tables.clear();
    report.errors = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let label = |key: &str| {
            let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
            let end = labels[start..].find('"')? + start;
            Some(labels[start..end].to_owned())
        };
        if name == counts {
            if let (Some(table), Some(op)) = (label("table"), label("op")) {
                *report.tables.entry(table).or_default().entry(op).or_default() += value as u64;
            }
        } else if name == lag {
            report.lag_ms = Some(value);
        } else if name == errors {
            report.errors += value as u64;
        }
    }
}

impl Reporter {
    /// Starts reporting as `kind` (`capture`, `apply`) named `name`, the
    /// phase read from `phase`. Never fails: without the broker it logs and
    /// reports nothing.
    pub async fn start(kafka: &KafkaSettings, kind: &str, name: &str, phase: watch::Receiver<Phase>) -> Self {
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let metrics = crate::metrics::prometheus();
        let pid = std::process::id();
        let host = host();
        let key = match kind {
            "capture" => format!("capture/{name}"),
            _ => format!("{kind}/{name}/{host}:{pid}"),
        };
        let report = Arc::new(Mutex::new(Report {
            kind: kind.to_owned(),
            name: name.to_owned(),
            binary,
            host,
            pid,
            started_ms: now_ms(),
            ..Report::default()
        }));
        let topic = TopicSpec {
            name: TOPIC.into(),
            partitions: 1,
            compacted: true,
        };
        let producer: Option<FutureProducer> = match kafka.admin() {
            Ok(admin) => match ensure_topics(&admin, &[topic]).await {
                Ok(()) => kafka.producer().create().ok(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the status topic; not reporting status");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "not reporting status");
                None
            }
        };
        let task = producer.clone().map(|producer| {
            let (key, report) = (key.clone(), Arc::clone(&report));
            let mut phase = phase;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(EVERY);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        changed = phase.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            tick.reset();
                        }
                    }
                    let snapshot = {
                        let Ok(mut r) = report.lock() else { return };
                        r.phase = phase.borrow_and_update().as_str().to_owned();
                        read_metrics(&mut r, &metrics.render());
                        r.updated_ms = now_ms();
                        r.clone()
                    };
                    send(&producer, &key, &snapshot).await;
                }
            })
        });
        Self {
            key,
            report,
            producer,
            tasks: Mutex::new(task.into_iter().collect()),
        }
    }

    /// Reports each position `positions` gives as where the process stands
    /// (a capture's acknowledged source position).
    pub fn follow(&self, mut positions: watch::Receiver<Option<SourcePosition>>) {
        let report = Arc::clone(&self.report);
        let task = tokio::spawn(async move {
            while positions.changed().await.is_ok() {
                let position = positions.borrow_and_update().clone();
                if let (Ok(mut r), Some(p)) = (report.lock(), position) {
                    r.position = serde_json::to_value(p).ok();
                }
            }
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }

    /// Stops reporting with a last report: `stopped`, or `failed` with `error`.
    pub async fn finish(&self, error: Option<String>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
        let Some(producer) = &self.producer else { return };
        let last = {
            let Ok(mut r) = self.report.lock() else { return };
            read_metrics(&mut r, &crate::metrics::prometheus().render());
            r.phase = if error.is_some() { "failed" } else { "stopped" }.into();
            r.last_error = error;
            r.updated_ms = now_ms();
            r.clone()
        };
        send(producer, &self.key, &last).await;
    }
}

async fn send(producer: &FutureProducer, key: &str, report: &Report) {
    let Ok(value) = serde_json::to_vec(report) else { return };
    let record = FutureRecord::to(TOPIC).key(key).payload(&value);
    if let Err((e, _)) = producer.send(record, Duration::from_secs(5)).await {
        tracing::debug!(error = %e, "status report not delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_the_processes_own_metrics() {
        let text = "# TYPE ferry_apply_rows_total counter\n\
                    ferry_apply_rows_total{table=\"public.orders\",op=\"c\"} 10\n\
                    ferry_apply_rows_total{table=\"public.orders\",op=\"d\"} 2\n\
                    ferry_apply_rows_total{table=\"public.items\",op=\"u\"} 5\n\
                    ferry_apply_lag_ms 42\n\
                    ferry_apply_errors_total{kind=\"registry\"} 3\n\
                    ferry_capture_events_total{table=\"x\",op=\"c\"} 99\n";
        let mut r = Report {
            kind: "apply".into(),
            ..Report::default()
        };
        read_metrics(&mut r, text);
        assert_eq!(r.tables["public.orders"]["c"], 10);
        assert_eq!(r.tables["public.orders"]["d"], 2);
        assert_eq!(r.tables["public.items"]["u"], 5);
        assert!(!r.tables.contains_key("x"));
        assert_eq!((r.lag_ms, r.errors), (Some(42.0), 3));
    }
}
