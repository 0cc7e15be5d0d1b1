//! `ferry-schema-registry` over real HTTP against the real broker: every
//! endpoint with its success and error codes, compatibility, restart after
//! kill -9, two instances on one topic, basic auth, a client library Ferry did
//! not write, and bad input.

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_core::config::Secret;
use ferry_tests::{binary, brokers, free_port, registry_config, unique, wait_for, Registry};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value as Json};

const CT: &str = "application/vnd.schemaregistry.v1+json";

fn record(name: &str, fields: Json) -> String {
    json!({"type": "record", "name": name, "fields": fields}).to_string()
}

fn v1() -> String {
    record("User", json!([{"name": "id", "type": "long"}]))
}

fn v2() -> String {
    record(
        "User",
        json!([{"name": "id", "type": "long"}, {"name": "email", "type": ["null", "string"], "default": null}]),
    )
}

/// Incompatible with v1 under BACKWARD: a new field without a default.
fn v_bad() -> String {
    record(
        "User",
        json!([{"name": "id", "type": "long"}, {"name": "age", "type": "int"}]),
    )
}

struct Http {
    base: String,
    client: Client,
}

impl Http {
    fn new(base: &str) -> Http {
        Http {
            base: base.to_owned(),
            client: Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> (StatusCode, Json) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Accept", CT);
        if let Some(b) = body {
            req = req.header("Content-Type", CT).body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Json::String(text)))
    }

    async fn get(&self, path: &str) -> (StatusCode, Json) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Json) -> (StatusCode, Json) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Json) -> (StatusCode, Json) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Json) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    async fn register(&self, subject: &str, schema: &str) -> (StatusCode, Json) {
        self.post(&format!("/subjects/{subject}/versions"), json!({"schema": schema}))
            .await
    }

    async fn id(&self, subject: &str, schema: &str) -> u64 {
        let (status, body) = self.register(subject, schema).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["id"].as_u64().expect("id")
    }
}

