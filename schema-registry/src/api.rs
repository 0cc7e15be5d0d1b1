//! The Confluent Schema Registry REST API.
//!
//! Paths, bodies, status codes and error codes are Confluent's, so existing
//! clients (Confluent's serializers, kcat, Kafka UIs) work unchanged. Reads are
//! answered from memory; every change goes through [`Store::write`] and is
//! answered only once it is durable in the storage topic and applied.
//!
//! Schemas are compared in canonical form: the schema is parsed and written back
//! as normalised JSON (key order, whitespace, `{"type": "string"}` vs
//! `"string"`), keeping logical types and custom attributes as Confluent's own
//! canonical string does. Only Avro schemas are accepted.

use std::sync::Arc;

use apache_avro::Schema;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Path, Query, Request, State as Extract};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::compat::{self, Level};
use crate::state::{ConfigValue, Mode, ModeValue, RecordKey, RecordValue, Reference, SchemaValue, State};
use crate::store::{Store, StoreError};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    pub store: Arc<Store>,
    /// `Authorization` header value that requests must carry, when basic auth is on.
    pub auth: Option<String>,
    pub metrics: PrometheusHandle,
}

/// An error in Confluent's shape: `{"error_code": 40401, "message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(code: u32, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(if code >= 1000 { (code / 100) as u16 } else { code as u16 })
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn subject_not_found(subject: &str) -> Self {
        Self::new(40401, format!("Subject '{subject}' not found."))
    }

    fn version_not_found(version: i32) -> Self {
        Self::new(40402, format!("Version {version} not found."))
    }

    fn schema_not_found() -> Self {
        Self::new(40403, "Schema not found")
    }

    fn invalid_schema(reason: impl std::fmt::Display) -> Self {
        Self::new(42201, format!("Invalid schema: {reason}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.code, "message": self.message});
        let mut response = (self.status, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if self.code == 40101 {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ferry-schema-registry\""),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::NotWriter { .. } => 50004,
            StoreError::Timeout(_) => 50002,
            _ => 50001,
        };
        ApiError::new(code, e.to_string())
    }
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

fn ok(body: Json) -> Response {
    let mut response = body.to_string().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// Parses a JSON body; malformed JSON is 400, a body over the limit 413.
fn body<T: DeserializeOwned>(bytes: Result<Bytes, BytesRejection>) -> Result<T> {
    let bytes = bytes.map_err(|r| ApiError::new(u32::from(r.status().as_u16()), r.body_text()))?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::new(422, format!("Unprocessable entity: {e}")),
        _ => ApiError::new(400, format!("Malformed JSON: {e}")),
    })
}

/// A version in a path: a number from 1, `latest`, or `-1` (latest).
#[derive(Debug, Clone, Copy)]
enum VersionRef {
    Latest,
    Number(i32),
}

fn parse_version(text: &str) -> Result<VersionRef> {
    match text {
        "latest" | "-1" => Ok(VersionRef::Latest),
        n => match n.parse::<i32>() {
            Ok(v) if v >= 1 => Ok(VersionRef::Number(v)),
            _ => Err(ApiError::new(
                42202,
                format!(
                    "The specified version '{text}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
                ),
            )),
        },
    }
}

/// Resolves a version of a subject: `(version, id, deleted)`.
fn find_version(state: &State, subject: &str, version: VersionRef, include_deleted: bool) -> Result<(i32, u32, bool)> {
    let versions = state
        .versions(subject)
        .filter(|vs| include_deleted || vs.values().any(|v| !v.deleted))
        .ok_or_else(|| ApiError::subject_not_found(subject))?;
    let found = match version {
        VersionRef::Latest => versions.iter().rev().find(|(_, v)| include_deleted || !v.deleted),
        VersionRef::Number(n) => versions
            .get_key_value(&n)
            .filter(|(_, v)| include_deleted || !v.deleted),
    };
    let not_found = || match version {
        VersionRef::Number(n) => ApiError::version_not_found(n),
        VersionRef::Latest => ApiError::subject_not_found(subject),
    };
    found.map(|(n, v)| (*n, v.id, v.deleted)).ok_or_else(not_found)
}

/// A schema parsed with its references resolved, and its canonical text.
struct Parsed {
    canonical: String,
    schema: Schema,
    references: Vec<Reference>,
}

/// The texts of every schema `references` needs, dependencies first.
fn reference_texts(state: &State, references: &[Reference], out: &mut Vec<String>, depth: usize) -> Result<()> {
    if depth > 32 {
        return Err(ApiError::invalid_schema("references nest more than 32 levels deep"));
    }
    for r in references {
        let (_, id, _) = find_version(state, &r.subject, VersionRef::Number(r.version), true).map_err(|_| {
            ApiError::invalid_schema(format!("reference {} {} v{} not found", r.name, r.subject, r.version))
        })?;
        let entry = state.schema(id).ok_or_else(ApiError::schema_not_found)?;
        reference_texts(state, &entry.references, out, depth + 1)?;
        if !out.contains(&entry.schema) {
            out.push(entry.schema.clone());
        }
    }
    Ok(())
}

fn parse_schema(state: &State, text: &str, references: &[Reference]) -> Result<Parsed> {
    let mut texts = Vec::new();
    reference_texts(state, references, &mut texts, 0)?;
    let (mut schema, referenced) = Schema::parse_str_with_list(text, &texts).map_err(ApiError::invalid_schema)?;
    // The canonical text keeps references by name, as registered; the schema
    // used for compatibility checks has the referenced types inlined.
    let canonical = serde_json::to_string(&schema).map_err(ApiError::invalid_schema)?;
    schema.denormalize(&referenced).map_err(ApiError::invalid_schema)?;
    Ok(Parsed {
        canonical,
        schema,
        references: references.to_vec(),
    })
}

/// The parsed schema stored under `id`.
fn stored_schema(state: &State, id: u32) -> Result<Schema> {
    let entry = state.schema(id).ok_or_else(ApiError::schema_not_found)?;
    Ok(parse_schema(state, &entry.schema, &entry.references)
        .map_err(|e| ApiError::new(50001, format!("stored schema {id} no longer parses: {}", e.message)))?
        .schema)
}

fn schema_body(state: &State, id: u32) -> Result<serde_json::Map<String, Json>> {
    let entry = state.schema(id).ok_or_else(ApiError::schema_not_found)?;
    match serde_json::from_slice(&entry.by_id_body) {
        Ok(Json::Object(body)) => Ok(body),
        _ => Err(ApiError::new(50001, format!("stored schema {id} is damaged"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
    /// IMPORT mode only.
    #[serde(default)]
    id: Option<u32>,
    #[serde(default)]
    version: Option<i32>,
}

impl SchemaRequest {
    fn check_type(&self) -> Result<()> {
        match self.schema_type.as_deref() {
            None | Some("AVRO") => Ok(()),
            Some(other) => Err(ApiError::invalid_schema(format!(
                "schemaType {other} is not supported: this registry stores Avro schemas only"
            ))),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Flags {
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    permanent: bool,
    #[serde(default)]
    verbose: bool,
    #[serde(default, rename = "defaultToGlobal")]
    default_to_global: bool,
}

// ------------------------------------------------------------------ handlers

async fn root() -> Response {
    ok(json!({}))
}

async fn health(Extract(app): Extract<Arc<App>>) -> Response {
    let writer = app.store.writer_epoch().is_ok();
    ok(json!({"status": "UP", "writer": writer}))
}

async fn metrics(Extract(app): Extract<Arc<App>>) -> Response {
    {
        let state = app.store.state();
        metrics::gauge!("registry_schemas").set(state.schema_count() as f64);
        metrics::gauge!("registry_subjects").set(state.subjects(false).len() as f64);
    }
    app.metrics.render().into_response()
}

async fn list_subjects(Extract(app): Extract<Arc<App>>, Query(flags): Query<Flags>) -> Response {
    ok(json!(app.store.state().subjects(flags.deleted)))
}

async fn schema_types() -> Response {
    ok(json!(["AVRO"]))
}

async fn list_versions(
    Extract(app): Extract<Arc<App>>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let state = app.store.state();
    let versions: Vec<i32> = state
        .versions(&subject)
        .map(|vs| {
            vs.iter()
                .filter(|(_, v)| flags.deleted || !v.deleted)
                .map(|(n, _)| *n)
                .collect()
        })
        .unwrap_or_default();
    if versions.is_empty() {
        return Err(ApiError::subject_not_found(&subject));
    }
    Ok(ok(json!(versions)))
}

fn version_body(state: &State, subject: &str, version: i32, id: u32) -> Result<Json> {
    let mut body = schema_body(state, id)?;
    body.insert("subject".into(), json!(subject));
    body.insert("version".into(), json!(version));
    body.insert("id".into(), json!(id));
    Ok(Json::Object(body))
}

async fn get_version(
    Extract(app): Extract<Arc<App>>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let version = parse_version(&version)?;
    let state = app.store.state();
    let (n, id, _) = find_version(&state, &subject, version, flags.deleted)?;
    Ok(ok(version_body(&state, &subject, n, id)?))
}

async fn get_version_schema(
    Extract(app): Extract<Arc<App>>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let version = parse_version(&version)?;
    let state = app.store.state();
    let (_, id, _) = find_version(&state, &subject, version, flags.deleted)?;
    let entry = state.schema(id).ok_or_else(ApiError::schema_not_found)?;
    Ok(ok(serde_json::from_str(&entry.schema).unwrap_or(Json::Null)))
}

async fn referenced_by(
    Extract(app): Extract<Arc<App>>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response> {
    let version = parse_version(&version)?;
    let state = app.store.state();
    let (n, _, _) = find_version(&state, &subject, version, true)?;
    Ok(ok(json!(state.referenced_by(&subject, n))))
}

async fn register(
    Extract(app): Extract<Arc<App>>,
    Path(subject): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let request: SchemaRequest = body(bytes)?;
    request.check_type()?;
    // Clients re-register the schema they already have on every start: answer
    // that from memory without queueing behind writes.
    let parsed = parse_schema(&app.store.state(), &request.schema, &request.references)?;
    if let Some(id) = registered_id(&app.store.state(), &subject, &parsed) {
        return Ok(ok(json!({ "id": id })));
    }
    let _writes = app.store.lock_writes().await;
    let (record, id) = {
        let state = app.store.state();
        // Checked again under the lock: another request may have registered it.
        if let Some(id) = registered_id(&state, &subject, &parsed) {
            return Ok(ok(json!({ "id": id })));
        }
        let same = state.id_of(&parsed.canonical, &parsed.references);
        let versions = state.versions(&subject);
        let mode = state.effective_mode(&subject);
        if mode == Mode::Readonly {
            return Err(ApiError::new(42205, format!("Subject {subject} is in read-only mode")));
        }
        if (request.id.is_some() || request.version.is_some()) && mode != Mode::Import {
            return Err(ApiError::new(
                42205,
                format!("Subject {subject} is not in import mode; an id or version may only be given in IMPORT mode"),
            ));
        }
        if mode != Mode::Import {
            let existing: Vec<(i32, Schema)> = versions
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.deleted)
                .map(|(n, v)| Ok((*n, stored_schema(&state, v.id)?)))
                .collect::<Result<_>>()?;
            let existing: Vec<(i32, &Schema)> = existing.iter().map(|(n, s)| (*n, s)).collect();
            let reasons = compat::check(state.effective_level(&subject), &parsed.schema, &existing);
            if !reasons.is_empty() {
                return Err(ApiError::new(
                    409,
                    format!(
                        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                        reasons.join("; ")
                    ),
                ));
            }
        }
        let id = match (request.id, same) {
            (Some(requested), Some(existing)) if requested != existing => {
                return Err(ApiError::new(
                    42205,
                    format!("this schema already has id {existing}; it cannot be imported as {requested}"),
                ))
            }
            (Some(requested), _) => {
                if state.schema(requested).is_some() {
                    return Err(ApiError::new(
                        42205,
                        format!("id {requested} is already used by another schema"),
                    ));
                }
                requested
            }
            (None, Some(existing)) => existing,
            (None, None) => state.next_id(),
        };
        let next_version = versions.and_then(|vs| vs.keys().next_back()).map_or(1, |v| v + 1);
        let version = match request.version {
            Some(v) if versions.is_some_and(|vs| vs.contains_key(&v)) => {
                return Err(ApiError::new(42205, format!("version {v} of {subject} already exists")))
            }
            Some(v) if v >= 1 => v,
            Some(v) => return Err(ApiError::new(42202, format!("version {v} is not a valid version id"))),
            None => next_version,
        };
        let epoch = app.store.writer_epoch()?;
        let record = (
            RecordKey::Schema {
                subject: subject.clone(),
                version,
                write: app.store.write_id(),
            },
            Some(RecordValue::Schema(SchemaValue {
                epoch,
                id,
                schema: parsed.canonical,
                references: parsed.references,
                deleted: false,
                purged: false,
            })),
        );
        (record, id)
    };
    write(&app, &[record]).await?;
    Ok(ok(json!({"id": id})))
}

/// The id of `parsed` if it is a live version of `subject`.
fn registered_id(state: &State, subject: &str, parsed: &Parsed) -> Option<u32> {
    let id = state.id_of(&parsed.canonical, &parsed.references)?;
    state
        .versions(subject)?
        .values()
        .any(|v| !v.deleted && v.id == id)
        .then_some(id)
}

/// Writes records, turning a rejection (this instance was fenced) into an error.
async fn write(app: &App, records: &[(RecordKey, Option<RecordValue>)]) -> Result<()> {
    if app.store.write(records).await? {
        Ok(())
    } else {
        Err(StoreError::NotWriter {
            writer: app.store.state().writer().map(|w| w.url.clone()),
        }
        .into())
    }
}

async fn lookup(
    Extract(app): Extract<Arc<App>>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let request: SchemaRequest = body(bytes)?;
    request.check_type()?;
    let state = app.store.state();
    let versions = state
        .versions(&subject)
        .filter(|vs| flags.deleted || vs.values().any(|v| !v.deleted))
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    let parsed = parse_schema(&state, &request.schema, &request.references)?;
    let id = state
        .id_of(&parsed.canonical, &parsed.references)
        .ok_or_else(ApiError::schema_not_found)?;
    let (n, _) = versions
        .iter()
        .rev()
        .find(|(_, v)| v.id == id && (flags.deleted || !v.deleted))
        .ok_or_else(ApiError::schema_not_found)?;
    Ok(ok(version_body(&state, &subject, *n, id)?))
}

/// The records that soft-delete or purge one version.
fn delete_records(
    app: &App,
    state: &State,
    subject: &str,
    version: i32,
    permanent: bool,
) -> Result<Vec<(RecordKey, Option<RecordValue>)>> {
    let v = state
        .versions(subject)
        .and_then(|vs| vs.get(&version))
        .ok_or_else(|| ApiError::version_not_found(version))?;
    let epoch = app.store.writer_epoch()?;
    let entry = state.schema(v.id).ok_or_else(ApiError::schema_not_found)?;
    let marker = |purged: bool| {
        (
            RecordKey::Schema {
                subject: subject.to_owned(),
                version,
                write: app.store.write_id(),
            },
            Some(RecordValue::Schema(SchemaValue {
                epoch,
                id: v.id,
                schema: if purged { String::new() } else { entry.schema.clone() },
                references: if purged { vec![] } else { entry.references.clone() },
                deleted: true,
                purged,
            })),
        )
    };
    if !permanent {
        return Ok(vec![marker(false)]);
    }
    // The purge marker first, then tombstones for every record that held the schema.
    let mut records = vec![marker(true)];
    records.extend(v.keys.iter().map(|k| (k.clone(), None)));
    Ok(records)
}

async fn delete_version(
    Extract(app): Extract<Arc<App>>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let version = parse_version(&version)?;
    let _writes = app.store.lock_writes().await;
    let (n, records) = {
        let state = app.store.state();
        // A numbered version is found even when soft-deleted, to say so (40406);
        // `latest` means the latest live one unless deleting permanently.
        let include_deleted = flags.permanent || matches!(version, VersionRef::Number(_));
        let (n, _, deleted) = find_version(&state, &subject, version, include_deleted)?;
        if state.effective_mode(&subject) == Mode::Readonly {
            return Err(ApiError::new(42205, format!("Subject {subject} is in read-only mode")));
        }
        if !flags.permanent && deleted {
            return Err(ApiError::new(
                40406,
                format!("Subject '{subject}' Version {n} was soft deleted. Set permanent=true to delete permanently"),
            ));
        }
        if flags.permanent && !deleted {
            return Err(ApiError::new(
                40407,
                format!("Subject '{subject}' Version {n} was not deleted first before being permanently deleted"),
            ));
        }
        (n, delete_records(&app, &state, &subject, n, flags.permanent)?)
    };
    write(&app, &records).await?;
    Ok(ok(json!(n)))
}

async fn delete_subject(
    Extract(app): Extract<Arc<App>>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let _writes = app.store.lock_writes().await;
    let (numbers, records) = {
        let state = app.store.state();
        let versions = state
            .versions(&subject)
            .ok_or_else(|| ApiError::subject_not_found(&subject))?;
        if state.effective_mode(&subject) == Mode::Readonly {
            return Err(ApiError::new(42205, format!("Subject {subject} is in read-only mode")));
        }
        let live: Vec<i32> = versions.iter().filter(|(_, v)| !v.deleted).map(|(n, _)| *n).collect();
        let targets: Vec<i32> = if flags.permanent {
            if !live.is_empty() {
                return Err(ApiError::new(
                    40405,
                    format!("Subject '{subject}' was not deleted first before being permanently deleted"),
                ));
            }
            versions.keys().copied().collect()
        } else {
            if live.is_empty() {
                return Err(ApiError::new(
                    40404,
                    format!("Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"),
                ));
            }
            live
        };
        let mut records = Vec::new();
        for n in &targets {
            records.extend(delete_records(&app, &state, &subject, *n, flags.permanent)?);
        }
        if flags.permanent && state.subject_level(&subject).is_some() {
            records.push((
                RecordKey::Config {
                    subject: Some(subject.clone()),
                    write: app.store.write_id(),
                },
                Some(RecordValue::Config(ConfigValue {
                    epoch: app.store.writer_epoch()?,
                    level: None,
                })),
            ));
        }
        (targets, records)
    };
    write(&app, &records).await?;
    Ok(ok(json!(numbers)))
}

fn parse_id(text: &str) -> Result<u32> {
    text.parse()
        .map_err(|_| ApiError::new(40403, format!("Schema {text} not found")))
}

async fn schema_by_id(Extract(app): Extract<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id)?;
    // The hot path of every consumer: the body was rendered when the schema was stored.
    let body = app
        .store
        .state()
        .schema(id)
        .map(|e| Arc::clone(&e.by_id_body))
        .ok_or_else(ApiError::schema_not_found)?;
    let mut response = Response::new(axum::body::Body::from(Bytes::from_owner(body)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

async fn schema_by_id_raw(Extract(app): Extract<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id)?;
    let state = app.store.state();
    let entry = state.schema(id).ok_or_else(ApiError::schema_not_found)?;
    Ok(ok(serde_json::from_str(&entry.schema).unwrap_or(Json::Null)))
}

async fn schema_versions(
    Extract(app): Extract<Arc<App>>,
    Path(id): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let id = parse_id(&id)?;
    let state = app.store.state();
    state.schema(id).ok_or_else(ApiError::schema_not_found)?;
    let uses: Vec<Json> = state
        .uses_of(id, flags.deleted)
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(ok(json!(uses)))
}

async fn schema_subjects(
    Extract(app): Extract<Arc<App>>,
    Path(id): Path<String>,
    Query(flags): Query<Flags>,
) -> Result<Response> {
    let id = parse_id(&id)?;
    let state = app.store.state();
    state.schema(id).ok_or_else(ApiError::schema_not_found)?;
    let mut subjects: Vec<String> = state.uses_of(id, flags.deleted).into_iter().map(|(s, _)| s).collect();
    subjects.dedup();
    Ok(ok(json!(subjects)))
}

async fn check_compatibility(
    app: &App,
    subject: &str,
    version: Option<VersionRef>,
    verbose: bool,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let request: SchemaRequest = body(bytes)?;
    request.check_type()?;
    let state = app.store.state();
    let parsed = parse_schema(&state, &request.schema, &request.references)?;
    let existing: Vec<(i32, Schema)> = match version {
        Some(v) => {
            let (n, id, _) = find_version(&state, subject, v, false)?;
            vec![(n, stored_schema(&state, id)?)]
        }
        None => state
            .versions(subject)
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.deleted)
            .map(|(n, v)| Ok((*n, stored_schema(&state, v.id)?)))
            .collect::<Result<_>>()?,
    };
    let existing: Vec<(i32, &Schema)> = existing.iter().map(|(n, s)| (*n, s)).collect();
    let reasons = compat::check(state.effective_level(subject), &parsed.schema, &existing);
    let mut body = json!({"is_compatible": reasons.is_empty()});
    if verbose {
        body["messages"] = json!(reasons);
    }
    Ok(ok(body))
}

async fn compatibility_with_version(
    Extract(app): Extract<Arc<App>>,
    Path((subject, version)): Path<(String, String)>,
    Query(flags): Query<Flags>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let version = parse_version(&version)?;
    check_compatibility(&app, &subject, Some(version), flags.verbose, bytes).await
}

async fn compatibility_with_all(
    Extract(app): Extract<Arc<App>>,
    Path(subject): Path<String>,
    Query(flags): Query<Flags>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response> {
    check_compatibility(&app, &subject, None, flags.verbose, bytes).await
}

/// A setting kept globally and per subject: the compatibility level
/// (`/config`) or the mode (`/mode`). Both have the same six operations.
#[derive(Debug, Clone, Copy)]
enum Setting {
    Compatibility,
    Mode,
}

impl Setting {
    /// The key in GET and DELETE answers.
    fn answer_key(self) -> &'static str {
        match self {
            Setting::Compatibility => "compatibilityLevel",
            Setting::Mode => "mode",
        }
    }

    /// The key in PUT bodies and answers.
    fn request_key(self) -> &'static str {
        match self {
            Setting::Compatibility => "compatibility",
            Setting::Mode => "mode",
        }
    }

    fn not_configured(self, subject: &str) -> ApiError {
        match self {
            Setting::Compatibility => ApiError::new(
                40408,
                format!("Subject '{subject}' does not have subject-level compatibility configured"),
            ),
            Setting::Mode => ApiError::new(
                40409,
                format!("Subject '{subject}' does not have subject-level mode configured"),
            ),
        }
    }

    fn global(self, state: &State) -> Json {
        match self {
            Setting::Compatibility => json!(state.global_level().unwrap_or_default()),
            Setting::Mode => json!(state.global_mode().unwrap_or_default()),
        }
    }

    fn for_subject(self, state: &State, subject: &str) -> Option<Json> {
        match self {
            Setting::Compatibility => state.subject_level(subject).map(|l| json!(l)),
            Setting::Mode => state.subject_mode(subject).map(|m| json!(m)),
        }
    }

    /// The record that sets (or removes) the setting; the value is checked here.
    fn record(
        self,
        app: &App,
        subject: Option<String>,
        value: Option<&str>,
    ) -> Result<(RecordKey, Option<RecordValue>)> {
        let epoch = app.store.writer_epoch()?;
        let write = app.store.write_id();
        Ok(match self {
            Setting::Compatibility => (
                RecordKey::Config { subject, write },
                Some(RecordValue::Config(ConfigValue {
                    epoch,
                    level: value.map(parse_level).transpose()?,
                })),
            ),
            Setting::Mode => (
                RecordKey::Mode { subject, write },
                Some(RecordValue::Mode(ModeValue {
                    epoch,
                    mode: value.map(parse_mode).transpose()?,
                })),
            ),
        })
    }

    async fn write(self, app: &App, subject: Option<String>, value: Option<&str>) -> Result<()> {
        let _writes = app.store.lock_writes().await;
        let record = self.record(app, subject, value)?;
        write(app, &[record]).await
    }

    /// The value a PUT body names, checked and normalised.
    fn requested(self, bytes: Result<Bytes, BytesRejection>) -> Result<String> {
        let body: Json = body(bytes)?;
        let text = body[self.request_key()].as_str().ok_or_else(|| {
            ApiError::new(
                422,
                format!("Unprocessable entity: the body needs \"{}\"", self.request_key()),
            )
        })?;
        Ok(match self {
            Setting::Compatibility => parse_level(text)?.to_string(),
            Setting::Mode => json!(parse_mode(text)?).as_str().unwrap_or_default().to_owned(),
        })
    }
}

fn parse_level(text: &str) -> Result<Level> {
    text.to_ascii_uppercase().parse().map_err(|_| {
        ApiError::new(
            42203,
            "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive",
        )
    })
}

fn parse_mode(text: &str) -> Result<Mode> {
    serde_json::from_value(json!(text.to_ascii_uppercase()))
        .map_err(|_| ApiError::new(42204, "Invalid mode. Valid values are READWRITE, READONLY and IMPORT"))
}

async fn get_global(app: &App, setting: Setting) -> Response {
    ok(json!({ setting.answer_key(): setting.global(&app.store.state()) }))
}

async fn put_global(app: &App, setting: Setting, bytes: Result<Bytes, BytesRejection>) -> Result<Response> {
    let value = setting.requested(bytes)?;
    setting.write(app, None, Some(&value)).await?;
    Ok(ok(json!({ setting.request_key(): value })))
}

async fn delete_global(app: &App, setting: Setting) -> Result<Response> {
    let previous = setting.global(&app.store.state());
    setting.write(app, None, None).await?;
    Ok(ok(json!({ setting.answer_key(): previous })))
}

async fn get_for_subject(app: &App, setting: Setting, subject: &str, flags: &Flags) -> Result<Response> {
    let state = app.store.state();
    let value = match setting.for_subject(&state, subject) {
        Some(v) => v,
        None if flags.default_to_global => setting.global(&state),
        None => return Err(setting.not_configured(subject)),
    };
    Ok(ok(json!({ setting.answer_key(): value })))
}

async fn put_for_subject(
    app: &App,
    setting: Setting,
    subject: String,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let value = setting.requested(bytes)?;
    setting.write(app, Some(subject), Some(&value)).await?;
    Ok(ok(json!({ setting.request_key(): value })))
}

async fn delete_for_subject(app: &App, setting: Setting, subject: String) -> Result<Response> {
    let previous = setting
        .for_subject(&app.store.state(), &subject)
        .ok_or_else(|| setting.not_configured(&subject))?;
    setting.write(app, Some(subject), None).await?;
    Ok(ok(json!({ setting.answer_key(): previous })))
}

/// The six routes of a setting: `/{base}` and `/{base}/{subject}`.
fn setting_routes(router: Router<Arc<App>>, base: &str, setting: Setting) -> Router<Arc<App>> {
    router
        .route(
            &format!("/{base}"),
            get(move |Extract(app): Extract<Arc<App>>| async move { get_global(&app, setting).await })
                .put(move |Extract(app): Extract<Arc<App>>, bytes: Result<Bytes, BytesRejection>| async move {
                    put_global(&app, setting, bytes).await
                })
                .delete(move |Extract(app): Extract<Arc<App>>| async move { delete_global(&app, setting).await }),
        )
        .route(
            &format!("/{base}/{{subject}}"),
            get(
                move |Extract(app): Extract<Arc<App>>, Path(subject): Path<String>, Query(flags): Query<Flags>| async move {
                    get_for_subject(&app, setting, &subject, &flags).await
                },
            )
            .put(
                move |Extract(app): Extract<Arc<App>>,
                      Path(subject): Path<String>,
                      bytes: Result<Bytes, BytesRejection>| async move {
                    put_for_subject(&app, setting, subject, bytes).await
                },
            )
            .delete(
                move |Extract(app): Extract<Arc<App>>, Path(subject): Path<String>| async move {
                    delete_for_subject(&app, setting, subject).await
                },
            ),
        )
}

async fn not_found() -> ApiError {
    ApiError::new(404, "HTTP 404 Not Found")
}

// ---------------------------------------------------------------- middleware

/// Basic auth on everything but `/health`, when configured.
async fn authenticate(Extract(app): Extract<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &app.auth {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if request.uri().path() != "/health" && given != Some(expected.as_str()) {
            return ApiError::new(40101, "Unauthorized").into_response();
        }
    }
    next.run(request).await
}

/// Errors axum answers by itself — a method the path does not take (405), a
/// query or path segment it cannot parse (400) — in Confluent's shape too,
/// since clients parse every error body as `{"error_code", "message"}`.
async fn confluent_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let ours = response.headers().get(header::CONTENT_TYPE) == Some(&HeaderValue::from_static(CONTENT_TYPE));
    if ours || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // axum's own bodies are one short line of text, or nothing.
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = match text.trim() {
        "" => format!("HTTP {} {reason}", status.as_u16()),
        detail => format!("HTTP {} {reason}: {detail}", status.as_u16()),
    };
    ApiError::new(u32::from(status.as_u16()), message).into_response()
}

/// Counts requests by method, route and status.
async fn count(request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("registry_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// The whole API.
pub fn router(app: Arc<App>, max_body: usize) -> Router {
    let router = setting_routes(Router::new(), "config", Setting::Compatibility);
    setting_routes(router, "mode", Setting::Mode)
        .route("/", get(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_by_id_raw))
        .route("/schemas/ids/{id}/versions", get(schema_versions))
        .route("/schemas/ids/{id}/subjects", get(schema_subjects))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route("/subjects/{subject}/versions/{version}/schema", get(get_version_schema))
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_with_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_with_version),
        )
        .fallback(not_found)
        .route_layer(middleware::from_fn(count))
        .layer(middleware::from_fn(confluent_errors))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        // One log line per request at INFO (method, path, status, latency).
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .with_state(app)
}
