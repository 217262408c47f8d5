//! Shaping transforms: select, rename, constants, type coercion and value maps.

use crate::error::RecordError;
use crate::record::Record;
use crate::traits::Transform;
use crate::value::{Text, Value};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

/// Keeps only the listed fields, in that order; a listed field the record lacks becomes null so
/// every record reaching the sink has the same columns.
pub struct Select {
    pub fields: Vec<Arc<str>>,
}

impl Transform for Select {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        let mut fields = Vec::with_capacity(self.fields.len());
        for name in &self.fields {
            let value = record.remove(name).unwrap_or(Value::Null);
            fields.push((name.clone(), value));
        }
        record.fields = fields;
        Ok(record)
    }
}

/// Renames fields (`from → to`); a missing source field is left alone.
pub struct Rename {
    pub pairs: Vec<(String, Arc<str>)>,
}

impl Transform for Rename {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        for (from, to) in &self.pairs {
            if let Some(slot) = record.fields.iter_mut().find(|(n, _)| &**n == from) {
                slot.0 = to.clone();
            }
        }
        Ok(record)
    }
}

/// Sets fields to fixed values.
pub struct Constant {
    pub pairs: Vec<(Arc<str>, Value)>,
}

impl Transform for Constant {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        for (name, value) in &self.pairs {
            record.set_shared(name, value.clone());
        }
        Ok(record)
    }
}

/// The types `coerce` converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetType {
    String,
    Int,
    Float,
    Decimal,
    Bool,
    /// ISO 8601 date text, `2024-05-31`.
    Date,
    /// ISO 8601 date-time text, `2024-05-31T14:05:00` (UTC `Z` when the input had a zone).
    Datetime,
}

impl TargetType {
    pub fn name(self) -> &'static str {
        match self {
            TargetType::String => "string",
            TargetType::Int => "int",
            TargetType::Float => "float",
            TargetType::Decimal => "decimal",
            TargetType::Bool => "bool",
            TargetType::Date => "date",
            TargetType::Datetime => "datetime",
        }
    }
}

/// Converts fields to the given types; blank text becomes null for every type but `string`.
pub struct Coerce {
    pub fields: Vec<(String, TargetType)>,
}

impl Transform for Coerce {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        for (field, target) in &self.fields {
            let Some(slot) = record.get_mut(field) else { continue };
            let value = std::mem::replace(slot, Value::Null);
            *slot = coerce(value, *target)
                .map_err(|why| RecordError::data(field, "coerce", format!("cannot convert to {}: {why}", target.name())))?;
        }
        Ok(record)
    }
}

/// Converts one value to `target`, or says why it cannot.
pub fn coerce(value: Value, target: TargetType) -> Result<Value, String> {
    if let Value::Text(s) = &value {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Ok(if target == TargetType::String { Value::Text(Text::default()) } else { Value::Null });
        }
        if trimmed.len() != s.len() {
            return coerce(Value::Text(trimmed.into()), target);
        }
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    let quoted = || RecordError::quote(&value.to_string());
    Ok(match target {
        TargetType::String => match value {
            Value::Text(s) => Value::Text(s),
            other => Value::Text(compact_str::ToCompactString::to_compact_string(&other)),
        },
        TargetType::Int => Value::Int(match &value {
            Value::Int(i) => *i,
            Value::Bool(b) => *b as i64,
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => *f as i64,
            Value::Text(s) | Value::Decimal(s) => parse_int(s).ok_or_else(|| format!("{} is not a whole number", quoted()))?,
            _ => return Err(format!("{} is not a whole number", quoted())),
        }),
        TargetType::Float => Value::Float(match &value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            Value::Text(s) | Value::Decimal(s) => s.parse().map_err(|_| format!("{} is not a number", quoted()))?,
            _ => return Err(format!("{} is not a number", quoted())),
        }),
        TargetType::Decimal => Value::Decimal(match &value {
            Value::Int(i) => compact_str::format_compact!("{i}"),
            Value::Float(f) if f.is_finite() => compact_str::format_compact!("{f}"),
            Value::Text(s) | Value::Decimal(s) => canonical_decimal(s).ok_or_else(|| format!("{} is not a decimal number", quoted()))?,
            _ => return Err(format!("{} is not a decimal number", quoted())),
        }),
        TargetType::Bool => Value::Bool(match &value {
            Value::Bool(b) => *b,
            Value::Int(0) => false,
            Value::Int(1) => true,
            Value::Text(s) => match s.to_lowercase().as_str() {
                "1" | "true" | "t" | "yes" | "y" | "si" | "sí" | "s" => true,
                "0" | "false" | "f" | "no" | "n" => false,
                _ => return Err(format!("{} is not a boolean", quoted())),
            },
            _ => return Err(format!("{} is not a boolean", quoted())),
        }),
        TargetType::Date => Value::Text(match &value {
            Value::Date(d) => format_date(*d),
            Value::Timestamp(t) => format_date(t.date()),
            Value::TimestampTz(t) => format_date(t.date_naive()),
            // already spelled as it would be written: kept as it is
            Value::Text(s) if s.len() == 10 && iso_shape(s).0 && s.parse::<NaiveDate>().is_ok() => return Ok(value),
            Value::Text(s) => format_date(parse_date(s).ok_or_else(|| format!("{} is not a date (YYYY-MM-DD or DD/MM/YYYY)", quoted()))?),
            _ => return Err(format!("{} is not a date", quoted())),
        }),
        TargetType::Datetime => Value::Text(match &value {
            Value::Date(d) => format_naive(d.and_time(chrono::NaiveTime::MIN)),
            Value::Timestamp(t) => format_naive(*t),
            Value::TimestampTz(t) => format_utc(*t),
            Value::Text(s) => parse_datetime(s).ok_or_else(|| format!("{} is not a date-time (ISO 8601)", quoted()))?,
            _ => return Err(format!("{} is not a date-time", quoted())),
        }),
    })
}

