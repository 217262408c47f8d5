//! Records, pages and cursors.

use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One row or object: an ordered list of named fields plus the key that identifies it at its
/// source. Field names are `Arc<str>` so a page of rows shares one copy of each column name;
/// lookup is linear, which beats hashing for the few dozen fields a record has.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// The record's identity at the source (e.g. `numero_asociado`), used for dead letters.
    pub key: String,
    pub fields: Vec<(Arc<str>, Value)>,
}

impl Record {
    pub fn new(key: impl Into<String>) -> Self {
        Record { key: key.into(), fields: Vec::new() }
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set(name, value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| &**n == name).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.fields.iter_mut().find(|(n, _)| &**n == name).map(|(_, v)| v)
    }

    /// Sets a field, replacing it where it exists and appending it otherwise.
    pub fn set(&mut self, name: &str, value: Value) {
        match self.get_mut(name) {
            Some(slot) => *slot = value,
            None => self.fields.push((Arc::from(name), value)),
        }
    }

    pub fn set_shared(&mut self, name: &Arc<str>, value: Value) {
        match self.get_mut(name) {
            Some(slot) => *slot = value,
            None => self.fields.push((name.clone(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let at = self.fields.iter().position(|(n, _)| &**n == name)?;
        Some(self.fields.remove(at).1)
    }

    /// The record's fields as a JSON object (for dead-letter payloads and plans).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.fields.iter().map(|(n, v)| (n.to_string(), v.to_json())).collect())
    }

    pub fn from_json(key: impl Into<String>, json: &serde_json::Value) -> Record {
        let fields = match json {
            serde_json::Value::Object(map) => map.iter().map(|(n, v)| (Arc::from(n.as_str()), Value::from_json(v))).collect(),
            _ => Vec::new(),
        };
        Record { key: key.into(), fields }
    }
}

/// Where a source stopped; opaque to everything but the source that made it. Stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor(pub serde_json::Value);

/// One page read from a source, and the cursor that resumes after it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<Record>,
    /// `None` only when the page is empty.
    pub cursor: Option<Cursor>,
    /// Records the source read but cannot pass on as they are (text that is not UTF-8): they
    /// become dead letters with the reason, and the cursor moves past them like any other.
    pub rejected: Vec<(Record, crate::RecordError)>,
}

/// How a source's records replace what a sink holds, where a record alone cannot say it: each
/// record belongs to a group (an object's associations: every row of one `from_id`), and a
/// group read again replaces every stored row of that group with an older `version` — so a link
/// removed at the source is removed at the destination. A record whose `member` field is empty
/// only names its group (an object left with no links): it clears the group and is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub group: &'static str,
    pub version: &'static str,
    pub member: &'static str,
}
