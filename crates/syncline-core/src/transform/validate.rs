//! Validation rules: presence, email, names, numeric ranges, enums and JSON Schema.

use super::{is_present, present_text};
use crate::error::RecordError;
use crate::record::Record;
use crate::traits::Transform;
use crate::value::{Text, Value};

/// The listed fields must be present and not blank.
pub struct Require {
    pub fields: Vec<String>,
}

impl Transform for Require {
    fn apply(&self, record: Record) -> Result<Record, RecordError> {
        for field in &self.fields {
            if !is_present(&record, field) {
                let what = if record.get(field).is_none() { "is missing" } else { "is empty" };
                return Err(RecordError::data(field, "require", what));
            }
        }
        Ok(record)
    }
}

/// Email addresses: trimmed, lowercased, checked against RFC 5322 (the `email_address` crate)
/// plus a dot in the domain, since a dotless domain is never deliverable from a CRM.
pub struct Email {
    pub fields: Vec<String>,
}

impl Transform for Email {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        for field in &self.fields {
            if let Some(email) = normalized_email(&record, field)? {
                record.set(field, Value::Text(email));
            }
        }
        Ok(record)
    }
}

/// The field's address, checked, trimmed and lowercased; `None` when the field is blank or
/// already spelled so (most addresses are: they are then left as they are, with no copy made).
fn normalized_email(record: &Record, field: &str) -> Result<Option<Text>, RecordError> {
    let Some(stored) = record.get(field) else { return Ok(None) };
    let Some(spelled) = stored.as_text() else { return Ok(None) };
    let text = spelled.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let lowered = text.chars().any(char::is_uppercase).then(|| text.to_lowercase());
    let email = lowered.as_deref().unwrap_or(text);
    let domain_ok = email.rsplit_once('@').is_some_and(|(_, d)| d.contains('.') && !d.ends_with('.'));
    if !domain_ok || !email_address::EmailAddress::is_valid(email) {
        return Err(RecordError::data(field, "email", format!("{} is not a valid email address", RecordError::quote(text))));
    }
    Ok((!matches!(stored, Value::Text(t) if t == email)).then(|| Text::from(email)))
}

/// Person names: trimmed, inner whitespace collapsed, and not empty.
pub struct Name {
    pub fields: Vec<String>,
}

impl Transform for Name {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        for field in &self.fields {
            let text = record.get(field).and_then(Value::as_text).unwrap_or_default();
            let clean = collapse_whitespace(&text);
            if clean.is_empty() {
                return Err(RecordError::data(field, "name", "is empty"));
            }
            if clean.chars().any(|c| c.is_control() || c.is_ascii_digit()) {
                return Err(RecordError::data(
                    field,
                    "name",
                    format!("{} contains digits or control characters", RecordError::quote(&clean)),
                ));
            }
            record.set(field, Value::Text(clean));
        }
        Ok(record)
    }
}

/// `text` trimmed, with each run of inner whitespace made one space.
fn collapse_whitespace(text: &str) -> Text {
    let mut clean = Text::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !clean.is_empty() {
            clean.push(' ');
        }
        clean.push_str(word);
    }
    clean
}

/// A numeric field within `[min, max]` (either bound optional).
pub struct Range {
    pub field: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Transform for Range {
    fn apply(&self, record: Record) -> Result<Record, RecordError> {
        let Some(text) = present_text(&record, &self.field) else { return Ok(record) };
        let n: f64 =
            text.parse().map_err(|_| RecordError::data(&self.field, "range", format!("{} is not a number", RecordError::quote(&text))))?;
        let below = self.min.is_some_and(|min| n < min);
        let above = self.max.is_some_and(|max| n > max);
        if below || above {
            let bound = |b: Option<f64>| b.map_or("…".to_owned(), |b| b.to_string());
            return Err(RecordError::data(&self.field, "range", format!("{n} is outside {}..={}", bound(self.min), bound(self.max))));
        }
        Ok(record)
    }
}

/// The field's value must be one of a list (provincias, cantones…). With `ignore_case`, the
/// value is rewritten to the list's spelling.
pub struct Enum {
    pub field: String,
    pub values: Vec<String>,
    pub ignore_case: bool,
}

impl Transform for Enum {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        let Some(text) = present_text(&record, &self.field) else { return Ok(record) };
        let found = if self.ignore_case {
            let folded = || text.chars().flat_map(char::to_lowercase);
            self.values.iter().find(|v| **v == *text || v.chars().flat_map(char::to_lowercase).eq(folded()))
        } else {
            self.values.iter().find(|v| **v == text)
        };
        match found {
            Some(canonical) => {
                record.set(&self.field, Value::Text(canonical.as_str().into()));
                Ok(record)
            }
            None => {
                let listed = if self.values.len() <= 8 {
                    self.values.join(", ")
                } else {
                    format!("{}, … ({} values)", self.values[..8].join(", "), self.values.len())
                };
                Err(RecordError::data(&self.field, "enum", format!("{} is not one of: {listed}", RecordError::quote(&text))))
            }
        }
    }
}

/// Validates the whole mapped record against a JSON Schema.
pub struct JsonSchema {
    validator: jsonschema::Validator,
    /// The only fields the schema can see, when it names them all (see [`JsonSchema::new`]):
    /// the record given to the validator then holds just those, not a JSON copy of every field.
    visible: Option<Vec<String>>,
}

/// Top-level keywords that look only at the properties a schema names (or at none). A schema
/// using any other (`additionalProperties`, `patternProperties`, `minProperties`, `allOf`…) may
/// look at every field, so it is given the whole record.
const NAMED_ONLY: [&str; 12] =
    ["$schema", "$id", "$comment", "title", "description", "type", "required", "properties", "examples", "default", "$defs", "definitions"];

