//! Helpers shared by Ferry's end-to-end tests.
//!
//! Every test makes its own topics, databases and groups with unique names, so
//! tests run in parallel against one set of services, and waits on conditions
//! with a deadline instead of sleeping. Services are reached on loopback at the
//! addresses `scripts/services` gives them; `FERRY_TEST_BROKERS` overrides the
//! broker's.

pub mod duck;
pub mod faults;
pub mod forge;
pub mod mariadb;
pub mod pg_types;
pub mod sweep;
pub mod workload;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The broker the tests run against.
pub fn brokers() -> String {
    std::env::var("FERRY_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Whether the configured broker claims transaction support
/// (`FERRY_BROKER_TRANSACTIONS=true`, set by `scripts/test` for the dev broker).
pub fn broker_claims_transactions() -> bool {
    std::env::var("FERRY_BROKER_TRANSACTIONS").is_ok_and(|v| v == "true" || v == "1")
}

/// True (and says so) when a test of Kafka transactions must skip: the
/// broker does not claim them.
pub fn skip_without_transactions() -> bool {
    let skip = !broker_claims_transactions();
    if skip {
        eprintln!("skipped: the broker does not claim transactions (FERRY_BROKER_TRANSACTIONS); Ferry runs at-least-once into Kafka there");
    }
    skip
}

/// A name no other test (or earlier run) uses: `<prefix>_<12 hex digits>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The repository root, for running `scripts/`.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// GET `url` through one client per process. `reqwest::get` builds a client
/// each call, and a client loads the system's root certificates: polled every
/// 50 ms (`wait_for`), that took a fifth of the two cores from the benchmark it
/// was watching. No connection is kept between requests, so none outlives the
/// runtime of the test that opened it.
pub async fn http_get(url: &str) -> reqwest::Result<reqwest::Response> {
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client")
    });
    CLIENT.get(url).send().await
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The development CA and the certificates it signed (`scripts/services up`
/// makes them): ca.pem, server.pem/.key, client.pem/.key for user ferry_cert.
pub fn tls_dir() -> PathBuf {
    std::env::var_os("FERRY_SERVICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".services"))
        .join("tls")
}

/// A Ferry binary built by `cargo build --workspace --bins` (which `scripts/test`
/// runs first), next to this test's own executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs from target/<profile>/deps/, a binary (ferry-bench) from target/<profile>/.
    let dir = exe.parent().map(|d| {
        if d.ends_with("deps") {
            d.parent().unwrap_or(d)
        } else {
            d
        }
    });
    let path = dir.map(|d| d.join(name)).unwrap_or_default();
    assert!(
        path.exists(),
        "{} not built; run `cargo build --workspace --bins` (scripts/test does)",
        path.display()
    );
    path
}

/// A schema registry served in this process on a free loopback port, with its
/// own storage topic, stopped when dropped.
#[derive(Debug)]
pub struct Registry {
    pub url: String,
    pub topic: String,
    /// Held, not read: dropping it shuts the server down.
    _stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ferry_schema_registry::ServerError>>,
}

impl Registry {
    /// Starts a registry on a new topic.
    pub async fn start() -> Registry {
        Registry::start_with(registry_config(&unique("_ferry_schemas_test"))).await
    }

    /// Starts a registry with the given config, waiting until it answers.
    pub async fn start_with(config: ferry_schema_registry::Config) -> Registry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let topic = config.topic.clone();
        let task = tokio::spawn(ferry_schema_registry::run(listener, config, async {
            let _ = stopped.await;
        }));
        let registry = Registry {
            url,
            topic,
            _stop: stop,
            task,
        };
        registry.wait_healthy().await;
        registry
    }

    pub async fn wait_healthy(&self) {
        let url = format!("{}/health", self.url);
        wait_for("the registry to answer /health", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let r = http_get(&url).await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registry settings for tests: the test broker, the given topic, no auth.
pub fn registry_config(topic: &str) -> ferry_schema_registry::Config {
    ferry_schema_registry::Config {
        kafka: ferry_core::kafka::KafkaSettings::new(brokers()),
        topic: topic.to_owned(),
        read_only: false,
        basic_auth: None,
        max_body: 1024 * 1024,
        advertised_url: None,
        tls: None,
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The development broker's binary: `FERRY_TEST_BROKER_BIN`, or the noida-db
/// that `scripts/services up` installed.
pub(crate) fn broker_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("FERRY_TEST_BROKER_BIN") {
        return PathBuf::from(bin);
    }
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    let cache = home.join(".cache/ferry");
    std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("lib"))
        .flat_map(|lib| std::fs::read_dir(lib).into_iter().flatten().flatten())
        .map(|py| py.path().join("site-packages/noida_db/noida-db"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no broker binary under {}; run scripts/services up", cache.display()))
}

/// The development broker's arguments to serve Kafka alone on loopback
/// `port`, keeping its data in `dir`.
pub(crate) fn broker_args(port: u16, dir: &std::path::Path) -> Vec<String> {
    let port = port.to_string();
    let dir = dir.display().to_string();
    [
        "start",
        "--only",
        "kafka",
        "--host",
        "127.0.0.1",
        "--kafka-port",
        &port,
        "--data-dir",
        &dir,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A broker of the development kind private to one test, on its own port and
/// data directory, which the test may freeze (SIGSTOP) to fault it.
#[derive(Debug)]
pub struct PrivateBroker {
    pub address: String,
    child: std::process::Child,
    dir: PathBuf,
}

impl PrivateBroker {
    pub async fn start() -> PrivateBroker {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("ferry-broker"));
        std::fs::create_dir_all(&dir).expect("broker data dir");
        let child = std::process::Command::new(broker_binary())
            .args(broker_args(port, &dir))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the private broker");
        let address = format!("127.0.0.1:{port}");
        wait_for("the private broker to listen", Duration::from_secs(30), || {
            let address = address.clone();
            async move { tokio::net::TcpStream::connect(&address).await.ok().map(|_| ()) }
        })
        .await;
        PrivateBroker { address, child, dir }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops the broker in its tracks: connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL database of its own for one test, dropped (with its
/// replication slots) when the test ends.
#[derive(Debug)]
pub struct PgDatabase {
    pub name: String,
}

pub(crate) fn psql_admin(sql: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qAtX",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql")
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let name = unique("ferry_test");
        let out = psql_admin(&format!("CREATE DATABASE {name}"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        PgDatabase { name }
    }

    /// `postgres://postgres@127.0.0.1:5432/<name>`, or as another user.
    pub fn url_as(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:5432/{}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_as("postgres")
    }

    /// A connection as the superuser.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect_pg(&self.url()).await
    }

    /// Waits until a process holds the replication slot `slot`.
    pub async fn wait_slot_active(&self, slot: &str) {
        let client = self.client().await;
        wait_for(&format!("slot {slot} to be held"), Duration::from_secs(60), || async {
            client
                .query_opt(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
                    &[&slot],
                )
                .await
                .ok()
                .flatten()
                .map(|_| ())
        })
        .await;
    }

    /// The first column of each row `sql` returns, as text.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        self.client()
            .await
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Runs SQL as the superuser, panicking on error.
    pub async fn execute(&self, sql: &str) {
        self.client().await.batch_execute(sql).await.unwrap_or_else(|e| {
            panic!(
                "{sql}: {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
            )
        });
    }
}

/// `ferry migrate` of `source` into `targets` under `prefix` in `mode`, on the test broker.
pub fn ferry_migrate(source: &str, targets: &[&str], prefix: &str, mode: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary("ferry"));
    command.args([
        "migrate",
        "--source",
        source,
        "--mode",
        mode,
        "--prefix",
        prefix,
        "--brokers",
        &brokers(),
    ]);
    for t in targets {
        command.args(["--target", t]);
    }
    command
}

/// `ferry migrate --mode full-load` of `source` into `targets` under
/// `prefix`, which must stop by itself with every target validated equal;
/// what it printed on stdout (the reports) and stderr (the live view).
pub async fn ferry_full_load(source: &str, targets: &[&str], prefix: &str) -> (String, String) {
    ferry_full_load_with(source, targets, prefix, &[]).await
}

/// [`ferry_full_load`] with `extra` flags.
pub async fn ferry_full_load_with(source: &str, targets: &[&str], prefix: &str, extra: &[&str]) -> (String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        ferry_migrate(source, targets, prefix, "full-load").args(extra).output(),
    )
    .await
    .expect("a full load stops by itself")
    .expect("run ferry migrate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for i in 0..targets.len() {
        assert!(
            stdout.contains(&format!("target {i} equals the source: safe to switch to")),
            "{stdout}"
        );
    }
    (stdout, stderr)
}

/// Connects with tokio-postgres, driving the connection in a task.
pub async fn connect_pg(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = &self.name;
        psql_admin(&format!(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '{name}' AND active_pid IS NOT NULL"
        ));
        psql_admin(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}'"
        ));
        psql_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

/// One message of a table topic, decoded through the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub key: Option<Vec<u8>>,
    /// `None` for a tombstone.
    pub event: Option<ferry_core::envelope::ChangeEvent>,
}

/// Reads `n` messages of `topic` from the beginning (no consumer group), as
/// (key, value) bytes in each partition's order.
pub async fn read_raw(topic: &str, n: usize) -> Vec<RawMessage> {
    read_raw_at(&brokers(), topic, n).await
}

/// [`read_raw`] from the brokers at `brokers`.
pub async fn read_raw_at(brokers: &str, topic: &str, n: usize) -> Vec<RawMessage> {
    read_raw_until(brokers, topic, &format!("{n} messages"), |out| out.len() >= n).await
}

/// A message's key and value.
pub type RawMessage = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Reads `topic` from the beginning until `done` says what was read is
/// enough (`want` names it in the panic if a minute passes without a message).
async fn read_raw_until(
    brokers: &str,
    topic: &str,
    want: &str,
    mut done: impl FnMut(&[RawMessage]) -> bool,
) -> Vec<RawMessage> {
    use rdkafka::message::Message;
    let consumer = assigned_consumer(brokers, topic).await;
    let mut out = Vec::new();
    while !done(&out) {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} messages on {topic}, waiting for {want}", out.len()))
            .unwrap_or_else(|e| panic!("consume {topic}: {e}"));
        out.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
    }
    out
}

/// A `read_committed` consumer of every partition of `topic` from its start,
/// without a consumer group; waits for the topic to exist.
async fn assigned_consumer(brokers: &str, topic: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = ferry_core::kafka::KafkaSettings::new(brokers)
        .consumer(&unique("reader"))
        .create()
        .expect("consumer");
    // The topic is created by what the test started; a subscription to a topic
    // that does not exist yet would only notice it at the next metadata refresh.
    let partitions: Vec<i32> = wait_for(&format!("topic {topic} to exist"), Duration::from_secs(60), || async {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
        let t = md.topics().iter().find(|t| t.name() == topic && t.error().is_none())?;
        let ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in partitions {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// The messages of `topic` a `read_committed` consumer sees from the
/// beginning: it reads until `quiet` passes without a new one.
pub async fn count_committed(topic: &str, quiet: Duration) -> usize {
    let consumer = assigned_consumer(&brokers(), topic).await;
    let mut seen = 0;
    while let Ok(received) = tokio::time::timeout(quiet, consumer.recv()).await {
        received.unwrap_or_else(|e| panic!("consume {topic}: {e}"));
        seen += 1;
    }
    seen
}

/// Reads `n` messages of `topic` from the beginning (no consumer group),
/// decoding values with the schema each one names.
pub async fn read_topic(topic: &str, n: usize, registry_url: &str) -> Vec<Received> {
    read_topic_at(&brokers(), topic, n, registry_url).await
}

/// Reads `topic` from the beginning until `n` distinct keys were seen (an
/// at-least-once topic may hold duplicates), decoding as [`read_topic`].
pub async fn read_topic_keys(topic: &str, n: usize, registry_url: &str) -> Vec<Received> {
    let mut keys = std::collections::HashSet::new();
    let raw = read_raw_until(&brokers(), topic, &format!("{n} distinct keys"), |out| {
        if let Some((key, _)) = out.last() {
            keys.insert(key.clone());
        }
        keys.len() >= n
    })
    .await;
    decode_all(raw, registry_url).await
}

/// [`read_topic`] from the brokers at `brokers`.
pub async fn read_topic_at(brokers: &str, topic: &str, n: usize, registry_url: &str) -> Vec<Received> {
    decode_all(read_raw_at(brokers, topic, n).await, registry_url).await
}

/// Messages decoded with the schema each one names (each schema's codec
/// built once: a snapshot's topic holds many thousands of one schema).
async fn decode_all(raw: Vec<RawMessage>, registry_url: &str) -> Vec<Received> {
    let registry = ferry_core::registry::RegistryClient::new(&registry_url.parse().expect("registry URL"))
        .expect("registry client");
    let mut codecs = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (key, value) in raw {
        let event = match value {
            None => None,
            Some(bytes) => {
                let (id, datum) = ferry_core::wire::decode(&bytes).expect("wire format");
                let codec = match codecs.entry(id) {
                    std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                    std::collections::hash_map::Entry::Vacant(new) => {
                        let schema = registry.schema(id).await.expect("schema by id");
                        new.insert(
                            ferry_core::codec::TableCodec::from_value_schema(&schema.json).expect("Ferry schema"),
                        )
                    }
                };
                Some(codec.decode_value(datum).expect("decode"))
            }
        };
        out.push(Received { key, event });
    }
    out
}

/// A message of a dead-letter topic: the original payload and the headers
/// apply added (`ferry.topic`, `ferry.offset`, `ferry.error`, ...).
#[derive(Debug)]
pub struct Letter {
    pub payload: Option<Vec<u8>>,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The first `n` messages of `topic` with their headers (fewer if they do
/// not come within `timeout`).
pub fn read_letters(topic: &str, n: usize, timeout: Duration) -> Vec<Letter> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::Message;
    let consumer: BaseConsumer = ferry_core::kafka::KafkaSettings::new(brokers())
        .consumer(&unique("read"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut letters = Vec::new();
    let deadline = Instant::now() + timeout;
    while letters.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                            (h.key.to_owned(), value)
                        })
                        .collect()
                })
                .unwrap_or_default();
            letters.push(Letter {
                payload: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    letters
}

/// Waits until a capture of `db` under `prefix` (default slot, offsets topic
/// and broker) streams: its slot's consistent point is stored, so it is behind
/// what the test writes next, and it holds its slot, which it does once its
/// snapshot is done.
pub async fn wait_streaming(db: &PgDatabase, prefix: &str) {
    use ferry_capture::offsets::Offsets;
    use ferry_core::position::SourcePosition;
    let slot = ferry_capture::postgres::PgCaptureConfig::default_name(prefix);
    let offsets = Offsets::open(&ferry_core::kafka::KafkaSettings::new(brokers()), "_ferry_offsets")
        .await
        .expect("offsets topic");
    wait_for("the slot's position to be stored", Duration::from_secs(60), || async {
        offsets.load::<SourcePosition>(prefix).await.ok().flatten()
    })
    .await;
    db.wait_slot_active(&slot).await;
}

/// The registry `scripts/services up` runs.
pub const SERVICES_REGISTRY: &str = "http://127.0.0.1:8081";

/// The log filter of the Ferry binaries tests start: `FERRY_TEST_LOG`
/// (e.g. `info,ferry_capture=debug` to follow a flaky test), else `info`.
fn child_log() -> String {
    std::env::var("FERRY_TEST_LOG").unwrap_or_else(|_| "info".into())
}

/// A Ferry binary running as a child process, killed when dropped.
#[derive(Debug)]
pub struct Running {
    child: std::process::Child,
}

impl Running {
    pub fn start(name: &str, args: &[&str]) -> Running {
        let child = std::process::Command::new(binary(name))
            .args(args)
            .env("FERRY_LOG", child_log())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Running { child }
    }

    /// `name` with `args` and the environment variables `envs`, writing
    /// stdout and stderr to the file `log`.
    pub fn start_logged(name: &str, args: &[&str], envs: &[(&str, &str)], log: &std::path::Path) -> Running {
        let out = std::fs::File::create(log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = std::process::Command::new(binary(name))
            .args(args)
            .envs(envs.iter().copied())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Running { child }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait");
        std::mem::forget(self);
        status
    }

    /// Waits for the process to exit by itself, panicking after `timeout`.
    pub async fn exited(mut self, timeout: Duration) -> std::process::ExitStatus {
        let status = wait_for("the process to exit", timeout, || {
            let status = self.child.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        std::mem::forget(self);
        status
    }

    /// SIGKILL.
    pub fn kill9(self) {
        drop(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages in a topic: the sum of its partitions' high watermarks (0 if the
/// topic does not exist yet).
pub fn topic_count(topic: &str) -> i64 {
    topic_count_at(&brokers(), topic)
}

/// [`topic_count`] on the brokers at `brokers`.
pub fn topic_count_at(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ferry_core::kafka::KafkaSettings::new(brokers)
        .consumer(&unique("count"))
        .create()
        .expect("consumer");
    let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    md.topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

/// Arguments of `ferry-capture-postgres` for `db` under `prefix` on the test
/// broker, then `extra`.
pub fn capture_args<'a>(db: &'a PgDatabase, prefix: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = ["--source", &db.url(), "--prefix", prefix]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !extra.contains(&"--brokers") {
        args.extend(["--brokers".to_owned(), brokers()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `ferry-capture-postgres` of `db` under `prefix`.
pub fn start_capture(db: &PgDatabase, prefix: &str, extra: &[&str]) -> Running {
    let args = capture_args(db, prefix, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Running::start("ferry-capture-postgres", &args)
}

/// `ferry-apply-postgres` of the topics of `prefix` into `target` as `group`,
/// then `extra`.
pub fn start_apply(target: &PgDatabase, prefix: &str, group: &str, extra: &[&str]) -> Running {
    start_apply_with("ferry-apply-postgres", &target.url(), prefix, group, extra)
}

/// The apply binary `binary` of the topics of `prefix` into the target at
/// `url` as `group`, then `extra`.
pub fn start_apply_with(binary: &str, url: &str, prefix: &str, group: &str, extra: &[&str]) -> Running {
    let topics = format!("{}\\..*", prefix.replace('.', "\\."));
    let broker = brokers();
    let mut args = vec![
        "--target",
        url,
        "--topics",
        &topics,
        "--group",
        group,
        "--brokers",
        &broker,
    ];
    args.extend(extra);
    Running::start(binary, &args)
}

/// Runs the apply binary `binary` of the topics of `prefix` into the target at
/// `url` until it exits by itself (within `timeout`): whether it succeeded,
/// and the last line it wrote to stderr.
pub async fn apply_until_exit(binary: &str, url: &str, prefix: &str, timeout: Duration) -> (bool, String) {
    let topics = format!("{}\\..*", prefix.replace('.', "\\."));
    let out = tokio::time::timeout(
        timeout,
        tokio::process::Command::new(crate::binary(binary))
            .args(["--target", url, "--topics", &topics, "--group", &unique("g")])
            .args(["--brokers", &brokers()])
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{binary} did not stop by itself within {timeout:?}"))
    .unwrap_or_else(|e| panic!("run {binary}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    (out.status.success(), last)
}

/// Every row of `table` as PostgreSQL prints it, sorted.
pub async fn table_rows(client: &tokio_postgres::Client, table: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT ferry_row::text FROM {table} ferry_row ORDER BY 1"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Waits until each of `tables` holds the same rows in `target` as in `source`.
pub async fn wait_equal(source: &PgDatabase, target: &PgDatabase, tables: &[&str], timeout: Duration) {
    let (s, t) = (source.client().await, target.client().await);
    for table in tables {
        wait_rows(
            &format!("table {table}"),
            timeout,
            || async { table_rows(&s, table).await.expect("source rows") },
            || async { table_rows(&t, table).await.unwrap_or_default() },
        )
        .await;
    }
}

/// Waits until `got` returns the rows `want` does (each sorted), or panics
/// naming `what` with some rows missing and extra.
pub async fn wait_rows<W, WF, G, GF>(what: &str, timeout: Duration, mut want: W, mut got: G)
where
    W: FnMut() -> WF,
    WF: Future<Output = Vec<String>>,
    G: FnMut() -> GF,
    GF: Future<Output = Vec<String>>,
{
    let mut last = (vec![], vec![]);
    let waited = tokio::time::timeout(timeout, async {
        loop {
            let (want, got) = (want().await, got().await);
            if want == got {
                return;
            }
            last = (want, got);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if waited.is_err() {
        let (want, got) = &last;
        let clip = |r: &String| r.chars().take(400).collect::<String>();
        let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(3).map(clip).collect();
        let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(3).map(clip).collect();
        panic!(
            "{what}: target never matched the source ({} vs {} rows); missing {missing:?}, extra {extra:?}",
            want.len(),
            got.len()
        );
    }
}

/// How [`pg_text_rows`] and [`mariadb::text_rows`] print NULL.
pub const NULL_CELL: &str = "∅";

/// The rows `sql` returns from PostgreSQL (ISO dates, UTC, hex bytea), each as
/// its columns' text (`∅` for NULL) joined by `|`, sorted. An error is `None`
/// (the table may not exist yet).
pub async fn pg_text_rows(client: &tokio_postgres::Client, sql: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for m in client
        .simple_query(&format!(
            "SET DateStyle = ISO; SET TimeZone = UTC; SET IntervalStyle = iso_8601; SET bytea_output = hex; {sql}"
        ))
        .await
        .ok()?
    {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            out.push(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or(NULL_CELL).to_owned())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out.sort();
    Some(out)
}
