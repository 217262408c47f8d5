//! Associations v4 (API-CONTRACTS §1.6): links between two objects, each carrying one or more
//! association types (HubSpot's unlabeled default, or a label), kept in both directions — a
//! type from A to B has its inverse from B to A. Batch read (≤ 500 associated objects per input,
//! then `paging`), batch create, default and archive, the one-record list, associate and delete,
//! and labels. The batch operations are exempt from the ten-second budget, as the spec says.
//!
//! A change to an association modifies both objects (HubSpot recounts their
//! `num_associated_*`), an archived object's associations go with it, and a merged-away
//! object's move to the object it was merged into.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::batch_response;
use super::portal::{Portal, object_type_id};
use super::query::HubQuery;
use super::store::iso;
use super::{Answer, Call, Limit, error, known_type, parse_body, serve, standard_error};
use crate::Sandbox;

/// Inputs a v4 batch call takes (HubSpot documents 1,000 for batch read).
const MAX_INPUTS: usize = 1_000;

/// Associated objects returned per input of a batch read, and per page of the one-record list.
const PER_OBJECT: usize = 500;

/// An object: its type key and id.
pub type Node = (String, u64);

/// One association type from one object type to another.
#[derive(Debug, Clone, PartialEq)]
pub struct AssociationType {
    pub from: String,
    pub to: String,
    pub type_id: u32,
    /// The type of the same link seen from the other side.
    pub inverse: u32,
    pub category: &'static str,
    pub label: Option<String>,
}

impl AssociationType {
    /// `AssociationSpecWithLabel`: an unlabeled type has no `label` (the spec's is a string).
    fn to_json(&self) -> Value {
        let mut json = json!({"category": self.category, "typeId": self.type_id});
        if let Some(label) = &self.label {
            json["label"] = json!(label);
        }
        json
    }
}

/// HubSpot's documented unlabeled types between standard objects (API-CONTRACTS §1.6):
/// (from, to, typeId, inverse typeId).
const DOCUMENTED: [(&str, &str, u32, u32); 3] =
    [("contacts", "companies", 279, 280), ("deals", "contacts", 3, 4), ("deals", "companies", 341, 342)];

/// Type ids the sandbox gives pairs it knows no documented id for (appointments, custom objects)
/// start here.
const FIRST_ASSIGNED: u32 = 1_000;

/// Every link of a portal, both directions, with the types each carries.
#[derive(Debug, Default)]
pub struct Associations {
    links: BTreeMap<Node, BTreeMap<Node, BTreeSet<u32>>>,
    types: Vec<AssociationType>,
    next_type: u32,
}

impl Associations {
    /// The unlabeled type from `from` to `to`, defined on first use.
    pub fn default_type(&mut self, from: &str, to: &str) -> u32 {
        if let Some(t) = self.types.iter().find(|t| t.from == from && t.to == to && t.label.is_none()) {
            return t.type_id;
        }
        let documented = DOCUMENTED.iter().find_map(|(a, b, ab, ba)| match (from == *a && to == *b, from == *b && to == *a) {
            (true, _) => Some((*ab, *ba)),
            (_, true) => Some((*ba, *ab)),
            _ => None,
        });
        let (forward, inverse) = documented.unwrap_or_else(|| self.assign());
        self.define((from, to), (forward, inverse), "HUBSPOT_DEFINED", (None, None));
        forward
    }

    fn assign(&mut self) -> (u32, u32) {
        let first = FIRST_ASSIGNED.max(self.next_type);
        self.next_type = first + 2;
        (first, first + 1)
    }

    /// Defines a type from `from` to `to` and its inverse: (forward, inverse) ids and labels.
    fn define(
        &mut self,
        (from, to): (&str, &str),
        (forward, inverse): (u32, u32),
        category: &'static str,
        labels: (Option<&str>, Option<&str>),
    ) {
        let (label, inverse_label) = labels;
        let make = |from: &str, to: &str, type_id, inverse, label: Option<&str>| AssociationType {
            from: from.to_owned(),
            to: to.to_owned(),
            type_id,
            inverse,
            category,
            label: label.map(str::to_owned),
        };
        self.types.push(make(from, to, forward, inverse, label));
        if from != to || forward != inverse {
            self.types.push(make(to, from, inverse, forward, inverse_label.or(label)));
        }
    }

