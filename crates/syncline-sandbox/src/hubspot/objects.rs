//! The objects API (API-CONTRACTS §1.2, §1.4) for every object type, standard or custom: list,
//! get, create (201), update, archive (204), and batch read, create (201/207), update, upsert
//! and archive (204), each checking values against the property definitions as HubSpot does.

use std::collections::{BTreeMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::portal::{Portal, Refused, Written};
use super::query::HubQuery;
use super::store::iso;
use super::{Answer, Call, Limit, default_wanted, error, known_type, parse_body, request, serve, standard_error};
use crate::Sandbox;
use crate::ledger::Effect;

/// The properties a read returns: those asked for, or the type's defaults.
fn wanted(q: &HubQuery, kind: &str) -> Vec<String> {
    q.properties.clone().unwrap_or_else(|| default_wanted(kind))
}

fn singular(kind: &str) -> &'static str {
    match kind {
        "contacts" => "Contact",
        "companies" => "Company",
        "deals" => "Deal",
        "appointments" => "Appointment",
        _ => "Object",
    }
}

fn effect(effects: &mut Vec<Effect>, kind: &'static str, object_type: &str, id: u64) {
    effects.push(Effect { kind, object_type: object_type.to_owned(), id: id.to_string() });
}

/// The message HubSpot gives for a unique value held by another object.
fn conflict_message(kind: &str, existing: u64) -> String {
    format!("{} already exists. Existing ID: {existing}", singular(kind))
}

/// The problems of one write input, HubSpot's way: a message and the per-property details.
struct Invalid {
    message: String,
    details: Vec<Value>,
}

impl Invalid {
    /// The whole request's error (400), as a single write or an untraced batch create answers.
    fn answer(self) -> Answer {
        let (status, mut body) = error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", self.message);
        body["errors"] = Value::Array(self.details);
        (status, body)
    }

    /// One input's error inside a 207.
    fn standard(self, context: Value) -> Value {
        standard_error("VALIDATION_ERROR", self.message, context, self.details)
    }
}

/// Checks the values of one write input and, when it creates an object with `new_object`'s
/// properties, that a custom object's required ones are there.
fn validate(
    portal: &Portal,
    kind: &str,
    properties: &BTreeMap<String, String>,
    new_object: Option<&BTreeMap<String, String>>,
) -> Result<(), Invalid> {
    let mut invalid = portal.check_properties(kind, properties);
    if let Some(new_object) = new_object {
        invalid.extend(portal.missing_required(kind, new_object).into_iter().map(|name| {
            json!({"isValid": false, "message": format!("Required property {name} is missing"), "error": "REQUIRED_PROPERTY", "name": name})
        }));
    }
    if invalid.is_empty() {
        return Ok(());
    }
    let message = format!("Property values were not valid: {}", Value::Array(invalid.clone()));
    let details = invalid.iter().map(|d| json!({"message": d["message"], "code": d["error"], "in": d["name"]})).collect();
    Err(Invalid { message, details })
}

/// A refused single write as HubSpot answers it: 404, or 409 naming the existing object.
fn refused(kind: &str, refusal: Refused) -> Answer {
    match refusal {
        Refused::NotFound => error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found"),
        Refused::Conflict(existing) => error(StatusCode::CONFLICT, "CONFLICT", conflict_message(kind, existing)),
    }
}

/// A refused batch input, inside a 207.
fn refused_input(kind: &str, refusal: Refused, context: Value) -> Value {
    match refusal {
        Refused::NotFound => standard_error("OBJECT_NOT_FOUND", "Object not found".into(), context, Vec::new()),
        Refused::Conflict(existing) => standard_error("CONFLICT", conflict_message(kind, existing), context, Vec::new()),
    }
}

/// A written object with the properties the input set (plus those always returned), and the
/// input's `objectWriteTraceId`.
fn written_json(portal: &Portal, kind: &str, id: u64, properties: &BTreeMap<String, String>, trace: Option<&String>) -> Value {
    let wanted: Vec<String> = properties.keys().cloned().collect();
    let mut json = portal.stores[kind].objects[&id].to_json(Some(&wanted));
    if let Some(trace) = trace {
        json["objectWriteTraceId"] = Value::String(trace.clone());
    }
    json
}

