//! Security against the real servers of the development stack: TLS to
//! PostgreSQL (query and replication connections) and MariaDB verified
//! against the development CA, certificate logins by users that are not
//! superusers, the registry over HTTPS with basic auth, and passwords that
//! never show in any output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_tests::mariadb::{self, MariaDatabase};
use ferry_tests::{
    brokers, connect_pg, pg_text_rows, start_apply_with, tls_dir, unique, wait_equal, wait_for, wait_rows,
    wait_streaming, PgDatabase, Running,
};
use mysql_async::prelude::Queryable;

/// libpq's parameters for a connection verified against the development CA.
fn pg_verified() -> String {
    format!("sslmode=verify-full&sslrootcert={}", tls_dir().join("ca.pem").display())
}

/// The MySQL client's parameters for the same.
fn my_verified() -> String {
    format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", tls_dir().join("ca.pem").display())
}

/// An apply of `target` that has nothing to read (topic `x`, group `g`):
/// for runs that must fail before reading.
fn apply_args(target: &str) -> Vec<String> {
    [
        "--target",
        target,
        "--topics",
        "x",
        "--group",
        "g",
        "--brokers",
        &brokers(),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn str_args(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Runs `binary` with `args` until it exits by itself (within 60 s): its
/// exit status and everything it wrote.
async fn run_to_exit(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(ferry_tests::binary(binary))
            .args(args)
            .envs(envs.iter().copied())
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{binary} did not exit within 60 s"))
    .unwrap_or_else(|e| panic!("run {binary}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

#[tokio::test]
async fn postgres_capture_and_apply_over_verified_tls() {
    let (source, target) = (PgDatabase::create(), PgDatabase::create());
    source
        .execute("CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one');")
        .await;
    let prefix = unique("tls");
    let source_url = format!("{}?{}", source.url(), pg_verified());
    let capture = Running::start(
        "ferry-capture-postgres",
        &["--source", &source_url, "--prefix", &prefix, "--brokers", &brokers()],
    );
    let target_url = format!("{}?{}", target.url(), pg_verified());
    let apply = start_apply_with("ferry-apply-postgres", &target_url, &prefix, &unique("g"), &[]);
    wait_streaming(&source, &prefix).await;
    source
        .execute("INSERT INTO items VALUES (2, 'two'); UPDATE items SET name = 'uno' WHERE id = 1;")
        .await;
    wait_equal(&source, &target, &["items"], Duration::from_secs(60)).await;

    // Every connection of both processes is encrypted, the walsender's too.
    let admin = connect_pg("postgres://postgres@127.0.0.1:5432/postgres").await;
    let sql = format!(
        "SELECT a.application_name || ' ' || a.backend_type || ' ' || s.ssl \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname IN ('{}', '{}') AND a.application_name LIKE 'ferry-%'",
        source.name, target.name
    );
    let connections = pg_text_rows(&admin, &sql).await.expect("pg_stat_ssl");
    assert!(
        connections
            .iter()
            .any(|c| c.starts_with("ferry-capture-postgres walsender")),
        "{connections:?}"
    );
    assert!(
        connections
            .iter()
            .any(|c| c.starts_with("ferry-apply-postgres client backend")),
        "{connections:?}"
    );
    assert!(connections.iter().all(|c| c.ends_with(" true")), "{connections:?}");
    assert!(capture.terminate().success());
    assert!(apply.terminate().success());
}

/// A CA of its own, which signed nothing the servers serve.
fn stranger_ca(dir: &Path) -> PathBuf {
    let (key, cert) = (dir.join("stranger.key"), dir.join("stranger.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=Stranger CA", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success());
    cert
}

#[tokio::test]
async fn tls_that_cannot_be_verified_stops_with_what_to_fix() {
    let source = PgDatabase::create();
    source.execute("CREATE TABLE items (id int PRIMARY KEY)").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let stranger = stranger_ca(dir.path());
    let prefix = unique("tls");
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        source.url(),
        stranger.display()
    );
    let (status, out) = run_to_exit(
        "ferry-capture-postgres",
        &["--source", &url, "--prefix", &prefix, "--brokers", &brokers()],
        &[],
    )
    .await;
    assert!(!status.success());
    assert!(
        out.contains("no TLS connection to PostgreSQL") && out.contains("certificate verify failed"),
        "{out}"
    );
    let url = format!("{}?sslmode=verify-full", source.url());
    let (status, out) = run_to_exit("ferry-capture-postgres", &["--source", &url, "--prefix", &prefix], &[]).await;
    assert!(!status.success());
    assert!(
        out.contains("verify-full needs a CA file to verify against: add sslrootcert="),
        "{out}"
    );

    let db = MariaDatabase::create().await;
    let url = format!(
        "{}/{}?ssl-mode=VERIFY_CA&ssl-ca={}",
        mariadb::SERVER,
        db.name,
        stranger.display()
    );
    let (status, out) = run_to_exit("ferry-apply-mysql", &str_args(&apply_args(&url)), &[]).await;
    assert!(!status.success());
    assert!(out.contains("no TLS connection to MySQL/MariaDB"), "{out}");
}

#[tokio::test]
async fn a_non_superuser_captures_postgres_logging_in_by_certificate() {
    let (source, target) = (PgDatabase::create(), PgDatabase::create());
    let publication = unique("pub");
    source
        .execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             INSERT INTO items VALUES (1, 'one');",
        )
        .await;
    let tls = tls_dir();
    let url = format!(
        "{}?{}&sslcert={}&sslkey={}",
        source.url_as("ferry_cert"),
        pg_verified(),
        tls.join("client.pem").display(),
        tls.join("client.key").display()
    );
    // ferry assess names each missing grant, with the statement that gives it.
    let assess = ["assess", "--source", &url, "--publication", &publication, "--json"];
    let (status, out) = run_to_exit("ferry", &assess, &[]).await;
    assert_eq!(status.code(), Some(1), "{out}");
    for missing in [
        r#"role ferry_cert may not read table public.items: run GRANT SELECT ON \"public\".\"items\" TO \"ferry_cert\""#,
        &format!(
            r#"role ferry_cert does not own \"public\".\"items\", so it cannot publish them: as their owner run CREATE PUBLICATION \"{publication}\" FOR TABLE \"public\".\"items\""#
        ),
    ] {
        assert!(out.contains(missing), "{missing}: {out}");
    }
    source
        .execute(&format!(
            "GRANT SELECT ON items TO ferry_cert; CREATE PUBLICATION {publication} FOR TABLE items;"
        ))
        .await;
    let (status, out) = run_to_exit("ferry", &assess, &[]).await;
    assert_eq!(status.code(), Some(0), "{out}");
    let json = &out[out.find('{').unwrap_or(0)..=out.rfind('}').unwrap_or(0)];
    let report: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["excess_privileges"], serde_json::json!([]), "{report}");
    // As a superuser, the same source is ready but over-privileged.
    let (status, out) = run_to_exit("ferry", &["assess", "--source", &source.url(), "--json"], &[]).await;
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("is a superuser: capture needs only REPLICATION"), "{out}");
    let prefix = unique("cert");
    let capture = Running::start(
        "ferry-capture-postgres",
        &[
            "--source",
            &url,
            "--prefix",
            &prefix,
            "--publication",
            &publication,
            "--brokers",
            &brokers(),
        ],
    );
    let apply = start_apply_with("ferry-apply-postgres", &target.url(), &prefix, &unique("g"), &[]);
    wait_streaming(&source, &prefix).await;
    source
        .execute("INSERT INTO items VALUES (2, 'two'); DELETE FROM items WHERE id = 1;")
        .await;
    wait_equal(&source, &target, &["items"], Duration::from_secs(60)).await;
    assert!(capture.terminate().success());
    assert!(apply.terminate().success());
}

#[tokio::test]
async fn mariadb_capture_by_certificate_and_apply_over_verified_tls() {
    let (source, target) = (MariaDatabase::create().await, MariaDatabase::create().await);
    source
        .execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20)); INSERT INTO items VALUES (1, 'one');")
        .await;
    // A target user that can only log in over TLS.
    let user = unique("tls");
    let mut root = mariadb::connect(mariadb::SERVER).await;
    for host in ["127.0.0.1", "localhost"] {
        root.query_drop(format!(
            "CREATE USER '{user}'@'{host}' REQUIRE SSL; GRANT ALL ON `{}`.* TO '{user}'@'{host}';",
            target.name
        ))
        .await
        .expect("create TLS-only user");
    }
    let tls = tls_dir();
    // ferry_cert: REPLICATION SLAVE, BINLOG MONITOR and SELECT, and no login without its certificate.
    let source_url = format!(
        "mysql://ferry_cert@127.0.0.1:3306?{}&ssl-cert={}&ssl-key={}",
        my_verified(),
        tls.join("client.pem").display(),
        tls.join("client.key").display()
    );
    // The certificate's user has exactly the grants capture needs; root has more.
    let assess_url = source_url.replacen("3306?", &format!("3306/{}?", source.name), 1);
    // The user reads every database: other tests' too, which --tables leaves out.
    let only = format!("{}.*", source.name);
    let assess = ["assess", "--source", &assess_url, "--tables", &only, "--json"];
    let (status, out) = run_to_exit("ferry", &assess, &[]).await;
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("\"excess_privileges\": []"), "{out}");
    let as_root = ["assess", "--source", &source.url(), "--tables", &only, "--json"];
    let (status, out) = run_to_exit("ferry", &as_root, &[]).await;
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        out.contains("ALL PRIVILEGES, GRANT OPTION on *.*, which capture does not need"),
        "{out}"
    );
    let prefix = unique("mycert");
    let mut args = mariadb::capture_args(&source, &prefix, mariadb::server_id(), &[]);
    args[1] = source_url;
    let capture = Running::start("ferry-capture-mysql", &str_args(&args));
    let target_url = format!("mysql://{user}@127.0.0.1:3306/{}?{}", target.name, my_verified());
    let apply = start_apply_with("ferry-apply-mysql", &target_url, &prefix, &unique("g"), &[]);
    mariadb::wait_position(&prefix).await;
    source
        .execute("INSERT INTO items VALUES (2, 'two'); UPDATE items SET name = 'uno' WHERE id = 1;")
        .await;
    let want = mariadb::table_rows(&mut source.conn().await, "items")
        .await
        .expect("source rows");
    let t = tokio::sync::Mutex::new(target.conn().await);
    wait_rows(
        "items over TLS",
        Duration::from_secs(60),
        || async { want.clone() },
        || async {
            mariadb::table_rows(&mut *t.lock().await, "items")
                .await
                .unwrap_or_default()
        },
    )
    .await;
    assert!(capture.terminate().success());
    assert!(apply.terminate().success());
}