    /// A labelled (USER_DEFINED) type from `from` to `to` and its inverse: the forward one.
    pub fn add_label(&mut self, from: &str, to: &str, label: &str, inverse_label: Option<&str>) -> AssociationType {
        let (forward, inverse) = self.assign();
        self.define((from, to), (forward, inverse), "USER_DEFINED", (Some(label), inverse_label));
        self.type_of(from, to, forward).expect("defined above").clone()
    }

    /// The types defined from `from` to `to` (the unlabeled one made on first ask).
    pub fn labels(&mut self, from: &str, to: &str) -> Vec<AssociationType> {
        self.default_type(from, to);
        self.types.iter().filter(|t| t.from == from && t.to == to).cloned().collect()
    }

    fn type_of(&self, from: &str, to: &str, type_id: u32) -> Option<&AssociationType> {
        self.types.iter().find(|t| t.from == from && t.to == to && t.type_id == type_id)
    }

    /// Links `a` to `b` with `type_id` (from `a`'s side), and `b` to `a` with its inverse.
    /// False when the type is not one between their object types.
    pub fn link(&mut self, a: &Node, b: &Node, type_id: u32) -> bool {
        let Some(inverse) = self.type_of(&a.0, &b.0, type_id).map(|t| t.inverse) else { return false };
        self.links.entry(a.clone()).or_default().entry(b.clone()).or_default().insert(type_id);
        self.links.entry(b.clone()).or_default().entry(a.clone()).or_default().insert(inverse);
        true
    }

    /// Removes every type between `a` and `b`; false when they were not linked.
    pub fn unlink(&mut self, a: &Node, b: &Node) -> bool {
        let removed = self.links.get_mut(a).and_then(|to| to.remove(b)).is_some();
        if let Some(to) = self.links.get_mut(b) {
            to.remove(a);
        }
        removed
    }

    /// The objects of type `to` linked to `from`, with their types (from `from`'s side).
    pub fn of(&self, from: &Node, to: &str) -> Vec<(u64, Vec<&AssociationType>)> {
        let Some(links) = self.links.get(from) else { return Vec::new() };
        links
            .iter()
            .filter(|(node, _)| node.0 == to)
            .map(|(node, ids)| (node.1, ids.iter().filter_map(|id| self.type_of(&from.0, to, *id)).collect()))
            .collect()
    }

    /// Removes every link of `node`: the objects it was linked to.
    pub fn remove_all(&mut self, node: &Node) -> Vec<Node> {
        let others: Vec<Node> = self.links.remove(node).map(|to| to.into_keys().collect()).unwrap_or_default();
        for other in &others {
            if let Some(to) = self.links.get_mut(other) {
                to.remove(node);
            }
        }
        others
    }

    /// Moves every link of `from` to `into` (a merge): the objects now linked to `into`.
    pub fn move_all(&mut self, from: &Node, into: &Node) -> Vec<Node> {
        let moved: Vec<(Node, BTreeSet<u32>)> = self.links.get(from).map(|to| to.clone().into_iter().collect()).unwrap_or_default();
        self.remove_all(from);
        for (other, types) in &moved {
            for type_id in types {
                self.link(into, other, *type_id);
            }
        }
        moved.into_iter().map(|(other, _)| other).collect()
    }
}

impl Portal {
    /// Links two live objects with `type_id` (their unlabeled type when `None`), modifying both.
    /// An error says what HubSpot would.
    pub fn associate(&mut self, a: &Node, b: &Node, type_id: Option<u32>) -> Result<(), String> {
        for (kind, id) in [a, b] {
            if self.stores.get(kind).and_then(|s| s.find("hs_object_id", &id.to_string())).is_none() {
                return Err(format!("No {kind} with id {id} exists"));
            }
        }
        let type_id = type_id.unwrap_or_else(|| self.associations.default_type(&a.0, &b.0));
        if !self.associations.link(a, b, type_id) {
            return Err(format!("association type {type_id} is not defined from {} to {}", a.0, b.0));
        }
        self.touch_all(&[a.clone(), b.clone()]);
        Ok(())
    }

    /// Removes every type between two objects, modifying both; false when they were not linked.
    pub fn dissociate(&mut self, a: &Node, b: &Node) -> bool {
        let removed = self.associations.unlink(a, b);
        if removed {
            self.touch_all(&[a.clone(), b.clone()]);
        }
        removed
    }

