//! What the fault suite runs and breaks: a broker and a registry of its own,
//! the proxy the captures reach the broker through, and two pipelines that
//! cross the engines (PostgreSQL to MariaDB, MariaDB to PostgreSQL), so that
//! restarting one database server restarts a source and a target at once.
//!
//! Every process runs the way a service manager runs it: when it exits, for
//! any reason, it is started again a second later, and the exit is recorded
//! with the last line it logged. The driver keeps them running by calling
//! [`Stack::tend`] (through [`Stack::run_for`] and [`Stack::tending`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::proxy::Proxy;
use super::workload::{self, Conn, Script, Writer};
use super::{Engine, Rng};
use crate::mariadb::{self, MariaDatabase};
use crate::{binary, free_port, unique, wait_for, PgDatabase};

/// A process kept running: restarted a second after it exits.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    down_since: Instant,
    /// Exits the suite did not cause: the status and the last line logged.
    pub exits: Vec<String>,
}

impl Service {
    fn start(name: &str, program: PathBuf, args: Vec<String>, dir: &Path) -> Service {
        let mut service = Service {
            name: name.to_owned(),
            program,
            args,
            log: dir.join(format!("{name}.log")),
            child: None,
            down_since: Instant::now(),
            exits: Vec::new(),
        };
        service.spawn();
        service
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("FERRY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    /// SIGKILL; [`Service::tend`] starts it again.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.down_since = Instant::now();
    }

    /// Records an exit, and starts the process again a second after it.
    pub fn tend(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.down_since = Instant::now();
                self.exits.push(format!("{status}: {}", last_line(&self.log)));
            }
        }
        if self.child.is_none() && self.down_since.elapsed() >= Duration::from_secs(1) {
            self.spawn();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn last_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned()
}

/// A tmpfs the PostgreSQL target's database lives on (as its tablespace),
/// which the suite can fill to make every write of the target fail for want
/// of space, as a full disk does. Mounting needs root.
#[derive(Debug)]
pub struct Disk {
    mount: PathBuf,
    pub tablespace: String,
}

const DISK_SIZE: &str = "size=1g";

/// Runs `sql` as PostgreSQL's superuser; psql's complaint as the error.
fn psql(sql: &str) -> Result<(), String> {
    let out = crate::psql_admin(sql);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Runs a command to its end; its stderr as the error.
async fn run(command: &mut Command) -> Result<(), String> {
    let out = tokio::process::Command::from(std::mem::replace(command, Command::new("true")))
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

impl Disk {
    /// A tablespace on a new tmpfs, or why there cannot be one here.
    pub async fn create(dir: &Path) -> Result<Disk, String> {
        let mount = dir.join("disk");
        std::fs::create_dir_all(&mount).map_err(|e| e.to_string())?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", DISK_SIZE, "tmpfs"])
            .arg(&mount))
        .await
        .map_err(|e| format!("mount a tmpfs (needs root): {e}"))?;
        let disk = Disk {
            mount,
            tablespace: unique("ferry_faults"),
        };
        run(Command::new("chown").args(["postgres:postgres"]).arg(&disk.mount)).await?;
        psql(&format!(
            "CREATE TABLESPACE {} LOCATION '{}'",
            disk.tablespace,
            disk.mount.display()
        ))?;
        Ok(disk)
    }

    /// Shrinks the file system to what it holds and a few pages: the next
    /// pages the tables need fail. (A size below what is in use is refused,
    /// and the target writes meanwhile: a few tries.)
    pub async fn fill(&self) -> Result<(), String> {
        let mut refused = String::new();
        for _ in 0..5 {
            let out = tokio::process::Command::new("df")
                .args(["-B1", "--output=used"])
                .arg(&self.mount)
                .output()
                .await
                .map_err(|e| e.to_string())?;
            let used: u64 = String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .and_then(|l| l.trim().parse().ok())
                .ok_or("df printed no usage")?;
            match self.remount(&format!("size={}", used + 16 * 4096)).await {
                Ok(()) => return Ok(()),
                Err(e) => refused = e,
            }
        }
        Err(refused)
    }

    pub async fn free(&self) -> Result<(), String> {
        self.remount(DISK_SIZE).await
    }

    async fn remount(&self, size: &str) -> Result<(), String> {
        run(Command::new("mount")
            .args(["-o", &format!("remount,{size}")])
            .arg(&self.mount))
        .await
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP TABLESPACE IF EXISTS {}", self.tablespace));
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// A source or a target.
#[derive(Debug)]
pub struct Side {
    pub engine: Engine,
    pub url: String,
    pub name: String,
    /// A PostgreSQL database is dropped when the suite ends.
    _dropped: Option<PgDatabase>,
}

impl Side {
    async fn create(engine: Engine, tablespace: Option<&str>) -> Side {
        match engine {
            Engine::Postgres => {
                let db = match tablespace {
                    None => PgDatabase::create(),
                    Some(space) => {
                        let name = unique("ferry_faults");
                        psql(&format!("CREATE DATABASE {name} TABLESPACE {space}"))
                            .expect("create the target database");
                        PgDatabase { name }
                    }
                };
                Side {
                    engine,
                    url: db.url(),
                    name: db.name.clone(),
                    _dropped: Some(db),
                }
            }
            Engine::MariaDb => {
                let db = MariaDatabase::create().await;
                Side {
                    engine,
                    url: db.url(),
                    name: db.name,
                    _dropped: None,
                }
            }
        }
    }

    pub async fn conn(&self) -> Result<Conn, String> {
        Conn::open(self.engine, &self.url).await
    }
}

/// One source, captured into Kafka and applied into one target.
#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    pub source: Side,
    pub target: Side,
    pub capture: Service,
    pub apply: Service,
    script: Option<Script>,
    writer: Option<Writer>,
}

impl Pipeline {
    pub fn start_writing(&mut self) {
        let script = self.script.take().expect("the workload is stopped");
        self.writer = Some(Writer::start(self.source.engine, &self.source.url, script));
    }

    pub async fn stop_writing(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.script = Some(writer.stop().await);
        }
    }

    pub fn script(&self) -> &Script {
        self.script.as_ref().expect("the workload is stopped")
    }
}

/// Everything the suite runs.
#[derive(Debug)]
pub struct Stack {
    pub broker: Service,
    pub registry: Service,
    pub proxy: Proxy,
    pub pipelines: Vec<Pipeline>,
    /// After the pipelines: their databases go first.
    pub disk: Result<Disk, String>,
}

impl Stack {
    pub async fn start(dir: &Path, rng: &mut Rng) -> Stack {
        let broker_port = free_port();
        let broker_address = format!("127.0.0.1:{broker_port}");
        let broker = Service::start(
            "broker",
            crate::broker_binary(),
            crate::broker_args(broker_port, &dir.join("broker-data")),
            dir,
        );
        wait_for("the broker to listen", Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(&broker_address).await.ok().map(|_| ())
        })
        .await;
        let registry_address = format!("127.0.0.1:{}", free_port());
        let registry_url = format!("http://{registry_address}");
        let registry = Service::start(
            "registry",
            binary("ferry-schema-registry"),
            strings(&[
                "--listen",
                &registry_address,
                "--brokers",
                &broker_address,
                "--topic",
                "_ferry_schemas",
            ]),
            dir,
        );
        wait_for("the registry to answer", Duration::from_secs(60), || async {
            let ok = crate::http_get(&format!("{registry_url}/health")).await.ok()?;
            ok.status().is_success().then_some(())
        })
        .await;
        let proxy = Proxy::start(&broker_address).await;
        let disk = Disk::create(dir).await;
        let mut pipelines = Vec::new();
        for (source, target) in [(Engine::Postgres, Engine::MariaDb), (Engine::MariaDb, Engine::Postgres)] {
            let tablespace = disk.as_ref().ok().map(|d| d.tablespace.as_str());
            let source = Side::create(source, None).await;
            let target = Side::create(target, tablespace).await;
            let mut conn = source.conn().await.expect("connect to the source");
            conn.batch(&workload::tables(source.engine))
                .await
                .expect("the workload's tables");
            let name = format!("{}-to-{}", source.engine.name(), target.engine.name());
            let prefix = unique("faults");
            let capture_args = match source.engine {
                Engine::Postgres => strings(&["--source", &source.url]),
                Engine::MariaDb => strings(&[
                    "--source",
                    mariadb::SERVER,
                    "--server-id",
                    &mariadb::server_id().to_string(),
                    "--tables",
                    &format!("{}.*", source.name),
                ]),
            };
            let shared = |brokers: &str| strings(&["--brokers", brokers, "--registry", &registry_url]);
            let capture = Service::start(
                &format!("{name}-capture"),
                binary(source.engine.capture_binary()),
                [capture_args, strings(&["--prefix", &prefix]), shared(&proxy.address)].concat(),
                dir,
            );
            let topics = format!("{}\\..*", prefix);
            let apply = Service::start(
                &format!("{name}-apply"),
                binary(target.engine.apply_binary()),
                [
                    // Static membership, as a supervised deployment has: the
                    // development broker never expires a killed member.
                    strings(&[
                        "--target",
                        &target.url,
                        "--topics",
                        &topics,
                        "--group",
                        &unique("faults"),
                        "--instance-id",
                        &format!("{name}-apply"),
                    ]),
                    shared(&broker_address),
                ]
                .concat(),
                dir,
            );
            pipelines.push(Pipeline {
                name,
                source,
                target,
                capture,
                apply,
                script: Some(Script::new(rng.next_u64())),
                writer: None,
            });
        }
        Stack {
            broker,
            registry,
            proxy,
            pipelines,
            disk,
        }
    }

    fn services(&mut self) -> impl Iterator<Item = &mut Service> {
        let pipelines = self.pipelines.iter_mut().flat_map(|p| [&mut p.capture, &mut p.apply]);
        [&mut self.broker, &mut self.registry].into_iter().chain(pipelines)
    }

    pub fn tend(&mut self) {
        self.services().for_each(Service::tend);
    }

    /// Process exits not caused by the suite, so far.
    pub fn exits(&mut self) -> Vec<String> {
        self.services()
            .flat_map(|s| s.exits.iter().map(|e| format!("{}: {e}", s.name)).collect::<Vec<_>>())
            .collect()
    }

    /// Lets `duration` pass, keeping every process running.
    pub async fn run_for(&mut self, duration: Duration) {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            self.tend();
            tokio::time::sleep(Duration::from_millis(200).min(end - Instant::now())).await;
        }
    }

    /// Awaits `work`, keeping every process running meanwhile.
    pub async fn tending<F: std::future::Future>(&mut self, work: F) -> F::Output {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tokio::time::sleep(Duration::from_millis(200)) => self.tend(),
            }
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
