//! The bad-input corpus: what a topic, a config file or an HTTP client may
//! hand Ferry that Ferry did not write, one named case per row of a table.
//!
//! - Payloads on a topic apply reads, each between two good rows of
//!   `public.notes`: with `--on-error fail` apply stops with one line naming
//!   the message's topic, partition and offset and what to do, having applied
//!   the row before it and nothing from it on; with `--on-error dlq` the
//!   message is a dead letter whose `ferry.error` says why, the rows around it
//!   arrive and apply goes on. A tombstone is not a change, whatever its key.
//! - Config files of every binary that takes `--config` (`ferry` takes none):
//!   not TOML, an unknown key, a value of the wrong type, no file at all. Each
//!   ends the binary at once with a last stderr line that names the file and
//!   the problem, and no panic.
//! - Registry requests that `registry.rs` does not send: each gets a
//!   Confluent error code in a JSON body, and the server keeps serving.

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferry_core::envelope::Connector;
use ferry_core::meta::{Column, DataType, TableId, TableMeta};
use ferry_core::value::Datum;
use ferry_tests::forge::Forged;
use ferry_tests::{start_apply, table_rows, unique, wait_for, PgDatabase, Registry};
use reqwest::StatusCode;
use serde_json::Value as Json;

const CATCH_UP: Duration = Duration::from_secs(90);

/// How long a binary may take to refuse a config file.
const REFUSAL: Duration = Duration::from_secs(30);

/// How a binary that was to stop by itself ended.
#[derive(Debug)]
struct Exit {
    success: bool,
    stderr: String,
}

impl Exit {
    /// Asserts that `binary` failed, without a panic, its last stderr line
    /// `<binary>: ...` holding each of `wanted`.
    fn refused(&self, case: &str, binary: &str, wanted: &[&str]) {
        assert!(!self.success, "{case}: {binary} succeeded:\n{}", self.stderr);
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("backtrace"),
            "{case}: {binary} panicked:\n{}",
            self.stderr
        );
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(&format!("{binary}: ")) && wanted.iter().all(|w| last.contains(w)),
            "{case}: the last line of {binary} should hold {wanted:?}:\n{last}"
        );
    }
}

