//! A field value as it travels between sources, transforms and sinks.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The text of a field: up to 24 bytes are held inline, with no allocation of their own.
/// Most fields of a row (names, numbers, dates, codes) are that short, and a pipeline makes,
/// copies and frees millions of them: `syncline bench` spent a third of its time in the
/// allocator before (issue 20). `compact_str` is the maintained crate for exactly this.
pub type Text = compact_str::CompactString;

/// A single field value. Sources produce the richest variant they can decode; transforms coerce
/// to the types a sink needs. Dates travel as chrono values so a watermark keeps its SQL type
/// when it is bound back into a keyset query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An exact decimal kept as its canonical text (`-12.50`), so no precision is lost.
    Decimal(Text),
    Text(Text),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
}

/// What a field holds, where a source knows it before reading any value (a HubSpot property's
/// type), or as a value shows it. A sink that creates or extends a table makes each column of
/// its field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Text,
    Int,
    Float,
    Decimal,
    Bool,
    Date,
    Timestamp,
    TimestampTz,
}

impl Value {
    /// The type of field this value belongs in; `None` for null.
    pub fn field_type(&self) -> Option<FieldType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => FieldType::Bool,
            Value::Int(_) => FieldType::Int,
            Value::Float(_) => FieldType::Float,
            Value::Decimal(_) => FieldType::Decimal,
            Value::Text(_) => FieldType::Text,
            Value::Date(_) => FieldType::Date,
            Value::Timestamp(_) => FieldType::Timestamp,
            Value::TimestampTz(_) => FieldType::TimestampTz,
        })
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as text, as a person would write it; `None` for null.
    pub fn as_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            Value::Null => None,
            Value::Text(s) | Value::Decimal(s) => Some(Cow::Borrowed(s.as_str())),
            other => Some(Cow::Owned(other.to_string())),
        }
    }

    /// A short name of the variant, used in error messages and in the tagged cursor encoding.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Date(_) => "date",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
        }
    }

    /// Encodes the value with its kind, so it can be decoded back to the same variant
    /// (cursors must bind with their original SQL type).
    pub fn to_tagged(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind(), "value": self.to_json() })
    }

    pub fn from_tagged(tagged: &serde_json::Value) -> Option<Value> {
        let kind = tagged.get("kind")?.as_str()?;
        let value = tagged.get("value")?;
        Some(match kind {
            "null" => Value::Null,
            "bool" => Value::Bool(value.as_bool()?),
            "int" => Value::Int(value.as_i64()?),
            "float" => Value::Float(value.as_f64()?),
            "decimal" => Value::Decimal(value.as_str()?.into()),
            "text" => Value::Text(value.as_str()?.into()),
            "date" => Value::Date(value.as_str()?.parse().ok()?),
            "timestamp" => Value::Timestamp(value.as_str()?.parse().ok()?),
            "timestamptz" => Value::TimestampTz(value.as_str()?.parse().ok()?),
            _ => return None,
        })
    }

    /// Plain JSON: numbers stay numbers, decimals and dates become strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null),
            Value::Text(s) | Value::Decimal(s) => serde_json::Value::String(s.to_string()),
            other => serde_json::Value::String(other.to_string()),
        }
    }

    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Text(s.as_str().into()),
            other => Value::Text(other.to_string().into()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Decimal(s) | Value::Text(s) => f.write_str(s),
            Value::Date(d) => write!(f, "{d}"),
            Value::Timestamp(t) => write!(f, "{}T{}", t.date(), t.time()),
            Value::TimestampTz(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.fZ")),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(|json| Value::from_json(&json))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.into())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s.into())
    }
}
impl From<Text> for Value {
    fn from(s: Text) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_round_trip_keeps_the_variant() {
        let ts = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap().and_hms_milli_opt(10, 0, 0, 250).unwrap();
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Int(-7),
            Value::Float(1.5),
            Value::Decimal("12.50".into()),
            Value::Text("x".into()),
            Value::Date(ts.date()),
            Value::Timestamp(ts),
            Value::TimestampTz(ts.and_utc()),
        ] {
            assert_eq!(Value::from_tagged(&v.to_tagged()), Some(v.clone()), "{v:?}");
        }
    }
}