#[tokio::test]
async fn the_registry_over_https_with_basic_auth() {
    let tls = tls_dir();
    let dir = tempfile::tempdir().expect("temp dir");
    let password_file = dir.path().join("registry-password");
    std::fs::write(&password_file, "R3gistry-Pa55\n").expect("write password file");
    let port = ferry_tests::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (cert, key) = (tls.join("server.pem"), tls.join("server.key"));
    let password_path = password_file.display().to_string();
    let registry = Running::start(
        "ferry-schema-registry",
        &[
            "--listen",
            &listen,
            "--brokers",
            &brokers(),
            "--topic",
            &unique("_ferry_schemas_tls"),
            "--basic-auth-user",
            "ferry",
            "--basic-auth-password-file",
            &password_path,
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
    );
    let ca = tls.join("ca.pem");
    let https = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&std::fs::read(&ca).expect("CA")).expect("PEM"))
        .build()
        .expect("client");
    let health = format!("https://{listen}/health");
    wait_for("the registry to answer over https", Duration::from_secs(60), || {
        let (https, health) = (https.clone(), health.clone());
        async move { https.get(&health).send().await.ok().map(|_| ()) }
    })
    .await;

    let (source, target) = (PgDatabase::create(), PgDatabase::create());
    source
        .execute("CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one');")
        .await;
    let prefix = unique("regtls");
    let registry_url = format!("https://ferry@127.0.0.1:{port}");
    let ca_path = ca.display().to_string();
    let registry_flags = [
        "--registry",
        &registry_url,
        "--registry-password-file",
        &password_path,
        "--registry-ca",
        &ca_path,
    ];
    let args = ferry_tests::capture_args(&source, &prefix, &registry_flags);
    let capture = Running::start("ferry-capture-postgres", &str_args(&args));
    let apply = start_apply_with(
        "ferry-apply-postgres",
        &target.url(),
        &prefix,
        &unique("g"),
        &registry_flags,
    );
    wait_streaming(&source, &prefix).await;
    source.execute("INSERT INTO items VALUES (2, 'two')").await;
    wait_equal(&source, &target, &["items"], Duration::from_secs(60)).await;
    assert!(capture.terminate().success());
    assert!(apply.terminate().success());

    // Without the CA the registry's certificate is not trusted: a clear, final error.
    let (status, out) = run_to_exit(
        "ferry-apply-postgres",
        &[
            "--target",
            &target.url(),
            "--topics",
            &format!("{prefix}\\..*"),
            "--group",
            &unique("g"),
            "--brokers",
            &brokers(),
            "--registry",
            &registry_url,
            "--registry-password-file",
            &password_path,
        ],
        &[],
    )
    .await;
    drop(registry);
    assert!(!status.success(), "{out}");
    assert!(!out.contains("R3gistry-Pa55"), "{out}");
}