    /// Marks objects modified now (their association counts changed).
    pub(crate) fn touch_all(&mut self, nodes: &[Node]) {
        for (kind, id) in nodes {
            if self.stores.get(kind).is_some_and(|s| s.objects.get(id).is_some_and(|o| o.archived_at.is_none())) {
                self.touch(kind, *id);
            }
        }
    }
}

#[derive(Deserialize)]
struct Inputs<T> {
    inputs: Vec<T>,
}

#[derive(Deserialize)]
struct ReadInput {
    id: String,
    after: Option<String>,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeSpec {
    association_category: String,
    association_type_id: u32,
}

#[derive(Deserialize)]
struct CreateInput {
    from: Id,
    to: Id,
    types: Vec<TypeSpec>,
}

#[derive(Deserialize)]
struct PairInput {
    from: Id,
    to: Id,
}

#[derive(Deserialize)]
struct ArchiveInput {
    from: Id,
    to: Vec<Id>,
}

/// The types of one object's links to `to` as the v4 API writes them, from `after` on.
fn associated(portal: &Portal, from: &Node, to: &str, after: usize) -> (Vec<Value>, Option<usize>) {
    let all = portal.associations.of(from, to);
    let page: Vec<Value> = all
        .iter()
        .skip(after)
        .take(PER_OBJECT)
        .map(|(id, types)| json!({"toObjectId": id.to_string(), "associationTypes": types.iter().map(|t| t.to_json()).collect::<Vec<_>>()}))
        .collect();
    let next = (all.len() > after + PER_OBJECT).then_some(after + PER_OBJECT);
    (page, next)
}

fn paging(next: usize) -> Value {
    json!({"next": {"after": next.to_string(), "link": format!("?after={next}")}})
}

/// Runs a v4 batch call: parses its inputs, checks both object types and the input count, and
/// hands the handler both type keys.
async fn serve_v4<T: serde::de::DeserializeOwned>(
    sandbox: &Sandbox,
    call: Call,
    (from, to): (String, String),
    body: &[u8],
    handler: impl FnOnce(&mut Portal, String, String, Vec<T>) -> Answer,
) -> Response {
    let parsed: Result<Inputs<T>, _> = parse_body(body);
    let inputs = parsed.as_ref().map_or(0, |p| p.inputs.len());
    serve(sandbox, call, inputs, Limit::Exempt, |portal, _| {
        let (from, to) = match known_pair(portal, &from, &to) {
            Ok(pair) => pair,
            Err(e) => return e,
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(e) => return e,
        };
        if inputs > MAX_INPUTS {
            let message = format!("Batch input contains {inputs} inputs; the limit is {MAX_INPUTS}");
            return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message);
        }
        handler(portal, from, to, parsed.inputs)
    })
    .await
}

/// Runs a one-record or labels call on a pair of object types (spending the ten-second
/// budget): the handler gets both types' keys, or the call HubSpot's 400 for an unknown one.
async fn serve_pair(
    sandbox: &Sandbox,
    call: Call,
    (from, to): (String, String),
    handler: impl FnOnce(&mut Portal, String, String) -> Answer,
) -> Response {
    serve(sandbox, call, 0, Limit::TenSecondly, |portal, _| match known_pair(portal, &from, &to) {
        Ok((from, to)) => handler(portal, from, to),
        Err(e) => e,
    })
    .await
}

/// Both object types of a pair, or HubSpot's 400 for the first it does not know.
fn known_pair(portal: &Portal, from: &str, to: &str) -> Result<(String, String), Answer> {
    Ok((known_type(portal, from)?, known_type(portal, to)?))
}