fn parse_int(s: &str) -> Option<i64> {
    if let Ok(i) = s.parse() {
        return Some(i);
    }
    // "42.00" is a whole number written as a decimal
    let (whole, frac) = s.split_once('.')?;
    frac.bytes().all(|b| b == b'0').then(|| whole.parse().ok()).flatten()
}

fn canonical_decimal(s: &str) -> Option<Text> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let sign = if s.starts_with('-') && (whole != "0" || frac.bytes().any(|b| b != b'0')) { "-" } else { "" };
    Some(if frac.is_empty() { compact_str::format_compact!("{sign}{whole}") } else { compact_str::format_compact!("{sign}{whole}.{frac}") })
}

/// Whether `s` is spelled `YYYY-MM-DD` followed by nothing or by `T`/space and a time
/// `HH:MM:SS` with an optional fraction: the shape almost every database writes, which chrono's
/// ISO readers take several times faster than a pattern (and for which both read alike).
fn iso_shape(s: &str) -> (bool, bool) {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let date = digits(0..4) && b.get(4) == Some(&b'-') && digits(5..7) && b.get(7) == Some(&b'-') && digits(8..10);
    let time = date
        && matches!(b.get(10), Some(b'T' | b' '))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19)
        && (b.len() == 19 || (b.get(19) == Some(&b'.') && b.len() > 20 && digits(20..b.len())));
    (date, time)
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let date_part = s.split(['T', ' ']).next().unwrap_or(s);
    if iso_shape(date_part).0 && date_part.len() == 10 {
        return date_part.parse().ok();
    }
    NaiveDate::parse_from_str(date_part, "%Y-%m-%d").or_else(|_| NaiveDate::parse_from_str(date_part, "%d/%m/%Y")).ok()
}

fn format_date(d: NaiveDate) -> Text {
    compact_str::format_compact!("{d}")
}

fn format_naive(t: NaiveDateTime) -> Text {
    // NaiveDate and NaiveTime display as ISO 8601 (fraction only when non-zero), without the
    // cost of interpreting a format string for every value
    compact_str::format_compact!("{}T{}", t.date(), t.time())
}

fn format_utc(t: DateTime<Utc>) -> Text {
    // chrono's own writer spells it as the pattern `%Y-%m-%dT%H:%M:%S%.fZ` does, faster
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true).into()
}

fn parse_datetime(s: &str) -> Option<Text> {
    if iso_shape(s).1 && s.len() <= 40 {
        // chrono's ISO reader wants the `T`: a copy on the stack with it
        let mut spelled = [0u8; 40];
        spelled[..s.len()].copy_from_slice(s.as_bytes());
        spelled[10] = b'T';
        let iso = std::str::from_utf8(&spelled[..s.len()]).ok()?;
        return iso.parse::<NaiveDateTime>().ok().map(format_naive);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(format_utc(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(format_naive(t));
        }
    }
    parse_date(s).filter(|_| s.len() <= 10).and_then(|d| d.and_hms_opt(0, 0, 0)).map(format_naive)
}

/// What a value map does with a value it has no entry for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Otherwise {
    /// Reject the record (the default: an unmapped code is usually a data problem).
    #[default]
    Reject,
    Keep,
    Null,
}

/// Replaces coded values by their labels (e.g. marital status `'1' → Soltero`).
pub struct MapValues {
    pub field: String,
    pub values: HashMap<String, Value>,
    pub otherwise: Otherwise,
}