/// A name (of a binary, of a property), arguments and an environment.
type Run<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// A password no output may show, in URL-safe characters.
const SECRET: &str = "Sw0rdfish8472Leak";

/// Runs each binary at debug level through a failure and, where the stack
/// allows, a success, with [`SECRET`] as the password in URLs, in password
/// files and in variables, and checks it never appears in anything they wrote.
#[tokio::test]
async fn no_password_appears_in_any_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{SECRET}\n")).expect("write password file");
    let password_path = password_file.display().to_string();
    let debug = [("FERRY_LOG", "debug")];
    let mut outputs: Vec<(String, String)> = Vec::new();

    // PostgreSQL: a role with the password (loopback trusts, so it is carried, not checked).
    let (source, target) = (PgDatabase::create(), PgDatabase::create());
    let role = unique("leak");
    source
        .execute(&format!(
            "CREATE ROLE {role} LOGIN SUPERUSER REPLICATION PASSWORD '{SECRET}';
             CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1);"
        ))
        .await;
    let with_password = |url: String| url.replacen(&format!("//{role}@"), &format!("//{role}:{SECRET}@"), 1);
    let source_url = with_password(source.url_as(&role));
    let registry = format!("http://ferry:{SECRET}@127.0.0.1:8081");
    let prefix = unique("leak");
    let log = dir.path().join("capture.log");
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let capture = Running::start_logged(
        "ferry-capture-postgres",
        &[
            "--source",
            &source_url,
            "--prefix",
            &prefix,
            "--brokers",
            &brokers(),
            "--registry",
            &registry,
            "--metrics",
            &metrics,
        ],
        &debug,
        &log,
    );
    let apply_log = dir.path().join("apply.log");
    let topics = format!("{prefix}\\..*");
    let group = unique("g");
    let apply = Running::start_logged(
        "ferry-apply-postgres",
        &[
            "--target",
            &target.url_as(&role),
            "--topics",
            &topics,
            "--group",
            &group,
            "--brokers",
            &brokers(),
        ],
        &[("FERRY_LOG", "debug"), ("FERRY_PASSWORD_FILE", &password_path)],
        &apply_log,
    );
    let target_client = target.client().await;
    wait_for("the row to be applied", Duration::from_secs(90), || async {
        pg_text_rows(&target_client, "SELECT id FROM items")
            .await
            .filter(|rows| rows == &["1"])
    })
    .await;
    let scraped = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("scrape the capture's metrics")
        .text()
        .await
        .expect("metrics text");
    outputs.push(("capture-postgres /metrics".into(), scraped));
    let status = run_to_exit("ferry", &["status", "--prefix", &prefix, "--json"], &debug).await;
    assert!(status.0.success(), "{}", status.1);
    outputs.push(("ferry status".into(), status.1));
    assert!(capture.terminate().success());
    assert!(apply.terminate().success());
    for (name, path) in [("capture-postgres", &log), ("apply-postgres", &apply_log)] {
        outputs.push((name.into(), std::fs::read_to_string(path).expect("log")));
    }

    // Failures: no such database, refused logins, unreachable servers.
    let missing_pg = with_password(format!("postgres://{role}@127.0.0.1:5432/{}", unique("missing")));
    let refused_my = format!("mysql://nobody:{SECRET}@127.0.0.1:3306/test");
    let unreachable_mongo = format!("mongodb://u:{SECRET}@127.0.0.1:1/db?serverSelectionTimeoutMS=2000");
    let pg_target = target.url_as(&role);
    let runs: Vec<Run> = vec![
        (
            "ferry-capture-postgres",
            vec!["--source", &missing_pg, "--prefix", &prefix],
            vec![],
        ),
        (
            "ferry-capture-mysql",
            vec!["--source", &refused_my, "--prefix", &prefix, "--server-id", "4242"],
            vec![],
        ),
        (
            "ferry-capture-mongodb",
            vec!["--source", &unreachable_mongo, "--prefix", &prefix],
            vec![],
        ),
        (
            "ferry-apply-postgres",
            vec!["--target", &missing_pg, "--topics", "x", "--group", "g"],
            vec![],
        ),
        (
            "ferry-apply-mysql",
            vec!["--target", &refused_my, "--topics", "x", "--group", "g"],
            vec![],
        ),
        (
            "ferry-apply-postgres",
            vec![
                "--target",
                &pg_target,
                "--topics",
                "x",
                "--group",
                "g",
                "--password-file",
                "/nonexistent",
            ],
            vec![],
        ),
        (
            "ferry",
            vec!["validate", "--source", &missing_pg, "--target", &refused_my],
            vec![],
        ),
        ("ferry", vec!["assess", "--source", &refused_my], vec![]),
        (
            "ferry",
            vec!["status", "--brokers", "127.0.0.1:1"],
            vec![("FERRY_KAFKA_SASL_PASSWORD", SECRET)],
        ),
        (
            "ferry-schema-registry",
            vec![
                "--basic-auth-user",
                "u",
                "--tls-cert",
                "/nonexistent",
                "--tls-key",
                "/nonexistent",
            ],
            vec![("FERRY_BASIC_AUTH_PASSWORD", SECRET)],
        ),
    ];
    for (binary, args, envs) in runs {
        let envs: Vec<(&str, &str)> = envs.into_iter().chain(debug).collect();
        let (status, out) = run_to_exit(binary, &args, &envs).await;
        assert!(!status.success(), "{binary} {args:?} should have failed:\n{out}");
        outputs.push((format!("{binary} {}", args.first().unwrap_or(&"")), out));
    }
    for (name, out) in &outputs {
        assert!(!out.is_empty(), "{name} wrote nothing");
        assert!(!out.contains(SECRET), "{name} printed the password:\n{out}");
    }
}