fn id_of(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `POST /crm/v4/associations/{from}/{to}/batch/read`: each input's associated objects (500 at
/// most, then `paging`); an input with none, or no such object, is an error beside them (207).
pub(crate) async fn batch_read(State(sandbox): State<Sandbox>, call: Call, Path(pair): Path<(String, String)>, body: Bytes) -> Response {
    serve_v4(&sandbox, call, pair, &body, |portal, from, to, inputs: Vec<ReadInput>| {
        let started = iso(Utc::now());
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for input in inputs {
            let after = input.after.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
            let (page, next) = match id_of(&input.id) {
                Some(id) => associated(portal, &(from.clone(), id), &to, after),
                None => (Vec::new(), None),
            };
            if page.is_empty() {
                let message = format!("No {to} is associated with {from} {}.", input.id);
                errors.push(standard_error("OBJECT_NOT_FOUND", message, json!({"fromObjectId": [input.id]}), Vec::new()));
                continue;
            }
            let mut result = json!({"from": {"id": input.id}, "to": page});
            if let Some(next) = next {
                result["paging"] = paging(next);
            }
            results.push(result);
        }
        batch_response(StatusCode::OK, results, errors, started)
    })
    .await
}

/// `POST …/batch/create`: labelled links (201, or 207 naming the inputs refused).
pub(crate) async fn batch_create(State(sandbox): State<Sandbox>, call: Call, Path(pair): Path<(String, String)>, body: Bytes) -> Response {
    serve_v4(&sandbox, call, pair, &body, |portal, from, to, inputs: Vec<CreateInput>| {
        let started = iso(Utc::now());
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for input in inputs {
            let (Some(a), Some(b)) = (id_of(&input.from.id), id_of(&input.to.id)) else {
                errors.push(invalid_pair(&input.from.id, &input.to.id, "ids must be numbers".into()));
                continue;
            };
            let (a, b) = ((from.clone(), a), (to.clone(), b));
            let mut failed = None;
            for spec in &input.types {
                let known = portal.associations.type_of(&from, &to, spec.association_type_id).map(|t| t.category);
                if known != Some(category(&spec.association_category)) {
                    failed = Some(format!(
                        "association type {} ({}) is not defined from {from} to {to}",
                        spec.association_type_id, spec.association_category
                    ));
                    break;
                }
                if let Err(why) = portal.associate(&a, &b, Some(spec.association_type_id)) {
                    failed = Some(why);
                    break;
                }
            }
            match failed {
                Some(why) => errors.push(invalid_pair(&input.from.id, &input.to.id, why)),
                None => {
                    let labels: Vec<Value> =
                        input.types.iter().filter_map(|s| portal.associations.type_of(&from, &to, s.association_type_id)).filter_map(|t| t.label.clone()).map(Value::String).collect();
                    let (from_type, to_type) = (object_type_id(&from), object_type_id(&to));
                    results.push(json!({"fromObjectTypeId": from_type, "fromObjectId": a.1.to_string(), "toObjectTypeId": to_type, "toObjectId": b.1.to_string(), "labels": labels}));
                }
            }
        }
        batch_response(StatusCode::CREATED, results, errors, started)
    })
    .await
}

fn category(text: &str) -> &'static str {
    match text {
        "USER_DEFINED" => "USER_DEFINED",
        "INTEGRATOR_DEFINED" => "INTEGRATOR_DEFINED",
        "WORK" => "WORK",
        _ => "HUBSPOT_DEFINED",
    }
}

fn invalid_pair(from: &str, to: &str, why: String) -> Value {
    standard_error("VALIDATION_ERROR", why, json!({"fromObjectId": [from], "toObjectId": [to]}), Vec::new())
}

/// `POST …/batch/associate/default`: unlabeled links (200).
pub(crate) async fn batch_default(State(sandbox): State<Sandbox>, call: Call, Path(pair): Path<(String, String)>, body: Bytes) -> Response {
    serve_v4(&sandbox, call, pair, &body, |portal, from, to, inputs: Vec<PairInput>| {
        let started = iso(Utc::now());
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for input in inputs {
            let linked = match (id_of(&input.from.id), id_of(&input.to.id)) {
                (Some(a), Some(b)) => portal.associate(&(from.clone(), a), &(to.clone(), b), None).map(|()| (a, b)),
                _ => Err("ids must be numbers".into()),
            };
            match linked {
                Ok((a, b)) => {
                    let type_id = portal.associations.default_type(&from, &to);
                    let spec = json!({"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id});
                    results.push(json!({"from": {"id": a.to_string()}, "to": {"id": b.to_string()}, "associationSpec": spec}));
                }
                Err(why) => errors.push(invalid_pair(&input.from.id, &input.to.id, why)),
            }
        }
        batch_response(StatusCode::OK, results, errors, started)
    })
    .await
}

/// `POST …/batch/archive`: removes every type between each pair (204).
pub(crate) async fn batch_archive(State(sandbox): State<Sandbox>, call: Call, Path(pair): Path<(String, String)>, body: Bytes) -> Response {
    serve_v4(&sandbox, call, pair, &body, |portal, from, to, inputs: Vec<ArchiveInput>| {
        for input in inputs {
            let Some(a) = id_of(&input.from.id) else { continue };
            for b in input.to.iter().filter_map(|to| id_of(&to.id)) {
                portal.dissociate(&(from.clone(), a), &(to.clone(), b));
            }
        }
        (StatusCode::NO_CONTENT, Value::Null)
    })
    .await
}

/// `GET /crm/v4/objects/{type}/{id}/associations/{toType}?limit=&after=`: one object's links.
pub(crate) async fn list(State(sandbox): State<Sandbox>, call: Call, Path((from, id, to)): Path<(String, String, String)>) -> Response {
    let query = HubQuery::of(&call.uri);
    serve_pair(&sandbox, call, (from, to), |portal, from, to| {
        let query = match query {
            Ok(query) => query,
            Err(e) => return e,
        };
        let Some(id) = id_of(&id).filter(|id| portal.stores.get(&from).is_some_and(|s| s.objects.contains_key(id))) else {
            return error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("No {from} with id {id} exists"));
        };
        let after = query.after.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0);
        let (mut page, next) = associated(portal, &(from, id), &to, after);
        let limit = query.limit.unwrap_or(PER_OBJECT).clamp(1, PER_OBJECT);
        let next = if page.len() > limit {
            page.truncate(limit);
            Some(after + limit)
        } else {
            next
        };
        let mut body = json!({"results": page});
        if let Some(next) = next {
            body["paging"] = paging(next);
        }
        (StatusCode::OK, body)
    })
    .await
}

