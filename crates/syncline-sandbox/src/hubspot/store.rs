//! One object type's records: the objects (archived ones kept), their unique-value indexes, and
//! the JSON they are read as.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The properties HubSpot stamps on every object: (created, last modified). Contacts keep the
/// old names; companies and deals mix them; appointments and custom objects use `hs_` names.
pub fn stamp_properties(object_type: &str) -> (&'static str, &'static str) {
    match object_type {
        "contacts" => ("createdate", "lastmodifieddate"),
        "companies" | "deals" => ("createdate", "hs_lastmodifieddate"),
        _ => ("hs_createdate", "hs_lastmodifieddate"),
    }
}

#[derive(Debug, Clone)]
pub struct Object {
    pub id: u64,
    pub properties: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when archived: the object leaves reads, search and unique indexes, but stays
    /// readable with `archived=true` (contacts are restorable for 90 days).
    pub archived_at: Option<DateTime<Utc>>,
    /// Every value each property was given, oldest first (`propertiesWithHistory`).
    pub history: BTreeMap<String, Vec<(String, DateTime<Utc>)>>,
}

impl Object {
    /// `SimplePublicObject` with the requested properties (all set ones when `wanted` is None),
    /// plus the id and stamps HubSpot always returns.
    pub fn to_json(&self, wanted: Option<&[String]>) -> Value {
        let mut properties = serde_json::Map::new();
        for (name, value) in &self.properties {
            if wanted.is_none_or(|w| w.iter().any(|n| n == name) || is_always_returned(name)) {
                properties.insert(name.clone(), Value::String(value.clone()));
            }
        }
        // built as values, not by `json!`, which would copy `properties` once more
        let mut json = serde_json::Map::new();
        json.insert("id".into(), Value::String(self.id.to_string()));
        json.insert("properties".into(), Value::Object(properties));
        json.insert("createdAt".into(), Value::String(iso(self.created_at)));
        json.insert("updatedAt".into(), Value::String(iso(self.updated_at)));
        json.insert("archived".into(), Value::Bool(self.archived_at.is_some()));
        if let Some(at) = self.archived_at {
            json.insert("archivedAt".into(), Value::String(iso(at)));
        }
        Value::Object(json)
    }
}

impl Object {
    /// Adds `propertiesWithHistory` for `names` to the object's JSON: each property's values,
    /// newest first, as `ValueWithTimestamp`s.
    pub fn add_history(&self, json: &mut Value, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let mut history = serde_json::Map::new();
        for name in names {
            let values = self.history.get(name).map(Vec::as_slice).unwrap_or_default();
            let values: Vec<Value> =
                values.iter().rev().map(|(value, at)| json!({"value": value, "timestamp": iso(*at), "sourceType": "API"})).collect();
            history.insert(name.clone(), Value::Array(values));
        }
        json["propertiesWithHistory"] = Value::Object(history);
    }
}

fn is_always_returned(name: &str) -> bool {
    matches!(name, "hs_object_id" | "createdate" | "lastmodifieddate" | "hs_createdate" | "hs_lastmodifieddate")
}

pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One object type's records and its unique-value indexes (of live objects only).
#[derive(Debug, Default)]
pub struct ObjectStore {
    pub objects: BTreeMap<u64, Object>,
    /// (property, value) → id, for every property with `hasUniqueValue`.
    pub(crate) unique: HashMap<(String, String), u64>,
}

impl ObjectStore {
    /// The live object whose `id_property` is `value`.
    pub fn find(&self, id_property: &str, value: &str) -> Option<&Object> {
        if id_property == "hs_object_id" {
            return value.parse().ok().and_then(|id| self.objects.get(&id)).filter(|o| o.archived_at.is_none());
        }
        self.unique.get(&(id_property.to_owned(), value.to_owned())).and_then(|id| self.objects.get(id))
    }

    /// The live object (`archived` false) or archived one (`archived` true) whose `id_property` is
    /// `value`, as reads with the `archived` query parameter see them.
    pub fn find_as(&self, id_property: &str, value: &str, archived: bool) -> Option<&Object> {
        if !archived {
            return self.find(id_property, value);
        }
        self.objects.values().filter(|o| o.archived_at.is_some()).find(|o| o.properties.get(id_property).is_some_and(|v| v == value))
    }

    /// Live or archived objects in id order, from `after` on.
    pub fn page(&self, after: u64, archived: bool) -> impl Iterator<Item = &Object> {
        self.objects.range(after..).map(|(_, o)| o).filter(move |o| o.archived_at.is_some() == archived)
    }

    pub fn live(&self) -> impl Iterator<Item = &Object> {
        self.objects.values().filter(|o| o.archived_at.is_none())
    }
}