impl Transform for MapValues {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        let Some(slot) = record.get_mut(&self.field) else { return Ok(record) };
        let Some(text) = slot.as_text().map(|t| t.trim().to_owned()) else { return Ok(record) };
        if text.is_empty() {
            *slot = Value::Null;
            return Ok(record);
        }
        match (self.values.get(&text), self.otherwise) {
            (Some(mapped), _) => *slot = mapped.clone(),
            (None, Otherwise::Keep) => {}
            (None, Otherwise::Null) => *slot = Value::Null,
            (None, Otherwise::Reject) => {
                let mut known: Vec<_> = self.values.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(RecordError::data(
                    &self.field,
                    "map_values",
                    format!("{} has no mapping (known: {})", RecordError::quote(&text), known.join(", ")),
                ));
            }
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ISO fast path reads what the patterns read, and refuses what they refuse.
    #[test]
    fn iso_reading_agrees_with_the_patterns() {
        let by_pattern = |s: &str| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"].iter().find_map(|f| NaiveDateTime::parse_from_str(s, f).ok()).map(format_naive)
        };
        for s in [
            "2024-01-01 00:00:00",
            "2024-05-01T10:20:30",
            "2024-05-01 10:20:30.5",
            "2024-05-01T10:20:30.123456789",
            "2024-02-30 10:00:00",
            "2024-05-01 25:00:00",
            "2024-05-01 10:61:00",
        ] {
            assert!(iso_shape(s).1, "{s}");
            assert_eq!(parse_datetime(s), by_pattern(s), "{s}");
        }
        for s in ["2024-05-01", "2024-13-01", "2024-02-29", "2023-02-29"] {
            assert_eq!(parse_date(s), NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(), "{s}");
        }
        assert_eq!(parse_datetime("2024-05-01T10:20:30Z").as_deref(), Some("2024-05-01T10:20:30Z"));
        assert_eq!(parse_datetime("2024-05-01T10:20:30.250+02:00").as_deref(), Some("2024-05-01T08:20:30.250Z"));
    }

    #[track_caller]
    fn check(input: Value, target: TargetType, expect: Result<Value, &str>) {
        match (coerce(input.clone(), target), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input:?} → {target:?}"),
            (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{input:?}: {got}"),
            (got, want) => panic!("{input:?} → {target:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn coercions() {
        use TargetType::*;
        let t = |s: &str| Value::Text(s.into());
        check(t(" 42 "), Int, Ok(Value::Int(42)));
        check(t("42.00"), Int, Ok(Value::Int(42)));
        check(t("4.2"), Int, Err("not a whole number"));
        check(t(""), Int, Ok(Value::Null));
        check(Value::Int(7), String, Ok(t("7")));
        check(t("0012.50"), Decimal, Ok(Value::Decimal("12.50".into())));
        check(t("-0.0"), Decimal, Ok(Value::Decimal("0.0".into())));
        check(t("1,5"), Decimal, Err("not a decimal"));
        check(t("Sí"), Bool, Ok(Value::Bool(true)));
        check(t("0"), Bool, Ok(Value::Bool(false)));
        check(t("maybe"), Bool, Err("not a boolean"));
        check(t("31/05/1980"), Date, Ok(t("1980-05-31")));
        check(t("1980-05-31 00:00:00"), Date, Ok(t("1980-05-31")));
        check(t("1980-05-31"), Date, Ok(t("1980-05-31")));
        check(t("1980-02-30"), Date, Err("not a date"));
        check(t("2024-05-01 10:20:30"), Datetime, Ok(t("2024-05-01T10:20:30")));
        check(t("2024-05-01T10:20:30-06:00"), Datetime, Ok(t("2024-05-01T16:20:30Z")));
        check(t("2024-05-01"), Datetime, Ok(t("2024-05-01T00:00:00")));
        check(t("yesterday"), Datetime, Err("not a date-time"));
        let ts = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap().and_hms_opt(3, 4, 5).unwrap();
        check(Value::Timestamp(ts), Datetime, Ok(t("2024-01-02T03:04:05")));
        check(Value::Null, Int, Ok(Value::Null));
    }

    #[test]
    fn value_maps() {
        let map = |otherwise| MapValues {
            field: "marital_status".into(),
            values: HashMap::from([("1".into(), "Soltero".into()), ("5".into(), "Unión Libre".into())]),
            otherwise,
        };
        let rec = |v: Value| Record::new("k").with("marital_status", v);
        let out = map(Otherwise::Reject).apply(rec(Value::Int(5))).unwrap();
        assert_eq!(out.get("marital_status"), Some(&Value::Text("Unión Libre".into())));
        let err = map(Otherwise::Reject).apply(rec("9".into())).unwrap_err();
        assert_eq!((err.field.as_str(), err.rule.as_str()), ("marital_status", "map_values"));
        assert!(err.message.contains("\"9\" has no mapping"), "{err}");
        let out = map(Otherwise::Null).apply(rec("9".into())).unwrap();
        assert_eq!(out.get("marital_status"), Some(&Value::Null));
        let out = map(Otherwise::Keep).apply(rec("9".into())).unwrap();
        assert_eq!(out.get("marital_status"), Some(&Value::Text("9".into())));
    }

    #[test]
    fn select_and_rename() {
        let rec = Record::new("k").with("a", "1").with("b", "2").with("c", "3");
        let out = Rename { pairs: vec![("a".into(), "x".into())] }.apply(rec).unwrap();
        let out = Select { fields: vec!["c".into(), "x".into(), "missing".into()] }.apply(out).unwrap();
        let names: Vec<_> = out.fields.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["c", "x", "missing"]);
        assert_eq!(out.get("missing"), Some(&Value::Null));
    }
}