/// `PUT /crm/v4/objects/{type}/{id}/associations/default/{toType}/{toId}`: an unlabeled link.
pub(crate) async fn put_default(
    State(sandbox): State<Sandbox>,
    call: Call,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> Response {
    serve_pair(&sandbox, call, (from, to), |portal, from, to| {
        let (Some(a), Some(b)) = (id_of(&id), id_of(&to_id)) else {
            return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "object ids must be numbers");
        };
        match portal.associate(&(from.clone(), a), &(to.clone(), b), None) {
            Ok(()) => {
                let type_id = portal.associations.default_type(&from, &to);
                let spec = json!({"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id});
                let result = json!({"from": {"id": id}, "to": {"id": to_id}, "associationSpec": spec});
                (
                    StatusCode::OK,
                    json!({"status": "COMPLETE", "results": [result], "startedAt": iso(Utc::now()), "completedAt": iso(Utc::now())}),
                )
            }
            Err(why) => error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", why),
        }
    })
    .await
}

/// `DELETE /crm/v4/objects/{type}/{id}/associations/{toType}/{toId}`: every type between two
/// objects (204, also when there was none).
pub(crate) async fn delete(
    State(sandbox): State<Sandbox>,
    call: Call,
    Path((from, id, to, to_id)): Path<(String, String, String, String)>,
) -> Response {
    serve_pair(&sandbox, call, (from, to), |portal, from, to| {
        if let (Some(a), Some(b)) = (id_of(&id), id_of(&to_id)) {
            portal.dissociate(&(from, a), &(to, b));
        }
        (StatusCode::NO_CONTENT, Value::Null)
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabelBody {
    label: String,
    #[allow(dead_code)] // HubSpot's internal name; the sandbox keys labels by type id
    name: Option<String>,
    inverse_label: Option<String>,
}

/// `GET /crm/associations/v4/{from}/{to}/labels`: the types between two object types.
pub(crate) async fn labels(State(sandbox): State<Sandbox>, call: Call, Path((from, to)): Path<(String, String)>) -> Response {
    serve_pair(&sandbox, call, (from, to), |portal, from, to| {
        let results: Vec<Value> = portal.associations.labels(&from, &to).iter().map(AssociationType::to_json).collect();
        (StatusCode::OK, json!({"results": results}))
    })
    .await
}

/// `POST /crm/associations/v4/{from}/{to}/labels`: a USER_DEFINED label and its inverse.
pub(crate) async fn create_label(
    State(sandbox): State<Sandbox>,
    call: Call,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let parsed: Result<LabelBody, _> = parse_body(&body);
    serve_pair(&sandbox, call, (from, to), |portal, from, to| {
        let body = match parsed {
            Ok(body) => body,
            Err(e) => return e,
        };
        portal.associations.default_type(&from, &to);
        let made = portal.associations.add_label(&from, &to, &body.label, body.inverse_label.as_deref());
        (StatusCode::OK, json!({"results": [made.to_json()]}))
    })
    .await
}
