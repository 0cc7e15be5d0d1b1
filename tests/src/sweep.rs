//! Deleting the topics and registry subjects that tests and benchmarks leave
//! on the development broker and registry.
//!
//! Tests name everything they make with [`unique`](crate::unique) and do
//! not delete their topics when they end. The development broker rewrites
//! its whole state file after any change, so the leftovers cost CPU on every
//! later change: one full run left 432 topics in a 116 MB file, and a broker
//! restart reads it all back. So `scripts/test` sweeps them before and
//! between its phases with `ferry-sweep`, and the benchmark deletes its own
//! as it goes. `scripts/quickstart` leaves its run's topics too (its targets
//! are there to be queried after it); the sweep deletes those of earlier runs.

use std::time::Duration;

use ferry_core::kafka::KafkaSettings;
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{brokers, unique, SERVICES_REGISTRY};

/// What a sweep deleted, and what it could not.
#[derive(Debug, Default)]
pub struct Swept {
    pub topics: usize,
    pub subjects: usize,
    pub failures: Vec<String>,
}

/// Whether `name` carries a name made by [`unique`](crate::unique): `_`
/// and 12 lowercase hex digits, not followed by another letter or digit.
pub fn made_by_a_test(name: &str) -> bool {
    let b = name.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'_'
            && b.get(i + 1..i + 13)
                .is_some_and(|hex| hex.iter().all(|d| matches!(d, b'0'..=b'9' | b'a'..=b'f')))
            && !b.get(i + 13).is_some_and(u8::is_ascii_alphanumeric)
    })
}

/// Whether `name` is under a topic prefix of `scripts/quickstart`:
/// `quickstart`, the run's start in Unix seconds, then `.`.
pub fn made_by_the_quickstart(name: &str) -> bool {
    name.strip_prefix("quickstart")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(seconds, _)| !seconds.is_empty() && seconds.bytes().all(|d| d.is_ascii_digit()))
}

/// Deletes the broker's topics and the registry's subjects whose names are
/// `wanted`. Kafka's own topics (`__*`) are never touched.
pub async fn delete(wanted: impl Fn(&str) -> bool) -> Swept {
    let mut swept = Swept::default();
    let consumer: BaseConsumer = match KafkaSettings::new(brokers()).consumer(&unique("sweep")).create() {
        Ok(c) => c,
        Err(e) => {
            swept.failures.push(format!("no Kafka client: {e}"));
            return swept;
        }
    };
    let topics: Vec<String> = match consumer.fetch_metadata(None, Duration::from_secs(10)) {
        Ok(md) => md
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|t| !t.starts_with("__") && wanted(t))
            .collect(),
        Err(e) => {
            swept.failures.push(format!("cannot list the topics: {e}"));
            Vec::new()
        }
    };
    if !topics.is_empty() {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
        let deleted = match KafkaSettings::new(brokers()).admin() {
            Ok(admin) => admin.delete_topics(&names, &options).await,
            Err(e) => Err(e),
        };
        match deleted {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(_) => swept.topics += 1,
                        Err((topic, code)) => swept.failures.push(format!("topic {topic}: {code}")),
                    }
                }
            }
            Err(e) => swept.failures.push(format!("{} topics not deleted: {e}", names.len())),
        }
    }
    let http = reqwest::Client::new();
    let subjects: Vec<String> = match http.get(format!("{SERVICES_REGISTRY}/subjects")).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(e) => {
            swept.failures.push(format!("cannot list the registry's subjects: {e}"));
            Vec::new()
        }
    };
    for subject in subjects.iter().filter(|s| wanted(s)) {
        // Soft first: the registry deletes permanently only what was soft-deleted.
        let url = format!("{SERVICES_REGISTRY}/subjects/{subject}");
        let soft = http.delete(&url).send().await;
        let hard = http.delete(format!("{url}?permanent=true")).send().await;
        match (soft, hard) {
            (Ok(_), Ok(r)) if r.status().is_success() => swept.subjects += 1,
            (_, Ok(r)) => swept.failures.push(format!("subject {subject}: HTTP {}", r.status())),
            (Err(e), _) | (_, Err(e)) => swept.failures.push(format!("subject {subject}: {e}")),
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_made_by_unique_are_told_apart_from_others() {
        let made = unique("g");
        for name in [
            made.clone(),
            format!("{made}.public.orders"),
            format!("{made}.public.orders-value"),
            format!("_ferry_offsets_{made}"),
        ] {
            assert!(made_by_a_test(&name), "{name}");
        }
        for name in [
            "orders",
            "_schemas",
            "ferry.status",
            "inventory.public.orders",
            // Too short, too long, upper case.
            "g_0123456789a",
            "g_0123456789abc",
            "g_0123456789AB",
        ] {
            assert!(!made_by_a_test(name), "{name}");
        }
    }

    #[test]
    fn the_quickstarts_prefixes_are_told_apart_from_others() {
        for name in [
            "quickstart1796559375.public.orders",
            "quickstart1796559375.public.orders-value",
            "quickstart1796559375.transaction",
        ] {
            assert!(made_by_the_quickstart(name), "{name}");
        }
        for name in [
            "quickstart.public.orders",
            "quickstarts1.public.orders",
            "quickstart12",
            "shop.public.orders",
        ] {
            assert!(!made_by_the_quickstart(name), "{name}");
        }
    }
}