impl JsonSchema {
    pub fn new(schema: &serde_json::Value) -> Result<JsonSchema, String> {
        let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
        let visible = schema.as_object().filter(|top| top.keys().all(|k| NAMED_ONLY.contains(&k.as_str()))).map(|top| {
            let named = top.get("properties").and_then(serde_json::Value::as_object).into_iter().flat_map(|p| p.keys().cloned());
            let required = top.get("required").and_then(serde_json::Value::as_array).into_iter().flatten();
            let mut fields: Vec<String> = named.chain(required.filter_map(|r| r.as_str().map(str::to_owned))).collect();
            fields.sort();
            fields.dedup();
            fields
        });
        Ok(JsonSchema { validator, visible })
    }

    /// The record as the JSON object the schema validates.
    fn instance(&self, record: &Record) -> serde_json::Value {
        match &self.visible {
            None => record.to_json(),
            Some(fields) => serde_json::Value::Object(
                fields.iter().filter_map(|name| record.get(name).map(|value| (name.clone(), value.to_json()))).collect(),
            ),
        }
    }
}

impl Transform for JsonSchema {
    fn apply(&self, record: Record) -> Result<Record, RecordError> {
        let json = self.instance(&record);
        if self.validator.is_valid(&json) {
            return Ok(record);
        }
        if let Some(error) = self.validator.iter_errors(&json).next() {
            let path = error.instance_path().to_string();
            let field = path.trim_start_matches('/');
            let field = if field.is_empty() { "-" } else { field };
            let mut message = error.to_string();
            if message.len() > 200 {
                message = RecordError::quote(&message);
            }
            return Err(RecordError::data(field, "json_schema", message));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        let rule = Email { fields: vec!["email".into()] };
        let out = rule.apply(Record::new("k").with("email", "  Ana.Mora@Example.CR ")).unwrap();
        assert_eq!(out.get("email"), Some(&Value::Text("ana.mora@example.cr".into())));
        for bad in ["ana@", "ana.example.cr", "ana@localhost", "ana mora@example.cr", "ana@@x.cr"] {
            let err = rule.apply(Record::new("k").with("email", bad)).unwrap_err();
            assert_eq!(err.rule, "email", "{bad}");
            assert!(err.message.contains("not a valid email"), "{bad}: {err}");
        }
        assert!(rule.apply(Record::new("k").with("email", "")).is_ok(), "blank is require's job");
    }

    #[test]
    fn names_require_ranges_enums() {
        let out = Name { fields: vec!["n".into()] }.apply(Record::new("k").with("n", "  Ana   María ")).unwrap();
        assert_eq!(out.get("n"), Some(&Value::Text("Ana María".into())));
        assert!(Name { fields: vec!["n".into()] }.apply(Record::new("k").with("n", "   ")).is_err());
        let err = Require { fields: vec!["x".into()] }.apply(Record::new("k")).unwrap_err();
        assert_eq!(err.to_string(), "x: require: is missing");
        let range = Range { field: "s".into(), min: Some(0.0), max: Some(100.0) };
        assert!(range.apply(Record::new("k").with("s", Value::Int(100))).is_ok());
        let err = range.apply(Record::new("k").with("s", Value::Float(100.5))).unwrap_err();
        assert!(err.message.contains("outside 0..=100"), "{err}");
        let provincia = Enum { field: "p".into(), values: vec!["San José".into(), "Limón".into()], ignore_case: true };
        let out = provincia.apply(Record::new("k").with("p", "san josé")).unwrap();
        assert_eq!(out.get("p"), Some(&Value::Text("San José".into())));
        let err = provincia.apply(Record::new("k").with("p", "Madrid")).unwrap_err();
        assert_eq!(err.to_string(), "p: enum: \"Madrid\" is not one of: San José, Limón");
    }

    #[test]
    fn json_schema_names_the_field() {
        let schema = serde_json::json!({"type": "object", "properties": {"age": {"type": "integer", "minimum": 18}}});
        let rule = JsonSchema::new(&schema).unwrap();
        assert!(rule.apply(Record::new("k").with("age", Value::Int(30))).is_ok());
        let err = rule.apply(Record::new("k").with("age", Value::Int(3))).unwrap_err();
        assert_eq!((err.field.as_str(), err.rule.as_str()), ("age", "json_schema"));
    }

    /// A schema that names its fields is shown only those; one that may look at any field (here
    /// `additionalProperties`) is shown the whole record, so both judge as if given everything.
    #[test]
    fn json_schema_sees_every_field_it_could_judge() {
        let named = serde_json::json!({"type": "object", "required": ["id"], "properties": {"age": {"type": "integer"}}});
        let rule = JsonSchema::new(&named).unwrap();
        assert_eq!(rule.visible.as_deref(), Some(&["age".to_owned(), "id".to_owned()][..]));
        assert!(rule.apply(Record::new("k").with("id", Value::Int(1)).with("extra", "x")).is_ok());
        let err = rule.apply(Record::new("k").with("age", Value::Int(3))).unwrap_err();
        assert!(err.message.contains("\"id\" is a required property"), "{err}");
        let closed = serde_json::json!({"type": "object", "properties": {"id": {"type": "integer"}}, "additionalProperties": false});
        let rule = JsonSchema::new(&closed).unwrap();
        assert_eq!(rule.visible, None);
        let err = rule.apply(Record::new("k").with("id", Value::Int(1)).with("extra", "x")).unwrap_err();
        assert!(err.message.contains("extra"), "{err}");
    }
}
