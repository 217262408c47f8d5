//! The three small traits every connector and transform implements.

use crate::error::{ConnectorError, RecordError};
use crate::record::{Cursor, Page, Record};
use std::future::Future;

/// Reads one stream page by page; the cursor is opaque to all but this source.
pub trait Source: Send {
    fn next_page(&mut self, after: Option<&Cursor>) -> impl Future<Output = Result<Option<Page>, ConnectorError>> + Send;

    /// The cursor that resumes right after `record` (one this source produced), so a run that
    /// stops inside a page (`--limit`) can still commit its progress. `None`: cannot tell.
    fn cursor_after(&self, record: &Record) -> Option<Cursor> {
        let _ = record;
        None
    }

    /// What the source checked of its own read once it read to the end, for the sync history
    /// (a HubSpot source: the objects search counts in the range read against those it
    /// returned). A check that fails is the read's error, not an audit.
    fn audit(&self) -> Option<String> {
        None
    }
}

/// What happened to one record at the sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    /// The destination refused this record (invalid data, conflict): keep it as a dead letter.
    Rejected(RecordError),
    /// The write failed for a transient reason and retries are exhausted.
    Failed(RecordError),
}

/// Writes a batch; `Ok` holds exactly one outcome per record, in input order.
pub trait Sink: Send {
    fn write(&mut self, batch: &[Record]) -> impl Future<Output = Result<Vec<Outcome>, ConnectorError>> + Send;

    /// Whether the sink retries failed calls under its own policy (the HTTP sinks do); the
    /// runner then calls it once per batch, so each call path has one retry ceiling.
    fn retries_itself(&self) -> bool {
        false
    }

    /// The destination's current values of these records, matched by `Record::key` (for dry-run
    /// diffs). A sink that cannot read returns `None`, and the plan falls back to the stored
    /// fingerprints.
    fn current(&mut self, batch: &[Record]) -> impl Future<Output = Result<Option<Vec<Record>>, ConnectorError>> + Send {
        let _ = batch;
        async { Ok(None) }
    }
}

/// Mapping and validation are transforms: pure, synchronous, trivially testable.
pub trait Transform: Send + Sync {
    fn apply(&self, record: Record) -> Result<Record, RecordError>;

    /// Whether `apply` returns every record as it is (no steps): the runner then keeps no copy
    /// of the record as read, since the record written is that record.
    fn is_identity(&self) -> bool {
        false
    }
}