/// The response of a batch: every result with `ok`, or 207 with the errors beside them.
pub(crate) fn batch_response(ok: StatusCode, results: Vec<Value>, errors: Vec<Value>, started: String) -> Answer {
    let mut body = json!({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": iso(Utc::now())});
    if errors.is_empty() {
        return (ok, body);
    }
    body["numErrors"] = json!(errors.len());
    body["errors"] = Value::Array(errors);
    (StatusCode::MULTI_STATUS, body)
}

fn duplicate_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Result<(), Answer> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Duplicate IDs found in batch input: [{id}]")));
        }
    }
    Ok(())
}

/// Associations on create are not emulated yet: refused plainly rather than dropped silently.
fn no_associations(associations: &[Value]) -> Result<(), Answer> {
    match associations.is_empty() {
        true => Ok(()),
        false => Err(error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "associations on create are not emulated by the sandbox")),
    }
}

pub(crate) async fn list(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>) -> Response {
    let query = HubQuery::of(&call.uri);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let (kind, q) = match known_type(portal, &kind).and_then(|kind| Ok((kind, query?))) {
            Ok(read) => read,
            Err(e) => return e,
        };
        // a page with property histories holds at most 50 objects
        let most = if q.properties_with_history.is_empty() { 100 } else { 50 };
        let limit = q.limit.unwrap_or(10).clamp(1, most);
        let after: u64 = match q.after.as_deref().map(str::parse).transpose() {
            Ok(after) => after.unwrap_or(0),
            Err(_) => {
                let message = format!("Invalid after cursor: {}", q.after.unwrap_or_default());
                return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message);
            }
        };
        let wanted = wanted(&q, &kind);
        let store = portal.store(&kind);
        let mut page: Vec<_> = store.page(after, q.archived).take(limit + 1).collect();
        let next = (page.len() > limit).then(|| page.pop().map(|o| o.id)).flatten();
        let results: Vec<Value> = page
            .iter()
            .map(|o| {
                let mut json = o.to_json(Some(&wanted));
                o.add_history(&mut json, &q.properties_with_history);
                json
            })
            .collect();
        // `Value::Array`, not `json!`, which would copy every object once more
        let mut body = json!({});
        body["results"] = Value::Array(results);
        if let Some(next) = next {
            body["paging"] = json!({"next": {"after": next.to_string(), "link": format!("?after={next}")}});
        }
        (StatusCode::OK, body)
    })
    .await
}

