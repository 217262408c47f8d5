//! Connectors. Each lives in its own folder with the same file set: `config.rs` (a profile —
//! where, who, what budget — kept apart from the streams read or written), `api.rs` (the only
//! wire types, and how the service's answers are classified), `source.rs` and/or `sink.rs`.
//! The fixed set of sources and sinks is two closed enums dispatched by `match`, not a plugin
//! registry: adding a connector is one folder and one arm in each enum it joins.

mod http;
pub mod hubspot;
pub mod manychat;
pub mod quickbooks;
pub mod sql;
pub mod stripe;

use chrono::NaiveDateTime;
use syncline_core::{ConnectorError, Cursor, ErrorClass, FieldType, Outcome, Page, Record, Sink, Source};

pub use http::{Answer, Budgets, Endpoint, Request, decode};

/// What `syncline check` learned of one part (each connector's `check.rs`): a line to show, or
/// the failure and how to fix it.
pub type Probe = Result<String, (ConnectorError, &'static str)>;

/// Any configured source.
pub enum AnySource {
    Sql(sql::SqlSource),
    HubSpot(hubspot::HubSpotSource),
    /// Links with another object type, or property histories, of the objects read.
    HubSpotDetails(hubspot::DetailSource),
    /// Owners, or pipelines and their stages: read whole every run.
    HubSpotReference(hubspot::ReferenceSource),
    /// Stripe products with their default prices.
    Stripe(stripe::StripeSource),
}

impl AnySource {
    /// The identity of what this source reads, for keying cursors: a database without
    /// credentials and the table (or a digest of the query), or a HubSpot portal and object.
    pub async fn identity(&self) -> Result<String, ConnectorError> {
        match self {
            AnySource::Sql(source) => Ok(source.identity()),
            AnySource::HubSpot(source) => source.identity().await,
            AnySource::HubSpotDetails(source) => source.identity().await,
            AnySource::HubSpotReference(source) => source.identity().await,
            AnySource::Stripe(source) => source.identity().await,
        }
    }

    /// How the services this source calls are doing, for `/readyz`.
    pub fn health(&self) -> Vec<syncline_resilience::Health> {
        match self {
            AnySource::Stripe(source) => source.health(),
            _ => Vec::new(),
        }
    }

    /// These records as the source holds them now, by key (≤ 100): what a flow's `pipeline`
    /// step reads for the object its event names. Only sources that can look a record up by
    /// its key can (Stripe).
    pub async fn read_keys(&self, keys: &[&str]) -> Result<Vec<Record>, ConnectorError> {
        match self {
            AnySource::Stripe(source) => source.read_ids(keys).await,
            _ => Err(ConnectorError::new(
                ErrorClass::Config,
                "this source cannot read records by key; a flow can run pipelines that read from Stripe",
            )),
        }
    }

    /// How many records a read from `after` will see, for progress.
    pub async fn estimate(&mut self, after: Option<&Cursor>) -> Result<u64, ConnectorError> {
        match self {
            AnySource::Sql(source) => source.estimate(after).await,
            AnySource::HubSpot(source) => source.estimate(after).await,
            AnySource::HubSpotDetails(source) => source.estimate(after).await,
            AnySource::HubSpotReference(_) | AnySource::Stripe(_) => Ok(0),
        }
    }

    /// How many records the source holds now (`verify_counts`).
    pub async fn count(&self) -> Result<u64, ConnectorError> {
        match self {
            AnySource::Sql(source) => source.count_rows().await,
            AnySource::HubSpot(source) => source.count().await,
            // their rows are not objects: the objects' count says nothing of them
            AnySource::HubSpotDetails(_) | AnySource::HubSpotReference(_) => Err(ConnectorError::new(
                syncline_core::ErrorClass::Config,
                "links, property histories, owners and pipelines are not counted (verify_counts)",
            )),
            AnySource::Stripe(_) => Err(ConnectorError::new(
                syncline_core::ErrorClass::Config,
                "Stripe cannot count products without listing them all (verify_counts)",
            )),
        }
    }

    /// Whether a read from `since` also covers everything after `cursor`, so a `--since` run
    /// may move the cursor.
    pub fn starts_at_or_before(&self, since: NaiveDateTime, cursor: &Cursor) -> bool {
        match self {
            AnySource::Sql(source) => source.starts_at_or_before(since, cursor),
            AnySource::HubSpot(source) => source.starts_at_or_before(since.and_utc(), cursor),
            AnySource::HubSpotDetails(source) => source.objects().starts_at_or_before(since.and_utc(), cursor),
            AnySource::HubSpotReference(_) => true,
            AnySource::Stripe(source) => source.starts_at_or_before(since.and_utc(), cursor),
        }
    }

    /// The fields its records have with their types, where the source knows them before reading
    /// (a HubSpot property's type); empty where only the values tell.
    pub async fn fields(&mut self) -> Result<Vec<(String, FieldType)>, ConnectorError> {
        match self {
            AnySource::Sql(_) => Ok(Vec::new()),
            AnySource::HubSpot(source) => source.fields().await,
            AnySource::HubSpotDetails(source) => Ok(source.fields()),
            AnySource::HubSpotReference(source) => Ok(source.fields()),
            AnySource::Stripe(_) => Ok(stripe::StripeSource::fields()),
        }
    }

    /// How its records replace what a sink holds, when a record alone cannot say it (links).
    pub fn replaces(&self) -> Option<syncline_core::Replaces> {
        match self {
            AnySource::HubSpotDetails(source) => Some(source.replaces()),
            AnySource::HubSpotReference(source) => source.replaces(),
            AnySource::Sql(_) | AnySource::HubSpot(_) | AnySource::Stripe(_) => None,
        }
    }

    /// Whether `cursor` is one this source makes (`state set`).
    pub fn check_cursor(&self, cursor: &Cursor) -> Result<(), ConnectorError> {
        match self {
            AnySource::Sql(_) => sql::decode_cursor(cursor).map(drop),
            AnySource::HubSpot(source) => source.check_cursor(cursor),
            AnySource::HubSpotDetails(source) => source.objects().check_cursor(cursor),
            AnySource::HubSpotReference(source) => source.check_cursor(cursor),
            AnySource::Stripe(source) => source.check_cursor(cursor),
        }
    }

    /// A `--since` read that continues `cursor` (see `starts_at_or_before`) also reads what
    /// follows the cursor. A HubSpot time compares as a time, so reading from `since` is enough.
    pub fn resume_after(&mut self, cursor: Cursor) {
        match self {
            AnySource::Sql(source) => source.resume_after(cursor),
            AnySource::HubSpot(_) | AnySource::HubSpotDetails(_) | AnySource::HubSpotReference(_) | AnySource::Stripe(_) => {}
        }
    }
}

impl Source for AnySource {
    async fn next_page(&mut self, after: Option<&Cursor>) -> Result<Option<Page>, ConnectorError> {
        match self {
            AnySource::Sql(source) => source.next_page(after).await,
            AnySource::HubSpot(source) => source.next_page(after).await,
            AnySource::HubSpotDetails(source) => source.next_page(after).await,
            AnySource::HubSpotReference(source) => source.next_page(after).await,
            AnySource::Stripe(source) => source.next_page(after).await,
        }
    }

    fn cursor_after(&self, record: &Record) -> Option<Cursor> {
        match self {
            AnySource::Sql(source) => source.cursor_after(record),
            AnySource::HubSpot(source) => source.cursor_after(record),
            AnySource::HubSpotDetails(source) => source.cursor_after(record),
            AnySource::HubSpotReference(source) => source.cursor_after(record),
            AnySource::Stripe(source) => source.cursor_after(record),
        }
    }

    fn audit(&self) -> Option<String> {
        match self {
            AnySource::Sql(source) => source.audit(),
            AnySource::HubSpot(source) => source.audit(),
            AnySource::HubSpotDetails(source) => source.audit(),
            AnySource::HubSpotReference(source) => source.audit(),
            AnySource::Stripe(source) => source.audit(),
        }
    }
}

/// Any configured sink.
pub enum AnySink {
    Sql(sql::SqlSink),
    HubSpot(hubspot::HubSpotSink),
    QuickBooks(quickbooks::ItemSink),
}

impl AnySink {
    /// How the services this sink calls are doing, for `/readyz`.
    pub fn health(&self) -> Vec<syncline_resilience::Health> {
        match self {
            AnySink::QuickBooks(sink) => sink.health(),
            _ => Vec::new(),
        }
    }

    /// The identity of what this sink writes to, for keying cursors and fingerprints: a
    /// database without credentials and the table, or a HubSpot portal and object.
    pub async fn identity(&self) -> Result<String, ConnectorError> {
        match self {
            AnySink::Sql(sink) => Ok(sink.identity()),
            AnySink::HubSpot(sink) => sink.identity().await,
            AnySink::QuickBooks(sink) => Ok(sink.identity()),
        }
    }

    /// How the source's records replace stored rows (see `Replaces`): a table does it; HubSpot
    /// takes objects, not rows of links.
    pub fn replace_groups(&mut self, replaces: syncline_core::Replaces) -> Result<(), ConnectorError> {
        match self {
            AnySink::Sql(sink) => {
                sink.replace_groups(replaces);
                Ok(())
            }
            AnySink::HubSpot(_) | AnySink::QuickBooks(_) => {
                let message =
                    "associations, histories, owners and pipelines are written into a table (a sql sink), not into HubSpot or QuickBooks";
                Err(ConnectorError::new(syncline_core::ErrorClass::Config, message))
            }
        }
    }

    /// The source's field types, for the columns a table sink creates; HubSpot's properties
    /// are defined in HubSpot.
    pub fn declare(&mut self, fields: &[(String, FieldType)]) {
        match self {
            AnySink::Sql(sink) => sink.declare(fields),
            AnySink::HubSpot(_) | AnySink::QuickBooks(_) => {}
        }
    }
}

impl Sink for AnySink {
    async fn write(&mut self, batch: &[Record]) -> Result<Vec<Outcome>, ConnectorError> {
        match self {
            AnySink::Sql(sink) => sink.write(batch).await,
            AnySink::HubSpot(sink) => sink.write(batch).await,
            AnySink::QuickBooks(sink) => sink.write(batch).await,
        }
    }

    fn retries_itself(&self) -> bool {
        match self {
            AnySink::Sql(sink) => sink.retries_itself(),
            AnySink::HubSpot(sink) => sink.retries_itself(),
            AnySink::QuickBooks(sink) => sink.retries_itself(),
        }
    }

    async fn current(&mut self, batch: &[Record]) -> Result<Option<Vec<Record>>, ConnectorError> {
        match self {
            AnySink::Sql(sink) => sink.current(batch).await,
            AnySink::HubSpot(sink) => sink.current(batch).await,
            AnySink::QuickBooks(sink) => sink.current(batch).await,
        }
    }
}