/// Runs `binary` with `args` until it stops by itself, within `timeout`.
async fn run_to_exit(binary: &str, args: &[String], timeout: Duration) -> Exit {
    let out = tokio::time::timeout(
        timeout,
        tokio::process::Command::new(ferry_tests::binary(binary))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{binary} {args:?} did not stop by itself within {timeout:?}"))
    .unwrap_or_else(|e| panic!("run {binary}: {e}"));
    Exit {
        success: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------- payloads

/// The good event a bad message is made from, and what else a case needs.
struct Good {
    /// Row 2's key, framed.
    key: Vec<u8>,
    /// The id of `notes`' value schema.
    value_id: u32,
    /// Row 2's value, not framed.
    datum: Vec<u8>,
    /// A registered record schema of another shape than any envelope.
    unrelated_id: u32,
}

/// A message as it sits on the topic: key and value bytes as they are.
struct Message {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

impl Good {
    /// Row 2's key with `value` as the value.
    fn valued(&self, value: Vec<u8>) -> Message {
        Message {
            key: Some(self.key.clone()),
            value: Some(value),
        }
    }

    /// Row 2's key with `datum` framed as schema `id`.
    fn framed(&self, id: u32, datum: &[u8]) -> Message {
        self.valued(ferry_core::wire::encode(id, datum))
    }
}

/// What apply makes of a bad message.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Stops on it or sets it aside; the error says this.
    Refused(&'static str),
    /// Not a change at all: passed over, as every tombstone is.
    PassedOver,
}

struct PayloadCase {
    name: &'static str,
    message: fn(&Good) -> Message,
    outcome: Outcome,
}

const PAYLOADS: &[PayloadCase] = &[
    PayloadCase {
        name: "empty payload",
        message: |g| g.valued(Vec::new()),
        outcome: Outcome::Refused("value: message of 0 bytes is too short for the 5-byte Confluent header"),
    },
    PayloadCase {
        name: "magic byte not 0",
        message: |g| {
            let mut value = ferry_core::wire::encode(g.value_id, &g.datum);
            value[0] = 1;
            g.valued(value)
        },
        outcome: Outcome::Refused("value: message starts with byte 0x01, not the Confluent magic byte 0x00"),
    },
    PayloadCase {
        name: "only the 5-byte header",
        message: |g| g.framed(g.value_id, &[]),
        outcome: Outcome::Refused("corrupt Avro payload"),
    },
    PayloadCase {
        name: "schema id the registry does not know",
        message: |g| g.framed(i32::MAX as u32, &g.datum),
        outcome: Outcome::Refused(
            "schema id 2147483647: schema registry at http://127.0.0.1:8081/ answered 404: Schema not found",
        ),
    },
    PayloadCase {
        name: "schema id of an unrelated record",
        message: |g| g.framed(g.unrelated_id, &g.datum),
        outcome: Outcome::Refused("is not a table's change event, yet topic"),
    },
    PayloadCase {
        name: "truncated Avro body",
        message: |g| g.framed(g.value_id, &g.datum[..g.datum.len() / 2]),
        outcome: Outcome::Refused("corrupt Avro payload"),
    },
    PayloadCase {
        // A datum is the whole message: what follows it is corruption, not padding.
        name: "trailing garbage after a valid body",
        message: |g| g.framed(g.value_id, &[g.datum.as_slice(), b"\x02garbage"].concat()),
        outcome: Outcome::Refused("bytes after the envelope"),
    },
    PayloadCase {
        name: "malformed key with a valid value",
        message: |g| Message {
            key: Some(b"not a key".to_vec()),
            value: Some(ferry_core::wire::encode(g.value_id, &g.datum)),
        },
        outcome: Outcome::Refused("key: message starts with byte 0x6e, not the Confluent magic byte"),
    },
    PayloadCase {
        // Compaction's marker carries no change: its key is never read.
        name: "tombstone with a malformed key",
        message: |_| Message {
            key: Some(b"not a key".to_vec()),
            value: None,
        },
        outcome: Outcome::PassedOver,
    },
];

/// `public.notes (id integer key, note text)`.
fn notes() -> TableMeta {
    TableMeta::new(
        TableId::new("public", "notes"),
        vec![
            Column::new("id", DataType::Int32, "integer").not_null(),
            Column::new("note", DataType::Text, "text"),
        ],
        &["id"],
    )
    .unwrap()
}

fn note(id: i64, text: &str) -> Vec<Datum> {
    vec![Datum::Int(id), Datum::Text(text.into())]
}

/// A record schema no table has, registered under a subject of its own.
async fn unrelated_schema() -> u32 {
    let registry = ferry_core::registry::RegistryClient::new(&ferry_tests::SERVICES_REGISTRY.parse().unwrap()).unwrap();
    let schema = serde_json::json!({
        "type": "record",
        "name": "Reading",
        "namespace": "bad_input",
        "fields": [{"name": "celsius", "type": "double"}, {"name": "station", "type": "string"}]
    });
    registry
        .register(&format!("{}-value", unique("unrelated")), &schema)
        .await
        .unwrap()
}

/// A fresh prefix whose `notes` topic (one partition) holds row 1 at offset
/// 0, the case's message at offset 1 and row 3 at offset 2; its producer, and
/// that message.
async fn around(case: &PayloadCase) -> (String, Forged, Message) {
    let prefix = unique("bad");
    let forged = Forged::register(&prefix, notes(), Connector::Postgres).await;
    let admin = ferry_core::kafka::KafkaSettings::new(ferry_tests::brokers())
        .admin()
        .unwrap();
    let topic = ferry_core::kafka::TopicSpec {
        name: forged.topic.clone(),
        partitions: 1,
        compacted: false,
    };
    ferry_core::kafka::ensure_topics(&admin, &[topic]).await.unwrap();
    let (key, datum) = forged.insert(note(2, "two"));
    let good = Good {
        key: key.unwrap(),
        value_id: forged.value_id(),
        datum,
        unrelated_id: unrelated_schema().await,
    };
    let bad = (case.message)(&good);
    forged.send_insert(note(1, "one"));
    forged.send_raw(bad.key.as_deref(), bad.value.as_deref());
    forged.send_insert(note(3, "three"));
    (prefix, forged, bad)
}

/// Waits until `notes` in `target` holds just `rows`.
async fn wait_notes(target: &PgDatabase, rows: &[&str]) {
    let t = target.client().await;
    wait_for(&format!("notes {rows:?}"), CATCH_UP, || async {
        (table_rows(&t, "notes").await.ok()? == rows).then_some(())
    })
    .await;
}

/// With `--on-error fail`: a refused message stops apply at it, with the row
/// before it applied; one passed over does not stop it.
async fn stops_at(case: &'static PayloadCase) {
    let (prefix, forged, _) = around(case).await;
    let target = PgDatabase::create();
    let Outcome::Refused(error) = case.outcome else {
        let apply = start_apply(&target, &prefix, &unique("g"), &[]);
        wait_notes(&target, &["(1,one)", "(3,three)"]).await;
        assert!(apply.terminate().success(), "{}: apply failed", case.name);
        return;
    };
    let topics = format!("{}\\..*", prefix.replace('.', "\\."));
    let args: Vec<String> = [
        "--target",
        &target.url(),
        "--topics",
        &topics,
        "--group",
        &unique("g"),
        "--brokers",
        &ferry_tests::brokers(),
    ]
    .map(str::to_owned)
    .to_vec();
    let exit = run_to_exit("ferry-apply-postgres", &args, CATCH_UP).await;
    let at = format!("the message at topic {} partition 0 offset 1 (key ", forged.topic);
    exit.refused(
        case.name,
        "ferry-apply-postgres",
        &[&at, error, "apply stopped before it: run with --on-error dlq"],
    );
    // The row before it is applied, with the offset of the message itself.
    let t = target.client().await;
    let rows = table_rows(&t, "notes").await.unwrap_or_default();
    assert_eq!(rows, ["(1,one)"], "{}", case.name);
    let next: i64 = t
        .query_one(
            "SELECT next_offset FROM _ferry_offsets WHERE topic = $1",
            &[&forged.topic],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 1, "{}", case.name);
}

/// With `--on-error dlq`: a refused message is a dead letter, one passed over
/// is not; the rows around it arrive and apply goes on.
async fn sets_aside(case: &'static PayloadCase) {
    let (prefix, forged, bad) = around(case).await;
    let target = PgDatabase::create();
    let dlq = unique("dlq");
    let apply = start_apply(
        &target,
        &prefix,
        &unique("g"),
        &["--on-error", "dlq", "--dlq-topic", &dlq],
    );
    wait_notes(&target, &["(1,one)", "(3,three)"]).await;
    // A dead letter is durable before anything after its message is applied.
    match case.outcome {
        Outcome::Refused(error) => {
            // Read on a thread of its own: it polls, and the other cases go on meanwhile.
            let topic = dlq.clone();
            let letters = tokio::task::spawn_blocking(move || ferry_tests::read_letters(&topic, 1, CATCH_UP))
                .await
                .unwrap();
            let [letter] = letters.as_slice() else {
                panic!("{}: {} dead letters: {letters:?}", case.name, letters.len());
            };
            // The value byte for byte (an empty one may come back as none).
            assert_eq!(
                letter.payload.as_deref().unwrap_or_default(),
                bad.value.as_deref().unwrap_or_default(),
                "{}",
                case.name
            );
            let header = |name: &str| letter.headers.get(name).map(String::as_str);
            assert_eq!(header("ferry.topic"), Some(forged.topic.as_str()), "{}", case.name);
            assert_eq!(header("ferry.partition"), Some("0"), "{}", case.name);
            assert_eq!(header("ferry.offset"), Some("1"), "{}", case.name);
            assert!(
                header("ferry.error").is_some_and(|e| e.contains(error)),
                "{}: {:?}",
                case.name,
                letter.headers
            );
        }
        Outcome::PassedOver => {
            assert_eq!(ferry_tests::topic_count(&dlq), 0, "{}: a dead letter", case.name);
        }
    }
    forged.send_insert(note(4, "four"));
    wait_notes(&target, &["(1,one)", "(3,three)", "(4,four)"]).await;
    assert!(apply.terminate().success(), "{}: apply failed", case.name);
}

/// Runs `check` on every case of [`PAYLOADS`] at once, then fails naming
/// each case that failed and why.
async fn each_payload<Fut>(check: fn(&'static PayloadCase) -> Fut)
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use futures::FutureExt;
    let mut runs = tokio::task::JoinSet::new();
    for case in PAYLOADS {
        let run = std::panic::AssertUnwindSafe(check(case)).catch_unwind();
        runs.spawn(async move { (case.name, run.await) });
    }
    let mut failed = Vec::new();
    while let Some(ended) = runs.join_next().await {
        let (case, result) = ended.unwrap();
        if let Err(panic) = result {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{case}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[tokio::test]
async fn bad_payloads_stop_apply_at_them_with_one_clear_line() {
    each_payload(stops_at).await;
}

#[tokio::test]
async fn bad_payloads_become_dead_letters_and_apply_goes_on() {
    each_payload(sets_aside).await;
}

// ------------------------------------------------------------ config files

/// A binary that takes `--config`: flags that make everything but the file
/// valid (nothing reachable: a file taken by mistake fails differently), and
/// one of its keys with a value of the wrong type.
struct ConfigBinary {
    name: &'static str,
    flags: &'static [&'static str],
    wrong_type: &'static str,
}

const CONFIG_BINARIES: &[ConfigBinary] = &[
    ConfigBinary {
        name: "ferry-capture-postgres",
        flags: &[
            "--source",
            "postgres://postgres@127.0.0.1:1/none",
            "--prefix",
            "bad_config",
        ],
        wrong_type: "snapshot_workers = \"two\"",
    },
    ConfigBinary {
        name: "ferry-capture-mysql",
        flags: &["--source", "mysql://root@127.0.0.1:1/none", "--prefix", "bad_config"],
        wrong_type: "server_id = \"one\"",
    },
    ConfigBinary {
        name: "ferry-apply-postgres",
        flags: &[
            "--target",
            "postgres://postgres@127.0.0.1:1/none",
            "--topics",
            "bad_config\\..*",
            "--group",
            "bad_config",
            "--brokers",
            "127.0.0.1:1",
        ],
        wrong_type: "batch_size = \"many\"",
    },
    ConfigBinary {
        name: "ferry-schema-registry",
        flags: &["--listen", "127.0.0.1:1", "--brokers", "127.0.0.1:1"],
        wrong_type: "read_only = \"yes\"",
    },
];

/// A config file, and what the error names besides the file.
struct ConfigCase {
    name: &'static str,
    /// The file's text (`None`: no file at all).
    text: fn(&ConfigBinary) -> Option<String>,
    says: fn(&ConfigBinary) -> &'static str,
}

/// The key a wrong-typed value is given to.
fn key_of(binary: &ConfigBinary) -> &'static str {
    binary.wrong_type.split(' ').next().unwrap_or_default()
}

const CONFIG_CASES: &[ConfigCase] = &[
    ConfigCase {
        name: "not TOML",
        text: |_| Some("brokers: 127.0.0.1:9092\n".into()),
        says: |_| "not valid TOML at line 1, column ",
    },
    ConfigCase {
        name: "an unknown key",
        text: |_| Some("brokerz = \"127.0.0.1:9092\"\n".into()),
        says: |_| "brokerz",
    },
    ConfigCase {
        name: "a value of the wrong type",
        text: |b| Some(format!("{}\n", b.wrong_type)),
        says: key_of,
    },
    ConfigCase {
        name: "no such file",
        text: |_| None,
        says: |_| "cannot be read",
    },
];

#[tokio::test]
async fn bad_config_files_stop_every_binary_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    for binary in CONFIG_BINARIES {
        for case in CONFIG_CASES {
            let path = dir
                .path()
                .join(format!("{}-{}.toml", binary.name, case.name.replace(' ', "-")));
            if let Some(text) = (case.text)(binary) {
                std::fs::write(&path, text).unwrap();
            }
            let mut args = vec!["--config".to_owned(), path.display().to_string()];
            args.extend(binary.flags.iter().map(|f| (*f).to_owned()));
            let exit = run_to_exit(binary.name, &args, REFUSAL).await;
            let file = format!("config file {}", path.display());
            exit.refused(case.name, binary.name, &[&file, (case.says)(binary)]);
            // Nothing was logged yet: that line is all there is.
            assert_eq!(exit.stderr.lines().count(), 1, "{}: {}", case.name, exit.stderr);
        }
    }
}

// -------------------------------------------------------- registry requests

/// A request `registry.rs` does not send, and the Confluent error it gets.
struct RequestCase {
    name: &'static str,
    method: &'static str,
    /// `{subject}` stands for a subject that holds one schema.
    path: &'static str,
    content_type: Option<&'static str>,
    body: &'static [u8],
    status: u16,
    code: u64,
}

const CT: &str = "application/vnd.schemaregistry.v1+json";

const REQUESTS: &[RequestCase] = &[
    RequestCase {
        name: "invalid JSON in a subject's compatibility setting",
        method: "PUT",
        path: "/config/{subject}",
        content_type: Some(CT),
        body: b"{\"compatibility\": ",
        status: 400,
        code: 400,
    },
    RequestCase {
        name: "invalid JSON in a lookup",
        method: "POST",
        path: "/subjects/{subject}",
        content_type: Some(CT),
        body: b"{schema",
        status: 400,
        code: 400,
    },
    RequestCase {
        name: "invalid JSON in a compatibility check",
        method: "POST",
        path: "/compatibility/subjects/{subject}/versions/latest",
        content_type: Some(CT),
        body: b"[",
        status: 400,
        code: 400,
    },
    RequestCase {
        name: "a schema that is not Avro in a compatibility check",
        method: "POST",
        path: "/compatibility/subjects/{subject}/versions/latest",
        content_type: Some(CT),
        body: br#"{"schema": "{\"type\": \"recrod\"}"}"#,
        status: 422,
        code: 42201,
    },
    RequestCase {
        name: "an empty body",
        method: "POST",
        path: "/subjects/{subject}/versions",
        content_type: Some(CT),
        body: b"",
        status: 400,
        code: 400,
    },
    RequestCase {
        name: "a body that is not UTF-8",
        method: "POST",
        path: "/subjects/{subject}/versions",
        content_type: Some(CT),
        body: b"{\"schema\": \"\xff\xfe\"}",
        status: 400,
        code: 400,
    },
    RequestCase {
        name: "a wrong Content-Type with invalid JSON",
        method: "POST",
        path: "/subjects/{subject}/versions",
        content_type: Some("text/plain"),
        body: b"<schema/>",
        status: 400,
        code: 400,
    },
    RequestCase {
        name: "a schema id past 2^32",
        method: "GET",
        path: "/schemas/ids/99999999999",
        content_type: None,
        body: b"",
        status: 404,
        code: 40403,
    },
    RequestCase {
        name: "a method the path does not take",
        method: "PUT",
        path: "/subjects/{subject}/versions",
        content_type: Some(CT),
        body: b"{}",
        status: 405,
        code: 405,
    },
    RequestCase {
        name: "a query flag that is not a boolean",
        method: "GET",
        path: "/subjects?deleted=maybe",
        content_type: None,
        body: b"",
        status: 400,
        code: 400,
    },
    RequestCase {
        name: "a subject that is not UTF-8",
        method: "GET",
        path: "/subjects/%FF%FE/versions",
        content_type: None,
        body: b"",
        status: 400,
        code: 400,
    },
];

#[tokio::test]
async fn bad_registry_requests_get_confluent_errors_and_the_server_stays_up() {
    let registry = Registry::start().await;
    let http = reqwest::Client::new();
    let subject = unique("bad-request-value");
    let schema = serde_json::json!({"schema": "{\"type\": \"record\", \"name\": \"R\", \"fields\": []}"});
    let register = || {
        http.post(format!("{}/subjects/{subject}/versions", registry.url))
            .header("Content-Type", CT)
            .body(schema.to_string())
            .send()
    };
    assert_eq!(register().await.unwrap().status(), StatusCode::OK);
    let mut failed = Vec::new();
    for case in REQUESTS {
        let url = format!("{}{}", registry.url, case.path.replace("{subject}", &subject));
        let mut request = http.request(case.method.parse().unwrap(), url).body(case.body.to_vec());
        if let Some(ct) = case.content_type {
            request = request.header("Content-Type", ct);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        let message = body["message"].as_str().unwrap_or_default();
        if status != case.status || body["error_code"].as_u64() != Some(case.code) || message.is_empty() {
            failed.push(format!(
                "{}: want {} with error_code {}, got {status} {text:?}",
                case.name, case.status, case.code
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // Still healthy, still registering.
    let health = http.get(format!("{}/health", registry.url)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(register().await.unwrap().status(), StatusCode::OK);
}