pub(crate) async fn get(State(sandbox): State<Sandbox>, call: Call, Path((kind, id)): Path<(String, String)>) -> Response {
    let query = HubQuery::of(&call.uri);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, _| {
        let (kind, q) = match known_type(portal, &kind).and_then(|kind| Ok((kind, query?))) {
            Ok(read) => read,
            Err(e) => return e,
        };
        let wanted = wanted(&q, &kind);
        let id_property = q.id_property.as_deref().unwrap_or("hs_object_id");
        match portal.store(&kind).find_as(id_property, &id, q.archived) {
            Some(object) => {
                let mut json = object.to_json(Some(&wanted));
                object.add_history(&mut json, &q.properties_with_history);
                (StatusCode::OK, json)
            }
            None => error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found"),
        }
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateInput {
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    associations: Vec<Value>,
    object_write_trace_id: Option<String>,
}

pub(crate) async fn create(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    let parsed: Result<CreateInput, _> = parse_body(&body);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, effects| {
        let (kind, input) = match request(portal, &kind, parsed, 0) {
            Ok(request) => request,
            Err(e) => return e,
        };
        if let Err(e) = no_associations(&input.associations) {
            return e;
        }
        if let Err(invalid) = validate(portal, &kind, &input.properties, Some(&input.properties)) {
            return invalid.answer();
        }
        match portal.create(&kind, &input.properties) {
            Ok(id) => {
                effect(effects, "created", &kind, id);
                (StatusCode::CREATED, written_json(portal, &kind, id, &input.properties, None))
            }
            Err(refusal) => refused(&kind, refusal),
        }
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct UpdateBody {
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

pub(crate) async fn update(State(sandbox): State<Sandbox>, call: Call, Path((kind, id)): Path<(String, String)>, body: Bytes) -> Response {
    let parsed: Result<UpdateBody, _> = parse_body(&body);
    let query = HubQuery::of(&call.uri);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, effects| {
        let (kind, body, q) = match request(portal, &kind, parsed, 0).and_then(|(kind, body)| Ok((kind, body, query?))) {
            Ok(request) => request,
            Err(e) => return e,
        };
        let id_property = q.id_property.as_deref().unwrap_or("hs_object_id");
        let Some(object_id) = portal.store(&kind).find(id_property, &id).map(|o| o.id) else {
            return refused(&kind, Refused::NotFound);
        };
        if let Err(invalid) = validate(portal, &kind, &body.properties, None) {
            return invalid.answer();
        }
        match portal.update(&kind, object_id, &body.properties) {
            Ok(()) => {
                effect(effects, "updated", &kind, object_id);
                (StatusCode::OK, written_json(portal, &kind, object_id, &body.properties, None))
            }
            Err(refusal) => refused(&kind, refusal),
        }
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MergeBody {
    primary_object_id: String,
    object_id_to_merge: String,
}

/// `POST …/merge` (`PublicMergeInput`): the secondary merged into the primary, which is answered.
pub(crate) async fn merge(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    let parsed: Result<MergeBody, _> = parse_body(&body);
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, effects| {
        let (kind, body) = match request(portal, &kind, parsed, 0) {
            Ok(request) => request,
            Err(e) => return e,
        };
        let (Ok(primary), Ok(secondary)) = (body.primary_object_id.parse(), body.object_id_to_merge.parse()) else {
            return refused(&kind, Refused::NotFound);
        };
        match portal.merge(&kind, primary, secondary) {
            Ok(()) => {
                effect(effects, "merged", &kind, secondary);
                let object = portal.store(&kind).find("hs_object_id", &primary.to_string()).expect("merged into a live object");
                (StatusCode::OK, object.to_json(None))
            }
            Err(refusal) => refused(&kind, refusal),
        }
    })
    .await
}

/// Archiving answers 204 whether or not the object was live, as HubSpot does.
pub(crate) async fn archive(State(sandbox): State<Sandbox>, call: Call, Path((kind, id)): Path<(String, String)>) -> Response {
    serve(&sandbox, call, 0, Limit::TenSecondly, |portal, effects| {
        let kind = match known_type(portal, &kind) {
            Ok(kind) => kind,
            Err(e) => return e,
        };
        if let Ok(id) = id.parse()
            && portal.archive(&kind, id)
        {
            effect(effects, "archived", &kind, id);
        }
        (StatusCode::NO_CONTENT, Value::Null)
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct Inputs<T> {
    inputs: Vec<T>,
}

/// A batch request body: how many inputs it carries (the ledger counts them).
trait BatchBody: serde::de::DeserializeOwned {
    fn len(&self) -> usize;
}

impl<T: serde::de::DeserializeOwned> BatchBody for Inputs<T> {
    fn len(&self) -> usize {
        self.inputs.len()
    }
}

/// Parses a batch body and, once `serve` has authenticated and charged the call, runs `handler`
/// with the resolved object type, or answers HubSpot's 400 for a bad body or too many inputs.
async fn serve_batch<B: BatchBody>(
    sandbox: &Sandbox,
    call: Call,
    kind: &str,
    body: &[u8],
    handler: impl FnOnce(&mut Portal, &mut Vec<Effect>, String, B) -> Answer,
) -> Response {
    let parsed: Result<B, _> = parse_body(body);
    let inputs = parsed.as_ref().map_or(0, B::len);
    serve(sandbox, call, inputs, Limit::TenSecondly, |portal, effects| match request(portal, kind, parsed, inputs) {
        Ok((kind, body)) => handler(portal, effects, kind, body),
        Err(e) => e,
    })
    .await
}

/// Batch create. Per-input errors (207) need a distinct `objectWriteTraceId` on every input;
/// without them one bad input fails the whole batch and nothing is created (API-CONTRACTS §1.4).
pub(crate) async fn batch_create(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    serve_batch(&sandbox, call, &kind, &body, |portal, effects, kind, body: Inputs<CreateInput>| {
        let started = iso(Utc::now());
        if let Some(e) = body.inputs.iter().find_map(|i| no_associations(&i.associations).err()) {
            return e;
        }
        let traces: HashSet<&str> = body.inputs.iter().filter_map(|i| i.object_write_trace_id.as_deref()).collect();
        let traced = traces.len() == body.inputs.len();
        if !traced && let Err(e) = check_all_or_nothing(portal, &kind, &body.inputs) {
            return e;
        }
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in &body.inputs {
            let context = json!({"objectWriteTraceId": [input.object_write_trace_id]});
            if let Err(invalid) = validate(portal, &kind, &input.properties, Some(&input.properties)) {
                errors.push(invalid.standard(context));
                continue;
            }
            match portal.create(&kind, &input.properties) {
                Err(refusal) => errors.push(refused_input(&kind, refusal, context)),
                Ok(id) => {
                    effect(effects, "created", &kind, id);
                    results.push(written_json(portal, &kind, id, &input.properties, input.object_write_trace_id.as_ref()));
                }
            }
        }
        batch_response(StatusCode::CREATED, results, errors, started)
    })
    .await
}

/// An untraced batch create is all or nothing: the first bad input, or two inputs claiming the
/// same unique value, fails it before anything is written.
fn check_all_or_nothing(portal: &Portal, kind: &str, inputs: &[CreateInput]) -> Result<(), Answer> {
    let unique = portal.unique_names(kind);
    let mut claimed = HashSet::new();
    for input in inputs {
        validate(portal, kind, &input.properties, Some(&input.properties)).map_err(Invalid::answer)?;
        if let Some(existing) = portal.conflict(kind, None, &input.properties) {
            return Err(refused(kind, Refused::Conflict(existing)));
        }
        for name in &unique {
            if let Some(value) = input.properties.get(name).filter(|v| !v.is_empty())
                && !claimed.insert((name, value))
            {
                let message = format!("Duplicate value {value} for unique property {name} in batch input");
                return Err(error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message));
            }
        }
    }
    Ok(())
}

/// An input of batch update and upsert: the object by id or by a unique `idProperty`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyedInput {
    id: String,
    id_property: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    object_write_trace_id: Option<String>,
}

pub(crate) async fn batch_update(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    serve_batch(&sandbox, call, &kind, &body, |portal, effects, kind, body: Inputs<KeyedInput>| {
        let started = iso(Utc::now());
        if let Err(e) = duplicate_ids(body.inputs.iter().map(|i| i.id.as_str())) {
            return e;
        }
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in &body.inputs {
            let context = json!({"ids": [input.id]});
            let id_property = input.id_property.as_deref().unwrap_or("hs_object_id");
            let Some(id) = portal.store(&kind).find(id_property, &input.id).map(|o| o.id) else {
                errors.push(refused_input(&kind, Refused::NotFound, context));
                continue;
            };
            if let Err(invalid) = validate(portal, &kind, &input.properties, None) {
                errors.push(invalid.standard(context));
                continue;
            }
            match portal.update(&kind, id, &input.properties) {
                Err(refusal) => errors.push(refused_input(&kind, refusal, context)),
                Ok(()) => {
                    effect(effects, "updated", &kind, id);
                    results.push(written_json(portal, &kind, id, &input.properties, input.object_write_trace_id.as_ref()));
                }
            }
        }
        batch_response(StatusCode::OK, results, errors, started)
    })
    .await
}

pub(crate) async fn batch_upsert(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    serve_batch(&sandbox, call, &kind, &body, |portal, effects, kind, body: Inputs<KeyedInput>| {
        let started = iso(Utc::now());
        for input in &body.inputs {
            let Some(id_property) = input.id_property.as_deref() else {
                return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "idProperty is required for upserts");
            };
            if !portal.property(&kind, id_property).is_some_and(|p| p.has_unique_value) {
                let message = format!("{id_property} is not a unique property of {kind}; it cannot be an idProperty");
                return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message);
            }
        }
        if let Err(e) = duplicate_ids(body.inputs.iter().map(|i| i.id.as_str())) {
            return e;
        }
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in &body.inputs {
            let id_property = input.id_property.as_deref().expect("checked above");
            let context = json!({"ids": [input.id]});
            // a create gets the key as a property too
            let new_object = portal.store(&kind).find(id_property, &input.id).is_none().then(|| {
                let mut properties = input.properties.clone();
                properties.insert(id_property.to_owned(), input.id.clone());
                properties
            });
            if let Err(invalid) = validate(portal, &kind, &input.properties, new_object.as_ref()) {
                errors.push(invalid.standard(context));
                continue;
            }
            match portal.upsert(&kind, id_property, &input.id, &input.properties) {
                Err(refusal) => errors.push(refused_input(&kind, refusal, context)),
                Ok(written) => {
                    let (id, new) = match written {
                        Written::Created(id) => (id, true),
                        Written::Updated(id) => (id, false),
                    };
                    effect(effects, if new { "created" } else { "updated" }, &kind, id);
                    let mut json = written_json(portal, &kind, id, &input.properties, input.object_write_trace_id.as_ref());
                    json["new"] = Value::Bool(new);
                    results.push(json);
                }
            }
        }
        batch_response(StatusCode::OK, results, errors, started)
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReadBody {
    inputs: Vec<IdInput>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    properties_with_history: Vec<String>,
    id_property: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct IdInput {
    id: String,
}

impl BatchBody for ReadBody {
    fn len(&self) -> usize {
        self.inputs.len()
    }
}

pub(crate) async fn batch_read(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    let query = HubQuery::of(&call.uri);
    serve_batch(&sandbox, call, &kind, &body, |portal, _, kind, body: ReadBody| {
        let q = match query {
            Ok(q) => q,
            Err(e) => return e,
        };
        let started = iso(Utc::now());
        let id_property = body.id_property.as_deref().unwrap_or("hs_object_id");
        let wanted = if body.properties.is_empty() { default_wanted(&kind) } else { body.properties.clone() };
        let store = portal.store(&kind);
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for input in &body.inputs {
            match store.find_as(id_property, &input.id, q.archived) {
                Some(object) => {
                    let mut json = object.to_json(Some(&wanted));
                    object.add_history(&mut json, &body.properties_with_history);
                    results.push(json);
                }
                None => missing.push(input.id.clone()),
            }
        }
        let errors = if missing.is_empty() {
            Vec::new()
        } else {
            let message = format!(
                "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
                singular(&kind).to_uppercase()
            );
            vec![standard_error("OBJECT_NOT_FOUND", message, json!({"ids": missing}), Vec::new())]
        };
        batch_response(StatusCode::OK, results, errors, started)
    })
    .await
}

/// Batch archive answers 204; ids that are not live objects are passed over.
pub(crate) async fn batch_archive(State(sandbox): State<Sandbox>, call: Call, Path(kind): Path<String>, body: Bytes) -> Response {
    serve_batch(&sandbox, call, &kind, &body, |portal, effects, kind, body: Inputs<IdInput>| {
        for input in &body.inputs {
            if let Ok(id) = input.id.parse()
                && portal.archive(&kind, id)
            {
                effect(effects, "archived", &kind, id);
            }
        }
        (StatusCode::NO_CONTENT, Value::Null)
    })
    .await
}
