//! Mapping and validation transforms. Each is a small struct built from validated settings and
//! applied to one record at a time; a failing rule returns a `RecordError` naming the field, the
//! rule and the value, and the runner turns it into a dead letter without stopping.

mod costa_rica;
mod mapping;
mod validate;

pub use costa_rica::{Beneficiaries, Cedula, CedulaKind, Phone, normalize_cedula, normalize_phone};
pub use mapping::{Coerce, Constant, MapValues, Otherwise, Rename, Select, TargetType, coerce};
pub use validate::{Email, Enum, JsonSchema, Name, Range, Require};

use crate::error::RecordError;
use crate::record::Record;
use crate::traits::Transform;
use crate::value::{Text, Value};

/// An ordered chain of transforms, applied as one.
#[derive(Default)]
pub struct Chain(pub Vec<Box<dyn Transform>>);

impl Transform for Chain {
    fn apply(&self, mut record: Record) -> Result<Record, RecordError> {
        for step in &self.0 {
            record = step.apply(record)?;
        }
        Ok(record)
    }

    fn is_identity(&self) -> bool {
        self.0.iter().all(|step| step.is_identity())
    }
}

/// The text of a field, trimmed, or `None` when the field is missing, null or blank: optional
/// fields are skipped by the format rules; `require` is what makes a field mandatory.
/// (`Text` keeps a short one inline: no allocation for most fields.)
pub(crate) fn present_text(record: &Record, field: &str) -> Option<Text> {
    let text = record.get(field)?.as_text()?;
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| Text::from(trimmed))
}

/// Whether a field is present and not blank, without copying its text.
pub(crate) fn is_present(record: &Record, field: &str) -> bool {
    match record.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::Text(t) | Value::Decimal(t)) => !t.trim().is_empty(),
        Some(_) => true,
    }
}