fn assert_error(got: (StatusCode, Json), status: u16, code: u64) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["error_code"].as_u64(), Some(code), "{}", got.1);
    assert!(got.1["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
}

#[tokio::test]
async fn subjects_and_versions() {
    let registry = Registry::start().await;
    let http = Http::new(&registry.url);
    let subject = unique("users-value");

    assert_error(http.get(&format!("/subjects/{subject}/versions")).await, 404, 40401);
    let id1 = http.id(&subject, &v1()).await;
    // Registering the same schema again, even formatted differently, returns the same id.
    let reformatted = serde_json::to_string_pretty(&serde_json::from_str::<Json>(&v1()).unwrap()).unwrap();
    assert_eq!(http.id(&subject, &reformatted).await, id1);
    let id2 = http.id(&subject, &v2()).await;
    assert_ne!(id1, id2);

    let (status, subjects) = http.get("/subjects").await;
    assert_eq!(status, StatusCode::OK);
    assert!(subjects.as_array().unwrap().contains(&json!(subject)));
    assert_eq!(
        http.get(&format!("/subjects/{subject}/versions")).await.1,
        json!([1, 2])
    );

    let (status, latest) = http.get(&format!("/subjects/{subject}/versions/latest")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["id"].as_u64(), Some(id2));
    assert_eq!(latest["subject"], json!(subject));
    let (_, first) = http.get(&format!("/subjects/{subject}/versions/1")).await;
    assert_eq!(first["id"].as_u64(), Some(id1));
    let (_, raw) = http.get(&format!("/subjects/{subject}/versions/1/schema")).await;
    assert_eq!(raw["name"], "User");
    assert_eq!(
        http.get(&format!("/subjects/{subject}/versions/-1")).await.1["version"],
        2
    );

    assert_error(http.get(&format!("/subjects/{subject}/versions/3")).await, 404, 40402);
    assert_error(http.get(&format!("/subjects/{subject}/versions/0")).await, 422, 42202);
    assert_error(http.get(&format!("/subjects/{subject}/versions/abc")).await, 422, 42202);
    assert_error(http.get("/subjects/no-such-subject/versions/1").await, 404, 40401);

    // Look-up by schema.
    let (status, found) = http
        .post(&format!("/subjects/{subject}"), json!({"schema": v2()}))
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!((found["version"].as_u64(), found["id"].as_u64()), (Some(2), Some(id2)));
    assert_error(
        http.post(&format!("/subjects/{subject}"), json!({"schema": v_bad()}))
            .await,
        404,
        40403,
    );
    assert_error(http.post("/subjects/nobody", json!({"schema": v1()})).await, 404, 40401);

    let metrics = reqwest::get(format!("{}/metrics", registry.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "registry_http_requests_total{method=\"POST\",route=\"/subjects/{subject}/versions\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("registry_schemas "), "{metrics}");
}

#[tokio::test]
async fn ids_are_global_and_shared_between_subjects() {
    let registry = Registry::start().await;
    let http = Http::new(&registry.url);
    let (a, b) = (unique("a-value"), unique("b-value"));
    let id = http.id(&a, &v1()).await;
    assert_eq!(http.id(&b, &v1()).await, id);

    let (status, by_id) = http.get(&format!("/schemas/ids/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let schema: Json = serde_json::from_str(by_id["schema"].as_str().unwrap()).unwrap();
    assert_eq!(schema["name"], "User");
    assert_eq!(http.get(&format!("/schemas/ids/{id}/schema")).await.1["name"], "User");
    let mut subjects: Vec<String> =
        serde_json::from_value(http.get(&format!("/schemas/ids/{id}/subjects")).await.1).unwrap();
    subjects.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(subjects, expected);
    let versions = http.get(&format!("/schemas/ids/{id}/versions")).await.1;
    assert_eq!(versions.as_array().map(Vec::len), Some(2));
    assert_error(http.get("/schemas/ids/999999").await, 404, 40403);
    assert_error(http.get("/schemas/ids/x").await, 404, 40403);
    assert_eq!(http.get("/schemas/types").await.1, json!(["AVRO"]));
}

#[tokio::test]
async fn deletes_soft_then_permanent() {
    let registry = Registry::start().await;
    let http = Http::new(&registry.url);
    let subject = unique("del-value");
    let id1 = http.id(&subject, &v1()).await;
    http.id(&subject, &v2()).await;

    assert_error(
        http.delete(&format!("/subjects/{subject}/versions/1?permanent=true"))
            .await,
        404,
        40407,
    );
    assert_eq!(
        http.delete(&format!("/subjects/{subject}/versions/1")).await.1,
        json!(1)
    );
    assert_error(
        http.delete(&format!("/subjects/{subject}/versions/1")).await,
        404,
        40406,
    );
    assert_error(http.get(&format!("/subjects/{subject}/versions/1")).await, 404, 40402);
    assert_eq!(
        http.get(&format!("/subjects/{subject}/versions/1?deleted=true"))
            .await
            .1["id"]
            .as_u64(),
        Some(id1)
    );
    // A soft-deleted schema is still served by id.
    assert_eq!(http.get(&format!("/schemas/ids/{id1}")).await.0, StatusCode::OK);
    assert_eq!(http.get(&format!("/subjects/{subject}/versions")).await.1, json!([2]));
    assert_eq!(
        http.delete(&format!("/subjects/{subject}/versions/1?permanent=true"))
            .await
            .1,
        json!(1)
    );
    assert_error(http.get(&format!("/schemas/ids/{id1}")).await, 404, 40403);

    assert_error(
        http.delete(&format!("/subjects/{subject}?permanent=true")).await,
        404,
        40405,
    );
    assert_eq!(http.delete(&format!("/subjects/{subject}")).await.1, json!([2]));
    assert_error(http.delete(&format!("/subjects/{subject}")).await, 404, 40404);
    assert!(!http
        .get("/subjects")
        .await
        .1
        .as_array()
        .unwrap()
        .contains(&json!(subject)));
    assert!(http
        .get("/subjects?deleted=true")
        .await
        .1
        .as_array()
        .unwrap()
        .contains(&json!(subject)));
    assert_eq!(
        http.delete(&format!("/subjects/{subject}?permanent=true")).await.1,
        json!([2])
    );
    assert_error(http.get(&format!("/subjects/{subject}/versions")).await, 404, 40401);
    assert_error(http.delete("/subjects/never-was").await, 404, 40401);

    // The purged id is never given out again.
    let fresh = http
        .id(
            &unique("other-value"),
            &record("Fresh", json!([{"name": "x", "type": "int"}])),
        )
        .await;
    assert!(fresh > id1);
}

#[tokio::test]
async fn compatibility_is_enforced_and_checkable() {
    let registry = Registry::start().await;
    let http = Http::new(&registry.url);
    let subject = unique("compat-value");
    http.id(&subject, &v1()).await;

    let bad = http.register(&subject, &v_bad()).await;
    assert_error(bad.clone(), 409, 409);
    assert!(bad.1["message"].as_str().unwrap().contains("age"), "{}", bad.1);

    let path = format!("/compatibility/subjects/{subject}/versions/latest");
    assert_eq!(
        http.post(&path, json!({"schema": v2()})).await.1,
        json!({"is_compatible": true})
    );
    let (_, verdict) = http
        .post(&format!("{path}?verbose=true"), json!({"schema": v_bad()}))
        .await;
    assert_eq!(verdict["is_compatible"], false);
    assert!(!verdict["messages"].as_array().unwrap().is_empty());
    assert_eq!(
        http.post(
            &format!("/compatibility/subjects/{subject}/versions"),
            json!({"schema": v2()})
        )
        .await
        .1["is_compatible"],
        true
    );
    assert_error(
        http.post(
            &format!("/compatibility/subjects/{subject}/versions/9"),
            json!({"schema": v2()}),
        )
        .await,
        404,
        40402,
    );
    assert_error(
        http.post(
            "/compatibility/subjects/nobody/versions/latest",
            json!({"schema": v2()}),
        )
        .await,
        404,
        40401,
    );

    // NONE on the subject lets the incompatible schema in; the global level is untouched.
    assert_error(http.get(&format!("/config/{subject}")).await, 404, 40408);
    assert_eq!(
        http.get(&format!("/config/{subject}?defaultToGlobal=true")).await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        http.put(&format!("/config/{subject}"), json!({"compatibility": "NONE"}))
            .await
            .1,
        json!({"compatibility": "NONE"})
    );
    assert_eq!(
        http.get(&format!("/config/{subject}")).await.1["compatibilityLevel"],
        "NONE"
    );
    assert_eq!(http.register(&subject, &v_bad()).await.0, StatusCode::OK);
    assert_eq!(
        http.delete(&format!("/config/{subject}")).await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    assert_error(
        http.put(&format!("/config/{subject}"), json!({"compatibility": "SIDEWAYS"}))
            .await,
        422,
        42203,
    );
}

#[tokio::test]
async fn global_config_and_mode() {
    // Global settings affect every subject of a registry: this one has its own topic.
    let registry = Registry::start().await;
    let http = Http::new(&registry.url);
    assert_eq!(http.get("/config").await.1, json!({"compatibilityLevel": "BACKWARD"}));
    assert_eq!(
        http.put("/config", json!({"compatibility": "full_transitive"})).await.1,
        json!({"compatibility": "FULL_TRANSITIVE"})
    );
    assert_eq!(http.get("/config").await.1["compatibilityLevel"], "FULL_TRANSITIVE");
    assert_eq!(http.delete("/config").await.1["compatibilityLevel"], "FULL_TRANSITIVE");
    assert_eq!(http.get("/config").await.1["compatibilityLevel"], "BACKWARD");

    let subject = unique("mode-value");
    assert_eq!(http.get("/mode").await.1, json!({"mode": "READWRITE"}));
    assert_error(http.put("/mode", json!({"mode": "SOMETIMES"})).await, 422, 42204);
    assert_eq!(
        http.put("/mode", json!({"mode": "READONLY"})).await.1,
        json!({"mode": "READONLY"})
    );
    assert_error(http.register(&subject, &v1()).await, 422, 42205);
    assert_eq!(
        http.put("/mode", json!({"mode": "READWRITE"})).await.1["mode"],
        "READWRITE"
    );
    assert_eq!(http.register(&subject, &v1()).await.0, StatusCode::OK);

    // IMPORT mode on one subject: ids and versions come from the caller.
    let imported = unique("import-value");
    assert_error(http.get(&format!("/mode/{imported}")).await, 404, 40409);
    http.put(&format!("/mode/{imported}"), json!({"mode": "IMPORT"})).await;
    let schema = record("Imported", json!([{"name": "x", "type": "int"}]));
    let (status, body) = http
        .post(
            &format!("/subjects/{imported}/versions"),
            json!({"schema": schema, "id": 50000, "version": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], 50000);
    assert_eq!(http.get(&format!("/subjects/{imported}/versions")).await.1, json!([7]));
    assert_eq!(http.delete(&format!("/mode/{imported}")).await.1["mode"], "IMPORT");
    // Ids continue after the largest imported one.
    let next = http
        .id(
            &unique("after-import-value"),
            &record("After", json!([{"name": "y", "type": "int"}])),
        )
        .await;
    assert!(next > 50000);
}

#[tokio::test]
async fn references_resolve_named_types_of_other_subjects() {
    let registry = Registry::start().await;
    let http = Http::new(&registry.url);
    let address_subject = unique("address");
    let address = json!({"type": "record", "name": "Address", "namespace": "shop", "fields": [{"name": "city", "type": "string"}]});
    http.id(&address_subject, &address.to_string()).await;
    let customer = json!({"type": "record", "name": "Customer", "namespace": "shop",
        "fields": [{"name": "home", "type": "shop.Address"}]});
    let subject = unique("customer-value");
    let (status, body) = http
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": customer.to_string(),
                   "references": [{"name": "shop.Address", "subject": address_subject, "version": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_u64().unwrap();
    let (_, by_id) = http.get(&format!("/schemas/ids/{id}")).await;
    assert_eq!(by_id["references"][0]["subject"], json!(address_subject));
    assert_eq!(
        http.get(&format!("/subjects/{address_subject}/versions/1/referencedby"))
            .await
            .1,
        json!([id])
    );
    // Without the reference the type is unknown.
    assert_error(
        http.register(&unique("orphan"), &customer.to_string()).await,
        422,
        42201,
    );
}

#[tokio::test]
async fn bad_input_gets_the_right_code_and_the_server_stays_up() {
    let registry = Registry::start().await;
    let http = Http::new(&registry.url);
    let subject = unique("bad-value");
    let raw = |body: &'static str| {
        let client = http.client.clone();
        let url = format!("{}/subjects/{subject}/versions", http.base);
        async move {
            let r = client
                .post(url)
                .header("Content-Type", CT)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (
                status,
                serde_json::from_str::<Json>(&r.text().await.unwrap()).unwrap_or(Json::Null),
            )
        }
    };
    assert_error(raw("{not json").await, 400, 400);
    assert_error(raw("{\"schema\": 5}").await, 422, 422);
    assert_error(http.register(&subject, "{\"type\": \"record\"}").await, 422, 42201);
    assert_error(http.register(&subject, "not avro at all").await, 422, 42201);
    assert_error(
        http.post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": "\"string\"", "schemaType": "PROTOBUF"}),
        )
        .await,
        422,
        42201,
    );
    let huge = json!({"schema": format!("\"{}\"", "x".repeat(2 * 1024 * 1024))});
    let (status, body) = http.post(&format!("/subjects/{subject}/versions"), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error_code"], 413);
    assert_error(http.get("/no/such/path").await, 404, 404);
    // Still healthy, still working.
    assert_eq!(http.get("/health").await.0, StatusCode::OK);
    assert_eq!(http.register(&subject, &v1()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn basic_auth_guards_everything_but_health() {
    let mut config = registry_config(&unique("_ferry_schemas_auth"));
    config.basic_auth = Some(("ferry".into(), Secret::new("s3cret-pass")));
    let registry = Registry::start_with(config).await;
    let client = Client::new();
    let subjects = format!("{}/subjects", registry.url);
    let denied = client.get(&subjects).send().await.unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert!(denied.headers().contains_key("www-authenticate"));
    assert_eq!(denied.json::<Json>().await.unwrap()["error_code"], 40101);
    let wrong = client
        .get(&subjects)
        .basic_auth("ferry", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let allowed = client
        .get(&subjects)
        .basic_auth("ferry", Some("s3cret-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    // Ferry's own client takes the credentials from the URL.
    let url = registry.url.replace("http://", "http://ferry:s3cret-pass@");
    let ferry_client = ferry_core::registry::RegistryClient::new(&url.parse().unwrap()).unwrap();
    let id = ferry_client
        .register(&unique("auth-value"), &serde_json::from_str(&v1()).unwrap())
        .await
        .unwrap();
    assert_eq!(ferry_client.schema(id).await.unwrap().json["name"], "User");
}

#[tokio::test]
async fn ferry_client_caches_and_classifies_errors() {
    let registry = Registry::start().await;
    let client = ferry_core::registry::RegistryClient::new(&registry.url.parse().unwrap()).unwrap();
    let subject = unique("client-value");
    let schema: Json = serde_json::from_str(&v1()).unwrap();
    let id = client.register(&subject, &schema).await.unwrap();
    assert_eq!(client.register(&subject, &schema).await.unwrap(), id);
    let fetched = client.schema(id).await.unwrap();
    assert_eq!(fetched.id, id);
    let again = client.schema(id).await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&fetched, &again), "second fetch was not cached");
    let refused = client
        .register(&subject, &serde_json::from_str(&v_bad()).unwrap())
        .await
        .unwrap_err();
    assert!(!refused.is_retryable(), "{refused}");
    assert!(refused.to_string().contains("409"), "{refused}");
    let missing = client.schema(987_654).await.unwrap_err();
    assert!(!missing.is_retryable());
    let down = ferry_core::registry::RegistryClient::new(&"http://127.0.0.1:1".parse().unwrap()).unwrap();
    assert!(down.schema(1).await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn a_client_library_ferry_did_not_write_works() {
    use schema_registry_converter::async_impl::schema_registry::{get_schema_by_id, post_schema, SrSettings};
    use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
    let registry = Registry::start().await;
    let settings = SrSettings::new(registry.url.clone());
    let subject = unique("converter-value");
    let registered = post_schema(
        &settings,
        subject.clone(),
        SuppliedSchema::new(None, SchemaType::Avro, v1()),
    )
    .await
    .expect("post_schema");
    let fetched = get_schema_by_id(registered.id, &settings)
        .await
        .expect("get_schema_by_id");
    assert_eq!(fetched.id, registered.id);
    let parsed: Json = serde_json::from_str(&fetched.schema).unwrap();
    assert_eq!(parsed["name"], "User");
    // And the ids agree with our own API.
    let http = Http::new(&registry.url);
    assert_eq!(
        http.get(&format!("/subjects/{subject}/versions/1")).await.1["id"].as_u64(),
        Some(u64::from(registered.id))
    );
}

#[tokio::test]
async fn two_instances_agree_and_only_the_last_writes() {
    let topic = unique("_ferry_schemas_pair");
    let first = Registry::start_with(registry_config(&topic)).await;
    let a = Http::new(&first.url);
    let subject = unique("pair-value");
    let id1 = a.id(&subject, &v1()).await;

    let second = Registry::start_with(registry_config(&topic)).await;
    let b = Http::new(&second.url);
    // The second read everything the first wrote.
    assert_eq!(
        b.get(&format!("/subjects/{subject}/versions/1")).await.1["id"].as_u64(),
        Some(id1)
    );
    // The second claimed the writer role; the first now refuses writes and says where to go.
    let refused = a.register(&subject, &v2()).await;
    assert_error(refused.clone(), 500, 50004);
    assert!(
        refused.1["message"].as_str().unwrap().contains(&second.url),
        "{}",
        refused.1
    );
    let id2 = b.id(&subject, &v2()).await;
    // The first sees the second's write.
    wait_for(
        "the first instance to see version 2",
        Duration::from_secs(30),
        || async {
            let (status, body) = a.get(&format!("/subjects/{subject}/versions/2")).await;
            (status == StatusCode::OK && body["id"].as_u64() == Some(id2)).then_some(())
        },
    )
    .await;
    assert_eq!(a.get("/health").await.1["writer"], false);
    assert_eq!(b.get("/health").await.1["writer"], true);

    // A read-only instance never takes over.
    let mut config = registry_config(&topic);
    config.read_only = true;
    let reader = Registry::start_with(config).await;
    let r = Http::new(&reader.url);
    assert_eq!(r.get(&format!("/subjects/{subject}/versions")).await.1, json!([1, 2]));
    assert_error(r.register(&unique("x"), &v1()).await, 500, 50004);
    assert_eq!(b.id(&subject, &v2()).await, id2);
}

#[tokio::test]
async fn unreachable_broker_is_a_clear_error() {
    let mut config = registry_config(&unique("_ferry_schemas_nobroker"));
    config.kafka = ferry_core::kafka::KafkaSettings::new("127.0.0.1:1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = ferry_schema_registry::run(listener, config, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach the Kafka brokers at 127.0.0.1:1"), "{err}");
}

/// The registry as a separate process, killed with SIGKILL by the test.
struct Process {
    child: Child,
    url: String,
}

impl Process {
    async fn start(topic: &str, port: u16) -> Process {
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(binary("ferry-schema-registry"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--brokers",
                &brokers(),
                "--topic",
                topic,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ferry-schema-registry");
        let health = format!("{url}/health");
        wait_for("the registry process to answer", Duration::from_secs(60), || {
            let health = health.clone();
            async move {
                ferry_tests::http_get(&health)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        Process { child, url }
    }

    /// SIGKILL (`Child::kill`), then reap.
    fn kill9(self) {
        drop(self);
    }
}

impl Drop for Process {
    /// A failed test must not leave its registry running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn ids_and_versions_survive_kill_9() {
    let topic = unique("_ferry_schemas_kill");
    let process = Process::start(&topic, free_port()).await;
    let http = Http::new(&process.url);
    let mut registered = Vec::new();
    for i in 0..5 {
        let subject = unique(&format!("kill{i}-value"));
        let name = format!("T{i}");
        let id1 = http
            .id(&subject, &record(&name, json!([{"name": "n", "type": "int"}])))
            .await;
        let id2 = http
            .id(
                &subject,
                &record(
                    &name,
                    json!([{"name": "n", "type": "int"}, {"name": "m", "type": ["null", "string"], "default": null}]),
                ),
            )
            .await;
        registered.push((subject, id1, id2));
    }
    http.delete(&format!("/subjects/{}/versions/1", registered[0].0)).await;
    process.kill9();

    let process = Process::start(&topic, free_port()).await;
    let http = Http::new(&process.url);
    for (i, (subject, id1, id2)) in registered.iter().enumerate() {
        let versions = http.get(&format!("/subjects/{subject}/versions?deleted=true")).await.1;
        assert_eq!(versions, json!([1, 2]), "{subject}");
        let v1_body = http
            .get(&format!("/subjects/{subject}/versions/1?deleted=true"))
            .await
            .1;
        assert_eq!(v1_body["id"].as_u64(), Some(*id1));
        assert_eq!(
            http.get(&format!("/subjects/{subject}/versions/2")).await.1["id"].as_u64(),
            Some(*id2)
        );
        let live = http.get(&format!("/subjects/{subject}/versions")).await.1;
        assert_eq!(live, if i == 0 { json!([2]) } else { json!([1, 2]) });
    }
    let max = registered.iter().map(|(_, a, b)| *a.max(b)).max().unwrap();
    let fresh = http
        .id(
            &unique("fresh-value"),
            &record("Fresh", json!([{"name": "z", "type": "long"}])),
        )
        .await;
    assert!(fresh > max, "id {fresh} reused (max before restart {max})");
    process.kill9();
}

#[tokio::test]
async fn https_when_given_a_certificate() {
    use ferry_schema_registry::tls::TlsFiles;
    let dir = std::env::temp_dir().join(unique("ferry-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl could not make a test certificate");

    // A missing key file is a clear error before anything starts.
    let mut bad = registry_config(&unique("_ferry_schemas_tls"));
    bad.tls = Some(TlsFiles {
        cert: cert.clone(),
        key: dir.join("missing.pem"),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = ferry_schema_registry::run(listener, bad, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot read TLS file"), "{err}");

    let mut config = registry_config(&unique("_ferry_schemas_tls"));
    config.tls = Some(TlsFiles {
        cert: cert.clone(),
        key,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(ferry_schema_registry::run(listener, config, std::future::pending()));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let client = Client::builder().add_root_certificate(ca).build().unwrap();
    let url = format!("https://127.0.0.1:{port}/subjects");
    let body = wait_for("the registry to answer over HTTPS", Duration::from_secs(60), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.json::<Json>().await.ok()
        }
    })
    .await;
    assert_eq!(body, json!([]));
    // Plain HTTP on the TLS port gets no answer.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/subjects")).await.is_err());
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
