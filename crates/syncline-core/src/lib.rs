//! The engine's vocabulary and pure logic: records, cursors, outcomes and error classes; the
//! `Source` / `Sink` / `Transform` traits; the mapping and validation transforms; and the
//! pipeline runner that ties them to a state store. No network, database or file IO happens here.

pub mod error;
pub mod execute;
pub mod metric;
pub mod record;
pub mod redact;
pub mod runner;
pub mod suggest;
pub mod traits;
pub mod transform;
pub mod value;
pub mod worker;

pub use error::{ConnectorError, ErrorClass, RecordError};
pub use execute::{History, Input, RunEnd, RunParts, RunReport, RunStatus, execute};
pub use record::{Cursor, Page, Record, Replaces};
pub use runner::{Checkpoint, Progress, RunMode, RunOptions, RunSummary, Runner};
pub use suggest::did_you_mean;
pub use traits::{Outcome, Sink, Source, Transform};
pub use value::{FieldType, Text, Value};