/// librdkafka properties reach librdkafka from every route an operator has:
/// a property librdkafka does not know stops each binary with its name.
#[tokio::test]
async fn kafka_properties_pass_through_from_flags_environment_and_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("apply.toml");
    std::fs::write(&config, "[kafka]\n\"from.the.file\" = \"1\"\n").expect("write config");
    let target = PgDatabase::create();
    let base = apply_args(&target.url());
    let config = config.display().to_string();
    let routes: [Run; 3] = [
        ("from.a.flag", vec!["--kafka-option", "from.a.flag=1"], vec![]),
        (
            "from.the.environment",
            vec![],
            vec![("FERRY_KAFKA_FROM_THE_ENVIRONMENT", "1")],
        ),
        ("from.the.file", vec!["--config", &config], vec![]),
    ];
    for (property, extra, envs) in routes {
        let args: Vec<&str> = str_args(&base).into_iter().chain(extra).collect();
        let (status, out) = run_to_exit("ferry-apply-postgres", &args, &envs).await;
        assert!(!status.success(), "{property}: {out}");
        assert!(
            out.contains(&format!("No such configuration property: \"{property}\"")),
            "{property}: {out}"
        );
    }
    let (status, out) = run_to_exit(
        "ferry-capture-postgres",
        &[
            "--source",
            &target.url(),
            "--prefix",
            "p",
            "--kafka-option",
            "linger.ms",
        ],
        &[],
    )
    .await;
    assert!(!status.success());
    assert!(out.contains("--kafka-option \"linger.ms\" is not KEY=VALUE"), "{out}");
    // The registry takes the flag too.
    let listen = format!("127.0.0.1:{}", ferry_tests::free_port());
    let (status, out) = run_to_exit(
        "ferry-schema-registry",
        &["--listen", &listen, "--kafka-option", "from.a.flag=1"],
        &[],
    )
    .await;
    assert!(!status.success(), "{out}");
    assert!(out.contains("No such configuration property: \"from.a.flag\""), "{out}");
}
